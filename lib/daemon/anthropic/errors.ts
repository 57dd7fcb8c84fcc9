/**
 * Anthropic's error body for `/v1/messages*`: `{"type": "error", "error": {"type", "message"}}`, with the
 * error type Anthropic gives each status, so Anthropic's clients raise their own exception classes.
 *
 * @module
 */
import { errorStatus } from "../http.ts";
import { QueueFullError } from "../runners/errors.ts";

/** Anthropic's error type for a status (its documented list; another 4xx is an invalid request). */
function errorType(status: number): string {
  switch (status) {
    case 401:
      return "authentication_error";
    case 403:
      return "permission_error";
    case 404:
      return "not_found_error";
    case 413:
      return "request_too_large";
    case 429:
      return "rate_limit_error";
    case 503:
    case 529:
      return "overloaded_error";
    default:
      return status >= 500 ? "api_error" : "invalid_request_error";
  }
}

/**
 * The body of Anthropic's error for a status, as text.
 *
 * @example
 * ```ts
 * anthropicErrorBody(404, "model \"x\" not found");
 * // {"type":"error","error":{"type":"not_found_error","message":"model \"x\" not found"}}
 * ```
 */
export function anthropicErrorBody(status: number, message: string): string {
  return JSON.stringify({ type: "error", error: { type: errorType(status), message } });
}

/**
 * Anthropic's error response for a status.
 *
 * @example
 * ```ts
 * return anthropicError(400, "model is required");
 * ```
 */
export function anthropicError(status: number, message: string): Response {
  return new Response(anthropicErrorBody(status, message), {
    status,
    headers: { "content-type": "application/json" },
  });
}

/**
 * Maps a thrown value to Anthropic's error response, with the status of `errorStatus`, except a full queue:
 * Anthropic's 529 `overloaded_error`, which its clients retry (Ollama's endpoints answer 503).
 *
 * @example
 * ```ts
 * const res = toAnthropicError(new Error("boom")); // 500, api_error
 * ```
 */
export function toAnthropicError(err: unknown): Response {
  const status = err instanceof QueueFullError ? 529 : errorStatus(err);
  return anthropicError(status, err instanceof Error ? err.message : String(err));
}
