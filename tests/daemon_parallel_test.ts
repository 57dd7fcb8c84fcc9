/**
 * Ollama's concurrency settings, read as Ollama reads them: OLLAMA_NUM_PARALLEL gives each model that many
 * llama-server slots, each with the whole context; OLLAMA_MAX_LOADED_MODELS caps the models loaded at once;
 * a value that is not a positive whole number stops the daemon with an error that names the variable.
 */
import { assertEquals, assertRejects } from "./_assert.ts";
import { withDaemon } from "./clients/harness.ts";
import { smolModelPath, tempDir } from "./_fixtures.ts";
import { startDaemon } from "../lib/daemon/server.ts";
import { resolvePaths } from "../lib/config/paths.ts";
import { parseConfig } from "../lib/config/load.ts";
import { UserError } from "../lib/util/errors.ts";

async function post(url: string, path: string, body: unknown): Promise<any> {
  const res = await fetch(url + path, { method: "POST", body: JSON.stringify(body) });
  const json = await res.json();
  assertEquals(res.status, 200, JSON.stringify(json));
  return json;
}

Deno.test({
  name: "daemon: OLLAMA_NUM_PARALLEL gives each request slot the whole num_ctx",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await withDaemon({ env: { OLLAMA_NUM_PARALLEL: "2" } }, async ({ url, daemon }) => {
      await post(url, "/api/generate", { model: "smol", prompt: "", options: { num_ctx: 1024 } });
      const ps = await (await fetch(url + "/api/ps")).json();
      assertEquals(ps.models[0].context_length, 1024);
      const runner = daemon.ctx.scheduler.list()[0];
      const props = await (await fetch(runner.url! + "/props")).json();
      assertEquals(props.total_slots, 2);
      assertEquals(props.default_generation_settings.n_ctx, 1024, "each slot has the whole context");
      // Both slots answer.
      const answers = await Promise.all([0, 1].map((i) =>
        post(url, "/api/generate", {
          model: "smol",
          prompt: `Count to ${i + 3}`,
          stream: false,
          options: { num_ctx: 1024, num_predict: 8, temperature: 0 },
        })
      ));
      for (const a of answers) assertEquals(a.eval_count, 8);
    });
  },
});

Deno.test({
  name: "daemon: OLLAMA_MAX_LOADED_MODELS=1 unloads the idle model to load another",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const smol = await smolModelPath();
    await withDaemon(
      { models: { "first.gguf": smol, "second.gguf": smol }, env: { OLLAMA_MAX_LOADED_MODELS: "1" } },
      async ({ url }) => {
        await post(url, "/api/generate", { model: "first", prompt: "" });
        await post(url, "/api/generate", { model: "second", prompt: "" });
        const ps = await (await fetch(url + "/api/ps")).json();
        assertEquals(ps.models.map((m: { name: string }) => m.name), ["second:latest"]);
      },
    );
  },
});

Deno.test("daemon: a bad OLLAMA_NUM_PARALLEL or OLLAMA_MAX_LOADED_MODELS is an error naming it", async () => {
  const d = await tempDir();
  try {
    const paths = resolvePaths({ dataDir: d.path, env: {} });
    const config = parseConfig({});
    for (const [name, value] of [["OLLAMA_NUM_PARALLEL", "two"], ["OLLAMA_MAX_LOADED_MODELS", "0"]]) {
      await assertRejects(
        () => startDaemon({ paths, config, port: 0, env: { [name]: value } }),
        UserError,
        `${name}='${value}' is not a positive whole number`,
      );
    }
  } finally {
    await d.cleanup();
  }
});
