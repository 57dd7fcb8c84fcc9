/**
 * What the daemon changes in llama-server's `/v1` answers and what it refuses before them: every answer names
 * the model as the request did (plain and streamed, on every `/v1` endpoint), Anthropic's `stop_sequence` stop
 * reason and error shape, tools (a 400 for a model without them, rendered for one with them), Anthropic's 529
 * and Ollama's 503 when the queue is full, and hostile requests on the Anthropic and Responses endpoints
 * answered with a 4xx that says why, the daemon serving on after them. One daemon (one slot, a queue of one),
 * SmolLM2 as `smol` and, with a tool-call chat template, `toolsmol`.
 */
import { assert, assertEquals, assertStringIncludes } from "./_assert.ts";
import { post, TOOLS_TEMPLATE, withDaemon } from "./_daemon.ts";
import { smolModelPath } from "./_fixtures.ts";
import { serverLogPath } from "../lib/server/logs.ts";
import { resolvePaths } from "../lib/config/paths.ts";
import { answerRewrite, rewriteBytes } from "../lib/daemon/openai/rewrite.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const hello = [{ role: "user", content: "Say hello." }];
const greedy = { temperature: 0, top_k: 1 };

/** Every `"model"` value in an answer's text (JSON or an event stream). */
function modelNames(text: string): string[] {
  return [...text.matchAll(/"model":"((?:[^"\\]|\\.)*)"/g)].map((m) => JSON.parse(`"${m[1]}"`));
}

/** An Anthropic error body: its `error.type` and `error.message`. */
async function anthropicError(res: Response): Promise<{ type: string; message: string }> {
  const text = await res.text();
  const body = JSON.parse(text);
  assertEquals(body.type, "error", text);
  assertEquals(Object.keys(body.error).sort(), ["message", "type"], text);
  return body.error;
}

/** Sends raw bytes to the daemon and reads its status line (or "closed"), within 10 s. */
async function rawStatus(url: string, request: Uint8Array): Promise<string> {
  const u = new URL(url);
  const conn = await Deno.connect({ hostname: u.hostname, port: Number(u.port) });
  try {
    const timer = setTimeout(() => conn.close(), 10_000);
    try {
      await conn.write(request).catch(() => {});
      const buf = new Uint8Array(4096);
      const n = await conn.read(buf).catch(() => null);
      if (n === null) return "closed";
      return dec.decode(buf.subarray(0, n)).split("\r\n")[0];
    } finally {
      clearTimeout(timer);
    }
  } finally {
    try {
      conn.close();
    } catch { /* closed by the timer */ }
  }
}

Deno.test("rewriteBytes: the model's name and Anthropic's stop reason, nothing else", () => {
  const name = enc.encode("my:model");
  const rw = (s: string, anthropic = false) => dec.decode(rewriteBytes(enc.encode(s), name, anthropic));
  assertEquals(
    rw('{"id":"x","model":"smol.gguf","text":"say \\"model\\":\\"no\\"","n":1.50}'),
    '{"id":"x","model":"my:model","text":"say \\"model\\":\\"no\\"","n":1.50}',
  );
  assertEquals(rw('{"model":"a\\"b","x":{"model":"c"}}'), '{"model":"my:model","x":{"model":"my:model"}}');
  const same = enc.encode('{"model":"my:model"}');
  assert(rewriteBytes(same, name, false) === same, "an answer already right is not copied");
  assertEquals(
    rw('{"stop_reason":"end_turn","stop_sequence":"!"}', true),
    '{"stop_reason":"stop_sequence","stop_sequence":"!"}',
  );
  assertEquals(
    rw('{"stop_reason":"end_turn","stop_sequence":null}', true),
    '{"stop_reason":"end_turn","stop_sequence":null}',
  );
  assertEquals(
    rw('{"stop_reason":"end_turn","stop_sequence":"!"}'),
    '{"stop_reason":"end_turn","stop_sequence":"!"}',
  );
  // An event cut between pieces waits for its end; whole events go out at once.
  const s = answerRewrite({ model: "my:model", anthropic: false, stream: true, status: 200 });
  assertEquals(dec.decode(s.push(enc.encode('data: {"model":"sm'))), "");
  assertEquals(dec.decode(s.push(enc.encode('ol"}\n\ndata: {"mo'))), 'data: {"model":"my:model"}\n\n');
  assertEquals(dec.decode(s.push(enc.encode('del":"smol"}\n\n'))), 'data: {"model":"my:model"}\n\n');
  assertEquals(dec.decode(s.end()), "");
  const e = answerRewrite({ model: "m", anthropic: true, stream: false, status: 400 });
  e.push(enc.encode('{"error":{"code":400,"message":"bad temperature","type":"invalid_request_error"}}'));
  assertEquals(JSON.parse(dec.decode(e.end())), {
    type: "error",
    error: { type: "invalid_request_error", message: "bad temperature" },
  });
});

