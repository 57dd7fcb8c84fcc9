/**
 * Installing and updating an instance: fetch the source, build it in a staging area, verify it, and only then
 * switch the instance to the new build. A failed step leaves the previous build in use.
 *
 * @module
 */
import { join } from "node:path";
import type { Paths } from "../config/paths.ts";
import type { PythonOptions } from "../config/schema.ts";
import {
  type Arch,
  ARCHES,
  instanceDir,
  type InstanceRecord,
  readInstance,
  validateInstanceName,
  writeInstance,
} from "./instances.ts";
import { checkoutCommit, DEFAULT_REPO_URL, fetchSource, normalizeRepoUrl, resolveRef } from "./source.ts";
import { configureAndBuild, stageRelease } from "./build.ts";
import { detectGpu } from "./detect.ts";
import { withLock } from "../util/lock.ts";
import { exists, removeAll } from "../util/fs.ts";
import { UserError } from "../util/errors.ts";
import { which } from "../util/run.ts";
import type { Progress } from "../util/progress.ts";
import { ensureVenv } from "../python/venv.ts";
import { applyPatches, keepUnchangedTimes, patchedFiles, snapshotFiles, validatePatches } from "./patches.ts";
import { preflightMachine, preflightSource } from "./toolchain.ts";

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
  /** GPU targets (default: the instance's, else detected). */
  gpuTargets?: string[];
  /** Extra cmake args (default: the instance's). */
  cmakeArgs?: string[];
  /** Source patches by name, see PATCHES in patches.ts (default: the instance's). */
  patches?: string[];
  /** Targets (default: the instance's, else DEFAULT_TARGETS of build.ts). */
  targets?: string[];
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

/** The lock file that serialises operations on one instance. */
export function instanceLockPath(paths: Paths, name: string): string {
  return join(paths.locksDir, `instance-${name}.lock`);
}

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
    let arch = options.arch === "auto" ? undefined : options.arch ?? existing?.arch;
    let gpuTargets = options.gpuTargets ??
      (options.arch === existing?.arch ? existing?.gpuTargets : undefined);
    if (!arch || (gpuTargets === undefined && (arch === "cuda" || arch === "rocm"))) {
      const d = await detectGpu();
      if (!arch) {
        arch = d.arch;
        info(`detected ${d.arch} (${d.reason})`);
      }
      if (gpuTargets === undefined && d.arch === arch) gpuTargets = d.gpuTargets;
    }
    if (!ARCHES.includes(arch)) {
      throw new UserError(`unknown --arch '${arch}'`, { hint: `use ${ARCHES.join(", ")}` });
    }
    gpuTargets ??= [];
    const cmakeArgs = options.cmakeArgs ?? existing?.cmakeArgs ?? [];
    const targets = options.targets ?? existing?.targets ?? [];
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

    const unpatched = await snapshotFiles(srcDir, patchedFiles(patches));
    await checkoutCommit(srcDir, commit, { logFile });
    if (patches.length) {
      await applyPatches(srcDir, patches, { logFile });
      await keepUnchangedTimes(srcDir, unpatched);
      info(`patched: ${patches.join(", ")}`);
    }
    await preflightSource({ arch, srcDir, cmakeArgs, onInfo: info });
    info(
      `building ${name} (${arch}${gpuTargets.length ? ` ${gpuTargets.join(",")}` : ""}) at ${
        commit.slice(0, 10)
      }`,
    );
    const built = await configureAndBuild({
      onWarning: (w) => info(`warning: ${w}`),
      srcDir,
      buildDir,
      spec: { arch, gpuTargets, cmakeArgs: [...cmakeArgs, ...foundArgs], ccache },
      targets,
      parallel: options.parallel,
      logFile,
      ccacheBaseDir: paths.dataDir,
      progress: options.progress,
    });
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
      ...(patches.length ? { patches } : {}),
      cmakeCommand: built.cmakeCommand,
      targets,
      builtAt: new Date().toISOString(),
      buildSeconds: Math.round(built.seconds * 10) / 10,
      binDir: join(releaseDir, "bin"),
      pythonDir: join(releaseDir, "python"),
      venvDir: existing?.venvDir,
      withPython: wantsPython,
    };
    // The switch: from here on the instance uses the new build.
    await writeInstance(paths, record);
    if (existing?.binDir && !existing.binDir.startsWith(releaseDir)) {
      await removeAll(join(existing.binDir, ".."));
    }
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
