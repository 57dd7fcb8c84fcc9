/**
 * The daemon's HTTP API against a real llama-server and a real model: status codes, bodies, NDJSON, timings,
 * loading and unloading, keep_alive, concurrency, security checks, the OpenAI endpoints.
 */
import { join } from "node:path";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./_assert.ts";
import { post, readNdjson, withDaemon } from "./clients/harness.ts";
import {
  ChatResponseSchema,
  EmbedResponseSchema,
  GenerateResponseSchema,
  ListResponseSchema,
  type Logprob,
  OpenAIErrorSchema,
  ProcessResponseSchema,
  ShowResponseSchema,
} from "../lib/daemon/types.ts";
import { pidAlive } from "../lib/util/process.ts";
import {
  CHAT_TEXT_DELTA,
  ChatEventParser,
  COMPLETION_TEXT,
  CompletionEventParser,
  type EventParser,
  UndecodedText,
} from "../lib/daemon/ollama/events.ts";
import { sha256Hex, smolModelPath } from "./_fixtures.ts";
import { gguf as hfGguf } from "@huggingface/gguf";

const greedy = { temperature: 0, top_k: 1, seed: 42 };

async function ps(url: string) {
  return ProcessResponseSchema.parse(await (await fetch(`${url}/api/ps`)).json()).models;
}