Deno.test({
  name: "daemon /v1: names as asked, Anthropic's stop reason and errors, 529 and 503, hostile input",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const env = { OLLAMA_NUM_PARALLEL: "1", OLLAMA_MAX_QUEUE: "1" };
    const smol = await smolModelPath();
    // toolsmol: SmolLM2 with a chat template that has tools (a preset's), so it can be given them.
    const models = { "smol.gguf": smol, "toolsmol.gguf": smol };
    const config = {
      presets: { toolsmol: { model: "toolsmol", args: ["--chat-template-file", TOOLS_TEMPLATE] } },
    };
    await withDaemon({ env, models, config }, async ({ url, dataDir }) => {
      const copied = await post(`${url}/api/copy`, { source: "smol", destination: "my-copy:v2" });
      assertEquals(copied.status, 200);
      await copied.body?.cancel();

      await t.step("every /v1 answer, plain and streamed, names the model as the request did", async () => {
        const bodies: [string, Record<string, unknown>][] = [
          ["/v1/chat/completions", { messages: hello, max_tokens: 3 }],
          ["/v1/completions", { prompt: "Once upon", max_tokens: 3 }],
          ["/v1/messages", { messages: hello, max_tokens: 3 }],
          ["/v1/responses", { input: "Say hello.", max_output_tokens: 3 }],
        ];
        for (const model of ["smol", "my-copy:v2"]) {
          for (const [path, body] of bodies) {
            for (const stream of [false, true]) {
              const res = await post(`${url}${path}`, { model, stream, ...greedy, ...body });
              const text = await res.text();
              assertEquals(res.status, 200, `${model} ${path}: ${text}`);
              const names = modelNames(text);
              assert(names.length > 0, `${path} (stream ${stream}) names no model: ${text}`);
              assertEquals(new Set(names), new Set([model]), `${path} stream ${stream}`);
            }
          }
        }
        const emb = await post(`${url}/v1/embeddings`, { model: "my-copy:v2", input: "hello" });
        const text = await emb.text();
        assertEquals(emb.status, 200, text);
        assertEquals(modelNames(text), ["my-copy:v2"]);
        assert(JSON.parse(text).data[0].embedding.length > 0);
      });

      await t.step(
        "/v1/messages: a stop sequence is stop_reason stop_sequence, plain and streamed",
        async () => {
          const long = await (await post(`${url}/v1/messages`, {
            model: "smol",
            messages: hello,
            max_tokens: 16,
            ...greedy,
          }))
            .json();
          assertEquals(long.stop_reason, "max_tokens");
          const words = (long.content[0].text as string).split(/\s+/).filter((w) => w.length > 2);
          const stop = words[1] ?? words[0];
          const req = { model: "smol", messages: hello, max_tokens: 16, stop_sequences: [stop], ...greedy };
          const plain = await (await post(`${url}/v1/messages`, req)).json();
          assertEquals(
            [plain.stop_reason, plain.stop_sequence],
            ["stop_sequence", stop],
            JSON.stringify(plain),
          );
          const streamed = await (await post(`${url}/v1/messages`, { ...req, stream: true })).text();
          const delta = streamed.split("\n").find((l) => l.includes('"message_delta"'))!;
          assertEquals(JSON.parse(delta.slice("data: ".length)).delta, {
            stop_reason: "stop_sequence",
            stop_sequence: stop,
          });
          // A turn that ends by itself stays end_turn.
          const free = await (await post(`${url}/v1/messages`, {
            model: "smol",
            messages: hello,
            max_tokens: 64,
            ...greedy,
          }))
            .json();
          assertEquals([free.stop_reason, free.stop_sequence], ["end_turn", null], JSON.stringify(free));
        },
      );

      await t.step("/api/ps names each model's runner, whose llama-server log is there", async () => {
        const { models } = await (await fetch(`${url}/api/ps`)).json();
        assert(models.length > 0);
        for (const m of models) {
          const log = await Deno.readTextFile(serverLogPath(resolvePaths({ dataDir, env: {} }), m.runner));
          assertStringIncludes(log, "slot", `${m.runner}'s log`);
        }
      });

      await t.step("llama-server's own errors on /v1/messages come in Anthropic's shape", async () => {
        const res = await post(`${url}/v1/messages`, {
          model: "smol",
          messages: hello,
          max_tokens: 4,
          temperature: "hot",
        });
        assertEquals(res.status, 400);
        const err = await anthropicError(res);
        assertEquals(err.type, "invalid_request_error");
        assertStringIncludes(err.message, "temperature");
      });

      await t.step("tools: a 400 for a model without them, in the prompt for one with them", async () => {
        const weather = { type: "object", properties: { city: { type: "string" } }, required: ["city"] };
        const fn = { name: "get_weather", description: "Get the weather for a city" };
        const asks: [string, Record<string, unknown>, Record<string, unknown>][] = [
          ["/v1/chat/completions", { messages: hello, max_tokens: 2 }, {
            tools: [{ type: "function", function: { ...fn, parameters: weather } }],
          }],
          ["/v1/messages", { messages: hello, max_tokens: 2 }, { tools: [{ ...fn, input_schema: weather }] }],
          ["/v1/responses", { input: "Say hello.", max_output_tokens: 2 }, {
            tools: [{ type: "function", ...fn, parameters: weather }],
          }],
        ];
        for (const [path, body, tools] of asks) {
          const res = await post(`${url}${path}`, { model: "smol", ...body, ...tools });
          const text = await res.text();
          assertEquals(res.status, 400, `${path}: ${text}`);
          const err = JSON.parse(text);
          assertEquals(err.error.type, "invalid_request_error");
          if (path === "/v1/messages") assertEquals(err.type, "error");
          assertStringIncludes(err.error.message, '"smol" does not support tools');
        }
        const count = async (extra: Record<string, unknown>) => {
          const res = await post(`${url}/v1/messages/count_tokens`, {
            model: "toolsmol",
            messages: hello,
            ...extra,
          });
          assertEquals(res.status, 200);
          return (await res.json()).input_tokens;
        };
        assert(await count(asks[1][2]) > await count({}) + 10, "the tool is rendered into the prompt");
        const usage = async (extra: Record<string, unknown>) => {
          const res = await post(`${url}/v1/responses`, {
            model: "toolsmol",
            ...asks[2][1],
            ...greedy,
            ...extra,
          });
          const text = await res.text();
          assertEquals(res.status, 200, text);
          return JSON.parse(text).usage.input_tokens;
        };
        assert(await usage(asks[2][2]) > await usage({}) + 10, "the tool is rendered into the prompt");
      });

      await t.step("hostile requests get a 4xx that says why, in each API's shape", async () => {
        const msgCases: [unknown, number, string][] = [
          ['{"model":', 400, "invalid JSON"],
          ["null", 400, "JSON object"],
          [{ model: 5, messages: hello, max_tokens: 4 }, 400, "model is required"],
          [{ model: "", messages: hello, max_tokens: 4 }, 400, "model is required"],
          [{ model: "smol", max_tokens: 4 }, 400, "messages"],
          [{ model: "smol", messages: "hi", max_tokens: 4 }, 400, "messages"],
          [{ model: "smol", messages: [5], max_tokens: 4 }, 400, "messages.0"],
          [
            { model: "smol", messages: [{ role: "system", content: "x" }], max_tokens: 4 },
            400,
            "messages.0.role",
          ],
          [
            { model: "smol", messages: [{ role: "user", content: 5 }], max_tokens: 4 },
            400,
            "messages.0.content",
          ],
          [{ model: "smol", messages: hello, max_tokens: "many" }, 400, "max_tokens"],
          [{ model: "smol", messages: hello, max_tokens: 0 }, 400, "max_tokens"],
          [{ model: "smol", messages: hello, max_tokens: 4, system: 5 }, 400, "system"],
          [{ model: "smol", messages: hello, max_tokens: 4, tools: "x" }, 400, "tools"],
          [{ model: "smol", messages: hello, max_tokens: 4, stream: "yes" }, 400, "stream"],
          [{ model: "smol", messages: hello, max_tokens: 4, stop_sequences: "x" }, 400, "stop_sequences"],
          [{ model: "nope", messages: hello, max_tokens: 4 }, 404, "not found"],
          [{ model: "../../../etc/passwd", messages: hello, max_tokens: 4 }, 400, "invalid model name"],
          [{ model: "x".repeat(5000), messages: hello, max_tokens: 4 }, 400, "invalid model name"],
          [{ model: "smol\u0000; rm -rf /", messages: hello, max_tokens: 4 }, 400, "invalid model name"],
        ];
        for (const path of ["/v1/messages", "/v1/messages/count_tokens"]) {
          for (const [body, status, text] of msgCases) {
            if (
              path.endsWith("count_tokens") &&
              JSON.stringify(body).match(/max_tokens":(0|"many")|stream|stop_seq/)
            ) {
              continue; // count_tokens takes no generation fields
            }
            const res = await post(`${url}${path}`, body);
            const err = await anthropicError(res);
            assertEquals(res.status, status, `${path} ${JSON.stringify(body).slice(0, 120)}: ${err.message}`);
            assertStringIncludes(err.message, text);
          }
        }
        const respCases: [unknown, number, string][] = [
          ['{"model":', 400, "invalid JSON"],
          [{ model: "smol" }, 400, "input"],
          [{ model: "smol", input: [5] }, 400, "item"],
          [{ model: "smol", input: "hi", tools: 5 }, 400, "tools"],
          [{ model: "smol", input: "hi", stream: "x" }, 400, "stream"],
          [{ model: "nope", input: "hi" }, 404, "not found"],
          [{ model: "../../../etc/passwd", input: "hi" }, 400, "invalid model name"],
        ];
        for (const [body, status, text] of respCases) {
          const res = await post(`${url}/v1/responses`, body);
          const got = await res.json();
          assertEquals(res.status, status, `/v1/responses ${JSON.stringify(body)}: ${JSON.stringify(got)}`);
          assertStringIncludes(got.error.message, text);
        }
        // A body announced past the limit is refused before it is read; huge headers and bytes that are not
        // UTF-8 are not a 500 and do not hang.
        for (const path of ["/v1/messages", "/v1/responses"]) {
          const big = await rawStatus(
            url,
            enc.encode(
              `POST ${path} HTTP/1.1\r\nHost: ${new URL(url).host}\r\nContent-Type: application/json\r\n` +
                `Content-Length: 200000000\r\n\r\n{"model":"smol"`,
            ),
          );
          assertStringIncludes(big, " 413 ", path);
          const headers = await rawStatus(
            url,
            enc.encode(
              `POST ${path} HTTP/1.1\r\nHost: ${new URL(url).host}\r\nX-Big: ${"a".repeat(256 * 1024)}\r\n` +
                `Content-Length: 2\r\n\r\n{}`,
            ),
          );
          assert(headers === "closed" || / 4\d\d /.test(headers), `${path} huge header: ${headers}`);
        }
        const bytes = new Uint8Array([
          ...enc.encode('{"model":"smol","max_tokens":2,"messages":[{"role":"user","content":"'),
          0xff,
          0xfe,
          0xc3,
          ...enc.encode('"}]}'),
        ]);
        const utf = await fetch(`${url}/v1/messages`, { method: "POST", body: bytes });
        assert(utf.status < 500, `invalid UTF-8: ${utf.status}`);
        await utf.body?.cancel();
        // Still serving.
        const ok = await post(`${url}/v1/messages`, { model: "smol", messages: hello, max_tokens: 2 });
        assertEquals(ok.status, 200);
        assertEquals((await ok.json()).type, "message");
      });

      await t.step(
        "a full queue is Anthropic's 529 overloaded_error on /v1/messages, Ollama's 503 on /api",
        async () => {
          const aborts: AbortController[] = [];
          const long = () => {
            const a = new AbortController();
            aborts.push(a);
            return post(`${url}/api/generate`, {
              model: "smol",
              prompt: "Tell a long story",
              options: { num_predict: 1000 },
            }, { signal: a.signal, headers: { "content-type": "application/json" } });
          };
          const running: Promise<Response>[] = [];
          try {
            // One answering (its first line is out) and three more: with one slot and up to three models the
            // daemon takes 1 + 3 requests (OLLAMA_MAX_QUEUE 1 beyond the slots), so it is full.
            running.push(long());
            await (await running[0]).body!.getReader().read();
            for (let i = 0; i < 3; i++) running.push(long());
            // The others may not have arrived yet on a busy machine: then the probe waits in the queue, and is
            // given up (which gives its place back) and sent again.
            let msg: Response | undefined;
            for (let i = 0; i < 10 && !msg; i++) {
              await new Promise((r) => setTimeout(r, 300));
              msg = await post(`${url}/v1/messages`, { model: "smol", messages: hello, max_tokens: 2 }, {
                signal: AbortSignal.timeout(3000),
                headers: { "content-type": "application/json" },
              }).catch(() => undefined);
            }
            assertEquals(msg?.status, 529);
            assertEquals((await anthropicError(msg!)).type, "overloaded_error");
            const gen = await post(`${url}/api/generate`, { model: "smol", prompt: "hi", stream: false });
            assertEquals(gen.status, 503);
            assertStringIncludes((await gen.json()).error, "server busy");
          } finally {
            for (const a of aborts) a.abort();
            await Promise.allSettled(running.map(async (p) => (await p).body?.cancel()));
          }
        },
      );
    });
  },
});
