/**
 * Content digests of model files: the sha256 of the model's bytes (all parts of a split model, in order), as
 * `/api/tags` and `/api/ps` report them. A file stored under its digest (an Ollama blob, `sha256-<hex>`, or a
 * Hugging Face cache blob, `blobs/<hex>`) is known by its name. Any other is hashed once, in the background, by `sha256sum` under
 * `nice -n 19` (off the daemon's thread, behind every other process for the CPU), one file at a time, and the
 * result is kept in a cache file keyed by each part's device, inode, size and modification time: a file that
 * changes gets a new digest, one that is renamed or linked keeps its own. Until a digest is known, the caller
 * is told so (undefined) and the hash is queued: a listing never waits for one.
 *
 * @module
 */
import { basename } from "node:path";
import { readJson, writeJsonAtomic } from "../util/fs.ts";
import { run } from "../util/run.ts";

/**
 * The parts of a model a digest is asked for, with what the index knows of them (a `ModelEntry` is one).
 *
 * @example
 * ```ts
 * const s: DigestSubject = { files: ["/m/smol.gguf"], sizeBytes: 94_000_000, mtimeMs: 1_700_000_000_000 };
 * ```
 */
export interface DigestSubject {
  /** The model's files, in order (one unless split). */
  files: string[];
  /** Bytes of all parts (as the index saw them). */
  sizeBytes: number;
  /** Latest modification time of the parts (as the index saw them). */
  mtimeMs: number;
}

/**
 * Content digests, computed in the background and cached.
 *
 * @example
 * ```ts ignore
 * const cache: DigestCache = createDigestCache("/data/digests.json");
 * console.log((await cache.get(entry)) ?? "not known yet");
 * ```
 */
export interface DigestCache {
  /**
   * `sha256:<hex>` of the model's content when known; otherwise undefined, and it is queued for hashing.
   */
  get(subject: DigestSubject): Promise<string | undefined>;
  /** Waits until nothing is queued or being hashed (for tests and shutdown). */
  idle(): Promise<void>;
  /** Stops hashing: the file under way is abandoned, nothing more is started. */
  close(): Promise<void>;
}

/**
 * Options for {@linkcode createDigestCache}.
 *
 * @example
 * ```ts
 * const options: DigestCacheOptions = { onError: (files, err) => console.error(files, err) };
 * ```
 */
export interface DigestCacheOptions {
  /** Hashes the files' concatenated content; default `nice -n 19 sha256sum` (one file) or `cat | sha256sum`. */
  hash?: (files: string[], signal: AbortSignal) => Promise<string>;
  /** Hears a file that could not be hashed. */
  onError?: (files: string[], err: unknown) => void;
}

/**
 * The sha256 (hex) a store names a file by, following links: an Ollama blob (`sha256-<hex>`) or a Hugging
 * Face cache blob (`blobs/<hex>`); undefined for a file in a plain folder.
 *
 * @example
 * ```ts ignore
 * await storeDigest("~/.ollama/models/blobs/sha256-6a0746a1ec1a..."); // "6a0746a1ec1a..."
 * ```
 */
export async function storeDigest(path: string): Promise<string | undefined> {
  const real = await Deno.realPath(path).catch(() => path);
  const name = basename(real);
  const ollama = name.match(/^sha256-([0-9a-f]{64})$/);
  if (ollama) return ollama[1];
  if (/\/blobs\/[0-9a-f]{64}$/.test(real)) return name;
  return undefined;
}

/** The identity of a file's content as far as the file system tells: device, inode, size, modification time. */
async function fileKey(path: string): Promise<string | undefined> {
  try {
    const st = await Deno.stat(path);
    return `${st.dev}:${st.ino}:${st.size}:${st.mtime?.getTime() ?? 0}`;
  } catch {
    return undefined;
  }
}

