/**
 * Quantizing a GGUF model with the instance's `llama-quantize`: the type checked against what this build
 * supports, a good output name, no overwrite without force, a free-space check, progress, temp + rename.
 *
 * @module
 */
import { basename, join } from "node:path";
import type { InstanceRecord } from "../llamacpp/instances.ts";
import { binaryPath } from "../llamacpp/instances.ts";
import { exists, formatBytes, freeBytes } from "../util/fs.ts";
import { UserError } from "../util/errors.ts";
import { CommandError, run, toolFailure } from "../util/run.ts";
import { writeThroughTemp } from "./output.ts";

/**
 * A quantization type this llama-quantize supports.
 *
 * @example
 * ```ts ignore
 * for (const t of await quantTypes(inst)) console.log(t.name.padEnd(8), t.description);
 * ```
 */
export interface QuantType {
  /** Its name, e.g. `Q4_K_M`. */
  name: string;
  /** Its numeric id. */
  id: number;
  /** llama-quantize's description (size, perplexity). */
  description: string;
}

/** Parses the "Allowed quantization types" list of `llama-quantize --help`. */
export function parseQuantTypes(help: string): QuantType[] {
  const out: QuantType[] = [];
  for (const m of help.matchAll(/^\s*(\d+)\s+or\s+([A-Za-z0-9_]+)\s*:\s*(.*)$/gm)) {
    out.push({ id: Number(m[1]), name: m[2], description: m[3].trim() });
  }
  for (const m of help.matchAll(/^\s*(COPY)\s*:\s*(.*)$/gm)) {
    out.push({ id: -1, name: m[1], description: m[2].trim() });
  }
  return out;
}

/**
 * The types this instance's llama-quantize supports.
 *
 * @example
 * ```ts ignore
 * const names = (await quantTypes(await getInstance(paths))).map((t) => t.name); // ["Q4_0", ..., "COPY"]
 * ```
 */
export async function quantTypes(instance: InstanceRecord): Promise<QuantType[]> {
  const bin = binaryPath(instance, "llama-quantize");
  if (!(await exists(bin))) {
    throw new UserError(`instance '${instance.name}' has no llama-quantize`, {
      hint:
        `rebuild it with the target: llama-mgr install -i ${instance.name} --targets llama-server,llama-quantize`,
    });
  }
  const r = await run([bin, "--help"], { check: false });
  const types = parseQuantTypes(r.stdout + "\n" + r.stderr);
  if (!types.length) throw new Error("could not read the quantization types from llama-quantize --help");
  return types;
}

/** Approximate bits per weight of a type, for the free-space check. */
export function bitsPerWeight(type: string): number {
  const t = type.toUpperCase();
  const table: Record<string, number> = {
    F32: 32,
    F16: 16,
    BF16: 16,
    Q8_0: 8.5,
    Q6_K: 6.6,
    Q5_K_M: 5.7,
    Q5_K_S: 5.5,
    Q5_1: 6,
    Q5_0: 5.5,
    Q4_K_M: 4.9,
    Q4_K_S: 4.6,
    Q4_1: 5,
    Q4_0: 4.5,
    IQ4_NL: 4.5,
    IQ4_XS: 4.3,
    Q3_K_L: 4.3,
    Q3_K_M: 3.9,
    Q3_K_S: 3.5,
    IQ3_M: 3.7,
    IQ3_S: 3.5,
    IQ3_XS: 3.3,
    IQ3_XXS: 3.1,
    Q2_K: 3.0,
    Q2_K_S: 2.8,
    IQ2_M: 2.7,
    IQ2_S: 2.5,
    IQ2_XS: 2.3,
    IQ2_XXS: 2.1,
    IQ1_M: 1.8,
    IQ1_S: 1.6,
    TQ1_0: 1.7,
    TQ2_0: 2.1,
    MXFP4_MOE: 4.3,
  };
  return table[t] ?? 8.5;
}

/** `<model>-<TYPE>.gguf`: the input's name without its quantization suffix, then the type. */
export function quantizedName(inputPath: string, type: string): string {
  const stem = basename(inputPath).replace(/\.gguf$/i, "").replace(/-\d{5}-of-\d{5}$/, "")
    .replace(/[-_.](f32|f16|bf16|i?q\d[a-z0-9_]*)$/i, "");
  return `${stem}-${type.toUpperCase()}.gguf`;
}

/**
 * Options for {@linkcode quantizeModel}.
 *
 * @example
 * ```ts ignore
 * const m = await resolveModel(paths, config, "qwen3:4b-f16");
 * const options: QuantizeOptions = {
 *   instance: await getInstance(paths),
 *   input: m.path,
 *   parameterCount: m.facts.parameterCount,
 *   type: "Q4_K_M",
 *   outDir: paths.modelsDir,
 * };
 * ```
 */
