/**
 * The download engine of `llama-mgr pull` against a small HTTP server in the test: ranged parts, resuming after
 * an abort or a `kill -9`, corruption, dropped connections, a changed file, no Range support, two downloads of
 * one file, free space and redirects.
 */
import { createHash } from "node:crypto";
import { dirname } from "node:path";
import { assert, assertEquals, assertRejects, assertStringIncludes } from "./_assert.ts";
import { tempDir } from "./_fixtures.ts";
import { rng } from "./_rng.ts";
import { download, DownloadError } from "../lib/models/pull/download.ts";
import { blockHasher } from "../lib/models/pull/hasher.ts";
import { http1Client, Unsupported } from "../lib/models/pull/http1.ts";

const MiB = 1024 * 1024;
const SIZE = 40 * MiB;

function generate(seed: number, size = SIZE): Uint8Array {
  const next = rng(seed);
  const words = new Uint32Array(size / 4);
  for (let i = 0; i < words.length; i++) words[i] = (next() * 4294967296) >>> 0;
  return new Uint8Array(words.buffer);
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

let cached: { data: Uint8Array; sha: string } | undefined;
function file(): { data: Uint8Array; sha: string } {
  if (!cached) {
    const data = generate(42);
    cached = { data, sha: sha256(data) };
  }
  return cached;
}

/** How the test server misbehaves; changed between runs by the tests. */
interface Behaviour {
  data: Uint8Array;
  etag: string;
  /** Answer 200 with the whole file to every request. */
  ignoreRange?: boolean;
  /** Break this many responses off after `dropAfter` bytes of each. */
  drops?: number;
  dropAfter?: number;
  /** Flip the byte at size/2 when it is served: on the next `corruptions` responses, or always. */
  corruptions?: number;
  /** Bytes per second per response (unthrottled when absent). */
  bytesPerSecond?: number;
  /** Bytes per second of responses that start at byte 0 (the first part). */
  firstPartBytesPerSecond?: number;
  /** Send ranged answers without a Content-Length (chunked). */
  chunked?: boolean;
  /** After this many bytes of a response, send nothing more until the client leaves or this is cleared. */
  stallAfter?: number;
}

interface TestServer {
  url: string;
  b: Behaviour;
  /** Body bytes sent. */
  served: number;
  requests: { path: string; range: string | null; auth: string | null }[];
  /** Most responses streaming at once. */
  mostAtOnce: number;
  close(): Promise<void>;
}

function startServer(b: Behaviour, redirectTo?: string, tls?: { cert: string; key: string }): TestServer {
  let streaming = 0;
  const srv: TestServer = {
    url: "",
    b,
    served: 0,
    requests: [],
    mostAtOnce: 0,
    close: async () => {
      await server.shutdown();
      await new Promise((r) => setTimeout(r, 50)); // a throttled stream's last sleep
    },
  };
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen() {},
    onError: () => new Response(null, { status: 500 }),
    ...tls,
  }, (req) => {
    const path = new URL(req.url).pathname;
    srv.requests.push({ path, range: req.headers.get("range"), auth: req.headers.get("authorization") });
    if (path === "/redirect") return new Response(null, { status: 302, headers: { location: "/file" } });
    if (path === "/elsewhere" && redirectTo) {
      return new Response(null, { status: 302, headers: { location: redirectTo } });
    }
    if (path === "/private") return new Response("no", { status: 401 });
    if (path !== "/file") return new Response("not found", { status: 404 });
    const data = srv.b.data;
    let start = 0;
    let end = data.length - 1;
    let status = 200;
    const range = req.headers.get("range")?.match(/^bytes=(\d+)-(\d*)$/);
    const ifRange = req.headers.get("if-range");
    if (range && !srv.b.ignoreRange && (!ifRange || ifRange === srv.b.etag)) {
      start = Number(range[1]);
      end = range[2] ? Math.min(Number(range[2]), data.length - 1) : data.length - 1;
      status = 206;
    }
    const headers: Record<string, string> = {
      "content-length": String(end - start + 1),
      etag: srv.b.etag,
      "content-type": "application/octet-stream",
    };
    if (!srv.b.ignoreRange) headers["accept-ranges"] = "bytes";
    if (status === 206) headers["content-range"] = `bytes ${start}-${end}/${data.length}`;
    if (status === 206 && srv.b.chunked && end > start) delete headers["content-length"];
    const drop = (srv.b.drops ?? 0) > 0 && end - start > (srv.b.dropAfter ?? 0);
    if (drop) srv.b.drops!--;
    const bad = data.length >> 1;
    let pos = start;
    let sent = 0;
    streaming++;
    srv.mostAtOnce = Math.max(srv.mostAtOnce, streaming);
    let open = true;
    const finish = () => {
      if (open) streaming--;
      open = false;
    };
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (pos > end) {
          finish();
          controller.close();
          return;
        }
        while (srv.b.stallAfter !== undefined && sent >= srv.b.stallAfter && open) {
          await new Promise((r) => setTimeout(r, 50));
        }
        if (!open) return;
        if (drop && sent >= (srv.b.dropAfter ?? 0)) {
          finish();
          controller.error(new Error("dropped by the test"));
          return;
        }
        let piece = data.slice(pos, Math.min(end + 1, pos + 64 * 1024));
        if (bad >= pos && bad < pos + piece.length && (srv.b.corruptions ?? 0) > 0) {
          piece = piece.slice();
          piece[bad - pos] ^= 0xff;
          if (srv.b.corruptions !== Infinity) srv.b.corruptions!--;
        }
        const rate = (start === 0 && srv.b.firstPartBytesPerSecond) || srv.b.bytesPerSecond;
        if (rate) await new Promise((r) => setTimeout(r, piece.length / rate * 1000));
        pos += piece.length;
        sent += piece.length;
        srv.served += piece.length;
        controller.enqueue(piece);
      },
      cancel: finish,
    });
    return new Response(body, { status, headers });
  });
  srv.url = tls ? `https://localhost:${server.addr.port}` : `http://127.0.0.1:${server.addr.port}`;
  return srv;
}

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

