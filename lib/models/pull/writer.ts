/**
 * Writes a download's blocks to its file on a Worker thread, while the thread that receives goes on reading
 * the socket and hashing. The blocks live in a SharedArrayBuffer that both threads see (Deno's postMessage
 * copies even a transferred ArrayBuffer). On the 2-vCPU VM of bench/pull.ts a slow page cache then no longer
 * stops the receive (with fast writes the pull is as fast as when the receiving thread wrote), and the resident
 * memory is some 4 MB lower than with a hashing Worker (this one does not load node:crypto).
 *
 * @module
 */

/**
 * Writes go to the page cache 16 KiB at a time, as curl's do (4 to 16 KiB). A larger write makes the kernel
 * allocate a larger folio (6.x kernels), taken from free memory that a VM's hypervisor may have to map on
 * first touch: on the 2-vCPU VM of bench/pull.ts, 256 KiB writes cost 2.5 to 3 s of system time per GiB and
 * 16 KiB writes 1.1 to 1.3 s (perf: the copy into the page cache went from half the samples to 5 %). The
 * extra system calls cost some 0.1 s per GiB.
 */
const WRITE = 16 * 1024;

/**
 * Writes all of `bytes` at the file's position, 16 KiB at a time.
 *
 * @example
 * ```ts ignore
 * using f = Deno.openSync("out.bin", { write: true, create: true });
 * writeAll(f, new Uint8Array(100_000));
 * ```
 */
export function writeAll(file: Deno.FsFile, bytes: Uint8Array): void {
  for (let off = 0; off < bytes.length;) {
    off += file.writeSync(bytes.subarray(off, Math.min(bytes.length, off + WRITE)));
  }
}

/**
 * A write to the file failed (a full disk, a lost mount): not something a retry of the request mends.
 *
 * @example
 * ```ts
 * const err = new WriteError("/models/m.gguf.partial", "No space left on device (os error 28)");
 * console.log(err.message); // cannot write /models/m.gguf.partial: No space left on device (os error 28)
 * ```
 */
export class WriteError extends Error {
  /** The file that could not be written. */
  path: string;
  /** The system's words. */
  reason: string;

  /** An error naming the file and the system's reason. */
  constructor(path: string, reason: string) {
    super(`cannot write ${path}: ${reason}`);
    this.name = "WriteError";
    this.path = path;
    this.reason = reason;
  }
}

/** What the Worker answers. */
type Reply =
  | { op: "written"; slot: number; at: number; length: number }
  | { op: "error"; message: string; write: boolean }
  | { op: "closed" };

/**
 * The Worker's program. It runs in its own scope (made from this function's text), so it uses nothing of this
 * module. Writes are done in the order they are asked for.
 */
function workerMain(): void {
  const scope = self as unknown as {
    onmessage: ((e: MessageEvent) => void) | null;
    postMessage(m: Reply): void;
  };
  let memory: Uint8Array = new Uint8Array(0);
  let blockSize = 0;
  let file: Deno.FsFile | undefined;
  scope.onmessage = (e: MessageEvent) => {
    const m = e.data;
    try {
      if (m.op === "init") {
        memory = new Uint8Array(m.memory as SharedArrayBuffer);
        blockSize = m.blockSize;
        file = Deno.openSync(m.path, { write: true });
      } else if (m.op === "write") {
        const from = m.slot * blockSize + m.offset;
        const bytes = memory.subarray(from, from + m.length);
        file!.seekSync(m.at, Deno.SeekMode.Start);
        for (let off = 0; off < bytes.length;) {
          off += file!.writeSync(bytes.subarray(off, Math.min(bytes.length, off + m.chunk)));
        }
        scope.postMessage({ op: "written", slot: m.slot, at: m.at, length: m.length });
      } else if (m.op === "close") {
        try {
          file?.close();
        } finally {
          file = undefined;
          scope.postMessage({ op: "closed" });
        }
      }
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      scope.postMessage({ op: "error", message, write: m.op === "write" });
    }
  };
}

const WORKER_SOURCE = `(${workerMain.toString()})();\n`;

/** Writes blocks of a shared memory to one file, each at its offset. */
export interface BlockWriter {
  /**
   * Writes `length` bytes of block `slot` from `offset` in it to the file at `at`; `onWritten` hears when
   * they are in the file.
   */
  write(slot: number, offset: number, length: number, at: number): void;
  /** Resolves when every write asked for so far is done (or has failed: `onError` heard of it). */
  settled(): Promise<void>;
  /** Closes the file and stops the Worker; call after `settled()`. */
  close(): Promise<void>;
}

