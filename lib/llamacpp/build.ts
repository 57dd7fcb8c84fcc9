/**
 * Configure and build llama.cpp with cmake and ninja, with `[n/N]` progress from ninja's output, then stage
 * the binaries and Python scripts into a release folder and check that `llama-server --version` runs.
 *
 * @module
 */
import { join } from "node:path";
import { type BuildSpec, configureCommand, unityIncludePath, unityIncludeText, usesUnity } from "./cmake.ts";
import { archEnv } from "./cmake.ts";
import { CommandError, run, shellQuote } from "../util/run.ts";
import { exists, removeAll, writeFileAtomic } from "../util/fs.ts";
import { UserError } from "../util/errors.ts";
import type { Progress } from "../util/progress.ts";

/**
 * What a new instance builds: all that the first answer needs. Other tools are built the first time a command
 * needs one (`ensureTool`), which keeps a first install to a third of the compile work of the common tools.
 */
export const FIRST_TARGETS = ["llama-server"];

/** The common tools: what an instance recorded with no targets (as built before tools came on demand) has. */
export const DEFAULT_TARGETS = [
  "llama-server",
  "llama-cli",
  "llama-quantize",
  "ggml-rpc-server",
  "llama-bench",
  "llama-tokenize",
  "llama-gguf-split",
  "llama-perplexity",
  "llama-imatrix",
  "llama-mtmd-cli",
];

/** Older and newer names of the same target: the first that the build knows is used. */
const TARGET_ALIASES: Record<string, string[]> = {
  "ggml-rpc-server": ["ggml-rpc-server", "rpc-server"],
  "rpc-server": ["ggml-rpc-server", "rpc-server"],
};

/**
 * A build step that failed: which step, the last lines of its log and where the full log is.
 *
 * @example
 * ```ts ignore
 * try {
 *   await installInstance(paths, { name: "cuda", arch: "cuda" });
 * } catch (err) {
 *   if (err instanceof BuildStepError) console.error(`${err.step} failed; ${err.hint}`);
 * }
 * ```
 */
export class BuildStepError extends UserError {
  /** `configure`, `build` or `verify`. */
  step: string;
  /** Constructs it from the failing command's error. */
  constructor(step: string, err: CommandError | Error, logFile: string) {
    const tail = err instanceof CommandError ? err.tail.slice(-20).join("\n") : err.message;
    super(`${step} step failed${err instanceof CommandError ? ` (exit code ${err.code})` : ""}:\n${tail}`, {
      hint: `the full log is ${logFile}; the previous build (if any) is untouched and still in use`,
      cause: err,
    });
    this.step = step;
  }
}

/** Options for {@linkcode configureAndBuild}. */
export interface BuildOptions {
  /** llama.cpp checkout. */
  srcDir: string;
  /** cmake build tree (reused between builds of the same configuration). */
  buildDir: string;
  /** Backend, targets, extra args, ccache. */
  spec: BuildSpec;
  /** Targets to build; empty means DEFAULT_TARGETS, `["all"]` means everything cmake builds by default. */
  targets: string[];
  /** Parallel jobs (default: CPU count). */
  parallel?: number;
  /** The log file. */
  logFile: string;
  /** Directory for ccache's base_dir, so builds in other data dirs share cache hits. */
  ccacheBaseDir?: string;
  /** Progress display for configure and build. */
  progress?: (step: string) => Progress;
  /** Called with cmake's warnings that matter to the user (e.g. unused -D options). */
  onWarning?: (text: string) => void;
  /** With ccache: the file its per-compilation statistics go to (counted into the result's `ccache`). */
  ccacheStatsLog?: string;
}

/** What a build produced. */
export interface BuildResult {
  /** The configure command. */
  cmakeCommand: string[];
  /** The targets built (resolved names). */
  targets: string[];
  /** Seconds spent configuring and building. */
  seconds: number;
  /** Compilations ccache answered and those it compiled (with `ccacheStatsLog`). */
  ccache?: { hits: number; misses: number };
}

/**
 * Counts cache hits and misses in a ccache stats log (`CCACHE_STATSLOG`: a `# file` line, then its counters).
 *
 * @example
 * ```ts
 * ccacheLogCounts("# a.c\ncache_miss\n# a.c\ndirect_cache_hit\n"); // { hits: 1, misses: 1 }
 * ```
 */
export function ccacheLogCounts(text: string): { hits: number; misses: number } {
  let hits = 0;
  let misses = 0;
  for (const line of text.split("\n")) {
    const l = line.trim();
    if (l === "direct_cache_hit" || l === "preprocessed_cache_hit") hits++;
    else if (l === "cache_miss") misses++;
  }
  return { hits, misses };
}

