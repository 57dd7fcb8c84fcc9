/**
 * The daemon's request log: one line per request (method, path, status, duration, and for a model request the
 * model and its token counts), in text or JSON, with level filtering; a streamed answer is logged when it ends.
 */
import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { post, readNdjson, withDaemon } from "./_daemon.ts";

const greedy = { temperature: 0, top_k: 1, seed: 42, num_predict: 4 };

/** The JSON lines with `msg` "request". */
function requestLines(logs: string[]): Record<string, any>[] {
  return logs.map((l) => JSON.parse(l)).filter((l) => l.msg === "request");
}

Deno.test("daemon request log: json, one parseable line per request", async (t) => {
  const logs: string[] = [];
  await withDaemon({ logs, logFormat: "json" }, async ({ url }) => {
    await t.step("every line is a JSON object with time, level and msg", async () => {
      await (await fetch(`${url}/api/version`)).body?.cancel();
      for (const l of logs) {
        const o = JSON.parse(l);
        assert(typeof o.time === "string" && typeof o.level === "string" && typeof o.msg === "string", l);
      }
    });

    await t.step("a plain request: method, path, status, duration_ms", async () => {
      logs.length = 0;
      await (await fetch(`${url}/api/tags?x=1`)).body?.cancel();
      await (await fetch(`${url}/api/nothing-here`)).body?.cancel();
      const [tags, missing] = requestLines(logs);
      assertEquals([tags.level, tags.method, tags.path, tags.status], ["info", "GET", "/api/tags", 200]);
      assert(typeof tags.duration_ms === "number" && tags.duration_ms >= 0);
      assertEquals(tags.model, undefined);
      assertEquals([missing.path, missing.status], ["/api/nothing-here", 404]);
    });

    await t.step("/api/generate stream:false: the model and eval_count", async () => {
      logs.length = 0;
      const r = await post(`${url}/api/generate`, {
        model: "smol",
        prompt: "Why is the sky blue?",
        stream: false,
        options: greedy,
      });
      const body = await r.json();
      const lines = requestLines(logs);
      assertEquals(lines.length, 1);
      const [line] = lines;
      assertEquals([line.method, line.path, line.status, line.model], ["POST", "/api/generate", 200, "smol"]);
      assertEquals(line.eval_count, body.eval_count);
      assertEquals(line.prompt_eval_count, body.prompt_eval_count);
      assert(line.duration_ms > 0);
    });

    await t.step("a streamed /api/chat is logged once its stream is done, with its counts", async () => {
      logs.length = 0;
      const r = await post(`${url}/api/chat`, {
        model: "smol",
        messages: [{ role: "user", content: "hi" }],
        options: greedy,
      });
      assertEquals(requestLines(logs).length, 0, "logged before the stream was read");
      const last = (await readNdjson(r)).at(-1)!;
      // The line is written as the lease is given back, just after the last bytes.
      for (let i = 0; i < 50 && requestLines(logs).length === 0; i++) {
        await new Promise((r) => setTimeout(r, 10));
      }
      const [line] = requestLines(logs);
      assertEquals([line.path, line.status, line.model, line.eval_count], [
        "/api/chat",
        200,
        "smol",
        last.eval_count,
      ]);
    });

    await t.step("/v1/chat/completions: the counts from llama-server's usage", async () => {
      logs.length = 0;
      const r = await post(`${url}/v1/chat/completions`, {
        model: "smol",
        messages: [{ role: "user", content: "hi" }],
        max_tokens: 4,
        temperature: 0,
      });
      const body = await r.json();
      for (let i = 0; i < 50 && requestLines(logs).length === 0; i++) {
        await new Promise((r) => setTimeout(r, 10));
      }
      const [line] = requestLines(logs);
      assertEquals([line.path, line.model], ["/v1/chat/completions", "smol"]);
      assertEquals(line.eval_count, body.usage.completion_tokens);
      assertEquals(line.prompt_eval_count, body.usage.prompt_tokens);
    });
  });
});

Deno.test("daemon request log: text lines read as time, level, message, key=value", async () => {
  const logs: string[] = [];
  await withDaemon({ logs }, async ({ url }) => {
    await (await fetch(`${url}/api/tags`)).body?.cancel();
  });
  const line = logs.find((l) => l.includes(" request "));
  assert(line, logs.join("\n"));
  assertMatch(
    line,
    /^\d{4}-\d\d-\d\dT[\d:.]+Z INFO {2}request method=GET path=\/api\/tags status=200 duration_ms=[\d.]+$/,
  );
});

Deno.test("daemon request log: levels filter lines", async (t) => {
  await t.step("at info, debug lines are hidden", async () => {
    const logs: string[] = [];
    await withDaemon({ logs, logFormat: "json" }, async ({ url }) => {
      await (await fetch(`${url}/api/tags`)).body?.cancel();
    });
    const parsed = logs.map((l) => JSON.parse(l));
    assertEquals(parsed.filter((l) => l.level === "debug"), []);
    assertEquals(parsed.filter((l) => l.msg === "request").length, 1);
  });
  await t.step("at debug, they are written", async () => {
    const logs: string[] = [];
    await withDaemon({ logs, logFormat: "json", logLevel: "debug" }, async ({ url }) => {
      await (await fetch(`${url}/api/tags`)).body?.cancel();
    });
    const parsed = logs.map((l) => JSON.parse(l));
    assertEquals(parsed.filter((l) => l.level === "debug").map((l) => [l.msg, l.path]), [
      ["request started", "/api/tags"],
    ]);
  });
  await t.step("at warn, requests are not logged", async () => {
    const logs: string[] = [];
    await withDaemon({ logs, logLevel: "warn" }, async ({ url }) => {
      await (await fetch(`${url}/api/tags`)).body?.cancel();
    });
    assertEquals(logs, []);
  });
});
