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
export { type DaemonHandle, type DaemonOptions, parseOllamaHost, startDaemon } from "./server.ts";
export {
  type AcquireRequest,
  createScheduler,
  type Launched,
  type Launcher,
  type LaunchSpec,
  type Lease,
  type RunnerInfo,
  type Scheduler,
  type SchedulerOptions,
} from "./scheduler.ts";
export { type Catalog, type CatalogModel, type CatalogSourceEntry, createCatalog } from "./catalog.ts";
export { defaultKeepAlive, parseGoDuration, parseKeepAlive } from "./keep_alive.ts";
export { digestFileName, isValidModelName, type ModelName, normalizeName, parseModelName } from "./names.ts";
export { loadFlags, type LoadOptions, type ParsedOptions, parseOptions } from "./options.ts";
export { createRoutes, type RouteOptions } from "./routes.ts";
export { allowedOrigins, checkAccess, hostAllowed, originAllowed } from "./security.ts";
export * as daemonWire from "./types.ts";
