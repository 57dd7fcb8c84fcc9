/**
 * `/api/chat` and the OpenAI endpoints against a real llama-server and a real model: streamed messages, the
 * streaming fast path on llama-server's own text events, logprobs in Ollama's shape (for `/api/generate`
 * too), JSON-schema formats, and `/v1` with its `[DONE]` and OpenAI-shaped errors.
 */
import { assert, assertEquals, assertStringIncludes } from "./_assert.ts";
import { post, readNdjson, runnerFetch, withDaemon } from "./_daemon.ts";
import {
  ChatResponseSchema,
  GenerateResponseSchema,
  type Logprob,
  OpenAIErrorSchema,
} from "../lib/daemon/types.ts";
import {
  CHAT_TEXT_DELTA,
  ChatEventParser,
  COMPLETION_TEXT,
  CompletionEventParser,
  type EventParser,
  UndecodedText,
} from "../lib/daemon/ollama/events.ts";

const greedy = { temperature: 0, top_k: 1, seed: 42 };

Deno.test("daemon: /api/chat and the OpenAI endpoints against a real llama-server", async (t) => {
  await withDaemon({}, async ({ url, daemon }) => {
    await t.step("/api/chat streams messages and ends with done_reason stop or length", async () => {
      const r = await post(`${url}/api/chat`, {
        model: "smol",
        messages: [{ role: "user", content: "Say hello." }],
        options: { ...greedy, num_predict: 6 },
      });
      const lines = await readNdjson(r);
      for (const l of lines) ChatResponseSchema.parse(l);
      assert(lines.every((l) => l.message.role === "assistant"));
      const last = lines[lines.length - 1];
      assert(["stop", "length"].includes(last.done_reason));
      assert(lines.map((l) => l.message.content).join("").trim().length > 0);
    });

    await t.step(
      "llama-server's own text events take the fast path, for chat and for raw completion",
      async () => {
        // The model's own llama-server, loaded here if it is not yet.
        await (await post(`${url}/api/generate`, { model: "smol" })).json();
        const server = daemon.ctx.scheduler.list().find((r) => !r.embedding);
        assert(server?.url, "no llama-server loaded");
        const events = async (path: string, body: unknown) => {
          const text = await (await runnerFetch(server.url!, path, { ...(body as object), stream: true }))
            .text();
          return text.split("\n").filter((l) => l.startsWith("data: {")).map((l) => l.slice(6));
        };
        const chat = await events("/v1/chat/completions", {
          messages: [{ role: "user", content: 'Say "hi" with quotes and an é.' }],
          max_tokens: 12,
          ...greedy,
        });
        const texts = chat.filter((e) => JSON.parse(e).choices?.[0]?.delta?.content);
        assert(texts.length >= 10, `only ${texts.length} text events`);
        for (const e of texts) assert(CHAT_TEXT_DELTA.test(e), `not on the fast path: ${e}`);
        // Sent one event per piece, as llama-server sends them, they are read without decoding.
        const raw = (parser: EventParser, events: string[]) =>
          events.flatMap((e) => parser.push(new TextEncoder().encode(`data: ${e}\n\n`)))
            .filter((ev) => ev instanceof UndecodedText).length;
        assertEquals(raw(new ChatEventParser(), texts), texts.length);
        assert(
          !CHAT_TEXT_DELTA.test(chat.at(-1)!),
          "the final event (finish reason, timings) must go the full way",
        );
        const comp = await events("/completion", { prompt: "Once upon a time", n_predict: 6, ...greedy });
        const ctexts = comp.filter((e) => JSON.parse(e).content && !JSON.parse(e).stop);
        assert(ctexts.length >= 5, `only ${ctexts.length} completion text events`);
        for (const e of ctexts) assert(COMPLETION_TEXT.test(e), `not on the fast path: ${e}`);
        assertEquals(raw(new CompletionEventParser(), ctexts), ctexts.length);
        assert(!COMPLETION_TEXT.test(comp.at(-1)!));
      },
    );

    await t.step(
      "logprobs come back in Ollama's shape: per line when streamed, all together when not",
      async () => {
        const dec = new TextDecoder();
        /** Checks one token's entry: a log-probability, its bytes, and (greedy) itself as the likeliest. */
        const checkEntry = (e: Logprob, top: number) => {
          assert(e.logprob <= 0, `logprob ${e.logprob} above 0`);
          assert(Array.isArray(e.bytes) && e.bytes.length > 0, `no bytes: ${JSON.stringify(e)}`);
          const asText = dec.decode(new Uint8Array(e.bytes!));
          if (!asText.includes("\uFFFD")) assertEquals(asText, e.token);
          if (top === 0) {
            assertEquals(e.top_logprobs, undefined);
            return;
          }
          const tops = e.top_logprobs!;
          assertEquals(tops.length, top);
          for (let i = 1; i < tops.length; i++) {
            assert(tops[i - 1].logprob >= tops[i].logprob, "not likeliest first");
          }
          assertEquals(tops[0].token, e.token, "greedy: the chosen token is the likeliest");
          assertEquals(tops[0].logprob, e.logprob);
        };
        const chat = {
          model: "smol",
          messages: [{ role: "user", content: "Name three colours." }],
          logprobs: true,
          top_logprobs: 3,
          options: { ...greedy, num_predict: 10 },
        };
        const lines = (await readNdjson(await post(`${url}/api/chat`, chat))).map((l) =>
          ChatResponseSchema.parse(l)
        );
        const streamed: Logprob[] = [];
        for (const l of lines.slice(0, -1)) {
          assert(l.logprobs?.length, `a line without logprobs: ${JSON.stringify(l)}`);
          // Each line's tokens are its text.
          assertEquals(
            l.logprobs.map((e) => e.token).join(""),
            l.message.content,
          );
          for (const e of l.logprobs) checkEntry(e, 3);
          streamed.push(...l.logprobs);
        }
        const last = lines.at(-1)!;
        assertEquals(last.done, true);
        assertEquals(streamed.length, last.eval_count);

        const whole = ChatResponseSchema.parse(
          await (await post(`${url}/api/chat`, { ...chat, stream: false })).json(),
        );
        assertEquals(whole.logprobs?.map((e) => e.token).join(""), whole.message.content);
        assertEquals(whole.logprobs?.map((e) => e.token), streamed.map((e) => e.token));
        for (const e of whole.logprobs!) checkEntry(e, 3);

        // top_logprobs 0: the chosen tokens only; no logprobs asked: none sent.
        const bare = ChatResponseSchema.parse(
          await (await post(`${url}/api/chat`, { ...chat, top_logprobs: 0, stream: false })).json(),
        );
        assertEquals(bare.logprobs?.length, whole.logprobs!.length);
        for (const e of bare.logprobs!) checkEntry(e, 0);
        const none = await readNdjson(await post(`${url}/api/chat`, { ...chat, logprobs: false }));
        assert(none.every((l) => !("logprobs" in l)));

        // generate: through the chat template, raw through /completion.
        for (const raw of [false, true]) {
          const g = GenerateResponseSchema.parse(
            await (await post(`${url}/api/generate`, {
              model: "smol",
              prompt: "The capital of France is",
              raw,
              stream: false,
              logprobs: true,
              top_logprobs: 2,
              options: { ...greedy, num_predict: 5 },
            })).json(),
          );
          assertEquals(g.logprobs?.length, g.eval_count, `raw ${raw}`);
          assertEquals(g.logprobs!.map((e) => e.token).join(""), g.response);
          for (const e of g.logprobs!) checkEntry(e, 2);
        }
      },
    );

    await t.step("/api/chat with a JSON schema format answers JSON matching it", async () => {
      const r = await post(`${url}/api/chat`, {
        model: "smol",
        messages: [{ role: "user", content: "Give me a person with a name and an age." }],
        format: {
          type: "object",
          properties: { name: { type: "string" }, age: { type: "integer" } },
          required: ["name", "age"],
        },
        stream: false,
        options: { ...greedy, num_predict: 64 },
      });
      const c = ChatResponseSchema.parse(await r.json());
      const obj = JSON.parse(c.message.content);
      assertEquals(typeof obj.name, "string");
      assertEquals(typeof obj.age, "number");
    });

    await t.step(
      "OpenAI endpoints: models, streamed chat ending [DONE], errors in OpenAI's shape",
      async () => {
        const list = await (await fetch(`${url}/v1/models`)).json();
        assertEquals(list.object, "list");
        assert(list.data.some((m: { id: string }) => m.id === "smol:latest"));
        const one = await (await fetch(`${url}/v1/models/smol:latest`)).json();
        assertEquals(one.id, "smol:latest");
        const r = await post(`${url}/v1/chat/completions`, {
          model: "smol",
          messages: [{ role: "user", content: "hi" }],
          max_tokens: 4,
          stream: true,
        });
        assertStringIncludes(r.headers.get("content-type") ?? "", "text/event-stream");
        const text = await r.text();
        assert(text.trimEnd().endsWith("data: [DONE]"), text.slice(-200));
        const missing = await post(`${url}/v1/chat/completions`, { model: "nope", messages: [] });
        assertEquals(missing.status, 404);
        const err = OpenAIErrorSchema.parse(await missing.json());
        assertEquals(err.error.type, "not_found_error");
      },
    );
  });
});
