/**
 * Outputs that appear whole or not at all: a tool writes into a hidden temporary path beside the target
 * (same filesystem), which is renamed into place only on success. Ctrl-C or `kill` stops the tool and removes
 * the temporary path; leftovers of a process killed with SIGKILL are swept by the next run.
 *
 * @module
 */
import { dirname, join } from "node:path";
import { exists, removeAll } from "../util/fs.ts";
import { pidAlive } from "../util/process.ts";
import { UserError } from "../util/errors.ts";
import { run } from "../util/run.ts";

/** What {@linkcode withTempOutput} hands to the work function. */
export interface TempOutput {
  /** A hidden temporary directory beside the target, removed afterwards. */
  dir: string;
  /** Aborted when the user interrupts (SIGINT, SIGTERM, SIGHUP): pass to `run()`. */
  signal: AbortSignal;
}

const TEMP = /^\.llama-mgr-(convert|quantize)-(\d+)-[0-9a-f]+\.tmp$/;

/** Removes temporary outputs in `dir` whose process is gone (killed with SIGKILL, power loss). */
export async function sweepStaleTemps(dir: string): Promise<string[]> {
  const removed: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      const m = e.name.match(TEMP);
      if (m && Number(m[2]) !== Deno.pid && !pidAlive(Number(m[2]))) {
        await removeAll(join(dir, e.name));
        removed.push(e.name);
      }
    }
  } catch { /* no dir yet */ }
  return removed;
}

/**
 * Runs `fn` with a temporary directory in `outDir`; on success `fn` returns the files (inside the temporary
 * directory) to move and their final paths. Interrupted runs throw a {@linkcode UserError} with exit code 130.
 *
 * @example
 * ```ts ignore
 * const [out] = await withTempOutput("/models", "quantize", async ({ dir, signal }) => {
 *   await run(["llama-quantize", "in.gguf", `${dir}/out.gguf`, "Q4_K_M"], { signal });
 *   return [{ from: `${dir}/out.gguf`, to: "/models/out.gguf" }];
 * });
 * ```
 */
export async function withTempOutput(
  outDir: string,
  kind: "convert" | "quantize",
  fn: (t: TempOutput) => Promise<{ from: string; to: string }[]>,
): Promise<string[]> {
  await Deno.mkdir(outDir, { recursive: true });
  await sweepStaleTemps(outDir);
  const rand = crypto.getRandomValues(new Uint8Array(4)).reduce(
    (s, b) => s + b.toString(16).padStart(2, "0"),
    "",
  );
  const dir = join(outDir, `.llama-mgr-${kind}-${Deno.pid}-${rand}.tmp`);
  await Deno.mkdir(dir);
  const ac = new AbortController();
  let caught: Deno.Signal | undefined;
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM", "SIGHUP"];
  const handlers = signals.map((s) => {
    const h = () => {
      caught ??= s;
      ac.abort();
    };
    try {
      Deno.addSignalListener(s, h);
    } catch { /* not supported on this platform */ }
    return [s, h] as const;
  });
  try {
    let moves: { from: string; to: string }[];
    try {
      moves = await fn({ dir, signal: ac.signal });
    } catch (err) {
      if (caught) {
        throw new UserError(`${kind} interrupted (${caught}); no output was written`, { exitCode: 130 });
      }
      throw err;
    }
    if (caught) {
      throw new UserError(`${kind} interrupted (${caught}); no output was written`, { exitCode: 130 });
    }
    for (const m of moves) {
      await Deno.mkdir(dirname(m.to), { recursive: true });
      await Deno.rename(m.from, m.to);
    }
    return moves.map((m) => m.to);
  } finally {
    for (const [s, h] of handlers) {
      try {
        Deno.removeSignalListener(s, h);
      } catch { /* ignore */ }
    }
    await removeAll(dir);
  }
}

/** Free bytes on the filesystem holding `dir` (via `df -Pk`, Deno has no statfs); undefined if unknown. */
export async function freeBytes(dir: string): Promise<number | undefined> {
  let probe = dir;
  while (!(await exists(probe)) && dirname(probe) !== probe) probe = dirname(probe);
  try {
    const r = await run(["df", "-Pk", probe], { check: false, timeoutMs: 10_000 });
    const line = r.stdout.trim().split("\n").pop() ?? "";
    const avail = Number(line.trim().split(/\s+/)[3]);
    return Number.isFinite(avail) ? avail * 1024 : undefined;
  } catch {
    return undefined;
  }
}
