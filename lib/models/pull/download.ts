/**
 * The download engine of `llama-mgr pull`: one file from an http(s) URL to a path.
 *
 * - A large file comes over one connection, and in ranged parts over several when one connection is slow
 *   (a far CDN). The sha256 is computed while the bytes arrive, in order, and a Worker thread writes them
 *   meanwhile: parts ahead of the hasher are held in memory for it, at most 8 MiB in all (beyond that they
 *   are only written, and the hasher reads them back from the page cache).
 * - The bytes go to `<dest>.partial`, beside a small JSON sidecar (`<dest>.partial.json`) that records which
 *   ranges are on disk and the server's validator (ETag, Last-Modified). A run after Ctrl-C, `kill -9` or a
 *   dropped connection fetches only what is missing; a file that changed on the server starts from zero.
 * - The file appears at `dest` only when it is complete and verified (an atomic rename); a digest that does
 *   not match is fetched again once.
 * - Two downloads of one `dest`, in one process or two, make one transfer.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { basename, dirname, resolve } from "node:path";
import { UserError } from "../../util/errors.ts";
import { freeBytes, sha256File } from "../../util/fs.ts";
import { formatBytes, removeAll } from "../../util/fs.ts";
import { withLock } from "../../util/lock.ts";
import { blockHasher, ShortFile } from "./hasher.ts";
import { type Http1Client, http1Client, http1Usable, Unsupported } from "./http1.ts";
import { blockWriter, writeAll, WriteError } from "./writer.ts";

const MiB = 1024 * 1024;
/** Files over this size are fetched in parallel parts unless the request says otherwise. */
const PARALLEL_OVER = 64 * MiB;
const DEFAULT_PARALLEL = 4;
/**
 * Bytes fetched ahead of the hasher and held in memory for it, all parts together: 4 parts of 6 MiB in
 * flight lead it by up to 18 MiB when they go at one speed. Past it a part's bytes are written but not held,
 * and the hasher reads them back (from the page cache) when it gets there; pausing that part instead would
 * leave megabytes in its socket buffers, lost on a kill. The bound keeps a pull's resident memory small
 * beside the writer's Worker (bench/pull.ts measures it).
 */
const MAX_HELD = 8 * MiB;
/** Retries of a failed request that made no progress (one that made progress starts the count again). */
const RETRIES = 5;
/** A connection that delivers nothing for this long is dropped and retried. */
const STALL_MS = 60_000;

/** How far a download is. */
export interface DownloadProgress {
  /** Bytes on disk, including those of an earlier run that this one resumes. */
  completed: number;
  /** The file's size (0 while unknown). */
  total: number;
  /** Transfer rate over the last seconds. */
  bytesPerSecond?: number;
}

/** What to download, where to, and how to check it. */
export interface DownloadRequest {
  /** An http(s) URL; redirects are followed (Authorization is dropped when one leads to another origin). */
  url: string;
  /** The final path; the bytes go to `<dest>.partial` first, renamed when complete and verified. */
  dest: string;
  /** The expected sha256 in hex (a `sha256:` prefix is allowed). */
  sha256?: string;
  /** The expected size, when known; a server that reports another is an error. */
  size?: number;
  /** Request headers, e.g. `Authorization: Bearer ...`. */
  headers?: Record<string, string>;
  /**
   * Ranged parts in flight at once. By default a file over 64 MiB starts on one connection and goes to 4 when
   * that one is slow (it waits on the network and brings under 128 MiB/s); a smaller one uses 1.
   */
  parallel?: number;
  /** Called as bytes arrive (at most every 100 ms, and once at the end). */
  onProgress?: (p: DownloadProgress) => void;
  /** Aborting stops the download, keeping the partial file and its state for a resume. */
  signal?: AbortSignal;
  /** The fetch to use (default `globalThis.fetch`). */
  fetch?: typeof fetch;
  /** Size of the ranged parts (default 1 to 6 MiB, from the size and `parallel`). */
  chunkSize?: number;
  /** Free bytes of the folder holding `dest` (default: from `df`); tests inject their own. */
  freeBytes?: (dir: string) => Promise<number | undefined>;
  /** The first wait before a retry, doubled each time (default 250 ms). */
  retryDelayMs?: number;
}

/** A finished download. */
export interface DownloadResult {
  /** The absolute path of the file. */
  path: string;
  /** Its size in bytes. */
  size: number;
  /** Its sha256 in hex. */
  sha256: string;
  /** Bytes transferred in this run (0 when the file was already there). */
  fetchedBytes: number;
  /** True when this run continued an earlier run's partial file. */
  resumed: boolean;
  /** The most connections this run used at once (0 when nothing was transferred). */
  connections: number;
}

/**
 * A download that failed: what went wrong and what to do. `status` is the HTTP status when the server
 * refused, so callers can say more (a 401 or 403 may need a token or an accepted licence).
 */
export class DownloadError extends UserError {
  /** The HTTP status of the refusal, if that is what failed. */
  status?: number;
  /** The URL asked for. */
  url?: string;

  /**
   * An error with a message, a hint, and the HTTP status when there is one.
   *
   * @example
   * ```ts
   * throw new DownloadError("https://example.com/m.gguf: HTTP 404 Not Found", { status: 404 });
   * ```
   */
  constructor(
    message: string,
    options: { hint?: string; status?: number; url?: string; cause?: unknown } = {},
  ) {
    super(message, { hint: options.hint, cause: options.cause });
    this.name = "DownloadError";
    this.status = options.status;
    this.url = options.url;
  }
}

/** The server's file is not the one the earlier ranges came from: start again from zero. */
class RemoteChanged extends Error {}

