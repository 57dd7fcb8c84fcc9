/**
 * STAND-IN for the download engine, to be replaced by the real one (branch `pull-download`) at merge: the same
 * exported names and signatures, the least behaviour the Ollama-registry pull needs (one GET following
 * redirects, written to `<dest>.partial` and renamed, SHA-256 computed while streaming, size and digest
 * checked). No ranges, no parallel parts, no resume: `parallel` is ignored and `resumed` is always false.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { dirname } from "node:path";
import { UserError } from "../../util/errors.ts";

/** How far a download is. */
export interface DownloadProgress {
  /** Bytes of the file done. */
  completed: number;
  /** Bytes of the file in all. */
  total: number;
  /** Recent speed. */
  bytesPerSecond?: number;
}

/** What to download, and where. */
export interface DownloadRequest {
  /** The URL (redirects are followed). */
  url: string;
  /** The file to write. */
  dest: string;
  /** Expected SHA-256 (hex): a mismatch is a {@linkcode DownloadError} and nothing is left at `dest`. */
  sha256?: string;
  /** Expected size in bytes. */
  size?: number;
  /** Request headers. */
  headers?: Record<string, string>;
  /** Parts fetched at once (ignored by the stand-in). */
  parallel?: number;
  /** Called as bytes arrive. */
  onProgress?: (p: DownloadProgress) => void;
  /** Cancels the download. */
  signal?: AbortSignal;
  /** The fetch to use (tests). */
  fetch?: typeof fetch;
}

/** What a download did. */
export interface DownloadResult {
  /** The file written (`dest`). */
  path: string;
  /** Its size. */
  size: number;
  /** Its SHA-256 (hex). */
  sha256: string;
  /** Bytes fetched over the network. */
  fetchedBytes: number;
  /** True when an earlier partial download was continued. */
  resumed: boolean;
}

/** A download that failed: the HTTP status when the server answered with an error. */
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
 * Downloads `url` to `dest` (stand-in: see the module doc).
 *
 * @example
 * ```ts ignore
 * const r = await download({ url: "https://example.com/model.gguf", dest: "/tmp/model.gguf" });
 * console.log(r.sha256);
 * ```
 */
export async function download(req: DownloadRequest): Promise<DownloadResult> {
  const res = await (req.fetch ?? fetch)(req.url, { headers: req.headers, signal: req.signal });
  if (!res.ok || !res.body) {
    await res.body?.cancel();
    throw new DownloadError(`GET ${req.url}: HTTP ${res.status}`, { status: res.status });
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
      for (let off = 0; off < chunk.length;) off += await file.write(chunk.subarray(off));
      completed += chunk.length;
      req.onProgress?.({ completed, total });
    }
  } catch (err) {
    file.close();
    await Deno.remove(tmp).catch(() => {});
    throw new DownloadError(`GET ${req.url}: ${(err as Error).message}`, { cause: err });
  }
  file.close();
  const sha256 = hash.digest("hex");
  const fail = async (message: string) => {
    await Deno.remove(tmp).catch(() => {});
    throw new DownloadError(message);
  };
  if (req.size !== undefined && completed !== req.size) {
    await fail(`GET ${req.url}: got ${completed} bytes, expected ${req.size}`);
  }
  if (req.sha256 && sha256 !== req.sha256.toLowerCase()) {
    await fail(`GET ${req.url}: sha256 ${sha256} does not match ${req.sha256}`);
  }
  await Deno.rename(tmp, req.dest);
  return { path: req.dest, size: completed, sha256, fetchedBytes: completed, resumed: false };
}
