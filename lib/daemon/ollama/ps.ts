/**
 * `GET /api/ps`: the loaded models, latest expiry first, with size, VRAM share, context and expiry.
 *
 * @module
 */
import type { DaemonContext } from "../context.ts";
import { jsonResponse } from "../http.ts";
import type { ProcessModel } from "../types.ts";
import { modelDetails, modelDigest } from "./details.ts";

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
  const models: ProcessModel[] = await Promise.all(
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
    })),
  );
  return jsonResponse({ models });
}
