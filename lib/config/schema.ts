/**
 * The configuration file's schema (zod) and the types of a validated config. Every section is strict: an
 * unknown key is an error that names it. The types are written out (with the defaults the schema fills in)
 * and checked against the schema at compile time.
 *
 * @module
 */
import { z } from "../deps.ts";
import { exactly } from "../util/zod.ts";
import { parseByteSize } from "../util/bytes.ts";
import { type Arch, ARCHES } from "../llamacpp/instances.ts";
import { archCmakeArgs } from "../llamacpp/cmake.ts";

/**
 * Python environment options shared by `install` and `convert` (the config's `python` section).
 *
 * @example
 * ```ts
 * const python: PythonOptions = { torch: "cpu", offline: false, torch_version: "2.8.0" };
 * ```
 */
export interface PythonOptions {
  /** How torch is chosen: `cpu` (PyTorch CPU index, the default), `auto` (the requirement as written),
   * `system` (reuse the interpreter's installed torch), or `skip`. */
  torch: "cpu" | "auto" | "system" | "skip";
  /** Version (or PEP 440 spec) of torch to install instead of llama.cpp's pin, e.g. `2.13.0`. */
  torch_version?: string;
  /** Extra index URL for torch and friends (a private mirror). */
  index_url?: string;
  /** A directory or URL of wheels for uv's `--find-links` (a local torch wheel). */
  find_links?: string;
  /** The Python interpreter uv uses (default: uv's choice). */
  python?: string;
  /** Do not touch the network (uv `--offline`; default false). */
  offline: boolean;
}

/**
 * A named way to run a model: `llama-mgr server start <preset>` and the daemon's per-model settings.
 *
 * @example
 * ```ts
 * const chat: Preset = { model: "qwen3:4b", ctx: 16384, ngl: 99, args: ["--jinja"], env: {} };
 * ```
 */
export interface Preset {
  /** Model name, alias or path. */
  model: string;
  /** Instance to run it with (default: the default instance). */
  instance?: string;
  /** Context size. */
  ctx?: number;
  /** GPU layers (-1: all). */
  ngl?: number;
  /** Port, or `auto`. */
  port?: number | "auto";
  /** Extra llama-server flags (default none). */
  args: string[];
  /** Environment for the server process, e.g. CUDA_VISIBLE_DEVICES (default none). */
  env: Record<string, string>;
  /** A cluster (under `clusters:`) whose RPC workers hold the model's layers (`--rpc`). */
  cluster?: string;
}

/**
 * A cluster of llama.cpp RPC workers (`llama-mgr rpc serve` on each) a model can be spread over.
 *
 * @example
 * ```ts
 * const lab: ClusterConfig = { workers: ["gpu-box-1:50052", "gpu-box-2:50052"] };
 * ```
 */
export interface ClusterConfig {
  /** The workers' `host:port`, in the order llama-server numbers their devices. */
  workers: string[];
}

/**
 * Build options for one backend (`build.profiles.<arch>`), used by every instance of that backend.
 *
 * @example
 * ```ts
 * const cuda: BuildProfile = { gpu_targets: ["8.6", "8.9"], cmake_args: ["-DGGML_CUDA_F16=ON"] };
 * ```
 */
export interface BuildProfile {
  /** GPU targets when neither the instance's entry nor `--gpu-targets` gives them. */
  gpu_targets?: string[];
  /** cmake args for this backend, after `build.cmake_args` (default none). */
  cmake_args: string[];
}

/**
 * Build options for one instance (`build.instances.<name>`), which win over its backend's profile, and the
 * environment its llama-server runs with.
 *
 * @example
 * ```ts
 * const rocm: InstanceBuildConfig = { arch: "rocm", gpu_targets: ["gfx1100"], cmake_args: [] };
 * ```
 */
export interface InstanceBuildConfig {
  /** The backend, when `--arch` is not given. */
  arch?: Arch;
  /** GPU targets, when `--gpu-targets` is not given. */
  gpu_targets?: string[];
  /** cmake args, after the backend profile's (default none). */
  cmake_args: string[];
  /** Targets built by install and update (default: llama-server; others are built on first use). */
  targets?: string[];
  /**
   * Environment of the instance's llama-server (its `--list-devices` too), under a preset's `env`: e.g.
   * `GGML_VK_VISIBLE_DEVICES: "0"` for Mesa's software Vulkan device (default none).
   */
  env?: Record<string, string>;
}

/**
 * The config's `build` section: how instances are built.
 *
 * @example
 * ```ts
 * const build: BuildConfig = {
 *   parallel: 8,
 *   ccache: true,
 *   cmake_args: ["-DGGML_NATIVE=ON"],
 *   keep_releases: 1,
 *   on_demand: true,
 *   unity: true,
 *   profiles: { cuda: { gpu_targets: ["8.6"], cmake_args: [] } },
 *   instances: {},
 * };
 * ```
 */
