/**
 * STAND-IN, to be replaced by the real download engine at merge (branch `pull-download` writes it). It has the
 * engine's interface exactly, and does just enough for the Hugging Face source and its tests to run: one GET
 * (redirects followed), written to `<dest>.partial` and renamed into place, size and SHA-256 checked. No
 * resume, no parallel ranges, no retries.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { dirname } from "node:path";
import { UserError } from "../../util/errors.ts";

/** How far a download is. */
export interface DownloadProgress {
  /** Bytes on disk so far. */
  completed: number;
  /** Bytes in all. */
  total: number;
  /** Recent speed. */
  bytesPerSecond?: number;
}

/** One file to download. */
export interface DownloadRequest {
  /** Where from. */
  url: string;
  /** Where to: written whole or not at all. */
  dest: string;
  /** The SHA-256 the bytes must have (hex). */
  sha256?: string;
  /** The size the file must have. */
  size?: number;
  /** Request headers (Authorization...). */
  headers?: Record<string, string>;
  /** Connections at once. */
  parallel?: number;
  /** Called as bytes arrive. */
  onProgress?: (p: DownloadProgress) => void;
  /** Stops the download. */
  signal?: AbortSignal;
  /** The fetch to use (tests). */
  fetch?: typeof fetch;
}

/** What a download did. */
export interface DownloadResult {
  /** The file written. */
  path: string;
  /** Its size. */
  size: number;
  /** Its SHA-256 (hex). */
  sha256: string;
  /** Bytes fetched over the network by this call. */
  fetchedBytes: number;
  /** True when an earlier partial download was continued. */
  resumed: boolean;
}

/** A download that failed: the HTTP status when the server refused it. */
export class DownloadError extends UserError {
  /** The HTTP status, when there was one. */
  status?: number;
  /** Builds the error. */
  constructor(message: string, options: { status?: number; hint?: string; cause?: unknown } = {}) {
    super(message, { hint: options.hint, cause: options.cause });
    this.name = "DownloadError";
    this.status = options.status;
  }
}

/**
 * Downloads `url` to `dest`, checking size and SHA-256 (stand-in: see the module comment).
 *
 * @example
 * ```ts ignore
 * const r = await download({ url: "https://example.org/m.gguf", dest: "/tmp/m.gguf", sha256: "ab12..." });
 * ```
 */
export async function download(req: DownloadRequest): Promise<DownloadResult> {
  const res = await (req.fetch ?? fetch)(req.url, { headers: req.headers, signal: req.signal });
  if (!res.ok || !res.body) {
    await res.body?.cancel();
    throw new DownloadError(`${req.url}: HTTP ${res.status}`, { status: res.status });
  }
  const total = req.size ?? Number(res.headers.get("content-length") ?? 0);
  await Deno.mkdir(dirname(req.dest), { recursive: true });
  const tmp = `${req.dest}.partial`;
  const file = await Deno.open(tmp, { write: true, create: true, truncate: true });
  const hash = createHash("sha256");
  let completed = 0;
  try {
    for await (const chunk of res.body) {
      hash.update(chunk);
      let off = 0;
      while (off < chunk.length) off += await file.write(chunk.subarray(off));
      completed += chunk.length;
      req.onProgress?.({ completed, total });
    }
  } catch (err) {
    file.close();
    await Deno.remove(tmp).catch(() => {});
    throw err;
  }
  file.close();
  const sha256 = hash.digest("hex");
  const bad = req.size !== undefined && completed !== req.size
    ? `size ${completed}, expected ${req.size}`
    : req.sha256 && sha256 !== req.sha256.toLowerCase()
    ? `sha256 ${sha256}, expected ${req.sha256}`
    : undefined;
  if (bad) {
    await Deno.remove(tmp).catch(() => {});
    throw new DownloadError(`${req.url}: ${bad}`);
  }
  await Deno.rename(tmp, req.dest);
  return { path: req.dest, size: completed, sha256, fetchedBytes: completed, resumed: false };
}
