/**
 * Installing and updating an instance: fetch the source, build it in a staging area, verify it, and only then
 * switch the instance to the new build. A failed step leaves the previous build in use.
 *
 * @module
 */
import { join } from "node:path";
import type { Paths } from "../config/paths.ts";
import type { BuildConfig, PythonOptions } from "../config/schema.ts";
import {
  type Arch,
  ARCHES,
  currentRelease,
  instanceDir,
  instanceLockPath,
  type InstanceRecord,
  readInstance,
  type ReleaseRecord,
  validateInstanceName,
  writeInstance,
} from "./instances.ts";
import { checkoutCommit, DEFAULT_REPO_URL, fetchSource, normalizeRepoUrl, resolveRef } from "./source.ts";
import { BuildStepError, configureAndBuild, DEFAULT_TARGETS, FIRST_TARGETS, stageRelease } from "./build.ts";
import { type Detected, detectGpu } from "./detect.ts";
import { switchRelease } from "./releases.ts";
import { withLock } from "../util/lock.ts";
import { exists } from "../util/fs.ts";
import { UserError } from "../util/errors.ts";
import { run, which } from "../util/run.ts";
import type { Progress } from "../util/progress.ts";
import { ensureVenv } from "../python/venv.ts";
import { checkoutPatched, validatePatches } from "./patches.ts";
import { preflightMachine, preflightSource } from "./toolchain.ts";
import { usesUnity } from "./cmake.ts";

/**
 * Options for {@linkcode installInstance}.
 *
 * @example
 * ```ts
 * const options: InstallOptions = { name: "rocm", arch: "rocm", gpuTargets: ["gfx1100"], ref: "b6000" };
 * ```
 */
export interface InstallOptions {
  /** Instance name. */
  name: string;
  /** Source: https URL, local path or git bundle (default: the instance's, else ggml-org/llama.cpp). */
  repoUrl?: string;
  /** Branch, tag or commit (default: the instance's, else the remote's HEAD). */
  ref?: string;
  /** Backend, or `auto` to detect (default: the instance's, else detected). */
  arch?: Arch | "auto";
  /** GPU targets (default: the config's for the instance or its backend, else the instance's, else
   * detected). */
  gpuTargets?: string[];
  /** cmake args of `--cmake-args`, after the config's (default: those the instance was given last). */
  cmakeArgs?: string[];
  /** Source patches by name, see PATCHES in patches.ts (default: the instance's). */
  patches?: string[];
  /** Targets (default: the config's for the instance, else the instance's, else FIRST_TARGETS of build.ts). */
  targets?: string[];
  /** The config's `build` section: per-backend profiles, per-instance entries, global cmake args, how many
   * earlier releases to keep (default: none of these, and one release kept). */
  build?: BuildConfig;
  /** Build jobs. */
  parallel?: number;
  /** Fetch and check out only. */
  pullOnly?: boolean;
  /** Build only when the source moved or the configuration changed. */
  updateOnly?: boolean;
  /** Skip the Python environment (default: the instance's earlier choice, else false). */
  ignorePython?: boolean;
  /** Python environment choices. */
  python?: PythonOptions;
  /** Use ccache when installed (default true). */
  ccache?: boolean;
  /** Compile the libraries llama-server links as unity batches (default: off when the config's `build.unity`
   * is false, else as the instance was built, else on). */
  unity?: boolean;
  /** Wait for another install of this instance instead of failing. */
  wait?: boolean;
  /** Status lines. */
  onInfo?: (text: string) => void;
  /** Progress displays for the long steps. */
  progress?: (step: string) => Progress;
  /** Print nothing from sub-steps. */
  quiet?: boolean;
}

/**
 * What {@linkcode installInstance} did.
 *
 * @example
 * ```ts ignore
 * const r: InstallResult = await installInstance(paths, { name: "cpu", updateOnly: true });
 * if (r.status === "up-to-date") console.log(`already at ${r.commit}`);
 * ```
 */
export interface InstallResult {
  /** `installed` (new), `updated` (rebuilt), `up-to-date` (nothing to do), `pulled` (fetched only). */
  status: "installed" | "updated" | "up-to-date" | "pulled";
  /** The instance's record after the operation (undefined after a pull of a new instance). */
  record?: InstanceRecord;
  /** The commit the source is at. */
  commit: string;
  /** The build log. */
  logFile: string;
  /** Seconds the whole operation took. */
  seconds: number;
}

