/**
 * Ollama request pieces turned into llama-server's OpenAI-style chat request: messages (images as
 * `image_url` parts, tool calls with JSON-string arguments, tool results with their call id), `format` as
 * `response_format`, `think` as llama.cpp's template switches, and sampling options with Ollama's defaults.
 *
 * @module
 */
import { HttpError } from "../http.ts";
import type { Message, ToolCall } from "../types.ts";
import { OLLAMA_SAMPLING_DEFAULTS } from "../options.ts";

/** Guesses an image's MIME type from its first bytes (base64), for the data URL llama-server decodes. */
export function imageMime(b64: string): string {
  const head = b64.slice(0, 16);
  if (head.startsWith("iVBOR")) return "image/png";
  if (head.startsWith("/9j/")) return "image/jpeg";
  if (head.startsWith("R0lGOD")) return "image/gif";
  if (head.startsWith("UklGR")) return "image/webp";
  if (head.startsWith("Qk")) return "image/bmp";
  return "application/octet-stream";
}

/** An image given as base64 (or already a data URL) as an OpenAI `image_url` content part. */
export function imagePart(image: string): Record<string, unknown> {
  const url = image.startsWith("data:") ? image : `data:${imageMime(image)};base64,${image}`;
  return { type: "image_url", image_url: { url } };
}

function argumentsText(args: ToolCall["function"]["arguments"]): string {
  if (args === undefined) return "{}";
  return typeof args === "string" ? args : JSON.stringify(args);
}

/**
 * Converts Ollama messages to OpenAI chat messages. A `tool` message without `tool_call_id` is matched to the
 * latest earlier call of the same `tool_name` (Ollama clients often send only the name).
 *
 * @example
 * ```ts
 * toOpenAIMessages([{ role: "user", content: "hi" }]);
 * ```
 */
export function toOpenAIMessages(messages: Message[]): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  const calls: { id: string; name: string }[] = [];
  let n = 0;
  for (const m of messages) {
    const content = m.content ?? "";
    const msg: Record<string, unknown> = { role: m.role };
    if (m.images?.length) {
      msg.content = [...(content ? [{ type: "text", text: content }] : []), ...m.images.map(imagePart)];
    } else {
      msg.content = content;
    }
    if (m.thinking) msg.reasoning_content = m.thinking;
    if (m.tool_calls?.length) {
      msg.tool_calls = m.tool_calls.map((tc) => {
        const id = tc.id || `call_${n++}`;
        calls.push({ id, name: tc.function.name });
        return {
          id,
          type: "function",
          function: { name: tc.function.name, arguments: argumentsText(tc.function.arguments) },
        };
      });
    }
    if (m.role === "tool") {
      let id = m.tool_call_id ?? undefined;
      if (!id && m.tool_name) id = [...calls].reverse().find((c) => c.name === m.tool_name)?.id;
      if (!id && calls.length) id = calls[calls.length - 1].id;
      if (id) msg.tool_call_id = id;
      if (m.tool_name) msg.name = m.tool_name;
    }
    out.push(msg);
  }
  return out;
}

/**
 * `format` as llama-server's `response_format`: `"json"` -> any JSON object, a schema object -> that schema,
 * empty -> none. Anything else is Ollama's 400.
 *
 * @example
 * ```ts
 * responseFormat({ type: "object", properties: { a: { type: "string" } } });
 * ```
 */
export function responseFormat(format: unknown): Record<string, unknown> | undefined {
  if (format === undefined || format === null || format === "") return undefined;
  if (format === "json") return { type: "json_object" };
  if (typeof format === "object" && !Array.isArray(format)) {
    return { type: "json_schema", json_schema: { name: "response", schema: format, strict: true } };
  }
  throw new HttpError(400, `invalid format: expected "json" or a valid JSON schema`);
}

/** The JSON schema llama-server's `/completion` takes for a `format` (raw generate). */
export function completionSchema(format: unknown): Record<string, unknown> | undefined {
  const rf = responseFormat(format);
  if (!rf) return undefined;
  if (rf.type === "json_object") return { json_schema: {} };
  return { json_schema: (rf.json_schema as { schema: unknown }).schema };
}

/**
 * `think` as llama-server fields: on -> the template's `enable_thinking` and reasoning parsed into
 * `reasoning_content`; off -> thinking disabled; a level -> `reasoning_effort`. A template translated from an
 * Ollama Go template also gets Ollama's `.IsThinkSet` and `.ThinkLevel` (`ollama_is_think_set`,
 * `ollama_think_level`).
 *
 * @example
 * ```ts
 * thinkFields(false);
 * // { chat_template_kwargs: { enable_thinking: false, ollama_is_think_set: true, ollama_think_level: "" },
 * //   reasoning_effort: "none" }
 * ```
 */
export function thinkFields(think: unknown): Record<string, unknown> {
  if (think === undefined || think === null) return {};
  const kwargs = (on: boolean, level: string) => ({
    chat_template_kwargs: { enable_thinking: on, ollama_is_think_set: true, ollama_think_level: level },
  });
  if (think === false) return { ...kwargs(false, ""), reasoning_effort: "none" };
  if (think === true) return { ...kwargs(true, "medium"), reasoning_format: "deepseek" };
  return {
    ...kwargs(true, String(think)),
    reasoning_effort: think === "max" ? "high" : String(think),
    reasoning_format: "deepseek",
  };
}

/** Sampling fields for a request: Ollama's defaults, then the request's options. */
export function samplingFields(sampling: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...OLLAMA_SAMPLING_DEFAULTS, ...sampling };
  if (typeof out.n_predict === "number" && out.n_predict >= 0) out.max_tokens = out.n_predict;
  return out;
}

/**
 * Log-probabilities asked for (`logprobs`, `top_logprobs`): how many of the likeliest tokens to give at each
 * place (0 = the chosen token's only), or undefined when none are asked for. `top_logprobs` outside 0 to 20 is
 * Ollama's 400 (checked whether or not `logprobs` is set, as Ollama does).
 *
 * @example
 * ```ts
 * logprobsWanted({ logprobs: true, top_logprobs: 3 }); // 3
 * ```
 */
export function logprobsWanted(
  body: { logprobs?: boolean | null; top_logprobs?: number | null },
): number | undefined {
  const top = body.top_logprobs ?? 0;
  if (top < 0 || top > 20) throw new HttpError(400, "top_logprobs must be between 0 and 20");
  return body.logprobs ? top : undefined;
}

/**
 * The llama-server fields that ask for log-probabilities: `logprobs`/`top_logprobs` on `/v1/chat/completions`,
 * `n_probs` on `/completion` and `/infill`. llama-server gives the chosen token's log-probability only with at
 * least one of the likeliest tokens, so at least one is asked for (and left out of the answer when `top` is 0).
 */
export function logprobFields(top: number | undefined, api: "chat" | "completion"): Record<string, unknown> {
  if (top === undefined) return {};
  const n = Math.max(1, top);
  return api === "chat" ? { logprobs: true, top_logprobs: n } : { n_probs: n };
}
