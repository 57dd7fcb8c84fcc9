/**
 * Starting and stopping the daemon: the wiring. Its settings (flags, `OLLAMA_*` variables, config) are read by
 * `daemonSettings` (settings.ts); this starts the launcher (which cleans up servers orphaned by a daemon that
 * was killed), the scheduler, the catalogue and the routes, serves them on `Deno.serve` with the memory
 * trimmer and log rotation, and on close stops every llama-server this daemon started.
 *
 * @module
 */
import { join } from "node:path";
import { tmpdir } from "node:os";
import type { Paths } from "../config/paths.ts";
import type { Config } from "../config/schema.ts";
import { startMemoryTrimmer } from "../util/memory.ts";
import { Arrivals, isGeneration } from "./arrivals.ts";
import { UserError } from "../util/errors.ts";
import {
  type CatalogModel,
  createCatalog,
  listModels as indexedModels,
  type ModelEntry,
  presetForModel,
  servedCapabilities,
} from "../models/mod.ts";
import type { DaemonContext } from "./context.ts";
import { pullModel } from "../models/pull/mod.ts";
import { quantizeModel } from "../convert/quantize.ts";
import { getInstance } from "../llamacpp/instances.ts";
import { ensureTool } from "../llamacpp/tools.ts";
import { createRoutes } from "./routes.ts";
import { ollamaLayerSettings } from "./ollama/layers.ts";
import { createScheduler, type Launcher } from "./runners/scheduler.ts";
import { serverLauncher } from "./runners/launcher.ts";
import { groupConflicts } from "./runners/groups.ts";
import { openKvCache } from "./runners/kv_cache.ts";
import { createCpuTurns } from "./runners/cpu_turns.ts";
import { dropAllConnections, dropConnections } from "./upstream/client.ts";
import { daemonSettings } from "./settings.ts";
import { startLogRotation } from "../server/logs.ts";
import { createLogger, type LogFormat, type LogLevel } from "../util/log.ts";
import { createRequestLog } from "./request_log.ts";
import { createDigestCache } from "../models/digests.ts";

/**
 * Drops, once for the process, Deno's notice that a served request's signal also aborts after a successful
 * response: the generation handlers listen to it only until they return their response (a client that leaves
 * before then stops llama-server's work), which is right under both behaviours, so the notice would only
 * puzzle a user reading the daemon's log.
 */
function quietLegacyAbortNotice(): void {
  if (quieted) return;
  quieted = true;
  const warn = console.warn;
  console.warn = (...args: unknown[]) => {
    if (typeof args[0] === "string" && args[0].startsWith("Deno.serve: request.signal aborts")) return;
    warn(...args);
  };
}
let quieted = false;

/**
 * Options for {@linkcode startDaemon}.
 *
 * @example
 * ```ts ignore
 * const options: DaemonOptions = { paths, config, host: "127.0.0.1", port: 0, log: () => {} };
 * ```
 */
export interface DaemonOptions {
  /** Data locations. */
  paths: Paths;
  /** Validated config. */
  config: Config;
  /** Address to listen on (default: `OLLAMA_HOST`, then config `daemon.host`, 127.0.0.1). */
  host?: string;
  /** Port (default: `OLLAMA_HOST`'s, then config `daemon.port`, 11434; 0 picks a free one). */
  port?: number;
  /** Environment to read (default: the process environment). */
  env?: Record<string, string | undefined>;
  /** Starts llama-servers (default: lib/server, servers owned by this daemon). */
  launcher?: Launcher;
  /** Lists the models (default: the model index). */
  listModels?: () => Promise<ModelEntry[]>;
  /** Where the daemon's log lines go, formatted, without a newline (default: stderr). */
  log?: (line: string) => void;
  /** `--log-level` (default `LLAMA_MGR_LOG_LEVEL`, else info): requests are logged at info. */
  logLevel?: LogLevel;
  /** `--log-format` (default `LLAMA_MGR_LOG_FORMAT`, else text): `json` writes one object per line. */
  logFormat?: LogFormat;
  /** Instance name to use when no preset names one (the `-i` flag). */
  instance?: string;
  /** How often the logs of this daemon's llama-servers are checked for rotation (default 60 s). */
  logRotateMs?: number;
  /** A running server's log is rotated in place past this size (default lib/server's 10 MiB). */
  logMaxBytes?: number;
  /**
   * Gives memory back to the system as a long-running process should (lib/util/memory.ts): once started, the
   * deno binary's start-up code pages and the allocator's free pages; then the allocator's whenever requests
   * stop for 2 s, and the code pages when they stop for a minute (sooner, a user's next message after a pause
   * would wait for them to come back from the page cache). Default true.
   */
  trimMemory?: boolean;
}

