/**
 * llama-mgr as a library: build llama.cpp instances, read GGUF files, index models, supervise llama-server and
 * serve the Ollama API, each usable without the CLI.
 *
 * The surface is chosen: what a program needs to do what the CLI does. Helpers the CLI and the daemon share
 * (file writes, locks, progress bars, `/proc` readers, the process runner, cmake arguments) stay in `lib/`.
 *
 * @example
 * ```ts ignore
 * import { getInstance, loadConfig, resolveModel, resolvePaths, startServer } from "./mod.ts";
 * const paths = resolvePaths();
 * const config = await loadConfig(paths.configFile);
 * const model = await resolveModel(paths, config, "qwen3:4b");
 * const server = await startServer(paths, {
 *   name: "chat",
 *   modelPath: model.path,
 *   instance: await getInstance(paths),
 *   ctx: 8192,
 * });
 * console.log(server.url);
 * ```
 *
 * @module
 */

// Where things live, and the config file.
export { type PathOptions, type Paths, resolvePaths } from "./lib/config/paths.ts";
export { loadConfig, parseConfig } from "./lib/config/load.ts";
export { setConfigValue } from "./lib/config/edit.ts";
export type {
  BuildConfig,
  BuildProfile,
  ClusterConfig,
  Config,
  DaemonConfig,
  GroupConfig,
  InstanceBuildConfig,
  MemoryConfig,
  ModelsConfig,
  ModelSourcesConfig,
  Preset,
  PythonOptions,
} from "./lib/config/schema.ts";

// What was wrong and what to do (the model and build errors below extend it); an external tool that failed;
// the progress display long operations report to (only its interface: the terminal bars stay in lib/).
export { UserError } from "./lib/util/errors.ts";
export { CommandError } from "./lib/util/run.ts";
export type { Progress } from "./lib/util/progress.ts";

// llama.cpp instances: install (fetch, build, verify), list, choose, remove; the GPU and the build tools.
export {
  type Arch,
  ARCHES,
  binaryPath,
  defaultInstanceName,
  getInstance,
  type InstanceRecord,
  instanceReleases,
  listBinaries,
  listInstances,
  type ReleaseRecord,
  removeInstance,
  setDefaultInstance,
} from "./lib/llamacpp/instances.ts";
export { installInstance, type InstallOptions, type InstallResult } from "./lib/llamacpp/install.ts";
export { rollbackInstance, type RollbackResult } from "./lib/llamacpp/releases.ts";
export { type EnsuredTool, ensureTool, type EnsureToolOptions } from "./lib/llamacpp/tools.ts";
export { BuildStepError } from "./lib/llamacpp/build.ts";
export { type Detected, detectGpu } from "./lib/llamacpp/detect.ts";
export { type Check, type InstallHints, platformHint, runDoctor } from "./lib/llamacpp/doctor.ts";
export {
  type Device,
  type DeviceBudget,
  deviceBudgets,
  listDevices,
  type MemoryBudgetConfig,
  parseListDevices,
  serverEnv,
} from "./lib/llamacpp/devices.ts";

// GGUF files: the header, what it says about the model, and the memory it needs.
export {
  DEFAULT_LIMITS,
  GgufError,
  type GgufErrorKind,
  type GgufHeader,
  type GgufLimits,
  ggufTypeName,
  type GgufValue,
  parseGgufHeader,
  readGgufHeader,
  type ReadOptions,
  type SkippedArray,
  type TensorInfo,
} from "./lib/gguf/reader.ts";
export { ggmlTypeName } from "./lib/gguf/types.ts";
export {
  type Capability,
  describeModel,
  estimateMemory,
  type EstimateOptions,
  type MemoryEstimate,
  type ModelFacts,
} from "./lib/gguf/facts.ts";