/** A server with the test file, a temp dir, and cleanup of both. */
async function setup(b: Partial<Behaviour> = {}) {
  const { data } = file();
  const server = startServer({ data, etag: '"v1"', ...b });
  const dir = await tempDir("llama-mgr-pull-");
  return {
    server,
    dest: `${dir.path}/models/model.gguf`,
    dir: dir.path,
    [Symbol.asyncDispose]: async () => {
      await server.close();
      await dir.cleanup();
    },
  };
}

const ranged = (s: TestServer) => s.requests.filter((r) => r.range && r.range !== "bytes=0-0");

Deno.test("a plain download arrives whole, with its sha256 checked, and leaves nothing beside it", async () => {
  await using t = await setup();
  const { sha } = file();
  const progress: number[] = [];
  const r = await download({
    url: `${t.server.url}/file`,
    dest: t.dest,
    sha256: sha,
    onProgress: (p) => progress.push(p.completed),
  });
  assertEquals(r, {
    path: t.dest,
    size: SIZE,
    sha256: sha,
    fetchedBytes: SIZE,
    resumed: false,
    connections: 1,
  });
  assertEquals(sha256(await Deno.readFile(t.dest)), sha);
  assertEquals(progress[progress.length - 1], SIZE);
  assertEquals(ranged(t.server).length, 1, "under 64 MiB: one ranged request");
  assertEquals(t.server.served, SIZE + 1, "the file and the probe's one byte");
  for (const extra of [".partial", ".partial.json", ".lock"]) assert(!(await exists(t.dest + extra)), extra);
});

Deno.test("parallel ranged parts make an identical file", async () => {
  await using t = await setup({ bytesPerSecond: 40 * MiB });
  const { data, sha } = file();
  const r = await download({ url: `${t.server.url}/file`, dest: t.dest, parallel: 4, chunkSize: 2 * MiB });
  assertEquals(r.sha256, sha);
  assert((await Deno.readFile(t.dest)).every((v, i) => v === data[i]));
  assertEquals(ranged(t.server).length, SIZE / (2 * MiB));
  assert(t.server.mostAtOnce >= 3, `parts in flight at once: ${t.server.mostAtOnce}`);
  assertEquals(t.server.served, SIZE + 1);
});