function sameList(a: string[] = [], b: string[] = []): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** A kept release built the way asked for, with every wanted target: switching to it needs no build. */
function reusable(
  r: ReleaseRecord,
  want: Omit<ReleaseRecord, "version" | "builtAt" | "buildSeconds" | "binDir" | "cmakeCommand">,
): boolean {
  const has = r.targets.length ? r.targets : DEFAULT_TARGETS;
  const wanted = want.targets.length ? want.targets : DEFAULT_TARGETS;
  return r.commit === want.commit && (r.unity ?? false) === (want.unity ?? false) && r.arch === want.arch &&
    sameList(r.gpuTargets, want.gpuTargets) &&
    sameList(r.cmakeArgs, want.cmakeArgs) && sameList(r.patches, want.patches) &&
    (r.repoUrl === undefined || r.repoUrl === want.repoUrl) &&
    wanted.every((t) => has.includes(t));
}

/**
 * What a build of an instance uses, from the flags, then the config (the instance's entry in
 * `build.instances`, then its backend's `build.profiles` entry), then what the instance was built with, then
 * detection (`detect`, called only when the backend or a CUDA/ROCm instance's GPU targets are still unknown).
 * The config wins over the record, so an edit to it takes effect at the next update. cmake args add up: the
 * config's `build.cmake_args`, the profile's, the instance entry's, then the flag's (or those the last flag
 * gave). Unity batches: the flag, else off when the config's `build.unity` is false, else as the instance was
 * built, else on; never when the cmake args set `CMAKE_PROJECT_INCLUDE` or `CMAKE_UNITY_BUILD`.
 *
 * @example
 * ```ts
 * import { parseConfig } from "../config/load.ts";
 * const build = parseConfig({ build: { profiles: { cuda: { gpu_targets: ["8.6"], cmake_args: ["-DGGML_CUDA_F16=ON"] } } } }).build;
 * const s = await buildSettings("cuda", { arch: "cuda", build });
 * // s.gpuTargets: ["8.6"]; s.cmakeArgs: ["-DGGML_CUDA_F16=ON"]; s.targets: ["llama-server"]; s.unity: true
 * ```
 */
export async function buildSettings(
  name: string,
  options: Pick<InstallOptions, "arch" | "gpuTargets" | "cmakeArgs" | "targets" | "build" | "unity">,
  existing?: InstanceRecord,
  more: { detect?: () => Promise<Detected>; onInfo?: (text: string) => void } = {},
): Promise<{
  arch: Arch;
  gpuTargets: string[];
  cmakeArgs: string[];
  flagCmakeArgs: string[];
  targets: string[];
  unity: boolean;
}> {
  const own = options.build?.instances[name];
  let arch = options.arch === "auto" ? undefined : options.arch ?? own?.arch ?? existing?.arch;
  let detected: Detected | undefined;
  if (!arch) {
    detected = await (more.detect ?? detectGpu)();
    arch = detected.arch;
    more.onInfo?.(`detected ${detected.arch} (${detected.reason})`);
  }
  if (!ARCHES.includes(arch)) {
    throw new UserError(`unknown --arch '${arch}'`, { hint: `use ${ARCHES.join(", ")}` });
  }
  const profile = options.build?.profiles[arch];
  let gpuTargets = options.gpuTargets ?? own?.gpu_targets ?? profile?.gpu_targets ??
    (arch === existing?.arch ? existing?.gpuTargets : undefined);
  if (gpuTargets === undefined && (arch === "cuda" || arch === "rocm")) {
    detected ??= await (more.detect ?? detectGpu)();
    if (detected.arch === arch) gpuTargets = detected.gpuTargets;
  }
  const global = options.build?.cmake_args ?? [];
  const flagCmakeArgs = options.cmakeArgs ?? recordedFlagArgs(existing, global);
  const cmakeArgs = [...global, ...(profile?.cmake_args ?? []), ...(own?.cmake_args ?? []), ...flagCmakeArgs];
  // An instance keeps how it was built (records from before unity builds have none: built without): a switch
  // recompiles the whole tree, and ccache misses each batch's first compile.
  const unity = options.unity ??
    (options.build?.unity === false ? false : existing ? existing.unity ?? false : true);
  return {
    arch,
    gpuTargets: gpuTargets ?? [],
    cmakeArgs,
    flagCmakeArgs,
    targets: options.targets ?? own?.targets ?? existing?.targets ?? FIRST_TARGETS,
    unity: usesUnity({ arch, cmakeArgs, unity }),
  };
}

/** The cmake args an earlier record was given by flag (records before `flagCmakeArgs` held all of them). */
function recordedFlagArgs(existing: InstanceRecord | undefined, global: string[]): string[] {
  if (!existing) return [];
  if (existing.flagCmakeArgs) return existing.flagCmakeArgs;
  const all = existing.cmakeArgs;
  return global.length && sameList(all.slice(0, global.length), global) ? all.slice(global.length) : all;
}

export { instanceLockPath };