// Models: the index of every GGUF on the machine, Ollama-style names, the one resolve, presets, capabilities,
// and the daemon's catalogue.
export {
  listModels,
  type ModelEntry,
  modelFromFile,
  scanModels,
  type ScanOptions,
  type ScanResult,
} from "./lib/models/index.ts";
export { type ModelSource, type OllamaLayerFiles, type SourceOptions } from "./lib/models/sources.ts";
export {
  closestNames,
  isValidModelName,
  type ModelName,
  modelName,
  normalizeName,
  parseModelName,
} from "./lib/models/names.ts";
export { resolveModel } from "./lib/models/resolve.ts";
export {
  createDigestCache,
  type DigestCache,
  type DigestCacheOptions,
  type DigestSubject,
} from "./lib/models/digests.ts";
export { findPreset, presetForModel, type PresetTarget } from "./lib/models/presets.ts";
export { modelCapabilities } from "./lib/models/capabilities.ts";
export { ForeignModelError, ModelNotFoundError, ModelStoreError } from "./lib/models/errors.ts";
export {
  type Catalog,
  type CatalogModel,
  type CatalogOptions,
  createCatalog,
  type ModelSettings,
  type NameRecord,
} from "./lib/models/catalog.ts";
// Getting models: Hugging Face, Ollama registries and URLs, with resumable verified downloads.
export {
  type PullEvent,
  pullModel,
  type PullOptions,
  type PullResult,
  verifyModel,
} from "./lib/models/pull/mod.ts";

// Supervised llama-server processes.
export {
  followServerLog,
  listServers,
  readServerLog,
  removeServer,
  restartServer,
  type ServerSpec,
  type ServerStatus,
  serverStatus,
  startServer,
  stopAllServers,
  stopServer,
  waitReady,
  type WaitResult,
} from "./lib/server/supervisor.ts";
export type { ServerKind, ServerOwner, ServerState, StoredSpec } from "./lib/server/state.ts";
export { findFreePort } from "./lib/server/ports.ts";

// llama.cpp RPC workers: run them here, ask them what they have, check a configured cluster of them.
export {
  checkCluster,
  type ClusterBudget,
  clusterBudget,
  type ClusterCheck,
  listWorkers,
  queryWorker,
  rpcFlags,
  startWorker,
  stopWorker,
  type WorkerInfo,
  WorkerQueryError,
  type WorkerSpec,
} from "./lib/rpc/mod.ts";

// The Python environment of an instance (convert_hf_to_gguf.py and friends).
export { ensureVenv, type VenvInfo, type VenvOptions } from "./lib/python/venv.ts";

// Hugging Face to GGUF, quantization and importance matrices, writing only complete files.
export { convertModel, type ConvertOptions, OUTTYPES } from "./lib/convert/convert.ts";
export { quantizeModel, type QuantizeOptions, type QuantType, quantTypes } from "./lib/convert/quantize.ts";
export { computeImatrix, type ImatrixOptions } from "./lib/convert/imatrix.ts";

// The Ollama-compatible daemon: the whole thing, or its parts (routes, scheduler, launcher) to assemble another.
export {
  type AccessOptions,
  type AcquireRequest,
  allowedOrigins,
  BUSY_MESSAGE,
  CannotFitError,
  checkAccess,
  type CpuTurns,
  type CpuTurnsOptions,
  createCpuTurns,
  createDaemonRoutes,
  createLogger,
  createRequestLog,
  createScheduler,
  DaemonArrivals,
  type DaemonContext,
  type DaemonHandle,
  type DaemonOptions,
  type DaemonRouteOptions,
  type DaemonRoutes,
  daemonWire,
  defaultKeepAlive,
  hostAllowed,
  type KeepAliveMs,
  type KvCache,
  type KvCacheOptions,
  type KvEntry,
  type KvStats,
  type Launched,
  type Launcher,
  type LaunchPlan,
  type LaunchSpec,
  type Lease,
  LoadFailedError,
  type LogFields,
  type LogFormat,
  type Logger,
  type LoggerOptions,
  type LogLevel,
  type ModelNeed,
  ollamaLoadFlags,
  type OllamaLoadOptions,
  openKvCache,
  originAllowed,
  parseGoDuration,
  parseKeepAlive,
  parseOllamaHost,
  type PresetParameters,
  QueueFullError,
  type RequestLog,
  type RunnerInfo,
  type Scheduler,
  type SchedulerClock,
  type SchedulerOptions,
  serverLauncher,
  type ServerLauncherOptions,
  startDaemon,
} from "./lib/daemon/mod.ts";
