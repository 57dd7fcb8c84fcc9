/**
 * Hugging Face model folder -> GGUF with the instance's own `convert_hf_to_gguf.py`, run in the instance's uv
 * environment (created or repaired first). The output lands in the models folder under a name derived from
 * the model, written to a hidden temporary folder and renamed only when the converter succeeded.
 *
 * @module
 */
import { basename, dirname, join, resolve } from "node:path";
import type { Paths } from "../config/paths.ts";
import type { PythonOptions } from "../config/schema.ts";
import { instanceDir, type InstanceRecord } from "../llamacpp/instances.ts";
import { ensureVenv, readVenvMarker, type VenvInfo } from "../python/venv.ts";
import { exists, expandHome, writeJsonAtomic } from "../util/fs.ts";
import { UserError } from "../util/errors.ts";
import { CommandError, run } from "../util/run.ts";
import type { Progress } from "../util/progress.ts";
import { withTempOutput } from "./output.ts";

/** The output types `convert_hf_to_gguf.py` writes. */
export const CONVERT_OUTTYPES = ["f32", "f16", "bf16", "q8_0", "tq1_0", "tq2_0", "auto"] as const;

/** One of {@linkcode CONVERT_OUTTYPES}. */
export type ConvertOuttype = typeof CONVERT_OUTTYPES[number];

/** Options for {@linkcode convertModel}. */
export interface ConvertOptions {
  /** A Hugging Face model folder, or `hf:Org/Name[@revision]` for a snapshot in the Hugging Face cache. */
  source: string;
  /** The instance whose scripts and environment are used. */
  instance: InstanceRecord;
  /** Data locations (models folder, instance folder). */
  paths: Paths;
  /** Python choices; default: what the environment was made with, else `fallbackPython`. */
  python?: PythonOptions;
  /** Python choices when the environment does not exist yet and `python` is not given (the config's). */
  fallbackPython?: PythonOptions;
  /** Output type (default `auto`: bf16 for bf16 weights, else f16). */
  outtype?: ConvertOuttype;
  /** Model name, e.g. `qwen2.5:0.5b`: file name and the name the index shows (basename:size). */
  name?: string;
  /** Output file (default: the models folder, `<name>-<TYPE>.gguf`). */
  output?: string;
  /** Replace an existing output. */
  force?: boolean;
  /** Extra arguments for `convert_hf_to_gguf.py`. */
  extraArgs?: string[];
  /** Status lines. */
  onInfo?: (line: string) => void;
  /** Progress of writing tensors. */
  progress?: Progress;
  /** Full output of uv and the converter is appended here. */
  logFile?: string;
  /** Environment for the Hugging Face cache lookup (default: the process's). */
  env?: Record<string, string | undefined>;
}

/** What {@linkcode convertModel} wrote. */
export interface ConvertResult {
  /** The GGUF file (first part when split). */
  path: string;
  /** Every file written. */
  files: string[];
  /** The model folder converted. */
  sourceDir: string;
  /** The output type as the converter resolved it (`F16`, `BF16`...). */
  outtype: string;
  /** The Python environment used. */
  venv: VenvInfo;
  /** Seconds spent converting (environment excluded). */
  seconds: number;
}

/** The Hugging Face hub cache folder (`$HF_HUB_CACHE`, `$HF_HOME/hub`, `~/.cache/huggingface/hub`). */
export function hfHubCache(env: Record<string, string | undefined> = Deno.env.toObject()): string {
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE;
  if (env.HF_HOME) return join(env.HF_HOME, "hub");
  const xdg = env.XDG_CACHE_HOME ?? join(env.HOME ?? "/root", ".cache");
  return join(xdg, "huggingface", "hub");
}

/**
 * Resolves `hf:Org/Name[@revision]` to a snapshot folder in the Hugging Face cache, or a path to itself.
 *
 * @example
 * ```ts ignore
 * await resolveSource("hf:Qwen/Qwen2.5-0.5B-Instruct"); // ~/.cache/huggingface/hub/models--Qwen--.../snapshots/<rev>
 * ```
 */
