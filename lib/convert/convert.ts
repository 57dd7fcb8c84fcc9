/**
 * Converting a Hugging Face model folder to GGUF with the instance's own `convert_hf_to_gguf.py`, in the
 * instance's uv environment (made or repaired on the way), into the models folder under a good name.
 *
 * @module
 */
import { basename, join } from "node:path";
import type { Paths } from "../config/paths.ts";
import type { PythonOptions } from "../config/schema.ts";
import {
  instanceDir,
  instanceLockPath,
  type InstanceRecord,
  readInstance,
  writeInstance,
} from "../llamacpp/instances.ts";
import { withLock } from "../util/lock.ts";
import { ensureVenv } from "../python/venv.ts";
import { hfHubDir } from "../models/sources.ts";
import { exists, expandHome } from "../util/fs.ts";
import { UserError } from "../util/errors.ts";
import { CommandError, run, toolFailure } from "../util/run.ts";
import { writeThroughTemp } from "./output.ts";

/**
 * Output types convert_hf_to_gguf.py writes.
 *
 * @example
 * ```ts
 * OUTTYPES.includes("bf16"); // true
 * ```
 */
export const OUTTYPES = ["f32", "f16", "bf16", "q8_0", "tq1_0", "tq2_0", "auto"];

/**
 * Finds the model folder: a path, or `hf:Org/Name` in the Hugging Face cache (the snapshot `refs/main` names,
 * else the newest).
 */
export async function resolveSource(
  source: string,
  env: Record<string, string | undefined> = Deno.env.toObject(),
): Promise<string> {
  if (source.startsWith("hf:")) {
    const repo = source.slice(3);
    const m = repo.match(/^([\w.-]+)\/([\w.-]+)$/);
    if (!m) throw new UserError(`'${source}' is not hf:Org/Name`);
    const dir = join(hfHubDir(env), `models--${m[1]}--${m[2]}`);
    const ref = await Deno.readTextFile(join(dir, "refs", "main")).then((s) => s.trim()).catch(() =>
      undefined
    );
    let snap = ref ? join(dir, "snapshots", ref) : undefined;
    if (!snap || !(await exists(snap))) {
      const snaps: { path: string; mtime: number }[] = [];
      try {
        for await (const e of Deno.readDir(join(dir, "snapshots"))) {
          const p = join(dir, "snapshots", e.name);
          snaps.push({ path: p, mtime: (await Deno.stat(p)).mtime?.getTime() ?? 0 });
        }
      } catch { /* none */ }
      snap = snaps.sort((a, b) => b.mtime - a.mtime)[0]?.path;
    }
    if (!snap) {
      throw new UserError(`${repo} is not in the Hugging Face cache (${hfHubDir(env)})`, {
        hint: `download it first, e.g. \`huggingface-cli download ${repo}\`, or give the folder's path`,
      });
    }
    source = snap;
  }
  const dir = expandHome(source);
  if (!(await exists(join(dir, "config.json")))) {
    throw new UserError(`${source} is not a Hugging Face model folder (no config.json)`, {
      hint: "give the folder holding config.json, the weights (*.safetensors or *.bin) and the tokenizer",
    });
  }
  return dir;
}

/**
 * The output file name for a model folder and type: `all-minilm-l6-v2-f16.gguf`, or from `--name`. A Hugging
 * Face cache snapshot (`models--Org--Name/snapshots/<rev>`) is named after the repository, not the revision.
 */
export function convertedName(folder: string, outtype: string, name?: string): string {
  const trimmed = folder.replace(/\/+$/, "");
  const cached = trimmed.match(/(?:^|\/)models--[^/]+?--([^/]+)\/snapshots\/[^/]+$/);
  const base = (name ?? (cached ? cached[1] : basename(trimmed))).toLowerCase().replace(/[:/\s]+/g, "-")
    .replace(
      /[^a-z0-9._-]/g,
      "",
    );
  return `${base}-${outtype === "auto" ? "auto" : outtype}.gguf`;
}

/**
 * Options for {@linkcode convertModel}.
 *
 * @example
 * ```ts ignore
 * const options: ConvertOptions = {
 *   instance: await getInstance(paths),
 *   source: "hf:Qwen/Qwen2.5-0.5B-Instruct",
 *   outtype: "bf16",
 *   python: config.python,
 * };
 * ```
 */
export interface ConvertOptions {
  /** The instance whose scripts and environment convert. */
  instance: InstanceRecord;
  /** A model folder or `hf:Org/Name`. */
  source: string;
  /** Output type (default f16). */
  outtype?: string;
  /** Name for the output (and general.name). */
  name?: string;
  /** Output file (default: the models folder). */
  output?: string;
  /** Torch and index choices for the environment. */
  python: PythonOptions;
  /** Log file. */
  logFile?: string;
  /** Status lines. */
  onInfo?: (text: string) => void;
  /** Progress in percent of the writing step. */
  onProgress?: (percent: number) => void;
  /** Progress of making or repairing the Python environment (uv's phases, see `ensureVenv`). */
  onVenvProgress?: (phase: number, total: number, text: string) => void;
  /** Environment for finding the HF cache. */
  env?: Record<string, string | undefined>;
}

