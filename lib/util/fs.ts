/**
 * File helpers: atomic writes (temp file + rename), JSON state files, directory sizes.
 *
 * @module
 */
import { dirname } from "node:path";
import { createHash } from "node:crypto";
import { run } from "./run.ts";

/**
 * Writes a file atomically: the data goes to a temp file in the same directory, is flushed, and is renamed
 * over the target, so a reader sees the old or the new content, never half of it.
 *
 * @example
 * ```ts
 * await writeFileAtomic("/tmp/state.json", JSON.stringify({ ok: true }));
 * ```
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  await Deno.mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.${Deno.pid}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const f = await Deno.open(tmp, { write: true, create: true, truncate: true });
  try {
    let off = 0;
    while (off < bytes.length) off += await f.write(bytes.subarray(off));
    await f.sync();
  } finally {
    f.close();
  }
  try {
    await Deno.rename(tmp, path);
  } catch (err) {
    await Deno.remove(tmp).catch(() => {});
    throw err;
  }
}

/** Writes a value as pretty JSON, atomically. */
export async function writeJsonAtomic(path: string, value: unknown): Promise<void> {
  await writeFileAtomic(path, JSON.stringify(value, null, 2) + "\n");
}

/** Reads a JSON file; returns undefined when it does not exist. */
export async function readJson<T = unknown>(path: string): Promise<T | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
  return JSON.parse(text) as T;
}

/** True when the path exists (file, directory or link target). */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}

/** Removes a path recursively; no error when it is absent. */
export async function removeAll(path: string): Promise<void> {
  await Deno.remove(path, { recursive: true }).catch((err) => {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  });
}

/** Total size in bytes of the files below a directory (links not followed). */
export async function dirSize(path: string): Promise<number> {
  let total = 0;
  const walk = async (p: string) => {
    let entries: AsyncIterable<Deno.DirEntry>;
    try {
      entries = Deno.readDir(p);
    } catch {
      return;
    }
    try {
      for await (const e of entries) {
        const full = `${p}/${e.name}`;
        if (e.isDirectory) await walk(full);
        else if (e.isFile) total += (await Deno.lstat(full)).size;
      }
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
  };
  await walk(path);
  return total;
}

/** Expands a leading `~` to the home directory. */
export function expandHome(path: string): string {
  if (path === "~" || path.startsWith("~/")) return (Deno.env.get("HOME") ?? "") + path.slice(1);
  return path;
}

/** Formats a byte count as e.g. `1.2 GiB`. */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(v >= 100 ? 0 : 1)} ${units[i]}`;
}

/**
 * The SHA-256 of a file in hex, read in 1 MiB blocks (a model of many gigabytes is never held in memory).
 *
 * @example
 * ```ts ignore
 * const hex = await sha256File("model.gguf");
 * ```
 */
export async function sha256File(path: string, signal?: AbortSignal): Promise<string> {
  const hash = createHash("sha256");
  using f = await Deno.open(path, { read: true });
  const buf = new Uint8Array(1 << 20);
  while (true) {
    signal?.throwIfAborted();
    const n = await f.read(buf);
    if (n === null) break;
    hash.update(buf.subarray(0, n));
  }
  return hash.digest("hex");
}

/**
 * Free bytes on the filesystem holding `dir` (from `df -Pk`), or undefined when unknown.
 *
 * @example
 * ```ts ignore
 * const free = await freeBytes("/data/models");
 * ```
 */
export async function freeBytes(dir: string): Promise<number | undefined> {
  try {
    const r = await run(["df", "-Pk", dir], { check: false });
    const line = r.stdout.trim().split("\n").pop() ?? "";
    const avail = Number(line.split(/\s+/)[3]);
    return Number.isFinite(avail) ? avail * 1024 : undefined;
  } catch {
    return undefined;
  }
}
