/**
 * The sha256 of a download, computed while its bytes arrive, over blocks of one shared memory that the
 * writer's Worker (writer.ts) writes to disk from at the same time. The hash runs on the thread that receives
 * (about 0.7 s per GiB with SHA-NI) and the writes on the Worker: writing into the page cache is the costlier
 * half of what curl does, and the one that varies most on a VM (0.5 to 1.6 s per GiB here).
 *
 * @module
 */
import { createHash } from "node:crypto";

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
 * with `take()` is filled by the caller and passed to `block()`; whoever else reads it (the writer) `retain`s
 * it first and `give`s it back when done. It returns to the pool when the last holder gives it back.
 */
export interface BlockHasher {
  /** The memory every block is a slice of. */
  readonly memory: Uint8Array;
  /** Bytes per block. */
  readonly blockSize: number;
  /** Blocks free now. */
  free(): number;
  /** A free block's index (held once), or undefined when none is free. */
  take(): number | undefined;
  /** Resolves when a block has come back (at once if one is free). */
  whenFree(): Promise<void>;
  /** One more holder of block `slot`. */
  retain(slot: number): void;
  /** A holder of block `slot` is done with it. */
  give(slot: number): void;
  /** Hashes `length` bytes of block `slot` next and gives it back. */
  block(slot: number, length: number): void;
  /**
   * Hashes bytes `[start, end)` of the file at `path` next (read back from disk); rejects with ShortFile, or
   * with `signal`'s reason once it aborts (a resume may read back gigabytes).
   */
  file(path: string, start: number, end: number, signal?: AbortSignal): Promise<void>;
  /** The sha256 in hex of everything handed so far. */
  digest(): string;
}

/**
 * A hasher with `blocks` blocks of `blockSize` bytes in a SharedArrayBuffer (so a Worker can write them).
 *
 * @example
 * ```ts
 * const h = blockHasher({ blocks: 4, blockSize: 1024 });
 * const slot = h.take()!;
 * h.memory.set(new TextEncoder().encode("abc"), slot * h.blockSize);
 * h.block(slot, 3);
 * console.log(h.digest()); // ba7816bf...
 * ```
 */
export function blockHasher(options: { blocks: number; blockSize: number }): BlockHasher {
  const { blocks, blockSize } = options;
  const memory = new Uint8Array(new SharedArrayBuffer(blocks * blockSize));
  // Last freed, first taken: the same few blocks are used again while the writer keeps up, so the pages of
  // the others are never touched (they cost no resident memory).
  const pool = Array.from({ length: blocks }, (_, i) => blocks - 1 - i);
  // A block is held once per hand-over to the writer not yet done: many, on a slow link with a stalled disk.
  const holders = new Int32Array(blocks);
  let waiters: (() => void)[] = [];
  const give = (slot: number) => {
    if (holders[slot] === 0) throw new Error(`block ${slot} given back twice`);
    if (--holders[slot]) return;
    pool.push(slot);
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  };
  let hash = createHash("sha256");
  let scratch: Uint8Array | undefined;
  return {
    memory,
    blockSize,
    free: () => pool.length,
    take() {
      const slot = pool.pop();
      if (slot !== undefined) holders[slot] = 1;
      return slot;
    },
    whenFree: () => pool.length ? Promise.resolve() : new Promise<void>((r) => waiters.push(r)),
    retain(slot) {
      holders[slot]++;
    },
    give,
    block(slot, length) {
      hash.update(memory.subarray(slot * blockSize, slot * blockSize + length));
      give(slot);
    },
    async file(path, start, end, signal) {
      // Read on Deno's blocking pool while this thread hashes what came before.
      scratch ??= new Uint8Array(blockSize);
      using f = await Deno.open(path, { read: true });
      await f.seek(start, Deno.SeekMode.Start);
      for (let pos = start; pos < end;) {
        signal?.throwIfAborted();
        const n = await f.read(scratch.subarray(0, Math.min(scratch.length, end - pos)));
        if (n === null) throw new ShortFile(`${path} ends at byte ${pos}, before ${end}`);
        hash.update(scratch.subarray(0, n));
        pos += n;
      }
    },
    digest() {
      const hex = hash.digest("hex");
      hash = createHash("sha256");
      return hex;
    },
  };
}
