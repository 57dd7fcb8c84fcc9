/**
 * Answers that end early, against a real llama-server: a client that goes away mid-answer stops
 * llama-server's generation and gives the runner back, and a llama-server that dies after the stream began
 * ends the NDJSON with an `{error}` line (the status is already 200).
 */
import { assert, assertEquals } from "./_assert.ts";
import { post, runnerFetch, withDaemon } from "./_daemon.ts";

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
      await (await post(`${url}/api/generate`, { model: "smol", keep_alive: 0 })).json();
    });
  });
});