/**
 * A running daemon.
 *
 * @example
 * ```ts ignore
 * const daemon: DaemonHandle = await startDaemon({ paths, config, port: 0 });
 * console.log(await (await fetch(`${daemon.url}/api/tags`)).json());
 * await daemon.close();
 * ```
 */
export interface DaemonHandle {
  /** Base URL, e.g. `http://127.0.0.1:11434`. */
  url: string;
  /** The address it listens on. */
  host: string;
  /** The port it listens on. */
  port: number;
  /** The shared state (for tests and the bench). */
  ctx: DaemonContext;
  /** Stops accepting requests and stops every llama-server it started. */
  close(): Promise<void>;
  /** Resolves when the daemon has closed. */
  finished: Promise<void>;
}

/**
 * Starts the daemon.
 *
 * @example
 * ```ts ignore
 * const d = await startDaemon({ paths, config, port: 0 });
 * console.log(d.url);
 * await d.close();
 * ```
 */
export async function startDaemon(options: DaemonOptions): Promise<DaemonHandle> {
  const settings = daemonSettings({
    config: options.config.daemon,
    env: options.env ?? Deno.env.toObject(),
    flags: {
      host: options.host,
      port: options.port,
      logLevel: options.logLevel,
      logFormat: options.logFormat,
    },
  });
  const logger = createLogger({ level: settings.logLevel, format: settings.logFormat, write: options.log });
  const log = (line: string) => logger.info(line);
  for (const line of settings.warnings) logger.warn(line);
  // Off below info: then the handler does no bookkeeping at all.
  const requests = logger.enabled("info") ? createRequestLog(logger) : undefined;
  const { host, port } = settings;

  // Conversations' KV caches saved when a model is unloaded (the launcher saves and the forwarders restore).
  const kvCache = options.launcher || settings.kvCacheMaxBytes <= 0 ? undefined : await openKvCache({
    dir: join(options.paths.dataDir, "daemon", "slots"),
    maxBytes: settings.kvCacheMaxBytes,
    log,
  });
  const launcher = options.launcher ?? await serverLauncher({
    kvCache,
    paths: options.paths,
    config: options.config,
    instance: options.instance,
    log,
    parallel: settings.parallel,
    flashAttention: settings.flashAttention,
    cacheType: settings.cacheType,
    readyTimeoutMs: settings.readyTimeoutMs,
    onStopped: dropConnections,
    env: options.env ?? Deno.env.toObject(),
  });
  // Two daemons may share a data dir (a service and one started by hand on another port): the port they
  // listen on keeps their runners' server names apart. Known once listening when the port is 0.
  let listening: number = port;
  const listModels = options.listModels ?? (() => indexedModels(options.paths, options.config));
  // Runners on the CPU alone generate in turns, with the other daemons of this machine too (cpu_turns.ts);
  // LLAMA_MGR_CPU_TURNS=0 lets them all run at once.
  const env = options.env ?? Deno.env.toObject();
  const cpuTurns = env.LLAMA_MGR_CPU_TURNS === "0" ? undefined : createCpuTurns({
    lockFile: join(env.XDG_RUNTIME_DIR || tmpdir(), "llama-mgr-cpu-turns.lock"),
    onError: (err) => logger.warn(`CPU turns hold within this daemon only: ${err.message}`),
  });
  const scheduler = createScheduler({
    launcher,
    cpuTurns,
    maxLoaded: settings.maxLoaded,
    maxInFlight: settings.maxInFlight,
    defaultCtx: settings.defaultCtx,
    conflicts: groupConflicts(options.config.groups),
    log,
    serverTag: () => String(listening),
  });
  const catalog = createCatalog({
    paths: options.paths,
    listModels,
    aliases: options.config.models.aliases,
    ownSettings: ollamaLayerSettings({
      templatesDir: join(options.paths.dataDir, "daemon", "templates"),
      warn: (line) => logger.warn(line),
    }),
  });
  const digests = createDigestCache(join(options.paths.dataDir, "digests.json"), {
    onError: (files, err) =>
      log(`warning: no digest for ${files.join(", ")}: ${(err as Error).message ?? err}`),
  });
  const ctx: DaemonContext = {
    paths: options.paths,
    catalog,
    digests,
    scheduler,
    defaultKeepAliveMs: settings.keepAliveMs,
    version: settings.ollamaVersion,
    log,
    logger,
    requests,
    arrivals: new Arrivals(),
    pull: (ref, pullOptions) =>
      pullModel(options.paths, options.config, ref, {
        ...pullOptions,
        instance: options.instance,
        env: options.env ?? Deno.env.toObject(),
      }),
    // A preset's chat template (the one the launcher gives llama-server) decides whether it can call tools.
    capabilities: (model) => servedCapabilities(model, presetForModel(options.config, model)),
    quantize: async (input, output, type, q) => {
      const named = await getInstance(options.paths, options.instance, options.config.default_instance);
      // A new instance has llama-server alone: the first quantization builds llama-quantize.
      const { instance } = await ensureTool(options.paths, named, "llama-quantize", {
        build: options.config.build.on_demand,
        parallel: options.config.build.parallel,
        ccache: options.config.build.ccache,
      });
      await quantizeModel({
        instance,
        input,
        output,
        outDir: options.paths.modelsDir,
        type,
        parameterCount: q.parameterCount,
        force: true,
        onProgress: q.onProgress && ((n, total) => q.onProgress!(n, total)),
      });
    },
  };
  // /api/show's parameters: what the model's preset sets (the preset the launcher loads it with).
  const parameters = (model: CatalogModel): Record<string, number> => {
    const p = presetForModel(options.config, model);
    return {
      ...(p?.ctx ? { num_ctx: p.ctx } : {}),
      ...(p?.ngl !== undefined ? { num_gpu: p.ngl } : {}),
    };
  };
  const app = createRoutes(ctx, {
    listenHost: host,
    origins: settings.origins,
    apiKey: settings.apiKey,
    parameters,
  });

  // Busy while a request is being answered: until its handler returns, and for a streamed answer until it is
  // written (its runner lease is held till then).
  let handling = 0;
  const trimmer = options.trimMemory ?? true
    ? startMemoryTrimmer({
      pagesIdleMs: 60_000,
      // Under traffic that never pauses for 2 s, freed memory would otherwise build up until it does.
      busyTrimMs: 10_000,
      busy: () => handling > 0 || scheduler.inFlight() > 0,
    })
    : undefined;
  const arrivals = ctx.arrivals;
  const handler = (req: Request): Response | Promise<Response> => {
    trimmer?.activity();
    handling++;
    const generation = isGeneration(req);
    if (generation) arrivals.arrive(req);
    const logged = requests?.begin(req);
    const done = () => {
      handling--;
      if (generation) arrivals.done(req);
    };
    return Promise.resolve(app.fetch(req)).then((res) => {
      done();
      logged?.(res.status);
      return res;
    }, (err) => {
      done();
      logged?.(500);
      throw err;
    });
  };
  quietLegacyAbortNotice();
  const abort = new AbortController();
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({
      hostname: host,
      port,
      signal: abort.signal,
      onListen: () => {},
    }, handler);
  } catch (err) {
    await trimmer?.stop();
    if (err instanceof Deno.errors.AddrInUse) {
      await scheduler.stopAll();
      throw new UserError(`cannot listen on ${host}:${port}: the address is in use`, {
        hint:
          "another daemon (or Ollama) runs there: stop it, or pick another port with --port or OLLAMA_HOST",
      });
    }
    throw err;
  }
  const rotation = startLogRotation(options.paths, {
    servers: () => scheduler.list().map((r) => r.serverName),
    everyMs: options.logRotateMs,
    maxBytes: options.logMaxBytes,
  });
  const addr = server.addr;
  listening = addr.port;
  const urlHost = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      rotation.stop();
      abort.abort();
      await digests.close();
      await scheduler.stopAll();
      await dropAllConnections();
      await server.finished.catch(() => {});
      await trimmer?.stop();
    })();
    return closing;
  };
  return {
    url: `http://${urlHost === "0.0.0.0" ? "127.0.0.1" : urlHost}:${addr.port}`,
    host: addr.hostname,
    port: addr.port,
    ctx,
    close,
    finished: server.finished.then(() => closing).then(() => {}),
  };
}