/**
 * Converts a model.
 *
 * @example
 * ```ts ignore
 * const r = await convertModel(paths, { instance, source: "~/hf/Qwen2.5-0.5B-Instruct", python: config.python });
 * ```
 */
export async function convertModel(
  paths: Paths,
  options: ConvertOptions,
): Promise<{ output: string; seconds: number }> {
  const outtype = (options.outtype ?? "f16").toLowerCase();
  if (!OUTTYPES.includes(outtype)) {
    throw new UserError(`--outtype '${options.outtype}' is not one of ${OUTTYPES.join(", ")}`, {
      hint: "convert writes f16/bf16/q8_0; other types come from `llama-mgr quantize`",
    });
  }
  const folder = await resolveSource(options.source, options.env);
  const inst = options.instance;
  if (!inst.pythonDir || !(await exists(join(inst.pythonDir, "convert_hf_to_gguf.py")))) {
    throw new UserError(`instance '${inst.name}' has no convert_hf_to_gguf.py`, {
      hint: `reinstall it: llama-mgr install -i ${inst.name}`,
    });
  }
  const output = options.output ?? join(paths.modelsDir, convertedName(folder, outtype, options.name));
  // The environment lives in the instance's folder, named by its real path: a data dir can reach an instance
  // through a symlink, and the record must not keep that other path (nor one that is gone).
  const home = await Deno.realPath(instanceDir(paths, inst.name)).catch(() => instanceDir(paths, inst.name));
  const venvDir = inst.venvDir?.startsWith(`${home}/`) ? inst.venvDir : join(home, "venv");
  const env = await ensureVenv({
    venvDir,
    scriptsDir: inst.pythonDir,
    python: options.python,
    logFile: options.logFile,
    onInfo: options.onInfo,
    onProgress: options.onVenvProgress,
  });
  if (inst.venvDir !== venvDir || inst.withPython === false) {
    // Under the instance's lock and on the record as it is now, so an install or rollback that ran meanwhile
    // is not undone. While one runs, the record is left as it is: the environment's path is found again.
    await withLock(instanceLockPath(paths, inst.name), `convert's update of '${inst.name}'`, async () => {
      const now = await readInstance(paths, inst.name);
      if (now) await writeInstance(paths, { ...now, venvDir, withPython: true });
    }).catch((err) => {
      if (!(err instanceof UserError)) throw err;
    });
  }
  await Deno.mkdir(join(output, ".."), { recursive: true });
  const t0 = performance.now();
  const cleanup: string[] = [];
  try {
    await writeThroughTemp(output, async (tmp, signal) => {
      const args = [
        env.python,
        join(inst.pythonDir!, "convert_hf_to_gguf.py"),
        folder,
        "--outfile",
        tmp,
        "--outtype",
        outtype,
      ];
      if (options.name) {
        // `--name qwen2.5:0.5b` must make the index call the output `qwen2.5:0.5b-f16` (basename:size-type), so
        // the name is written as general.basename and general.size_label (no finetune), not only general.name.
        const [basename, size] = options.name.split(":");
        const meta: Record<string, string | null> = {
          "general.name": options.name,
          "general.basename": basename,
        };
        if (size) Object.assign(meta, { "general.size_label": size, "general.finetune": null });
        const metaFile = `${tmp}.metadata.json`;
        await Deno.writeTextFile(metaFile, JSON.stringify(meta));
        cleanup.push(metaFile);
        args.push("--metadata", metaFile);
      }
      try {
        await run(args, {
          logFile: options.logFile,
          signal,
          tailLines: 30,
          env: { PYTHONUNBUFFERED: "1", HF_HUB_OFFLINE: "1" },
          onLine: (l) => {
            const m = l.match(/Writing:\s+(\d+)%/);
            if (m) options.onProgress?.(Number(m[1]));
          },
        });
      } catch (err) {
        if (err instanceof CommandError) {
          const tail = err.tail.filter((l) => l.trim());
          const reason = tail.filter((l) => /Error|error:|not supported|NotImplemented|Exception/.test(l))
            .slice(-4);
          throw toolFailure("convert_hf_to_gguf.py", err, {
            reason,
            tail,
            hint: /not supported|NotImplementedError|Unrecognized/i.test(tail.join("\n"))
              ? "this llama.cpp version cannot convert this architecture; a newer one might (llama-mgr install --update-only)"
              : undefined,
          });
        }
        throw err;
      }
    });
  } finally {
    for (const f of cleanup) await Deno.remove(f).catch(() => {});
  }
  return { output, seconds: (performance.now() - t0) / 1000 };
}