/** Parses a ninja status line such as `[12/219] Building CXX object ...`. */
export function parseNinjaProgress(line: string): { n: number; total: number; text: string } | undefined {
  const m = line.match(/^\[(\d+)\/(\d+)\]\s*(.*)$/);
  if (!m) return undefined;
  return { n: Number(m[1]), total: Number(m[2]), text: m[3].replace(/^.*\s(\S+)$/, "$1").slice(-60) };
}

/**
 * Reads the main build's progress from ninja's output. A sub-build (an ExternalProject: the Vulkan backend
 * builds its shader generator with a ninja of its own) prints its own `[1/2]`, `[2/2]` into the same output;
 * taken as they come, a Vulkan build's bar jumped from 48 of 528 to 100% and back. A line counts when its
 * total is at least half the main build's (ninja may lower its total a little as it prunes steps).
 *
 * @example
 * ```ts
 * const progress = ninjaProgress();
 * progress("[48/528] Performing build step for 'vulkan-shaders-gen'")?.n; // 48
 * progress("[1/2] Building CXX object CMakeFiles/vulkan-shaders-gen.dir/vulkan-shaders-gen.cpp.o"); // undefined
 * ```
 */
export function ninjaProgress(): (line: string) => { n: number; total: number; text: string } | undefined {
  let main: { n: number; total: number } | undefined;
  return (line) => {
    const p = parseNinjaProgress(line);
    if (!p || (main && p.total < main.total / 2)) return undefined;
    main = p;
    return p;
  };
}

/** The variables cmake reports as "Manually-specified variables were not used by the project". */
export function unusedCmakeVariables(output: string): string[] {
  const m = output.match(
    /Manually-specified variables were not used by the project:\s*\n((?:\s*\n|\s+\S+\s*\n)+)/,
  );
  if (!m) return [];
  return m[1].split("\n").map((l) => l.trim()).filter(Boolean);
}

/** Resolves requested target names against what the configured build knows. */
export function resolveTargets(requested: string[], known: Set<string>): string[] {
  const out: string[] = [];
  const missing: string[] = [];
  for (const t of requested) {
    const candidates = TARGET_ALIASES[t] ?? [t];
    const hit = candidates.find((c) => known.has(c));
    if (hit) out.push(hit);
    else missing.push(t);
  }
  if (missing.length) {
    throw new UserError(
      `this llama.cpp version has no build target ${missing.map((m) => `'${m}'`).join(", ")}`,
      {
        hint: `known tool targets: ${
          [...known].filter((k) => k.startsWith("llama-") || k.includes("rpc")).sort()
            .join(", ")
        }`,
      },
    );
  }
  return [...new Set(out)];
}

/**
 * Writes the unity settings file that {@linkcode configureCommand} names for a unity build (atomically, and
 * only when it changed: cmake reconfigures for a newer one). Nothing for a build without unity.
 *
 * @example
 * ```ts ignore
 * await writeUnityInclude(buildDir, { arch: "cpu", unity: true });
 * await run(configureCommand(srcDir, buildDir, { arch: "cpu", unity: true }));
 * ```
 */
export async function writeUnityInclude(buildDir: string, spec: BuildSpec): Promise<void> {
  if (!usesUnity(spec)) return;
  const file = unityIncludePath(buildDir);
  if ((await Deno.readTextFile(file).catch(() => "")) !== unityIncludeText()) {
    await writeFileAtomic(file, unityIncludeText());
  }
}

/**
 * Configures (wiping the build tree when the configuration changed) and builds the targets.
 *
 * @example
 * ```ts ignore
 * await configureAndBuild({ srcDir, buildDir, spec: { arch: "cpu" }, targets: ["llama-server"], logFile });
 * ```
 */
