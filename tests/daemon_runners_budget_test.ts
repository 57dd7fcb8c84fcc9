/**
 * The scheduler with real llama-servers and a CPU budget that holds two runners and not three: four names for
 * SmolLM2 (each its own copy of the file, so its own runner), each loaded with 1,024 tokens and one slot. What
 * the unit tests show with a fake launcher, here with real processes: two models stay loaded together; a third
 * unloads the idle one used least recently (not the one loaded first), whose conversation is saved and restored
 * when it comes back; a model generating is never unloaded and its answer runs to its end; when both loaded
 * models are busy, requests for others wait and load in the order they came, and one past `OLLAMA_MAX_QUEUE`
 * gets Ollama's busy answer at once; a model that expires gives its bytes back to the next one.
 */
import { assert, assertEquals } from "./_assert.ts";
import { post, withDaemon } from "./_daemon.ts";
import { smolModelPath } from "./_fixtures.ts";
import { describeModel, estimateMemory, readGgufHeader } from "../lib/gguf/mod.ts";
import { BUSY_MESSAGE } from "../lib/daemon/runners/errors.ts";

const CTX = 1024;
const greedy = { temperature: 0, top_k: 1, seed: 42 };
const SYSTEM = "You are a patient teacher. " +
  "Answer in full sentences and give one example for every idea you explain. ".repeat(6);

