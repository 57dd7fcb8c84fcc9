/**
 * Writing a model file safely: the tool writes a hidden temp file next to the target, which is renamed only
 * on success; a failure, Ctrl-C or kill leaves no partial output.
 *
 * @module
 */
import { basename, dirname, join } from "node:path";
import { removeAll } from "../util/fs.ts";
import { UserError } from "../util/errors.ts";
import { pidAlive } from "../util/process.ts";

/** The temp path for a target: hidden and not ending in .gguf, so no index picks it up. */
export function partialPath(target: string): string {
  return join(dirname(target), `.${basename(target)}.partial-${Deno.pid}`);
}

/**
 * Runs `produce(tmp)`, then renames `tmp` to `target`. On failure or SIGINT/SIGTERM the temp file is removed
 * (the child gets the signal too) and the error carries the tool's reason.
 */
export async function writeThroughTemp<T>(
  target: string,
  produce: (tmp: string, signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const tmp = partialPath(target);
  await removeStalePartials(target);
  const ac = new AbortController();
  let interrupted: Deno.Signal | undefined;
  const onSignal = (sig: Deno.Signal) => () => {
    interrupted = sig;
    ac.abort();
  };
  const sigint = onSignal("SIGINT");
  const sigterm = onSignal("SIGTERM");
  Deno.addSignalListener("SIGINT", sigint);
  Deno.addSignalListener("SIGTERM", sigterm);
  try {
    const result = await produce(tmp, ac.signal);
    if (interrupted) throw new UserError(`interrupted (${interrupted}); nothing was written`);
    await Deno.rename(tmp, target);
    return result;
  } catch (err) {
    await removeAll(tmp);
    if (interrupted) {
      throw new UserError(
        `interrupted (${interrupted}); the partial output was removed, nothing was written`,
        {
          exitCode: 130,
        },
      );
    }
    throw err;
  } finally {
    Deno.removeSignalListener("SIGINT", sigint);
    Deno.removeSignalListener("SIGTERM", sigterm);
  }
}

/** Removes temp files of earlier runs for the same target whose process is gone (after a kill -9). */
export async function removeStalePartials(target: string): Promise<void> {
  const prefix = `.${basename(target)}.partial-`;
  try {
    for await (const e of Deno.readDir(dirname(target))) {
      if (!e.name.startsWith(prefix)) continue;
      // `.NAME.partial-PID` and its companions (`.NAME.partial-PID.metadata.json`).
      const pid = Number.parseInt(e.name.slice(prefix.length), 10);
      if (!pidAlive(pid)) await removeAll(join(dirname(target), e.name));
    }
  } catch { /* no folder yet */ }
}
