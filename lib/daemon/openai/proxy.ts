/**
 * The `/v1` endpoints llama-server speaks itself: OpenAI's `/v1/chat/completions`, `/v1/completions`,
 * `/v1/embeddings` and `/v1/responses`, Anthropic's `/v1/messages` and `/v1/messages/count_tokens`. Each is routed
 * by its `model` to that model's llama-server and streamed through byte for byte but for the model's name, given
 * back as the request asked (./rewrite.ts; a model made by `/api/create` adds its parameters, system prompt and
 * messages); `/v1/models` and `/v1/models/:id` list the catalogue. Errors
 * use OpenAI's body (`{"error": {"message", "type", "param", "code"}}`), Anthropic's on `/v1/messages*`.
 *
 * @module
 */
import type { LogFields } from "../../util/log.ts";
import type { DaemonContext } from "../context.ts";
import { capabilitiesOf, findModel, modelMessages } from "../context.ts";
import type { CatalogModel } from "../../models/catalog.ts";
import { errorStatus, HttpError, readBodyText } from "../http.ts";
import { openUpstream, type UpstreamStream } from "../upstream/client.ts";
import { mayResume, resumeConversation } from "../runners/kv_cache.ts";
import { type LoadOptions, parseOptions } from "../options.ts";
import { toOpenAIMessages } from "../ollama/to_llama.ts";
import { answerRewrite } from "./rewrite.ts";
import { checkMessagesRequest } from "../anthropic/request.ts";

/** OpenAI's error body for a status. */
export function openaiError(status: number, message: string): Response {
  const type = status === 404 ? "not_found_error" : status >= 500 ? "api_error" : "invalid_request_error";
  return new Response(JSON.stringify({ error: { message, type, param: null, code: null } }), {
    status,
    headers: { "content-type": "application/json" },
  });
}

/** Maps a thrown value to an OpenAI error response. */
export function toOpenAIError(err: unknown): Response {
  return openaiError(errorStatus(err), err instanceof Error ? err.message : String(err));
}

/**
 * Proxies one OpenAI or Anthropic request to the model's llama-server.
 *
 * @example
 * ```ts
 * const res = await proxyOpenAI(ctx, req, "/v1/chat/completions");
 * ```
 */
export async function proxyOpenAI(ctx: DaemonContext, req: Request, path: string): Promise<Response> {
  const text = await readBodyText(req);
  if (!text.trim()) throw new HttpError(400, "missing request body");
  let body: Record<string, unknown>;
  try {
    body = JSON.parse(text);
  } catch (err) {
    throw new HttpError(400, `invalid JSON in request body: ${(err as Error).message}`);
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new HttpError(400, "request body must be a JSON object");
  }
  if (typeof body.model !== "string" || !body.model) throw new HttpError(400, "model is required");
  if (path.startsWith("/v1/messages")) checkMessagesRequest(body, path === "/v1/messages/count_tokens");
  ctx.requests?.note(req, { model: body.model });
  const model = await findModel(ctx, body.model);
  const embedding = path === "/v1/embeddings";
  // As Ollama's compatibility endpoints, which go through its chat handler: tools for a model that cannot
  // call them are a 400 before anything loads (llama-server would render them and answer in words).
  if (
    Array.isArray(body.tools) && body.tools.length && path !== "/v1/completions" && !embedding &&
    !(await capabilitiesOf(ctx, model)).includes("tools")
  ) {
    throw new HttpError(400, `"${body.model}" does not support tools`);
  }
  let load: LoadOptions | undefined;
  let send = text;
  if (model.settings) {
    // A model made by /api/create: its parameters are the request's defaults, its system prompt and messages
    // go before a chat's own (as Ollama's OpenAI endpoints go through its chat handler).
    const own = parseOptions(model.settings.parameters);
    load = own.load;
    if (!embedding) applyModel(model, body, own.sampling, path);
    send = JSON.stringify(body);
  }
  const acquired = await ctx.scheduler.acquire({
    model,
    keepAliveMs: ctx.defaultKeepAliveMs,
    embedding,
    load,
  });
  const lease = ctx.requests?.hold(req, acquired) ?? acquired;
  let up: UpstreamStream;
  try {
    await ctx.arrivals.ready(req);
    if (mayResume(lease.url)) {
      send = JSON.stringify(await resumeConversation(lease.url, path, JSON.parse(send)));
    }
    up = await openUpstream(lease.url, path, send, req.signal);
  } catch (err) {
    lease.release();
    throw err;
  }
  // For the request log: the last two pieces of the answer, where llama-server writes its `usage` (at the end
  // of a JSON answer, in the last event of a stream); kept by reference, read once at the end.
  const requests = ctx.requests;
  // The answer names the model as the request did, and speaks Anthropic's dialect where llama-server does not.
  const rewrite = answerRewrite({
    model: body.model,
    anthropic: path.startsWith("/v1/messages"),
    stream: (up.headers["content-type"] ?? "").includes("text/event-stream"),
    status: up.status,
  });
  let last: Uint8Array | undefined;
  let before: Uint8Array | undefined;
  let released = false;
  const release = () => {
    if (!released) {
      released = true;
      up.close();
      if (requests && last) requests.note(req, usageCounts(before, last));
      lease.release();
    }
  };
  const sse = (up.headers["content-type"] ?? "").includes("text/event-stream");
  let tail: string | undefined; // the last bytes sent of a stream
  const out = new ReadableStream<Uint8Array>({
    async pull(ctrl) {
      try {
        while (true) {
          const { value: piece, done } = await up.chunks.next();
          const value = done ? rewrite.end() : rewrite.push(piece);
          if (value.length) {
            if (requests) {
              before = last;
              last = value;
            }
            if (sse) tail = dec.decode(value.subarray(Math.max(0, value.length - 2)));
            ctrl.enqueue(value);
          }
          if (done) {
            ctrl.close();
            release();
          }
          if (done || value.length) break;
        }
      } catch (err) {
        release();
        // The status is already 200: a stream ends with an error event, as llama-server and OpenAI send one
        // (OpenAI's clients raise it); any other body can only break off.
        if (!sse) return ctrl.error(err);
        const message = `the model's llama-server failed mid-answer: ${(err as Error)?.message ?? err}`;
        const open = tail !== undefined && !tail.endsWith("\n\n") ? "\n\n" : "";
        // Anthropic's stream names its events; its clients read an `error` event of its own shape.
        const event = path.startsWith("/v1/messages")
          ? `event: error\ndata: ${JSON.stringify({ type: "error", error: { type: "api_error", message } })}`
          : `data: ${JSON.stringify({ error: { message, type: "api_error", param: null, code: null } })}`;
        ctrl.enqueue(enc.encode(`${open}${event}\n\n`));
        ctrl.close();
      }
    },
    cancel() {
      release();
    },
  }, { highWaterMark: 0 });
  const headers = new Headers();
  for (const h of ["content-type", "cache-control"]) {
    const v = up.headers[h];
    if (v) headers.set(h, v);
  }
  return new Response(out, { status: up.status, headers });
}

