/**
 * Process facts on Linux and macOS: is a pid alive, what is its command line, how much memory does it use.
 *
 * @module
 */

const procBuf = new Uint8Array(8192);
const procDec = new TextDecoder();

/**
 * Reads a small `/proc` file in one or two reads (`Deno.readTextFileSync` starts with a 32-byte buffer and
 * doubles it, several system calls for one `stat`; the daemon checks its servers on every request).
 */
function readProc(path: string): string {
  const f = Deno.openSync(path);
  try {
    let text = "";
    while (true) {
      const n = f.readSync(procBuf);
      if (n === null || n === 0) return text + procDec.decode();
      text += procDec.decode(procBuf.subarray(0, n), { stream: true });
    }
  } finally {
    f.close();
  }
}

/**
 * The fields of `/proc/<pid>/stat` after the command name (which may hold spaces and parentheses): index 0 is
 * the state (field 3 of proc(5)), so field N is at index N - 3. Throws when the process is gone or there is no
 * `/proc`.
 */
function statFields(pid: number): string[] {
  const stat = readProc(`/proc/${pid}/stat`);
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
}

/** The kernel's PF_EXITING: the task has begun to exit (set before it closes its files). */
const PF_EXITING = 0x4;

/**
 * True when a process with this pid exists (zombies count as gone). With `exitingIsGone`, a process that has
 * begun to exit (killed, its sockets closing, not yet a zombie) counts as gone too: for a server, whose
 * connections are refused from that moment.
 *
 * @example
 * ```ts
 * pidAlive(Deno.pid); // true
 * pidAlive(Deno.pid, { exitingIsGone: true }); // true; false for a server killed a moment ago
 * ```
 */
export function pidAlive(pid: number, options: { exitingIsGone?: boolean } = {}): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    const fields = statFields(pid);
    const state = fields[0];
    if (state === "Z" || state === "X") return false;
    // Field 9 of proc(5), the task's flags.
    return !(options.exitingIsGone && (Number(fields[6]) & PF_EXITING) !== 0);
  } catch {
    // No /proc (macOS): signal 0 probes existence.
    try {
      Deno.kill(pid, "SIGCONT");
      return true;
    } catch {
      return false;
    }
  }
}

/** The command line of a process, or undefined when it is gone or unreadable. */
export function pidCmdline(pid: number): string[] | undefined {
  try {
    const raw = readProc(`/proc/${pid}/cmdline`);
    return raw.split("\0").filter((s) => s.length > 0);
  } catch {
    return undefined;
  }
}

/** Process start time in clock ticks since boot (Linux), to tell a reused pid from the original. */
export function pidStartTicks(pid: number): number | undefined {
  try {
    return Number(statFields(pid)[19]); // field 22, starttime
  } catch {
    return undefined;
  }
}

/**
 * CPU time (user + system) a process has used so far, in milliseconds, from `/proc` (Linux only; undefined
 * elsewhere or when the process is gone). Clock-tick resolution (usually 10 ms).
 *
 * @example
 * ```ts
 * const ms = pidCpuMs(Deno.pid);
 * ```
 */
export function pidCpuMs(pid: number): number | undefined {
  try {
    const fields = statFields(pid); // fields 14 and 15: utime, stime
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return undefined;
  }
}

/**
 * A memory figure of `/proc/<pid>/status` in bytes (`VmRSS`, `RssAnon`, `RssFile`, ...), or undefined.
 *
 * @example
 * ```ts
 * const own = pidStatusBytes(Deno.pid, "RssAnon");
 * ```
 */
export function pidStatusBytes(pid: number, field: string): number | undefined {
  try {
    const status = readProc(`/proc/${pid}/status`);
    const m = status.match(new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, "m"));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Resident memory of a process in bytes, or undefined. */
export function pidRss(pid: number): number | undefined {
  return pidStatusBytes(pid, "VmRSS");
}
