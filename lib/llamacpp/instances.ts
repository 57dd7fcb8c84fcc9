/**
 * Installed llama.cpp instances: one folder per instance under `<data>/instances/<name>/`, with its record in
 * `instance.json` (written atomically), its git checkout in `src/`, its cmake tree in `build/`, its verified
 * binaries in `releases/<id>/bin/`, and its Python environment in `venv/`.
 *
 * @module
 */
import { join } from "node:path";
import type { Paths } from "../config/paths.ts";
import { dirSize, readJson, removeAll, writeJsonAtomic } from "../util/fs.ts";
import { UserError } from "../util/errors.ts";

/**
 * The GPU backends llama-mgr can build for.
 *
 * @example
 * ```ts
 * const isArch = (s: string): s is Arch => (ARCHES as readonly string[]).includes(s);
 * isArch("rocm"); // true
 * ```
 */
export const ARCHES = ["cpu", "cuda", "rocm", "vulkan", "metal", "sycl"] as const;
/**
 * One of {@linkcode ARCHES}.
 *
 * @example
 * ```ts
 * const arch: Arch = "cuda";
 * ```
 */
export type Arch = typeof ARCHES[number];

/**
 * One verified build of an instance: its binaries in `releases/<id>/bin/` and what they were built from.
 *
 * @example
 * ```ts ignore
 * for (const r of instanceReleases(await getInstance(paths, "cpu"))) {
 *   console.log(r.current ? "*" : " ", r.commit.slice(0, 10), r.version, r.arch, r.builtAt);
 * }
 * ```
 */
export interface ReleaseRecord {
  /** The commit built. */
  commit: string;
  /** llama.cpp's version as `llama-server --version` prints it (build number). */
  version: string;
  /** GPU backend. */
  arch: Arch;
  /** GPU targets (CUDA architectures, gfx targets), empty when not applicable. */
  gpuTargets: string[];
  /** The cmake args beyond the backend's own (the config's and the flags'). */
  cmakeArgs: string[];
  /** Source patches applied before the build (see lib/llamacpp/patches.ts). */
  patches?: string[];
  /** The full cmake configure command line used. */
  cmakeCommand: string[];
  /** Targets built (empty: the common tools, as builds before lazy targets had). */
  targets: string[];
  /** ISO time the build finished. */
  builtAt: string;
  /** Seconds the build took. */
  buildSeconds: number;
  /** Directory of the verified binaries. */
  binDir: string;
  /** Directory with llama.cpp's Python scripts (convert_hf_to_gguf.py, gguf-py) for this build. */
  pythonDir?: string;
  /** Where the source came from. */
  repoUrl?: string;
  /** The ref asked for. */
  ref?: string;
  /** Compilations ccache answered and those it had to compile, when the build used ccache. */
  ccache?: { hits: number; misses: number };
  /** True when the libraries around the model (common, mtmd, server) were compiled as unity batches (see UNITY_TARGETS in cmake.ts). */
  unity?: boolean;
}

/**
 * What an instance records about itself.
 *
 * @example
 * ```ts ignore
 * const inst: InstanceRecord = await getInstance(paths, "cpu");
 * console.log(`${inst.name}: llama.cpp ${inst.version} (${inst.commit.slice(0, 7)}) for ${inst.arch}`);
 * ```
 */
export interface InstanceRecord extends Omit<ReleaseRecord, "repoUrl" | "ref"> {
  /** Instance name, e.g. `cpu`, `rocm`. */
  name: string;
  /** Where the source came from (URL, path or bundle). */
  repoUrl: string;
  /** The ref asked for (branch, tag, commit), or `HEAD`. */
  ref: string;
  /** The Python environment, or undefined when installed with `--ignore-python`. */
  venvDir?: string;
  /** False when installed with `--ignore-python` (updates keep that choice). */
  withPython?: boolean;
  /** The cmake args given with `--cmake-args` (kept for updates; the config's are added anew each time). */
  flagCmakeArgs?: string[];
  /** Earlier good releases kept for `install --rollback`, newest first (`build.keep_releases`). */
  previous?: ReleaseRecord[];
}