export interface QuantizeOptions {
  /** The instance whose llama-quantize runs. */
  instance: InstanceRecord;
  /** Input GGUF (first part of a split model). */
  input: string;
  /** Its parameter count (for the space estimate). */
  parameterCount: number;
  /** Target type, e.g. `Q4_K_M`. */
  type: string;
  /** Output file (default: `<outDir>/<model>-<TYPE>.gguf`). */
  output?: string;
  /** Folder for the default output name. */
  outDir: string;
  /** Importance matrix. */
  imatrix?: string;
  /** Allow requantizing an already quantized model. */
  allowRequantize?: boolean;
  /** Overwrite an existing output. */
  force?: boolean;
  /** Threads. */
  threads?: number;
  /** Log file. */
  logFile?: string;
  /** Progress (tensor n of N). */
  onProgress?: (n: number, total: number, tensor: string) => void;
}

/**
 * Quantizes a model.
 *
 * @example
 * ```ts ignore
 * const out = await quantizeModel({ instance, input: "m-f16.gguf", parameterCount: 5e8, type: "Q4_K_M", outDir: "." });
 * ```
 */
export async function quantizeModel(
  options: QuantizeOptions,
): Promise<{ output: string; seconds: number; bytes: number }> {
  const types = await quantTypes(options.instance);
  const wanted = options.type.toUpperCase();
  const type = types.find((t) => t.name.toUpperCase() === wanted);
  if (!type) {
    throw new UserError(`'${options.type}' is not a quantization type of this llama-quantize`, {
      hint: `supported: ${types.map((t) => t.name).join(", ")} (\`llama-mgr quantize --list\`)`,
    });
  }
  if (options.imatrix && !(await exists(options.imatrix))) {
    throw new UserError(`--imatrix file not found: ${options.imatrix}`);
  }
  const output = options.output ?? join(options.outDir, quantizedName(options.input, type.name));
  if (await exists(output) && !options.force) {
    throw new UserError(`${output} exists`, {
      hint: "pass --force to overwrite it, or -o to choose another file",
    });
  }
  await Deno.mkdir(join(output, ".."), { recursive: true });
  const estimate = Math.ceil(options.parameterCount * bitsPerWeight(type.name) / 8 * 1.05) + 16 * 1024 * 1024;
  const free = await freeBytes(join(output, ".."));
  if (free !== undefined && free < estimate) {
    throw new UserError(
      `not enough free disk space for ${basename(output)}: about ${formatBytes(estimate)} needed, ${
        formatBytes(free)
      } free`,
      {
        hint: "free some space, or write elsewhere with -o",
      },
    );
  }
  const t0 = performance.now();
  await writeThroughTemp(output, async (tmp, signal) => {
    const args = [binaryPath(options.instance, "llama-quantize")];
    if (options.imatrix) args.push("--imatrix", options.imatrix);
    if (options.allowRequantize) args.push("--allow-requantize");
    args.push(options.input, tmp, type.name);
    if (options.threads) args.push(String(options.threads));
    try {
      await run(args, {
        logFile: options.logFile,
        signal,
        tailLines: 20,
        onLine: (l) => {
          const m = l.match(/^\[\s*(\d+)\/\s*(\d+)\]\s+(\S+)/);
          if (m) options.onProgress?.(Number(m[1]), Number(m[2]), m[3]);
        },
      });
    } catch (err) {
      if (err instanceof CommandError) {
        const reason = err.tail.filter((l) => /error|failed|requantiz|invalid|cannot|unsupported/i.test(l))
          .slice(-5);
        // llama-quantize says only "basic_ios::clear: iostream error" when a write fails; the partial file
        // is still there, so a (nearly) full disk now means the disk filled up while writing.
        const left = await freeBytes(join(output, ".."));
        const writeError = err.tail.findLast((l) => /iostream|No space|write/i.test(l))?.trim();
        if (left !== undefined && left < 4 * 1024 * 1024 && writeError) {
          throw new UserError(
            `the disk filled up while writing ${basename(output)} (llama-quantize: ${writeError}); ` +
              "the partial output was removed",
            { hint: "free some space, or write elsewhere with -o", cause: err },
          );
        }
        throw toolFailure("llama-quantize", err, {
          reason,
          hint: /requantiz/i.test(err.tail.join("\n"))
            ? "the input is already quantized: pass --allow-requantize (quality suffers), or start from an f16/bf16 file"
            : undefined,
        });
      }
      throw err;
    }
  });
  return { output, seconds: (performance.now() - t0) / 1000, bytes: (await Deno.stat(output)).size };
}