export interface BuildConfig {
  /** Build jobs (default: number of CPUs). */
  parallel?: number;
  /** Use ccache when present (default true). */
  ccache: boolean;
  /** cmake args added to every build (default none). */
  cmake_args: string[];
  /** Earlier good releases an instance keeps for `install --rollback` (default 1). */
  keep_releases: number;
  /** Build a tool the first time a command needs it (default true); false: say how to build it. */
  on_demand: boolean;
  /** New instances compile the libraries llama-server links as unity batches, less CPU time for a cold build
   * (default true; an existing instance keeps how it was built unless `install --unity`/`--no-unity`); false
   * builds every instance file by file, for debugging or a source patch that clashes in a batch. */
  unity: boolean;
  /** Options per backend (default none). */
  profiles: Partial<Record<Arch, BuildProfile>>;
  /** Options per instance name (default none). */
  instances: Record<string, InstanceBuildConfig>;
}

/**
 * The config's `models.sources` section: which other tools' stores are read besides the folders (each
 * default true).
 *
 * @example
 * ```ts
 * const sources: ModelSourcesConfig = { huggingface: true, ollama: false, lmstudio: true, llamacpp: true };
 * ```
 */
export interface ModelSourcesConfig {
  /** The Hugging Face hub cache. */
  huggingface: boolean;
  /** Ollama's model store. */
  ollama: boolean;
  /** LM Studio's models folder. */
  lmstudio: boolean;
  /** llama.cpp's own download cache (`-hf`). */
  llamacpp: boolean;
}

/**
 * The config's `models` section: where models are found and their short names.
 *
 * @example
 * ```ts
 * const models: ModelsConfig = {
 *   dirs: ["~/models"],
 *   aliases: { chat: "qwen3:4b" },
 *   sources: { huggingface: true, ollama: true, lmstudio: true, llamacpp: true },
 * };
 * ```
 */
export interface ModelsConfig {
  /** Folders scanned recursively for GGUF files (default none). */
  dirs: string[];
  /** Short names: alias -> model name or path (default none). */
  aliases: Record<string, string>;
  /** Which stores to read besides the folders. */
  sources: ModelSourcesConfig;
}

/**
 * The config's `daemon` section: the Ollama-compatible daemon (each field has an `OLLAMA_*` variable that
 * overrides it).
 *
 * @example
 * ```ts
 * const daemon: DaemonConfig = {
 *   host: "127.0.0.1",
 *   port: 11434,
 *   keep_alive: "5m",
 *   origins: [],
 *   max_loaded_models: 3,
 *   max_queue: 512,
 * };
 * ```
 */
export interface DaemonConfig {
  /** Address to listen on (default 127.0.0.1; OLLAMA_HOST). */
  host: string;
  /** Port (default 11434; OLLAMA_HOST). */
  port: number;
  /** Default keep_alive, as Ollama's OLLAMA_KEEP_ALIVE (`5m`, the default; `-1`; `0`). */
  keep_alive: string | number;
  /** Extra allowed origins (OLLAMA_ORIGINS; default none). */
  origins: string[];
  /** When set, requests must send `Authorization: Bearer <key>` (or `x-api-key: <key>`). */
  api_key?: string;
  /** How many models may be loaded at once (OLLAMA_MAX_LOADED_MODELS; default 3). */
  max_loaded_models: number;
  /** Requests one model answers at once, each with the full context (OLLAMA_NUM_PARALLEL); unset:
   * llama-server's own choice (4 slots sharing one context). */
  num_parallel?: number;
  /** Requests waiting beyond the models' slots before new ones get a 503 (OLLAMA_MAX_QUEUE; default 512). */
  max_queue: number;
  /** Flash attention for chat models (OLLAMA_FLASH_ATTENTION); unset: llama-server's `auto`. */
  flash_attention?: boolean;
  /** KV cache type for chat models, e.g. `q8_0` (OLLAMA_KV_CACHE_TYPE); unset: f16. */
  kv_cache_type?: string;
  /** The Ollama version `/api/version` reports (clients check it); unset: the one the daemon follows. */
  ollama_version?: string;
  /** Size cap of the KV caches saved when a model is unloaded (`2GiB`, the default; `0` turns saving off). */
  kv_cache_max?: string | number;
}

/**
 * The config's `memory` section: the budgets the daemon packs models into, per device (`CPU`, `CUDA0`,
 * `Vulkan0`... as `llama-server --list-devices` names them).
 *
 * @example
 * ```ts
 * const memory: MemoryConfig = { reserve: "2GiB", budgets: { CPU: "8GiB", Vulkan0: "4GiB" } };
 * ```
 */
