/**
 * Anthropic's Messages API (`/v1/messages`, `/v1/messages/count_tokens`) and OpenAI's Responses API
 * (`/v1/responses`) through the daemon to llama-server: the PyPI `anthropic` and `openai` clients, Anthropic's
 * error shape, and the daemon's key sent as `x-api-key`. One daemon with a key (`LLAMA_MGR_API_KEY`), SmolLM2.
 */
import { assert, assertEquals, assertStringIncludes } from "./_assert.ts";
import { post, runPythonClient, withDaemon } from "./_daemon.ts";

const KEY = "s3cret";
const keyed = { env: { LLAMA_MGR_API_KEY: KEY } };
const hello = [{ role: "user", content: "Say hello." }];

/** An Anthropic error body: its `error.type` and `error.message`. */
async function anthropicError(res: Response): Promise<{ type: string; message: string }> {
  const body = await res.json();
  assertEquals(body.type, "error", JSON.stringify(body));
  assertEquals(Object.keys(body.error).sort(), ["message", "type"]);
  return body.error;
}

Deno.test("daemon /v1/messages and /v1/responses with a key", async (t) => {
  await withDaemon(keyed, async ({ url }) => {
    const withKey = { headers: { "content-type": "application/json", "x-api-key": KEY } };

    await t.step("x-api-key is accepted as the daemon's key on every path", async () => {
      const tags = await fetch(`${url}/api/tags`, { headers: { "x-api-key": KEY } });
      assertEquals(tags.status, 200);
      await tags.body?.cancel();
      const wrong = await fetch(`${url}/api/tags`, { headers: { "x-api-key": "nope" } });
      assertEquals(wrong.status, 401);
      await wrong.body?.cancel();
      const models = await fetch(`${url}/v1/models`, { headers: { "x-api-key": KEY } });
      assertEquals(models.status, 200);
      await models.body?.cancel();
    });

    await t.step("no key or a wrong one is Anthropic's authentication_error on /v1/messages", async () => {
      for (const path of ["/v1/messages", "/v1/messages/count_tokens"]) {
        const none = await post(`${url}${path}`, { model: "smol", max_tokens: 4, messages: hello });
        assertEquals(none.status, 401);
        assertEquals((await anthropicError(none)).type, "authentication_error");
      }
      const wrong = await post(`${url}/v1/messages`, { model: "smol", max_tokens: 4, messages: hello }, {
        headers: { "content-type": "application/json", "x-api-key": "nope" },
      });
      assertEquals(wrong.status, 401);
      assertEquals((await anthropicError(wrong)).type, "authentication_error");
      // /v1/responses keeps OpenAI's shape.
      const oai = await post(`${url}/v1/responses`, { model: "smol", input: "hi" });
      assertEquals(oai.status, 401);
      assertEquals((await oai.json()).error.code, "invalid_api_key");
    });

    await t.step("request errors on /v1/messages are in Anthropic's shape", async () => {
      const cases: [unknown, number, string, string][] = [
        ["", 400, "invalid_request_error", "missing request body"],
        ["{not json", 400, "invalid_request_error", "invalid JSON"],
        [[1], 400, "invalid_request_error", "JSON object"],
        [{ max_tokens: 4, messages: hello }, 400, "invalid_request_error", "model is required"],
        [{ model: "nope", max_tokens: 4, messages: hello }, 404, "not_found_error", "not found"],
      ];
      for (const path of ["/v1/messages", "/v1/messages/count_tokens"]) {
        for (const [body, status, type, text] of cases) {
          const res = await post(`${url}${path}`, body, withKey);
          assertEquals(res.status, status, `${path} ${JSON.stringify(body)}`);
          const err = await anthropicError(res);
          assertEquals(err.type, type);
          assertStringIncludes(err.message, text);
        }
      }
      const oai = await post(`${url}/v1/responses`, { model: "nope", input: "hi" }, withKey);
      assertEquals(oai.status, 404);
      assertEquals((await oai.json()).error.type, "not_found_error");
    });

    await t.step("a plain fetch of /v1/messages streams Anthropic's SSE events", async () => {
      const res = await post(`${url}/v1/messages`, {
        model: "smol",
        max_tokens: 4,
        temperature: 0,
        messages: hello,
        stream: true,
      }, withKey);
      assertEquals(res.status, 200);
      assertStringIncludes(res.headers.get("content-type") ?? "", "text/event-stream");
      const text = await res.text();
      assertStringIncludes(text, "event: message_start");
      assertStringIncludes(text, "event: message_stop");
    });

    await t.step(
      "a made model's system prompt and parameters apply on /v1/messages and /v1/responses",
      async () => {
        const pirate = "You are a pirate. Always answer like a pirate.";
        const made = await post(`${url}/api/create`, {
          model: "pirate",
          from: "smol",
          system: pirate,
          parameters: { temperature: 0, top_k: 1, num_predict: 5 },
          stream: false,
        }, withKey);
        assertEquals(made.status, 200, await made.clone().text());
        await made.body?.cancel();
        const message = async (body: Record<string, unknown>) => {
          const res = await post(`${url}/v1/messages`, { messages: hello, ...body }, withKey);
          assertEquals(res.status, 200);
          const m = await res.json();
          return { text: m.content[0].text, out: m.usage.output_tokens };
        };
        const viaModel = await message({ model: "pirate" });
        assertEquals(viaModel.out, 5); // num_predict stands for the max_tokens left out
        assertEquals(
          viaModel,
          await message({ model: "smol", system: pirate, max_tokens: 5, temperature: 0 }),
        );
        const response = async (body: Record<string, unknown>) => {
          const res = await post(`${url}/v1/responses`, { input: "Say hello.", ...body }, withKey);
          assertEquals(res.status, 200);
          return (await res.json()).output.find((o: { type: string }) => o.type === "message").content[0]
            .text;
        };
        assertEquals(
          await response({ model: "pirate" }),
          await response({ model: "smol", instructions: pirate, max_output_tokens: 5, temperature: 0 }),
        );
        const gone = await fetch(`${url}/api/delete`, {
          method: "DELETE",
          headers: withKey.headers,
          body: JSON.stringify({ model: "pirate" }),
        });
        assertEquals(gone.status, 200);
        await gone.body?.cancel();
      },
    );

    await t.step(
      "PyPI anthropic: create, stream, system, stop_sequences, count_tokens, 404, 401",
      async () => {
        const r = await runPythonClient("anthropic_client.py", url, [KEY]);
        const c = r.create;
        assertEquals([c.type, c.role], ["message", "assistant"]);
        assertEquals(c.content_types, ["text"]);
        assert(c.text.length > 0);
        assertEquals(c.stop_reason, "max_tokens");
        assertEquals(c.output_tokens, 8);
        assert(c.input_tokens > 0);
        const s = r.stream;
        assertEquals(s.types[0], "message_start");
        assertEquals(s.types.at(-1), "message_stop");
        assert(s.types.includes("content_block_delta"));
        assertEquals(s.text, c.text);
        assertEquals(s.stop_reason, "max_tokens");
        assertEquals(r.helper.text, c.text);
        assertEquals(r.helper.final_text, c.text);
        // The system prompt reaches the model (in place of the template's default one): another prompt and answer,
        // counted the same by count_tokens.
        assert(
          r.system.input_tokens !== c.input_tokens && r.system.text !== c.text,
          JSON.stringify(r.system),
        );
        assertEquals(r.count, c.input_tokens);
        assertEquals(r.count_system, r.system.input_tokens);
        const st = r.stop;
        // llama-server answers "end_turn" here (server-task.cpp); the daemon gives Anthropic's "stop_sequence".
        assertEquals(st.stop_reason, "stop_sequence", JSON.stringify(st));
        assertEquals(st.stop_sequence, st.stop);
        assert(!st.text.includes(st.stop), JSON.stringify(st));
        assert(st.long_text.startsWith(st.text), JSON.stringify(st));
        assertEquals(r.unknown, { status: 404, type: "not_found_error" });
        assertEquals(r.wrong_key, { status: 401, type: "authentication_error" });
      },
    );

    await t.step("PyPI openai: responses.create, streamed and not, with instructions, 404", async () => {
      const r = await runPythonClient("responses_client.py", url, [KEY]);
      const c = r.create;
      assertEquals(c.object, "response");
      assertEquals(c.status, "completed");
      assert(c.output_types.includes("message"), JSON.stringify(c));
      assert(c.text.length > 0);
      assertEquals(c.output_tokens, 8);
      assertEquals(r.stream.text, c.text);
      assertEquals(r.stream.completed_text, c.text);
      assert(r.stream.types.includes("response.created"), JSON.stringify(r.stream.types));
      assert(r.stream.types.includes("response.completed"), JSON.stringify(r.stream.types));
      const i = r.instructions;
      assert(i.input_tokens !== c.input_tokens && i.text !== c.text, JSON.stringify(i));
      assertEquals(r.unknown, { status: 404 });
    });
  });
});
