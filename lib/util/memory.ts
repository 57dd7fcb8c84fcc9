/**
 * Giving memory back to the system, for a process that runs for weeks (the daemon). Two things hold resident
 * memory that a Deno process no longer uses:
 *
 * - the C allocator (glibc malloc) keeps the pages of freed blocks: `malloc_trim(0)` returns them;
 * - the code pages of the `deno` binary touched only while starting (module loading, the CLI, config and
 *   index reading) stay mapped: `madvise(MADV_DONTNEED)` on the binary's clean read-only mappings unmaps them.
 *   They are the file's own pages, so a page used again is mapped back from the page cache on its next use
 *   (a minor fault); nothing is lost, and only mappings without a single private (written) page are touched.
 *
 * Both need Linux with glibc and the FFI permission; elsewhere they do nothing and say so (false / 0).
 *
 * @module
 */

const MADV_DONTNEED = 4;

type Libc = Deno.DynamicLibrary<{
  malloc_trim: { parameters: ["usize"]; result: "i32"; nonblocking: true };
  madvise: { parameters: ["usize", "usize", "i32"]; result: "i32" };
}>;

/** Opens glibc, or undefined when this is not Linux with glibc or FFI is not allowed. */
function openLibc(): Libc | undefined {
  if (Deno.build.os !== "linux") return undefined;
  try {
    if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return undefined;
    return Deno.dlopen("libc.so.6", {
      malloc_trim: { parameters: ["usize"], result: "i32", nonblocking: true },
      madvise: { parameters: ["usize", "usize", "i32"], result: "i32" },
    });
  } catch {
    return undefined; // musl, or no libc.so.6
  }
}

/**
 * Returns the C allocator's free pages to the system (`malloc_trim(0)`, run off the JavaScript thread).
 * Resolves to false where that is not possible (not glibc, no FFI permission).
 *
 * @example
 * ```ts
 * await trimAllocator();
 * ```
 */
export async function trimAllocator(): Promise<boolean> {
  const libc = openLibc();
  if (!libc) return false;
  try {
    await libc.symbols.malloc_trim(0n);
    return true;
  } finally {
    libc.close();
  }
}

/** One mapping of `/proc/self/smaps`. */
interface Mapping {
  start: bigint;
  end: bigint;
  perms: string;
  path: string;
  /** Private (copied-on-write) kB in it; -1 until its `Anonymous:` line is read. */
  anonKb: number;
}

function mappings(smaps: string): Mapping[] {
  const out: Mapping[] = [];
  let cur: Mapping | undefined;
  for (const line of smaps.split("\n")) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \d+\s*(.*)$/.exec(line);
    if (m) {
      cur = { start: BigInt("0x" + m[1]), end: BigInt("0x" + m[2]), perms: m[3], path: m[4], anonKb: -1 };
      out.push(cur);
    } else if (cur && line.startsWith("Anonymous:")) {
      cur.anonKb = Number(line.split(/\s+/)[1]);
    }
  }
  return out;
}

/**
 * Unmaps the running executable's code and read-only data pages, so that only the ones used from now on come
 * back into resident memory. Only read-only mappings of the executable file that hold no private page are
 * touched (their contents are exactly the file's). Returns the number of mappings given back (0 where this is
 * not possible).
 *
 * @example
 * ```ts
 * dropExecutablePages();
 * ```
 */
export function dropExecutablePages(): number {
  const libc = openLibc();
  if (!libc) return 0;
  try {
    let exe: string;
    let smaps: string;
    try {
      exe = Deno.realPathSync(Deno.execPath());
      smaps = Deno.readTextFileSync("/proc/self/smaps");
    } catch {
      return 0; // no /proc, or no read permission for it
    }
    let n = 0;
    for (const m of mappings(smaps)) {
      if (m.path !== exe || m.perms.includes("w") || m.anonKb !== 0) continue;
      if (libc.symbols.madvise(m.start, m.end - m.start, MADV_DONTNEED) === 0) n++;
    }
    return n;
  } finally {
    libc.close();
  }
}

