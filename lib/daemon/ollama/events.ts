/**
 * llama-server's streamed answers (`/v1/chat/completions` and `/completion` server-sent events) read as one
 * simple sequence of events: text, thinking, finished tool calls, and the end with llama-server's timings
 * turned into Ollama's counters (durations in nanoseconds) and `done_reason`.
 *
 * @module
 */
import { sseEvents } from "../upstream.ts";
import { msToNs } from "../http.ts";
import type { DoneReason, Metrics } from "../types.ts";

/** An Ollama-style tool call (arguments as an object). */
export interface OllamaToolCall {
  /** Call id from llama-server. */
  id?: string;
  /** The function called. */
  function: { index: number; name: string; arguments: Record<string, unknown> };
}

/** One event of a generation. */
export type GenEvent =
  | { kind: "text"; text: string }
  | { kind: "thinking"; text: string }
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

function parseArgs(text: string): Record<string, unknown> {
  if (!text.trim()) return {};
  try {
    const v = JSON.parse(text);
    return v && typeof v === "object" && !Array.isArray(v) ? v : { value: v };
  } catch {
    return { _raw: text };
  }
}

/**
 * Reads a streamed `/v1/chat/completions` answer. Tool-call fragments are collected and given as one `tools`
 * event when the answer ends, as Ollama sends whole calls.
 *
 * @example
 * ```ts
 * for await (const ev of chatEvents(up.chunks)) if (ev.kind === "text") console.log(ev.text);
 * ```
 */
export async function* chatEvents(res: AsyncIterable<Uint8Array>): AsyncGenerator<GenEvent> {
  const calls: { id?: string; name: string; args: string }[] = [];
  let finish: string | null = null;
  let timings: Timings | undefined;
  let chunks = 0;
  for await (const ev of sseEvents(res)) {
    if (ev.timings) timings = ev.timings;
    const choice = ev.choices?.[0];
    if (!choice) continue;
    const d = choice.delta ?? {};
    if (typeof d.reasoning_content === "string" && d.reasoning_content) {
      yield { kind: "thinking", text: d.reasoning_content };
    }
    if (typeof d.content === "string" && d.content) {
      chunks++;
      yield { kind: "text", text: d.content };
    }
    if (Array.isArray(d.tool_calls)) {
      for (const tc of d.tool_calls) {
        const i = typeof tc.index === "number" ? tc.index : calls.length;
        calls[i] ??= { name: "", args: "" };
        if (tc.id) calls[i].id = tc.id;
        if (tc.function?.name) calls[i].name += tc.function.name;
        if (tc.function?.arguments) calls[i].args += tc.function.arguments;
      }
    }
    if (choice.finish_reason) finish = choice.finish_reason;
  }
  if (finish === null) throw new Error("llama-server ended the answer without finishing it");
  if (calls.length) {
    yield {
      kind: "tools",
      calls: calls.filter(Boolean).map((c, index) => ({
        ...(c.id ? { id: c.id } : {}),
        function: { index, name: c.name, arguments: parseArgs(c.args) },
      })),
    };
  }
  yield {
    kind: "done",
    reason: finish === "length" ? "length" : "stop",
    metrics: timingsToMetrics(timings, { evalCount: chunks }),
  };
}

/**
 * Reads a streamed `/completion` (or `/infill`) answer.
 *
 * @example
 * ```ts
 * for await (const ev of completionEvents(up.chunks)) console.log(ev);
 * ```
 */
export async function* completionEvents(res: AsyncIterable<Uint8Array>): AsyncGenerator<GenEvent> {
  let stopType = "";
  let timings: Timings | undefined;
  let chunks = 0;
  for await (const ev of sseEvents(res)) {
    if (typeof ev.content === "string" && ev.content) {
      chunks++;
      yield { kind: "text", text: ev.content };
    }
    if (ev.timings) timings = ev.timings;
    if (ev.stop) stopType = ev.stop_type || "eos";
  }
  if (!stopType) throw new Error("llama-server ended the answer without finishing it");
  yield {
    kind: "done",
    reason: stopType === "limit" ? "length" : "stop",
    metrics: timingsToMetrics(timings, { evalCount: chunks }),
  };
}
