/**
 * Test helper: an answer that starts inside the thinking, split by hand at `</think>` as Ollama's thinking
 * parser splits it, for comparing with what the daemon splits.
 */
import { assert } from "./_assert.ts";

/** The thinking before `</think>` and the text after it, each without leading white space. */
export function splitByHand(raw: string | undefined = ""): { thinking: string; after: string } {
  const at = raw.indexOf("</think>");
  assert(
    at > 0,
    `the model did not close its thinking, so nothing here would be tested: ${JSON.stringify(raw)}`,
  );
  return { thinking: raw.slice(0, at).trimStart(), after: raw.slice(at + "</think>".length).trimStart() };
}