Deno.test("a large file starts on one connection and opens more when that one is slow", async () => {
  // Over 64 MiB, at 12 MiB/s per response: a far CDN's per-connection limit.
  const data = generate(7, 80 * MiB);
  await using t = await setup({ data, bytesPerSecond: 12 * MiB });
  const sha = sha256(data);
  const r = await download({ url: `${t.server.url}/file`, dest: t.dest, sha256: sha });
  assertEquals(r.sha256, sha);
  assertEquals(r.connections, 4);
  assert(t.server.mostAtOnce >= 3, `responses streaming at once: ${t.server.mostAtOnce}`);
  const first = ranged(t.server)[0].range;
  assertEquals(first, `bytes=0-${data.length - 1}`, "the first request asks for the whole file");
  assert(
    t.server.served <= data.length + 1 + 2 * MiB,
    `sent ${t.server.served} for ${data.length}: the first connection's cut costs little`,
  );
});

Deno.test("a ranged answer without a Content-Length is read through fetch", async () => {
  await using t = await setup({ chunked: true });
  const { sha } = file();
  const r = await download({ url: `${t.server.url}/file`, dest: t.dest, sha256: sha });
  assertEquals(r.sha256, sha);
  assertEquals(sha256(await Deno.readFile(t.dest)), sha);
});

Deno.test("parts far ahead of a slow first part are written, then hashed from disk in order", async () => {
  // The first part comes at 4 MiB/s, the rest at full speed: more than MAX_HELD (8 MiB) arrives ahead.
  await using t = await setup({ firstPartBytesPerSecond: 4 * MiB });
  const { sha } = file();
  const r = await download({
    url: `${t.server.url}/file`,
    dest: t.dest,
    sha256: sha,
    parallel: 4,
    chunkSize: 4 * MiB,
  });
  assertEquals(r.sha256, sha);
  assertEquals(r.fetchedBytes, SIZE);
});

Deno.test("an abort half way keeps the partial file, and the next run fetches only the rest", async () => {
  await using t = await setup({ bytesPerSecond: 8 * MiB });
  const { sha } = file();
  const ac = new AbortController();
  let done = 0;
  const req = { url: `${t.server.url}/file`, dest: t.dest, sha256: sha, parallel: 4, chunkSize: 2 * MiB };
  await assertRejects(() =>
    download({
      ...req,
      signal: ac.signal,
      onProgress: (p) => {
        done = p.completed;
        if (p.completed >= SIZE / 2) ac.abort();
      },
    })
  );
  assert(!(await exists(t.dest)), "no file at dest after an abort");
  assert(await exists(`${t.dest}.partial`) && await exists(`${t.dest}.partial.json`));
  await new Promise((r) => setTimeout(r, 200)); // the aborted responses' last pieces
  t.server.served = 0;
  t.server.b.bytesPerSecond = undefined;
  const r = await download(req);
  assertEquals(r.sha256, sha);
  assert(r.resumed);
  assert(
    t.server.served <= SIZE - done + 2 * MiB,
    `refetched: ${t.server.served} for ${SIZE - done} missing`,
  );
  assert(r.fetchedBytes <= SIZE - done, `fetched ${r.fetchedBytes} for ${SIZE - done} missing`);
});

Deno.test("after a kill -9 half way no file is at dest, and a resume refetches under 5%", async () => {
  await using t = await setup({ bytesPerSecond: 3 * MiB });
  const { sha } = file();
  const script = `${t.dir}/pull.ts`;
  const engine = new URL("../lib/models/pull/download.ts", import.meta.url).href;
  await Deno.writeTextFile(
    script,
    `import { download } from ${JSON.stringify(engine)};\n` +
      `await download({ url: Deno.args[0], dest: Deno.args[1], parallel: 4, chunkSize: 2 * 1024 * 1024 });\n`,
  );
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, `${t.server.url}/file`, t.dest],
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    const deadline = Date.now() + 60_000;
    while (t.server.served < SIZE / 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  } finally {
    child.kill("SIGKILL");
  }
  const status = await child.status;
  assertEquals(status.signal, "SIGKILL");
  const first = t.server.served;
  assert(first < SIZE, "killed before the end");
  assert(!(await exists(t.dest)), "no file at dest after the kill");
  t.server.b.bytesPerSecond = undefined;
  const r = await download({ url: `${t.server.url}/file`, dest: t.dest, sha256: sha });
  assertEquals(r.sha256, sha);
  assert(r.resumed);
  const refetched = t.server.served - SIZE - 2; // less the two probes' bytes
  assert(refetched <= SIZE * 0.05, `refetched ${(refetched / SIZE * 100).toFixed(1)} %`);
});

