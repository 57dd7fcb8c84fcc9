/**
 * Server logs: one file per server name in the logs dir, rotated when a server starts, read by lines, followed
 * like `tail -f`, and searched for llama-server's own reason when it fails.
 *
 * @module
 */
import { join } from "node:path";
import type { Paths } from "../config/paths.ts";
import { exists } from "../util/fs.ts";

/** Rotate a log at start when it is larger than this. */
export const ROTATE_BYTES = 10 * 1024 * 1024;
/** How many rotated logs to keep (`.1` … `.3`). */
export const KEEP_ROTATED = 3;

/** The log file of a server. */
export function serverLogPath(paths: Paths, name: string): string {
  return join(paths.logsDir, `server-${name}.log`);
}

/** Options for {@linkcode rotateLog}. */
export interface RotateOptions {
  /** Rotate when the log is larger than this (default {@linkcode ROTATE_BYTES}). */
  maxBytes?: number;
  /** How many rotated files to keep (default {@linkcode KEEP_ROTATED}). */
  keep?: number;
  /**
   * Copy the log to `.1` and truncate it in place instead of renaming it: for a log a running llama-server
   * still writes to (it appends, so its next line lands at the start of the emptied file).
   */
  copyTruncate?: boolean;
}

/**
 * Rotates `path` to `path.1` (older ones move up to `.2` … `.keep`, the oldest is dropped) when it is over
 * `maxBytes`. Returns true when it rotated.
 *
 * @example
 * ```ts ignore
 * await rotateLog("/data/logs/server-chat.log", { maxBytes: 10 << 20, copyTruncate: true });
 * ```
 */
export async function rotateLog(path: string, options: RotateOptions = {}): Promise<boolean> {
  const { maxBytes = ROTATE_BYTES, keep = KEEP_ROTATED } = options;
  const size = await Deno.stat(path).then((s) => s.size).catch(() => 0);
  if (size <= maxBytes) return false;
  await Deno.remove(`${path}.${keep}`).catch(() => {});
  for (let i = keep - 1; i >= 1; i--) {
    if (await exists(`${path}.${i}`)) await Deno.rename(`${path}.${i}`, `${path}.${i + 1}`);
  }
  if (options.copyTruncate) {
    await Deno.copyFile(path, `${path}.1`);
    await Deno.truncate(path, 0);
  } else {
    await Deno.rename(path, `${path}.1`);
  }
  return true;
}

/** Options for {@linkcode startLogRotation}. */
export interface LogRotationOptions {
  /** The servers whose logs to look after (read at every check). */
  servers: () => Iterable<string>;
  /** How often to check, in ms (default 60 s). */
  everyMs?: number;
  /** Rotate a log past this size (default {@linkcode ROTATE_BYTES}). */
  maxBytes?: number;
}

/**
 * Rotates the logs of running servers as they grow, for a long-lived owner such as the daemon: llama-server logs
 * every request, and a daemon runs for weeks. A running server keeps writing to the same file, so each log is
 * copied to `.1` and truncated in place. The timer does not keep the process alive.
 *
 * @example
 * ```ts ignore
 * const rotation = startLogRotation(paths, { servers: () => ["chat"] });
 * rotation.stop();
 * ```
 */
export function startLogRotation(paths: Paths, options: LogRotationOptions): { stop(): void } {
  const timer = setInterval(() => {
    for (const name of options.servers()) {
      rotateLog(serverLogPath(paths, name), { copyTruncate: true, maxBytes: options.maxBytes }).catch(
        () => {},
      );
    }
  }, options.everyMs ?? 60_000);
  Deno.unrefTimer(timer);
  return { stop: () => clearInterval(timer) };
}

/** The last `lines` lines of a file (reads at most the last 4 MiB). */
export async function tailFile(path: string, lines: number): Promise<string[]> {
  let f: Deno.FsFile;
  try {
    f = await Deno.open(path);
  } catch {
    return [];
  }
  try {
    const size = (await f.stat()).size;
    const start = Math.max(0, size - 4 * 1024 * 1024);
    await f.seek(start, Deno.SeekMode.Start);
    const buf = new Uint8Array(size - start);
    let off = 0;
    while (off < buf.length) {
      const n = await f.read(buf.subarray(off));
      if (n === null) break;
      off += n;
    }
    return lastLines(buf.subarray(0, off), lines);
  } finally {
    f.close();
  }
}