/** Sends a GET with a chosen Host header over a raw socket (fetch does not let a caller set Host). */
async function rawStatus(url: string, path: string, host: string): Promise<number> {
  const u = new URL(url);
  const conn = await Deno.connect({ hostname: u.hostname, port: Number(u.port) });
  try {
    await conn.write(
      new TextEncoder().encode(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`),
    );
    const buf = new Uint8Array(256);
    const n = await conn.read(buf);
    const head = new TextDecoder().decode(buf.subarray(0, n ?? 0));
    return Number(head.split(" ")[1]);
  } finally {
    conn.close();
  }
}

/** A GGUF (v3) holding only these metadata keys (strings and unsigned 16-bit numbers) and no tensors. */
function tinyGguf(kv: Record<string, string | number>): Uint8Array<ArrayBuffer> {
  const enc = new TextEncoder();
  const parts: number[] = [];
  const u32 = (v: number) => parts.push(v & 255, (v >> 8) & 255, (v >> 16) & 255, (v >>> 24) & 255);
  const u64 = (v: number) => (u32(v), u32(0));
  const str = (t: string) => {
    const b = enc.encode(t);
    u64(b.length);
    parts.push(...b);
  };
  parts.push(...enc.encode("GGUF"));
  u32(3);
  u64(0);
  u64(Object.keys(kv).length);
  for (const [k, v] of Object.entries(kv)) {
    str(k);
    if (typeof v === "string") (u32(8), str(v));
    else (u32(2), parts.push(v & 255, (v >> 8) & 255));
  }
  return new Uint8Array(parts);
}

Deno.test("daemon HTTP API against a real llama-server", async (t) => {
  const logs: string[] = [];
  await withDaemon({ logs }, async ({ url, daemon, dataDir }) => {
    await t.step("GET and HEAD / answer 'Ollama is running'", async () => {
      const r = await fetch(`${url}/`);
      assertEquals(r.status, 200);
      assertEquals(await r.text(), "Ollama is running");
      const h = await fetch(`${url}/`, { method: "HEAD" });
      assertEquals(h.status, 200);
      await h.body?.cancel();
    });

    await t.step("/api/version reports an Ollama version that clients checking for one accept", async () => {
      const r = await fetch(`${url}/api/version`);
      const v = await r.json();
      assertMatch(v.version, /^\d+\.\d+\.\d+$/);
      // VS Code's Copilot reads each part as a number and wants at least 0.6.4.
      const [major, minor, patch] = v.version.split(".").map((x: string) => parseInt(x, 10));
      assert(major > 0 || minor > 6 || (minor === 6 && patch >= 4), `${v.version} is below 0.6.4`);
      assertMatch(r.headers.get("x-llama-mgr-version") ?? "", /^\d+\.\d+\.\d+/);
    });

    await t.step("/api/tags lists the model with Ollama's details", async () => {
      const r = await fetch(`${url}/api/tags`);
      assertEquals(r.status, 200);
      const { models } = ListResponseSchema.parse(await r.json());
      const smol = models.find((m) => m.name === "smol:latest");
      assert(smol, `smol:latest missing from ${JSON.stringify(models.map((m) => m.name))}`);
      assertEquals(smol.details.format, "gguf");
      assertEquals(smol.details.family, "llama");
      assertEquals(smol.details.quantization_level, "Q4_1");
      assertMatch(smol.digest, /^[0-9a-f]{64}$/);
      assert(smol.size > 50_000_000);
    });

    await t.step(
      "/api/show gives model_info, details and capabilities; 400 without model, 404 unknown",
      async () => {
        const r = await post(`${url}/api/show`, { model: "smol" });
        assertEquals(r.status, 200);
        const show = ShowResponseSchema.parse(await r.json());
        assertEquals(show.model_info["general.architecture"], "llama");
        assert(show.capabilities?.includes("completion"));
        // As Ollama gives them: every metadata key of the file but its name and chat template, long arrays
        // empty unless verbose, and the tensors; checked against another reader, npm @huggingface/gguf.
        const theirs = await hfGguf(await smolModelPath(), { allowLocalFile: true });
        const keys = Object.keys(theirs.metadata).filter((k) =>
          !["version", "tensor_count", "kv_count", "general.name", "tokenizer.chat_template"].includes(k)
        );
        const verbose = ShowResponseSchema.parse(
          await (await post(`${url}/api/show`, { model: "smol", verbose: true })).json(),
        );
        for (const k of keys) {
          const v = (theirs.metadata as Record<string, unknown>)[k];
          const plain = typeof v === "bigint" ? Number(v) : v;
          if (Array.isArray(v)) {
            assertEquals(show.model_info[k], v.length > 5 ? [] : v, k);
            assertEquals((verbose.model_info[k] as unknown[]).length, v.length, k);
          } else assertEquals(show.model_info[k], plain, k);
        }
        assert(!("general.name" in show.model_info) && !("tokenizer.chat_template" in show.model_info));
        assertEquals(
          show.tensors?.map((t) => [t.name, t.shape]),
          theirs.tensorInfos.map((t) => [t.name, t.shape.map(Number)]),
        );
        assertEquals(show.tensors?.[0].type, "Q8_0");
        const none = await post(`${url}/api/show`, {});
        assertEquals(none.status, 400);
        assertEquals((await none.json()).error, "model is required");
        const unknown = await post(`${url}/api/show`, { model: "nope" });
        assertEquals(unknown.status, 404);
        assertEquals((await unknown.json()).error, "model 'nope' not found");
      },
    );

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
        const text = (await (await post(`${server.url}/detokenize`, { tokens: context })).json())
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
        const server = daemon.ctx.scheduler.list().find((r) => !r.embedding);
        assert(server?.url, "no llama-server loaded");
        const events = async (path: string, body: unknown) => {
          const text = await (await post(`${server.url}${path}`, { ...(body as object), stream: true }))
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

    await t.step("bad requests are 400s that say what was wrong", async () => {
      const cases: [string, unknown, number, string][] = [
        ["/api/chat", "", 400, "missing request body"],
        ["/api/chat", "{not json", 400, "invalid JSON"],
        ["/api/chat", { messages: [] }, 400, "model is required"],
        ["/api/chat", { model: "smol", messages: [{ role: 1 }] }, 400, "messages.0.role"],
        ["/api/chat", { model: "smol", messages: [], keep_alive: "300" }, 400, 'invalid duration "300"'],
        ["/api/chat", { model: "smol", messages: [], keep_alive: [1] }, 400, "keep_alive"],
        ["/api/chat", { model: "smol", messages: [], options: { top_k: "x" } }, 400, 'option "top_k"'],
        ["/api/chat", { model: "../../etc/passwd", messages: [] }, 400, "invalid model name"],
        ["/api/generate", { model: "nope" }, 404, "model 'nope' not found"],
        ["/api/generate", { model: "smol", prompt: "x", format: "yaml" }, 400, "invalid format"],
        ["/api/embed", { model: "smol", input: 5 }, 400, "invalid input type"],
        [
          "/api/generate",
          { model: "smol", prompt: "def f(", suffix: ")" },
          400,
          '"smol" does not support insert',
        ],
        [
          "/api/generate",
          { model: "smol", prompt: "x", raw: true, system: "s" },
          400,
          "raw mode does not support",
        ],
        [
          "/api/chat",
          { model: "smol", messages: [{ role: "user", content: "x" }], think: true },
          400,
          "does not support thinking",
        ],
        ["/api/generate", { model: "smol", prompt: "x", top_logprobs: 21 }, 400, "between 0 and 20"],
        [
          "/api/chat",
          {
            model: "smol",
            messages: [{ role: "user", content: "x" }],
            logprobs: true,
            tools: [{ type: "function", function: { name: "f", parameters: { type: "object" } } }],
          },
          400,
          "leave out logprobs or tools",
        ],
      ];
      for (const [path, body, status, text] of cases) {
        const r = await post(`${url}${path}`, body);
        assertEquals(r.status, status, `${path} ${JSON.stringify(body)}`);
        const e = await r.json();
        assertStringIncludes(e.error, text);
      }
      const unknownRoute = await fetch(`${url}/api/nothing`);
      assertEquals(unknownRoute.status, 404);
      await unknownRoute.body?.cancel();
      const wrongMethod = await fetch(`${url}/api/chat`, { method: "GET" });
      assertEquals(wrongMethod.status, 405);
      await wrongMethod.body?.cancel();
    });

    await t.step("empty messages load the model; keep_alive 0 unloads it", async () => {
      await post(`${url}/api/generate`, { model: "smol", keep_alive: 0 }).then((r) => r.json());
      assertEquals((await ps(url)).length, 0);
      const load = await (await post(`${url}/api/chat`, { model: "smol", messages: [] })).json();
      assertEquals(load.done, true);
      assertEquals(load.done_reason, "load");
      const loaded = await ps(url);
      assertEquals(loaded.length, 1);
      assertEquals(loaded[0].name, "smol:latest");
      assert(loaded[0].context_length > 0);
      assert(loaded[0].size > 0);
      const exp = Date.parse(loaded[0].expires_at) - Date.now();
      assert(exp > 4 * 60_000 && exp <= 5 * 60_000 + 1000, `expires in ${exp} ms, not about 5m`);
      const unload = await (await post(`${url}/api/chat`, { model: "smol", messages: [], keep_alive: 0 }))
        .json();
      assertEquals(unload.done_reason, "unload");
      assertEquals((await ps(url)).length, 0);
    });

    await t.step("keep_alive '2s' unloads after two seconds; -1 keeps it forever", async () => {
      await (await post(`${url}/api/generate`, { model: "smol", keep_alive: "2s" })).json();
      const p = await ps(url);
      assertEquals(p.length, 1);
      assert(Date.parse(p[0].expires_at) - Date.now() <= 2100);
      await new Promise((r) => setTimeout(r, 3000));
      assertEquals((await ps(url)).length, 0);
      await (await post(`${url}/api/generate`, { model: "smol", keep_alive: -1 })).json();
      const forever = await ps(url);
      assert(Date.parse(forever[0].expires_at) > Date.now() + 100 * 365 * 24 * 3600_000);
    });

    await t.step("concurrent requests for an unloaded model start it once", async () => {
      await (await post(`${url}/api/generate`, { model: "smol", keep_alive: 0 })).json();
      const before = logs.filter((l) => l.startsWith("loading smol")).length;
      const answers = await Promise.all(
        [1, 2, 3, 4].map((i) =>
          post(`${url}/api/chat`, {
            model: "smol",
            messages: [{ role: "user", content: `Say the number ${i}.` }],
            stream: false,
            options: { ...greedy, num_predict: 4 },
          }).then((r) => r.json())
        ),
      );
      assert(answers.every((a) => a.done === true), JSON.stringify(answers));
      assertEquals(logs.filter((l) => l.startsWith("loading smol")).length - before, 1);
      assertEquals(daemon.ctx.scheduler.list().length, 1);
    });

    await t.step("a different num_ctx reloads the model with that context", async () => {
      await (await post(`${url}/api/generate`, { model: "smol", options: { num_ctx: 1024 } })).json();
      const p = await ps(url);
      assertEquals(p.length, 1);
      assertEquals(p[0].context_length, 1024);
    });

    await t.step("a client that goes away mid-answer stops llama-server's generation", async () => {
      // The runner serving the model now (earlier steps reloaded it).
      const busy = async () => {
        const server = daemon.ctx.scheduler.list().find((r) => !r.embedding);
        assert(server?.url, "no llama-server loaded");
        const slots = (await (await fetch(`${server.url}/slots`)).json()) as { is_processing: boolean }[];
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

    await t.step("/api/embed returns normalised vectors; empty input gives []", async () => {
      const r = await post(`${url}/api/embed`, { model: "smol", input: ["hello world", "goodbye"] });
      assertEquals(r.status, 200);
      const e = EmbedResponseSchema.parse(await r.json());
      assertEquals(e.embeddings.length, 2);
      assertEquals(e.embeddings[0].length, e.embeddings[1].length);
      const norm = Math.hypot(...e.embeddings[0]);
      assert(Math.abs(norm - 1) < 1e-3, `norm ${norm}`);
      assert((e.prompt_eval_count ?? 0) >= 3);
      const empty = await (await post(`${url}/api/embed`, { model: "smol", input: [] })).json();
      assertEquals(empty.embeddings, []);
      const dims = await (await post(`${url}/api/embed`, { model: "smol", input: "hi", dimensions: 16 }))
        .json();
      assertEquals(dims.embeddings[0].length, 16);
      const old = await (await post(`${url}/api/embeddings`, { model: "smol", prompt: "hello" })).json();
      assertEquals(old.embedding.length, e.embeddings[0].length);
    });

    await t.step("/api/embed with truncate false refuses an input longer than the context", async () => {
      const long = "word ".repeat(400);
      const r = await post(`${url}/api/embed`, {
        model: "smol",
        input: long,
        truncate: false,
        options: { num_ctx: 128 },
      });
      assertEquals(r.status, 400);
      assertStringIncludes((await r.json()).error, "exceeds maximum context length");
      const ok = await post(`${url}/api/embed`, { model: "smol", input: long, options: { num_ctx: 128 } });
      assertEquals(ok.status, 200);
      assertEquals((await ok.json()).embeddings.length, 1);
    });

    await t.step("/api/copy makes a name, /api/delete removes it; bad names 400, unknown 404", async () => {
      const c = await post(`${url}/api/copy`, { source: "smol", destination: "mine:v1" });
      assertEquals(c.status, 200);
      assertEquals(await c.text(), "");
      const tags = ListResponseSchema.parse(await (await fetch(`${url}/api/tags`)).json());
      assert(tags.models.some((m) => m.name === "mine:v1"));
      assertEquals((await post(`${url}/api/copy`, { source: "smol", destination: "bad name!" })).status, 400);
      assertEquals((await post(`${url}/api/copy`, { source: "nope", destination: "x" })).status, 404);
      const d = await fetch(`${url}/api/delete`, {
        method: "DELETE",
        body: JSON.stringify({ model: "mine:v1" }),
      });
      assertEquals(d.status, 200);
      await d.body?.cancel();
      const again = await fetch(`${url}/api/delete`, {
        method: "DELETE",
        body: JSON.stringify({ name: "mine:v1" }),
      });
      assertEquals(again.status, 404);
      await again.body?.cancel();
      const foreign = await fetch(`${url}/api/delete`, {
        method: "DELETE",
        body: JSON.stringify({ model: "smol" }),
      });
      assertEquals(foreign.status, 403);
      assertStringIncludes((await foreign.json()).error, "does not delete another tool's files");
      assert(await Deno.stat(await smolModelPath()).then(() => true));
    });

    await t.step(
      "blobs: malformed digest 400, absent 404, mismatch 400, upload 201, then present",
      async () => {
        const data = new TextEncoder().encode("llama-mgr blob test");
        const hex = await sha256Hex(data);
        const digest = `sha256:${hex}`;
        const head = (d: string) => fetch(`${url}/api/blobs/${d}`, { method: "HEAD" }).then((r) => r.status);
        assertEquals(await head("sha256:..%2F..%2Fetc%2Fpasswd"), 400);
        assertEquals(await head(digest), 404);
        const bad = await fetch(`${url}/api/blobs/${digest}`, { method: "POST", body: "something else" });
        assertEquals(bad.status, 400);
        assertStringIncludes((await bad.json()).error, "digest mismatch");
        assertEquals(await head(digest), 404);
        const ok = await fetch(`${url}/api/blobs/${digest}`, { method: "POST", body: data });
        assertEquals(ok.status, 201);
        await ok.body?.cancel();
        assertEquals(await head(digest), 200);
        const twice = await fetch(`${url}/api/blobs/${digest}`, { method: "POST", body: data });
        assertEquals(twice.status, 200);
        await twice.body?.cancel();
      },
    );

    await t.step(
      "/api/create: a system prompt and parameters on a new name, from a model or from an uploaded GGUF",
      async () => {
        const chat = async (model: string, messages: unknown[], options?: unknown) =>
          ChatResponseSchema.parse(
            await (await post(`${url}/api/chat`, { model, messages, stream: false, options })).json(),
          );
        const system = "You are a pirate. Answer like a pirate.";
        const question = { role: "user", content: "Who are you?" };
        const made = await post(`${url}/api/create`, {
          model: "pirate",
          from: "smol",
          system,
          parameters: { ...greedy, num_predict: 6 },
        });
        assertEquals(made.status, 200);
        assertEquals((await readNdjson(made)).at(-1), { status: "success" });

        // The name answers as the model does with that system prompt and those options given by the request.
        const pirate = await chat("pirate", [question]);
        const same = await chat("smol", [{ role: "system", content: system }, question], {
          ...greedy,
          num_predict: 6,
        });
        assertEquals(pirate.message.content, same.message.content);
        assertEquals(pirate.eval_count, 6);
        const plain = await chat("smol", [question], { ...greedy, num_predict: 6 });
        assert(plain.message.content !== pirate.message.content, "the system prompt made no difference");
        // A request's own system message and options win.
        const own = [{ role: "system", content: "You are a cat." }, question];
        assertEquals(
          (await chat("pirate", own, { num_predict: 3 })).message.content,
          (await chat("smol", own, { ...greedy, num_predict: 3 })).message.content,
        );
        // generate and the OpenAI endpoint use them too.
        const gen = async (model: string, extra: Record<string, unknown>) =>
          GenerateResponseSchema.parse(
            await (await post(`${url}/api/generate`, {
              model,
              prompt: "Who are you?",
              stream: false,
              ...extra,
            }))
              .json(),
          ).response;
        assertEquals(
          await gen("pirate", {}),
          await gen("smol", { system, options: { ...greedy, num_predict: 6 } }),
        );
        const v1 = await (await post(`${url}/v1/chat/completions`, { model: "pirate", messages: [question] }))
          .json();
        assertEquals(v1.choices[0].message.content, pirate.message.content);

        const show = ShowResponseSchema.parse(
          await (await post(`${url}/api/show`, { model: "pirate" })).json(),
        );
        assertEquals(show.system, system);
        assertMatch(show.parameters ?? "", /^num_predict {20}6$/m); // Ollama's layout: the key padded to 30
        assertStringIncludes(show.modelfile ?? "", `SYSTEM """${system}"""`);

        // Built on it: the system prompt carries over, parameters merge; a copy keeps them.
        await (await post(`${url}/api/create`, {
          model: "pirate2",
          from: "pirate",
          parameters: { num_predict: 3 },
        }))
          .body?.cancel();
        const p2 = await chat("pirate2", [question]);
        assertEquals(p2.eval_count, 3);
        assert(
          pirate.message.content.startsWith(p2.message.content),
          `${p2.message.content} / ${pirate.message.content}`,
        );
        await (await post(`${url}/api/copy`, { source: "pirate", destination: "pirate-copy" })).body
          ?.cancel();
        assertEquals((await chat("pirate-copy", [question])).message.content, pirate.message.content);

        // Made over an existing name, the name is the created model's until it is deleted.
        await (await post(`${url}/api/create`, { model: "smol", from: "smol", system })).body?.cancel();
        const smolTags = async () =>
          ListResponseSchema.parse(await (await fetch(`${url}/api/tags`)).json()).models.filter((m) =>
            m.name === "smol:latest"
          ).length;
        assertEquals(await smolTags(), 1);
        assertEquals(
          (await chat("smol", [question], { ...greedy, num_predict: 6 })).message.content,
          pirate.message.content,
        );
        const unmade = await fetch(`${url}/api/delete`, {
          method: "DELETE",
          body: JSON.stringify({ model: "smol" }),
        });
        assertEquals(unmade.status, 200);
        await unmade.body?.cancel();
        assertEquals(await smolTags(), 1);
        assertEquals(
          (await chat("smol", [question], { ...greedy, num_predict: 6 })).message.content,
          plain.message.content,
        );
        assert(await Deno.stat(await smolModelPath()).then(() => true), "the model file was deleted");

        // From an uploaded GGUF, as `ollama create` sends `FROM ./model.gguf`: the blob, then files.
        const bytes = await Deno.readFile(await smolModelPath());
        const hex = await sha256Hex(bytes);
        const digest = `sha256:${hex}`;
        assertEquals(
          (await fetch(`${url}/api/blobs/${digest}`, { method: "POST", body: bytes })).status,
          201,
        );
        const up = await post(`${url}/api/create`, {
          model: "team/uploaded:v1",
          files: { "smol.gguf": digest },
          messages: [{ role: "user", content: "Remember: the password is swordfish." }, {
            role: "assistant",
            content: "Understood.",
          }],
          stream: false,
        });
        assertEquals(up.status, 200, await up.clone().text());
        assertEquals(await up.json(), { status: "success" });
        const tags = ListResponseSchema.parse(await (await fetch(`${url}/api/tags`)).json());
        const listed = tags.models.find((m) => m.name === "team/uploaded:v1");
        assertEquals(listed?.size, bytes.length);
        const withHistory = await chat("team/uploaded:v1", [question], { ...greedy, num_predict: 5 });
        const history = [
          { role: "user", content: "Remember: the password is swordfish." },
          { role: "assistant", content: "Understood." },
          question,
        ];
        assertEquals(
          withHistory.message.content,
          (await chat("smol", history, { ...greedy, num_predict: 5 })).message.content,
        );
        const upShow = await (await post(`${url}/api/show`, { model: "team/uploaded:v1" })).json();
        assertEquals(upShow.messages.length, 2);
        // A model and its vision projector, uploaded together: show gives the projector's metadata.
        const projector = tinyGguf({ "general.architecture": "clip", "general.type": "mmproj" });
        const projectorHex = await sha256Hex(projector);
        await (await fetch(`${url}/api/blobs/sha256:${projectorHex}`, { method: "POST", body: projector }))
          .body
          ?.cancel();
        const seeing = await post(`${url}/api/create`, {
          model: "team/seeing",
          files: { "model.gguf": digest, "mmproj.gguf": `sha256:${projectorHex}` },
          stream: false,
        });
        assertEquals(seeing.status, 200, await seeing.clone().text());
        await seeing.body?.cancel();
        const seeingShow = ShowResponseSchema.parse(
          await (await post(`${url}/api/show`, { model: "team/seeing" })).json(),
        );
        assertEquals(seeingShow.projector_info?.["general.architecture"], "clip");
        assert(seeingShow.capabilities?.includes("vision"), JSON.stringify(seeingShow.capabilities));
        // A blob goes with the last name that uses it.
        const blob = join(dataDir, "daemon", "blobs", `sha256-${hex}`);
        const projectorBlob = join(dataDir, "daemon", "blobs", `sha256-${projectorHex}`);
        const present = (path: string) => Deno.stat(path).then(() => true, () => false);
        const remove = async (model: string) => {
          const r = await fetch(`${url}/api/delete`, { method: "DELETE", body: JSON.stringify({ model }) });
          assertEquals(r.status, 200);
          await r.body?.cancel();
        };
        await remove("team/uploaded:v1");
        assertEquals([await present(blob), await present(projectorBlob)], [true, true]);
        await remove("team/seeing");
        assertEquals([await present(blob), await present(projectorBlob)], [false, false]);
        assertEquals(
          (await post(`${url}/api/chat`, { model: "team/uploaded:v1", messages: [question] })).status,
          404,
        );

        // Refusals that say what was wrong, leaving nothing behind.
        const text = new TextEncoder().encode("not a model");
        const textHex = await sha256Hex(text);
        await (await fetch(`${url}/api/blobs/sha256:${textHex}`, { method: "POST", body: text })).body
          ?.cancel();
        // One part of a split model (a GGUF header with split.count 2): its parts cannot sit in the blob store.
        const part = tinyGguf({ "general.architecture": "llama", "split.count": 2 });
        const partHex = await sha256Hex(part);
        await (await fetch(`${url}/api/blobs/sha256:${partHex}`, { method: "POST", body: part })).body
          ?.cancel();
        const cases: [unknown, string][] = [
          [
            { model: "x", files: { "m-00001-of-00002.gguf": `sha256:${partHex}` } },
            "one part of a model split in 2",
          ],
          [{ model: "x" }, "neither 'from' or 'files' was specified"],
          [{ model: "x", from: "smol", parameters: { temprature: 1 } }, 'unknown parameter "temprature"'],
          [
            { model: "x", from: "smol", parameters: { top_k: 1.5 } },
            'parameter "top_k" must be of type integer',
          ],
          [{ model: "x", from: "smol", template: "{{ with .System }}{{ . }}{{ end }}" }, "{{ with }}"],
          [
            { model: "x", from: "smol", quantize: "q4_K_M" },
            "quantization is only supported for F16, BF16 and F32 models",
          ],
          [{ model: "x", files: { "a.gguf": `sha256:${"a".repeat(64)}` } }, "upload it first"],
          [{ model: "x", files: { "../a.gguf": digest } }, "file path must be relative"],
          [{ model: "x", files: { "a.gguf": `sha256:${textHex}` } }, "not in GGUF format"],
          [{ model: "bad name!", from: "smol" }, "invalid model name"],
        ];
        for (const [body, message] of cases) {
          const r = await post(`${url}/api/create`, body);
          assertEquals(r.status, 400, JSON.stringify(body));
          assertStringIncludes((await r.json()).error, message);
        }
        assertEquals((await post(`${url}/api/create`, { model: "x", from: "nope" })).status, 404);
        const names = JSON.parse(await Deno.readTextFile(join(dataDir, "daemon", "names.json"))).names;
        assertEquals(Object.keys(names).sort(), ["pirate-copy:latest", "pirate2:latest", "pirate:latest"]);
        for (const n of ["pirate", "pirate2", "pirate-copy"]) {
          await (await fetch(`${url}/api/delete`, { method: "DELETE", body: JSON.stringify({ model: n }) }))
            .body
            ?.cancel();
        }
      },
    );

    await t.step("a body over the size limit is refused with 413 before it is read", async () => {
      const u = new URL(url);
      const conn = await Deno.connect({ hostname: u.hostname, port: Number(u.port) });
      try {
        await conn.write(new TextEncoder().encode(
          `POST /api/chat HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n` +
            `Content-Length: ${200 * 1024 * 1024}\r\nConnection: close\r\n\r\n{"model":`,
        ));
        const buf = new Uint8Array(512);
        const n = await conn.read(buf);
        const head = new TextDecoder().decode(buf.subarray(0, n ?? 0));
        assertEquals(Number(head.split(" ")[1]), 413, head);
        assertStringIncludes(head, "request body too large");
      } finally {
        conn.close();
      }
    });

    await t.step("Host and Origin are checked like Ollama's", async () => {
      assertEquals(await rawStatus(url, "/api/tags", "evil.example.com"), 403);
      assertEquals(await rawStatus(url, "/api/tags", "evil.example.com:11434"), 403);
      for (
        const host of [
          "localhost:11434",
          "127.0.0.1",
          "foo.localhost",
          "box.local",
          "db.internal",
          "192.168.1.5",
        ]
      ) {
        assertEquals(await rawStatus(url, "/api/version", host), 200, host);
      }
      const evilOrigin = await fetch(`${url}/api/tags`, { headers: { origin: "https://evil.example.com" } });
      assertEquals(evilOrigin.status, 403);
      await evilOrigin.body?.cancel();
      const local = await fetch(`${url}/api/tags`, { headers: { origin: "http://localhost:3000" } });
      assertEquals(local.status, 200);
      assertEquals(local.headers.get("access-control-allow-origin"), "http://localhost:3000");
      await local.body?.cancel();
      const pre = await fetch(`${url}/api/chat`, {
        method: "OPTIONS",
        headers: { origin: "vscode-webview://abc", "access-control-request-method": "POST" },
      });
      assertEquals(pre.status, 204);
      await pre.body?.cancel();
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

    await t.step("closing the daemon stops its llama-servers", async () => {
      await (await post(`${url}/api/generate`, { model: "smol" })).json();
      const pids = daemon.ctx.scheduler.list().map((r) => r.pid!);
      assert(pids.length === 1 && pidAlive(pids[0]));
      await daemon.close();
      assert(!pidAlive(pids[0]), "llama-server still running after close");
    });
  });
});

Deno.test("daemon: /api/show lists what a model's preset sets, for the model and a name made from it", async () => {
  await withDaemon(
    { config: { presets: { smol: { model: "smol", ctx: 2048, ngl: 0 } } } },
    async ({ url }) => {
      const copy = await post(`${url}/api/copy`, { source: "smol", destination: "smol-copy" });
      assertEquals(copy.status, 200);
      await copy.body?.cancel();
      for (const model of ["smol", "smol-copy"]) {
        const show = await (await post(`${url}/api/show`, { model })).json();
        assertMatch(show.parameters, /^num_ctx {24}2048$/m, model);
        assertMatch(show.parameters, /^num_gpu {24}0$/m, model);
        assertStringIncludes(show.modelfile, "PARAMETER num_ctx                        2048", model);
      }
    },
  );
});

Deno.test("daemon: max_loaded_models evicts the least recently used model", async () => {
  const smol = await smolModelPath();
  await withDaemon({
    models: { "a.gguf": smol, "b.gguf": smol },
    config: { daemon: { max_loaded_models: 1 } },
  }, async ({ url }) => {
    await (await post(`${url}/api/generate`, { model: "a" })).json();
    assertEquals((await ps(url)).map((m) => m.name), ["a:latest"]);
    await (await post(`${url}/api/generate`, { model: "b" })).json();
    assertEquals((await ps(url)).map((m) => m.name), ["b:latest"]);
  });
});

Deno.test("daemon: an API key is required when configured; OLLAMA_ORIGINS adds origins", async () => {
  await withDaemon({
    config: { daemon: { api_key: "s3cret" } },
    env: { OLLAMA_ORIGINS: "https://app.example.com" },
  }, async ({ url }) => {
    const root = await fetch(`${url}/`);
    assertEquals(root.status, 200);
    await root.body?.cancel();
    const no = await fetch(`${url}/api/tags`);
    assertEquals(no.status, 401);
    assertStringIncludes((await no.json()).error, "unauthorized");
    const wrong = await fetch(`${url}/api/tags`, { headers: { authorization: "Bearer nope" } });
    assertEquals(wrong.status, 401);
    await wrong.body?.cancel();
    const ok = await fetch(`${url}/api/tags`, { headers: { authorization: "Bearer s3cret" } });
    assertEquals(ok.status, 200);
    await ok.body?.cancel();
    const origin = await fetch(`${url}/api/tags`, {
      headers: { authorization: "Bearer s3cret", origin: "https://app.example.com" },
    });
    assertEquals(origin.status, 200);
    assertEquals(origin.headers.get("access-control-allow-origin"), "https://app.example.com");
    await origin.body?.cancel();
    const v1 = await fetch(`${url}/v1/models`);
    assertEquals(v1.status, 401);
    assertEquals((await v1.json()).error.code, "invalid_api_key");
  });
});
