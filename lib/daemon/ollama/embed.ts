/**
 * `POST /api/embed` and the older `POST /api/embeddings`, on llama-server's `/tokenize` (to count, and to
 * truncate as Ollama's `truncate` says) and `/v1/embeddings` (pooled, L2-normalised vectors). A model is run
 * in embeddings mode for these requests (a generative model is reloaded in that mode when needed).
 *
 * @module
 */
import type { DaemonContext } from "../context.ts";
import { findModel, modelOptions } from "../context.ts";
import { HttpError, jsonResponse, msToNs, readJsonBody } from "../http.ts";
import { parseKeepAlive } from "../keep_alive.ts";
import { parseOptions } from "../options.ts";
import { EmbeddingsRequestSchema, EmbedRequestSchema } from "../types.ts";
import { postJson } from "../upstream/client.ts";
import type { Lease } from "../runners/scheduler.ts";

/** Reads `/api/embed`'s `input`: a string (empty means none) or a list of strings. */
export function embedInputs(input: unknown): string[] {
  if (input === undefined || input === null) return [];
  if (typeof input === "string") return input.length ? [input] : [];
  if (Array.isArray(input) && input.every((s) => typeof s === "string")) return input as string[];
  throw new HttpError(400, "invalid input type");
}

function normalize(v: number[]): number[] {
  let sum = 0;
  for (const x of v) sum += x * x;
  const n = Math.sqrt(sum);
  return n > 0 ? v.map((x) => x / n) : v;
}

/** Embeds texts on a leased runner; returns vectors and the token count. */
export async function embedTexts(
  lease: Lease,
  texts: string[],
  options: { truncate: boolean; dimensions?: number },
): Promise<{ embeddings: number[][]; tokens: number }> {
  const limit = lease.ctx;
  const tokenized: number[][] = [];
  for (const text of texts) {
    const r = await postJson(lease.url, "/tokenize", { content: text, add_special: true });
    let toks = (r.tokens ?? []) as number[];
    if (toks.length > limit) {
      if (!options.truncate) throw new HttpError(400, "input exceeds maximum context length");
      toks = toks.slice(0, limit);
    }
    tokenized.push(toks);
  }
  const res = await postJson(lease.url, "/v1/embeddings", { input: tokenized, encoding_format: "float" });
  const data = res.data as { index: number; embedding: number[] }[];
  const embeddings: number[][] = new Array(texts.length);
  for (const d of data) {
    let e = d.embedding;
    if (e.some((x) => !Number.isFinite(x))) throw new HttpError(500, "embedding contains NaN or Inf values");
    if (options.dimensions && options.dimensions > 0 && options.dimensions < e.length) {
      e = normalize(e.slice(0, options.dimensions));
    }
    embeddings[d.index] = e;
  }
  return { embeddings, tokens: tokenized.reduce((a, t) => a + t.length, 0) };
}

/**
 * Answers `/api/embed`.
 *
 * @example
 * ```ts
 * const res = await handleEmbed(ctx, req);
 * ```
 */
export async function handleEmbed(ctx: DaemonContext, req: Request): Promise<Response> {
  const startedAt = performance.now();
  const body = await readJsonBody(req, EmbedRequestSchema);
  const inputs = embedInputs(body.input);
  ctx.requests?.note(req, { model: body.model });
  const model = await findModel(ctx, body.model, {
    emptyStatus: 404,
    emptyMessage: `model '${body.model}' not found`,
  });
  const keepAliveMs = parseKeepAlive(body.keep_alive, ctx.defaultKeepAliveMs);
  const { load } = parseOptions(modelOptions(model, body.options));
  const lease = await ctx.scheduler.acquire({ model, load, keepAliveMs, embedding: true });
  try {
    if (inputs.length === 0) return jsonResponse({ model: body.model, embeddings: [] });
    const { embeddings, tokens } = await embedTexts(lease, inputs, {
      truncate: body.truncate !== false,
      dimensions: body.dimensions ?? undefined,
    });
    ctx.requests?.note(req, { prompt_eval_count: tokens });
    return jsonResponse({
      model: body.model,
      embeddings,
      total_duration: msToNs(performance.now() - startedAt),
      load_duration: msToNs(lease.loadMs),
      prompt_eval_count: tokens,
    });
  } finally {
    lease.release();
  }
}

/**
 * Answers the older `/api/embeddings` (`prompt` in, `embedding` out; an empty prompt gives `[]`).
 *
 * @example
 * ```ts
 * const res = await handleEmbeddings(ctx, req);
 * ```
 */
export async function handleEmbeddings(ctx: DaemonContext, req: Request): Promise<Response> {
  const body = await readJsonBody(req, EmbeddingsRequestSchema);
  ctx.requests?.note(req, { model: body.model });
  const model = await findModel(ctx, body.model, { emptyStatus: 400, emptyMessage: "model is required" });
  const keepAliveMs = parseKeepAlive(body.keep_alive, ctx.defaultKeepAliveMs);
  const { load } = parseOptions(modelOptions(model, body.options));
  const lease = await ctx.scheduler.acquire({ model, load, keepAliveMs, embedding: true });
  try {
    if (!body.prompt) return jsonResponse({ embedding: [] });
    const { embeddings } = await embedTexts(lease, [body.prompt], { truncate: true });
    return jsonResponse({ embedding: embeddings[0] });
  } finally {
    lease.release();
  }
}
