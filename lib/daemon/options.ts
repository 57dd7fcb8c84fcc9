/**
 * Ollama's `options` map, split the way Ollama splits it: load-time options become llama-server flags (a change
 * reloads the model), sampling options travel with each request as llama-server's own fields. Types are
 * checked as Ollama checks them (`option "top_k" must be of type integer`); unknown keys are ignored.
 *
 * @module
 */
import { UserError } from "../util/errors.ts";

/**
 * Options fixed when llama-server starts: a request that changes one reloads the model.
 *
 * @example
 * ```ts
 * const load: LoadOptions = { ctx: 8192, ngl: 99, mmap: false };
 * ```
 */
export interface LoadOptions {
  /** `num_ctx` -> `-c`. */
  ctx?: number;
  /** `num_gpu` -> `-ngl`. */
  ngl?: number;
  /** `num_thread` -> `-t`. */
  threads?: number;
  /** `num_batch` -> `-b`. */
  batch?: number;
  /** `main_gpu` -> `-mg`. */
  mainGpu?: number;
  /** `use_mmap: false` -> `--no-mmap`. */
  mmap?: boolean;
  /** `use_mlock: true` -> `--mlock`. */
  mlock?: boolean;
}

/** The result of {@linkcode parseOptions}. */
export interface ParsedOptions {
  /** Load-time options given by the request. */
  load: LoadOptions;
  /** llama-server request fields (`top_k`, `n_predict`, `stop`, ...). */
  sampling: Record<string, unknown>;
}

/**
 * The type of one of Ollama's options: what a Modelfile's `PARAMETER` value is read as.
 *
 * @example
 * ```ts
 * const kind: OptionKind | undefined = optionKind("temperature"); // "float"
 * ```
 */
export type OptionKind = "int" | "float" | "bool" | "strings";
type Kind = OptionKind;

const KINDS: Record<string, Kind> = {
  // runner (load time)
  num_ctx: "int",
  num_batch: "int",
  num_gpu: "int",
  main_gpu: "int",
  num_thread: "int",
  use_mmap: "bool",
  use_mlock: "bool",
  numa: "bool",
  low_vram: "bool",
  f16_kv: "bool",
  vocab_only: "bool",
  draft_num_predict: "int",
  // per request
  num_keep: "int",
  seed: "int",
  num_predict: "int",
  top_k: "int",
  top_p: "float",
  min_p: "float",
  typical_p: "float",
  repeat_last_n: "int",
  temperature: "float",
  repeat_penalty: "float",
  presence_penalty: "float",
  frequency_penalty: "float",
  mirostat: "int",
  mirostat_tau: "float",
  mirostat_eta: "float",
  penalize_newline: "bool",
  tfs_z: "float",
  stop: "strings",
};

/**
 * The type of an option Ollama knows; undefined for an unknown one.
 *
 * @example
 * ```ts
 * optionKind("stop"); // "strings"
 * ```
 */
export function optionKind(key: string): OptionKind | undefined {
  return Object.hasOwn(KINDS, key) ? KINDS[key] : undefined;
}

/**
 * Ollama's defaults for sampling (`DefaultOptions` in its api/types.go), under llama-server's names, sent on
 * every request so results match Ollama's, not llama-server's or a preset's. repeat_penalty is 1 (off): Ollama
 * dropped its 1.1 in v0.32.10. `min_p` is not set there, so it is Go's zero value. Seed -1 is random.
 */
export const OLLAMA_SAMPLING_DEFAULTS: Readonly<Record<string, unknown>> = {
  temperature: 0.8,
  top_k: 40,
  top_p: 0.9,
  min_p: 0,
  typical_p: 1,
  repeat_last_n: 64,
  repeat_penalty: 1,
  presence_penalty: 0,
  frequency_penalty: 0,
  n_predict: -1,
  n_keep: 4,
  seed: -1,
};

function check(key: string, kind: Kind, v: unknown): unknown {
  const typeName = { int: "integer", float: "float32", bool: "boolean", strings: "array" }[kind];
  switch (kind) {
    case "int":
      if (typeof v !== "number") throw new UserError(`option "${key}" must be of type ${typeName}`);
      return Math.trunc(v);
    case "float":
      if (typeof v !== "number") throw new UserError(`option "${key}" must be of type ${typeName}`);
      return v;
    case "bool":
      if (typeof v !== "boolean") throw new UserError(`option "${key}" must be of type ${typeName}`);
      return v;
    case "strings":
      if (typeof v === "string") return [v];
      if (!Array.isArray(v)) throw new UserError(`option "${key}" must be of type ${typeName}`);
      if (!v.every((s) => typeof s === "string")) {
        throw new UserError(`option "${key}" must be of an array of strings`);
      }
      return v;
  }
}

