/**
 * The Python environment for llama.cpp's conversion scripts: a uv virtual environment per instance with
 * llama.cpp's conversion requirements, where the user chooses torch (PyTorch's CPU wheels, the pinned build,
 * the system's torch, a local wheel directory, a private index, or none). Idempotent: a marker records what
 * was installed with which options, so an unchanged call is a fast no-op; a broken environment is recreated.
 *
 * @module
 */
import { join } from "node:path";
import type { PythonOptions } from "../config/schema.ts";
import { exists, expandHome, readJson, removeAll, writeFileAtomic, writeJsonAtomic } from "../util/fs.ts";
import { UserError } from "../util/errors.ts";
import { CommandError, run, which } from "../util/run.ts";
import { withLock } from "../util/lock.ts";

/**
 * Options for {@linkcode ensureVenv}.
 *
 * @example
 * ```ts ignore
 * const inst = await getInstance(paths);
 * const options: VenvOptions = {
 *   venvDir: inst.venvDir!,
 *   scriptsDir: inst.pythonDir!,
 *   python: { torch: "cpu", offline: false },
 * };
 * ```
 */
export interface VenvOptions {
  /** Where the virtual environment lives. */
  venvDir: string;
  /** llama.cpp's Python folder: convert_hf_to_gguf.py, gguf-py/, requirements/. */
  scriptsDir: string;
  /** Torch and index choices. */
  python: PythonOptions;
  /** Append uv's output here. */
  logFile?: string;
  /** Print nothing. */
  quiet?: boolean;
  /** Status lines. */
  onInfo?: (text: string) => void;
  /** uv's progress: phase 1 resolve, 2 download/build, 3 install (of 3), with uv's own line. */
  onProgress?: (phase: number, total: number, text: string) => void;
}

/** The phase (of 3) a line of `uv pip install` output reports, or 0 for other lines. */
export function uvPhase(line: string): number {
  if (/^\s*Resolved\b/.test(line)) return 1;
  if (/^\s*(Downloading|Downloaded|Building|Built|Prepared)\b/.test(line)) return 2;
  if (/^\s*(Installed|Uninstalled|Audited)\b/.test(line)) return 3;
  return 0;
}

/**
 * What {@linkcode ensureVenv} made.
 *
 * @example
 * ```ts ignore
 * const env: VenvInfo = await ensureVenv(options);
 * console.log(env.python, env.torch ?? "no torch", env.upToDate ? "(unchanged)" : "");
 * ```
 */
export interface VenvInfo {
  /** The environment's python executable. */
  python: string;
  /** The torch version in the environment, or undefined when skipped. */
  torch?: string;
  /** True when nothing had to be done. */
  upToDate: boolean;
}

/** PyTorch's CPU wheel index (`torch: cpu`). */
export const TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu";
const MARKER = ".llama-mgr-venv.json";

interface Marker {
  key: string;
  torch?: string;
}