Deno.test("bytes corrupted once are caught by the sha256, fetched again, and then verified", async () => {
  await using t = await setup({ corruptions: 1 });
  const { sha } = file();
  const r = await download({
    url: `${t.server.url}/file`,
    dest: t.dest,
    sha256: sha,
    parallel: 4,
    chunkSize: 4 * MiB,
  });
  assertEquals(r.sha256, sha);
  assertEquals(r.fetchedBytes, 2 * SIZE);
  assertEquals(sha256(await Deno.readFile(t.dest)), sha);
});

Deno.test("bytes corrupted every time end in a DownloadError and no file at all", async () => {
  await using t = await setup({ corruptions: Infinity });
  const { sha } = file();
  const err = await assertRejects(
    () => download({ url: `${t.server.url}/file`, dest: t.dest, sha256: `sha256:${sha}` }),
    DownloadError,
    "failed its sha256 check twice",
  );
  assertStringIncludes(err.message, sha);
  for (const extra of ["", ".partial", ".partial.json"]) assert(!(await exists(t.dest + extra)), extra);
});

Deno.test("a dropped connection is retried from where it stopped", async () => {
  // Mid-block: the bytes read before the drop are hashed from disk.
  await using t = await setup({ drops: 2, dropAfter: 5.5 * MiB });
  const { sha } = file();
  const r = await download({ url: `${t.server.url}/file`, dest: t.dest, sha256: sha, retryDelayMs: 50 });
  assertEquals(r.sha256, sha);
  const gets = ranged(t.server).map((q) => q.range);
  assertEquals(gets.length, 3, `requests: ${gets.join(", ")}`);
  assertEquals(r.fetchedBytes, SIZE);
  assert(t.server.served <= SIZE + 1 + 2 * 64 * 1024, `served ${t.server.served}`);
});

Deno.test("dropped connections of parallel parts are retried from where they stopped", async () => {
  await using t = await setup({ drops: 5, dropAfter: 1.25 * MiB });
  const { sha } = file();
  const r = await download({
    url: `${t.server.url}/file`,
    dest: t.dest,
    sha256: sha,
    parallel: 4,
    chunkSize: 4 * MiB,
    retryDelayMs: 50,
  });
  assertEquals(r.sha256, sha);
  assertEquals(r.fetchedBytes, SIZE);
  assertEquals(ranged(t.server).length, SIZE / (4 * MiB) + 5);
});

Deno.test("a file whose ETag changed between runs is fetched again from zero", async () => {
  await using t = await setup({ bytesPerSecond: 8 * MiB });
  const ac = new AbortController();
  const req = { url: `${t.server.url}/file`, dest: t.dest, parallel: 2, chunkSize: 2 * MiB };
  await assertRejects(() =>
    download({ ...req, signal: ac.signal, onProgress: (p) => p.completed >= SIZE / 2 && ac.abort() })
  );
  const changed = generate(7);
  t.server.b = { data: changed, etag: '"v2"' };
  t.server.served = 0;
  const r = await download({ ...req, sha256: sha256(changed) });
  assertEquals(r.sha256, sha256(changed));
  assert(!r.resumed);
  assertEquals(r.fetchedBytes, SIZE);
});

Deno.test("a server that ignores Range is read in one sequential stream", async () => {
  await using t = await setup({ ignoreRange: true });
  const { sha } = file();
  const r = await download({ url: `${t.server.url}/file`, dest: t.dest, sha256: sha, parallel: 4 });
  assertEquals(r.sha256, sha);
  assertEquals(t.server.requests.length, 1, "the probe's answer is the stream");
  assertEquals(t.server.served, SIZE);
});

Deno.test("two downloads of one file at once in one process make one transfer and both succeed", async () => {
  await using t = await setup({ bytesPerSecond: 40 * MiB });
  const { sha } = file();
  const req = { url: `${t.server.url}/file`, dest: t.dest, sha256: sha };
  const [a, b] = await Promise.all([download(req), download(req)]);
  assertEquals(a.sha256, sha);
  assertEquals(b.sha256, sha);
  assertEquals(t.server.served, SIZE + 1);
});

