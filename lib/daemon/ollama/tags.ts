/**
 * `GET /api/tags`: every model the daemon can serve, in Ollama's list shape.
 *
 * @module
 */
import type { DaemonContext } from "../context.ts";
import { capabilitiesOf } from "../context.ts";
import { jsonResponse } from "../http.ts";
import type { ListModel } from "../types.ts";
import { modelDetails, modelDigest } from "./details.ts";

/**
 * Lists the models as `{"models": [...]}` (an empty list when there are none).
 *
 * @example
 * ```ts
 * const res = await handleTags(ctx);
 * ```
 */
export async function handleTags(ctx: DaemonContext): Promise<Response> {
  const models = await ctx.catalog.list();
  const out: ListModel[] = await Promise.all(models.map(async (m) => ({
    name: m.name,
    model: m.name,
    modified_at: new Date(m.entry.mtimeMs).toISOString(),
    size: m.entry.sizeBytes,
    digest: await modelDigest(ctx, m),
    details: modelDetails(m),
    capabilities: await capabilitiesOf(ctx, m),
  })));
  out.sort((a, b) => b.modified_at.localeCompare(a.modified_at));
  return jsonResponse({ models: out });
}
