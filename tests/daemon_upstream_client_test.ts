/**
 * The daemon's HTTP client to llama-server: requests go out on a connection that is already open, whether the
 * server keeps connections alive (plain answers) or closes them after every streamed answer, as llama-server
 * does; connections the server closes while idle are dropped, and shutdown leaves nothing open.
 */
import { assert, assertEquals, assertRejects } from "./_assert.ts";
import { dropAllConnections, dropConnections, openUpstream } from "../lib/daemon/upstream/client.ts";
import { HttpError } from "../lib/daemon/http.ts";

interface Seen {
  /** When the connection carrying the request was accepted. */
  acceptedAt: number;
  /** When the request arrived. */
  arrivedAt: number;
}

/** Forgets a server-side connection and closes it. */
function drop(conns: Set<Deno.Conn>, conn: Deno.Conn): void {
  conns.delete(conn);
  try {
    conn.close();
  } catch { /* closed */ }
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
      drop(conns, conn);
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
      for (const c of [...conns]) drop(conns, c);
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

Deno.test("stream client: after a burst of requests, the next burst finds as many connections open", async () => {
  const server = serve("close-after-chunked");
  try {
    for (let round = 0; round < 3; round++) {
      const sentAt = performance.now();
      const texts = await Promise.all([0, 1, 2, 3].map((i) => body(server.base, `"${round}.${i}"`)));
      texts.forEach((r, i) => assertEquals(r.text, `data: a\n\ndata: b\n\ndata: "${round}.${i}"\n\n`));
      if (round > 0) {
        const burst = server.seen.slice(-4);
        for (const s of burst) {
          assert(s.acceptedAt < sentAt, `round ${round}: a request waited for a connect`);
        }
      }
      await new Promise((r) => setTimeout(r, 30)); // the clients read their answers
    }
    assertEquals(server.seen.length, 12);
    // Four at a time, each closed after its answer: about four new ones per round, not a storm.
    assert(server.accepted <= 4 * 4 + 2, `${server.accepted} connections for 3 bursts of 4`);
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

Deno.test("stream client: when a server stops, its connections close and none are opened to it again", async () => {
  const server = serve("close-after-chunked");
  const other = serve("close-after-chunked");
  const until = async (ok: () => boolean) => {
    for (let i = 0; i < 100 && !ok(); i++) await new Promise((r) => setTimeout(r, 10));
  };
  try {
    await Promise.all([body(server.base, `"a"`), body(server.base, `"b"`), body(other.base, `"c"`)]);
    await until(() => server.open >= 2 && other.open >= 1);
    assert(server.open >= 2, `no spare connections to close (${server.open} open)`);
    dropConnections(server.base);
    await until(() => server.open === 0);
    assertEquals(server.open, 0, "connections left open to the stopped server");
    const accepted = server.accepted;
    await new Promise((r) => setTimeout(r, 100));
    assertEquals(server.accepted, accepted, "a connection was opened again to the stopped server");
    assert(other.open >= 1, "the other server's connections were closed too");
    // A request to it later still works (a server started again on the same port).
    assertEquals((await body(server.base, `"d"`)).text, `data: a\n\ndata: b\n\ndata: "d"\n\n`);
  } finally {
    await dropAllConnections();
    await server.close();
    await other.close();
  }
});

/**
 * Answers every request with the same bytes, written in the given pieces with a pause between them (the
 * client also opens a spare connection, which gets nothing until it asks).
 */
function serveRaw(pieces: Uint8Array[]) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const answer = async (conn: Deno.Conn) => {
    conns.add(conn);
    try {
      if ((await conn.read(new Uint8Array(4096))) === null) return;
      for (const p of pieces) {
        await conn.write(p);
        await new Promise((r) => setTimeout(r, 0));
      }
    } catch {
      /* closed by the client */
    } finally {
      drop(conns, conn);
    }
  };
  const done = (async () => {
    for await (const conn of listener) answer(conn);
  })();
  return {
    base: `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    async close() {
      listener.close();
      await done.catch(() => {});
      for (const c of [...conns]) drop(conns, c);
    },
  };
}

Deno.test("stream client: chunked answers are decoded however their bytes arrive", async () => {
  const enc = new TextEncoder();
  const parts = ["data: é 中文 🦙\n\n", "x", "data: " + "y".repeat(600) + "\n\n", "last"];
  // Hex sizes in either case, one with an extension, as HTTP allows.
  const wire = enc.encode(
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" +
      parts.map((p, i) => {
        const size = enc.encode(p).length.toString(16);
        return `${i % 2 ? size.toUpperCase() : size}${i === 1 ? ";ext=1" : ""}\r\n${p}\r\n`;
      }).join("") + "0\r\n\r\n",
  );
  for (const step of [1, 5, 64, wire.length]) {
    const pieces: Uint8Array[] = [];
    for (let off = 0; off < wire.length; off += step) pieces.push(wire.slice(off, off + step));
    const server = serveRaw(pieces);
    try {
      const up = await openUpstream(server.base, "/x", "{}");
      const got: Uint8Array[] = [];
      for await (const c of up.chunks) got.push(c.slice());
      const all = new Uint8Array(got.reduce((a, c) => a + c.length, 0));
      let o = 0;
      for (const c of got) {
        all.set(c, o);
        o += c.length;
      }
      assertEquals(new TextDecoder().decode(all), parts.join(""), `pieces of ${step} bytes`);
    } finally {
      await server.close();
    }
  }
  // A size line that is not hex is an error, not a guess.
  const bad = serveRaw([
    enc.encode("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"),
  ]);
  try {
    const up = await openUpstream(bad.base, "/x", "{}");
    let message = "";
    try {
      for await (const _ of up.chunks) { /* nothing before the bad size */ }
    } catch (err) {
      message = (err as Error).message;
    }
    assertEquals(message, "llama-server sent a malformed chunk");
  } finally {
    await bad.close();
  }
  await dropAllConnections();
});

Deno.test("stream client: an answer whose head is not HTTP, or never ends, is a 500 that says so", async () => {
  const enc = new TextEncoder();
  const cases: [Uint8Array, string][] = [
    [
      enc.encode('{"error":"not http"}\r\n\r\n'),
      'the status line is not HTTP/1.x: "{\\"error\\":\\"not http\\"}"',
    ],
    [
      enc.encode(`HTTP/1.1 200 OK\r\nX-Big: ${"a".repeat(20_000)}`),
      "does not end within its first 16384 bytes",
    ],
  ];
  for (const [wire, says] of cases) {
    const server = serveRaw([wire]);
    try {
      const err = await assertRejects(() => openUpstream(server.base, "/x", "{}"), HttpError, says);
      assertEquals(err.status, 500);
      assert(
        err.message.startsWith(`llama-server at ${server.base} sent an unreadable answer: `),
        err.message,
      );
    } finally {
      await server.close();
    }
  }
  await dropAllConnections();
});

Deno.test("stream client: answers larger than a read stay whole while connections come and go", async () => {
  // Read buffers pass from connection to connection: every answer must still be exactly its own, whether its
  // connection was closed by the server, kept alive, or given up by the client in the middle of the answer.
  const servers = [serve("close-after-chunked"), serve("keep-alive")];
  try {
    for (let round = 0; round < 6; round++) {
      await Promise.all([0, 1, 2, 3, 4, 5].map(async (i) => {
        const server = servers[(round + i) % 2];
        const payload = `${round}.${i}:` + String.fromCharCode(97 + i).repeat(20_000 + 997 * i);
        if (i === 5) {
          // Given up after the first piece: its connection is closed, its reads abandoned.
          const up = await openUpstream(server.base, "/x", payload);
          await up.chunks.next();
          up.close();
          return;
        }
        const want = server === servers[0] ? `data: a\n\ndata: b\n\ndata: ${payload}\n\n` : `echo ${payload}`;
        assertEquals((await body(server.base, payload)).text, want, `round ${round}, request ${i}`);
      }));
    }
  } finally {
    await dropAllConnections();
    for (const s of servers) await s.close();
  }
});