Deno.test("two downloads of one file at once in two processes make one transfer and both succeed", async () => {
  await using t = await setup({ bytesPerSecond: 10 * MiB });
  const { sha } = file();
  const script = `${t.dir}/pull.ts`;
  const engine = new URL("../lib/models/pull/download.ts", import.meta.url).href;
  await Deno.writeTextFile(
    script,
    `import { download } from ${JSON.stringify(engine)};\n` +
      `const r = await download({ url: Deno.args[0], dest: Deno.args[1], sha256: Deno.args[2] });\n` +
      `console.log(JSON.stringify(r));\n`,
  );
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, `${t.server.url}/file`, t.dest, sha],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const out = child.output();
  const deadline = Date.now() + 60_000;
  while (t.server.served < MiB && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  const mine = await download({ url: `${t.server.url}/file`, dest: t.dest, sha256: sha });
  const theirs = await out;
  assertEquals(theirs.code, 0, new TextDecoder().decode(theirs.stderr));
  assertEquals(JSON.parse(new TextDecoder().decode(theirs.stdout)).sha256, sha);
  assertEquals(mine.sha256, sha);
  assertEquals(mine.fetchedBytes, 0);
  assertEquals(t.server.served, SIZE + 1, "one transfer (and the first one's probe)");
});

/** A CA, and a certificate for localhost signed by it (rustls refuses a CA as the server's own), with openssl. */
async function makeCertificates(dir: string): Promise<{ ca: string; cert: string; key: string }> {
  const run = async (...args: string[]) =>
    (await new Deno.Command("openssl", { args, cwd: dir, stdout: "null", stderr: "null", stdin: "null" })
      .output()).success;
  await Deno.writeTextFile(
    `${dir}/leaf.cnf`,
    "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
  );
  const steps = [
    [
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      "ca.key",
      "-out",
      "ca.pem",
      "-days",
      "1",
      "-subj",
      "/CN=test CA",
    ],
    [
      "req",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      "leaf.key",
      "-out",
      "leaf.csr",
      "-subj",
      "/CN=localhost",
    ],
    [
      "x509",
      "-req",
      "-in",
      "leaf.csr",
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      "leaf.pem",
      "-days",
      "1",
      "-extfile",
      "leaf.cnf",
    ],
  ];
  for (const step of steps) if (!await run(...step)) throw new Error(`openssl ${step.join(" ")} failed`);
  return {
    ca: `${dir}/ca.pem`,
    cert: await Deno.readTextFile(`${dir}/leaf.pem`),
    key: await Deno.readTextFile(`${dir}/leaf.key`),
  };
}

const hasOpenssl = await new Deno.Command("openssl", { args: ["version"], stdout: "null", stderr: "null" })
  .output().then((o) => o.success, () => false);

Deno.test({
  name: "over https the HTTP/1.1 client reads a range, and a download makes the same file",
  ignore: !hasOpenssl, // the test's certificates are made with openssl
  async fn() {
    const dir = await tempDir("llama-mgr-pull-tls-");
    try {
      const certs = await makeCertificates(dir.path);
      const { data, sha } = file();
      const server = startServer({ data, etag: '"v1"' }, undefined, { cert: certs.cert, key: certs.key });
      try {
        // A child process, so that it trusts the test's CA (DENO_CERT) as a user's corporate CA would be.
        const script = `${dir.path}/pull.ts`;
        const lib = new URL("../lib/models/pull/", import.meta.url).href;
        await Deno.writeTextFile(
          script,
          `import { download } from ${JSON.stringify(`${lib}download.ts`)};\n` +
            `import { http1Client } from ${JSON.stringify(`${lib}http1.ts`)};\n` +
            `const c = http1Client();\n` +
            `const res = await c.get(new URL(Deno.args[0]), { range: "bytes=1000-1999" });\n` +
            `const got = new Uint8Array(1000);\n` +
            `let n = 0;\n` +
            `while (n < 1000) { const v = await res.read(got.subarray(n)); if (!v.length) break; n += v.length; }\n` +
            `await res.finish();\n` +
            `c.close();\n` +
            `const r = await download({ url: Deno.args[0], dest: Deno.args[1], sha256: Deno.args[2] });\n` +
            `console.log(JSON.stringify({ status: res.status, range: Array.from(got.subarray(0, n)), r }));\n`,
        );
        const out = await new Deno.Command(Deno.execPath(), {
          args: ["run", "-A", script, `${server.url}/file`, `${dir.path}/m.gguf`, sha],
          env: { DENO_CERT: certs.ca },
          stdout: "piped",
          stderr: "piped",
        }).output();
        assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
        const got = JSON.parse(new TextDecoder().decode(out.stdout));
        assertEquals(got.status, 206);
        assertEquals(got.range, Array.from(data.subarray(1000, 2000)));
        assertEquals(got.r.sha256, sha);
        assertEquals(sha256(await Deno.readFile(`${dir.path}/m.gguf`)), sha);
      } finally {
        await server.close();
      }
    } finally {
      await dir.cleanup();
    }
  },
});

