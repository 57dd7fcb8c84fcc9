/**
 * The configuration file's schema (zod). Every section is strict: an unknown key is an error that names it.
 *
 * @module
 */
import { z } from "../deps.ts";

/** Python environment options shared by `install` and `convert`. */
export const PythonSchema = z.strictObject({
  /** How torch is chosen: `cpu` (PyTorch CPU index), `auto` (the requirement as written), `system`
   * (reuse the interpreter's installed torch), or `skip`. */
  torch: z.enum(["cpu", "auto", "system", "skip"]).default("cpu"),
  /** Version (or PEP 440 spec) of torch to install instead of llama.cpp's pin, e.g. `2.13.0`. */
  torch_version: z.string().optional(),
  /** Extra index URL for torch and friends (a private mirror). */
  index_url: z.string().optional(),
  /** A directory or URL of wheels for uv's `--find-links` (a local torch wheel). */
  find_links: z.string().optional(),
  /** The Python interpreter uv uses (default: uv's choice). */
  python: z.string().optional(),
  /** Do not touch the network (uv `--offline`). */
  offline: z.boolean().default(false),
});

/** A named way to run a model: `llama-mgr server start <preset>` and the daemon's per-model settings. */
export const PresetSchema = z.strictObject({
  /** Model name, alias or path. */
  model: z.string(),
  /** Instance to run it with (default: the default instance). */
  instance: z.string().optional(),
  /** Context size. */
  ctx: z.number().int().positive().optional(),
  /** GPU layers. */
  ngl: z.number().int().min(-1).optional(),
  /** Port, or `auto`. */
  port: z.union([z.number().int().min(1).max(65535), z.literal("auto")]).optional(),
  /** Extra llama-server flags. */
  args: z.array(z.string()).default([]),
  /** Environment for the server process, e.g. CUDA_VISIBLE_DEVICES. */
  env: z.record(z.string(), z.string()).default({}),
});

/** The whole config file. */
export const ConfigSchema = z.strictObject({
  /** Instance used when `-i` is not given (overrides `instances default`). */
  default_instance: z.string().optional(),
  build: z.strictObject({
    /** Build jobs (default: number of CPUs). */
    parallel: z.number().int().positive().optional(),
    /** Use ccache when present (default true). */
    ccache: z.boolean().default(true),
    /** cmake args added to every build. */
    cmake_args: z.array(z.string()).default([]),
  }).prefault({}),
  python: PythonSchema.prefault({}),
  models: z.strictObject({
    /** Folders scanned recursively for GGUF files. */
    dirs: z.array(z.string()).default([]),
    /** Short names: alias -> model name or path. */
    aliases: z.record(z.string(), z.string()).default({}),
    /** Which stores to read besides the folders. */
    sources: z.strictObject({
      huggingface: z.boolean().default(true),
      ollama: z.boolean().default(true),
      lmstudio: z.boolean().default(true),
      llamacpp: z.boolean().default(true),
    }).prefault({}),
  }).prefault({}),
  /** Named server presets. */
  presets: z.record(z.string(), PresetSchema).default({}),
  daemon: z.strictObject({
    host: z.string().default("127.0.0.1"),
    port: z.number().int().min(1).max(65535).default(11434),
    /** Default keep_alive, as Ollama's OLLAMA_KEEP_ALIVE (`5m`, `-1`, `0`). */
    keep_alive: z.union([z.string(), z.number()]).default("5m"),
    /** Extra allowed origins (OLLAMA_ORIGINS). */
    origins: z.array(z.string()).default([]),
    /** When set, requests must send `Authorization: Bearer <key>`. */
    api_key: z.string().optional(),
    /** How many models may be loaded at once (OLLAMA_MAX_LOADED_MODELS). */
    max_loaded_models: z.number().int().positive().default(3),
    /** Requests one model answers at once, each with the full context (OLLAMA_NUM_PARALLEL); unset:
     * llama-server's own choice (4 slots sharing one context). */
    num_parallel: z.number().int().positive().optional(),
    /** Requests waiting beyond the models' slots before new ones get a 503 (OLLAMA_MAX_QUEUE). */
    max_queue: z.number().int().positive().default(512),
    /** Flash attention for chat models (OLLAMA_FLASH_ATTENTION); unset: llama-server's `auto`. */
    flash_attention: z.boolean().optional(),
    /** KV cache type for chat models, e.g. `q8_0` (OLLAMA_KV_CACHE_TYPE); unset: f16. */
    kv_cache_type: z.string().optional(),
    /** The Ollama version `/api/version` reports (clients check it); unset: the one the daemon follows. */
    ollama_version: z.string().regex(/^\d+\.\d+\.\d+$/, "a version like 0.33.0").optional(),
  }).prefault({}),
});

/** The validated configuration. */
export type Config = z.infer<typeof ConfigSchema>;
/** A validated preset. */
export type Preset = z.infer<typeof PresetSchema>;
/** Validated Python options. */
export type PythonOptions = z.infer<typeof PythonSchema>;
