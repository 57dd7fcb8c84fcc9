/**
 * Model management routes: `/api/copy`, `/api/delete`, `/api/pull`, `/api/push`, `/api/create`. Names are
 * validated as Ollama validates them; copies are daemon-side names (see catalog.ts); pull answers from the
 * local stores only (llama-mgr does not download from registry.ollama.ai).
 *
 * @module
 */
import type { DaemonContext } from "../context.ts";
import { findModel } from "../context.ts";
import { HttpError, jsonResponse, ndjsonResponse, readJsonBody } from "../http.ts";
import { isValidModelName } from "../names.ts";
import { CopyRequestSchema, CreateRequestSchema, DeleteRequestSchema, PullRequestSchema } from "../types.ts";

/**
 * `POST /api/copy`: 200 with an empty body; 400 for a bad name; 404 for an unknown source.
 *
 * @example
 * ```ts
 * await handleCopy(ctx, req);
 * ```
 */
export async function handleCopy(ctx: DaemonContext, req: Request): Promise<Response> {
  const body = await readJsonBody(req, CopyRequestSchema);
  if (!body.source || !isValidModelName(body.source)) {
    throw new HttpError(400, `source "${body.source}" is invalid`);
  }
  if (!body.destination || !isValidModelName(body.destination)) {
    throw new HttpError(400, `destination "${body.destination}" is invalid`);
  }
  const src = await ctx.catalog.find(body.source);
  if (!src) throw new HttpError(404, `model "${body.source}" not found`);
  await ctx.catalog.copy(src, body.destination);
  return new Response(null, { status: 200 });
}

/**
 * `DELETE /api/delete` (`model` or the older `name`): 200 with an empty body; 400 bad name; 404 unknown.
 *
 * @example
 * ```ts
 * await handleDelete(ctx, req);
 * ```
 */
export async function handleDelete(ctx: DaemonContext, req: Request): Promise<Response> {
  const body = await readJsonBody(req, DeleteRequestSchema);
  const name = body.model || body.name || "";
  if (!isValidModelName(name)) throw new HttpError(400, `name "${name}" is invalid`);
  const m = await ctx.catalog.find(name);
  if (!m) throw new HttpError(404, `model '${name}' not found`);
  await ctx.scheduler.expire(m);
  await ctx.catalog.remove(m);
  return new Response(null, { status: 200 });
}

/**
 * `POST /api/pull`: succeeds for a model that is already present (as Ollama does for an up-to-date model);
 * an absent one is a 404 that says how to get it.
 *
 * @example
 * ```ts
 * await handlePull(ctx, req);
 * ```
 */
export async function handlePull(ctx: DaemonContext, req: Request): Promise<Response> {
  const body = await readJsonBody(req, PullRequestSchema);
  const name = body.model || body.name || "";
  if (!isValidModelName(name)) throw new HttpError(400, `invalid model name '${name}'`);
  const m = await ctx.catalog.find(name);
  if (!m) {
    throw new HttpError(
      404,
      `model '${name}' not found locally; llama-mgr's daemon does not download from registry.ollama.ai: ` +
        "put the GGUF in a folder listed in models.dirs (or use Hugging Face / LM Studio / Ollama) and it appears in /api/tags",
    );
  }
  const lines = [{ status: "pulling manifest" }, { status: "verifying sha256 digest" }, {
    status: "success",
  }];
  if (body.stream === false) return jsonResponse({ status: "success" });
  return await ndjsonResponse((async function* () {
    yield* lines;
  })());
}

/**
 * `POST /api/push`: not supported (400 with the reason).
 */
export function handlePush(): Promise<Response> {
  return Promise.reject(new HttpError(400, "llama-mgr's daemon does not push models to a registry"));
}

/**
 * `POST /api/create` from an existing model (`from`): makes a new name for it. Creating from uploaded files is
 * refused with a 400 that says so.
 *
 * @example
 * ```ts
 * await handleCreate(ctx, req);
 * ```
 */
export async function handleCreate(ctx: DaemonContext, req: Request): Promise<Response> {
  const body = await readJsonBody(req, CreateRequestSchema);
  const name = body.model || body.name || "";
  if (!isValidModelName(name)) throw new HttpError(400, `invalid model name '${name}'`);
  if (!body.from) {
    throw new HttpError(
      400,
      "only `from` an existing model is supported by llama-mgr's /api/create; add GGUF files to a models folder instead",
    );
  }
  const src = await findModel(ctx, body.from, { emptyStatus: 400 });
  await ctx.catalog.copy(src, name);
  const lines = [{ status: "using existing layers" }, { status: "writing manifest" }, { status: "success" }];
  if (body.stream === false) return jsonResponse({ status: "success" });
  return await ndjsonResponse((async function* () {
    yield* lines;
  })());
}