Deno.test({
  name: "daemon: two runners fit the budget; LRU eviction, busy ones kept, the queue in order, KV restored",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const smol = await smolModelPath();
    const facts = describeModel(await readGgufHeader(smol, { skipArraysOver: 256 }));
    // What the launcher counts for one runner: 1,024 tokens, one slot (OLLAMA_NUM_PARALLEL=1), an f16 cache.
    const need = estimateMemory(facts, { ctx: CTX, parallel: 1 }).totalBytes;
    const budget = Math.round(need * 2.5);
    const logs: string[] = [];
    await withDaemon({
      models: { "a.gguf": smol, "b.gguf": smol, "c.gguf": smol, "d.gguf": smol },
      config: { memory: { budgets: { CPU: budget } } },
      // max_loaded_models stays at 3: only the bytes keep a third runner out. In flight at most
      // OLLAMA_MAX_QUEUE + one slot x 3 models = 4.
      env: { OLLAMA_CONTEXT_LENGTH: String(CTX), OLLAMA_NUM_PARALLEL: "1", OLLAMA_MAX_QUEUE: "1" },
      logs,
    }, async ({ url, daemon }) => {
      const sched = daemon.ctx.scheduler;
      const names = async () =>
        ((await (await fetch(`${url}/api/ps`)).json()).models as { name: string }[]).map((m) => m.name)
          .sort();
      const pidOf = (name: string) => sched.list().find((r) => r.name === `${name}:latest`)?.pid;
      const refsOf = (name: string) => sched.list().find((r) => r.name === `${name}:latest`)?.refs ?? 0;
      const evictions = () =>
        logs.flatMap((l) =>
          /evicting (\w+):latest to make room for (\w+):latest/.exec(l)?.slice(1, 3).join(">") ?? []
        );
      const until = async (what: string, ok: () => boolean, ms = 20_000) => {
        const t0 = performance.now();
        while (!ok()) {
          if (performance.now() - t0 > ms) {
            throw new Error(`timed out waiting for ${what}\n${logs.join("\n")}`);
          }
          await new Promise((r) => setTimeout(r, 20));
        }
      };
      /** A short answer, not streamed; resolves with the time it came. */
      const ask = async (model: string) => {
        const r = await post(`${url}/api/generate`, {
          model,
          prompt: "Hi",
          stream: false,
          options: { ...greedy, num_predict: 4 },
        });
        const body = await r.json();
        return { status: r.status, body, at: performance.now() };
      };
      /** A chat turn of `b`, not streamed; fails the step unless it is answered. */
      const chatB = async (messages: { role: string; content: string }[], numPredict: number) => {
        const r = await post(`${url}/api/chat`, {
          model: "b",
          messages,
          stream: false,
          options: { ...greedy, num_predict: numPredict },
        });
        const body = await r.json();
        assertEquals(r.status, 200, JSON.stringify(body));
        return body;
      };
      /**
       * A long streamed story: resolves once its first line is there (the model is generating), with a reader of
       * the rest that resolves with every line.
       */
      const story = async (model: string) => {
        const r = await post(`${url}/api/generate`, {
          model,
          prompt: "Write a very long story about a dragon who learns to bake bread.",
          options: { ...greedy, num_predict: 100 },
        });
        if (r.status !== 200) throw new Error(`${model}: ${r.status} ${await r.text()}`);
        const reader = r.body!.pipeThrough(new TextDecoderStream()).getReader();
        let text = (await reader.read()).value ?? "";
        const rest = (async () => {
          while (true) {
            const { value, done } = await reader.read();
            if (done) break;
            text += value;
          }
          return { lines: text.trim().split("\n").map((l) => JSON.parse(l)), at: performance.now() };
        })();
        return { rest };
      };
      const turn1 = [{ role: "system", content: SYSTEM }, {
        role: "user",
        content: "Explain what a hash table is, in a few sentences.",
      }];
      let answer1 = "";

      await t.step("two fit together; a third unloads the idle one used least recently", async () => {
        assertEquals((await ask("a")).status, 200);
        answer1 = (await chatB(turn1, 24)).message.content;
        assertEquals(await names(), ["a:latest", "b:latest"]);
        const ps = await (await fetch(`${url}/api/ps`)).json();
        assertEquals(ps.llama_mgr.devices, [{ name: "CPU", budget, used: 2 * need }]);
        // a was loaded first, but used last: b goes.
        assertEquals((await ask("a")).status, 200);
        const c = await ask("c");
        assertEquals(c.status, 200, JSON.stringify(c.body));
        assertEquals(await names(), ["a:latest", "c:latest"]);
        assertEquals(evictions(), ["b>c"]);
        assert(
          logs.some((l) => l.includes("kv cache: saved slot")),
          `b's conversation not saved:\n${logs.join("\n")}`,
        );
      });

      await t.step("a model generating is not unloaded, and its answer runs to its end", async () => {
        const pidA = pidOf("a");
        const long = await story("a");
        assertEquals(refsOf("a"), 1, JSON.stringify(sched.list().map((r) => [r.name, r.state, r.refs])));
        // b comes back continuing its conversation: c (idle) makes room, a (busy) stays.
        const turn2 = [...turn1, { role: "assistant", content: answer1 }, {
          role: "user",
          content: "Now explain how collisions are handled.",
        }];
        const body = await chatB(turn2, 8);
        assert(body.message.content.length > 0);
        assertEquals(evictions(), ["b>c", "c>b"]);
        assert(
          logs.some((l) => l.includes("kv cache: restored")),
          `b's conversation not restored:\n${logs.join("\n")}`,
        );
        const { lines } = await long.rest;
        const last = lines[lines.length - 1];
        assertEquals(last.error, undefined, JSON.stringify(last));
        assertEquals(last.done, true, JSON.stringify(last));
        assert(last.eval_count > 50, `a's story stopped after ${last.eval_count} tokens`);
        assertEquals(pidOf("a"), pidA, "a's llama-server was restarted");
        assertEquals(await names(), ["a:latest", "b:latest"]);
      });

      await t.step("with both busy, others wait and load in order; past OLLAMA_MAX_QUEUE a 503", async () => {
        const first = await story("a"); // generating
        const second = story("b"); // loaded: waits for a's turn on the CPU, busy meanwhile
        await until("b's request", () => refsOf("b") === 1);
        const c = ask("c");
        await until("c waiting", () => sched.waiting() === 2);
        const d = ask("d");
        await until("d waiting", () => sched.waiting() === 3);
        // 4 in flight: a fifth, even for a loaded model, is refused at once.
        const e = await ask("a");
        assertEquals(e.status, 503, JSON.stringify(e.body));
        assertEquals(e.body.error, BUSY_MESSAGE);
        assertEquals(await names(), ["a:latest", "b:latest"], "a busy model was unloaded");
        const [ra, rb, rc, rd] = [await first.rest, await (await second).rest, await c, await d];
        for (const r of [ra, rb]) assertEquals(r.lines[r.lines.length - 1].done, true);
        assertEquals([rc.status, rd.status], [200, 200], JSON.stringify([rc.body, rd.body]));
        // c came first: it took a's place once a was done, d took b's after b.
        assert(rc.at < rd.at, "d was answered before c");
        assertEquals(evictions().slice(2), ["a>c", "b>d"]);
        assertEquals(await names(), ["c:latest", "d:latest"]);
      });

      await t.step(
        "an expired model gives its bytes back: the next one loads without an eviction",
        async () => {
          const r = await post(`${url}/api/generate`, { model: "d", keep_alive: "1s" });
          assertEquals(r.status, 200, await r.text());
          await until("d's expiry", () => sched.list().length === 1, 10_000);
          assertEquals(await names(), ["c:latest"]);
          assertEquals((await ask("a")).status, 200);
          assertEquals(await names(), ["a:latest", "c:latest"]);
          assertEquals(evictions().length, 4, "a model was evicted though d's bytes were free");
        },
      );
    });
  },
});
