/**
 * A minimal HTTP/1.1 client for llama-server on 127.0.0.1: keep-alive connections reused from a small pool,
 * the body yielded chunk by chunk as it arrives (chunked transfer coding decoded). It exists for speed: every
 * token crosses this hop, and a plain socket costs less CPU per chunk than `fetch`'s body stream.
 *
 * Connections are kept ready so that a request never waits for a connect: llama-server closes a connection
 * after every streamed answer (though it announces keep-alive) and after 5 s idle, so each idle pooled
 * connection has a read pending that notices the close at once and drops it; and while requests are coming
 * in, connections are opened in the background until there are as many ready as requests were lately in
 * flight at once. Those connects happen a moment after requests go out, not between them: a connect costs the
 * daemon's one thread time that a burst of requests would otherwise wait for one after another.
 *
 * @module
 */
import { HttpError } from "../http.ts";
import { upstreamMessage } from "./sse.ts";
import { concatBytes } from "../../util/bytes.ts";
import { findHeadEnd, MalformedHead, parseResponseHead, requestHead } from "../../util/http1_head.ts";
import type { ResponseHead } from "../../util/http1_head.ts";

/** An answer being received. */
export interface UpstreamStream {
  /** HTTP status. */
  status: number;
  /** Response headers, names lower-cased. */
  headers: Record<string, string>;
  /** The body, decoded from chunked coding, as it arrives. */
  chunks: AsyncGenerator<Uint8Array>;
  /** Closes the connection unless the answer was read to its end (stops llama-server's work on it). */
  close(): void;
}

const enc = new TextEncoder();
const dec = new TextDecoder();
const EARLY_END =
  "llama-server closed the connection before the answer was complete (did it crash? see its log)";
const POOL_MAX = 8;
/**
 * Connections are topped up only when a request came or went within this long: llama-server closes an idle
 * one after 5 s, and a request after a pause should not wait for a connect either.
 */
const BUSY_MS = 60_000;
/** How long after the last request went out (or ended) the pool is topped up. */
const TOP_UP_DELAY_MS = 3;
/** How long the most requests in flight at once is remembered. */
const PEAK_MS = 60_000;
/** Bytes read from a connection at a time. */
const READ_BUF_BYTES = 16 * 1024;

/**
 * Read buffers of connections that are done with them, for the next connection. llama-server closes a
 * connection after every streamed answer, so a new buffer per connection left megabytes of dead ones waiting
 * for the next full garbage collection, and the daemon's resident memory grew with them.
 * A buffer comes back only when no read into it is under way.
 */
const spareBufs: Uint8Array[] = [];

function takeBuf(): Uint8Array {
  return spareBufs.pop() ?? new Uint8Array(READ_BUF_BYTES);
}

function giveBuf(buf: Uint8Array): void {
  if (spareBufs.length < POOL_MAX * 2) spareBufs.push(buf);
}

/** An idle connection with a read pending, so that a close by the server is seen at once. */
interface Idle {
  conn: Deno.TcpConn;
  /** The pending read: null at end of stream; its bytes land in `buf`. */
  pending: Promise<number | null>;
  buf: Uint8Array;
}

const pool = new Map<string, Idle[]>();
/** Spare connects under way (all of them, and the count per host). */
const connects = new Set<Promise<void>>();
const connecting = new Map<string, number>();

/** Per host: requests in flight, the most at once lately, when one last came or went, a pending top-up. */
interface Demand {
  inUse: number;
  peak: number;
  peakAt: number;
  lastUse: number;
  timer?: ReturnType<typeof setTimeout>;
}
const demands = new Map<string, Demand>();

function demandOf(key: string): Demand {
  let d = demands.get(key);
  if (!d) {
    d = { inUse: 0, peak: 1, peakAt: Date.now(), lastUse: 0 };
    demands.set(key, d);
  }
  return d;
}

function indexOfCrlf(buf: Uint8Array, from: number): number {
  for (let i = from; i + 1 < buf.length; i++) if (buf[i] === 13 && buf[i + 1] === 10) return i;
  return -1;
}

