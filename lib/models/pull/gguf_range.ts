/**
 * Reads a remote GGUF file's header with HTTP Range requests: the first 512 KiB, then more (at least double)
 * while the header goes on, so a model's facts are known after a fraction of a megabyte of a file of
 * gigabytes. A server that ignores ranges is read from the start and cut off once enough has arrived.
 *
 * @module
 */
import { type GgufHeader, parseGgufHeaderPrefix, type ReadOptions } from "../../gguf/reader.ts";
import { UserError } from "../../util/errors.ts";

/** Options for {@linkcode readRemoteGgufHeader}. */
export interface RemoteHeaderOptions {
  /** The file's full size (a registry's manifest says it). */
  size: number;
  /** What to call the file in errors (default: the URL). */
  label?: string;
  /** Request headers. */
  headers?: Record<string, string>;
  /** Bytes asked for first (default 512 KiB). */
  firstBytes?: number;
  /** The reader's options (default: token lists summarised, as the index reads them). */
  read?: ReadOptions;
  /** Cancels the requests. */
  signal?: AbortSignal;
  /** The fetch to use (tests). */
  fetch?: typeof fetch;
}

/** A header read over HTTP, and how many bytes of the file that took. */
export interface RemoteHeader {
  /** The parsed header. */
  header: GgufHeader;
  /** Bytes of the file fetched. */
  fetchedBytes: number;
}

/** Fetches bytes `from`..`to` (inclusive) of `url`. */
async function fetchRange(
  url: string,
  from: number,
  to: number,
  options: RemoteHeaderOptions,
): Promise<Uint8Array> {
  const res = await (options.fetch ?? fetch)(url, {
    headers: { ...options.headers, Range: `bytes=${from}-${to}` },
    signal: options.signal,
  });
  if (res.status !== 206 && res.status !== 200) {
    await res.body?.cancel();
    throw new UserError(
      `cannot read the header of ${options.label ?? url}: HTTP ${res.status} for bytes ${from}-${to}`,
    );
  }
  const want = to - from + 1;
  // 200: the whole file from its start; skip to `from` and stop reading once `want` bytes are in.
  let skip = res.status === 200 ? from : 0;
  const out = new Uint8Array(want);
  let got = 0;
  const reader = res.body!.getReader();
  try {
    while (got < want) {
      const { done, value } = await reader.read();
      if (done) break;
      let chunk = value;
      if (skip) {
        const s = Math.min(skip, chunk.length);
        chunk = chunk.subarray(s);
        skip -= s;
      }
      const n = Math.min(chunk.length, want - got);
      out.set(chunk.subarray(0, n), got);
      got += n;
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  return out.subarray(0, got);
}

/**
 * Reads the GGUF header of the file at `url` (redirects followed) with Range requests.
 *
 * @example
 * ```ts ignore
 * const { header } = await readRemoteGgufHeader(url, { size: 4_920_000_000 });
 * console.log(header.metadata["general.architecture"]);
 * ```
 */
export async function readRemoteGgufHeader(url: string, options: RemoteHeaderOptions): Promise<RemoteHeader> {
  const label = options.label ?? url;
  const read = options.read ?? { skipArraysOver: 256 };
  let buf = new Uint8Array(0);
  let want = Math.min(options.size, options.firstBytes ?? 512 * 1024);
  for (;;) {
    if (buf.length < want) {
      const more = await fetchRange(url, buf.length, want - 1, options);
      if (more.length === 0) {
        throw new UserError(
          `cannot read the header of ${label}: the server sent no bytes from ${buf.length}`,
        );
      }
      const next = new Uint8Array(buf.length + more.length);
      next.set(buf);
      next.set(more, buf.length);
      buf = next;
    }
    const r = parseGgufHeaderPrefix(buf, options.size, label, read);
    if (!("needBytes" in r)) return { header: r, fetchedBytes: buf.length };
    // Doubling keeps the number of requests (and of parses from the start) logarithmic in the header's size.
    want = Math.min(options.size, Math.max(r.needBytes + 64 * 1024, buf.length * 2));
  }
}