Deno.test("the HTTP/1.1 client leaves to fetch an answer it cannot read, and closes its connection", async () => {
  const enc = new TextEncoder();
  const cases: [string, string][] = [
    ["ICY 200 OK\r\n\r\n", 'the status line is not HTTP/1.x: "ICY 200 OK"'],
    ["HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", "not HTTP/1.1: HTTP/1.0"],
    [`HTTP/1.1 200 OK\r\nX-Big: ${"a".repeat(20_000)}`, "does not end within its first 16384 bytes"],
    ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "a body without a Content-Length"],
  ];
  for (const [wire, says] of cases) {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    // The server answers, then waits for the client to close the connection.
    const closed = (async () => {
      const conn = await listener.accept();
      try {
        await conn.read(new Uint8Array(4096));
        await conn.write(enc.encode(wire));
        const buf = new Uint8Array(4096);
        while ((await conn.read(buf)) !== null) { /* until the client closes */ }
        return true;
      } catch {
        return true; // reset by the client
      } finally {
        conn.close();
      }
    })();
    const c = http1Client();
    try {
      const url = new URL(`http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}/f`);
      await assertRejects(() => c.get(url, { range: "bytes=0-9" }), Unsupported, says);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<false>((r) => timer = setTimeout(() => r(false), 5000));
      assertEquals(await Promise.race([closed, late]), true, `the connection stays open after: ${says}`);
      clearTimeout(timer);
    } finally {
      c.close();
      listener.close();
    }
  }
});

Deno.test("too little free disk space is an error before any transfer", async () => {
  await using t = await setup();
  const err = await assertRejects(
    () => download({ url: `${t.server.url}/file`, dest: t.dest, freeBytes: () => Promise.resolve(10 * MiB) }),
    DownloadError,
    "not enough free disk space",
  );
  assertStringIncludes(err.message, "40.0 MiB needed");
  assert(t.server.served <= 1, "only the probe's byte");
  assert(!(await exists(t.dest)) && !(await exists(`${t.dest}.partial`)));
});

for (
  const [what, size] of [["on the writer's Worker", SIZE], ["on the receiving thread", 4 * MiB]] as const
) {
  Deno.test(`a disk that fills up mid-way ends the pull with the system's error (${what}), nothing at dest`, async () => {
    // The partial file is /dev/full: every write of a byte fails with ENOSPC, as on a disk that filled up.
    await using t = await setup({ data: generate(3, size) });
    await Deno.mkdir(dirname(t.dest), { recursive: true });
    await Deno.symlink("/dev/full", `${t.dest}.partial`);
    const err = await assertRejects(
      () => download({ url: `${t.server.url}/file`, dest: t.dest }),
      DownloadError,
      `cannot write ${t.dest}.partial: No space left on device`,
    );
    assertStringIncludes(err.hint ?? "", "free some disk space");
    assert(t.server.requests.length <= 3, "a full disk is not retried");
    assert(!(await exists(t.dest)), "no file at dest");
    const state = JSON.parse(await Deno.readTextFile(`${t.dest}.partial.json`));
    assertEquals(state.have, [], "the state claims no byte that did not reach the disk");
  });
}

