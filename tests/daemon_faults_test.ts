/**
 * Faults, against real llama-servers: a client that goes away mid-answer stops llama-server's generation and
 * gives the runner back; a llama-server that dies after the stream began ends the NDJSON with an `{error}` line
 * and an OpenAI stream with an error event (the status is already 200), and the next request starts it again; a
 * model llama-server cannot load fails each request once with llama-server's reason; two daemons on one data
 * dir both serve a model.
 */
import { assert, assertEquals } from "./_assert.ts";
import { join } from "node:path";
import { post, runnerFetch, withDaemon } from "./_daemon.ts";
import { smolModelPath, testInstance } from "./_fixtures.ts";
import { resolvePaths } from "../lib/config/paths.ts";
import { parseConfig } from "../lib/config/load.ts";
import { startDaemon } from "../lib/daemon/daemon.ts";

const greedy = { temperature: 0, top_k: 1, seed: 42 };

Deno.test("daemon: a client that goes away, and a llama-server that dies mid-answer", async (t) => {
  await withDaemon({}, async ({ url, daemon }) => {
    await t.step("a client that goes away mid-answer stops llama-server's generation", async () => {
      // The runner serving the model (each request below loads it if it is not loaded).
      const busy = async () => {
        const server = daemon.ctx.scheduler.list().find((r) => !r.embedding);
        assert(server?.url, "no llama-server loaded");
        const slots = (await (await runnerFetch(server.url!, "/slots")).json()) as {
          is_processing: boolean;
        }[];
        return slots.filter((s) => s.is_processing).length;
      };
      const requests: [string, unknown][] = [
        ["/api/chat", {
          model: "smol",
          messages: [{ role: "user", content: "Tell a very long story." }],
          options: { ...greedy, num_predict: 2000 },
        }],
        ["/api/generate", {
          model: "smol",
          prompt: "Once upon a time",
          options: { ...greedy, num_predict: 2000 },
        }],
        ["/v1/chat/completions", {
          model: "smol",
          stream: true,
          max_tokens: 2000,
          messages: [{ role: "user", content: "Tell a very long story." }],
        }],
      ];
      for (const [path, body] of requests) {
        const r = await post(`${url}${path}`, body);
        const reader = r.body!.getReader();
        const first = await reader.read(); // generation has begun
        assert(!first.done && first.value.length > 0);
        assertEquals(await busy(), 1, `${path}: llama-server is not generating`);
        const gone = performance.now();
        await reader.cancel();
        // 2000 tokens take 15 s or more here; the slot must be free long before.
        while ((await busy()) > 0 && performance.now() - gone < 5000) {
          await new Promise((r) => setTimeout(r, 50));
        }
        assertEquals(
          await busy(),
          0,
          `${path}: llama-server still generating 5 s after the client went away`,
        );
      }
      // An answer not streamed: the client gives up before anything was sent.
      // llama-server notices a client that left a request not streamed when its wait for the answer times out
      // (each second), and every answer it sends, /slots' included, restarts that wait: so no polling here.
      for (const path of ["/api/chat", "/v1/chat/completions"]) {
        const quit = new AbortController();
        const r = post(`${url}${path}`, {
          model: "smol",
          stream: false,
          max_tokens: 2000,
          options: { ...greedy, num_predict: 2000 },
          messages: [{ role: "user", content: "Tell a very long story." }],
        }, { signal: quit.signal }).catch(() => undefined);
        let waited = 0;
        while ((await busy()) === 0 && waited++ < 100) await new Promise((r) => setTimeout(r, 50));
        assertEquals(await busy(), 1, `${path} (not streamed): llama-server is not generating`);
        const gone = performance.now();
        quit.abort();
        await r;
        await new Promise((r) => setTimeout(r, 3000));
        let left = await busy();
        while (left > 0 && performance.now() - gone < 5000) {
          await new Promise((r) => setTimeout(r, 1500));
          left = await busy();
        }
        assertEquals(left, 0, `${path} (not streamed): still generating 5 s after the client went away`);
      }
      // The runner was released each time: a new request is answered at once.
      const after = await post(`${url}/api/generate`, {
        model: "smol",
        prompt: "Hi",
        stream: false,
        options: { ...greedy, num_predict: 2 },
      });
      assertEquals(after.status, 200);
      assertEquals((await after.json()).done, true);
    });

    await t.step("an error after streaming began is a last NDJSON line {error} with status 200", async () => {
      const r = await post(`${url}/api/generate`, {
        model: "smol",
        prompt: "Write a very long story about a dragon.",
        options: { ...greedy, num_predict: 2000, num_ctx: 1024 },
      });
      assertEquals(r.status, 200);
      const reader = r.body!.getReader();
      await reader.read(); // the first line is there
      const pid = daemon.ctx.scheduler.list()[0].pid!;
      Deno.kill(pid, "SIGKILL");
      let rest = "";
      const dec = new TextDecoder();
      while (true) {
        const { value, done } = await reader.read();
        if (done) break;
        rest += dec.decode(value);
      }
      const lines = rest.trim().split("\n");
      const last = JSON.parse(lines[lines.length - 1]);
      assert(
        typeof last.error === "string" && last.error.length > 0,
        `last line: ${lines[lines.length - 1]}`,
      );
      // The next request starts the model again.
      const again = await post(`${url}/api/generate`, {
        model: "smol",
        prompt: "Hi",
        stream: false,
        options: { ...greedy, num_predict: 2 },
      });
      assertEquals(again.status, 200, await again.clone().text());
      assertEquals((await again.json()).done, true);
      assert(daemon.ctx.scheduler.list()[0].pid !== pid, "the dead llama-server is still listed");
    });

    await t.step("an OpenAI stream whose llama-server dies ends with an SSE error event", async () => {
      const r = await post(`${url}/v1/chat/completions`, {
        model: "smol",
        stream: true,
        max_tokens: 2000,
        temperature: 0,
        messages: [{ role: "user", content: "Write a very long story about a dragon." }],
      });
      assertEquals(r.status, 200);
      const reader = r.body!.getReader();
      const dec = new TextDecoder();
      let text = dec.decode((await reader.read()).value);
      const pid = daemon.ctx.scheduler.list()[0].pid!;
      Deno.kill(pid, "SIGKILL");
      while (true) {
        const { value, done } = await reader.read();
        if (done) break;
        text += dec.decode(value);
      }
      const events = text.split("\n\n").filter((e) => e.startsWith("data: ")).map((e) => e.slice(6));
      const last = JSON.parse(events[events.length - 1]);
      assert(
        typeof last.error?.message === "string" && last.error.message.length > 0,
        `last: ${text.slice(-300)}`,
      );
      // At once: the process may not be a zombie yet, but it has begun to exit, and that is what counts.
      const again = await post(`${url}/v1/chat/completions`, {
        model: "smol",
        max_tokens: 2,
        messages: [{ role: "user", content: "Hi" }],
      });
      assertEquals(again.status, 200, await again.clone().text());
      await (await post(`${url}/api/generate`, { model: "smol", keep_alive: 0 })).json();
    });
  });
});

