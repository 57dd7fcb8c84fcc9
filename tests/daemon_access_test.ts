/**
 * The requests the daemon refuses, and what it says: malformed or invalid bodies (400s that say what was
 * wrong), unknown routes and methods, a body over the size limit (413 before it is read), Host and Origin
 * checked like Ollama's, and an API key when one is configured.
 */
import { assertEquals, assertStringIncludes } from "./_assert.ts";
import { post, withDaemon } from "./_daemon.ts";

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

Deno.test("daemon: bad requests, oversized bodies, foreign hosts and origins are refused", async (t) => {
  await withDaemon({}, async ({ url }) => {
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
            tools: [{ type: "function", function: { name: "f", parameters: { type: "object" } } }],
          },
          400,
          '"smol" does not support tools',
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
