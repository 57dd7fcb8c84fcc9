/**
 * The part chat and generate share: hold a lease on a runner, send one request to llama-server, and turn the
 * event stream into Ollama's NDJSON lines (or one JSON object when `stream` is false), releasing the runner
 * when the answer is written or the client goes away.
 *
 * @module
 */
import type { Lease } from "../runners/scheduler.ts";
import { jsonResponse, msToNs, ndjsonLinesResponse, nowRfc3339 } from "../http.ts";
import { concatBytes } from "../../util/bytes.ts";
import { openUpstreamOk, type UpstreamStream } from "../upstream/client.ts";
import { resumeConversation } from "../runners/kv_cache.ts";
import type { EventParser, GenEvent, OllamaToolCall } from "./events.ts";
import type { DoneReason, Logprob, Metrics } from "../types.ts";

const enc = new TextEncoder();
/** How one endpoint shapes its lines. */
export interface Shape {
  /** A partial line for text, thinking or tool calls, with the log-probabilities of their tokens. */
  partial(
    part: { text?: string; thinking?: string; tools?: OllamaToolCall[]; logprobs?: Logprob[] },
  ): Record<string, unknown>;
  /**
   * The line for a piece of text given as the bytes of the JSON string literal llama-server wrote (the fast
   * path), ending in a newline: exactly what `JSON.stringify(partial({ text }))` would write, without encoding
   * anything again.
   */
  textLine?(raw: Uint8Array): Uint8Array;
  /** The final line (or the whole non-streamed object) with the totals (and every log-probability). */
  final(
    all: { text: string; thinking: string; tools: OllamaToolCall[]; logprobs?: Logprob[] },
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
 * `response` for generate) and `done`, then `logprobs` when there are some; the final line adds `done_reason`
 * and the counters.
 *
 * @example
 * ```ts
 * const shape = lineShape("qwen3:4b", (p) => ({ response: p.text }));
 * ```
 */
export function lineShape(model: string, fields: (part: LinePart) => Record<string, unknown>): Shape {
  const partial = (p: Partial<LinePart> & { logprobs?: Logprob[] }, createdAt = nowRfc3339()) => ({
    model,
    created_at: createdAt,
    ...fields({ text: p.text ?? "", thinking: p.thinking, tools: p.tools }),
    done: false,
    ...(p.logprobs ? { logprobs: p.logprobs } : {}),
  });
  // The text line's template: a partial line written with placeholders, cut where they are.
  const TEXT = "\u0000text\u0000";
  const TIME = "\u0000time\u0000";
  const sample = JSON.stringify(partial({ text: TEXT }, TIME));
  const [head, tail, more] = sample.split(JSON.stringify(TEXT));
  const [before, after, more2] = head.split(JSON.stringify(TIME));
  const ok = more === undefined && tail !== undefined && more2 === undefined && after !== undefined;
  const beforeBytes = enc.encode(`${before}"`);
  const afterBytes = enc.encode(`"${after}`);
  const tailBytes = enc.encode(`${tail}\n`);
  const textLine = ok
    ? (raw: Uint8Array) => {
      const time = nowRfc3339(); // ASCII
      const out = new Uint8Array(
        beforeBytes.length + time.length + afterBytes.length + raw.length + tailBytes.length,
      );
      out.set(beforeBytes, 0);
      let o = beforeBytes.length;
      for (let k = 0; k < time.length; k++) out[o + k] = time.charCodeAt(k);
      o += time.length;
      out.set(afterBytes, o);
      o += afterBytes.length;
      out.set(raw, o);
      out.set(tailBytes, o + raw.length);
      return out;
    }
    : undefined;
  return {
    partial: (p) => partial(p),
    textLine,
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
      ...(all.logprobs?.length ? { logprobs: all.logprobs } : {}),
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
  /**
   * Makes the parser for the SSE answer, once the request is sent (so a parser that waits on something, such as
   * the rendered prompt, waits beside llama-server's work).
   */
  events: () => EventParser | Promise<EventParser>;
  /** Output shape. */
  shape: Shape;
  /** `stream` from the request (default true). */
  stream: boolean;
  /** When the request arrived (performance.now()). */
  startedAt: number;
  /**
   * Fields added to the final line, computed from the whole answer's text once it is complete (while the runner
   * is still held): generate's `context`.
   */
  finish?: (text: string) => Promise<Record<string, unknown>>;
  /** Called once, when the answer's first bytes arrive from llama-server (the prompt has been processed). */
  begun?: () => void;
  /** Hears the final counters (for the request log). */
  counted?: (metrics: Metrics) => void;
  /** The client's request signal: it going away before the answer is sent stops llama-server's work. */
  signal?: AbortSignal;
}

/**
 * Runs one generation and answers in Ollama's format.
 *
 * @example
 * ```ts
 * return await runGeneration({ lease, path: "/v1/chat/completions", body, events: () => new ChatEventParser(),
 *   shape, stream: true, startedAt: performance.now() });
 * ```
 */
export async function runGeneration(o: RunOptions): Promise<Response> {
  // A streamed answer stops llama-server's work when the client goes away (the stream is cancelled). Before
  // the response is returned, the request's signal says so (Deno.serve also aborts it after every response,
  // so it is listened to only until then).
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    o.lease.release();
  };
  let up: UpstreamStream;
  try {
    const body = await resumeConversation(o.lease.url, o.path, { ...o.body, stream: true });
    up = await openUpstreamOk(o.lease.url, o.path, JSON.stringify(body), o.signal);
  } catch (err) {
    release();
    throw err;
  }
  const totals = (m: Metrics): Metrics => ({
    total_duration: msToNs(performance.now() - o.startedAt),
    load_duration: msToNs(o.lease.loadMs),
    ...m,
  });
  let parser: EventParser;
  try {
    parser = await o.events();
  } catch (err) {
    up.close();
    release();
    throw err;
  }
  let begun = o.begun;
  const begin = () => {
    if (!begun) return;
    const b = begun;
    begun = undefined;
    b();
  };
  if (!o.stream) {
    const gone = () => up.close();
    o.signal?.addEventListener("abort", gone, { once: true });
    try {
      const all = { text: "", thinking: "", tools: [] as OllamaToolCall[], logprobs: [] as Logprob[] };
      const take = async (evs: GenEvent[]): Promise<Response | undefined> => {
        for (const ev of evs) {
          if ((ev.kind === "text" || ev.kind === "thinking") && ev.logprobs) {
            all.logprobs.push(...ev.logprobs);
          }
          if (ev.kind === "text") all.text += ev.text;
          else if (ev.kind === "thinking") all.thinking += ev.text;
          else if (ev.kind === "tools") all.tools.push(...ev.calls);
          else if (ev.kind === "done") {
            o.counted?.(ev.metrics);
            const extra = o.finish ? await o.finish(all.text) : {};
            return jsonResponse({ ...o.shape.final(all, ev.reason, totals(ev.metrics)), ...extra });
          }
        }
      };
      for await (const bytes of up.chunks) {
        begin();
        await take(parser.push(bytes));
      }
      const res = await take(parser.end());
      if (res) return res;
      throw new Error("llama-server ended the answer early");
    } finally {
      o.signal?.removeEventListener("abort", gone);
      up.close();
      release();
    }
  }

  // Streaming, in one loop without intermediate generators: every token passes here, so each piece read from
  // llama-server is parsed at once and the lines it completes go out in one write.
  const shape = o.shape;
  const textLine = shape.textLine;
  // The whole text, kept only when the final line needs it.
  let text = "";
  const keepText = o.finish !== undefined;
  const line = (ev: Exclude<GenEvent, { kind: "done" }>): Uint8Array => {
    if (ev.kind === "text") {
      if (keepText) text += ev.text;
      if (ev.raw !== undefined && textLine && !ev.logprobs) return textLine(ev.raw);
      return enc.encode(JSON.stringify(shape.partial({ text: ev.text, logprobs: ev.logprobs })) + "\n");
    }
    if (ev.kind === "thinking") {
      return enc.encode(JSON.stringify(shape.partial({ thinking: ev.text, logprobs: ev.logprobs })) + "\n");
    }
    return enc.encode(JSON.stringify(shape.partial({ tools: ev.calls })) + "\n");
  };
  const finalLine = async (ev: GenEvent & { kind: "done" }): Promise<Uint8Array> => {
    o.counted?.(ev.metrics);
    const last = shape.final({ text: "", thinking: "", tools: [] }, ev.reason, totals(ev.metrics));
    return enc.encode(JSON.stringify(o.finish ? { ...last, ...await o.finish(text) } : last) + "\n");
  };
  let ended = false;
  /** The next lines (one or more, each ending in a newline), or null when the answer is complete. */
  const next = async (): Promise<Uint8Array | null> => {
    let out: Uint8Array | null = null;
    while (out === null && !ended) {
      const r = await up.chunks.next();
      begin();
      const evs = r.done ? parser.end() : parser.push(r.value);
      if (r.done) ended = true;
      for (const ev of evs) {
        const bytes = ev.kind === "done" ? await finalLine(ev) : line(ev);
        out = out === null ? bytes : concatBytes([out, bytes]);
        if (ev.kind === "done") ended = true;
      }
    }
    return out;
  };
  return await ndjsonLinesResponse(next, () => {
    up.close();
    release();
  });
}

/** The answer to a load or unload request (empty prompt or messages): `done` at once with the reason. */
export function loadAnswer(base: Record<string, unknown>, reason: "load" | "unload"): Response {
  return jsonResponse({ ...base, created_at: nowRfc3339(), done: true, done_reason: reason });
}