export interface MemoryConfig {
  /** Held back on every device (bytes or a size such as `2GiB`; default 0). On GPUs, OLLAMA_GPU_OVERHEAD
   * replaces it. */
  reserve?: string | number;
  /** A device's whole budget (bytes or a size), instead of its free memory less the reserve (default none). */
  budgets: Record<string, string | number>;
}

/**
 * A group of models in the config's `groups` section (as llama-swap's groups).
 *
 * @example
 * ```ts
 * const coding: GroupConfig = { members: ["qwen3-coder:30b", "nomic-embed-text"], swap: false, exclusive: true };
 * ```
 */
export interface GroupConfig {
  /** Model names, aliases or paths. */
  members: string[];
  /** At most one member loaded at a time: loading one unloads the other (default false). */
  swap: boolean;
  /** Members run alone: while one is loaded no model outside the group is (default false). */
  exclusive: boolean;
}

/**
 * The validated configuration: the config file with every default filled in.
 *
 * @example
 * ```ts
 * import { parseConfig } from "./load.ts";
 * const config: Config = parseConfig({ daemon: { port: 11500 } });
 * console.log(config.daemon.port, config.daemon.keep_alive); // 11500 "5m"
 * ```
 */
export interface Config {
  /** Instance used when `-i` is not given (overrides `instances default`). */
  default_instance?: string;
  /** How instances are built. */
  build: BuildConfig;
  /** The Python environment of `install` and `convert`. */
  python: PythonOptions;
  /** Where models are found and their short names. */
  models: ModelsConfig;
  /** Named server presets (default none). */
  presets: Record<string, Preset>;
  /** Named clusters of RPC workers (default none). */
  clusters: Record<string, ClusterConfig>;
  /** The Ollama-compatible daemon. */
  daemon: DaemonConfig;
  /** Memory budgets of the daemon's scheduler. */
  memory: MemoryConfig;
  /** Models that run together or alone (default none). */
  groups: Record<string, GroupConfig>;
}

/**
 * The `python` section's schema.
 *
 * @example
 * ```ts
 * PythonSchema.parse({ torch: "system" }); // { torch: "system", offline: false }
 * ```
 */
export const PythonSchema: z.ZodType<PythonOptions> = exactly<PythonOptions>()(z.strictObject({
  torch: z.enum(["cpu", "auto", "system", "skip"]).default("cpu"),
  torch_version: z.string().optional(),
  index_url: z.string().optional(),
  find_links: z.string().optional(),
  python: z.string().optional(),
  offline: z.boolean().default(false),
}));

/**
 * A preset's schema.
 *
 * @example
 * ```ts
 * PresetSchema.parse({ model: "qwen3:4b", ctx: 8192 }); // { model: "qwen3:4b", ctx: 8192, args: [], env: {} }
 * ```
 */
export const PresetSchema: z.ZodType<Preset> = exactly<Preset>()(z.strictObject({
  model: z.string(),
  instance: z.string().optional(),
  ctx: z.number().int().positive().optional(),
  ngl: z.number().int().min(-1).optional(),
  port: z.union([z.number().int().min(1).max(65535), z.literal("auto")]).optional(),
  args: z.array(z.string()).default([]),
  env: z.record(z.string(), z.string()).default({}),
  cluster: z.string().optional(),
}));

const CmakeArg = z.string().regex(/^-[DUGTAC]|^--/, "a cmake option such as -DGGML_CUDA_F16=ON");
const GpuTargets = z.array(z.string().min(1)).min(1);

/** Adds an issue when GPU targets do not fit the backend (CUDA capabilities, gfx names, a SYCL vendor). */
function checkTargets(arch: Arch | undefined, targets: string[] | undefined, ctx: z.RefinementCtx): void {
  if (!arch || !targets) return;
  try {
    archCmakeArgs({ arch, gpuTargets: targets });
  } catch (err) {
    ctx.addIssue({ code: "custom", path: ["gpu_targets"], message: (err as Error).message });
  }
}

/**
 * A backend profile's schema (`build.profiles.<arch>`).
 *
 * @example
 * ```ts
 * BuildProfileSchema.parse({ cmake_args: ["-DGGML_CUDA_F16=ON"] }); // { cmake_args: [...] }
 * ```
 */
export const BuildProfileSchema: z.ZodType<BuildProfile> = exactly<BuildProfile>()(z.strictObject({
  gpu_targets: GpuTargets.optional(),
  cmake_args: z.array(CmakeArg).default([]),
}));