/**
 * A writer of `path` (which must exist) from `memory`'s blocks: on a Worker when `worker` is true (on this
 * thread when a Worker cannot start, or for a small file not worth one), calling `onWritten` for each write
 * in the order asked and `onError` for a write that failed.
 *
 * @example
 * ```ts ignore
 * const memory = new Uint8Array(new SharedArrayBuffer(2 * 1024));
 * const w = blockWriter({
 *   memory, blockSize: 1024, path: "out.bin", worker: true,
 *   onWritten: (slot, at, length) => console.log(`block ${slot}: ${length} bytes at ${at}`),
 *   onError: console.error,
 * });
 * w.write(0, 0, 1024, 0);
 * await w.settled();
 * await w.close();
 * ```
 */
export function blockWriter(options: {
  memory: Uint8Array;
  blockSize: number;
  path: string;
  worker: boolean;
  onWritten: (slot: number, at: number, length: number) => void;
  /** Hears of the first write that failed (a WriteError) or of a Worker that stopped. */
  onError: (err: Error) => void;
}): BlockWriter {
  const { memory, blockSize, path } = options;
  let worker: Worker | undefined;
  let url: string | undefined;
  if (options.worker && memory.buffer instanceof SharedArrayBuffer) {
    try {
      url = URL.createObjectURL(new Blob([WORKER_SOURCE], { type: "text/javascript" }));
      worker = new Worker(url, { type: "module" });
    } catch {
      worker = undefined; // no Worker here (a restricted runtime): write on this thread
    }
  }
  // Revoked once the Worker is done with it, not at once: a Worker may load its module after `new Worker`
  // returns.
  const revoke = () => {
    if (url) URL.revokeObjectURL(url);
    url = undefined;
  };
  if (!worker) revoke();
  if (!worker) {
    const file = Deno.openSync(path, { write: true });
    let failed = false;
    return {
      write(slot, offset, length, at) {
        try {
          if (failed) throw new Error("an earlier write failed");
          file.seekSync(at, Deno.SeekMode.Start);
          const from = slot * blockSize + offset;
          writeAll(file, memory.subarray(from, from + length));
        } catch (err) {
          failed = true;
          options.onError(new WriteError(path, err instanceof Error ? err.message : String(err)));
          return;
        }
        options.onWritten(slot, at, length);
      },
      settled: () => Promise.resolve(),
      close() {
        try {
          file.close();
          return Promise.resolve();
        } catch (err) {
          return Promise.reject(err);
        }
      },
    };
  }

  const w = worker;
  let pending = 0;
  let failed = false;
  let waiters: (() => void)[] = [];
  let onClosed: (() => void) | undefined;
  let dead = false;
  const settle = () => {
    if (pending) return;
    const ws = waiters;
    waiters = [];
    for (const f of ws) f();
  };
  const failWith = (err: Error) => {
    if (!failed) options.onError(err);
    failed = true;
  };
  w.onmessage = (e: MessageEvent<Reply>) => {
    const r = e.data;
    if (r.op === "closed") return onClosed?.();
    if (r.op === "written" || r.write) pending--;
    if (r.op === "written") options.onWritten(r.slot, r.at, r.length);
    else failWith(new WriteError(path, r.message));
    settle();
  };
  w.onerror = (e: ErrorEvent) => {
    e.preventDefault();
    failWith(new Error(`the writer's Worker failed: ${e.message}`));
    pending = 0;
    dead = true;
    settle();
    onClosed?.();
    revoke();
  };
  w.postMessage({ op: "init", memory: memory.buffer, blockSize, path });
  return {
    write(slot, offset, length, at) {
      if (dead) return; // onError has heard of it; nothing will answer
      pending++;
      w.postMessage({ op: "write", slot, offset, length, at, chunk: WRITE });
    },
    settled: () => pending ? new Promise<void>((r) => waiters.push(r)) : Promise.resolve(),
    async close() {
      // The file is closed by the Worker before it stops, so a rename that follows finds no open handle.
      if (!dead) {
        await new Promise<void>((r) => {
          onClosed = r;
          w.postMessage({ op: "close" });
        });
      }
      w.terminate();
      revoke();
    },
  };
}