export async function resolveSource(
  source: string,
  env: Record<string, string | undefined> = Deno.env.toObject(),
): Promise<{ dir: string; repo?: string }> {
  const m = source.match(/^(?:hf:|hf\.co\/|huggingface\.co\/)([\w.-]+)\/([\w.-]+?)(?:@([\w./-]+))?$/);
  if (!m) {
    const dir = resolve(expandHome(source));
    if (!(await exists(dir))) {
      throw new UserError(`model folder '${source}' does not exist`, {
        hint: "give a Hugging Face model folder (config.json, *.safetensors, tokenizer files) or " +
          "hf:Org/Name for a model already in the Hugging Face cache",
      });
    }
    if (!(await Deno.stat(dir)).isDirectory || !(await exists(join(dir, "config.json")))) {
      throw new UserError(`'${source}' is not a Hugging Face model folder (no config.json)`, {
        hint: "convert takes the folder holding config.json and the weights; to re-quantize a GGUF use " +
          "`llama-mgr quantize`",
      });
    }
    return { dir };
  }
  const [, org, name, rev] = m;
  const hub = hfHubCache(env);
  const repoDir = join(hub, `models--${org}--${name}`);
  if (!(await exists(repoDir))) {
    throw new UserError(`${org}/${name} is not in the Hugging Face cache (${hub})`, {
      hint:
        `download it first (\`hf download ${org}/${name}\` or \`huggingface-cli download ${org}/${name}\`), ` +
        "or set HF_HOME / HF_HUB_CACHE to the cache that holds it",
    });
  }
  let snapshot: string | undefined;
  const ref = rev ?? "main";
  const refFile = join(repoDir, "refs", ref);
  if (await exists(refFile)) snapshot = (await Deno.readTextFile(refFile)).trim();
  else if (rev && await exists(join(repoDir, "snapshots", rev))) snapshot = rev;
  else if (!rev) {
    let newest = -1;
    const entries = await Array.fromAsync(Deno.readDir(join(repoDir, "snapshots"))).catch(() => []);
    for (const e of entries) {
      const st = await Deno.stat(join(repoDir, "snapshots", e.name));
      if ((st.mtime?.getTime() ?? 0) > newest) {
        newest = st.mtime?.getTime() ?? 0;
        snapshot = e.name;
      }
    }
  }
  const dir = snapshot ? join(repoDir, "snapshots", snapshot) : undefined;
  if (!dir || !(await exists(join(dir, "config.json")))) {
    throw new UserError(`no complete snapshot of ${org}/${name}${rev ? `@${rev}` : ""} in ${repoDir}`, {
      hint: `download it again: \`hf download ${org}/${name}\``,
    });
  }
  return { dir, repo: `${org}/${name}` };
}

/** The file-name base for a `--name` such as `qwen2.5:0.5b` (`qwen2.5-0.5b`). */
export function fileBase(name: string): string {
  return name.replace(/[:/\\\s]+/g, "-").replace(/[^\w.+-]/g, "").replace(/^[-.]+|[-.]+$/g, "") || "model";
}

/** The instance's conversion environment folder (recorded, or `<instance>/venv`). */
export function instanceVenvDir(paths: Paths, instance: InstanceRecord): string {
  return instance.venvDir ?? join(instanceDir(paths, instance.name), "venv");
}

/** Creates or repairs the instance's conversion environment, reusing the options it was made with. */
export async function ensureInstanceVenv(
  paths: Paths,
  instance: InstanceRecord,
  options: {
    python?: PythonOptions;
    fallbackPython?: PythonOptions;
    onInfo?: (l: string) => void;
    logFile?: string;
  },
): Promise<VenvInfo> {
  if (!instance.pythonDir || !(await exists(join(instance.pythonDir, "convert_hf_to_gguf.py")))) {
    throw new UserError(`instance '${instance.name}' has no llama.cpp Python scripts`, {
      hint: `reinstall it: \`llama-mgr install -i ${instance.name}\``,
    });
  }
  const venvDir = instanceVenvDir(paths, instance);
  const marker = await readVenvMarker(venvDir);
  const python = options.python ?? marker?.options ?? options.fallbackPython ??
    { torch: "cpu", offline: false };
  if (python.torch === "skip") {
    throw new UserError(`the Python environment of '${instance.name}' is set to skip torch`, {
      hint:
        "convert_hf_to_gguf.py needs torch: pass --torch cpu (with --find-links DIR or --index-url URL) " +
        "or --torch system",
    });
  }
  return await ensureVenv({
    venvDir,
    scriptsDir: instance.pythonDir,
    python,
    onInfo: options.onInfo ?? (() => {}),
    logFile: options.logFile,
  });
}

const NOISE = /^\s*(Writing:|\d+%\||INFO:|$)/;

/**
 * Converts a Hugging Face model folder to GGUF.
 *
 * @example
 * ```ts ignore
 * const r = await convertModel({ source: "~/hf/all-MiniLM-L6-v2", instance, paths, outtype: "f16" });
 * console.log(r.path); // <data>/models/all-MiniLM-L6-v2-F16.gguf
 * ```
 */