/** Folder of one instance. */
export function instanceDir(paths: Paths, name: string): string {
  return join(paths.instancesDir, name);
}

/** An instance's llama.cpp source checkout (what it was built from). */
export function instanceSourceDir(paths: Paths, name: string): string {
  return join(instanceDir(paths, name), "src");
}

/** The lock file that serialises operations on one instance (install, rollback, a tool built on demand). */
export function instanceLockPath(paths: Paths, name: string): string {
  return join(paths.locksDir, `instance-${name}.lock`);
}

/** Path of an instance's record. */
export function instanceFile(paths: Paths, name: string): string {
  return join(instanceDir(paths, name), "instance.json");
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** Checks an instance name: letters, digits, `.`, `_`, `-`, at most 64 characters. */
export function validateInstanceName(name: string): string {
  if (!NAME_RE.test(name)) {
    throw new UserError(`invalid instance name '${name}'`, {
      hint: "use letters, digits, '.', '_' and '-' (at most 64 characters), e.g. cpu, rocm, cuda-12",
    });
  }
  return name;
}

/** Reads one instance's record; undefined when it is not installed. */
export async function readInstance(paths: Paths, name: string): Promise<InstanceRecord | undefined> {
  validateInstanceName(name);
  return await readJson<InstanceRecord>(instanceFile(paths, name));
}

/** Writes an instance's record atomically. */
export async function writeInstance(paths: Paths, record: InstanceRecord): Promise<void> {
  await writeJsonAtomic(instanceFile(paths, record.name), record);
}

/**
 * All installed instances, sorted by name.
 *
 * @example
 * ```ts ignore
 * for (const inst of await listInstances(paths)) console.log(inst.name, inst.arch, inst.builtAt);
 * ```
 */
export async function listInstances(paths: Paths): Promise<InstanceRecord[]> {
  const out: InstanceRecord[] = [];
  try {
    for await (const e of Deno.readDir(paths.instancesDir)) {
      if ((!e.isDirectory && !e.isSymlink) || !NAME_RE.test(e.name)) continue;
      const rec = await readJson<InstanceRecord>(instanceFile(paths, e.name)).catch(() => undefined);
      if (rec) out.push(rec);
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

interface GlobalState {
  defaultInstance?: string;
}

/**
 * The default instance's name: the config's `default_instance`, else the one set with `instances default`,
 * else the only one installed, else `cpu`/the first. Undefined when nothing is installed.
 *
 * @example
 * ```ts ignore
 * const name = await defaultInstanceName(paths, config.default_instance);
 * ```
 */
export async function defaultInstanceName(paths: Paths, configured?: string): Promise<string | undefined> {
  if (configured) return configured;
  const state = await readJson<GlobalState>(paths.stateFile);
  if (state?.defaultInstance) return state.defaultInstance;
  const all = await listInstances(paths);
  return all.find((i) => i.name === "default")?.name ?? all[0]?.name;
}

/**
 * Sets the default instance (it must be installed).
 *
 * @example
 * ```ts ignore
 * await setDefaultInstance(paths, "rocm");
 * ```
 */
export async function setDefaultInstance(paths: Paths, name: string): Promise<void> {
  if (!(await readInstance(paths, name))) {
    throw new UserError(`instance '${name}' is not installed`, {
      hint: "run `llama-mgr instances` to list them",
    });
  }
  const state = (await readJson<GlobalState>(paths.stateFile)) ?? {};
  await writeJsonAtomic(paths.stateFile, { ...state, defaultInstance: name });
}

/**
 * Finds the instance to use: the named one, or the default. Errors say what is installed.
 *
 * @example
 * ```ts
 * import { resolvePaths } from "../config/paths.ts";
 * const inst = await getInstance(resolvePaths(), "cpu");
 * console.log(binaryPath(inst, "llama-server"));
 * ```
 */
export async function getInstance(
  paths: Paths,
  name?: string,
  configuredDefault?: string,
): Promise<InstanceRecord> {
  const wanted = name ?? (await defaultInstanceName(paths, configuredDefault));
  if (!wanted) {
    throw new UserError("no llama.cpp instance is installed", { hint: "run `llama-mgr install` first" });
  }
  const rec = await readInstance(paths, wanted);
  if (!rec) {
    const names = (await listInstances(paths)).map((i) => i.name);
    throw new UserError(`instance '${wanted}' is not installed`, {
      hint: names.length ? `installed: ${names.join(", ")}` : "run `llama-mgr install` first",
    });
  }
  return rec;
}

/**
 * The release an instance uses now, as a {@linkcode ReleaseRecord}.
 *
 * @example
 * ```ts ignore
 * const now = currentRelease(await getInstance(paths, "cpu"));
 * console.log(now.commit, now.binDir);
 * ```
 */
export function currentRelease(instance: InstanceRecord): ReleaseRecord {
  return {
    commit: instance.commit,
    version: instance.version,
    arch: instance.arch,
    gpuTargets: instance.gpuTargets,
    cmakeArgs: instance.cmakeArgs,
    ...(instance.patches?.length ? { patches: instance.patches } : {}),
    cmakeCommand: instance.cmakeCommand,
    targets: instance.targets,
    builtAt: instance.builtAt,
    buildSeconds: instance.buildSeconds,
    binDir: instance.binDir,
    pythonDir: instance.pythonDir,
    repoUrl: instance.repoUrl,
    ref: instance.ref,
    ccache: instance.ccache,
    unity: instance.unity,
  };
}

/**
 * Every release an instance keeps, the one in use first (`current: true`), then the earlier ones, newest
 * first.
 *
 * @example
 * ```ts ignore
 * const [now, before] = instanceReleases(await getInstance(paths, "cpu"));
 * console.log(`in use: ${now.version}; rollback goes to: ${before?.version ?? "(none kept)"}`);
 * ```
 */
export function instanceReleases(instance: InstanceRecord): (ReleaseRecord & { current: boolean })[] {
  return [
    { ...currentRelease(instance), current: true },
    ...(instance.previous ?? []).map((r) => ({ ...r, current: false })),
  ];
}

/**
 * Full path of a llama.cpp binary of an instance.
 *
 * @example
 * ```ts ignore
 * const bench = binaryPath(await getInstance(paths), "llama-bench");
 * ```
 */
export function binaryPath(instance: InstanceRecord, tool: string): string {
  return join(instance.binDir, tool);
}

/**
 * Names of the binaries an instance has.
 *
 * @example
 * ```ts ignore
 * const hasImatrix = (await listBinaries(inst)).includes("llama-imatrix");
 * ```
 */
export async function listBinaries(instance: InstanceRecord): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(instance.binDir)) if (e.isFile) out.push(e.name);
  } catch { /* none */ }
  return out.sort();
}

/** Size on disk of an instance folder. */
export async function instanceSize(paths: Paths, name: string): Promise<number> {
  return await dirSize(instanceDir(paths, name));
}

/**
 * Removes an instance's folder and, if it was the default, the default setting.
 *
 * @example
 * ```ts ignore
 * await removeInstance(paths, "old-cuda");
 * ```
 */
export async function removeInstance(paths: Paths, name: string): Promise<void> {
  validateInstanceName(name);
  await removeAll(instanceDir(paths, name));
  const state = await readJson<GlobalState>(paths.stateFile);
  if (state?.defaultInstance === name) {
    await writeJsonAtomic(paths.stateFile, { ...state, defaultInstance: undefined });
  }
}
