/**
 * The sampling defaults the daemon sends when neither the request nor the model says anything are Ollama's.
 */
import { assertEquals } from "./_assert.ts";
import { OLLAMA_SAMPLING_DEFAULTS } from "../lib/daemon/options.ts";
import { samplingFields } from "../lib/daemon/ollama/to_llama.ts";

/**
 * `DefaultOptions()` in ollama/ollama's api/types.go at commit fb30760996871fa9460115c753afd2c60d4ab0f7
 * (2026-08-21, after v0.33.0-rc2): [Ollama's option, its default, the llama-server field the daemon sends].
 * RepeatPenalty there is 1.0 since 6a261db7 ("api: stop applying repeat_penalty 1.1 to models that don't set
 * one", first in v0.32.10); MinP is not set, so it is Go's zero value.
 */
const OLLAMA_DEFAULT_OPTIONS: [string, number, string][] = [
  ["num_predict", -1, "n_predict"],
  ["num_keep", 4, "n_keep"],
  ["temperature", 0.8, "temperature"],
  ["top_k", 40, "top_k"],
  ["top_p", 0.9, "top_p"],
  ["min_p", 0, "min_p"],
  ["typical_p", 1.0, "typical_p"],
  ["repeat_last_n", 64, "repeat_last_n"],
  ["repeat_penalty", 1.0, "repeat_penalty"],
  ["presence_penalty", 0.0, "presence_penalty"],
  ["frequency_penalty", 0.0, "frequency_penalty"],
  ["seed", -1, "seed"],
];

Deno.test("sampling defaults are Ollama's DefaultOptions", async (t) => {
  const sent = samplingFields({});
  for (const [option, value, field] of OLLAMA_DEFAULT_OPTIONS) {
    await t.step(`${option} defaults to ${value} (${field})`, () => {
      assertEquals(sent[field], value);
    });
  }
  await t.step("nothing else is sent by default", () => {
    assertEquals(
      Object.keys(OLLAMA_SAMPLING_DEFAULTS).sort(),
      OLLAMA_DEFAULT_OPTIONS.map(([, , field]) => field).sort(),
    );
    assertEquals(Object.keys(sent).sort(), Object.keys(OLLAMA_SAMPLING_DEFAULTS).sort());
  });
  await t.step("a request's options win over the defaults", () => {
    const mine = samplingFields({ repeat_penalty: 1.3, n_predict: 8, seed: 7 });
    assertEquals([mine.repeat_penalty, mine.n_predict, mine.max_tokens, mine.seed], [1.3, 8, 8, 7]);
  });
});
