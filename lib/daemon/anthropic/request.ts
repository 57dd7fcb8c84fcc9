/**
 * The checks a Messages API request passes before it is routed. llama-server is lenient with this API: it
 * answers a request without `messages` with a 500, and one whose `messages` is not a list, or has turns of
 * unknown roles, with an answer to an empty prompt. The daemon answers those as Anthropic does, with a 400
 * `invalid_request_error` that names the field; what llama-server checks itself (sampling fields' types) it
 * answers, in Anthropic's shape (./../openai/rewrite.ts).
 *
 * @module
 */
import { HttpError } from "../http.ts";

const ROLES = new Set(["user", "assistant"]);

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Throws a 400 {@linkcode HttpError} naming the first field of a `/v1/messages` (or, with `count`,
 * `/v1/messages/count_tokens`) request body that Anthropic's API would refuse.
 *
 * @example
 * ```ts
 * checkMessagesRequest({ model: "smol", max_tokens: 8, messages: [{ role: "user", content: "hi" }] }, false);
 * ```
 */
export function checkMessagesRequest(body: Record<string, unknown>, count: boolean): void {
  const bad = (message: string): never => {
    throw new HttpError(400, message);
  };
  if (!Array.isArray(body.messages)) bad("messages: a list of {role, content} turns is required");
  const messages = body.messages as unknown[];
  messages.forEach((m, i) => {
    if (!isObject(m)) bad(`messages.${i}: must be an object with role and content`);
    const turn = m as Record<string, unknown>;
    if (typeof turn.role !== "string" || !ROLES.has(turn.role)) {
      bad(`messages.${i}.role: must be "user" or "assistant" (the system prompt goes in "system")`);
    }
    if (typeof turn.content !== "string" && !Array.isArray(turn.content)) {
      bad(`messages.${i}.content: must be a string or a list of content blocks`);
    }
  });
  if (body.system !== undefined && typeof body.system !== "string" && !Array.isArray(body.system)) {
    bad("system: must be a string or a list of text blocks");
  }
  if (body.tools !== undefined && (!Array.isArray(body.tools) || !body.tools.every(isObject))) {
    bad("tools: must be a list of tool objects");
  }
  if (count) return;
  const max = body.max_tokens;
  if (max !== undefined && (typeof max !== "number" || !Number.isInteger(max) || max < 1)) {
    bad("max_tokens: must be a positive integer");
  }
  if (body.stream !== undefined && typeof body.stream !== "boolean") bad("stream: must be true or false");
  const stops = body.stop_sequences;
  if (stops !== undefined && (!Array.isArray(stops) || !stops.every((s) => typeof s === "string"))) {
    bad("stop_sequences: must be a list of strings");
  }
}
