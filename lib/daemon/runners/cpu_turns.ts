/**
 * CPU generation in turns. llama.cpp's threads spin while they wait for work, so two llama-servers generating at
 * once on the same cores slow each other down far more than twice (measured here: two SmolLM2 runners together
 * got 0.10x the tokens/s of one alone). Runners that run on the CPU alone therefore take turns: the requests of
 * one runner run together (llama-server batches them in its slots), another runner's wait until they finish, and
 * the turn passes in arrival order, so a runner with a stream of new requests cannot keep it from the others.
 *
 * Across daemons on one machine the turn is a file lock (`flock`): a daemon holds it while one of its runners
 * has the turn, so a service and a daemon started by hand do not fight either. The kernel drops the lock of a
 * process that dies.
 *
 * @module
 */

/**
 * Turns on the CPU, by runner.
 *
 * @example
 * ```ts
 * const turns = createCpuTurns();
 * await turns.enter("smol");
 * const other = turns.enter("qwen"); // waits: smol has the turn
 * turns.leave("smol");
 * await other;
 * turns.leave("qwen");
 * ```
 */
export interface CpuTurns {
  /** Waits for `runner`'s turn; requests of the runner that has it join at once unless another runner waits. */
  enter(runner: string): Promise<void>;
  /** Ends one request's part of the turn; when the runner's last one leaves, the turn passes on. */
  leave(runner: string): void;
  /** The runner whose requests run now, if any. */
  holder(): string | undefined;
  /** Requests waiting for a turn. */
  waiting(): number;
}

/**
 * Options for {@linkcode createCpuTurns}.
 *
 * @example
 * ```ts
 * const options: CpuTurnsOptions = { lockFile: "/tmp/llama-mgr-cpu.lock" };
 * ```
 */
export interface CpuTurnsOptions {
  /** A file every daemon on the machine locks while its runners have the turn (default: none, this process
   * only). */
  lockFile?: string;
  /** Called when the machine-wide lock cannot be used (the turns then hold within this process only). */
  onError?: (err: Error) => void;
}

/**
 * Creates the turns of one daemon.
 *
 * @example
 * ```ts
 * const turns = createCpuTurns({ lockFile: `${Deno.makeTempDirSync()}/cpu.lock` });
 * await turns.enter("smol");
 * turns.leave("smol");
 * ```
 */
export function createCpuTurns(options: CpuTurnsOptions = {}): CpuTurns {
  let holder: string | undefined;
  let active = 0;
  const queue: { runner: string; resolve: () => void }[] = [];
  // The machine-wide lock: taken when the turn goes from nobody to a runner, given back when it goes to nobody.
  let file: Deno.FsFile | undefined;
  let locked: Promise<void> = Promise.resolve();
  const lockMachine = () => {
    if (!options.lockFile) return;
    const path = options.lockFile;
    locked = (async () => {
      try {
        file = await Deno.open(path, { create: true, write: true, mode: 0o666 });
        await file.lock(true);
      } catch (err) {
        file?.close();
        file = undefined;
        options.onError?.(err as Error);
      }
    })();
  };
  const unlockMachine = () => {
    const f = file;
    file = undefined;
    if (!f) return;
    // Closing the file gives the lock back.
    locked = locked.then(() => f.close()).catch(() => {});
  };

  const grant = (runner: string) => {
    holder = runner;
    for (let i = 0; i < queue.length;) {
      if (queue[i].runner !== runner) {
        i++;
        continue;
      }
      active++;
      queue.splice(i, 1)[0].resolve();
    }
  };

  return {
    async enter(runner) {
      if (holder === undefined) {
        holder = runner;
        active = 1;
        lockMachine();
      } else if (holder === runner && queue.length === 0) {
        active++;
      } else {
        await new Promise<void>((resolve) => queue.push({ runner, resolve }));
      }
      await locked;
    },
    leave(runner) {
      if (holder !== runner || active <= 0) return;
      if (--active > 0) return;
      if (queue.length) grant(queue[0].runner);
      else {
        holder = undefined;
        unlockMachine();
      }
    },
    holder: () => holder,
    waiting: () => queue.length,
  };
}