/** A chunk's size from its size line `buf[from, eol)` (hex digits, then maybe `;extensions`); -1 if malformed. */
function chunkSize(buf: Uint8Array, from: number, eol: number): number {
  let size = 0;
  let digits = 0;
  for (let i = from; i < eol; i++) {
    const c = buf[i];
    const d = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : c >= 65 && c <= 70 ? c - 55 : -1;
    if (d < 0) {
      if (c === 59 || c === 32 || c === 9) break; // ';' starts extensions; whitespace before them
      return -1;
    }
    size = size * 16 + d;
    if (++digits > 12) return -1;
  }
  return digits === 0 ? -1 : size;
}

function closeQuietly(conn: Deno.TcpConn): void {
  try {
    conn.close();
  } catch { /* already closed */ }
}

/** Puts an idle connection in the pool, watching for the server closing it; `buf` is its read buffer. */
function park(key: string, conn: Deno.TcpConn, target: Target, buf = takeBuf()): void {
  const list = pool.get(key) ?? [];
  if (list.length >= POOL_MAX) {
    closeQuietly(conn);
    giveBuf(buf);
    return;
  }
  const idle: Idle = { conn, buf, pending: conn.read(buf).catch(() => null) };
  list.push(idle);
  pool.set(key, list);
  idle.pending.then(() => {
    // Anything arriving on an idle connection (its end, or bytes nobody asked for) retires it.
    const l = pool.get(key);
    const i = l?.indexOf(idle) ?? -1;
    if (i < 0) return; // taken by a request, which reads the result itself
    l!.splice(i, 1);
    closeQuietly(conn);
    giveBuf(buf);
    topUpSoon(key, target);
  });
}

interface Target {
  hostname: string;
  port: number;
}

/** Tops the pool for `key` up a moment from now (again later if more requests come first). */
function topUpSoon(key: string, target: Target): void {
  const d = demandOf(key);
  if (d.timer !== undefined) clearTimeout(d.timer);
  const timer = setTimeout(() => {
    d.timer = undefined;
    topUp(key, target);
  }, TOP_UP_DELAY_MS);
  Deno.unrefTimer(timer);
  d.timer = timer;
}

/** Opens connections for `key` until as many are ready as requests were lately in flight at once. */
function topUp(key: string, target: Target): void {
  const d = demandOf(key);
  const now = Date.now();
  if (d.inUse === 0 && now - d.lastUse > BUSY_MS) return; // nobody is asking: let the server close them
  if (now - d.peakAt > PEAK_MS) {
    d.peak = Math.max(1, d.inUse);
    d.peakAt = now;
  }
  const want = Math.min(POOL_MAX, d.peak);
  for (let have = (pool.get(key)?.length ?? 0) + (connecting.get(key) ?? 0); have < want; have++) {
    const generation = drops.get(key) ?? 0;
    connecting.set(key, (connecting.get(key) ?? 0) + 1);
    const p: Promise<void> = Deno.connect(target).then((conn) => {
      // Dropped meanwhile (daemon shutdown, or this server stopped): not kept.
      if (generation !== (drops.get(key) ?? 0)) closeQuietly(conn);
      else park(key, conn, target);
    }, () => {/* the server is gone; the next request reports it */}).finally(() => {
      connects.delete(p);
      connecting.set(key, (connecting.get(key) ?? 1) - 1);
    });
    connects.add(p);
  }
}

/** A request took a connection. */
function taken(key: string, target: Target): void {
  const d = demandOf(key);
  d.inUse++;
  d.lastUse = Date.now();
  if (d.inUse >= d.peak) {
    d.peak = d.inUse;
    d.peakAt = d.lastUse;
  }
  topUpSoon(key, target);
}

/** A request gave its connection back (or closed it). */
function given(key: string, target: Target): void {
  const d = demandOf(key);
  d.inUse = Math.max(0, d.inUse - 1);
  d.lastUse = Date.now();
  topUpSoon(key, target);
}

function clearDemand(key: string): void {
  const d = demands.get(key);
  if (d?.timer !== undefined) clearTimeout(d.timer);
  demands.delete(key);
}

