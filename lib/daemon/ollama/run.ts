/**
 * The part chat and generate share: hold a lease on a runner, send one request to llama-server, and turn the
 * event stream into Ollama's NDJSON lines (or one JSON object when `stream` is false), releasing the runner
 * when the answer is written or the client goes away.
 *
 * @module
 */
import type { Lease } from "../scheduler.ts";
import { jsonResponse, msToNs, ndjsonResponse, nowRfc3339 } from "../http.ts";
import { openUpstreamOk, type UpstreamStream } from "../stream_client.ts";
import type { GenEvent, OllamaToolCall } from "./events.ts";
import type { DoneReason, Metrics } from "../types.ts";

/** How one endpoint shapes its lines. */
export interface Shape {
  /** A partial line for text, thinking or tool calls. */
  partial(part: { text?: string; thinking?: string; tools?: OllamaToolCall[] }): Record<string, unknown>;
  /** The final line (or the whole non-streamed object) with the totals. */
  final(
    all: { text: string; thinking: string; tools: OllamaToolCall[] },
    reason: DoneReason,
    metrics: Metrics,
  ): Record<string, unknown>;
}

/** What one line carries besides the common fields: the text so far (or all of it), thinking, tool calls. */
export interface LinePart {
  /** Text. */
  text: string;
  /** Thinking text, when there is some. */
  thinking?: string;
  /** Tool calls, when there are some. */
  tools?: OllamaToolCall[];
}

/**
 * The shape of an endpoint's lines: `model`, `created_at`, the endpoint's own fields (`message` for chat,
 * `response` for generate) and `done`; the final line adds `done_reason` and the counters.
 *
 * @example
 * ```ts
 * const shape = lineShape("qwen3:4b", (p) => ({ response: p.text }));
 * ```
 */
export function lineShape(model: string, fields: (part: LinePart) => Record<string, unknown>): Shape {
  return {
    partial: (p) => ({
      model,
      created_at: nowRfc3339(),
      ...fields({ ...p, text: p.text ?? "" }),
      done: false,
    }),
    final: (all, reason, metrics) => ({
      model,
      created_at: nowRfc3339(),
      ...fields({
        text: all.text,
        thinking: all.thinking || undefined,
        tools: all.tools.length ? all.tools : undefined,
      }),
      done: true,
      done_reason: reason,
      ...metrics,
    }),
  };
}

/** Options for {@linkcode runGeneration}. */
export interface RunOptions {
  /** The runner, released by this function. */
  lease: Lease;
  /** llama-server path (`/v1/chat/completions`, `/completion`, `/infill`). */
  path: string;
  /** llama-server request body (`stream: true` is set here). */
  body: Record<string, unknown>;
  /** Parser for the SSE answer. */
  events: (chunks: AsyncIterable<Uint8Array>) => AsyncGenerator<GenEvent>;
  /** Output shape. */
  shape: Shape;
  /** `stream` from the request (default true). */
  stream: boolean;
  /** When the request arrived (performance.now()). */
  startedAt: number;
}

/**
 * Runs one generation and answers in Ollama's format.
 *
 * @example
 * ```ts
 * return await runGeneration({ lease, path: "/v1/chat/completions", body, events: chatEvents, shape, stream: true,
 *   startedAt: performance.now() });
 * ```
 */
export async function runGeneration(o: RunOptions): Promise<Response> {
  // A streamed answer stops llama-server's work when the client goes away (the stream is cancelled); the
  // request's own signal is not used (Deno.serve aborts it after every response, a legacy behaviour).
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    o.lease.release();
  };
  let up: UpstreamStream;
  try {
    up = await openUpstreamOk(o.lease.url, o.path, JSON.stringify({ ...o.body, stream: true }));
  } catch (err) {
    release();
    throw err;
  }
  const totals = (m: Metrics): Metrics => ({
    total_duration: msToNs(performance.now() - o.startedAt),
    load_duration: msToNs(o.lease.loadMs),
    ...m,
  });
  if (!o.stream) {
    try {
      const all = { text: "", thinking: "", tools: [] as OllamaToolCall[] };
      for await (const ev of o.events(up.chunks)) {
        if (ev.kind === "text") all.text += ev.text;
        else if (ev.kind === "thinking") all.thinking += ev.text;
        else if (ev.kind === "tools") all.tools.push(...ev.calls);
        else if (ev.kind === "done") return jsonResponse(o.shape.final(all, ev.reason, totals(ev.metrics)));
      }
      throw new Error("llama-server ended the answer early");
    } finally {
      up.close();
      release();
    }
  }
  const shape = o.shape;
  const gen = (async function* () {
    try {
      for await (const ev of o.events(up.chunks)) {
        if (ev.kind === "text") yield shape.partial({ text: ev.text });
        else if (ev.kind === "thinking") yield shape.partial({ thinking: ev.text });
        else if (ev.kind === "tools") yield shape.partial({ tools: ev.calls });
        else if (ev.kind === "done") {
          yield shape.final({ text: "", thinking: "", tools: [] }, ev.reason, totals(ev.metrics));
          return;
        }
      }
      throw new Error("llama-server ended the answer early");
    } finally {
      up.close();
    }
  })();
  return await ndjsonResponse(gen, release);
}

/** The answer to a load or unload request (empty prompt or messages): `done` at once with the reason. */
export function loadAnswer(base: Record<string, unknown>, reason: "load" | "unload"): Response {
  return jsonResponse({ ...base, created_at: nowRfc3339(), done: true, done_reason: reason });
}
