/**
 * HTTP plumbing shared by every route: Ollama's error body, size-limited JSON bodies validated by zod, and
 * NDJSON streams that end with an `{"error"}` line when something fails after the first byte.
 *
 * @module
 */
import type { z } from "../deps.ts";
import { describeZodError } from "./types.ts";
import { UserError } from "../util/errors.ts";
import { concatBytes } from "../util/bytes.ts";
import { ForeignModelError, ModelNotFoundError } from "../models/errors.ts";
import { CannotFitError, QueueFullError } from "./runners/errors.ts";

/** An error with the HTTP status the daemon answers with. */
export class HttpError extends Error {
  /** HTTP status code. */
  status: number;
  /** Builds the error. */
  constructor(status: number, message: string) {
    super(message);
    this.name = "HttpError";
    this.status = status;
  }
}

/** Largest JSON request body accepted (images travel base64 inside). */
export const MAX_JSON_BODY = 100 * 1024 * 1024;

const enc = new TextEncoder();

/**
 * An Ollama error response: `{"error": "..."}` with a status.
 *
 * @example
 * ```ts
 * return errorResponse(404, "model 'x' not found");
 * ```
 */
export function errorResponse(status: number, message: string): Response {
  return new Response(JSON.stringify({ error: message }), {
    status,
    headers: { "content-type": "application/json; charset=utf-8" },
  });
}

/** A JSON response. */
export function jsonResponse(value: unknown, status = 200): Response {
  return new Response(JSON.stringify(value), {
    status,
    headers: { "content-type": "application/json; charset=utf-8" },
  });
}

/**
 * The status an error is answered with: an HttpError's own; the model layer's not-found 404 and another tool's
 * model 403; the scheduler's queue full 503; any other UserError 400; else 500.
 *
 * @example
 * ```ts
 * errorStatus(new HttpError(413, "too large")); // 413
 * ```
 */
export function errorStatus(err: unknown): number {
  if (err instanceof HttpError) return err.status;
  if (err instanceof ModelNotFoundError) return 404;
  if (err instanceof ForeignModelError) return 403;
  if (err instanceof QueueFullError) return 503;
  // As Ollama's "model requires more system memory": a 500 whose message says what to change.
  if (err instanceof CannotFitError) return 500;
  if (err instanceof UserError) return 400;
  return 500;
}

/** Maps any thrown value to an Ollama error response, with the status of {@linkcode errorStatus}. */
export function toErrorResponse(err: unknown): Response {
  return errorResponse(errorStatus(err), err instanceof Error ? err.message : String(err));
}

/**
 * Reads a request body as text, refusing more than `limit` bytes (413) before reading it all.
 *
 * @example
 * ```ts
 * const text = await readBodyText(req, 1024 * 1024);
 * ```
 */
export async function readBodyText(req: Request, limit = MAX_JSON_BODY): Promise<string> {
  const declared = Number(req.headers.get("content-length") ?? "NaN");
  if (Number.isFinite(declared) && declared > limit) {
    throw new HttpError(413, `request body too large: ${declared} bytes, the limit is ${limit}`);
  }
  if (!req.body) return "";
  // With a Content-Length (every client sends one) the server already holds the body to that length: read it
  // in one go. A chunked body is counted as it arrives.
  if (Number.isFinite(declared)) return await req.text();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of req.body) {
    total += chunk.length;
    if (total > limit) throw new HttpError(413, `request body too large: the limit is ${limit} bytes`);
    chunks.push(chunk);
  }
  return new TextDecoder().decode(concatBytes(chunks));
}

/**
 * Reads and validates a JSON body as Ollama does: empty body is 400 `missing request body`, bad JSON is 400,
 * a field of the wrong type is 400 naming the field; unknown fields are ignored.
 *
 * @example
 * ```ts
 * const body = await readJsonBody(req, ChatRequestSchema);
 * ```
 */