/** How many times each host's connections were dropped (a connect under way when they were is not kept). */
const drops = new Map<string, number>();

/** Closes every pooled connection to a host, and any being opened to it. */
function dropHost(key: string): void {
  drops.set(key, (drops.get(key) ?? 0) + 1);
  clearDemand(key);
  for (const c of pool.get(key) ?? []) closeQuietly(c.conn);
  pool.delete(key);
}

/** Each runner's API key, by host (`127.0.0.1:PORT`): sent as `Authorization: Bearer` on every request. */
const keys = new Map<string, string>();

/**
 * Sets the API key the daemon sends to the llama-server at `base` (undefined forgets it). A key given with
 * `ifKey` is forgotten only while it is still the one set, so a late stop cannot drop a newer server's key.
 *
 * @example
 * ```ts
 * setUpstreamKey("http://127.0.0.1:8080", "3f2a...");
 * ```
 */
export function setUpstreamKey(base: string, key: string | undefined, ifKey?: string): void {
  const host = new URL(base).host;
  if (ifKey !== undefined && keys.get(host) !== ifKey) return;
  if (key === undefined) keys.delete(host);
  else keys.set(host, key);
}

const diagnoses = new Map<string, () => Promise<string | undefined>>();

/**
 * Registers what to say when the llama-server at `base` ends an answer early (it died): a runner on a cluster
 * names the RPC worker that went away. Undefined removes it.
 *
 * @example
 * ```ts
 * setUpstreamDiagnosis("http://127.0.0.1:8080", async () => "RPC worker 10.0.0.2:50052 is unreachable");
 * setUpstreamDiagnosis("http://127.0.0.1:8080", undefined);
 * ```
 */
export function setUpstreamDiagnosis(
  base: string,
  fn: (() => Promise<string | undefined>) | undefined,
): void {
  const host = new URL(base).host;
  if (fn) diagnoses.set(host, fn);
  else diagnoses.delete(host);
}

async function earlyEnd(host: string): Promise<Error> {
  const why = await diagnoses.get(host)?.().catch(() => undefined);
  return new Error(why ? `${EARLY_END.replace(/ \(did it crash\? see its log\)$/, "")}: ${why}` : EARLY_END);
}

/**
 * The header that authorises a request to the llama-server at `base` (empty when it has no key): for callers
 * that talk to a runner without this client, such as tests reading `/props` or `/slots`.
 *
 * @example
 * ```ts
 * await fetch("http://127.0.0.1:8080/props", { headers: upstreamAuth("http://127.0.0.1:8080") });
 * ```
 */
export function upstreamAuth(base: string): Record<string, string> {
  const key = keys.get(new URL(base).host);
  return key === undefined ? {} : { authorization: `Bearer ${key}` };
}

/** Closes every pooled connection to `base`, and any being opened (when its server stops). */
export function dropConnections(base: string): void {
  dropHost(new URL(base).host);
}

/** Closes every pooled connection (daemon shutdown), waiting for spare connects under way. */
export async function dropAllConnections(): Promise<void> {
  // Every host a connection was ever opened to or asked for (a connect under way is counted in `connecting`).
  for (const key of new Set([...pool.keys(), ...connecting.keys(), ...demands.keys()])) dropHost(key);
  await Promise.all(connects);
}

/**
 * Sends the request on a connection and reads the status line and headers; null if the connection was dead.
 * `first` is a read already pending on the connection (a pooled one), whose bytes come first.
 * @throws {MalformedHead} when the answer's head cannot be read.
 */
async function exchange(
  conn: Deno.TcpConn,
  request: Uint8Array,
  readBuf: Uint8Array,
  first?: Idle,
): Promise<{ head: ResponseHead; rest: Uint8Array } | null> {
  try {
    let off = 0;
    while (off < request.length) off += await conn.write(request.subarray(off));
  } catch {
    return null;
  }
  let buf: Uint8Array = new Uint8Array(0);
  let pending = first;
  while (true) {
    let n: number | null;
    let from = readBuf;
    try {
      if (pending) {
        n = await pending.pending;
        from = pending.buf;
        pending = undefined;
      } else n = await conn.read(readBuf);
    } catch {
      return null;
    }
    if (n === null) return null;
    const searched = buf.length;
    buf = concatBytes([buf, from.slice(0, n)]);
    const end = findHeadEnd(buf, searched, buf.length);
    if (end >= 0) return { head: parseResponseHead(buf.subarray(0, end)), rest: buf.slice(end) };
  }
}

