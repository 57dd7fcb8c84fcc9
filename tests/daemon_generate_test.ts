/**
 * `/api/generate` against a real llama-server and a real model: NDJSON with a final line of nanosecond timings,
 * one JSON object when not streamed, raw prompts continued as written, and the conversation given back as a
 * context that a next request goes on from.
 */
import { assert, assertEquals, assertStringIncludes } from "./_assert.ts";
import { post, readNdjson, runnerFetch, withDaemon } from "./_daemon.ts";
import { GenerateResponseSchema } from "../lib/daemon/types.ts";

const greedy = { temperature: 0, top_k: 1, seed: 42 };

Deno.test("daemon: /api/generate against a real llama-server", async (t) => {
  await withDaemon({}, async ({ url, daemon }) => {
    await t.step("streamed /api/generate is NDJSON with a final line of nanosecond timings", async () => {
      const r = await post(`${url}/api/generate`, {
        model: "smol",
        prompt: "Why is the sky blue?",
        options: { ...greedy, num_predict: 8 },
      });
      assertEquals(r.status, 200);
      assertEquals(r.headers.get("content-type"), "application/x-ndjson");
      const lines = await readNdjson(r);
      assert(lines.length >= 2);
      for (const l of lines) GenerateResponseSchema.parse(l);
      const last = lines[lines.length - 1];
      assertEquals(last.done, true);
      assertEquals(last.done_reason, "length");
      assertEquals(last.eval_count, 8);
      assert(Number.isInteger(last.total_duration) && last.total_duration > last.eval_duration);
      assert(last.eval_duration > 1_000_000, `eval_duration ${last.eval_duration} is not in nanoseconds`);
      assert(last.prompt_eval_count > 5);
      assert(lines.slice(0, -1).every((l) => l.done === false));
      assert(lines.map((l) => l.response).join("").length > 0);
    });

    await t.step(
      "/api/generate gives the conversation back as context, and goes on from a context",
      async () => {
        const ask = { model: "smol", prompt: "My name is Ada.", options: { ...greedy, num_predict: 6 } };
        const one = GenerateResponseSchema.parse(
          await (await post(`${url}/api/generate`, { ...ask, stream: false })).json(),
        );
        const context = one.context!;
        assert(Array.isArray(context) && context.every(Number.isInteger), JSON.stringify(one));
        // The tokens are the templated prompt and the answer, as the model's own llama-server reads them.
        const server = daemon.ctx.scheduler.list().find((r) => !r.embedding)!;
        const text = (await (await runnerFetch(server.url!, "/detokenize", { tokens: context })).json())
          .content as string;
        assertStringIncludes(text, "My name is Ada.");
        assert(
          text.endsWith(one.response),
          `${JSON.stringify(text)} does not end with ${JSON.stringify(one.response)}`,
        );
        assert(context.length > one.eval_count! + 4);
        // Streamed, the last line carries it.
        const lines = await readNdjson(await post(`${url}/api/generate`, ask));
        assertEquals(lines.at(-1)!.context, context);
        assert(lines.slice(0, -1).every((l) => !("context" in l)));
        // Going on: the whole conversation is the prompt, and the next context extends this one.
        const next = GenerateResponseSchema.parse(
          await (await post(`${url}/api/generate`, {
            ...ask,
            prompt: "What is my name?",
            context,
            stream: false,
          })).json(),
        );
        assert(next.prompt_eval_count! > context.length, `${next.prompt_eval_count} <= ${context.length}`);
        assertEquals(next.context!.slice(0, context.length), context);
        // Raw prompts have no context, as in Ollama; raw with a context is refused.
        const raw = await (await post(`${url}/api/generate`, { ...ask, raw: true, stream: false })).json();
        assertEquals(raw.context, undefined);
        const both = await post(`${url}/api/generate`, { ...ask, raw: true, context });
        assertEquals(both.status, 400);
        assertStringIncludes((await both.json()).error, "context");
      },
    );

    await t.step("/api/generate with stream false answers one JSON object", async () => {
      const r = await post(`${url}/api/generate`, {
        model: "smol",
        prompt: "Count: one, two,",
        stream: false,
        options: { ...greedy, num_predict: 4 },
      });
      assertStringIncludes(r.headers.get("content-type") ?? "", "application/json");
      const g = GenerateResponseSchema.parse(await r.json());
      assertEquals(g.done, true);
      assertEquals(g.done_reason, "length");
      assert(g.response.length > 0);
    });

    await t.step("raw /api/generate continues the prompt as written", async () => {
      const r = await post(`${url}/api/generate`, {
        model: "smol",
        prompt: "The capital of France is",
        raw: true,
        stream: false,
        options: { ...greedy, num_predict: 3 },
      });
      const g = await r.json();
      assertStringIncludes(g.response, "Paris");
    });
  });
});
