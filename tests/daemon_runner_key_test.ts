/**
 * Each runner the daemon starts has an API key of its own, given through its environment: a request straight
 * to the runner's port without it is refused, every route through the daemon still works, and neither the
 * process's command line nor the server's record on disk holds the key.
 */
import { join } from "node:path";
import { assert, assertEquals } from "./_assert.ts";
import { post, withDaemon } from "./_daemon.ts";

/** POSTs JSON over a plain TCP connection (`fetch` refuses some ports an auto-picked one may be). */
async function rawPost(base: string, path: string, body: unknown, headers = ""): Promise<number> {
  const u = new URL(base);
  const conn = await Deno.connect({ hostname: u.hostname, port: Number(u.port) });
  try {
    const payload = new TextEncoder().encode(JSON.stringify(body));
    await conn.write(new TextEncoder().encode(
      `POST ${path} HTTP/1.1\r\nHost: ${u.host}\r\nContent-Type: application/json\r\n${headers}` +
        `Content-Length: ${payload.length}\r\nConnection: close\r\n\r\n`,
    ));
    await conn.write(payload);
    const buf = new Uint8Array(512);
    const n = await conn.read(buf);
    const line = new TextDecoder().decode(buf.subarray(0, n ?? 0)).split("\r\n")[0];
    return Number(line.split(" ")[1]);
  } finally {
    conn.close();
  }
}

/** Reads a whole streamed answer and returns its NDJSON lines. */
async function lines(r: Response): Promise<Record<string, unknown>[]> {
  return (await r.text()).split("\n").filter((l) => l).map((l) => JSON.parse(l));
}

Deno.test("daemon: runners need the daemon's key; every route through the daemon carries it", async (t) => {
  await withDaemon({}, async ({ url, daemon, dataDir }) => {
    const chat = await post(`${url}/api/chat`, {
      model: "smol",
      messages: [{ role: "user", content: "hi" }],
      stream: false,
      options: { num_predict: 4 },
    });
    assertEquals(chat.status, 200, await chat.clone().text());
    assertEquals((await chat.json()).done, true);
    const runner = daemon.ctx.scheduler.list().find((r) => !r.embedding);
    assert(runner?.url && runner.pid, "a chat runner");

    await t.step("a request straight to the runner without the key is 401; /health stays open", async () => {
      assertEquals(await rawPost(runner.url!, "/completion", { prompt: "hi", n_predict: 1 }), 401);
      assertEquals(
        await rawPost(runner.url!, "/v1/chat/completions", { messages: [{ role: "user", content: "hi" }] }),
        401,
      );
      assertEquals(
        await rawPost(
          runner.url!,
          "/completion",
          { prompt: "hi", n_predict: 1 },
          "Authorization: Bearer x\r\n",
        ),
        401,
      );
      const health = await fetch(`${runner.url}/health`).catch(() => undefined);
      if (health) {
        assertEquals(health.status, 200);
        await health.body?.cancel();
      }
    });

    await t.step("the key is on neither the command line nor in the server records", async () => {
      const cmdline = await Deno.readTextFile(`/proc/${runner.pid}/cmdline`);
      const environ = await Deno.readTextFile(`/proc/${runner.pid}/environ`);
      const key = environ.split("\0").find((e) => e.startsWith("LLAMA_API_KEY="))?.slice(
        "LLAMA_API_KEY=".length,
      );
      assert(key && key.length >= 32, "the runner's environment holds its key");
      assert(!cmdline.includes(key), "the key is not on the command line");
      assert(!cmdline.includes("--api-key"));
      const found: string[] = [];
      const walk = async (dir: string) => {
        for await (const e of Deno.readDir(dir)) {
          const p = join(dir, e.name);
          if (e.isDirectory) await walk(p);
          else if (e.isFile && (await Deno.readTextFile(p).catch(() => "")).includes(key)) found.push(p);
        }
      };
      await walk(dataDir);
      assertEquals(found, []);
    });

    await t.step("/api/generate streamed, not streamed, raw and with a context works", async () => {
      const once = await post(`${url}/api/generate`, {
        model: "smol",
        prompt: "Once upon a time",
        stream: false,
        options: { num_predict: 4 },
      });
      assertEquals(once.status, 200);
      const body = await once.json();
      assertEquals(body.done, true);
      const again = await post(`${url}/api/generate`, {
        model: "smol",
        prompt: " and then",
        context: body.context,
        stream: false,
        options: { num_predict: 2 },
      });
      assertEquals(again.status, 200, await again.clone().text());
      await again.body?.cancel();
      const streamed = await lines(
        await post(`${url}/api/generate`, { model: "smol", prompt: "hi", options: { num_predict: 4 } }),
      );
      assertEquals(streamed.at(-1)?.done, true);
      assert(!streamed.some((l) => "error" in l));
      const raw = await lines(
        await post(`${url}/api/generate`, {
          model: "smol",
          prompt: "hi",
          raw: true,
          options: { num_predict: 4 },
        }),
      );
      assertEquals(raw.at(-1)?.done, true);
      assert(!raw.some((l) => "error" in l));
    });

    await t.step("/api/chat streamed and /v1/chat/completions work", async () => {
      const streamed = await lines(
        await post(`${url}/api/chat`, {
          model: "smol",
          messages: [{ role: "user", content: "hi" }],
          options: { num_predict: 4 },
        }),
      );
      assertEquals(streamed.at(-1)?.done, true);
      assert(!streamed.some((l) => "error" in l));
      const v1 = await post(`${url}/v1/chat/completions`, {
        model: "smol",
        messages: [{ role: "user", content: "hi" }],
        max_tokens: 4,
      });
      assertEquals(v1.status, 200, await v1.clone().text());
      assertEquals((await v1.json()).object, "chat.completion");
    });

    await t.step("/api/embed and /v1/embeddings work", async () => {
      const e = await post(`${url}/api/embed`, { model: "smol", input: ["hello", "world"] });
      assertEquals(e.status, 200, await e.clone().text());
      assertEquals((await e.json()).embeddings.length, 2);
      const v1 = await post(`${url}/v1/embeddings`, { model: "smol", input: "hello" });
      assertEquals(v1.status, 200, await v1.clone().text());
      assert((await v1.json()).data[0].embedding.length > 0);
      const embedder = daemon.ctx.scheduler.list().find((r) => r.embedding);
      assert(embedder?.url);
      assertEquals(await rawPost(embedder.url, "/v1/embeddings", { input: "hello" }), 401);
    });
  });
});