/**
 * POSTs a JSON body and returns the answer as it streams in. A connection failure is a 500
 * {@linkcode HttpError} that names the server.
 *
 * @example
 * ```ts
 * const up = await openUpstream("http://127.0.0.1:8080", "/completion", JSON.stringify({ prompt: "hi", stream: true }));
 * for await (const chunk of up.chunks) console.log(new TextDecoder().decode(chunk));
 * ```
 */
export async function openUpstream(
  base: string,
  path: string,
  body: string,
  signal?: AbortSignal,
): Promise<UpstreamStream> {
  const u = new URL(base);
  const key = u.host;
  const payload = enc.encode(body);
  const apiKey = keys.get(key);
  const fields: [string, string][] = [["Host", u.host], ["Content-Type", "application/json"]];
  if (apiKey !== undefined) fields.push(["Authorization", `Bearer ${apiKey}`]);
  fields.push(["Content-Length", String(payload.length)], ["Connection", "keep-alive"]);
  const request = concatBytes([requestHead("POST", path, fields), payload]);
  // A pooled connection brings the buffer its idle read used (that read is over once the exchange has it).
  let readBuf: Uint8Array;

  // A pooled connection may still have been closed by the server just now: then try the next, then a new one.
  const target: Target = { hostname: u.hostname, port: Number(u.port || 80) };
  let conn: Deno.TcpConn | undefined;
  let answer: { head: ResponseHead; rest: Uint8Array } | null = null;
  // llama-server answers a stream's head with its first token: a client that goes away before then closes the
  // connection, which stops llama-server's work on it.
  let current: Deno.TcpConn | undefined;
  const gone = () => current && closeQuietly(current);
  signal?.addEventListener("abort", gone, { once: true });
  try {
    while (!answer) {
      signal?.throwIfAborted();
      const reused = pool.get(key)?.pop();
      if (reused) {
        readBuf = reused.buf;
        current = reused.conn;
        answer = await exchange(reused.conn, request, readBuf, reused);
        if (answer) conn = reused.conn;
        else closeQuietly(reused.conn);
        continue;
      }
      topUpSoon(key, target);
      try {
        conn = await Deno.connect(target);
      } catch (err) {
        throw new HttpError(500, `llama-server at ${base} did not answer: ${(err as Error).message}`);
      }
      current = conn;
      signal?.throwIfAborted();
      readBuf = takeBuf();
      answer = await exchange(conn, request, readBuf);
      if (!answer) {
        closeQuietly(conn);
        signal?.throwIfAborted();
        throw new HttpError(500, `llama-server at ${base} closed the connection without answering`);
      }
    }
  } catch (err) {
    if (current) closeQuietly(current);
    if (err instanceof MalformedHead) {
      throw new HttpError(500, `llama-server at ${base} sent an unreadable answer: ${err.message}`);
    }
    throw err;
  } finally {
    signal?.removeEventListener("abort", gone);
  }
  if (signal?.aborted) {
    closeQuietly(conn!);
    signal.throwIfAborted();
  }
  const c = conn!;
  taken(key, target);
  const status = answer.head.status;
  const headers: Record<string, string> = {};
  for (const [k, v] of answer.head.fields) headers[k] = v;
  const chunked = (headers["transfer-encoding"] ?? "").toLowerCase().includes("chunked");
  const length = headers["content-length"] !== undefined ? Number(headers["content-length"]) : undefined;
  const reusable = (headers["connection"] ?? "").toLowerCase() !== "close" &&
    (chunked || length !== undefined);

  let state: "reading" | "done" | "closed" = "reading";
  const finish = () => {
    // Read to the end: the connection can serve the next request.
    if (state !== "reading") return;
    state = "done";
    if (reusable) park(key, c, target, readBuf);
    else {
      closeQuietly(c);
      giveBuf(readBuf);
    }
    given(key, target);
  };
  const close = () => {
    if (state !== "reading") return;
    state = "closed";
    closeQuietly(c);
    given(key, target);
  };
  const read = async (): Promise<Uint8Array | null> => {
    if (state !== "reading") return null;
    let n: number | null;
    try {
      n = await c.read(readBuf);
    } catch (err) {
      if (state !== "reading") return null;
      throw err;
    }
    return n === null ? null : readBuf.slice(0, n);
  };

  async function* plain(): AsyncGenerator<Uint8Array> {
    let left = length ?? Infinity;
    try {
      if (answer!.rest.length) {
        left -= answer!.rest.length;
        yield answer!.rest;
      }
      while (left > 0) {
        const chunk = await read();
        if (chunk === null) {
          if (Number.isFinite(left) && state === "reading") throw await earlyEnd(key);
          break;
        }
        left -= chunk.length;
        yield chunk;
      }
      if (left <= 0) finish();
    } finally {
      close();
    }
  }

  async function* dechunk(): AsyncGenerator<Uint8Array> {
    // `pending` is never written to (reads come as fresh copies), so chunks are yielded as views into it.
    let pending: Uint8Array = answer!.rest;
    let off = 0;
    const more = async () => {
      const chunk = await read();
      if (chunk === null) throw await earlyEnd(key);
      pending = off < pending.length ? concatBytes([pending.subarray(off), chunk]) : chunk;
      off = 0;
    };
    try {
      while (true) {
        let eol: number;
        while ((eol = indexOfCrlf(pending, off)) < 0) await more();
        const size = chunkSize(pending, off, eol);
        if (size < 0) throw new Error("llama-server sent a malformed chunk");
        off = eol + 2;
        if (size === 0) {
          while (pending.length - off < 2) await more(); // the CRLF after the last chunk (no trailers)
          finish();
          return;
        }
        while (pending.length - off < size + 2) await more();
        const start = off;
        off += size + 2;
        yield pending.subarray(start, start + size);
      }
    } finally {
      close();
    }
  }

  return { status, headers, chunks: chunked ? dechunk() : plain(), close };
}