/** Like {@linkcode tailFile}, synchronously and from at most the last 64 KiB (for status checks). */
export function tailFileSync(path: string, lines: number): string[] {
  let f: Deno.FsFile;
  try {
    f = Deno.openSync(path);
  } catch {
    return [];
  }
  try {
    const size = f.statSync().size;
    const start = Math.max(0, size - 64 * 1024);
    f.seekSync(start, Deno.SeekMode.Start);
    const buf = new Uint8Array(size - start);
    let off = 0;
    while (off < buf.length) {
      const n = f.readSync(buf.subarray(off));
      if (n === null) break;
      off += n;
    }
    return lastLines(buf.subarray(0, off), lines);
  } finally {
    f.close();
  }
}

function lastLines(bytes: Uint8Array, lines: number): string[] {
  const all = new TextDecoder().decode(bytes).split("\n");
  if (all.at(-1) === "") all.pop();
  return lines <= 0 ? [] : all.slice(-lines);
}

/**
 * The last `lines` lines of a log, reaching into the rotated `.1` file when the current one is shorter.
 */
export async function tailLog(path: string, lines: number): Promise<string[]> {
  const cur = await tailFile(path, lines);
  if (cur.length >= lines) return cur;
  const older = await tailFile(`${path}.1`, lines - cur.length);
  return [...older, ...cur];
}

/** How the log of a server that died ends: its last non-empty lines since it was started. */
export function logEnding(path: string, count = 3): string[] {
  const lines = tailFileSync(path, 200);
  const from = lines.findLastIndex((l) => l.startsWith(START_MARKER));
  return lines.slice(from + 1).filter((l) => l.trim().length > 0).slice(-count).map(stripPrefix);
}

function stripPrefix(line: string): string {
  return line.replace(/^\d+\.\d+\.\d+\.\d+ [A-Z] /, "").trim();
}

/** Marker written to the log before each start, so a failure reason is looked for in this run only. */
export const START_MARKER = "=== llama-mgr: starting";

const REASON = [
  /error:/i,
  /\berror\b/i,
  /failed/i,
  /invalid argument/i,
  /unknown argument/i,
  /couldn't bind/i,
  /exception/i,
  /not found/i,
  /terminate called/i,
  /abort/i,
];

/**
 * llama-server's own reason for a failure, from the lines it logged in its latest run: the lines that say
 * error/failed/invalid, else the last lines.
 */
export function failureReason(logLines: string[]): string {
  const from = logLines.findLastIndex((l) => l.startsWith(START_MARKER));
  const run = logLines.slice(from + 1).filter((l) => l.trim().length > 0);
  const hits = run.filter((l) =>
    REASON.some((re) => re.test(l)) && !/^\s*(main|srv|load|print_info): .*=/.test(l)
  );
  const pick = (hits.length ? hits : run).slice(-6);
  return pick.map(stripPrefix).join("\n") || "(no output)";
}

/**
 * Follows a log file like `tail -f`, calling `onText` with new text until the signal aborts.
 *
 * @example
 * ```ts ignore
 * const ac = new AbortController();
 * await followFile("/tmp/x.log", (t) => console.log(t), ac.signal);
 * ```
 */
export async function followFile(
  path: string,
  onText: (text: string) => void,
  signal: AbortSignal,
): Promise<void> {
  const stat = () =>
    Deno.stat(path).then((s) => ({ size: s.size, ino: s.ino }), () => ({ size: 0, ino: null }));
  let { size: pos, ino } = await stat();
  const dec = new TextDecoder();
  while (!signal.aborted) {
    const now = await stat();
    const size = now.size;
    // Truncated in place, or a new file after a rotation by rename: read the new one from its start.
    if (size < pos || now.ino !== ino) pos = 0;
    ino = now.ino;
    if (size > pos) {
      const f = await Deno.open(path);
      try {
        await f.seek(pos, Deno.SeekMode.Start);
        const buf = new Uint8Array(size - pos);
        let off = 0;
        while (off < buf.length) {
          const n = await f.read(buf.subarray(off));
          if (n === null) break;
          off += n;
        }
        pos += off;
        onText(dec.decode(buf.subarray(0, off), { stream: true }));
      } finally {
        f.close();
      }
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}
