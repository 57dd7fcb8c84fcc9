/**
 * `GET /api/ps`: the loaded models, latest expiry first, with size, VRAM share, context and expiry.
 *
 * @module
 */
import type { DaemonContext } from "../context.ts";
import { jsonResponse } from "../http.ts";
import type { ProcessModel } from "../types.ts";
import { modelDetails, modelDigest } from "./details.ts";

/**
 * What `/api/ps` adds to Ollama's fields, under `llama_mgr` (clients ignore it; `llama-mgr ps` prints it):
 * the bytes on each device, the GPU layers, the requests running and the slots.
 */
interface PsExtra {
  devices: Record<string, number>;
  gpu_layers?: number;
  requests: number;
  slots?: number;
}

/** Far future used for "never expires" (Ollama prints a date centuries ahead). */
const FOREVER = "2318-08-14T00:00:00Z";

/**
 * Answers `/api/ps`.
 *
 * @example
 * ```ts
 * const res = await handlePs(ctx);
 * ```
 */
export async function handlePs(ctx: DaemonContext): Promise<Response> {
  const models: (ProcessModel & { llama_mgr: PsExtra })[] = await Promise.all(
    ctx.scheduler.list().filter((r) => r.state !== "unloading").map(async (r) => ({
      name: r.name,
      model: r.name,
      size: r.sizeBytes,
      digest: await modelDigest(ctx, r.model),
      details: modelDetails(r.model),
      expires_at: Number.isFinite(r.expiresAt) ? new Date(r.expiresAt).toISOString() : FOREVER,
      size_vram: r.sizeVramBytes,
      context_length: r.ctx,
      runner: r.serverName,
      llama_mgr: {
        devices: r.usage,
        ...(r.ngl !== undefined ? { gpu_layers: r.ngl } : {}),
        requests: r.refs,
        ...(r.slots !== undefined ? { slots: r.slots } : {}),
      },
    })),
  );
  return jsonResponse({
    models,
    llama_mgr: {
      waiting: ctx.scheduler.waiting(),
      devices: ctx.scheduler.devices().map((d) => ({
        name: d.name,
        budget: d.budgetBytes,
        used: d.usedBytes,
      })),
    },
  });
}