/**
 * Opens a streamed request and throws an {@linkcode HttpError} carrying llama-server's status and message when
 * the answer is not 2xx.
 *
 * @example
 * ```ts
 * const up = await openUpstreamOk("http://127.0.0.1:8080", "/v1/chat/completions", body);
 * ```
 */
export async function openUpstreamOk(
  base: string,
  path: string,
  body: string,
  signal?: AbortSignal,
): Promise<UpstreamStream> {
  const up = await openUpstream(base, path, body, signal);
  if (up.status >= 200 && up.status < 300) return up;
  const text = await bodyText(up);
  const message = text.trim() ? upstreamMessage(text) : `llama-server answered ${up.status}`;
  throw new HttpError(up.status >= 400 && up.status < 600 ? up.status : 500, message);
}

/** The rest of an answer's body as text (the connection is closed or pooled again afterwards). */
async function bodyText(up: UpstreamStream): Promise<string> {
  let text = "";
  try {
    for await (const c of up.chunks) text += dec.decode(c, { stream: true });
  } finally {
    up.close();
  }
  return text + dec.decode();
}

/**
 * POSTs JSON to llama-server on the daemon's own connections and returns the parsed answer; a non-2xx answer
 * is an {@linkcode HttpError} with llama-server's status and message. For the requests that are not streamed
 * (`/tokenize`, `/detokenize`, `/apply-template`, `/v1/embeddings`).
 *
 * @example
 * ```ts
 * const { tokens } = await postJson("http://127.0.0.1:8080", "/tokenize", { content: "hi" });
 * ```
 */
export async function postJson(base: string, path: string, body: unknown): Promise<any> {
  const text = await bodyText(await openUpstreamOk(base, path, JSON.stringify(body)));
  try {
    return JSON.parse(text);
  } catch {
    throw new HttpError(
      500,
      `llama-server answered ${path} with something that is not JSON: ${text.slice(0, 200)}`,
    );
  }
}
