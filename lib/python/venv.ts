/**
 * The uv-managed Python environment for llama.cpp's conversion scripts: created when missing, repaired when
 * broken, and left alone (in milliseconds) when a marker file says it already holds what these options ask for.
 *
 * llama.cpp pins torch behind the PyTorch CPU index; that index may be unreachable and an unpinned torch from
 * PyPI is a multi-GB CUDA build. So the requirement files are read and rewritten: torch comes from the user's
 * choice (`python.torch`: `cpu`, `auto`, `system`, `skip`; `torch_version`, `find_links`, `index_url`), the
 * `gguf` package from the instance's own `gguf-py` folder, everything else as llama.cpp pins it.
 *
 * @module
 */
import { join } from "node:path";
import type { PythonOptions } from "../config/schema.ts";
import { exists, readJson, removeAll, writeFileAtomic, writeJsonAtomic } from "../util/fs.ts";
import { withLock } from "../util/lock.ts";
import { CommandError, run, which } from "../util/run.ts";
import { UserError } from "../util/errors.ts";
import { pinnedVersion, readRequirements, type Requirement, type RequirementSet } from "./requirements.ts";

/** The PyTorch index of CPU-only wheels (what `python.torch: cpu` uses when no other source is given). */
export const PYTORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu";

/** The marker file inside the environment recording what was installed with which options. */
export const VENV_MARKER = "llama-mgr-venv.json";

const MARKER_VERSION = 1;

/** Options for {@linkcode ensureVenv}. */
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
  /** Where status lines go (default: stderr unless quiet). */
  onInfo?: (line: string) => void;
  /** Reinstall even when the marker says the environment is complete. */
  force?: boolean;
}

/** What {@linkcode ensureVenv} made. */
export interface VenvInfo {
  /** The environment's python executable. */
  python: string;
  /** The torch version installed, or undefined when skipped. */
  torch?: string;
  /** The interpreter's version, e.g. `3.11.7`. */
  pythonVersion?: string;
  /** `created`, `repaired` (packages installed into an existing environment) or `ok` (nothing to do). */
  action?: "created" | "repaired" | "ok";
  /** Seconds spent. */
  seconds?: number;
}

/** What the marker file records. */
export interface VenvMarker {
  /** Marker format. */
  version: number;
  /** Hash of the options, requirement files and gguf-py version that produced the environment. */
  fingerprint: string;
  /** The options used. */
  options: PythonOptions;
  /** The scripts folder whose requirements were installed. */
  scriptsDir: string;
  /** Whether the environment sees the interpreter's own site-packages. */
  systemSitePackages: boolean;
  /** Installed versions of the required distributions. */
  installed: Record<string, string | null>;
  /** Interpreter version. */
  pythonVersion: string;
  /** When it was written. */
  at: string;
}

interface Inspection {
  version: string;
  tag: string;
  dists: Record<string, string | null>;
}

const INSPECT = [
  "import sys, json",
  "import importlib.metadata as m",
  "d = {}",
  "for n in sys.argv[1:]:",
  "    try: d[n] = m.version(n)",
  "    except Exception: d[n] = None",
  'print(json.dumps({"version": "%d.%d.%d" % sys.version_info[:3], "tag": "cp%d%d" % sys.version_info[:2],' +
  ' "dists": d}))',
].join("\n");

/** Asks an interpreter for its version and which of `dists` are installed; undefined when it does not run. */
export async function inspectPython(python: string, dists: string[] = []): Promise<Inspection | undefined> {
  try {
    const r = await run([python, "-c", INSPECT, ...dists], { check: false, timeoutMs: 60_000 });
    if (r.code !== 0) return undefined;
    return JSON.parse(r.stdout.trim().split("\n").pop()!) as Inspection;
  } catch {
    return undefined;
  }
}

/** The python executable of a virtual environment. */
export function venvPython(venvDir: string): string {
  return join(venvDir, "bin", "python");
}

/** Reads the marker of an environment (undefined when absent or unreadable). */
export async function readVenvMarker(venvDir: string): Promise<VenvMarker | undefined> {
  try {
    const m = await readJson<VenvMarker>(join(venvDir, VENV_MARKER));
    return m?.version === MARKER_VERSION ? m : undefined;
  } catch {
    return undefined;
  }
}

