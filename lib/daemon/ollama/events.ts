/**
 * llama-server's streamed answers (`/v1/chat/completions` and `/completion` server-sent events) read as one
 * simple sequence of events: text, thinking, finished tool calls, and the end with llama-server's timings
 * turned into Ollama's counters (durations in nanoseconds) and `done_reason`.
 *
 * @module
 */
import { parseSseData, SseSplitter } from "../upstream/sse.ts";
import { msToNs } from "../http.ts";
import type { DoneReason, Logprob, Metrics, TokenLogprob } from "../types.ts";

/** An Ollama-style tool call (arguments as an object). */
export interface OllamaToolCall {
  /** Call id from llama-server. */
  id?: string;
  /** The function called. */
  function: { index: number; name: string; arguments: Record<string, unknown> };
}

/**
 * One event of a generation. A text event read on the fast path (see {@linkcode CHAT_TEXT_DELTA}) also carries
 * the bytes of the JSON string literal llama-server wrote (`raw`), so that a line can be written without
 * encoding the text again. Text and thinking carry the log-probabilities of the tokens they came from, when
 * the request asked for them (an event with log-probabilities but no text is a text event with text "").
 */
export type GenEvent =
  | { kind: "text"; readonly text: string; raw?: Uint8Array; logprobs?: Logprob[] }
  | { kind: "thinking"; text: string; logprobs?: Logprob[] }
  | { kind: "tools"; calls: OllamaToolCall[] }
  | { kind: "done"; reason: DoneReason; metrics: Metrics };

interface Timings {
  cache_n?: number;
  prompt_n?: number;
  prompt_ms?: number;
  predicted_n?: number;
  predicted_ms?: number;
}

/** llama-server timings as Ollama metrics (without total/load durations). */
export function timingsToMetrics(t: Timings | undefined, fallback: { evalCount?: number } = {}): Metrics {
  return {
    prompt_eval_count: (t?.prompt_n ?? 0) + (t?.cache_n ?? 0),
    prompt_eval_duration: msToNs(t?.prompt_ms ?? 0),
    eval_count: t?.predicted_n ?? fallback.evalCount ?? 0,
    eval_duration: msToNs(t?.predicted_ms ?? 0),
  };
}

function tokenLogprob(e: any): TokenLogprob {
  const out: TokenLogprob = {
    token: typeof e?.token === "string" ? e.token : "",
    logprob: typeof e?.logprob === "number" ? e.logprob : 0,
  };
  if (Array.isArray(e?.bytes)) out.bytes = e.bytes;
  return out;
}

/**
 * llama-server's log-probabilities (`logprobs.content` of a chat chunk, `completion_probabilities` of a
 * completion event: `{id, token, bytes, logprob, top_logprobs}` each) in Ollama's shape, keeping `top` of the
 * likeliest tokens at each place (none when `top` is 0).
 *
 * @example
 * ```ts
 * ollamaLogprobs([{ id: 1, token: "Hi", bytes: [72, 105], logprob: -0.1, top_logprobs: [] }], 0);
 * ```
 */
export function ollamaLogprobs(entries: unknown, top: number): Logprob[] {
  if (!Array.isArray(entries)) return [];
  return entries.map((e) => {
    const lp: Logprob = tokenLogprob(e);
    if (top > 0) {
      lp.top_logprobs = Array.isArray(e?.top_logprobs) ? e.top_logprobs.slice(0, top).map(tokenLogprob) : [];
    }
    return lp;
  });
}

function parseArgs(text: string): Record<string, unknown> {
  if (!text.trim()) return {};
  try {
    const v = JSON.parse(text);
    return v && typeof v === "object" && !Array.isArray(v) ? v : { value: v };
  } catch {
    return { _raw: text };
  }
}

/** A JSON string literal (group 1 in the patterns below), escaped as JSON requires: no raw control characters. */
const JSON_STRING = String.raw`("(?:[^"\\\x00-\x1f]|\\.)*")`;

/**
 * The fast path: nearly every event of a streamed chat answer is one plain piece of text, and llama-server
 * writes it the same way every time. Such an event is recognised whole by this pattern (anchored at both ends,
 * so an event with anything more, such as reasoning, tool calls, timings or log-probabilities, does not match)
 * and its text is taken as written, instead of parsing the event into objects and encoding the text again for
 * the line. Measured on a live stream, this is most of the daemon's own per-token work beyond relaying bytes.
 */
export const CHAT_TEXT_DELTA = new RegExp(
  String.raw`^\{"choices":\[\{"finish_reason":null,"index":0,"delta":\{"content":` + JSON_STRING +
    String.raw`\}\}\],"created":\d+,"id":"[\w-]*","model":"(?:[^"\\]|\\.)*","system_fingerprint":"[\w.-]*",` +
    String.raw`"object":"chat\.completion\.chunk"\}$`,
);

