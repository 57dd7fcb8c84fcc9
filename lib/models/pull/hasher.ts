/**
 * The sha256 of a download, computed while its bytes arrive: on a Worker thread for large files, so that
 * hashing (about 0.7 s per GiB with SHA-NI) runs beside the receiving and writing instead of after them on one
 * thread. Blocks reach the Worker without a copy: they live in one SharedArrayBuffer that both threads see
 * (a transferred ArrayBuffer is copied by Deno's postMessage, 60 us per MiB each way).
 *
 * @module
 */
import { createHash } from "node:crypto";

/** What the Worker answers. */
type Reply = { op: "free"; slot: number } | { op: "short" } | { op: "digest"; hex: string } | {
  op: "error";
  message: string;
};

/**
 * The Worker's program. It runs in its own scope (made from this function's text), so it takes `createHash`
 * as an argument and uses nothing else of this module. Messages are handled in order, synchronously: a block
 * is hashed and handed back; a range of the file is read back from disk (bytes that were only written) and
 * hashed; `digest` answers the result.
 */
function workerMain(makeHash: typeof createHash): void {
  const scope = self as unknown as {
    onmessage: ((e: MessageEvent) => void) | null;
    postMessage(m: Reply): void;
  };
  let memory: Uint8Array = new Uint8Array(0);
  let blockSize = 0;
  let hash = makeHash("sha256");
  let scratch: Uint8Array | undefined;
  let short = false;
  scope.onmessage = (e: MessageEvent) => {
    const m = e.data;
    try {
      if (m.op === "init") {
        memory = new Uint8Array(m.memory as SharedArrayBuffer);
        blockSize = m.blockSize;
      } else if (m.op === "block") {
        hash.update(memory.subarray(m.slot * blockSize, m.slot * blockSize + m.length));
        scope.postMessage({ op: "free", slot: m.slot });
      } else if (m.op === "file") {
        if (short) return;
        scratch ??= new Uint8Array(blockSize);
        const file = Deno.openSync(m.path, { read: true });
        try {
          file.seekSync(m.start, Deno.SeekMode.Start);
          for (let pos = m.start; pos < m.end;) {
            const n = file.readSync(scratch.subarray(0, Math.min(scratch.length, m.end - pos)));
            if (n === null) {
              short = true;
              scope.postMessage({ op: "short" });
              return;
            }
            hash.update(scratch.subarray(0, n));
            pos += n;
          }
        } finally {
          file.close();
        }
      } else if (m.op === "digest") {
        scope.postMessage({ op: "digest", hex: hash.digest("hex") });
        hash = makeHash("sha256");
      }
    } catch (err) {
      scope.postMessage({ op: "error", message: err instanceof Error ? err.message : String(err) });
    }
  };
}

/** The Worker's module: `workerMain` called with node:crypto's `createHash`. */
const WORKER_SOURCE = `import { createHash } from "node:crypto";\n(${workerMain.toString()})(createHash);\n`;

/**
 * The file being hashed was shorter than the ranges asked for: its bytes are not the ones recorded.
 *
 * @example
 * ```ts
 * const err: Error = new ShortFile("model.gguf.partial ends before byte 1048576");
 * ```
 */
export class ShortFile extends Error {}

/**
 * Blocks of one shared memory, and the sha256 of what is handed to it, in the order handed. A block taken
 * with `take()` is filled by the caller, then passed to `block()`; it comes back to the pool once hashed.
 */
export interface BlockHasher {
  /** The memory every block is a slice of. */
  readonly memory: Uint8Array;
  /** Bytes per block. */
  readonly blockSize: number;
  /** Blocks free now. */
  free(): number;
  /** A free block's index, or undefined when none is free. */
  take(): number | undefined;
  /** Resolves when a block has come back (at once if one is free). */
  whenFree(): Promise<void>;
  /** Returns a block unused. */
  give(slot: number): void;
  /** Hashes `length` bytes of block `slot` next; the block returns to the pool afterwards. */
  block(slot: number, length: number): void;
  /** Hashes bytes `[start, end)` of the file at `path` next (read back from disk). */
  file(path: string, start: number, end: number): void;
  /** The sha256 in hex of everything handed so far; rejects with ShortFile if a file range was short. */
  digest(): Promise<string>;
  /** Stops the Worker, if there is one. */
  close(): void;
}