export async function readJsonBody<S extends z.ZodType>(req: Request, schema: S): Promise<z.output<S>> {
  const text = await readBodyText(req);
  if (text.trim() === "") throw new HttpError(400, "missing request body");
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new HttpError(400, `invalid JSON in request body: ${(err as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new HttpError(400, "request body must be a JSON object");
  }
  const r = schema.safeParse(value);
  if (!r.success) throw new HttpError(400, `invalid request: ${describeZodError(r.error)}`);
  return r.data;
}

/**
 * An NDJSON streaming response from an async generator of objects: one JSON object per line, never a blank
 * line (see {@linkcode ndjsonLinesResponse}).
 *
 * @example
 * ```ts
 * return await ndjsonResponse((async function* () { yield { done: true }; })());
 * ```
 */
export function ndjsonResponse(gen: AsyncGenerator<unknown>, onClose?: () => void): Promise<Response> {
  return ndjsonLinesResponse(
    async () => {
      const r = await gen.next();
      return r.done ? null : enc.encode(JSON.stringify(r.value) + "\n");
    },
    onClose,
    async () => {
      await gen.return(undefined);
    },
  );
}

/**
 * An NDJSON streaming response from encoded lines: `next` gives one or more whole lines (each ending in a
 * newline), or null at the end. The first lines are read before the response starts, so an error up to then
 * gets its own status (see {@linkcode toErrorResponse}); an error thrown after streaming began becomes a last
 * line `{"error": "..."}` and the status stays 200. When the client goes away `cancel` runs; `onClose` runs
 * once when the stream ends, fails or is cancelled.
 *
 * @example
 * ```ts
 * let sent = false;
 * return await ndjsonLinesResponse(async () => sent ? null : (sent = true, new TextEncoder().encode("{}\n")));
 * ```
 */
export async function ndjsonLinesResponse(
  next: () => Promise<Uint8Array | null>,
  onClose?: () => void,
  cancel?: () => Promise<void> | void,
): Promise<Response> {
  let closed = false;
  const close = () => {
    if (!closed) {
      closed = true;
      onClose?.();
    }
  };
  let pending: Uint8Array | null | undefined;
  try {
    pending = await next();
  } catch (err) {
    close();
    return toErrorResponse(err);
  }
  const body = new ReadableStream<Uint8Array>({
    async pull(ctrl) {
      try {
        const lines = pending !== undefined ? pending : await next();
        pending = undefined;
        if (lines === null) {
          ctrl.close();
          close();
          return;
        }
        ctrl.enqueue(lines);
      } catch (err) {
        const msg = err instanceof Error ? err.message : String(err);
        ctrl.enqueue(enc.encode(JSON.stringify({ error: msg }) + "\n"));
        ctrl.close();
        close();
      }
    },
    async cancel() {
      try {
        await cancel?.();
      } finally {
        close();
      }
    },
  }, { highWaterMark: 0 });
  return new Response(body, { headers: { "content-type": "application/x-ndjson" } });
}

let minuteStart = -1;
let minutePrefix = "";

/**
 * The current time as RFC 3339 in UTC with milliseconds (`2026-11-30T08:25:20.123Z`), as Ollama prints
 * `created_at`. Every streamed line asks for it, so only the seconds and milliseconds are formatted each time;
 * the rest is kept for the minute.
 */
export function nowRfc3339(): string {
  const ms = Date.now();
  const inMinute = ms - minuteStart;
  if (minuteStart < 0 || inMinute < 0 || inMinute >= 60_000) {
    minuteStart = ms - (ms % 60_000);
    minutePrefix = new Date(minuteStart).toISOString().slice(0, 17); // "YYYY-MM-DDTHH:MM:"
    return nowRfc3339();
  }
  const sec = (inMinute / 1000) | 0;
  const milli = inMinute - sec * 1000;
  return minutePrefix + (sec < 10 ? "0" : "") + sec + (milli < 10 ? ".00" : milli < 100 ? ".0" : ".") +
    milli + "Z";
}

/** Milliseconds to integer nanoseconds. */
export function msToNs(ms: number): number {
  return Math.max(0, Math.round(ms * 1e6));
}