/** The fast path for `/completion` (see {@linkcode CHAT_TEXT_DELTA}): a piece of text that is not the last. */
export const COMPLETION_TEXT = new RegExp(
  String.raw`^\{"index":0,"content":` + JSON_STRING +
    String
      .raw`,"tokens":\[[\d,]*\],"stop":false,"id_slot":-?\d+,"tokens_predicted":\d+,"tokens_evaluated":\d+\}$`,
);

const enc = new TextEncoder();
const dec = new TextDecoder();

/** One part of a byte pattern (see {@linkcode bytePattern}). */
type Part =
  | Uint8Array // these bytes exactly
  | "string" // a JSON string literal, the captured part
  | "inner" // the inside of a JSON string literal (after its opening quote, up to its closing one)
  | "digits" // one or more digits
  | "int" // an optional minus, then digits
  | "list" // digits and commas, possibly none
  | "word"; // letters, digits, '_', '-' and '.', possibly none

/**
 * A byte pattern of literal pieces (text between `{…}` placeholders) and placeholders, the same events as the
 * regular expressions match, recognised without decoding the bytes.
 */
function bytePattern(template: string): Part[] {
  const parts: Part[] = [];
  for (const piece of template.split(/(\{(?:string|inner|digits|int|list|word)\})/)) {
    if (!piece) continue;
    const m = piece.match(/^\{(\w+)\}$/);
    parts.push(m ? m[1] as Part : enc.encode(piece));
  }
  return parts;
}

const HEX = new Uint8Array(128);
for (const c of "0123456789abcdefABCDEF") HEX[c.charCodeAt(0)] = 1;
/** After a backslash in a JSON string: `" \ / b f n r t` (u is checked with its four hex digits). */
const ESCAPES = new Uint8Array(128);
for (const c of '"\\/bfnrt') ESCAPES[c.charCodeAt(0)] = 1;

/** The end of a JSON string's inside starting at `i` (the index of its closing quote), or -1. */
function stringEnd(b: Uint8Array, i: number): number {
  while (i < b.length) {
    const c = b[i];
    if (c === 34) return i;
    if (c < 32) return -1;
    if (c === 92) {
      const e = b[i + 1];
      if (e === 117) {
        if (i + 5 >= b.length || !HEX[b[i + 2]] || !HEX[b[i + 3]] || !HEX[b[i + 4]] || !HEX[b[i + 5]]) {
          return -1;
        }
        i += 6;
      } else if (e !== undefined && e < 128 && ESCAPES[e]) i += 2;
      else return -1;
    } else i++;
  }
  return -1;
}

/**
 * Matches `parts` at `b[from]`: the end of the match and the captured string literal (quotes included), or
 * null.
 */