async function niceSha256(files: string[], signal: AbortSignal): Promise<string> {
  const argv = files.length === 1
    ? ["nice", "-n", "19", "sha256sum", "--", files[0]]
    : ["nice", "-n", "19", "sh", "-c", 'cat -- "$@" | sha256sum', "sh", ...files];
  const r = await run(argv, { signal, tailLines: 5 });
  const hex = r.stdout.trim().split(/\s+/)[0];
  if (!/^[0-9a-f]{64}$/.test(hex)) {
    throw new Error(`sha256sum printed ${JSON.stringify(r.stdout.slice(0, 80))}`);
  }
  return hex;
}

/**
 * A digest cache kept in the JSON file `file`.
 *
 * @example
 * ```ts ignore
 * const digests = createDigestCache("/data/digests.json");
 * const d = await digests.get({ files: ["/m/smol.gguf"], sizeBytes: 100, mtimeMs: 0 }); // undefined at first
 * await digests.idle();
 * console.log(await digests.get({ files: ["/m/smol.gguf"], sizeBytes: 100, mtimeMs: 0 })); // sha256:...
 * ```
 */
export function createDigestCache(file: string, options: DigestCacheOptions = {}): DigestCache {
  const hash = options.hash ?? niceSha256;
  /** Digest (hex) by the parts' keys joined with `|`. */
  let known: Map<string, string> | undefined;
  /** Per path list: the index's size and mtime last seen, and the content key they had (saves a stat). */
  const seen = new Map<string, { sizeBytes: number; mtimeMs: number; key: string; named?: string }>();
  const queue: { files: string[]; key: string }[] = [];
  const queued = new Set<string>();
  const abort = new AbortController();
  let worker: Promise<void> | undefined;
  let saving = Promise.resolve();

  const load = async () => {
    if (known) return known;
    const saved = await readJson<Record<string, string>>(file).catch(() => undefined);
    known ??= new Map(Object.entries(saved && typeof saved === "object" ? saved : {}));
    return known;
  };

  const save = () => {
    const snapshot = Object.fromEntries(known ?? []);
    saving = saving.then(() => writeJsonAtomic(file, snapshot)).catch((err) =>
      options.onError?.([file], err)
    );
  };

  const work = async () => {
    while (queue.length && !abort.signal.aborted) {
      const job = queue.shift()!;
      try {
        const hex = await hash(job.files, abort.signal);
        // A file that changed while it was read is hashed again on its next listing (its key moved on).
        const after = (await Promise.all(job.files.map(fileKey))).join("|");
        if (after === job.key) {
          (await load()).set(job.key, hex);
          save();
        }
      } catch (err) {
        if (!abort.signal.aborted) options.onError?.(job.files, err);
      } finally {
        queued.delete(job.key);
      }
    }
    worker = undefined;
  };

  return {
    async get(subject) {
      const id = subject.files.join("\0");
      let entry = seen.get(id);
      if (!entry || entry.sizeBytes !== subject.sizeBytes || entry.mtimeMs !== subject.mtimeMs) {
        const named = subject.files.length === 1 ? await storeDigest(subject.files[0]) : undefined;
        const keys = named ? [] : await Promise.all(subject.files.map(fileKey));
        if (keys.some((k) => k === undefined)) return undefined;
        entry = { sizeBytes: subject.sizeBytes, mtimeMs: subject.mtimeMs, key: keys.join("|"), named };
        seen.set(id, entry);
      }
      if (entry.named) return `sha256:${entry.named}`;
      const hex = (await load()).get(entry.key);
      if (hex) return `sha256:${hex}`;
      if (!queued.has(entry.key) && !abort.signal.aborted) {
        queued.add(entry.key);
        queue.push({ files: subject.files, key: entry.key });
        worker ??= work();
      }
      return undefined;
    },
    async idle() {
      while (worker) await worker;
      await saving;
    },
    async close() {
      abort.abort();
      queue.length = 0;
      await worker;
      await saving;
    },
  };
}
