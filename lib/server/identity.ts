/**
 * Is a recorded pid still the llama-server we started? A pid can be dead, reused by another program after a
 * crash, or meaningless after a reboot; each is told apart so a server is never shown running when it is not.
 *
 * @module
 */
import { basename } from "node:path";
import { pidAlive, pidCmdline, pidStartTicks } from "../util/process.ts";

/** What a process check found. */
export type ProcessCheck =
  | { alive: true }
  | { alive: false; why: "no-pid" | "gone" | "reused" | "rebooted" };

/** What identifies the process a record started. */
export interface ProcessIdentity {
  /** Recorded pid. */
  pid?: number;
  /** Its start time in clock ticks since boot. */
  startTicks?: number;
  /** The boot it was started in (`/proc/sys/kernel/random/boot_id`). */
  bootId?: string;
  /** The port it was started with. */
  port: number;
  /** The binary it runs (default llama-server). */
  binary?: string;
}

let cachedBootId: string | undefined | null = null;

/** The id of the current boot (Linux), or undefined elsewhere. */
export function bootId(): string | undefined {
  if (cachedBootId === null) {
    try {
      cachedBootId = Deno.readTextFileSync("/proc/sys/kernel/random/boot_id").trim() || undefined;
    } catch {
      cachedBootId = undefined;
    }
  }
  return cachedBootId;
}

/**
 * Checks that the recorded process is alive and is our server: same boot, same start time, the recorded
 * binary (`llama-server` unless told), and `--port <port>` on its command line.
 *
 * @example
 * ```ts ignore
 * const c = checkProcess({ pid: 1234, startTicks: 5678, bootId: bootId(), port: 8081 });
 * if (!c.alive) console.log(c.why);
 * ```
 */
export function checkProcess(id: ProcessIdentity): ProcessCheck {
  if (!id.pid) return { alive: false, why: "no-pid" };
  const boot = bootId();
  if (id.bootId && boot && id.bootId !== boot) return { alive: false, why: "rebooted" };
  if (!pidAlive(id.pid)) return { alive: false, why: "gone" };
  const ticks = pidStartTicks(id.pid);
  if (id.startTicks !== undefined && ticks !== undefined && ticks !== id.startTicks) {
    return { alive: false, why: "reused" };
  }
  const cmd = pidCmdline(id.pid);
  if (cmd === undefined) return { alive: true }; // no /proc (macOS): the pid is all we have
  const portAt = cmd.indexOf("--port");
  // argv[0] is llama-server, or for a moment after spawning the `sh` about to exec it:
  // `sh -c SCRIPT sh LOGFILE /path/llama-server -m ... --port N`.
  const binary = basename(cmd[0] ?? "") === "sh" ? cmd[5] : cmd[0];
  const ours = basename(binary ?? "") === basename(id.binary ?? "llama-server") && portAt >= 0 &&
    cmd[portAt + 1] === String(id.port);
  return ours ? { alive: true } : { alive: false, why: "reused" };
}

/**
 * Whether a process this program started (and so knows the pid of) is still alive, one that has begun to exit
 * counting as gone (a server killed a moment ago refuses connections before it is a zombie): one read of
 * `/proc`, cheap enough for every request. A pid from a record of another run needs {@linkcode checkProcess},
 * which also tells a reused pid apart.
 *
 * @example
 * ```ts
 * processAlive(Deno.pid); // true
 * ```
 */
export function processAlive(pid: number): boolean {
  return pidAlive(pid, { exitingIsGone: true });
}