Deno.test("a stalled connection's bytes reach the disk and the state long before the stall timeout", async () => {
  const { data } = file();
  await using t = await setup({ stallAfter: 300 * 1024 });
  const ac = new AbortController();
  const pulling = download({ url: `${t.server.url}/file`, dest: t.dest, signal: ac.signal }).catch((e) => e);
  const recorded = async () => {
    try {
      const state = JSON.parse(await Deno.readTextFile(`${t.dest}.partial.json`));
      return (state.have as [number, number][]).reduce((n, [a, b]) => n + b - a, 0);
    } catch {
      return 0;
    }
  };
  const deadline = Date.now() + 20_000;
  let have = 0;
  while ((have = await recorded()) < 300 * 1024 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
  }
  ac.abort();
  assert(await pulling instanceof Error, "the pull was aborted");
  t.server.b.stallAfter = undefined;
  assert(have >= 300 * 1024, `the state records ${have} bytes of the 320 KiB sent before the stall`);
  const partial = await Deno.readFile(`${t.dest}.partial`);
  assertEquals(sha256(partial.subarray(0, have)), sha256(data.subarray(0, have)), "and they are on disk");
});

Deno.test("reading back what an earlier run fetched stops when the pull is aborted", async () => {
  const dir = await tempDir("llama-mgr-hasher-");
  try {
    const path = `${dir.path}/partial`;
    await Deno.writeFile(path, generate(5, 8 * MiB));
    const h = blockHasher({ blocks: 2, blockSize: MiB });
    const ac = new AbortController();
    ac.abort(new Error("interrupted"));
    await assertRejects(() => h.file(path, 0, 8 * MiB, ac.signal), Error, "interrupted");
    await h.file(path, 0, 8 * MiB);
    assertEquals(h.digest(), sha256(await Deno.readFile(path)), "without an abort it hashes the range");
  } finally {
    await dir.cleanup();
  }
});

Deno.test("redirects are followed; Authorization goes to the same origin only", async () => {
  const { data, sha } = file();
  await using t = await setup();
  const other = startServer({ data, etag: '"v1"' });
  const front = startServer({ data, etag: '"v1"' }, `${other.url}/file`);
  try {
    const headers = { Authorization: "Bearer secret" };
    const a = await download({ url: `${t.server.url}/redirect`, dest: `${t.dest}.a`, sha256: sha, headers });
    assertEquals(a.sha256, sha);
    assert(t.server.requests.every((r) => r.auth === "Bearer secret"), "same origin keeps it");
    const b = await download({ url: `${front.url}/elsewhere`, dest: `${t.dest}.b`, sha256: sha, headers });
    assertEquals(b.sha256, sha);
    assertEquals(front.requests[0].auth, "Bearer secret");
    assert(
      other.requests.length > 0 && other.requests.every((r) => r.auth === null),
      "another origin: dropped",
    );
  } finally {
    await other.close();
    await front.close();
  }
});

Deno.test("a refusal is a DownloadError with the HTTP status", async () => {
  await using t = await setup();
  const e401 = await assertRejects(
    () => download({ url: `${t.server.url}/private`, dest: t.dest }),
    DownloadError,
  );
  assertEquals(e401.status, 401);
  assertStringIncludes(e401.hint ?? "", "token");
  const e404 = await assertRejects(
    () => download({ url: `${t.server.url}/nope`, dest: t.dest }),
    DownloadError,
  );
  assertEquals(e404.status, 404);
  assert(!(await exists(t.dest)));
});

Deno.test("an injected fetch is used, even one whose bodies are not byte streams", async () => {
  await using t = await setup();
  const { sha } = file();
  let calls = 0;
  const wrapped: typeof fetch = async (input, init) => {
    calls++;
    const res = await fetch(input, init);
    // A default (not byte) stream: no BYOB reader, so the engine copies.
    return new Response(res.body?.pipeThrough(new TransformStream()), {
      status: res.status,
      headers: res.headers,
    });
  };
  const r = await download({
    url: `${t.server.url}/file`,
    dest: t.dest,
    sha256: sha,
    parallel: 2,
    fetch: wrapped,
  });
  assertEquals(r.sha256, sha);
  assertEquals(calls, t.server.requests.length);
});