/** The requirements file llama.cpp's HF converter documents (older trees: the top-level one). */
async function requirementsFile(scriptsDir: string): Promise<string> {
  for (
    const f of ["requirements/requirements-convert_hf_to_gguf.txt", "requirements.txt"]
  ) {
    if (await exists(join(scriptsDir, f))) return join(scriptsDir, f);
  }
  throw new UserError(`no llama.cpp requirements file in ${scriptsDir}`, {
    hint: "the instance's Python folder is incomplete; reinstall it with `llama-mgr install`",
  });
}

function isUrl(s: string): boolean {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(s);
}

function compareVersions(a: string, b: string): number {
  const pa = a.split(/[.+]/).map((x) => Number.parseInt(x, 10));
  const pb = b.split(/[.+]/).map((x) => Number.parseInt(x, 10));
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = Number.isNaN(pa[i] ?? 0) ? 0 : pa[i] ?? 0;
    const y = Number.isNaN(pb[i] ?? 0) ? 0 : pb[i] ?? 0;
    if (x !== y) return x - y;
  }
  return 0;
}

/** Torch wheels in a local `--find-links` folder: file names, for the fingerprint and the version choice. */
async function localTorchWheels(findLinks: string | undefined): Promise<string[]> {
  if (!findLinks || isUrl(findLinks)) return [];
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(findLinks)) {
      if (/^torch-[^-]+-.+\.whl$/.test(e.name)) names.push(e.name);
    }
  } catch {
    throw new UserError(`--find-links ${findLinks} is not a readable directory`, {
      hint: "give a folder holding wheel files (e.g. torch-2.13.0+cpu-cp311-...whl) or an http(s) URL",
    });
  }
  return names.sort();
}

/** The highest torch version among local wheels that fit this interpreter and machine. */
function pickLocalTorch(wheels: string[], tag: string): string | undefined {
  const os = Deno.build.os === "darwin" ? "macosx" : Deno.build.os === "windows" ? "win" : "linux";
  const arch = Deno.build.arch === "aarch64" ? /aarch64|arm64/ : /x86_64|amd64/;
  const fits = wheels.map((w) => w.match(/^torch-([^-]+)-([^-]+)-([^-]+)-(.+)\.whl$/))
    .filter((m): m is RegExpMatchArray => !!m)
    .filter((m) => m[2].split(".").includes(tag) && m[4].includes(os) && (arch.test(m[4]) || os === "macosx"))
    .map((m) => m[1]);
  return fits.sort(compareVersions).pop();
}

async function sha256(text: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(d)).map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** The distributions that must be present for the environment to count as complete. */
function requiredDists(set: RequirementSet, torch: PythonOptions["torch"]): string[] {
  const names = set.requirements.map((r) => r.name).filter((n) => n !== "gguf" && n !== "torch");
  if (torch !== "skip") names.push("torch");
  names.push("gguf");
  return names;
}

function complete(inspection: Inspection | undefined, dists: string[]): boolean {
  return !!inspection && dists.every((d) => inspection.dists[d]);
}

function uvHint(): string {
  return "choose where torch comes from: --find-links DIR (a folder with a torch wheel), --index-url URL " +
    "(a private index), --torch-version VER, --torch system (the interpreter's own torch) or --torch skip; " +
    "--offline uses only uv's cache. The same keys go in the config's `python:` section.";
}

/**
 * Creates or repairs the environment. A no-op (marker matches and every required package is present) takes a
 * few milliseconds; a broken interpreter is recreated; a changed option or requirement file reinstalls.
 *
 * @example
 * ```ts ignore
 * const env = await ensureVenv({
 *   venvDir: "/data/instances/cpu/venv",
 *   scriptsDir: "/data/instances/cpu/releases/abc/python",
 *   python: { torch: "cpu", torch_version: "2.13.0", find_links: "/opt/wheels", offline: false },
 * });
 * console.log(env.python, env.torch);
 * ```
 */