/**
 * Checks the `parameters` of `/api/create` (a Modelfile's PARAMETER lines): every key must be an option Ollama
 * knows and of its type. Returns them with `stop` as a list.
 *
 * @example
 * ```ts
 * checkParameters({ temperature: 0.2, stop: "<|end|>" }); // { temperature: 0.2, stop: ["<|end|>"] }
 * ```
 */
export function checkParameters(params: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, raw] of Object.entries(params)) {
    const kind = KINDS[key];
    if (!kind) {
      throw new UserError(
        `unknown parameter "${key}"; parameters are Ollama's options: ${Object.keys(KINDS).join(", ")}`,
      );
    }
    if (raw === null || raw === undefined) continue;
    if (kind === "int" && !Number.isInteger(raw)) {
      throw new UserError(`parameter "${key}" must be of type integer`);
    }
    out[key] = check(key, kind, raw);
  }
  return out;
}

/**
 * Checks and splits a request's `options`.
 *
 * @example
 * ```ts
 * const { load, sampling } = parseOptions({ num_ctx: 8192, temperature: 0, num_predict: 32 });
 * // load = { ctx: 8192 }, sampling = { temperature: 0, n_predict: 32 }
 * ```
 */
export function parseOptions(options: Record<string, unknown> | null | undefined): ParsedOptions {
  const load: LoadOptions = {};
  const sampling: Record<string, unknown> = {};
  for (const [key, raw] of Object.entries(options ?? {})) {
    const kind = KINDS[key];
    if (!kind || raw === null || raw === undefined) continue;
    const v = check(key, kind, raw);
    switch (key) {
      case "num_ctx":
        if ((v as number) > 0) load.ctx = v as number;
        break;
      case "num_gpu":
        if ((v as number) >= 0) load.ngl = v as number;
        break;
      case "num_thread":
        if ((v as number) > 0) load.threads = v as number;
        break;
      case "num_batch":
        if ((v as number) > 0) load.batch = v as number;
        break;
      case "main_gpu":
        load.mainGpu = v as number;
        break;
      case "use_mmap":
        load.mmap = v as boolean;
        break;
      case "use_mlock":
        load.mlock = v as boolean;
        break;
      case "num_predict":
        // -1 is "no limit", -2 "fill the context": llama-server's default of -1 covers both.
        sampling.n_predict = (v as number) >= 0 ? v : -1;
        break;
      case "num_keep":
        sampling.n_keep = v;
        break;
      case "stop":
        if ((v as string[]).length) sampling.stop = v;
        break;
      case "top_k":
      case "top_p":
      case "min_p":
      case "typical_p":
      case "repeat_last_n":
      case "temperature":
      case "repeat_penalty":
      case "presence_penalty":
      case "frequency_penalty":
      case "mirostat":
      case "mirostat_tau":
      case "mirostat_eta":
        sampling[key] = v;
        break;
      case "seed":
        if ((v as number) >= 0) sampling.seed = v;
        break;
      default:
        // numa, low_vram, f16_kv, vocab_only, penalize_newline, tfs_z, draft_num_predict: accepted, no effect.
        break;
    }
  }
  return { load, sampling };
}

/**
 * The llama-server flags for a set of load options.
 *
 * @example
 * ```ts
 * loadFlags({ threads: 4, mmap: false }); // ["-t", "4", "--no-mmap"]
 * ```
 */
export function loadFlags(load: LoadOptions): string[] {
  const out: string[] = [];
  if (load.threads !== undefined) out.push("-t", String(load.threads));
  if (load.batch !== undefined) out.push("-b", String(load.batch));
  if (load.mainGpu !== undefined) out.push("-mg", String(load.mainGpu));
  if (load.mmap === false) out.push("--no-mmap");
  if (load.mlock === true) out.push("--mlock");
  return out;
}

/** A stable key of the load options that matter, to tell whether a running server must be reloaded. */
export function loadKey(load: LoadOptions): string {
  return JSON.stringify([load.ctx, load.ngl, load.threads, load.batch, load.mainGpu, load.mmap, load.mlock]);
}