function matchBytes(
  parts: Part[],
  b: Uint8Array,
  from: number,
): { end: number; start: number; stop: number } | null {
  let i = from;
  let start = -1;
  let stop = -1;
  for (const p of parts) {
    if (typeof p !== "string") {
      if (i + p.length > b.length) return null;
      for (let k = 0; k < p.length; k++) if (b[i + k] !== p[k]) return null;
      i += p.length;
    } else if (p === "string" || p === "inner") {
      if (p === "string") {
        if (b[i] !== 34) return null;
        start = i++;
      }
      const q = stringEnd(b, i);
      if (q < 0) return null;
      if (p === "string") stop = q + 1;
      i = p === "string" ? q + 1 : q;
    } else {
      const at = i;
      if (p === "int" && b[i] === 45) i++;
      const digitsFrom = i;
      while (i < b.length) {
        const c = b[i];
        const ok = (c >= 48 && c <= 57) || (p === "list" && c === 44) ||
          (p === "word" &&
            ((c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95 || c === 45 || c === 46));
        if (!ok) break;
        i++;
      }
      if ((p === "digits" || p === "int") && i === digitsFrom) return null;
      if (p === "list" && i > at && b[i - 1] === 44) return null;
    }
  }
  return { end: i, start, stop };
}

/** {@linkcode CHAT_TEXT_DELTA} as a byte pattern, for a whole SSE event (`data: …` and its blank line). */
const CHAT_TEXT_BYTES = bytePattern(
  'data: {"choices":[{"finish_reason":null,"index":0,"delta":{"content":{string}}}],"created":{digits},' +
    '"id":"{word}","model":"{inner}","system_fingerprint":"{word}","object":"chat.completion.chunk"}\n\n',
);

/** {@linkcode COMPLETION_TEXT} as a byte pattern, for a whole SSE event. */
const COMPLETION_TEXT_BYTES = bytePattern(
  'data: {"index":0,"content":{string},"tokens":[{list}],"stop":false,"id_slot":{int},' +
    '"tokens_predicted":{digits},"tokens_evaluated":{digits}}\n\n',
);

/**
 * A text event recognised on the bytes: its text is decoded only if asked for (a streamed answer never asks).
 */
export class UndecodedText {
  readonly kind = "text";
  /** The JSON string literal's bytes, quotes included. */
  readonly raw: Uint8Array;
  /** Wraps the literal's bytes. */
  constructor(raw: Uint8Array) {
    this.raw = raw;
  }
  /** The text, decoded now. */
  get text(): string {
    return JSON.parse(dec.decode(this.raw));
  }
}

/**
 * Reads bytes that are whole plain text events, every one of them, without decoding: their text events, or
 * null when any event in them is something else (then the bytes take the ordinary way).
 */
function rawTextEvents(parts: Part[], b: Uint8Array): { events: GenEvent[]; count: number } | null {
  const events: GenEvent[] = [];
  let count = 0;
  let i = 0;
  while (i < b.length) {
    const m = matchBytes(parts, b, i);
    if (!m) return null;
    if (m.stop - m.start > 2) {
      events.push(new UndecodedText(b.subarray(m.start, m.stop)));
      count++;
    }
    i = m.end;
  }
  return { events, count };
}

/** A text event from a matched fast-path literal, or null for an empty one. */
function fastText(json: string): GenEvent | null {
  if (json.length === 2) return null; // ""
  // Without escapes the text is the literal's inside; otherwise JSON decodes it.
  const text = json.indexOf("\\") < 0 ? json.slice(1, -1) : JSON.parse(json);
  return { kind: "text", text, raw: enc.encode(json) };
}

/**
 * Turns a streamed answer's bytes into events as they arrive, synchronously: the daemon's streaming loop calls
 * {@linkcode EventParser.push} for each piece llama-server sends and {@linkcode EventParser.end} when the
 * answer is complete.
 */
export interface EventParser {
  /** The events the next bytes complete. */
  push(bytes: Uint8Array): GenEvent[];
  /** The last events (tool calls, the end with its metrics); throws if the answer was not finished. */
  end(): GenEvent[];
}

/**
 * What both parsers share: the SSE payloads as they complete, the fast path for plain text events (`fast`),
 * and every other event parsed and handed to {@linkcode SseEventParser.event}.
 */
abstract class SseEventParser implements EventParser {
  /** Text events so far (the eval count when llama-server sends no timings). */
  protected chunks = 0;
  /** How many of the likeliest tokens to keep with each log-probability; undefined: none were asked for. */
  protected top: number | undefined;
  #sse = new SseSplitter();
  #fast: RegExp;
  #fastBytes: Part[];

  constructor(fast: RegExp, fastBytes: Part[], top: number | undefined) {
    this.#fast = fast;
    this.#fastBytes = fastBytes;
    this.top = top;
  }

  /**
   * Adds the log-probabilities of an event to the last text or thinking event it gave (`from` is where its
   * events start in `out`), or as a text event of its own when it gave none.
   */
  protected attachLogprobs(entries: unknown, out: GenEvent[], from: number): void {
    if (this.top === undefined) return;
    const logprobs = ollamaLogprobs(entries, this.top);
    if (!logprobs.length) return;
    for (let i = out.length - 1; i >= from; i--) {
      const ev = out[i];
      if (ev.kind === "text" || ev.kind === "thinking") {
        ev.logprobs = logprobs;
        return;
      }
    }
    out.push({ kind: "text", text: "", logprobs });
  }

  /** The events the next bytes complete. */
  push(bytes: Uint8Array): GenEvent[] {
    // llama-server sends each event in a piece of its own: when nothing is held over and the piece is plain
    // text events only, they are recognised on the bytes, without decoding them.
    if (this.#sse.idle && bytes.length) {
      const raw = rawTextEvents(this.#fastBytes, bytes);
      if (raw) {
        this.chunks += raw.count;
        return raw.events;
      }
    }
    const out: GenEvent[] = [];
    // After [DONE] the body is still read to its end, so a kept-alive connection can be reused.
    if (this.#sse.done) return out;
    for (const data of this.#sse.push(bytes)) {
      const fast = this.#fast.exec(data);
      if (!fast) {
        this.event(parseSseData(data), out);
        continue;
      }
      const ev = fastText(fast[1]);
      if (ev) {
        this.chunks++;
        out.push(ev);
      }
    }
    return out;
  }

  /** Takes one parsed event that is not plain text, adding what it yields to `out`. */
  protected abstract event(ev: any, out: GenEvent[]): void;

  /** The last events. */
  abstract end(): GenEvent[];
}

/**
 * Parser for a streamed `/v1/chat/completions` answer. Tool-call fragments are collected and given as one
 * `tools` event when the answer ends, as Ollama sends whole calls. `top` (how many of the likeliest tokens to
 * keep at each place; undefined when the request asked for no log-probabilities) keeps the ones llama-server
 * sends.
 *
 * @example
 * ```ts
 * const p = new ChatEventParser();
 * const events = [...p.push(bytes), ...p.end()];
 * ```
 */
export class ChatEventParser extends SseEventParser {
  #calls: { id?: string; name: string; args: string }[] = [];
  #finish: string | null = null;
  #timings: Timings | undefined;

  /** A parser for one answer. */
  constructor(top?: number) {
    super(CHAT_TEXT_DELTA, CHAT_TEXT_BYTES, top);
  }

  protected event(ev: any, out: GenEvent[]): void {
    if (ev.timings) this.#timings = ev.timings;
    const choice = ev.choices?.[0];
    if (!choice) return;
    const from = out.length;
    const d = choice.delta ?? {};
    if (typeof d.reasoning_content === "string" && d.reasoning_content) {
      out.push({ kind: "thinking", text: d.reasoning_content });
    }
    if (typeof d.content === "string" && d.content) {
      this.chunks++;
      out.push({ kind: "text", text: d.content });
    }
    if (Array.isArray(d.tool_calls)) {
      const calls = this.#calls;
      for (const tc of d.tool_calls) {
        const i = typeof tc.index === "number" ? tc.index : calls.length;
        calls[i] ??= { name: "", args: "" };
        if (tc.id) calls[i].id = tc.id;
        if (tc.function?.name) calls[i].name += tc.function.name;
        if (tc.function?.arguments) calls[i].args += tc.function.arguments;
      }
    }
    if (choice.logprobs) this.attachLogprobs(choice.logprobs.content, out, from);
    if (choice.finish_reason) this.#finish = choice.finish_reason;
  }

  /** Tool calls, then the end. */
  end(): GenEvent[] {
    if (this.#finish === null) throw new Error("llama-server ended the answer without finishing it");
    const out: GenEvent[] = [];
    if (this.#calls.length) {
      out.push({
        kind: "tools",
        calls: this.#calls.filter(Boolean).map((c, index) => ({
          ...(c.id ? { id: c.id } : {}),
          function: { index, name: c.name, arguments: parseArgs(c.args) },
        })),
      });
    }
    out.push({
      kind: "done",
      reason: this.#finish === "length" ? "length" : "stop",
      metrics: timingsToMetrics(this.#timings, { evalCount: this.chunks }),
    });
    return out;
  }
}

/**
 * Parser for a streamed `/completion` (or `/infill`) answer.
 *
 * @example
 * ```ts
 * const p = new CompletionEventParser();
 * const events = [...p.push(bytes), ...p.end()];
 * ```
 */
export class CompletionEventParser extends SseEventParser {
  #stopType = "";
  #timings: Timings | undefined;

  /** A parser for one answer. */
  constructor(top?: number) {
    super(COMPLETION_TEXT, COMPLETION_TEXT_BYTES, top);
  }

  protected event(ev: any, out: GenEvent[]): void {
    const from = out.length;
    if (typeof ev.content === "string" && ev.content) {
      this.chunks++;
      out.push({ kind: "text", text: ev.content });
    }
    if (ev.completion_probabilities) this.attachLogprobs(ev.completion_probabilities, out, from);
    if (ev.timings) this.#timings = ev.timings;
    if (ev.stop) this.#stopType = ev.stop_type || "eos";
  }

  /** The end. */
  end(): GenEvent[] {
    if (!this.#stopType) throw new Error("llama-server ended the answer without finishing it");
    return [{
      kind: "done",
      reason: this.#stopType === "limit" ? "length" : "stop",
      metrics: timingsToMetrics(this.#timings, { evalCount: this.chunks }),
    }];
  }
}

/** Runs a parser over a whole stream of bytes. */
async function* parseAll(parser: EventParser, res: AsyncIterable<Uint8Array>): AsyncGenerator<GenEvent> {
  for await (const bytes of res) yield* parser.push(bytes);
  yield* parser.end();
}

/**
 * Reads a streamed `/v1/chat/completions` answer (see {@linkcode ChatEventParser}).
 *
 * @example
 * ```ts
 * for await (const ev of chatEvents(up.chunks)) if (ev.kind === "text") console.log(ev.text);
 * ```
 */
export function chatEvents(res: AsyncIterable<Uint8Array>): AsyncGenerator<GenEvent> {
  return parseAll(new ChatEventParser(), res);
}

/**
 * Reads a streamed `/completion` (or `/infill`) answer (see {@linkcode CompletionEventParser}).
 *
 * @example
 * ```ts
 * for await (const ev of completionEvents(up.chunks)) console.log(ev);
 * ```
 */
export function completionEvents(res: AsyncIterable<Uint8Array>): AsyncGenerator<GenEvent> {
  return parseAll(new CompletionEventParser(), res);
}
