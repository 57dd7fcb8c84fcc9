/**
 * Cross-process locks on files: one operation at a time per resource (an instance, a server name), with a
 * clear message naming the holder, and stale locks of dead processes taken over.
 *
 * @module
 */
import { dirname } from "node:path";
import { UserError } from "./errors.ts";
import { pidAlive } from "./process.ts";

/** What a lock file records about its holder. */
export interface LockInfo {
  /** Process id of the holder. */
  pid: number;
  /** What the holder is doing, e.g. `install of 'cpu'`. */
  what: string;
  /** When it took the lock (ISO time). */
  since: string;
}

/** Options for {@linkcode withLock}. */
export interface LockOptions {
  /** Wait for the holder instead of failing (default false). */
  wait?: boolean;
  /** Give up waiting after this many ms (default 1 hour). */
  timeoutMs?: number;
  /** Called once when we start waiting. */
  onWait?: (holder: LockInfo) => void;
  /** Stop waiting when this aborts (rejecting with its reason). */
  signal?: AbortSignal;
}

async function tryAcquire(path: string, info: LockInfo): Promise<LockInfo | undefined> {
  await Deno.mkdir(dirname(path), { recursive: true });
  // Written whole to a temp file, then hard-linked into place: the lock appears with its holder already in
  // it, so no one ever reads a half-written (empty) lock and takes it for a stale one.
  const tmp = `${path}.${Deno.pid}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  await Deno.writeTextFile(tmp, JSON.stringify(info));
  try {
    await Deno.link(tmp, path);
    return undefined;
  } catch (err) {
    if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
  } finally {
    await Deno.remove(tmp).catch(() => {});
  }
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    // Released between our link and our read: just try again, never remove what we did not read.
    if (err instanceof Deno.errors.NotFound) return { pid: 0, what: "", since: "" };
    throw err;
  }
  let holder: LockInfo | undefined;
  try {
    holder = JSON.parse(text);
  } catch {
    holder = undefined;
  }
  if (!holder || !pidAlive(holder.pid)) {
    // Stale: its holder died (or, from an old version, it is unreadable). Remove it only if it is still the
    // very lock we read, so a lock someone took meanwhile is left alone.
    const again = await Deno.readTextFile(path).catch(() => undefined);
    if (again === text) await Deno.remove(path).catch(() => {});
    return { pid: 0, what: "", since: "" };
  }
  return holder;
}

/**
 * Runs `fn` while holding the lock file at `path`.
 *
 * @example
 * ```ts
 * await withLock("/tmp/x.lock", "install of 'cpu'", async () => {});
 * ```
 */
export async function withLock<T>(
  path: string,
  what: string,
  fn: () => Promise<T>,
  options: LockOptions = {},
): Promise<T> {
  const info: LockInfo = { pid: Deno.pid, what, since: new Date().toISOString() };
  const deadline = Date.now() + (options.timeoutMs ?? 3_600_000);
  let told = false;
  while (true) {
    options.signal?.throwIfAborted();
    const holder = await tryAcquire(path, info);
    if (!holder) break;
    if (holder.pid === 0) continue; // stale lock removed
    if (!options.wait || Date.now() > deadline) {
      throw new UserError(`${holder.what} is running (pid ${holder.pid}, since ${holder.since})`, {
        hint: "wait for it to finish, or stop that process",
      });
    }
    if (!told) {
      options.onWait?.(holder);
      told = true;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  try {
    return await fn();
  } finally {
    await Deno.remove(path).catch(() => {});
  }
}
