/**
 * The real client libraries against the daemon: npm `ollama` and `openai` from Deno, PyPI `ollama` and `openai`
 * from Python scripts in a uv venv. The model is SmolLM2 with a tool-call chat template (Qwen 2.5's) set by a
 * preset, so tool calls come back as parsed calls.
 */
import { Ollama } from "ollama";
import OpenAI from "openai";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./_assert.ts";
import { runPythonClient, TOOLS_TEMPLATE, withDaemon } from "./_daemon.ts";
import { smolModelPath } from "./_fixtures.ts";

const presets = {
  config: { presets: { smol: { model: "smol", args: ["--chat-template-file", TOOLS_TEMPLATE] } } },
};
const greedy = { temperature: 0, top_k: 1, seed: 42 };
const tools = [{
  type: "function",
  function: {
    name: "get_weather",
    description: "Get the weather for a city",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
}];
const toolHistory = [
  { role: "system", content: "You never answer in words. You always call a tool." },
  { role: "user", content: "What is the weather in Paris?" },
  {
    role: "assistant",
    content: "",
    tool_calls: [{ function: { name: "get_weather", arguments: { city: "Paris" } } }],
  },
  { role: "user", content: "What is the weather in Rome?" },
  {
    role: "assistant",
    content: "",
    tool_calls: [{ function: { name: "get_weather", arguments: { city: "Rome" } } }],
  },
  { role: "user", content: "What is the weather in London?" },
];

Deno.test("npm ollama and openai clients work unchanged against the daemon", async (t) => {
  await withDaemon(presets, async ({ url }) => {
    const ollama = new Ollama({ host: url });

    await t.step("list and show", async () => {
      const list = await ollama.list();
      assert(list.models.some((m) => m.name === "smol:latest"));
      const show = await ollama.show({ model: "smol" });
      assertEquals(show.details.family, "llama");
      assert("general.architecture" in show.model_info);
    });

    await t.step("generate, streamed and not", async () => {
      const stream = await ollama.generate({
        model: "smol",
        prompt: "Why is the sky blue?",
        stream: true,
        options: { ...greedy, num_predict: 8 },
      });
      let text = "";
      let last;
      for await (const part of stream) {
        text += part.response;
        last = part;
      }
      assert(text.length > 0);
      assertEquals(last?.done_reason, "length");
      const one = await ollama.generate({
        model: "smol",
        prompt: "Why is the sky blue?",
        options: { ...greedy, num_predict: 8 },
      });
      assertEquals(one.response, text);
      assertEquals(one.eval_count, 8);
    });

    await t.step("chat with tools returns parsed tool calls", async () => {
      const r = await ollama.chat({
        model: "smol",
        messages: toolHistory,
        tools,
        options: { ...greedy, num_predict: 60 },
      });
      const calls = r.message.tool_calls ?? [];
      assertEquals(calls.length, 1, JSON.stringify(r.message));
      assertEquals(calls[0].function.name, "get_weather");
      assertEquals(calls[0].function.arguments, { city: "London" });
    });

    await t.step("chat with a JSON schema format", async () => {
      const r = await ollama.chat({
        model: "smol",
        messages: [{ role: "user", content: "Give me a person." }],
        format: {
          type: "object",
          properties: { name: { type: "string" }, age: { type: "integer" } },
          required: ["name", "age"],
        },
        options: { ...greedy, num_predict: 64 },
      });
      const v = JSON.parse(r.message.content);
      assertEquals(typeof v.name, "string");
      assertEquals(typeof v.age, "number");
    });

    await t.step("chat with logprobs", async () => {
      const r = await ollama.chat({
        model: "smol",
        messages: [{ role: "user", content: "Name a colour." }],
        logprobs: true,
        top_logprobs: 2,
        options: { ...greedy, num_predict: 6 },
      });
      assertEquals(r.logprobs?.length, r.eval_count);
      assertEquals(r.logprobs!.map((e) => e.token).join(""), r.message.content);
      for (const e of r.logprobs!) {
        assertEquals(e.top_logprobs?.length, 2);
        assertEquals(e.top_logprobs![0].token, e.token);
      }
    });

    await t.step("create with a system prompt and parameters, then chat with it", async () => {
      const made = await ollama.create({
        model: "js-made",
        from: "smol",
        system: "You are a pirate.",
        parameters: { ...greedy, num_predict: 5 },
      });
      assertEquals(made.status, "success");
      const r = await ollama.chat({ model: "js-made", messages: [{ role: "user", content: "Hi" }] });
      const direct = await ollama.chat({
        model: "smol",
        messages: [{ role: "system", content: "You are a pirate." }, { role: "user", content: "Hi" }],
        options: { ...greedy, num_predict: 5 },
      });
      assertEquals(r.eval_count, 5);
      assertEquals(r.message.content, direct.message.content);
      assertEquals((await ollama.show({ model: "js-made" })).system, "You are a pirate.");
      // It runs with the preset of the model it was made from (here the tool-call chat template), so tools work
      // as they do on that model.
      const call = async (model: string) =>
        (await ollama.chat({ model, messages: toolHistory, tools, options: { ...greedy, num_predict: 60 } }))
          .message.tool_calls;
      const made2 = await ollama.create({ model: "js-made-2", from: "js-made" });
      assertEquals(made2.status, "success");
      await ollama.generate({ model: "smol", prompt: "", keep_alive: 0 }); // started anew for the made name
      assertEquals((await call("js-made-2"))?.[0]?.function.name, "get_weather");
      await ollama.delete({ model: "js-made" });
      await ollama.delete({ model: "js-made-2" });
    });

    await t.step("embed, ps, keep_alive 0", async () => {
      const e = await ollama.embed({ model: "smol", input: ["hello", "world"] });
      assertEquals(e.embeddings.length, 2);
      const ps = await ollama.ps();
      assertEquals(ps.models.map((m) => m.name), ["smol:latest"]);
      await ollama.generate({ model: "smol", prompt: "", keep_alive: 0 });
      assertEquals((await ollama.ps()).models.length, 0);
    });

    await t.step("copy and delete", async () => {
      await ollama.copy({ source: "smol", destination: "js-copy:v1" });
      assert((await ollama.list()).models.some((m) => m.name === "js-copy:v1"));
      await ollama.delete({ model: "js-copy:v1" });
      assert(!(await ollama.list()).models.some((m) => m.name === "js-copy:v1"));
    });

    await t.step("an unknown model is the client's ResponseError with status 404", async () => {
      try {
        await ollama.chat({ model: "does-not-exist", messages: [{ role: "user", content: "hi" }] });
        throw new Error("no error raised");
      } catch (err) {
        const e = err as { name: string; status_code: number; error: string };
        assertEquals(e.name, "ResponseError");
        assertEquals(e.status_code, 404);
        assertStringIncludes(e.error, "not found");
      }
    });

    await t.step("openai: streamed chat, embeddings, models", async () => {
      const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: "unused" });
      const stream = await client.chat.completions.create({
        model: "smol",
        messages: [{ role: "user", content: "Say hello." }],
        max_tokens: 8,
        temperature: 0,
        stream: true,
      });
      let text = "";
      for await (const c of stream) text += c.choices[0]?.delta?.content ?? "";
      assert(text.length > 0);
      const emb = await client.embeddings.create({ model: "smol", input: "hello" });
      assert(emb.data[0].embedding.length > 100);
      const models = await client.models.list();
      assert(models.data.some((m) => m.id === "smol:latest"));
      try {
        await client.chat.completions.create({ model: "nope", messages: [{ role: "user", content: "x" }] });
        throw new Error("no error raised");
      } catch (err) {
        assert(err instanceof OpenAI.NotFoundError, String(err));
      }
    });
  });
});

