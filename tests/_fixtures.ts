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

/** The SHA-256 of bytes in hex (as a blob digest or a GGUF's Ollama digest carries it). */
export async function sha256Hex(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  return [...new Uint8Array(await crypto.subtle.digest("SHA-256", bytes))]
    .map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** The SHA-256 of a file in hex. */
export async function sha256File(path: string): Promise<string> {
  return sha256Hex(await Deno.readFile(path));
}

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
    // A test may set HOME; Deno's own cache stays where it is, so npm packages are not fetched again.
    env: {
      NO_COLOR: "1",
      DENO_DIR: Deno.env.get("DENO_DIR") ?? `${Deno.env.get("HOME")}/.cache/deno`,
      ...options.env,
    },
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

// Imports for minilmGguf (kept here, with it; ES imports are hoisted).
import { join as joinPath } from "node:path";
import * as shared from "../scripts/fixtures.ts";
import { exists as fileExists } from "../lib/util/fs.ts";
import { withLock as withFileLock } from "../lib/util/lock.ts";
import { ensureVenv } from "../lib/python/venv.ts";
import { run as runCommand } from "../lib/util/run.ts";

/**
 * all-MiniLM-L6-v2 converted to GGUF f16 by the shared instance's own convert_hf_to_gguf.py (in a uv
 * environment under the fixtures cache, torch from /opt/wheels), cached as
 * `<fixtures>/models/all-minilm-l6-v2-f16.gguf`; made once, under a lock, written via a temp file.
 */
export async function minilmGguf(): Promise<string> {
  const out = joinPath(shared.fixturesDir(), "models", "all-minilm-l6-v2-f16.gguf");
  if (await fileExists(out)) return out;
  const folder = await shared.minilmDir();
  const { instance } = await shared.testInstance();
  return await withFileLock(
    joinPath(shared.fixturesDir(), "minilm-gguf.lock"),
    "MiniLM GGUF fixture",
    async () => {
      if (await fileExists(out)) return out;
      const env = await ensureVenv({
        venvDir: joinPath(shared.fixturesDir(), "venv-convert"),
        scriptsDir: instance.pythonDir!,
        python: { torch: "cpu", torch_version: "2.13.0", find_links: "/opt/wheels", offline: false },
        quiet: true,
      });
      const tmp = `${out}.partial-${Deno.pid}`;
      try {
        await runCommand([
          env.python,
          joinPath(instance.pythonDir!, "convert_hf_to_gguf.py"),
          folder,
          "--outfile",
          tmp,
          "--outtype",
          "f16",
        ], { tailLines: 30, env: { HF_HUB_OFFLINE: "1" } });
        await Deno.rename(tmp, out);
      } finally {
        await Deno.remove(tmp).catch(() => {});
      }
      return out;
    },
    { wait: true },
  );
}
