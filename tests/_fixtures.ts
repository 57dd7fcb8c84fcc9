/**
 * Shared fixtures for tests: real models and one real llama.cpp build, cached outside the repo.
 *
 * @module
 */
export {
  bundlePath,
  fixturesDir,
  minilmDir,
  smolModelPath,
  TEST_TARGETS,
  testInstance,
  testPaths,
} from "../scripts/fixtures.ts";

/** A fresh temporary directory, removed by the returned function. */
export async function tempDir(
  prefix = "llama-mgr-test-",
): Promise<{ path: string; cleanup: () => Promise<void> }> {
  const path = await Deno.makeTempDir({ prefix });
  return { path, cleanup: () => Deno.remove(path, { recursive: true }).catch(() => {}) };
}

/** Runs the CLI as a user would (`deno run -A cli/main.ts ...`), returning exit code and output. */
export async function cli(
  args: string[],
  options: { env?: Record<string, string>; stdin?: string; cwd?: string } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const main = new URL("../cli/main.ts", import.meta.url).pathname;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", main, ...args],
    env: { NO_COLOR: "1", ...options.env },
    cwd: options.cwd,
    stdin: options.stdin !== undefined ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (options.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(options.stdin));
    await w.close();
  }
  const out = await child.output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}