Deno.test("PyPI ollama and openai clients work unchanged against the daemon", async (t) => {
  await withDaemon(presets, async ({ url }) => {
    await t.step(
      "ollama: list, show, generate, chat with tools, a schema and logprobs, create from a file, embed, ps, unload, copy, delete, 404",
      async () => {
        const r = await runPythonClient("ollama_client.py", url, [await smolModelPath()]);
        assert(r.list.includes("smol:latest"), JSON.stringify(r.list));
        assertEquals(r.show_family, "llama");
        assertEquals(r.show_has_model_info, true);
        assert(r.generate_stream_chunks >= 2);
        assertEquals(r.generate_stream_done_reason, "length");
        assertEquals(r.generate_text, r.generate_stream_text);
        assertEquals(r.generate_eval_count, 8);
        assert(r.generate_total_duration > 1_000_000);
        assertEquals(r.tool_calls, [{ name: "get_weather", arguments: { city: "London" } }]);
        assertEquals(typeof r.json_format.name, "string");
        assertEquals(typeof r.json_format.age, "number");
        assertEquals(r.logprobs.count, r.logprobs.eval_count);
        assertEquals(r.logprobs.tokens, r.logprobs.content);
        assertEquals(r.logprobs.tops, Array(r.logprobs.count).fill(2));
        assertEquals(r.created.status, "success");
        assertStringIncludes(r.created.modelfile, 'SYSTEM """Answer in French."""');
        assertMatch(r.created.parameters, /^num_predict +5$/m);
        assertEquals(r.created.eval_count, 5);
        assertEquals(r.created.content, r.created.direct);
        assertEquals(r.embed_count, 2);
        assert(r.embed_dim > 100);
        assertEquals(r.ps, ["smol:latest"]);
        assertEquals(r.ps_after_unload, []);
        assertEquals(r.after_copy, true);
        assertEquals(r.after_delete, false);
        assertEquals(r.unknown_error.status, 404);
        assertStringIncludes(r.unknown_error.error, "not found");
      },
    );

    await t.step("openai: streamed chat, embeddings, models, 404", async () => {
      const r = await runPythonClient("openai_client.py", url);
      assert(r.stream_text.length > 0);
      assertEquals(r.stream_finish, ["length"]);
      assertEquals(r.embeddings.length, 2);
      assert(r.models.includes("smol:latest"));
      assertEquals(r.unknown.status, 404);
    });
  });
});
