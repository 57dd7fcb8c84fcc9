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
import { binaryName, RUNTIME_UNAVAILABLE } from "../scripts/compile.ts";

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

/**
 * The ways a user runs llama-mgr, which every CLI test can run against: `deno run` from source (the default),
 * the command `deno task install-cli` puts on the PATH, or the executable `deno task compile` builds. Chosen
 * with LLAMA_MGR_CLI; LLAMA_MGR_CLI_EXE names an installed or compiled llama-mgr already made (else one is
 * made once per test process in a temporary folder).
 */
export const CLI_MODES = ["source", "installed", "compiled"] as const;

/** One of {@link CLI_MODES}. */
export type CliMode = typeof CLI_MODES[number];

/** The mode LLAMA_MGR_CLI asks for. */
export function cliMode(): CliMode {
  const m = Deno.env.get("LLAMA_MGR_CLI") || "source";
  if (!(CLI_MODES as readonly string[]).includes(m)) {
    throw new Error(`LLAMA_MGR_CLI=${m}: expected one of ${CLI_MODES.join(", ")}`);
  }
  return m as CliMode;
}

/** How a mode is run: its command line before llama-mgr's own arguments, or why it cannot run here. */
export type CliRunner = { argv: string[]; unavailable?: undefined } | {
  argv?: undefined;
  unavailable: string;
};

const REPO = new URL("..", import.meta.url).pathname;
const runners = new Map<CliMode, Promise<CliRunner>>();

/** Makes (once per process) what a mode runs: nothing for source, a `deno install`, a `deno compile`. */
export function cliRunner(mode: CliMode = cliMode()): Promise<CliRunner> {
  let r = runners.get(mode);
  if (!r) runners.set(mode, r = makeRunner(mode));
  return r;
}

async function makeRunner(mode: CliMode): Promise<CliRunner> {
  if (mode === "source") return { argv: [Deno.execPath(), "run", "-A", `${REPO}cli/main.ts`] };
  const given = Deno.env.get("LLAMA_MGR_CLI_EXE");
  if (given) return { argv: [given] };
  const root = await Deno.makeTempDir({ prefix: `llama-mgr-${mode}-` });
  globalThis.addEventListener("unload", () => {
    try {
      Deno.removeSync(root, { recursive: true });
    } catch { /* already gone */ }
  });
  const args = mode === "installed"
    ? ["task", "install-cli"]
    : ["run", "-A", `${REPO}scripts/compile.ts`, "--target", Deno.build.target, "--out-dir", root];
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: REPO,
    env: { DENO_INSTALL_ROOT: root },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  if (mode === "compiled" && out.code === RUNTIME_UNAVAILABLE) {
    return { unavailable: stderr.split("\n").find((l) => l.startsWith("error: llama-mgr-"))!.slice(7) };
  }
  if (out.code !== 0) throw new Error(`making the ${mode} llama-mgr failed:\n${stderr}`);
  return {
    argv: [mode === "installed" ? `${root}/bin/llama-mgr` : `${root}/${binaryName(Deno.build.target)}`],
  };
}

/** The command line that runs llama-mgr in the chosen mode; an error saying why when it cannot run here. */
export async function cliArgv(mode: CliMode = cliMode()): Promise<string[]> {
  const r = await cliRunner(mode);
  if (r.unavailable !== undefined) throw new Error(`the ${mode} llama-mgr cannot run here: ${r.unavailable}`);
  return r.argv;
}

/**
 * The environment a CLI test runs llama-mgr with: no colour, Deno's own cache where it is (a test may set
 * HOME; npm packages are then not fetched again), and for the installed command, `deno` on the PATH (its
 * launcher runs `deno run`) after whatever PATH the test gives.
 */
export function cliEnv(env: Record<string, string> = {}, mode: CliMode = cliMode()): Record<string, string> {
  const out: Record<string, string> = {
    NO_COLOR: "1",
    DENO_DIR: Deno.env.get("DENO_DIR") ?? `${Deno.env.get("HOME")}/.cache/deno`,
    ...env,
  };
  if (mode === "installed") {
    out.PATH = `${env.PATH ?? Deno.env.get("PATH") ?? ""}:${Deno.execPath().replace(/\/[^/]+$/, "")}`;
  }
  return out;
}

/** Runs the CLI as a user would (in the mode LLAMA_MGR_CLI chooses), returning exit code and output. */
export async function cli(
  args: string[],
  options: { env?: Record<string, string>; stdin?: string; cwd?: string } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const [exe, ...pre] = await cliArgv();
  const child = new Deno.Command(exe, {
    args: [...pre, ...args],
    env: cliEnv(options.env),
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