/** A half-open byte range [start, end). */
type Range = [number, number];

/** What the sidecar `<dest>.partial.json` records. */
interface PartialState {
  version: 1;
  url: string;
  size: number;
  etag?: string;
  lastModified?: string;
  /** Ranges of the partial file that hold the server's bytes, sorted and disjoint. */
  have: Range[];
}

/** The file on the server, after redirects. */
interface Remote {
  url: URL;
  /** The request's headers, less Authorization when a redirect left the first origin. */
  headers: Record<string, string>;
  size: number;
  etag?: string;
  lastModified?: string;
}

interface Ctx {
  req: DownloadRequest;
  dest: string;
  name: string;
  partial: string;
  statePath: string;
  fetch: typeof fetch;
  expected?: string;
  /** Body bytes transferred in this run, all attempts. */
  fetched: number;
  report: (completed: number, total: number, force?: boolean) => void;
}

interface Fetched {
  size: number;
  sha256: string;
  resumed: boolean;
  connections: number;
}

const inflight = new Map<string, { key: string; promise: Promise<DownloadResult> }>();

/**
 * Downloads `req.url` to `req.dest`: resumable, verified, parallel for large files. An existing `dest` whose
 * sha256 matches is kept without a transfer; so is one another process has just downloaded while this one
 * waited for it. Aborting rejects with the signal's reason and leaves the partial file for the next run.
 *
 * @example
 * ```ts ignore
 * const r = await download({
 *   url: "https://huggingface.co/org/repo/resolve/main/model-Q4_K_M.gguf",
 *   dest: "/models/model-Q4_K_M.gguf",
 *   sha256: "4f2c...",
 *   onProgress: ({ completed, total }) => console.log(completed, total),
 * });
 * ```
 */
export async function download(req: DownloadRequest): Promise<DownloadResult> {
  const dest = resolve(req.dest);
  const key = `${req.url}\n${normalizeDigest(req.sha256) ?? ""}\n${req.size ?? ""}`;
  while (true) {
    const running = inflight.get(dest);
    if (!running) break;
    try {
      // The same file asked for twice in this process: one transfer, both get its result.
      const result = await untilAborted(running.promise, req.signal);
      if (running.key === key) return { ...result };
    } catch (err) {
      if (req.signal?.aborted || running.key === key && !isAbort(err)) throw err;
    }
  }
  const entry = { key, promise: downloadLocked(req, dest) };
  inflight.set(dest, entry);
  try {
    return { ...await entry.promise };
  } finally {
    if (inflight.get(dest) === entry) inflight.delete(dest);
  }
}