/**
 * A hasher with `blocks` blocks of `blockSize` bytes: on a Worker when `worker` is true (falling back to this
 * thread when a Worker cannot start), else on this thread. `onError` hears of a Worker that failed.
 *
 * @example
 * ```ts
 * const h = blockHasher({ blocks: 4, blockSize: 1024, worker: false, onError: console.error });
 * const slot = h.take()!;
 * h.memory.set(new TextEncoder().encode("abc"), slot * h.blockSize);
 * h.block(slot, 3);
 * console.log(await h.digest()); // ba7816bf...
 * h.close();
 * ```
 */
export function blockHasher(
  options: { blocks: number; blockSize: number; worker: boolean; onError: (err: Error) => void },
): BlockHasher {
  const { blocks, blockSize } = options;
  const shared = new SharedArrayBuffer(blocks * blockSize);
  const memory = new Uint8Array(shared);
  // Last freed, first taken: the same few blocks are used again while the hasher keeps up, so the pages of
  // the others are never touched (they cost no resident memory).
  const pool = Array.from({ length: blocks }, (_, i) => blocks - 1 - i);
  let waiters: (() => void)[] = [];
  const give = (slot: number) => {
    pool.push(slot);
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  };
  const base = {
    memory,
    blockSize,
    free: () => pool.length,
    take: () => pool.pop(),
    whenFree: () => pool.length ? Promise.resolve() : new Promise<void>((r) => waiters.push(r)),
    give,
  };

  let worker: Worker | undefined;
  if (options.worker) {
    try {
      const url = URL.createObjectURL(new Blob([WORKER_SOURCE], { type: "text/javascript" }));
      worker = new Worker(url, { type: "module" });
      URL.revokeObjectURL(url);
    } catch {
      worker = undefined; // no Worker here (a restricted runtime): hash on this thread
    }
  }
  if (!worker) {
    let hash = createHash("sha256");
    let scratch: Uint8Array | undefined;
    let short = false;
    return {
      ...base,
      block(slot, length) {
        hash.update(memory.subarray(slot * blockSize, slot * blockSize + length));
        give(slot);
      },
      file(path, start, end) {
        if (short) return;
        scratch ??= new Uint8Array(blockSize);
        using f = Deno.openSync(path, { read: true });
        f.seekSync(start, Deno.SeekMode.Start);
        for (let pos = start; pos < end;) {
          const n = f.readSync(scratch.subarray(0, Math.min(scratch.length, end - pos)));
          if (n === null) {
            short = true;
            options.onError(new ShortFile(`${path} ends at byte ${pos}, before ${end}`));
            return;
          }
          hash.update(scratch.subarray(0, n));
          pos += n;
        }
      },
      digest() {
        if (short) return Promise.reject(new ShortFile());
        const hex = hash.digest("hex");
        hash = createHash("sha256");
        return Promise.resolve(hex);
      },
      close() {},
    };
  }

  const w = worker;
  let short = false;
  let failed: Error | undefined;
  let onDigest: ((r: Reply) => void) | undefined;
  const failWith = (err: Error) => {
    failed ??= err;
    onDigest?.({ op: "error", message: err.message });
    options.onError(err);
  };
  w.onmessage = (e: MessageEvent<Reply>) => {
    const r = e.data;
    if (r.op === "free") give(r.slot);
    else if (r.op === "short") {
      short = true;
      options.onError(new ShortFile("the partial file is shorter than its state says"));
    } else if (r.op === "digest") onDigest?.(r);
    else failWith(new Error(`sha256 worker: ${r.message}`));
  };
  w.onerror = (e: ErrorEvent) => {
    e.preventDefault();
    failWith(new Error(`sha256 worker: ${e.message}`));
  };
  w.postMessage({ op: "init", memory: shared, blockSize });
  return {
    ...base,
    block: (slot, length) => w.postMessage({ op: "block", slot, length }),
    file: (path, start, end) => w.postMessage({ op: "file", path, start, end }),
    digest() {
      if (failed) return Promise.reject(failed);
      return new Promise<string>((resolve, reject) => {
        onDigest = (r) => {
          onDigest = undefined;
          if (r.op === "digest" && !short) resolve(r.hex);
          else if (r.op === "digest") reject(new ShortFile());
          else reject(failed ?? new Error("sha256 worker failed"));
        };
        w.postMessage({ op: "digest" });
      });
    },
    close: () => w.terminate(),
  };
}
