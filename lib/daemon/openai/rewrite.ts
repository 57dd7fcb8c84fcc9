/**
 * What the daemon changes in llama-server's `/v1` answers, on their bytes, everything else passed through as
 * sent: the `model` named as the request asked for it (llama-server names the model it was started with),
 * and on Anthropic's Messages API the `stop_reason` of an answer ended by a stop sequence (`stop_sequence`,
 * where llama-server says `end_turn`), and llama-server's own errors in Anthropic's shape.
 *
 * llama-server writes its JSON compactly, keys in a fixed order, so a key is found by its bytes: `"model":"`
 * can only be a key there, since a quote inside a string is escaped. An event stream is rewritten event by
 * event (llama-server sends each in a piece of its own, so nothing waits in the usual case); any other answer
 * is not streamed by llama-server and is rewritten whole at its end.
 *
 * @module
 */
import { concatBytes } from "../../util/bytes.ts";
import { anthropicErrorBody } from "../anthropic/errors.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const NL = 0x0a;
const MODEL_KEY = enc.encode('"model":"');
const END_TURN = enc.encode('"stop_reason":"end_turn","stop_sequence":"');
const END_TURN_VALUE = enc.encode('"stop_reason":"end_turn"');
const STOP_SEQUENCE_VALUE = enc.encode('"stop_reason":"stop_sequence"');

/**
 * Options for {@linkcode answerRewrite}.
 *
 * @example
 * ```ts
 * const options: RewriteOptions = { model: "smol", anthropic: true, stream: false, status: 200 };
 * ```
 */
export interface RewriteOptions {
  /** The model name as the request gave it. */
  model: string;
  /** Anthropic's Messages API (`/v1/messages*`). */
  anthropic: boolean;
  /** The answer is an event stream (`text/event-stream`). */
  stream: boolean;
  /** The answer's HTTP status (an Anthropic error body is rewritten in Anthropic's shape). */
  status: number;
}

/**
 * Rewrites an answer piece by piece.
 *
 * @example
 * ```ts ignore
 * const rw: AnswerRewrite = answerRewrite({ model: "smol", anthropic: false, stream: true, status: 200 });
 * for await (const piece of upstream) send(rw.push(piece));
 * send(rw.end());
 * ```
 */
export interface AnswerRewrite {
  /** The bytes to send for the next piece of the answer (empty while an event is not complete yet). */
  push(chunk: Uint8Array): Uint8Array;
  /** The bytes left to send at the end of the answer. */
  end(): Uint8Array;
}

/** Whether `hay` holds `needle` at `at`. */
function startsAt(hay: Uint8Array, needle: Uint8Array, at: number): boolean {
  if (at + needle.length > hay.length) return false;
  for (let k = 0; k < needle.length; k++) if (hay[at + k] !== needle[k]) return false;
  return true;
}

function sameBytes(a: Uint8Array, from: number, to: number, b: Uint8Array): boolean {
  if (to - from !== b.length) return false;
  for (let k = 0; k < b.length; k++) if (a[from + k] !== b[k]) return false;
  return true;
}

/**
 * `bytes` with every `"model"` value replaced by `name` (already JSON-escaped, without quotes) and, for
 * Anthropic, `end_turn` by `stop_sequence` where a stop sequence ended the answer; `bytes` itself when nothing
 * changes.
 *
 * @example
 * ```ts
 * const out = rewriteBytes(new TextEncoder().encode('{"model":"file.gguf"}'), new TextEncoder().encode("smol"), false);
 * new TextDecoder().decode(out); // {"model":"smol"}
 * ```
 */
export function rewriteBytes(bytes: Uint8Array, name: Uint8Array, anthropic: boolean): Uint8Array {
  // A plain loop: per streamed event (some 250 bytes, 30 quotes) it costs less than a native indexOf per quote.
  let parts: Uint8Array[] | undefined;
  let total = 0;
  let copied = 0;
  const n = bytes.length;
  for (let i = 0; i < n; i++) {
    if (bytes[i] !== QUOTE) continue;
    const next = bytes[i + 1];
    if (next === 0x6d /* m */ && startsAt(bytes, MODEL_KEY, i)) {
      const from = i + MODEL_KEY.length;
      let to = from;
      while (to < n && bytes[to] !== QUOTE) to += bytes[to] === BACKSLASH ? 2 : 1;
      if (to >= n) break; // cut off: left as it is
      if (!sameBytes(bytes, from, to, name)) {
        (parts ??= []).push(bytes.subarray(copied, from), name);
        total += from - copied + name.length;
        copied = to;
      }
      i = to;
    } else if (anthropic && next === 0x73 /* s */ && startsAt(bytes, END_TURN, i)) {
      (parts ??= []).push(bytes.subarray(copied, i), STOP_SEQUENCE_VALUE);
      total += i - copied + STOP_SEQUENCE_VALUE.length;
      copied = i + END_TURN_VALUE.length;
      i = copied - 1;
    }
  }
  if (!parts) return bytes;
  parts.push(bytes.subarray(copied));
  total += n - copied;
  const out = new Uint8Array(total);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** An Anthropic error body for llama-server's error answer (OpenAI's shape), unless it is one already. */
function anthropicErrorOf(status: number, body: Uint8Array): Uint8Array {
  let message = dec.decode(body).trim();
  try {
    const parsed = JSON.parse(message);
    if (parsed?.type === "error") return body;
    if (typeof parsed?.error?.message === "string") message = parsed.error.message;
    else if (typeof parsed?.error === "string") message = parsed.error;
  } catch { /* not JSON: its text is the message */ }
  return enc.encode(anthropicErrorBody(status, message || `llama-server answered ${status}`));
}

/**
 * A rewriter for one answer.
 *
 * @example
 * ```ts
 * const rw = answerRewrite({ model: "smol", anthropic: false, stream: true, status: 200 });
 * const out = rw.push(new TextEncoder().encode('data: {"model":"file.gguf"}\n\n'));
 * new TextDecoder().decode(out); // data: {"model":"smol"}\n\n
 * ```
 */
export function answerRewrite(options: RewriteOptions): AnswerRewrite {
  const name = enc.encode(JSON.stringify(options.model).slice(1, -1));
  const { anthropic } = options;
  let held: Uint8Array[] = [];
  if (!options.stream) {
    return {
      push(chunk) {
        held.push(chunk);
        return new Uint8Array(0);
      },
      end() {
        const body = concatBytes(held);
        held = [];
        if (anthropic && options.status >= 400) return anthropicErrorOf(options.status, body);
        return rewriteBytes(body, name, anthropic);
      },
    };
  }
  return {
    push(chunk) {
      // Events end with a blank line; a piece that does not end one is held until the rest comes.
      const n = chunk.length;
      if (held.length === 0 && n >= 2 && chunk[n - 1] === NL && chunk[n - 2] === NL) {
        return rewriteBytes(chunk, name, anthropic);
      }
      held.push(chunk);
      const all = concatBytes(held);
      let cut = -1;
      for (let i = all.length - 1; i > 0; i--) {
        if (all[i] === NL && all[i - 1] === NL) {
          cut = i + 1;
          break;
        }
      }
      if (cut < 0) {
        held = [all];
        return new Uint8Array(0);
      }
      held = cut < all.length ? [all.slice(cut)] : [];
      return rewriteBytes(all.subarray(0, cut), name, anthropic);
    },
    end() {
      const rest = concatBytes(held);
      held = [];
      return rewriteBytes(rest, name, anthropic);
    },
  };
}