async function downloadLocked(req: DownloadRequest, dest: string): Promise<DownloadResult> {
  let url: URL;
  try {
    url = new URL(req.url);
  } catch {
    throw new DownloadError(`not a URL: ${req.url}`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new DownloadError(`only http and https downloads are supported, not ${url.protocol} (${req.url})`);
  }
  await Deno.mkdir(dirname(dest), { recursive: true });
  let waited = false;
  return await withLock(
    `${dest}.lock`,
    `download of ${basename(dest)}`,
    () => downloadFile(req, dest, waited),
    {
      wait: true,
      onWait: () => {
        waited = true;
      },
      signal: req.signal,
    },
  );
}

async function downloadFile(req: DownloadRequest, dest: string, waited: boolean): Promise<DownloadResult> {
  const ctx: Ctx = {
    req,
    dest,
    name: basename(dest),
    partial: `${dest}.partial`,
    statePath: `${dest}.partial.json`,
    fetch: req.fetch ?? globalThis.fetch,
    expected: normalizeDigest(req.sha256),
    fetched: 0,
    report: progressReporter(req.onProgress),
  };
  const existing = await reuseExisting(ctx, waited);
  if (existing) return existing;
  let resumed: boolean | undefined;
  let mismatches = 0;
  let changes = 0;
  while (true) {
    let got: Fetched;
    try {
      got = await fetchOnce(ctx);
    } catch (err) {
      if (!(err instanceof RemoteChanged)) throw err;
      await discardPartial(ctx);
      if (++changes > 1) {
        throw new DownloadError(`${ctx.name} changed on the server twice while downloading`, {
          hint: "run the command again later",
          url: req.url,
        });
      }
      continue;
    }
    resumed ??= got.resumed;
    if (!ctx.expected || got.sha256 === ctx.expected) {
      await Deno.rename(ctx.partial, dest);
      await removeAll(ctx.statePath);
      return {
        path: dest,
        size: got.size,
        sha256: got.sha256,
        fetchedBytes: ctx.fetched,
        resumed,
        connections: got.connections,
      };
    }
    await discardPartial(ctx);
    if (++mismatches > 1) {
      throw new DownloadError(
        `${ctx.name} failed its sha256 check twice: expected ${ctx.expected}, got ${got.sha256}; nothing was kept`,
        { hint: "the server sends other bytes than expected: check the source and its digest", url: req.url },
      );
    }
  }
}

/** One pass: probe the server, then fetch what is missing (ranged) or the whole file (no Range support). */
async function fetchOnce(ctx: Ctx): Promise<Fetched> {
  const state = await loadState(ctx);
  const probe = await probeRemote(ctx);
  if (probe.whole) {
    await discardPartial(ctx);
    return await fetchWhole(ctx, probe.remote, probe.whole);
  }
  const remote = probe.remote;
  if (ctx.req.size !== undefined && remote.size !== ctx.req.size) {
    throw new DownloadError(
      `${ctx.name}: the server's file is ${remote.size} bytes, expected ${ctx.req.size}`,
      {
        hint: "the source changed or its listing is wrong: check it and run the command again",
        url: ctx.req.url,
      },
    );
  }
  const same = state && state.size === remote.size &&
    (state.etag || remote.etag ? state.etag === remote.etag : state.lastModified === remote.lastModified);
  const have = same ? state.have : [];
  await checkSpace(ctx, remote.size - covered(have));
  if (!have.length) await Deno.writeFile(ctx.partial, new Uint8Array());
  return await fetchRanges(ctx, remote, have);
}

// ---------------------------------------------------------------------------------------------------------
// Ranged parts, fetched in parallel, hashed in order.

/** Bytes handed to the hasher at a time: a block of the hasher's shared memory is filled before it goes. */
const BLOCK = MiB;
/**
 * Each connection reads into a buffer of its own of this size (BYOB: no fresh chunk per read for a GC to
 * collect), writes it, and copies it into a block while it is still in the CPU's cache.
 */
const READ = 256 * 1024;
/**
 * A block's bytes go to the writer when it is full, or when it has been filling for POST_MS: on a slow link a
 * MiB per connection would otherwise sit in memory only, lost on a kill. On a fast one a block fills in a
 * millisecond or two, and one message per MiB is all (a message costs the main thread some 35 us: a post per
 * 256 KiB cost it 0.15 to 0.2 s per GiB).
 */
const POST_MS = 100;
/** Blocks kept for the part the hasher is at: the other parts leave these free, so it never waits on them. */
const RESERVE = 4;
/** Files at least this big are written by a Worker thread (it costs some 9 MB and 50 ms to start). */
const WORKER_OVER = 16 * MiB;
/**
 * With the default `parallel`, a download starts on one connection and opens more only when that connection
 * is what limits it: over a window of this length, its reads waited for the network at least half the time
 * and it brought less than SLOW_BYTES_PER_SECOND (a far CDN that caps each connection). On loopback, a LAN or
 * any link one connection fills, one stream costs the least CPU on both ends.
 */
const ADAPT_WINDOW_MS = 2000;
const SLOW_BYTES_PER_SECOND = 128 * MiB;

/** Bytes waiting for the hasher: in a block of its memory, or only on disk (at `at`) when none was free. */
interface Held {
  slot?: number;
  at: number;
  length: number;
}

interface Part {
  start: number;
  end: number;
  /** Bytes from `start` received this run: on disk, or in a block the writer has been handed. */
  received: number;
  /** Bytes received and not yet hashed, in order; `next` is the first the hasher has not taken. */
  held: Held[];
  next: number;
}

async function fetchRanges(ctx: Ctx, remote: Remote, have: Range[]): Promise<Fetched> {
  const size = remote.size;
  const fixed = ctx.req.parallel === undefined ? undefined : Math.max(1, Math.floor(ctx.req.parallel));
  const most = fixed ?? (size > PARALLEL_OVER ? DEFAULT_PARALLEL : 1);
  const chunk = Math.max(1, Math.floor(ctx.req.chunkSize ?? chunkSizeFor(size, most)));
  const newPart = (start: number, end: number): Part => ({ start, end, received: 0, held: [], next: 0 });
  const parts: Part[] = [];
  for (const [a, b] of holes(have, size)) {
    // One connection fetches each hole in one request; several take it in chunks, so they stay near the
    // hasher.
    const step = (fixed ?? 1) > 1 ? chunk : b - a;
    for (let s = a; s < b; s += step) parts.push(newPart(s, Math.min(b, s + step)));
  }
  const segments: { start: number; end: number; part?: Part }[] = [
    ...have.map(([start, end]) => ({ start, end })),
    ...parts.map((part) => ({ start: part.start, end: part.end, part })),
  ].sort((x, y) => x.start - y.start);

  const run = new AbortController();
  const onAbort = () => run.abort(ctx.req.signal?.reason);
  ctx.req.signal?.addEventListener("abort", onAbort, { once: true });
  if (ctx.req.signal?.aborted) onAbort();
  let failure: unknown;
  let hasherWake: (() => void) | undefined;
  const wakeHasher = () => {
    const w = hasherWake;
    hasherWake = undefined;
    w?.();
  };
  const fail = (err: unknown) => {
    failure ??= err;
    run.abort(err);
    wakeHasher();
  };

  const hasher = blockHasher({ blocks: MAX_HELD / BLOCK + RESERVE, blockSize: BLOCK });
  /** Ranges in the file this run: what the state may record (a block on its way to the writer is not yet). */
  const written: Range[] = [];
  const noteWritten = (a: number, b: number) => {
    const r = written.find((r) => r[1] === a);
    if (r) r[1] = b;
    else written.push([a, b]);
    if (written.length > 16) written.splice(0, written.length, ...merge(written));
  };
  const writer = blockWriter({
    memory: hasher.memory,
    blockSize: BLOCK,
    path: ctx.partial,
    worker: size >= WORKER_OVER,
    onWritten: (slot, at, length) => {
      noteWritten(at, at + length);
      hasher.give(slot);
    },
    onError: fail,
  });
  const hold = (part: Part, h: Held) => {
    const last = part.held[part.held.length - 1];
    if (
      h.slot === undefined && last && part.next < part.held.length && last.slot === undefined &&
      last.at + last.length === h.at
    ) {
      last.length += h.length;
    } else part.held.push(h);
    wakeHasher();
  };
  /** A block's bytes (all sent to the writer already) to the hasher; an unused block back to the pool. */
  const release = (part: Part, slot: number | undefined, at: number, length: number) => {
    if (slot !== undefined && length) return hold(part, { slot, at, length });
    if (slot !== undefined) hasher.give(slot);
    if (length) hold(part, { at, length }); // written but not kept: the hasher reads it back
  };

  let current: Part | undefined;
  const haveBytes = covered(have);
  let completed = haveBytes;
  const saveEvery = Math.min(4 * MiB, Math.max(256 * 1024, Math.floor(size / 256)));
  let savedAtBytes = 0;
  let savedAtTime = performance.now();
  const save = () => {
    const ranges: Range[] = [...have, ...written];
    writeState(ctx, {
      version: 1,
      url: ctx.req.url,
      size,
      etag: remote.etag,
      lastModified: remote.lastModified,
      have: merge(ranges),
    });
    savedAtBytes = completed;
    savedAtTime = performance.now();
  };

  // In file order: bytes of an earlier run and bytes that were only written are read back from disk.
  const order = async () => {
    for (let i = 0; i < segments.length; i++) {
      const seg = segments[i];
      if (!seg.part) {
        await hasher.file(ctx.partial, seg.start, seg.end, run.signal);
        continue;
      }
      const part = current = seg.part;
      let hashed = 0;
      // `part.end` is read each time: a split shortens the part in flight.
      while (hashed < part.end - part.start) {
        run.signal.throwIfAborted();
        if (part.next < part.held.length) {
          const h = part.held[part.next++];
          if (h.slot !== undefined) hasher.block(h.slot, h.length);
          else await hasher.file(ctx.partial, h.at, h.at + h.length, run.signal);
          hashed += h.length;
          continue;
        }
        part.held = [];
        part.next = 0;
        await new Promise<void>((r) => hasherWake = r);
      }
    }
    current = undefined;
  };

  /** Set once the run's last state is saved: a timer's late save must not write one after it. */
  let ended = false;
  const inFlight = new Set<{ ac: AbortController; last: number; part: Part; post?: () => void }>();
  const stallTimer = setInterval(() => {
    const now = performance.now();
    let quiet = false;
    for (const f of inFlight) {
      if (now - f.last > STALL_MS) f.ac.abort(new Error(`no data for ${STALL_MS / 1000} s`));
      // A connection with nothing to read keeps its block's last bytes: they go to the writer here, and the
      // state records them once written, so a kill while it stalls loses no more than on a slow link.
      if (now - f.last >= POST_MS) {
        f.post?.();
        quiet = true;
      }
    }
    if (quiet) writer.settled().then(() => ended || save(), () => {});
  }, 5000);
  /** Milliseconds connections spent waiting for a read, summed. */
  let waited = 0;

  /**
   * Cleared when the server answers something the HTTP/1.1 client does not handle, or when its first request
   * fails (a TLS setup fetch may handle differently): fetch from then on.
   */
  let direct = !ctx.req.fetch && http1Usable(remote.url);
  let directWorked = false;
  /** One ranged GET of `part` from `from`: through the HTTP/1.1 client while it serves, else fetch. */
  const get = async (
    part: Part,
    from: number,
    signal: AbortSignal,
    client: () => Deno.HttpClient | undefined,
    h1?: Http1Client,
  ): Promise<{ res: ResponseHead; body: BodyReader }> => {
    const extra = { range: `bytes=${from}-${part.end - 1}`, ...ifRange(remote) };
    if (direct && h1) {
      try {
        const res = await h1.get(
          remote.url,
          { ...remote.headers, ...extra, "accept-encoding": "identity" },
          signal,
        );
        if (res.status < 300 || res.status >= 400) {
          directWorked = true;
          return { res, body: res };
        }
        await res.cancel(); // a redirect: fetch follows it
      } catch (err) {
        if (signal.aborted || (directWorked && !(err instanceof Unsupported))) throw err;
      }
      direct = false;
    }
    const res = (await request(ctx, remote.url, remote.headers, extra, signal, client())).response;
    return { res, body: bodyReader(res) };
  };

  const fetchPart = async (
    part: Part,
    file: Deno.FsFile,
    client: () => Deno.HttpClient | undefined,
    h1?: Http1Client,
  ) => {
    let failures = 0;
    let buffer = new ArrayBuffer(READ);
    while (part.start + part.received < part.end) {
      const from = part.start + part.received;
      let moved = false;
      const flight: { ac: AbortController; last: number; part: Part; post?: () => void } = {
        ac: new AbortController(),
        last: performance.now(),
        part,
      };
      inFlight.add(flight);
      let slot: number | undefined;
      let spill = false;
      let filled = 0;
      let at = from;
      // Bytes of the block handed to the writer so far, and when: a read that comes POST_MS or more after
      // the last hand-over sends what the block holds (so does the stall timer for a connection that waits),
      // so on a slow link a kill loses little more than the socket held.
      let posted = 0;
      let postedAt = performance.now();
      const post = () => {
        if (slot === undefined || filled === posted) return;
        hasher.retain(slot);
        writer.write(slot, posted, filled - posted, at + posted);
        posted = filled;
        postedAt = performance.now();
      };
      flight.post = post;
      try {
        const signal = AbortSignal.any([run.signal, flight.ac.signal]);
        const { res, body } = await get(part, from, signal, client, h1);
        if (res.status !== 206) {
          await body.cancel().catch(() => {});
          // 200 to a ranged request with If-Range: the file changed (or Range is no longer honoured); 416:
          // it shrank.
          if (res.status === 200 || res.status === 416) throw new RemoteChanged();
          throw httpError(ctx, res);
        }
        const range = parseContentRange(res.headers.get("content-range"));
        if (!range || range.start !== from || (range.total !== undefined && range.total !== size)) {
          await body.cancel().catch(() => {});
          throw new RemoteChanged();
        }
        try {
          while (part.start + part.received < part.end) {
            if (slot === undefined && !spill) {
              // The hasher's part waits for a block (the hasher is behind); the others take one only while
              // the reserve stays free, else their bytes are only written.
              if (part === current) {
                while ((slot = hasher.take()) === undefined) await untilAborted(hasher.whenFree(), signal);
              } else if (hasher.free() > RESERVE) slot = hasher.take();
              else spill = true;
              filled = 0;
              posted = 0;
              at = part.start + part.received;
            }
            const want = Math.min(READ, BLOCK - filled, part.end - part.start - part.received);
            // Into the connection's own buffer, not straight into the block: perf put the socket copy into
            // the shared block, which the Worker had just read on the other core, at 16-18 % of the pull's
            // samples against 3 % into a buffer that stays in this core's cache. fetch's BYOB reads need an
            // ArrayBuffer they can transfer anyway.
            const t0 = performance.now();
            const got = await body.read(new Uint8Array(buffer, 0, want));
            buffer = got.buffer as ArrayBuffer;
            flight.last = performance.now();
            waited += flight.last - t0;
            if (!got.length) break;
            if (slot !== undefined) hasher.memory.set(got, slot * BLOCK + filled);
            else {
              // Blocks go to the writer's Worker: this thread's own position is not where this read goes.
              try {
                file.seekSync(part.start + part.received, Deno.SeekMode.Start);
                writeAll(file, got);
              } catch (err) {
                throw new WriteError(ctx.partial, err instanceof Error ? err.message : String(err));
              }
              noteWritten(part.start + part.received, part.start + part.received + got.length);
            }
            filled += got.length;
            part.received += got.length;
            ctx.fetched += got.length;
            completed += got.length;
            moved = true;
            const ends = filled === BLOCK || part.start + part.received === part.end;
            if (ends || flight.last - postedAt >= POST_MS) post();
            if (ends) {
              release(part, slot, at, filled);
              slot = undefined;
              spill = false;
              filled = 0;
            }
            if (completed - savedAtBytes >= saveEvery || flight.last - savedAtTime >= 1000) save();
            ctx.report(completed, size);
          }
          // Read to the end of the body, so the connection goes back to the pool.
          if (part.start + part.received === part.end) await body.finish();
        } finally {
          await body.cancel();
        }
        if (part.start + part.received < part.end) throw new Error("the connection closed early");
      } catch (err) {
        if (run.signal.aborted) throw run.signal.reason ?? err;
        if (
          err instanceof RemoteChanged || err instanceof WriteError ||
          (err instanceof DownloadError && !retryable(err.status))
        ) {
          throw err;
        }
        failures = moved ? 1 : failures + 1;
        if (failures > RETRIES) throw gaveUp(ctx, err);
        await sleep((ctx.req.retryDelayMs ?? 250) * 2 ** (failures - 1), run.signal);
      } finally {
        inFlight.delete(flight);
        // What a broken-off request did deliver is on disk (and in its block) and counted: it is hashed too.
        post();
        if (slot !== undefined || filled) release(part, slot, at, filled);
        if (buffer.detached) buffer = new ArrayBuffer(READ); // a failed BYOB read keeps its buffer
      }
    }
  };

  let nextPart = 0;
  const connection = async () => {
    // A client per connection: one each, even where the server speaks HTTP/2 (one connection's window is
    // what limits a far CDN).
    // Made on first use: the HTTP/1.1 client usually carries every request, and each HttpClient holds some
    // memory of its own (its TLS setup).
    let made: Deno.HttpClient | undefined;
    const client = () => ctx.req.fetch ? undefined : (made ??= Deno.createHttpClient({}));
    const h1 = direct ? http1Client() : undefined;
    const file = await Deno.open(ctx.partial, { write: true });
    try {
      while (!run.signal.aborted && nextPart < parts.length) {
        await fetchPart(parts[nextPart++], file, client, h1);
      }
    } finally {
      file.close();
      made?.close();
      h1?.close();
    }
  };
  let connections = Math.min(fixed ?? 1, parts.length);
  const tasks = Array.from({ length: connections }, () => connection().catch(fail));

  // The part in flight is cut a little ahead of where it is, and the rest split into chunks that more
  // connections take; the bytes already in its socket past the cut are fetched again (a few hundred KiB).
  const split = (): boolean => {
    const f = [...inFlight].find((f) => f.part.end - f.part.start - f.part.received > 4 * chunk);
    if (!f) return false;
    const part = f.part;
    const cut = Math.ceil((part.start + part.received + 2 * BLOCK) / BLOCK) * BLOCK;
    const added: Part[] = [];
    for (let s = cut; s < part.end; s += chunk) added.push(newPart(s, Math.min(part.end, s + chunk)));
    part.end = cut;
    parts.splice(nextPart, 0, ...added);
    const at = segments.findIndex((s) => s.part === part);
    segments[at].end = cut;
    segments.splice(at + 1, 0, ...added.map((p) => ({ start: p.start, end: p.end, part: p })));
    for (; connections < most; connections++) tasks.push(connection().catch(fail));
    return true;
  };
  let window = { at: performance.now(), waited: 0, fetched: ctx.fetched };
  const adaptTimer = fixed === undefined && most > 1
    ? setInterval(() => {
      const now = performance.now();
      const seconds = (now - window.at) / 1000;
      const slow = (waited - window.waited) / 1000 >= seconds / 2 &&
        (ctx.fetched - window.fetched) / seconds < SLOW_BYTES_PER_SECOND;
      window = { at: now, waited, fetched: ctx.fetched };
      if (slow && split()) clearInterval(adaptTimer);
    }, ADAPT_WINDOW_MS)
    : undefined;

  ctx.report(completed, size, true);
  let sha256 = "";
  try {
    save(); // the validator is on disk before the first byte
    const ordered = order().catch(fail);
    // Connections may be added while these run.
    for (let i = 0; i < tasks.length; i++) await tasks[i];
    await ordered;
    await writer.settled();
    if (!failure) sha256 = hasher.digest();
  } finally {
    clearInterval(stallTimer);
    clearInterval(adaptTimer);
    // What was received is written before the state says what is on disk.
    await writer.settled();
    await writer.close().catch(fail);
    ctx.req.signal?.removeEventListener("abort", onAbort);
    if (parts.length) save();
    ended = true;
  }
  if (failure) {
    if (ctx.req.signal?.aborted) throw ctx.req.signal.reason;
    if (failure instanceof WriteError) throw diskError(ctx, failure);
    throw failure instanceof ShortFile ? new RemoteChanged() : failure;
  }
  ctx.report(size, size, true);
  return { size, sha256, resumed: haveBytes > 0, connections };
}

/**
 * Parts of 1 to 6 MiB: several per connection, and small enough that what the other parts fetch while the
 * hasher's part finishes mostly fits in MAX_HELD. Each costs a request (a round trip of idle connection).
 */
function chunkSizeFor(size: number, parallel: number): number {
  const per = Math.ceil(size / (parallel * 8) / MiB) * MiB;
  return Math.min(6 * MiB, Math.max(MiB, per));
}

/** A response's status and headers, from fetch or the HTTP/1.1 client. */
interface ResponseHead {
  status: number;
  statusText: string;
  headers: Headers;
}

/** A body read into buffers of ours. */
interface BodyReader {
  /**
   * Fills some of `into`; returns the bytes read, a view of `into`'s memory (whose buffer a BYOB read
   * transfers: use the returned view's buffer from then on). An empty view means the body has ended.
   */
  read(into: Uint8Array): Promise<Uint8Array>;
  /** Reads on to the end (cancelling if the server sends more than was asked for). */
  finish(): Promise<void>;
  cancel(): Promise<void>;
}

/** Reads a body into buffers of ours: BYOB where the body is a byte stream (fetch's is), else copying. */
function bodyReader(res: Response): BodyReader {
  const stream = res.body;
  let byob: ReadableStreamBYOBReader | undefined;
  let plain: ReadableStreamDefaultReader<Uint8Array> | undefined;
  try {
    byob = stream?.getReader({ mode: "byob" });
  } catch {
    plain = stream?.getReader();
  }
  let rest: Uint8Array | undefined;
  let ended = !stream;
  const read = async (into: Uint8Array): Promise<Uint8Array> => {
    if (ended) return into.subarray(0, 0);
    if (byob) {
      const { value, done } = await byob.read(into);
      if (done) ended = true;
      if (!value) throw new Error("the response body was cancelled");
      return value;
    }
    if (!rest?.length) {
      const { value, done } = await plain!.read();
      if (done) {
        ended = true;
        return into.subarray(0, 0);
      }
      rest = value;
    }
    const n = Math.min(into.length, rest.length);
    into.set(rest.subarray(0, n));
    rest = rest.subarray(n);
    return into.subarray(0, n);
  };
  return {
    read,
    finish: async () => {
      const extra = await read(new Uint8Array(1));
      if (extra.length) await (byob ?? plain)?.cancel().catch(() => {});
      ended = true;
    },
    cancel: async () => {
      if (!ended) await (byob ?? plain)?.cancel().catch(() => {});
      ended = true;
    },
  };
}

// ---------------------------------------------------------------------------------------------------------
// One sequential stream, for servers that ignore Range.

async function fetchWhole(ctx: Ctx, remote: Remote, first: Response): Promise<Fetched> {
  let res: Response | undefined = first;
  let failures = 0;
  let buffer = new ArrayBuffer(BLOCK);
  while (true) {
    const file = await Deno.open(ctx.partial, { write: true, create: true, truncate: true });
    const hash = createHash("sha256");
    let got = 0;
    let moved = false;
    let body: ReturnType<typeof bodyReader> | undefined;
    try {
      res ??= (await request(ctx, remote.url, remote.headers, {}, ctx.req.signal)).response;
      body = bodyReader(res);
      if (res.status !== 200) {
        await body.cancel();
        throw httpError(ctx, res);
      }
      const length = Number(res.headers.get("content-length") ?? NaN);
      const size = Number.isFinite(length) ? length : undefined;
      if (size !== undefined && ctx.req.size !== undefined && size !== ctx.req.size) {
        await body.cancel();
        throw new DownloadError(`${ctx.name}: the server's file is ${size} bytes, expected ${ctx.req.size}`, {
          url: ctx.req.url,
        });
      }
      if (size !== undefined) await checkSpace(ctx, size);
      ctx.report(0, size ?? 0, true);
      while (true) {
        const piece = await body.read(new Uint8Array(buffer));
        buffer = piece.buffer as ArrayBuffer;
        if (!piece.length) break;
        writeAll(file, piece);
        hash.update(piece);
        got += piece.length;
        ctx.fetched += piece.length;
        moved = true;
        ctx.report(got, size ?? 0);
      }
      if (size !== undefined && got !== size) throw new Error("the connection closed early");
      ctx.report(got, got, true);
      return { size: got, sha256: hash.digest("hex"), resumed: false, connections: 1 };
    } catch (err) {
      await body?.cancel();
      if (buffer.detached) buffer = new ArrayBuffer(BLOCK);
      if (ctx.req.signal?.aborted) {
        // Without Range support there is nothing to resume from.
        file.close();
        await removeAll(ctx.partial);
        throw ctx.req.signal.reason;
      }
      if (err instanceof DownloadError && !retryable(err.status)) throw err;
      // No Range: a retry starts from zero.
      failures = moved ? 1 : failures + 1;
      if (failures > RETRIES) throw gaveUp(ctx, err);
      await sleep((ctx.req.retryDelayMs ?? 250) * 2 ** (failures - 1), ctx.req.signal);
    } finally {
      try {
        file.close();
      } catch { /* closed above */ }
      res = undefined;
    }
  }
}
// ---------------------------------------------------------------------------------------------------------
// HTTP: redirects, the probe, errors.

/**
 * One GET, following redirects by hand so that Authorization (and cookies) are dropped when a redirect leads
 * to another origin, as Hugging Face's client does: the CDN must not see the token.
 */
async function request(
  ctx: Ctx,
  url: URL,
  headers: Record<string, string>,
  extra: Record<string, string>,
  signal?: AbortSignal,
  client?: Deno.HttpClient,
): Promise<{ response: Response; url: URL; headers: Record<string, string> }> {
  for (let hop = 0; hop <= 10; hop++) {
    const init: RequestInit & { client?: Deno.HttpClient } = {
      headers: { ...headers, ...extra, "accept-encoding": "identity" },
      redirect: "manual",
      signal,
    };
    if (client) init.client = client;
    const response = await ctx.fetch(url, init);
    const location = response.headers.get("location");
    if (![301, 302, 303, 307, 308].includes(response.status) || !location) return { response, url, headers };
    await response.body?.cancel().catch(() => {});
    const next = new URL(location, url);
    if (next.origin !== url.origin) {
      headers = Object.fromEntries(
        Object.entries(headers).filter(([k]) => !/^(authorization|cookie)$/i.test(k)),
      );
    }
    url = next;
  }
  throw new DownloadError(`${ctx.req.url}: too many redirects`, { url: ctx.req.url });
}

/** Asks for the first byte: a 206 says Range works and gives the size; a 200 is the whole file. */
async function probeRemote(ctx: Ctx): Promise<{ remote: Remote; whole?: Response }> {
  for (let failures = 0;; failures++) {
    try {
      return await probeOnce(ctx);
    } catch (err) {
      if (ctx.req.signal?.aborted) throw ctx.req.signal.reason;
      if (err instanceof DownloadError && !retryable(err.status)) throw err;
      if (failures >= RETRIES) throw gaveUp(ctx, err);
      await sleep((ctx.req.retryDelayMs ?? 250) * 2 ** failures, ctx.req.signal);
    }
  }
}

async function probeOnce(ctx: Ctx): Promise<{ remote: Remote; whole?: Response }> {
  const { response: res, url, headers } = await request(
    ctx,
    new URL(ctx.req.url),
    { ...ctx.req.headers },
    { range: "bytes=0-0" },
    ctx.req.signal,
  );
  const etag = res.headers.get("etag") ?? undefined;
  const lastModified = res.headers.get("last-modified") ?? undefined;
  if (res.status === 206) {
    await res.body?.cancel().catch(() => {});
    const range = parseContentRange(res.headers.get("content-range"));
    if (range?.total !== undefined) {
      return { remote: { url, headers, size: range.total, etag, lastModified } };
    }
    // A range of unknown total: take the whole file in one stream.
    const whole = (await request(ctx, url, headers, {}, ctx.req.signal)).response;
    return { remote: { url, headers, size: 0 }, whole };
  }
  if (res.status === 200) return { remote: { url, headers, size: 0, etag, lastModified }, whole: res };
  await res.body?.cancel().catch(() => {});
  if (res.status === 416 && /\*\/0$/.test(res.headers.get("content-range") ?? "")) {
    return { remote: { url, headers, size: 0, etag, lastModified } }; // an empty file
  }
  throw httpError(ctx, res);
}

function ifRange(remote: Remote): Record<string, string> {
  // If-Range takes a strong ETag or a date; with it a changed file answers 200 instead of mixing bytes.
  if (remote.etag && !remote.etag.startsWith("W/")) return { "if-range": remote.etag };
  if (remote.lastModified) return { "if-range": remote.lastModified };
  return {};
}

function parseContentRange(v: string | null): { start: number; end: number; total?: number } | undefined {
  const m = v?.match(/^bytes\s+(\d+)-(\d+)\/(\d+|\*)$/i);
  if (!m) return undefined;
  return { start: Number(m[1]), end: Number(m[2]), total: m[3] === "*" ? undefined : Number(m[3]) };
}

function retryable(status?: number): boolean {
  return status === undefined || status === 408 || status === 429 || status >= 500;
}

function httpError(ctx: Ctx, res: ResponseHead): DownloadError {
  const s = res.status;
  const hint = s === 401 || s === 403
    ? "the server refused access: the file may need a token, or its licence accepted"
    : s === 404
    ? "check the name: the server has no such file"
    : retryable(s)
    ? "the server is having trouble: run the command again later (it resumes)"
    : undefined;
  return new DownloadError(`${ctx.req.url}: HTTP ${s}${res.statusText ? ` ${res.statusText}` : ""}`, {
    status: s,
    hint,
    url: ctx.req.url,
  });
}

/** A failed write as the user sees it: the file, the system's words, and what to do. */
function diskError(ctx: Ctx, err: WriteError): DownloadError {
  const full = /no space|os error 28|quota/i.test(err.reason);
  return new DownloadError(`downloading ${ctx.name}: ${err.message}`, {
    hint: full
      ? "free some disk space (or pull into another folder) and run the command again: it resumes where it stopped"
      : "check the folder (permissions, the disk) and run the command again: it resumes where it stopped",
    cause: err,
    url: ctx.req.url,
  });
}

function gaveUp(ctx: Ctx, err: unknown): DownloadError {
  if (err instanceof DownloadError) return err;
  const why = err instanceof Error ? err.message : String(err);
  return new DownloadError(
    `downloading ${ctx.name} failed after ${RETRIES} retries: ${why}`,
    {
      hint: "check the connection and run the command again: it resumes where it stopped",
      cause: err,
      url: ctx.req.url,
    },
  );
}

// ---------------------------------------------------------------------------------------------------------
// Files: the sidecar, the existing file, free space.

async function loadState(ctx: Ctx): Promise<PartialState | undefined> {
  let st: Deno.FileInfo;
  let state: PartialState;
  try {
    st = await Deno.stat(ctx.partial);
    state = JSON.parse(await Deno.readTextFile(ctx.statePath));
  } catch {
    return undefined;
  }
  const ok = state?.version === 1 && Number.isSafeInteger(state.size) && Array.isArray(state.have) &&
    state.have.every((r) =>
      Array.isArray(r) && r.length === 2 && r.every(Number.isSafeInteger) && r[0] < r[1]
    );
  if (!ok) return undefined;
  // A range past the end of the partial file was never written (the file was cut): it is not had.
  const have = merge(state.have).map(([a, b]): Range => [a, Math.min(b, st.size, state.size)]).filter((
    [a, b],
  ) => a < b);
  return { ...state, have };
}

/** Written whole and renamed, so a kill at any moment leaves the old state or the new one. */
function writeState(ctx: Ctx, state: PartialState): void {
  const tmp = `${ctx.statePath}.tmp`;
  Deno.writeTextFileSync(tmp, JSON.stringify(state));
  Deno.renameSync(tmp, ctx.statePath);
}

async function discardPartial(ctx: Ctx): Promise<void> {
  await removeAll(ctx.statePath);
  await removeAll(ctx.partial);
}

async function reuseExisting(ctx: Ctx, waited: boolean): Promise<DownloadResult | undefined> {
  let st: Deno.FileInfo;
  try {
    st = await Deno.stat(ctx.dest);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
  if (!st.isFile) throw new DownloadError(`${ctx.dest} exists and is not a file`);
  // Without a digest only a file another process has just written (we waited for its lock) is trusted.
  if (!ctx.expected && !waited) return undefined;
  if (ctx.req.size !== undefined && st.size !== ctx.req.size) return undefined;
  const sha256 = await sha256File(ctx.dest, ctx.req.signal);
  if (ctx.expected && sha256 !== ctx.expected) return undefined;
  ctx.report(st.size, st.size, true);
  return { path: ctx.dest, size: st.size, sha256, fetchedBytes: 0, resumed: false, connections: 0 };
}

async function checkSpace(ctx: Ctx, need: number): Promise<void> {
  const free = await (ctx.req.freeBytes ?? freeBytes)(dirname(ctx.dest));
  if (free !== undefined && free < need) {
    throw new DownloadError(
      `not enough free disk space for ${ctx.name}: ${formatBytes(need)} needed, ${formatBytes(free)} free`,
      { hint: "free some space, or pull into another folder", url: ctx.req.url },
    );
  }
}

// ---------------------------------------------------------------------------------------------------------
// Small helpers.

function normalizeDigest(d?: string): string | undefined {
  if (d === undefined) return undefined;
  const hex = d.trim().toLowerCase().replace(/^sha256[:-]/, "");
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new DownloadError(`not a sha256 digest: ${d}`);
  return hex;
}

function merge(ranges: Range[]): Range[] {
  const sorted = ranges.filter(([a, b]) => a < b).sort((x, y) => x[0] - y[0]);
  const out: Range[] = [];
  for (const [a, b] of sorted) {
    const last = out[out.length - 1];
    if (last && a <= last[1]) last[1] = Math.max(last[1], b);
    else out.push([a, b]);
  }
  return out;
}

function holes(have: Range[], size: number): Range[] {
  const out: Range[] = [];
  let pos = 0;
  for (const [a, b] of have) {
    if (a > pos) out.push([pos, a]);
    pos = Math.max(pos, b);
  }
  if (pos < size) out.push([pos, size]);
  return out;
}

function covered(ranges: Range[]): number {
  return ranges.reduce((n, [a, b]) => n + b - a, 0);
}

function isAbort(err: unknown): boolean {
  return err instanceof DOMException && err.name === "AbortError";
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** `promise`, or the signal's reason as soon as it aborts. */
function untilAborted<T>(promise: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return promise;
  return new Promise<T>((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/** Progress at most every 100 ms, with the rate over the last 3 s. */
function progressReporter(
  onProgress?: (p: DownloadProgress) => void,
): (completed: number, total: number, force?: boolean) => void {
  if (!onProgress) return () => {};
  let last = -Infinity;
  const samples: [number, number][] = [];
  return (completed, total, force = false) => {
    const now = performance.now();
    if (!force && now - last < 100) return;
    last = now;
    samples.push([now, completed]);
    while (samples.length > 2 && now - samples[1][0] >= 3000) samples.shift();
    const [t0, c0] = samples[0];
    const bytesPerSecond = now - t0 >= 250 ? Math.max(0, (completed - c0) / ((now - t0) / 1000)) : undefined;
    onProgress({ completed, total, bytesPerSecond });
  };
}
