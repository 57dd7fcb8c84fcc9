/**
 * GGUF -> quantized GGUF with the instance's `llama-quantize`: the type is checked against what that binary
 * supports, the output is `<model>-<TYPE>.gguf` in the models folder, free disk space is checked against an
 * estimate first, progress comes from llama-quantize's per-tensor lines, and the output appears only whole.
 *
 * @module
 */
import { basename, dirname, join, resolve } from "node:path";
import type { Paths } from "../config/paths.ts";
import { binaryPath, type InstanceRecord } from "../llamacpp/instances.ts";
import { exists, expandHome, formatBytes } from "../util/fs.ts";
import { UserError } from "../util/errors.ts";
import { CommandError, run } from "../util/run.ts";
import type { Progress } from "../util/progress.ts";
import { freeBytes, withTempOutput } from "./output.ts";

/** One quantization type `llama-quantize` accepts. */
export interface QuantType {
  /** The type's name, e.g. `Q4_K_M`. */
  name: string;
  /** llama.cpp's file-type number (undefined for `COPY`). */
  id?: number;
  /** llama-quantize's description (size and perplexity figures, bpw). */
  description: string;
}

/** Parses the "allowed quantization types" list of `llama-quantize --help`. */
export function parseQuantTypes(help: string): QuantType[] {
  const out: QuantType[] = [];
  const start = help.search(/allowed quantization types/i);
  if (start < 0) return out;
  for (const line of help.slice(start).split("\n")) {
    const m = line.match(/^\s*(\d+)\s+or\s+([A-Z0-9_]+)\s*:\s*(.*)$/);
    if (m) out.push({ id: Number(m[1]), name: m[2], description: m[3].trim() });
    const c = line.match(/^\s+(COPY)\s*:\s*(.*)$/);
    if (c) out.push({ name: c[1], description: c[2].trim() });
  }
  return out;
}

/**
 * The quantization types this instance's `llama-quantize` supports.
 *
 * @example
 * ```ts ignore
 * const types = await listQuantTypes(instance);
 * types.map((t) => t.name); // ["Q1_0", ..., "Q4_K_M", ..., "F32", "COPY"]
 * ```
 */
export async function listQuantTypes(instance: InstanceRecord): Promise<QuantType[]> {
  const bin = binaryPath(instance, "llama-quantize");
  if (!(await exists(bin))) {
    throw new UserError(`instance '${instance.name}' has no llama-quantize`, {
      hint:
        `rebuild it with the target: \`llama-mgr install -i ${instance.name}\` (all targets are built by default)`,
    });
  }
  const r = await run([bin, "--help"], { check: false, timeoutMs: 30_000 });
  const types = parseQuantTypes(r.stdout + "\n" + r.stderr);
  if (!types.length) throw new Error(`could not read the quantization types from \`${bin} --help\``);
  return types;
}

/** Bits per weight of common types, for the disk-space estimate. */
const BPW: Record<string, number> = {
  F32: 32,
  F16: 16,
  BF16: 16,
  Q8_0: 8.5,
  Q6_K: 6.56,
  Q5_K_M: 5.7,
  Q5_K_S: 5.54,
  Q5_K: 5.7,
  Q5_1: 6,
  Q5_0: 5.5,
  Q4_K_M: 4.9,
  Q4_K: 4.9,
  Q4_K_S: 4.6,
  Q4_1: 5,
  Q4_0: 4.5,
  IQ4_NL: 4.5,
  IQ4_XS: 4.25,
  Q3_K_L: 4.3,
  Q3_K_M: 3.9,
  Q3_K: 3.9,
  Q3_K_S: 3.5,
  Q2_K: 3.0,
  Q2_K_S: 3.0,
};

/** Estimated output size: parameters x bits per weight (from the table, else the type's `N bpw`), plus slack. */
export function estimateQuantizedBytes(
  params: number,
  type: QuantType,
  inputBytes: number,
): number {
  const bpw = BPW[type.name] ?? Number(type.description.match(/([\d.]+)\s*bpw/)?.[1] ?? NaN);
  if (type.name === "COPY" || !params || !Number.isFinite(bpw)) return inputBytes;
  // Small models keep token embeddings and norms at higher precision: never estimate below a quarter input.
  return Math.max(Math.round((params * bpw) / 8 * 1.1) + 16 * 2 ** 20, Math.round(inputBytes / 4));
}

const QUANT_SUFFIX = /[-_.](i?q\d[a-z0-9_]*|f16|f32|bf16|mxfp4[a-z0-9_]*|tq\d_\d)$/i;

/** The output file name for a model file and a type: `Qwen3-4B-F16.gguf` + Q4_K_M -> `Qwen3-4B-Q4_K_M.gguf`. */
export function quantizedFileName(input: string, type: string): string {
  const base = basename(input).replace(/\.gguf$/i, "").replace(/-\d{5}-of-\d{5}$/, "").replace(
    QUANT_SUFFIX,
    "",
  );
  return `${base}-${type.toUpperCase()}.gguf`;
}

/** Options for {@linkcode quantizeModel}. */
export interface QuantizeOptions {
  /** The input GGUF file. */
  input: string;
  /** Its parameter count (for the disk estimate; 0 when unknown). */
  parameterCount?: number;
  /** Its file type (`F16`, `Q4_1`...), to refuse requantizing without `allowRequantize`. */
  fileType?: string;
  /** Target type, any case (`q4_k_m`). */
  type: string;
  /** The instance whose `llama-quantize` runs. */
  instance: InstanceRecord;
  /** Data locations (models folder). */
  paths: Paths;
  /** Output file (default: the models folder, `<model>-<TYPE>.gguf`). */
  output?: string;
  /** Importance matrix file (`--imatrix`). */
  imatrix?: string;
  /** Allow requantizing an already quantized model. */
  allowRequantize?: boolean;
  /** Replace an existing output. */
  force?: boolean;
  /** Threads (default: llama-quantize's, all cores). */
  threads?: number;
  /** Extra llama-quantize flags (before the file arguments). */
  extraArgs?: string[];
  /** Status lines. */
  onInfo?: (line: string) => void;
  /** Per-tensor progress. */
  progress?: Progress;
  /** Full output appended here. */
  logFile?: string;
}

