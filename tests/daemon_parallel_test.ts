/**
 * Ollama's concurrency settings, read as Ollama reads them: OLLAMA_NUM_PARALLEL gives each model that many
 * llama-server slots, each with the whole context; OLLAMA_MAX_LOADED_MODELS caps the models loaded at once;
 * OLLAMA_MAX_QUEUE bounds the requests waiting, beyond which Ollama's 503 answers; a value that is not a
 * positive whole number stops the daemon with an error that names the variable.
 */
import { assert, assertEquals, assertRejects, assertStringIncludes } from "./_assert.ts";
import { pidAlive, pidRss } from "../lib/util/process.ts";
import { listServers } from "../lib/server/mod.ts";
import { post, runnerFetch, withDaemon } from "./_daemon.ts";
import { smolModelPath, tempDir } from "./_fixtures.ts";
import { startDaemon } from "../lib/daemon/daemon.ts";
import { resolvePaths } from "../lib/config/paths.ts";
import { parseConfig } from "../lib/config/load.ts";
import { UserError } from "../lib/util/errors.ts";
import { BUSY_MESSAGE } from "../lib/daemon/runners/errors.ts";

/** POSTs through the harness and returns the JSON answer, which must be a 200. */
async function postOk(url: string, path: string, body: unknown): Promise<any> {
  const res = await post(url + path, body);
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
      await postOk(url, "/api/generate", { model: "smol", prompt: "", options: { num_ctx: 1024 } });
      const ps = await (await fetch(url + "/api/ps")).json();
      assertEquals(ps.models[0].context_length, 1024);
      const runner = daemon.ctx.scheduler.list()[0];
      const props = await (await runnerFetch(runner.url!, "/props")).json();
      assertEquals(props.total_slots, 2);
      assertEquals(props.default_generation_settings.n_ctx, 1024, "each slot has the whole context");
      // Both slots answer.
      const answers = await Promise.all([0, 1].map((i) =>
        postOk(url, "/api/generate", {
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
        await postOk(url, "/api/generate", { model: "first", prompt: "" });
        await postOk(url, "/api/generate", { model: "second", prompt: "" });
        const ps = await (await fetch(url + "/api/ps")).json();
        assertEquals(ps.models.map((m: { name: string }) => m.name), ["second:latest"]);
      },
    );
  },
});

Deno.test({
  name:
    "daemon: past OLLAMA_MAX_QUEUE a request gets Ollama's 503, and finished or abandoned requests free their place",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    // One slot, one model, a queue of one: two requests may be in flight, a third is refused.
    const env = { OLLAMA_NUM_PARALLEL: "1", OLLAMA_MAX_LOADED_MODELS: "1", OLLAMA_MAX_QUEUE: "1" };
    await withDaemon({ env }, async ({ url }) => {
      await postOk(url, "/api/generate", { model: "smol", prompt: "" });
      const long = () =>
        post(url + "/api/generate", {
          model: "smol",
          prompt: "Tell a long story",
          stream: false,
          options: { num_predict: 200, temperature: 0 },
        });
      const first = long();
      const second = long();
      await new Promise((r) => setTimeout(r, 300));
      const third = await long();
      assertEquals(third.status, 503);
      assertEquals((await third.json()).error, BUSY_MESSAGE);
      for (const r of await Promise.all([first, second])) {
        assertEquals(r.status, 200);
        assertEquals((await r.json()).done, true);
      }
      // A streamed answer the client walks away from gives its place back.
      const streamed = await post(url + "/api/generate", {
        model: "smol",
        prompt: "Tell a long story",
        options: { num_predict: 200 },
      });
      const reader = streamed.body!.getReader();
      await reader.read();
      await reader.cancel();
      await new Promise((r) => setTimeout(r, 300));
      const again = await Promise.all([long(), long()]);
      assertEquals(again.map((r) => r.status), [200, 200]);
      await Promise.all(again.map((r) => r.body?.cancel()));
    });
  },
});

Deno.test({
  name:
    "daemon: OLLAMA_FLASH_ATTENTION and OLLAMA_KV_CACHE_TYPE reach llama-server (a q8_0 cache takes less memory)",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const run = (env: Record<string, string>) =>
      withDaemon({ env }, async ({ url, dataDir }) => {
        const answer = await postOk(url, "/api/generate", {
          model: "smol",
          prompt: "Say hi",
          stream: false,
          options: { num_predict: 4, num_ctx: 8192 },
        });
        assertEquals(answer.eval_count, 4);
        const [server] = await listServers(resolvePaths({ dataDir, env: {} }));
        const ps = await (await fetch(url + "/api/ps")).json();
        return {
          argv: server.argv.join(" "),
          rss: pidRss(server.pid!) ?? 0,
          size: ps.models[0].size as number,
        };
      });
    const f16 = await run({});
    const q8 = await run({ OLLAMA_FLASH_ATTENTION: "1", OLLAMA_KV_CACHE_TYPE: "q8_0" });
    assertStringIncludes(q8.argv, "-fa on");
    assertStringIncludes(q8.argv, "-ctk q8_0 -ctv q8_0");
    assert(!f16.argv.includes("-ctk"), f16.argv);
    // SmolLM2's f16 KV cache at 8192 tokens is 180 MiB; q8_0 is about half.
    const mib = (b: number) => Math.round(b / 1048576);
    assert(
      f16.rss - q8.rss > 60 * 1048576,
      `llama-server RSS f16 ${mib(f16.rss)} MiB, q8_0 ${mib(q8.rss)} MiB`,
    );
    assert(
      f16.size - q8.size > 60 * 1048576,
      `/api/ps size f16 ${mib(f16.size)} MiB, q8_0 ${mib(q8.size)} MiB`,
    );
  },
});

/** A generate request whose model cannot be loaded: a 500, whose error is returned. */
async function failedLoad(url: string): Promise<{ error: string }> {
  const res = await post(url + "/api/generate", { model: "smol", prompt: "hi", stream: false });
  const body = await res.json();
  assertEquals(res.status, 500, JSON.stringify(body));
  return body;
}

Deno.test({
  name:
    "daemon: a model that does not load within OLLAMA_LOAD_TIMEOUT is an error, and its server is stopped",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await withDaemon({ env: { OLLAMA_LOAD_TIMEOUT: "50ms" } }, async ({ url, dataDir }) => {
      const body = await failedLoad(url);
      assertStringIncludes(body.error, "not ready after 50 ms");
      const servers = await listServers(resolvePaths({ dataDir, env: {} }));
      assertEquals(
        servers.filter((s) => s.pid && pidAlive(s.pid)).length,
        0,
        "a llama-server was left running",
      );
    });
  },
});

Deno.test({
  name: "daemon: a preset naming an instance that is not installed is a 500 that names it",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const config = { presets: { smol: { model: "smol", instance: "rocm-not-here" } } };
    await withDaemon({ config }, async ({ url }) => {
      const body = await failedLoad(url);
      assertStringIncludes(body.error, "rocm-not-here");
    });
  },
});

Deno.test("daemon: a bad concurrency, flash-attention or KV-cache setting is an error naming it", async () => {
  const d = await tempDir();
  try {
    const paths = resolvePaths({ dataDir: d.path, env: {} });
    const config = parseConfig({});
    const bad = [["OLLAMA_NUM_PARALLEL", "two"], ["OLLAMA_MAX_LOADED_MODELS", "0"], [
      "OLLAMA_MAX_QUEUE",
      "-5",
    ]];
    for (const [name, value] of bad) {
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