export async function ensureVenv(options: VenvOptions): Promise<VenvInfo> {
  const started = performance.now();
  const seconds = () => Math.round((performance.now() - started) / 100) / 10;
  const info = options.onInfo ?? ((l: string) => {
    if (!options.quiet) console.error(l);
  });
  const { venvDir, scriptsDir } = options;
  const opts = options.python;
  const py = venvPython(venvDir);
  if (!(await exists(join(scriptsDir, "convert_hf_to_gguf.py")))) {
    throw new UserError(`${scriptsDir} does not hold llama.cpp's convert_hf_to_gguf.py`, {
      hint: "reinstall the instance (`llama-mgr install`) so its Python scripts are copied",
    });
  }
  const set = await readRequirements(await requirementsFile(scriptsDir));
  const ggufDir = join(scriptsDir, "gguf-py");
  const ggufProject = await Deno.readTextFile(join(ggufDir, "pyproject.toml")).catch(() => "");
  const wheels = await localTorchWheels(opts.find_links);
  const systemSitePackages = opts.torch === "system";
  const fingerprint = await sha256(JSON.stringify({
    v: MARKER_VERSION,
    torch: opts.torch,
    torch_version: opts.torch_version ?? null,
    index_url: opts.index_url ?? null,
    find_links: opts.find_links ?? null,
    python: opts.python ?? null,
    scriptsDir,
    contents: set.contents,
    ggufProject,
    wheels,
  }));
  const dists = requiredDists(set, opts.torch);

  const upToDate = async (): Promise<VenvInfo | undefined> => {
    if (options.force) return undefined;
    const marker = await readVenvMarker(venvDir);
    if (marker?.fingerprint !== fingerprint) return undefined;
    const st = await inspectPython(py, dists);
    if (!complete(st, dists)) return undefined;
    return { python: py, torch: st!.dists.torch ?? undefined, pythonVersion: st!.version, action: "ok" };
  };
  const fast = await upToDate();
  if (fast) return { ...fast, seconds: seconds() };

  return await withLock(`${venvDir}.lock`, `setting up the Python environment ${venvDir}`, async () => {
    const again = await upToDate();
    if (again) return { ...again, seconds: seconds() };
    const marker = await readVenvMarker(venvDir);
    let st = await inspectPython(py, dists);
    let action: "created" | "repaired" = "repaired";
    if (!st || (marker && marker.systemSitePackages !== systemSitePackages)) {
      if (await exists(venvDir)) {
        info(`python environment: ${st ? "recreating" : "repairing broken"} ${venvDir}`);
      }
      await removeAll(venvDir);
      const interpreter = opts.python ?? (systemSitePackages ? which("python3") : undefined);
      info(
        `python environment: creating ${venvDir} with uv${interpreter ? ` (${interpreter})` : ""}` +
          (systemSitePackages ? ", seeing the interpreter's own packages" : ""),
      );
      try {
        await run([
          "uv",
          "venv",
          "--no-project",
          ...(interpreter ? ["--python", interpreter] : []),
          ...(systemSitePackages ? ["--system-site-packages"] : []),
          ...(opts.offline ? ["--offline"] : []),
          venvDir,
        ], { logFile: options.logFile });
      } catch (err) {
        await removeAll(venvDir);
        throw wrapUvError(err, "creating the Python environment");
      }
      st = await inspectPython(py, dists);
      if (!st) throw new UserError(`the new environment's python (${py}) does not run`, { hint: uvHint() });
      action = "created";
    }

    const { lines, torchSpec, uvArgs } = plan(set, opts, wheels, st, ggufDir);
    if (opts.torch === "system" && !st.dists.torch) {
      throw new UserError(
        `python.torch is 'system' but the interpreter ${opts.python ?? "python3"} has no torch installed`,
        { hint: "install torch into that interpreter, or pass --python PY for one that has it; " + uvHint() },
      );
    }
    const reqPath = join(venvDir, "llama-mgr-requirements.txt");
    await writeFileAtomic(reqPath, lines.join("\n") + "\n");
    info(
      `python environment: installing ${
        torchSpec ? `${torchSpec} and ` : opts.torch === "system" ? `(system torch ${st.dists.torch}) ` : ""
      }llama.cpp's conversion requirements with uv`,
    );
    try {
      await run([
        "uv",
        "pip",
        "install",
        "--python",
        py,
        "-r",
        reqPath,
        ...uvArgs,
        ...(opts.offline ? ["--offline"] : []),
      ], {
        logFile: options.logFile,
        tailLines: 25,
        env: { UV_NO_PROGRESS: "1" },
        onLine: (l) => {
          if (/^(Resolved|Prepared|Installed|Uninstalled|Audited) \d+ package/.test(l.trim())) {
            info(`python environment: ${l.trim()}`);
          }
        },
      });
    } catch (err) {
      throw wrapUvError(err, "installing the conversion requirements");
    }
    st = await inspectPython(py, dists);
    const missing = dists.filter((d) => !st?.dists[d]);
    if (!st || missing.length) {
      throw new UserError(`after uv's install, ${missing.join(", ")} is still missing in ${venvDir}`, {
        hint: uvHint(),
      });
    }
    const record: VenvMarker = {
      version: MARKER_VERSION,
      fingerprint,
      options: opts,
      scriptsDir,
      systemSitePackages,
      installed: st.dists,
      pythonVersion: st.version,
      at: new Date().toISOString(),
    };
    await writeJsonAtomic(join(venvDir, VENV_MARKER), record);
    info(
      `python environment: ready (Python ${st.version}, torch ${st.dists.torch ?? "none"}, ` +
        `transformers ${st.dists.transformers ?? "none"}) in ${seconds()}s`,
    );
    return {
      python: py,
      torch: st.dists.torch ?? undefined,
      pythonVersion: st.version,
      action,
      seconds: seconds(),
    };
  }, { wait: true, onWait: (h) => info(`waiting for ${h.what} (pid ${h.pid})`) });
}

