/**
 * The Ollama-compatible daemon: the Ollama API (and OpenAI's `/v1`) on top of llama-server, with on-demand
 * loading, keep-alive, LRU eviction and Ollama's Host/Origin rules. The wire types are exported as
 * `daemonWire` (zod schemas of every request and response).
 *
 * @example
 * ```ts ignore
 * import { loadConfig, resolvePaths, startDaemon } from "./mod.ts";
 * const paths = resolvePaths();
 * const daemon = await startDaemon({ paths, config: await loadConfig(paths.configFile), port: 11434 });
 * console.log(`listening on ${daemon.url}`);
 * await daemon.close();
 * ```
 *
 * @module
 */
export { type DaemonHandle, type DaemonOptions, startDaemon } from "./daemon.ts";
export {
  type DaemonSettings,
  daemonSettings,
  type DaemonSettingsInput,
  parseOllamaHost,
} from "./settings.ts";
export {
  type AcquireRequest,
  BUSY_MESSAGE,
  CannotFitError,
  type Clock as SchedulerClock,
  type CpuTurns,
  type CpuTurnsOptions,
  createCpuTurns,
  createScheduler,
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
  type ModelNeed,
  openKvCache,
  type Placement,
  placeModel,
  QueueFullError,
  type RunnerInfo,
  type Scheduler,
  type SchedulerOptions,
  serverLauncher,
  type ServerLauncherOptions,
} from "./runners/mod.ts";
export { defaultKeepAlive, type KeepAliveMs, parseGoDuration, parseKeepAlive } from "./keep_alive.ts";
export { type DaemonContext, findModel as findDaemonModel } from "./context.ts";
export { createRequestLog, type RequestLog } from "./request_log.ts";
export {
  createLogger,
  type LogFields,
  type LogFormat,
  type Logger,
  type LoggerOptions,
  type LogLevel,
} from "../util/log.ts";
export { Arrivals as DaemonArrivals } from "./arrivals.ts";
export type { PresetParameters } from "./ollama/show.ts";
export {
  loadFlags as ollamaLoadFlags,
  type LoadOptions as OllamaLoadOptions,
  type ParsedOptions as ParsedOllamaOptions,
  parseOptions as parseOllamaOptions,
} from "./options.ts";
export {
  createRoutes as createDaemonRoutes,
  type DaemonRoutes,
  type RouteOptions as DaemonRouteOptions,
} from "./routes.ts";
export { type AccessOptions, allowedOrigins, checkAccess, hostAllowed, originAllowed } from "./security.ts";
export * as daemonWire from "./types.ts";