/** A running {@linkcode startMemoryTrimmer}. */
export interface MemoryTrimmer {
  /** Records work (e.g. a request arriving): memory is given back once there has been none for a while. */
  activity(): void;
  /** Resolves, once the start-up pages are dropped, to the number of mappings given back (0 if stopped first). */
  settled: Promise<number>;
  /** Stops the timers, waiting for a trim under way. */
  stop(): Promise<void>;
  /** How many times the executable's pages were given back (the first settling included). */
  readonly givenBack: number;
  /** How many times the allocator was trimmed (the first settling included). */
  readonly trimmed: number;
}

/** Options for {@linkcode startMemoryTrimmer}. */
export interface MemoryTrimmerOptions {
  /** When to give back the start-up pages, ms after the start (default 3000). */
  settleMs?: number;
  /** The quiet interval after which the allocator is trimmed, ms (default 2000). */
  idleMs?: number;
  /**
   * How long it must stay quiet before the executable's pages are given back too, ms (default `idleMs`;
   * counted in whole `idleMs` intervals). Those pages cost the next request their page faults.
   */
  pagesIdleMs?: number;
  /**
   * Whether work is under way that began earlier, such as a streamed answer: counted as activity in every
   * interval it lasts, so that nothing is given back in the middle of it.
   */
  busy?: () => boolean;
  /**
   * Under work that does not pause, the allocator is trimmed anyway this often, ms (counted in whole `idleMs`
   * intervals; default: never). Freed memory then goes back instead of building up until a pause.
   */
  busyTrimMs?: number;
}

/**
 * For a long-running process: `settleMs` after the start, drops the executable's start-up pages
 * ({@linkcode dropExecutablePages}) and trims the allocator ({@linkcode trimAllocator}); then whenever it goes
 * quiet (a whole `idleMs` without {@linkcode MemoryTrimmer.activity} after some, and not `busy`) trims the
 * allocator, and once it has stayed quiet for `pagesIdleMs` drops the executable's pages again. While work goes
 * on, the pages are left alone (they would only be faulted back in at a cost) and the allocator is trimmed
 * only every `busyTrimMs`, if given. The timers do not keep the process alive.
 *
 * @example
 * ```ts
 * const trimmer = startMemoryTrimmer({ idleMs: 2000, pagesIdleMs: 60_000 });
 * trimmer.activity(); // on each request
 * await trimmer.stop();
 * ```
 */
export function startMemoryTrimmer(options: MemoryTrimmerOptions = {}): MemoryTrimmer {
  let running: Promise<unknown> = Promise.resolve();
  const { promise: settled, resolve: settledWith } = Promise.withResolvers<number>();
  const idleMs = options.idleMs ?? 2000;
  const pagesIdleMs = options.pagesIdleMs ?? idleMs;
  let givenBack = 0;
  let trimmed = 0;
  const dropPages = () => {
    givenBack++;
    settledWith(dropExecutablePages()); // only the first call counts
  };
  const trim = () => {
    trimmed++;
    running = running.then(trimAllocator).catch(() => false);
  };
  const settle = setTimeout(() => {
    dropPages();
    trim();
  }, options.settleMs ?? 3000);
  // `recent`: activity since the last tick; `quiet`: whole intervals without activity since the last, or null
  // when everything owed has been given back (nothing happens until the next activity).
  const pagesAfter = Math.max(1, Math.ceil(pagesIdleMs / idleMs));
  const busyTrimAfter = options.busyTrimMs ? Math.max(1, Math.round(options.busyTrimMs / idleMs)) : Infinity;
  let recent = false;
  let quiet: number | null = null;
  let busyTicks = 0;
  const every = setInterval(() => {
    if (recent || options.busy?.()) {
      recent = false;
      quiet = 0;
      if (++busyTicks >= busyTrimAfter) {
        busyTicks = 0;
        trim();
      }
      return;
    }
    busyTicks = 0;
    if (quiet === null) return;
    quiet++;
    if (quiet === 1) trim();
    if (quiet === pagesAfter) {
      dropPages();
      quiet = null;
    }
  }, idleMs);
  Deno.unrefTimer(settle);
  Deno.unrefTimer(every);
  return {
    settled,
    get givenBack() {
      return givenBack;
    },
    get trimmed() {
      return trimmed;
    },
    activity() {
      recent = true;
    },
    async stop() {
      clearTimeout(settle);
      clearInterval(every);
      settledWith(0);
      await running;
    },
  };
}