/** The requirement lines and uv arguments for these options. */
function plan(
  set: RequirementSet,
  opts: PythonOptions,
  wheels: string[],
  st: Inspection,
  ggufDir: string,
): { lines: string[]; torchSpec?: string; uvArgs: string[] } {
  const llamaTorch: Requirement | undefined = set.requirements.find((r) => r.name === "torch");
  let torchSpec: string | undefined;
  const uvArgs: string[] = [];
  if (opts.torch === "cpu" || opts.torch === "auto") {
    const local = pickLocalTorch(wheels, st.tag);
    if (opts.torch_version) {
      torchSpec = /^[<>=!~]/.test(opts.torch_version)
        ? `torch${opts.torch_version}`
        : `torch==${opts.torch_version}`;
    } else if (local) {
      torchSpec = `torch==${local}`;
    } else if (opts.torch === "cpu") {
      const pin = llamaTorch ? pinnedVersion(llamaTorch.spec) : undefined;
      torchSpec = pin ? `torch==${pin}` : "torch";
    } else {
      torchSpec = llamaTorch?.spec ?? "torch";
    }
    if (opts.torch === "auto") {
      for (const o of set.indexOptions) uvArgs.push(...o.split(" "));
    } else if (!opts.index_url && !opts.find_links) {
      uvArgs.push("--extra-index-url", PYTORCH_CPU_INDEX);
    }
  }
  if (opts.index_url) uvArgs.push("--extra-index-url", opts.index_url);
  if (opts.find_links) uvArgs.push("--find-links", opts.find_links);
  const lines = [
    "# written by llama-mgr from llama.cpp's requirements, with the torch choice applied",
    ...(torchSpec ? [torchSpec] : []),
    ...set.requirements.filter((r) => r.name !== "torch" && r.name !== "gguf").map((r) => r.spec),
    ggufDir,
  ];
  return { lines, torchSpec, uvArgs };
}

function wrapUvError(err: unknown, step: string): Error {
  if (err instanceof CommandError) {
    const tail = err.tail.filter((l) => l.trim()).slice(-12).join("\n");
    return new UserError(`uv failed while ${step}:\n${tail}`, { hint: uvHint(), cause: err });
  }
  return err as Error;
}