/**
 * An instance's build entry schema (`build.instances.<name>`).
 *
 * @example
 * ```ts
 * InstanceBuildSchema.parse({ arch: "rocm", gpu_targets: ["gfx1100"] });
 * ```
 */
export const InstanceBuildSchema: z.ZodType<InstanceBuildConfig> = exactly<InstanceBuildConfig>()(
  z.strictObject({
    arch: z.enum(ARCHES).optional(),
    gpu_targets: GpuTargets.optional(),
    cmake_args: z.array(CmakeArg).default([]),
    targets: z.array(z.string().regex(/^[A-Za-z0-9_.-]+$/, "a build target such as llama-bench")).min(1)
      .optional(),
    env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "an environment variable name"), z.string())
      .optional(),
  }).superRefine((v, ctx) => checkTargets(v.arch, v.gpu_targets, ctx)),
);

const ProfilesSchema = z.strictObject(
  Object.fromEntries(ARCHES.map((a) => [
    a,
    BuildProfileSchema.superRefine((v, ctx) => checkTargets(a, v.gpu_targets, ctx)).optional(),
  ])) as Record<Arch, z.ZodOptional<z.ZodType<BuildProfile>>>,
);

/**
 * A cluster's schema: at least one worker, each `host:port`.
 *
 * @example
 * ```ts
 * ClusterSchema.parse({ workers: ["10.0.0.2:50052"] });
 * ```
 */
export const ClusterSchema: z.ZodType<ClusterConfig> = exactly<ClusterConfig>()(z.strictObject({
  workers: z.array(
    z.string().regex(/^(?:\[[0-9A-Fa-f:.]+\]|[^:\s\[\]]+):\d{1,5}$/, "host:port, e.g. 192.168.1.20:50052"),
  ).min(1),
}));

/** Bytes, or a size with a unit (`2GiB`, `512MiB`, `4GB`). */
const ByteSize = z.union([z.number().int().nonnegative(), z.string()]).refine(
  (v) => parseByteSize(v) !== undefined,
  "a size in bytes or with a unit, e.g. 2GiB, 512MiB, 4GB",
);

/**
 * The whole config file's schema ({@linkcode parseConfig} gives its errors one line each).
 *
 * @example
 * ```ts
 * const r = ConfigSchema.safeParse({ daemon: { prot: 1 } });
 * console.log(r.success); // false: unknown key "prot"
 * ```
 */
export const ConfigSchema: z.ZodType<Config> = exactly<Config>()(z.strictObject({
  default_instance: z.string().optional(),
  build: z.strictObject({
    parallel: z.number().int().positive().optional(),
    ccache: z.boolean().default(true),
    cmake_args: z.array(CmakeArg).default([]),
    keep_releases: z.number().int().min(0).max(20).default(1),
    on_demand: z.boolean().default(true),
    unity: z.boolean().default(true),
    profiles: ProfilesSchema.prefault({}),
    instances: z.record(
      z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, "an instance name (letters, digits, . _ -)"),
      InstanceBuildSchema,
    ).default({}),
  }).prefault({}),
  python: PythonSchema.prefault({}),
  models: z.strictObject({
    dirs: z.array(z.string()).default([]),
    aliases: z.record(z.string(), z.string()).default({}),
    sources: z.strictObject({
      huggingface: z.boolean().default(true),
      ollama: z.boolean().default(true),
      lmstudio: z.boolean().default(true),
      llamacpp: z.boolean().default(true),
    }).prefault({}),
  }).prefault({}),
  presets: z.record(z.string(), PresetSchema).default({}),
  clusters: z.record(z.string(), ClusterSchema).default({}),
  daemon: z.strictObject({
    host: z.string().default("127.0.0.1"),
    port: z.number().int().min(1).max(65535).default(11434),
    keep_alive: z.union([z.string(), z.number()]).default("5m"),
    origins: z.array(z.string()).default([]),
    api_key: z.string().optional(),
    max_loaded_models: z.number().int().positive().default(3),
    num_parallel: z.number().int().positive().optional(),
    max_queue: z.number().int().positive().default(512),
    flash_attention: z.boolean().optional(),
    kv_cache_type: z.string().optional(),
    ollama_version: z.string().regex(/^\d+\.\d+\.\d+$/, "a version like 0.33.0").optional(),
    kv_cache_max: z.union([z.string(), z.number().nonnegative()]).optional(),
  }).prefault({}),
  memory: z.strictObject({
    reserve: ByteSize.optional(),
    budgets: z.record(z.string(), ByteSize).default({}),
  }).prefault({}),
  groups: z.record(
    z.string(),
    z.strictObject({
      members: z.array(z.string()).min(1),
      swap: z.boolean().default(false),
      exclusive: z.boolean().default(false),
    }),
  ).default({}),
}));
