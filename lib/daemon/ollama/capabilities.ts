/**
 * What a request asks of a model (thinking, images) checked against what the model can do, with Ollama's 400s.
 *
 * @module
 */
import { HttpError } from "../http.ts";

/**
 * Checks `think` and images against what the model can do (Ollama's 400s).
 *
 * @example
 * ```ts
 * checkCapabilities("smollm2", ["completion"], { think: true }); // throws: "smollm2" does not support thinking
 * ```
 */
export function checkCapabilities(
  name: string,
  caps: string[],
  want: { think?: unknown; images?: boolean },
): void {
  const known = caps.length > 0;
  if (
    known && want.think !== undefined && want.think !== null && want.think !== false &&
    !caps.includes("thinking")
  ) {
    throw new HttpError(400, `"${name}" does not support thinking`);
  }
  if (known && want.images && !caps.includes("vision")) {
    throw new HttpError(
      400,
      `"${name}" does not support images (no vision projector found next to the model)`,
    );
  }
}