/**
 * Installs or updates an instance.
 *
 * @example
 * ```ts ignore
 * import { resolvePaths } from "../config/paths.ts";
 * const r = await installInstance(resolvePaths(), { name: "cpu", arch: "cpu", repoUrl: "./llama.cpp.bundle" });
 * console.log(r.status, r.record?.binDir);
 * ```
 */
export async function installInstance(paths: Paths, options: InstallOptions): Promise<InstallResult> {
  const name = validateInstanceName(options.name);
  const started = performance.now();
  const info = options.onInfo ?? (() => {});
  return await withLock(instanceLockPath(paths, name), `install of '${name}'`, async () => {
    const existing = await readInstance(paths, name);
    if (options.updateOnly && !existing) {
      throw new UserError(`instance '${name}' is not installed, so there is nothing to update`, {
        hint: `run \`llama-mgr install -i ${name}\` without --update-only`,
      });
    }
    const repoUrl = normalizeRepoUrl(options.repoUrl ?? existing?.repoUrl ?? DEFAULT_REPO_URL);
    const ref = options.ref ?? existing?.ref ?? "HEAD";
    const settings = await buildSettings(
      name,
      options,
      existing,
      { onInfo: info },
    );
    const { arch, gpuTargets, cmakeArgs, flagCmakeArgs, targets } = settings;
    // Turned off below when a batch fails to compile.
    let unity = settings.unity;
    const keep = options.build?.keep_releases ?? 1;
    const patches = validatePatches(options.patches ?? existing?.patches ?? []);
    const ccache = (options.ccache ?? true) && !!which("ccache");

    const dir = instanceDir(paths, name);
    const srcDir = join(dir, "src");
    const buildDir = join(dir, "build");
    await Deno.mkdir(paths.logsDir, { recursive: true });
    const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\..*$/, "");
    const logFile = join(paths.logsDir, `install-${name}-${stamp}.log`);

    // What the machine lacks is said before anything is fetched or built.
    const foundArgs = options.pullOnly ? [] : await preflightMachine({
      arch,
      cmakeArgs,
      gpuTargets,
      onInfo: info,
    });

    const fetchProgress = options.progress?.("fetch");
    info(`fetching ${repoUrl}${ref !== "HEAD" ? ` (${ref})` : ""}`);
    await fetchSource(srcDir, repoUrl, {
      logFile,
      onLine: (l) => {
        const m = l.match(/^(Receiving objects|Resolving deltas|Unpacking objects):\s+(\d+)%/);
        if (m) fetchProgress?.update(Number(m[2]), 100, m[1]);
      },
    });
    const commit = await resolveRef(srcDir, ref, { logFile });
    fetchProgress?.done(`at ${commit.slice(0, 10)}`);
    const seconds = () => (performance.now() - started) / 1000;

    if (options.pullOnly) {
      await checkoutCommit(srcDir, commit, { logFile });
      return { status: "pulled", record: existing, commit, logFile, seconds: seconds() };
    }

    const wantsPython = options.ignorePython === undefined
      ? existing?.withPython ?? true
      : !options.ignorePython;
    const configSame = existing && existing.commit === commit && existing.arch === arch &&
      sameList(existing.gpuTargets, gpuTargets) && sameList(existing.cmakeArgs, cmakeArgs) &&
      sameList(existing.targets, targets) && sameList(existing.patches, patches) &&
      (existing.unity ?? false) === unity &&
      existing.repoUrl === repoUrl && (await exists(existing.binDir));
    if (options.updateOnly && configSame && existing) {
      if (wantsPython && !existing.venvDir && existing.pythonDir) {
        info("build is up to date; creating the missing Python environment");
        const venvDir = await setUpPython(dir, existing.pythonDir, options, logFile);
        const record = { ...existing, venvDir, withPython: true };
        await writeInstance(paths, record);
        return { status: "updated", record, commit, logFile, seconds: seconds() };
      }
      return { status: "up-to-date", record: existing, commit, logFile, seconds: seconds() };
    }

    // The previous release: what the instance runs now (when its binaries are there) and what it kept.
    const earlier = existing
      ? [
        ...((await exists(existing.binDir)) ? [currentRelease(existing)] : []),
        ...(existing.previous ?? []),
      ]
      : [];
    const kept = earlier.slice(existing && (await exists(existing.binDir)) ? 1 : 0).find((r) =>
      reusable(r, { commit, arch, gpuTargets, cmakeArgs, patches, targets, repoUrl, unity })
    );
    if (existing && kept && (await keptReleaseRuns(kept))) {
      info(`release ${kept.commit.slice(0, 10)} (${kept.version}) is kept: switching to it without a build`);
      const record: InstanceRecord = {
        ...existing,
        ...kept,
        repoUrl,
        ref,
        flagCmakeArgs,
        previous: earlier.filter((r) => r !== kept),
      };
      await switchRelease(paths, record, keep, { onInfo: info });
      return { status: "updated", record, commit, logFile, seconds: seconds() };
    }

    await checkoutPatched(srcDir, commit, patches, { logFile });
    if (patches.length) info(`patched: ${patches.join(", ")}`);
    await preflightSource({ arch, srcDir, cmakeArgs, onInfo: info });
    info(
      `building ${name} (${arch}${gpuTargets.length ? ` ${gpuTargets.join(",")}` : ""}) at ${
        commit.slice(0, 10)
      }`,
    );
    info(
      unity
        ? "unity build: the libraries llama-server links compile as batches of sources, about 30% less CPU " +
          "time (turn off with --no-unity or build.unity: false)"
        : "unity build: off",
    );
    const build = (batched: boolean) =>
      configureAndBuild({
        onWarning: (w) => info(`warning: ${w}`),
        srcDir,
        buildDir,
        spec: { arch, gpuTargets, cmakeArgs: [...cmakeArgs, ...foundArgs], ccache, unity: batched },
        targets,
        parallel: options.parallel,
        logFile,
        ccacheBaseDir: paths.dataDir,
        ccacheStatsLog: join(paths.logsDir, `ccache-${name}-${stamp}.stats`),
        progress: options.progress,
      });
    let built: Awaited<ReturnType<typeof build>>;
    try {
      built = await build(unity);
    } catch (err) {
      // Batching is ours, not llama.cpp's: a release whose sources clash in a batch (two files defining one
      // name) still builds, file by file, instead of failing the install.
      if (
        !unity || !(err instanceof BuildStepError) || err.step !== "build" || !err.message.includes("/Unity/")
      ) {
        throw err;
      }
      info(
        `unity build: a batch of sources failed to compile (${logFile}); building file by file instead ` +
          "(--no-unity skips the batches)",
      );
      unity = false;
      built = await build(false);
    }
    const releaseDir = join(dir, "releases", `${commit.slice(0, 10)}-${stamp}`);
    const version = await stageRelease(buildDir, srcDir, releaseDir, logFile);
    info(`verified: llama-server ${version}`);

    const record: InstanceRecord = {
      name,
      repoUrl,
      ref,
      commit,
      version,
      arch,
      gpuTargets,
      cmakeArgs,
      flagCmakeArgs,
      ...(patches.length ? { patches } : {}),
      cmakeCommand: built.cmakeCommand,
      targets,
      builtAt: new Date().toISOString(),
      buildSeconds: Math.round(built.seconds * 10) / 10,
      binDir: join(releaseDir, "bin"),
      pythonDir: join(releaseDir, "python"),
      venvDir: existing?.venvDir,
      withPython: wantsPython,
      ...(built.ccache ? { ccache: built.ccache } : {}),
      unity,
      previous: earlier,
    };
    // The switch: from here on the instance uses the new build; the releases beyond `keep` go.
    await switchRelease(paths, record, keep, { onInfo: info });
    if (wantsPython) {
      record.venvDir = await setUpPython(dir, record.pythonDir!, options, logFile);
      await writeInstance(paths, record);
    }
    return { status: existing ? "updated" : "installed", record, commit, logFile, seconds: seconds() };
  }, {
    wait: options.wait,
    onWait: (h) => info(`waiting for ${h.what} (pid ${h.pid}) to finish`),
  });
}

/** A kept release is used again only when its llama-server still starts. */
async function keptReleaseRuns(r: ReleaseRecord): Promise<boolean> {
  const server = join(r.binDir, "llama-server");
  if (!(await exists(server))) return false;
  const v = await run([server, "--version"], { check: false, timeoutMs: 30_000 }).catch(() => undefined);
  return v?.code === 0;
}

async function setUpPython(dir: string, scriptsDir: string, options: InstallOptions, logFile: string) {
  const venvDir = join(dir, "venv");
  const p = options.progress?.("python environment");
  p?.update(0, undefined, "uv");
  try {
    await ensureVenv({
      venvDir,
      scriptsDir,
      python: options.python ?? { torch: "cpu", offline: false },
      logFile,
      quiet: options.quiet,
    });
  } catch (err) {
    throw new UserError(
      `the build succeeded and is in use, but its Python environment failed: ${(err as Error).message}`,
      {
        hint:
          "fix the cause (see `llama-mgr install --help` for --torch, --find-links, --index-url), then run " +
          "`llama-mgr install --update-only`; or pass --ignore-python",
        cause: err,
      },
    );
  }
  p?.done("ready");
  return venvDir;
}