/** A requirements file's lines with `-r` includes inlined (relative to the file). */
export async function readRequirements(file: string, seen = new Set<string>()): Promise<string[]> {
  if (seen.has(file)) return [];
  seen.add(file);
  const out: string[] = [];
  for (const raw of (await Deno.readTextFile(file)).split("\n")) {
    const line = raw.replace(/\s+#.*$/, "").trim();
    if (!line || line.startsWith("#")) continue;
    const inc = line.match(/^-r\s+(.+)$/);
    if (inc) out.push(...await readRequirements(join(file, "..", inc[1]), seen));
    else out.push(line);
  }
  return out;
}

/**
 * The newest torch wheel version in a local `--find-links` folder that fits `interpreter` and this machine
 * (`2.13.0+cpu` from `torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl`); undefined for URLs or none.
 *
 * @example
 * ```ts ignore
 * await localTorchVersion("/opt/wheels", "python3"); // "2.13.0+cpu"
 * ```
 */
export async function localTorchVersion(
  findLinks: string | undefined,
  interpreter: string,
): Promise<string | undefined> {
  if (!findLinks || /^[a-z][a-z0-9+.-]*:\/\//i.test(findLinks)) return undefined;
  const wheels: RegExpMatchArray[] = [];
  try {
    for await (const e of Deno.readDir(expandHome(findLinks))) {
      const m = e.name.match(/^torch-([^-]+)-([^-]+)-[^-]+-(.+)\.whl$/);
      if (m) wheels.push(m);
    }
  } catch {
    return undefined;
  }
  if (!wheels.length) return undefined;
  const tag = await run([interpreter, "-c", "import sys; print('cp%d%d' % sys.version_info[:2])"], {
    check: false,
    timeoutMs: 30_000,
  }).then((r) => r.stdout.trim()).catch(() => "");
  const os = Deno.build.os === "darwin" ? "macosx" : Deno.build.os === "windows" ? "win" : "linux";
  const arch = Deno.build.arch === "aarch64" ? /aarch64|arm64|universal/ : /x86_64|amd64|universal/;
  const num = (v: string) => v.split(/[.+]/).map((x) => Number.parseInt(x, 10) || 0);
  const newer = (a: string, b: string) => {
    const [x, y] = [num(a), num(b)];
    for (let i = 0; i < Math.max(x.length, y.length); i++) {
      if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) > (y[i] ?? 0);
    }
    return false;
  };
  let best: string | undefined;
  for (const m of wheels) {
    if (!m[2].split(".").includes(tag) || !m[3].includes(os) || !arch.test(m[3])) continue;
    if (!best || newer(m[1], best)) best = m[1];
  }
  return best;
}

/** The package name of a requirement line (`torch==2.11.0` → `torch`). */
export function requirementName(line: string): string | undefined {
  const m = line.match(/^([A-Za-z0-9][A-Za-z0-9._-]*)/);
  return m ? m[1].toLowerCase().replace(/_/g, "-") : undefined;
}

/** The uv install plan for a requirement list and the user's torch choice. */
export interface InstallPlan {
  /** Requirement lines to install. */
  requirements: string[];
  /** Overrides (replace pins of the same packages). */
  overrides: string[];
  /** Extra uv arguments (indexes, find-links, offline). */
  uvArgs: string[];
  /** Let the venv see the interpreter's packages (`torch: system`). */
  systemSitePackages: boolean;
}

/**
 * Turns llama.cpp's requirements and the user's choice into what uv installs. Pure, so every choice is
 * testable without installing.
 *
 * @example
 * ```ts
 * const plan = installPlan(["torch==2.11.0", "--extra-index-url https://download.pytorch.org/whl/cpu"], "/s",
 *   { torch: "cpu", torch_version: "2.13.0", find_links: "/opt/wheels", offline: false });
 * ```
 */
export function installPlan(
  lines: string[],
  scriptsDir: string,
  opts: PythonOptions,
  localTorch?: string,
): InstallPlan {
  const requirements: string[] = [];
  const overrides: string[] = [];
  const uvArgs: string[] = [];
  const indexes: string[] = [];
  for (const line of lines) {
    const idx = line.match(/^--(?:extra-)?index-url[ =](\S+)$/);
    if (idx) {
      // llama.cpp points at PyTorch's CPU index: kept for `cpu` and `auto`, unless the user named a source.
      if ((opts.torch === "cpu" || opts.torch === "auto") && !opts.find_links && !opts.index_url) {
        indexes.push(idx[1]);
      }
      continue;
    }
    if (line.startsWith("-")) continue;
    const name = requirementName(line);
    if (name === "torch" && (opts.torch === "system" || opts.torch === "skip")) continue;
    // Conversion uses the instance's own gguf-py (the scripts put it first on sys.path too).
    if (name === "gguf") {
      requirements.push(`gguf @ file://${join(scriptsDir, "gguf-py")}`);
      continue;
    }
    requirements.push(line);
  }
  if (opts.torch === "cpu" && !opts.find_links && !opts.index_url && !indexes.includes(TORCH_CPU_INDEX)) {
    indexes.push(TORCH_CPU_INDEX);
  }
  if (opts.torch_version && opts.torch !== "system" && opts.torch !== "skip") {
    overrides.push(
      /^[<>=!~]/.test(opts.torch_version) ? `torch${opts.torch_version}` : `torch==${opts.torch_version}`,
    );
  } else if (localTorch && (opts.torch === "cpu" || opts.torch === "auto")) {
    // A torch wheel in --find-links and no version asked for: use that wheel. Keeping llama.cpp's pin would
    // make uv take that version from PyPI instead, a multi-GB CUDA build with its nvidia-* packages.
    overrides.push(`torch==${localTorch}`);
  }
  if (opts.index_url) indexes.push(opts.index_url);
  for (const i of indexes) uvArgs.push("--extra-index-url", i);
  if (indexes.length) uvArgs.push("--index-strategy", "unsafe-best-match");
  if (opts.find_links) uvArgs.push("--find-links", expandHome(opts.find_links));
  if (opts.offline) uvArgs.push("--offline");
  return { requirements, overrides, uvArgs, systemSitePackages: opts.torch === "system" };
}

/** True when the interpreter runs and the converter's packages can be found (no imports: fast). */
async function packagesPresent(python: string, withTorch: boolean): Promise<boolean> {
  const mods = [
    "numpy",
    "gguf",
    "sentencepiece",
    "transformers",
    "google.protobuf",
    ...(withTorch ? ["torch"] : []),
  ];
  const code = `import importlib.util as u, sys\nsys.exit(1 if [m for m in ${
    JSON.stringify(mods)
  } if u.find_spec(m) is None] else 0)`;
  try {
    return (await run([python, "-c", code], { check: false, timeoutMs: 60_000 })).code === 0;
  } catch {
    return false;
  }
}

async function probe(python: string, withTorch: boolean): Promise<string | undefined> {
  const code = withTorch
    ? "import torch, transformers, numpy, gguf; print(torch.__version__)"
    : "import numpy, gguf; print('none')";
  try {
    const r = await run([python, "-c", code], { check: false, timeoutMs: 120_000 });
    return r.code === 0 ? r.stdout.trim().split("\n").pop() : undefined;
  } catch {
    return undefined;
  }
}

/** The error for a failed `uv` step: an unreachable index and a torch that cannot be found say so. */
export function venvError(
  venvDir: string,
  uvOutput: string,
  opts: PythonOptions,
  logFile: string | undefined,
  cause?: unknown,
): UserError {
  const torchFlags = "a directory of wheels (--find-links DIR, e.g. a local torch wheel), a private index " +
    "(--index-url URL), another version (--torch-version), the system's torch (--torch system), or none " +
    "(--torch skip)";
  const tail = uvOutput.split("\n").slice(-12).join("\n");
  const url = uvOutput.match(/Failed to fetch: [`'"]?(\S+?)[`'"]?\s*$/m)?.[1];
  if (url && /connect|dns|resolv|timed out|refused|unreachable/i.test(uvOutput)) {
    const origin = (() => {
      try {
        return new URL(url).origin;
      } catch {
        return url;
      }
    })();
    const pytorch = origin === new URL(TORCH_CPU_INDEX).origin;
    const mirror = opts.index_url !== undefined && url.startsWith(opts.index_url.replace(/\/+$/, ""));
    return new UserError(
      `could not reach ${pytorch ? "PyTorch's wheel index " : mirror ? "the package index " : ""}${origin} ` +
        `while making the Python environment at ${venvDir}:\n${tail}`,
      {
        hint: pytorch
          ? `torch's index is unreachable from here; take torch from ${torchFlags}`
          : mirror
          ? `check --index-url (python.index_url: ${opts.index_url}), or use --find-links DIR with --offline`
          : `no network to the package index? use --offline with uv's cache and --find-links DIR, or --index-url URL`,
        cause,
      },
    );
  }
  if (
    /torch/i.test(uvOutput) && /(not found|no matching|unsatisfiable|no version|not satisf)/i.test(uvOutput)
  ) {
    return new UserError(`torch could not be installed in the Python environment at ${venvDir}:\n${tail}`, {
      hint: `take torch from ${torchFlags}`,
      cause,
    });
  }
  return new UserError(`could not make the Python environment at ${venvDir}:\n${tail}`, {
    hint: `see ${logFile ?? "uv's output"}; use --offline/--find-links/--index-url for machines without PyPI`,
    cause,
  });
}

/**
 * Creates the environment, or repairs it, or does nothing when it is already what the options ask for.
 *
 * @example
 * ```ts ignore
 * const env = await ensureVenv({ venvDir, scriptsDir, python: { torch: "cpu", offline: false } });
 * console.log(env.python, env.torch);
 * ```
 */
export async function ensureVenv(options: VenvOptions): Promise<VenvInfo> {
  // One writer per environment (an install and a convert at once, two converts): the others wait, then
  // find it made and return at once.
  return await withLock(
    `${options.venvDir.replace(/\/+$/, "")}.lock`,
    `Python environment ${options.venvDir}`,
    () => ensureVenvOnce(options, false),
    {
      wait: true,
      onWait: (h) => options.onInfo?.(`waiting for pid ${h.pid} (${h.what}) to finish with it`),
    },
  );
}

async function ensureVenvOnce(options: VenvOptions, fresh: boolean): Promise<VenvInfo> {
  const { venvDir, scriptsDir, python: opts } = options;
  const info = options.quiet ? () => {} : options.onInfo ?? (() => {});
  const py = join(venvDir, "bin", "python");
  const reqFile = join(scriptsDir, "requirements", "requirements-convert_hf_to_gguf.txt");
  if (!(await exists(reqFile))) {
    throw new UserError(`llama.cpp's conversion requirements are missing: ${reqFile}`, {
      hint: "reinstall the instance (llama-mgr install --update-only)",
    });
  }
  if (!which("uv")) {
    throw new UserError("uv is not installed; it makes the Python environment for the conversion scripts", {
      hint: "install it (`pip install uv`, or see `llama-mgr doctor`), or pass --ignore-python",
    });
  }
  const lines = await readRequirements(reqFile);
  const interpreter = opts.python ?? which("python3") ?? "python3";
  const localTorch = opts.torch_version ? undefined : await localTorchVersion(opts.find_links, interpreter);
  const plan = installPlan(lines, scriptsDir, opts, localTorch);
  const key = JSON.stringify({ plan, python: opts.python ?? null });
  const marker = await readJson<Marker>(join(venvDir, MARKER)).catch(() => undefined);
  const withTorch = opts.torch !== "skip";
  if (marker?.key === key && await exists(py)) {
    // Cheap check (the interpreter runs and every package is findable, without importing torch); the full
    // import probe only runs after installing.
    if (await packagesPresent(py, withTorch)) return { python: py, torch: marker.torch, upToDate: true };
    info(`repairing the Python environment at ${venvDir}`);
  }
  const env = { UV_PYTHON_DOWNLOADS: "never", VIRTUAL_ENV: venvDir };
  const broken = (await exists(venvDir)) &&
    !(await run([py, "-c", "import sys"], { check: false }).then((r) => r.code === 0).catch(() => false));
  if (
    broken ||
    (marker && marker.key !== key &&
      JSON.parse(marker.key).plan?.systemSitePackages !== plan.systemSitePackages)
  ) {
    info(`recreating the Python environment at ${venvDir}`);
    await removeAll(venvDir);
  }
  try {
    if (!(await exists(py))) {
      await run([
        "uv",
        "venv",
        "--quiet",
        "--python",
        interpreter,
        ...(plan.systemSitePackages ? ["--system-site-packages"] : []),
        venvDir,
      ], {
        logFile: options.logFile,
        env,
      });
    }
    const reqPath = join(venvDir, "llama-mgr-requirements.txt");
    await writeFileAtomic(reqPath, plan.requirements.join("\n") + "\n");
    const args = ["uv", "pip", "install", "--python", py, "-r", reqPath, ...plan.uvArgs];
    if (plan.overrides.length) {
      const ovPath = join(venvDir, "llama-mgr-overrides.txt");
      await writeFileAtomic(ovPath, plan.overrides.join("\n") + "\n");
      args.push("--override", ovPath);
    }
    info(
      `installing llama.cpp's conversion requirements with uv (torch: ${opts.torch}${
        opts.torch_version ? ` ${opts.torch_version}` : ""
      })`,
    );
    await run(args, {
      logFile: options.logFile,
      env,
      tailLines: 25,
      onLine: (line) => {
        const phase = uvPhase(line);
        if (phase && !options.quiet) options.onProgress?.(phase, 3, line.trim());
      },
    });
  } catch (err) {
    const text = err instanceof CommandError ? err.tail.join("\n") : (err as Error).message;
    throw venvError(venvDir, text, opts, options.logFile, err);
  }
  if (!options.quiet) options.onProgress?.(3, 3, "checking that the packages import");
  const torch = await probe(py, withTorch);
  if (torch === undefined && !fresh && !plan.systemSitePackages) {
    // Installed yet not importable (files deleted under intact metadata, a half-written package): start over.
    info(`the Python environment at ${venvDir} cannot import its packages; recreating it`);
    await removeAll(venvDir);
    return await ensureVenvOnce(options, true);
  }
  if (torch === undefined) {
    const noTorch = plan.systemSitePackages &&
      (await run([py, "-c", "import torch"], { check: false }).then((r) => r.code !== 0).catch(() => true));
    if (noTorch) {
      throw new UserError(`--torch system: the interpreter ${interpreter} has no torch`, {
        hint: `install torch for it (\`${interpreter} -m pip install torch\`), name another with --python, ` +
          "or let llama-mgr install torch (--torch cpu, or a local wheel with --find-links DIR)",
      });
    }
    throw new UserError(`the Python environment at ${venvDir} was installed but cannot import its packages`, {
      hint: `see ${options.logFile ?? "uv's output"}; recreate it by removing ${venvDir}`,
    });
  }
  const version = withTorch ? torch : undefined;
  await writeJsonAtomic(join(venvDir, MARKER), { key, torch: version });
  return { python: py, torch: version, upToDate: false };
}
