/**
 * Python environments for tests (PyPI `gguf`, transformers...), made with uv under the fixtures cache, once.
 *
 * @module
 */
import { join } from "node:path";
import { fixturesDir } from "./_fixtures.ts";
import { exists } from "../lib/util/fs.ts";
import { withLock } from "../lib/util/lock.ts";
import { run } from "../lib/util/run.ts";

/**
 * A uv virtual environment named `name` with `packages` installed; returns its python.
 * Extra uv arguments (e.g. `--find-links /opt/wheels`) go to `uv pip install`.
 */
export async function testVenv(name: string, packages: string[], uvArgs: string[] = []): Promise<string> {
  const dir = join(fixturesDir(), `venv-${name}`);
  const python = join(dir, "bin", "python");
  const stamp = join(dir, ".llama-mgr-test-packages");
  const want = JSON.stringify([packages, uvArgs]);
  if (await exists(python) && (await Deno.readTextFile(stamp).catch(() => "")) === want) return python;
  await Deno.mkdir(fixturesDir(), { recursive: true });
  return await withLock(join(fixturesDir(), `venv-${name}.lock`), `test venv ${name}`, async () => {
    if (await exists(python) && (await Deno.readTextFile(stamp).catch(() => "")) === want) return python;
    if (!(await exists(python))) await run(["uv", "venv", "-q", "--seed", dir]);
    await run(["uv", "pip", "install", "-q", "--python", python, ...uvArgs, ...packages]);
    await Deno.writeTextFile(stamp, want);
    return python;
  }, { wait: true });
}

/** Runs a Python script file with arguments and returns its stdout. */
export async function python(py: string, script: string, args: string[] = []): Promise<string> {
  return (await run([py, script, ...args], { tailLines: 40 })).stdout;
}