/** What {@linkcode quantizeModel} wrote. */
export interface QuantizeResult {
  /** The output file. */
  path: string;
  /** The type, as llama-quantize names it. */
  type: string;
  /** Bytes written. */
  sizeBytes: number;
  /** The estimate checked against free space. */
  estimateBytes: number;
  /** Seconds spent. */
  seconds: number;
}

const UNQUANTIZED = /^(f32|f16|bf16|all_f32|mostly_f16|mostly_bf16)$/i;

/**
 * Quantizes a GGUF file.
 *
 * @example
 * ```ts ignore
 * const r = await quantizeModel({ input: "/models/MiniLM-F16.gguf", type: "q8_0", instance, paths });
 * console.log(r.path); // /models/MiniLM-Q8_0.gguf
 * ```
 */
export async function quantizeModel(options: QuantizeOptions): Promise<QuantizeResult> {
  const info = options.onInfo ?? (() => {});
  const types = await listQuantTypes(options.instance);
  const type = types.find((t) => t.name.toLowerCase() === options.type.toLowerCase());
  if (!type) {
    throw new UserError(
      `'${options.type}' is not a quantization type of instance '${options.instance.name}'`,
      {
        hint: `supported: ${
          types.map((t) => t.name).join(", ")
        } (\`llama-mgr quantize --list\` describes them)`,
      },
    );
  }
  const input = resolve(expandHome(options.input));
  if (!(await exists(input))) throw new UserError(`model file ${input} does not exist`);
  if (options.imatrix && !(await exists(resolve(expandHome(options.imatrix))))) {
    throw new UserError(`importance matrix ${options.imatrix} does not exist`, {
      hint: "make one with `llama-mgr imatrix MODEL -f calibration.txt`",
    });
  }
  if (
    options.fileType && !UNQUANTIZED.test(options.fileType) && !options.allowRequantize &&
    type.name !== "COPY"
  ) {
    throw new UserError(`${basename(input)} is already quantized (${options.fileType})`, {
      hint: "quantize from the F16/BF16/F32 file for best quality, or pass --allow-requantize",
    });
  }
  const output = options.output
    ? resolve(expandHome(options.output))
    : join(options.paths.modelsDir, quantizedFileName(input, type.name));
  if (output === input) {
    throw new UserError("the output would replace the input", { hint: "give another output with -o" });
  }
  if (!options.force && await exists(output)) {
    throw new UserError(`${output} already exists`, {
      hint: "pass --force to replace it, or -o for another",
    });
  }
  const inputBytes = (await Deno.stat(input)).size;
  const estimate = estimateQuantizedBytes(options.parameterCount ?? 0, type, inputBytes);
  const outDir = dirname(output);
  const free = await freeBytes(outDir);
  if (free !== undefined && free < estimate) {
    throw new UserError(
      `not enough disk space in ${outDir}: ${formatBytes(free)} free, about ${formatBytes(estimate)} needed`,
      { hint: "free some space, or write elsewhere with -o" },
    );
  }
  const started = performance.now();
  info(`quantizing ${basename(input)} to ${type.name} (about ${formatBytes(estimate)})`);
  const [path] = await withTempOutput(outDir, "quantize", async ({ dir, signal }) => {
    const tmp = join(dir, basename(output));
    const args = [
      ...(options.allowRequantize ? ["--allow-requantize"] : []),
      ...(options.imatrix ? ["--imatrix", resolve(expandHome(options.imatrix))] : []),
      ...(options.extraArgs ?? []),
      input,
      tmp,
      type.name,
      ...(options.threads ? [String(options.threads)] : []),
    ];
    const reasons: string[] = [];
    try {
      await run([binaryPath(options.instance, "llama-quantize"), ...args], {
        signal,
        logFile: options.logFile,
        tailLines: 30,
        onLine: (line) => {
          const m = line.match(/^\[\s*(\d+)\/\s*(\d+)\]\s+(\S+)/);
          if (m) options.progress?.update(Number(m[1]), Number(m[2]), m[3]);
          else if (/error|failed|cannot|unable|invalid|disabled/i.test(line)) {
            reasons.push(line.trim());
            if (reasons.length > 8) reasons.shift();
          }
        },
      });
    } catch (err) {
      if (signal.aborted) throw err;
      if (err instanceof CommandError) {
        const reason = (reasons.length ? reasons : err.tail.slice(-8)).join("\n");
        throw new UserError(`llama-quantize failed on ${basename(input)}:\n${reason}`, {
          hint: /no space|ENOSPC/i.test(reason)
            ? "the disk filled up; free space or write elsewhere with -o (no output was kept)"
            : `no output was written${options.logFile ? `; full log: ${options.logFile}` : ""}`,
          cause: err,
        });
      }
      throw err;
    }
    if (!(await exists(tmp))) throw new UserError("llama-quantize exited without writing its output");
    return [{ from: tmp, to: output }];
  });
  const sizeBytes = (await Deno.stat(path)).size;
  options.progress?.done(`wrote ${path} (${formatBytes(sizeBytes)})`);
  return {
    path,
    type: type.name,
    sizeBytes,
    estimateBytes: estimate,
    seconds: Math.round((performance.now() - started) / 100) / 10,
  };
}