export async function convertModel(options: ConvertOptions): Promise<ConvertResult> {
  const info = options.onInfo ?? (() => {});
  const { dir: sourceDir, repo } = await resolveSource(options.source, options.env);
  const outtype = options.outtype ?? "auto";
  if (!CONVERT_OUTTYPES.includes(outtype)) {
    throw new UserError(`--outtype '${outtype}' is not one of ${CONVERT_OUTTYPES.join(", ")}`);
  }
  const venv = await ensureInstanceVenv(options.paths, options.instance, {
    python: options.python,
    fallbackPython: options.fallbackPython,
    onInfo: info,
    logFile: options.logFile,
  });
  const scriptsDir = options.instance.pythonDir!;
  const base = options.name
    ? fileBase(options.name)
    : fileBase(repo ? repo.split("/")[1] : basename(sourceDir));
  const output = options.output ? resolve(expandHome(options.output)) : undefined;
  const outDir = output ? dirname(output) : options.paths.modelsDir;
  if (output && !output.toLowerCase().endsWith(".gguf")) {
    throw new UserError(`output '${options.output}' must end in .gguf`);
  }
  // The final name is known before the run unless the type is `auto`; check it early when it is.
  const known = outtype !== "auto"
    ? (output ?? join(outDir, `${base}-${outtype.toUpperCase()}.gguf`))
    : undefined;
  if (known && !options.force && await exists(known)) {
    throw new UserError(`${known} already exists`, {
      hint: "pass --force to replace it, or -o/--name for another",
    });
  }
  const started = performance.now();
  let resolvedType = outtype.toUpperCase();
  const files = await withTempOutput(outDir, "convert", async ({ dir, signal }) => {
    const args = ["--outtype", outtype, "--outfile", join(dir, `${base}-{FTYPE}.gguf`)];
    if (options.name) {
      const [n, tag] = options.name.split(":");
      const meta: Record<string, string | null> = { "general.name": n, "general.basename": n };
      if (tag) {
        meta["general.size_label"] = tag;
        meta["general.finetune"] = null;
      }
      const metaFile = join(dir, "metadata.json");
      await writeJsonAtomic(metaFile, meta);
      args.push("--metadata", metaFile);
    }
    info(`converting ${sourceDir} (${outtype}) with ${options.instance.name}'s convert_hf_to_gguf.py`);
    const stderrTail: string[] = [];
    try {
      await run([
        venv.python,
        join(scriptsDir, "convert_hf_to_gguf.py"),
        ...args,
        ...(options.extraArgs ?? []),
        sourceDir,
      ], {
        cwd: scriptsDir,
        signal,
        logFile: options.logFile,
        tailLines: 40,
        env: { PYTHONUNBUFFERED: "1", TQDM_MININTERVAL: "0.5" },
        onLine: (line) => {
          const w = line.match(/Writing:\s+(\d+)%/);
          if (w) options.progress?.update(Number(w[1]), 100, "writing tensors");
          const arch = line.match(/Model architecture: (\S+)/);
          if (arch) info(`architecture: ${arch[1]}`);
          if (!NOISE.test(line) || /^(ERROR|WARNING)/.test(line)) {
            stderrTail.push(line);
            if (stderrTail.length > 12) stderrTail.shift();
          }
        },
      });
    } catch (err) {
      if (signal.aborted) throw err;
      if (err instanceof CommandError) {
        const reason = stderrTail.filter((l) => l.trim()).slice(-8).join("\n") ||
          err.tail.slice(-8).join("\n");
        throw new UserError(`convert_hf_to_gguf.py failed on ${sourceDir}:\n${reason}`, {
          hint: /not supported|NotImplementedError/.test(reason)
            ? "this llama.cpp version cannot convert that architecture; a newer instance may " +
              "(`llama-mgr install --update-only`)"
            : `no output was written${options.logFile ? `; full log: ${options.logFile}` : ""}`,
          cause: err,
        });
      }
      throw err;
    }
    const written: string[] = [];
    for await (const e of Deno.readDir(dir)) if (e.name.endsWith(".gguf")) written.push(e.name);
    written.sort();
    if (!written.length) throw new UserError(`convert_hf_to_gguf.py wrote no GGUF file for ${sourceDir}`);
    resolvedType = written[0].slice(base.length + 1).replace(/(-\d{5}-of-\d{5})?\.gguf$/, "");
    const moves = written.map((f) => ({
      from: join(dir, f),
      to: output && written.length === 1 ? output : join(outDir, f),
    }));
    for (const m of moves) {
      if (!options.force && await exists(m.to)) {
        throw new UserError(`${m.to} already exists`, {
          hint: "pass --force to replace it, or -o/--name for another",
        });
      }
    }
    return moves;
  });
  options.progress?.done(`wrote ${files.length === 1 ? files[0] : `${files.length} files`}`);
  return {
    path: files[0],
    files,
    sourceDir,
    outtype: resolvedType,
    venv,
    seconds: Math.round((performance.now() - started) / 100) / 10,
  };
}