export async function configureAndBuild(options: BuildOptions): Promise<BuildResult> {
  const started = performance.now();
  const { srcDir, buildDir, spec, logFile } = options;
  const cmd = configureCommand(srcDir, buildDir, spec);
  const env: Record<string, string> = { ...archEnv(spec.arch) };
  if (spec.ccache) {
    env.CCACHE_BASEDIR = options.ccacheBaseDir ?? srcDir;
    env.CCACHE_NOHASHDIR = "1";
  }
  // The stats log is per build, unlike `ccache -s`, which counts every build on the machine; it must not
  // reach the configure stamp, or each build would start from an empty tree.
  const buildEnv = spec.ccache && options.ccacheStatsLog
    ? { ...env, CCACHE_STATSLOG: options.ccacheStatsLog }
    : env;
  // A different configuration (arch, args) must not inherit cached cmake variables: start the tree anew.
  const stamp = join(buildDir, ".llama-mgr-configure");
  const wanted = JSON.stringify({ cmd: cmd.slice(5), env });
  const prev = await Deno.readTextFile(stamp).catch(() => undefined);
  if (prev !== wanted) await removeAll(buildDir);
  await writeUnityInclude(buildDir, spec);

  const configure = options.progress?.("configure");
  try {
    const r = await run(cmd, {
      logFile,
      env,
      onLine: (l) => configure?.update(0, undefined, l.slice(0, 60)),
    });
    const unused = unusedCmakeVariables(r.stdout + "\n" + r.stderr);
    if (unused.length) {
      options.onWarning?.(`cmake did not use ${unused.join(", ")}: check the spelling in --cmake-args`);
    }
  } catch (err) {
    await removeAll(stamp);
    throw new BuildStepError("configure", err as Error, logFile);
  }
  await Deno.writeTextFile(stamp, wanted);
  configure?.done("configured");

  const requested = options.targets.length ? options.targets : DEFAULT_TARGETS;
  let targets: string[] = [];
  if (!(requested.length === 1 && requested[0] === "all")) {
    const listed = await run(["ninja", "-C", buildDir, "-t", "targets", "all"], { check: true });
    const known = new Set(listed.stdout.split("\n").map((l) => l.split(":")[0].trim()).filter(Boolean));
    targets = resolveTargets(
      // Defaults that this version lacks are skipped; explicitly requested ones are errors.
      options.targets.length
        ? requested
        : requested.filter((t) => (TARGET_ALIASES[t] ?? [t]).some((c) => known.has(c))),
      known,
    );
  }
  const jobs = options.parallel ?? navigator.hardwareConcurrency ?? 2;
  const build = options.progress?.("build");
  const progress = ninjaProgress();
  try {
    await run(["ninja", "-C", buildDir, "-j", String(jobs), ...targets], {
      logFile,
      env: buildEnv,
      onLine: (l) => {
        const p = progress(l);
        if (p) build?.update(p.n, p.total, p.text);
      },
    });
  } catch (err) {
    throw new BuildStepError("build", err as Error, logFile);
  }
  let ccache: BuildResult["ccache"];
  if (spec.ccache && options.ccacheStatsLog) {
    const text = await Deno.readTextFile(options.ccacheStatsLog).catch(() => "");
    await removeAll(options.ccacheStatsLog);
    const counts = ccacheLogCounts(text);
    // Nothing logged: ccache was switched off (CCACHE_DISABLE) or had nothing to do.
    if (counts.hits + counts.misses) ccache = counts;
  }
  build?.done(ccache ? `built (ccache: ${ccache.hits} hits, ${ccache.misses} compiled)` : "built");
  return { cmakeCommand: cmd, targets, seconds: (performance.now() - started) / 1000, ccache };
}

/** Python entries of a llama.cpp checkout that the conversion scripts need. */
const PYTHON_ENTRIES = ["gguf-py", "conversion", "requirements", "requirements.txt", "pyproject.toml"];

/**
 * Copies the built binaries and llama.cpp's Python scripts into `releaseDir` (which must not exist), then
 * checks that `llama-server --version` runs. Returns the version line. On failure the release dir is removed.
 */
export async function stageRelease(
  buildDir: string,
  srcDir: string,
  releaseDir: string,
  logFile: string,
): Promise<string> {
  const staging = `${releaseDir}.staging`;
  await removeAll(staging);
  try {
    const bin = join(staging, "bin");
    await Deno.mkdir(bin, { recursive: true });
    for await (const e of Deno.readDir(join(buildDir, "bin"))) {
      // Shared builds (CUDA's backend modules) name their libraries through version symlinks.
      if (e.isSymlink) {
        await Deno.symlink(await Deno.readLink(join(buildDir, "bin", e.name)), join(bin, e.name));
        continue;
      }
      if (!e.isFile) continue;
      await Deno.copyFile(join(buildDir, "bin", e.name), join(bin, e.name));
      await Deno.chmod(join(bin, e.name), 0o755);
    }
    const py = join(staging, "python");
    await Deno.mkdir(py, { recursive: true });
    for await (const e of Deno.readDir(srcDir)) {
      if ((e.isFile && e.name.endsWith(".py")) || PYTHON_ENTRIES.includes(e.name)) {
        await run(["cp", "-R", join(srcDir, e.name), join(py, e.name)]);
      }
    }
    const server = join(bin, "llama-server");
    if (!(await exists(server))) throw new Error("the build produced no llama-server binary");
    let version: string;
    try {
      const r = await run([server, "--version"], { logFile, timeoutMs: 60_000 });
      const text = r.stdout + "\n" + r.stderr;
      version = text.match(/^version:\s*(.+)$/m)?.[1]?.trim() ?? "unknown";
    } catch (err) {
      throw new BuildStepError("verify", err as Error, logFile);
    }
    await removeAll(releaseDir);
    await Deno.rename(staging, releaseDir);
    return version;
  } catch (err) {
    await removeAll(staging);
    throw err;
  }
}

/** Display form of a configure command. */
export function describeCommand(cmd: string[]): string {
  return shellQuote(cmd);
}
