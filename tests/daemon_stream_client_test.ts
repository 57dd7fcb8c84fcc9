/**
 * The daemon's HTTP client to llama-server: requests go out on a connection that is already open, whether the
 * server keeps connections alive (plain answers) or closes them after every streamed answer, as llama-server
 * does; connections the server closes while idle are dropped, and shutdown leaves nothing open.
 */
import { assert, assertEquals } from "./_assert.ts";
import { dropAllConnections, openUpstream } from "../lib/daemon/stream_client.ts";

interface Seen {
  /** When the connection carrying the request was accepted. */
  acceptedAt: number;
  /** When the request arrived. */
  arrivedAt: number;
}

/** A small HTTP/1.1 server: chunked answers then close (llama-server's streaming), or kept-alive answers. */
function serve(mode: "close-after-chunked" | "keep-alive") {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const seen: Seen[] = [];
  const conns = new Set<Deno.Conn>();
  let accepted = 0;
  const enc = new TextEncoder();
  const handle = async (conn: Deno.Conn) => {
    const acceptedAt = performance.now();
    const buf = new Uint8Array(4096);
    let text = "";
    try {
      while (true) {
        const n = await conn.read(buf);
        if (n === null) return;
        text += new TextDecoder().decode(buf.subarray(0, n));
        const end = text.indexOf("\r\n\r\n");
        if (end < 0) continue;
        const length = Number(text.match(/content-length: (\d+)/i)?.[1] ?? 0);
        if (text.length < end + 4 + length) continue;
        const body = text.slice(end + 4, end + 4 + length);
        text = text.slice(end + 4 + length);
        seen.push({ acceptedAt, arrivedAt: performance.now() });
        if (mode === "close-after-chunked") {
          const parts = ["data: a\n\n", "data: b\n\n", `data: ${body}\n\n`];
          await conn.write(enc.encode(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nKeep-Alive: timeout=5, max=100\r\n\r\n" +
              parts.map((p) => `${p.length.toString(16)}\r\n${p}\r\n`).join("") + "0\r\n\r\n",
          ));
          return; // and close, though keep-alive was announced
        }
        const answer = `echo ${body}`;
        await conn.write(enc.encode(`HTTP/1.1 200 OK\r\nContent-Length: ${answer.length}\r\n\r\n${answer}`));
      }
    } catch {
      /* closed by the client */
    } finally {
      conns.delete(conn);
      try {
        conn.close();
      } catch { /* closed */ }
    }
  };
  const done = (async () => {
    for await (const conn of listener) {
      accepted++;
      conns.add(conn);
      handle(conn);
    }
  })();
  return {
    base: `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    seen,
    get accepted() {
      return accepted;
    },
    get open() {
      return conns.size;
    },
    async close() {
      listener.close();
      await done.catch(() => {});
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
    },
  };
}

async function body(base: string, payload: string): Promise<{ text: string; sentAt: number }> {
  const sentAt = performance.now();
  const up = await openUpstream(base, "/x", payload);
  let text = "";
  for await (const c of up.chunks) text += new TextDecoder().decode(c);
  return { text, sentAt };
}

Deno.test("stream client: after the server closes a streamed answer's connection, the next request finds one open", async () => {
  const server = serve("close-after-chunked");
  try {
    const sent: number[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await body(server.base, `"${i}"`);
      assertEquals(r.text, `data: a\n\ndata: b\n\ndata: "${i}"\n\n`);
      sent.push(r.sentAt);
      await new Promise((r) => setTimeout(r, 20)); // a client's pause between questions
    }
    assertEquals(server.seen.length, 5, "each request reached the server once");
    for (let i = 1; i < 5; i++) {
      assert(
        server.seen[i].acceptedAt < sent[i],
        `request ${i + 1} waited for a connect (accepted ${server.seen[i].acceptedAt}, sent ${sent[i]})`,
      );
    }
    assert(server.accepted <= 6, `one spare at a time, not a storm: ${server.accepted} connections`);
  } finally {
    await dropAllConnections();
    await server.close();
  }
});

Deno.test("stream client: a kept-alive connection is reused, and shutdown closes every connection", async () => {
  const server = serve("keep-alive");
  try {
    for (let i = 0; i < 5; i++) assertEquals((await body(server.base, `${i}`)).text, `echo ${i}`);
    assertEquals(server.seen.length, 5);
    assert(server.accepted <= 2, `${server.accepted} connections for 5 requests`);
    await dropAllConnections();
    for (let i = 0; i < 50 && server.open > 0; i++) await new Promise((r) => setTimeout(r, 10));
    assertEquals(server.open, 0, "connections left open after shutdown");
  } finally {
    await dropAllConnections();
    await server.close();
  }
});