Deno.test("daemon: a model llama-server cannot load fails once per request, with llama-server's reason", async () => {
  // A GGUF whose header is whole but whose tensor data is cut short: the index takes it, llama-server refuses.
  const dir = await Deno.makeTempDir({ prefix: "llama-mgr-broken-" });
  const broken = join(dir, "broken.gguf");
  const bytes = await Deno.readFile(await smolModelPath());
  await Deno.writeFile(broken, bytes.subarray(0, Math.floor(bytes.length / 2)));
  const logs: string[] = [];
  try {
    await withDaemon({ models: { "broken.gguf": broken }, logs }, async ({ url }) => {
      const attempts = () => logs.filter((l) => /loading broken/.test(l)).length;
      for (const n of [1, 2]) {
        const r = await post(`${url}/api/generate`, { model: "broken", prompt: "Hi", stream: false });
        const body = await r.json();
        assertEquals(r.status, 500, JSON.stringify(body));
        // llama-server's own words about the file, not just "failed".
        assert(/failed to load model|tensor|file bounds|data is not within/i.test(body.error), body.error);
        assertEquals(attempts(), n, `start attempts after request ${n}:\n${logs.join("\n")}`);
      }
      await new Promise((r) => setTimeout(r, 1000));
      assertEquals(attempts(), 2, "the daemon went on starting the model with no request");
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("daemon: two daemons on one data dir both serve the same model", async () => {
  await withDaemon({}, async ({ url, daemon, dataDir, modelsDir }) => {
    const { paths: shared, instance } = await testInstance();
    const paths = { ...resolvePaths({ dataDir, env: {} }), instancesDir: shared.instancesDir };
    const config = parseConfig({
      models: {
        dirs: [modelsDir],
        aliases: { smol: join(modelsDir, "smol.gguf") },
        sources: { huggingface: false, ollama: false, lmstudio: false, llamacpp: false },
      },
    });
    // Started by hand next to the first, on another port.
    const second = await startDaemon({
      paths,
      config,
      host: "127.0.0.1",
      port: 0,
      env: {},
      instance: instance.name,
      log: () => {},
    });
    try {
      const ask = (base: string) =>
        post(`${base}/api/generate`, {
          model: "smol",
          prompt: "Hi",
          stream: false,
          options: { ...greedy, num_predict: 4 },
        });
      const [a, b] = await Promise.all([ask(url), ask(second.url)]);
      assertEquals(a.status, 200, await a.clone().text());
      assertEquals(b.status, 200, await b.clone().text());
      const [ra, rb] = [daemon.ctx.scheduler.list()[0], second.ctx.scheduler.list()[0]];
      assert(ra.serverName !== rb.serverName && ra.pid !== rb.pid, `${ra.serverName} / ${rb.serverName}`);
      // Each daemon's runners are its own: closing the second leaves the first's serving.
      await second.close();
      const c = await ask(url);
      assertEquals(c.status, 200, await c.clone().text());
    } finally {
      await second.close();
    }
  });
});