const dec = new TextDecoder();
const enc = new TextEncoder();

/** The token counts in the `usage` of llama-server's OpenAI answer (its last bytes), as Ollama names them. */
function usageCounts(before: Uint8Array | undefined, last: Uint8Array): LogFields {
  const tail = (before ? dec.decode(before.subarray(Math.max(0, before.length - 4096))) : "") +
    dec.decode(last);
  const at = tail.lastIndexOf('"usage"');
  if (at < 0) return {};
  const usage = tail.slice(at);
  const prompt = usage.match(/"prompt_tokens":\s*(\d+)/);
  const completion = usage.match(/"completion_tokens":\s*(\d+)/);
  return {
    prompt_eval_count: prompt ? Number(prompt[1]) : undefined,
    eval_count: completion ? Number(completion[1]) : undefined,
  };
}

/**
 * A made model's parameters as the request's defaults, its system prompt and messages before the request's own,
 * each in the field the path's API has for them.
 */
function applyModel(
  model: CatalogModel,
  body: Record<string, unknown>,
  sampling: Record<string, unknown>,
  path: string,
): void {
  const s = model.settings!;
  const anthropic = path.startsWith("/v1/messages");
  for (const [key, value] of Object.entries(sampling)) {
    // Anthropic's fields: llama-server reads max_tokens, stop_sequences, temperature, top_p and top_k of them.
    const field = !anthropic
      ? key
      : key === "n_predict"
      ? "max_tokens"
      : key === "stop"
      ? "stop_sequences"
      : key;
    const given = key === "n_predict" && !anthropic
      ? body.n_predict ?? body.max_tokens ?? body.max_completion_tokens ?? body.max_output_tokens
      : body[field];
    if ((given === undefined || given === null) && !(anthropic && field === "max_tokens" && value === -1)) {
      body[field] = value;
    }
  }
  // Only text turns: the Messages and Responses APIs take a string as a message's content.
  const turns = (s.messages ?? []).map((m) => ({ role: m.role, content: m.content }));
  if (path === "/v1/chat/completions" && Array.isArray(body.messages)) {
    body.messages = modelMessages(model, body.messages as Record<string, unknown>[], toOpenAIMessages);
  } else if (anthropic) {
    if (s.system && !body.system) body.system = s.system;
    // Anthropic has no system turn: a made model's system messages join its system prompt's place.
    if (Array.isArray(body.messages) && turns.length) {
      body.messages = [...turns.filter((m) => m.role === "user" || m.role === "assistant"), ...body.messages];
    }
  } else if (path === "/v1/responses") {
    if (s.system && !body.instructions) body.instructions = s.system;
    if (turns.length && (typeof body.input === "string" || Array.isArray(body.input))) {
      const input = typeof body.input === "string" ? [{ role: "user", content: body.input }] : body.input;
      body.input = [...turns, ...input];
    }
  }
}

function ownedBy(name: string): string {
  const parts = name.split(":")[0].split("/");
  return parts.length >= 2 ? parts[parts.length - 2] : "library";
}

/**
 * `GET /v1/models`.
 *
 * @example
 * ```ts
 * const res = await handleOpenAIModels(ctx);
 * ```
 */
export async function handleOpenAIModels(ctx: DaemonContext): Promise<Response> {
  const models = await ctx.catalog.list();
  return Response.json({
    object: "list",
    data: models.map((m) => ({
      id: m.name,
      object: "model",
      created: Math.floor(m.entry.mtimeMs / 1000),
      owned_by: ownedBy(m.name),
    })),
  });
}

/**
 * `GET /v1/models/:id`.
 *
 * @example
 * ```ts
 * const res = await handleOpenAIModel(ctx, "smollm2:latest");
 * ```
 */
export async function handleOpenAIModel(ctx: DaemonContext, id: string): Promise<Response> {
  const m = await ctx.catalog.find(id);
  if (!m) throw new HttpError(404, `model "${id}" not found`);
  return Response.json({
    id: m.name,
    object: "model",
    created: Math.floor(m.entry.mtimeMs / 1000),
    owned_by: ownedBy(m.name),
  });
}
