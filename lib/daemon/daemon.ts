/**
 * Starting and stopping the daemon: resolve host, port, keep-alive and origins from flags, environment
 * (`OLLAMA_HOST`, `OLLAMA_KEEP_ALIVE`, `OLLAMA_ORIGINS`, `OLLAMA_CONTEXT_LENGTH`, `OLLAMA_NUM_PARALLEL`,
 * `OLLAMA_MAX_LOADED_MODELS`, `OLLAMA_MAX_QUEUE`, `OLLAMA_FLASH_ATTENTION`, `OLLAMA_KV_CACHE_TYPE`,
 * `OLLAMA_LOAD_TIMEOUT`; `OLLAMA_API_KEY` is the
 * client's, the daemon's key is `LLAMA_MGR_API_KEY` or the config) and config; clean up servers orphaned by a daemon that was killed; serve
 * the routes on `Deno.serve`; on close, stop every llama-server this daemon started.
 *
 * @module
 */
import type { Paths } from "../config/paths.ts";
import type { Config } from "../config/schema.ts";
import { startMemoryTrimmer } from "../util/memory.ts";
import { Arrivals, isGeneration } from "./arrivals.ts";
import { UserError } from "../util/errors.ts";
import { OLLAMA_API_VERSION } from "../version.ts";
import {
  type CatalogModel,
  createCatalog,
  listModels as indexedModels,
  type ModelEntry,
  presetForModel,
} from "../models/mod.ts";
import type { DaemonContext } from "./context.ts";
import { defaultKeepAlive } from "./keep_alive.ts";
import { createRoutes } from "./routes.ts";
import { createScheduler, type Launcher } from "./runners/scheduler.ts";
import { CACHE_TYPES, serverLauncher } from "./runners/launcher.ts";
import { dropAllConnections, dropConnections } from "./upstream/client.ts";
import { allowedOrigins } from "./security.ts";
import { startLogRotation } from "../server/logs.ts";

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
  /** Log lines (default: stderr). */
  log?: (line: string) => void;
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
 * Reads `OLLAMA_HOST` as Ollama does: `host`, `host:port`, `:port`, `scheme://host[:port]`; a bare host gets
 * port 11434 (http:// without a port means 80, https:// 443).
 *
 * @example
 * ```ts
 * parseOllamaHost("0.0.0.0"); // { host: "0.0.0.0", port: 11434 }
 * ```
 */
export function parseOllamaHost(value: string): { host: string; port: number } {
  let s = value.trim();
  let defaultPort = 11434;
  const scheme = s.match(/^([a-z]+):\/\//i);
  if (scheme) {
    if (scheme[1].toLowerCase() === "http") defaultPort = 80;
    if (scheme[1].toLowerCase() === "https") defaultPort = 443;
    s = s.slice(scheme[0].length);
  }
  s = s.replace(/\/.*$/, "");
  let host = s;
  let port = defaultPort;
  const v6 = s.match(/^\[([^\]]+)\](?::(\d+))?$/);
  if (v6) {
    host = v6[1];
    if (v6[2]) port = Number(v6[2]);
  } else if (s.includes(":")) {
    const i = s.lastIndexOf(":");
    host = s.slice(0, i);
    port = Number(s.slice(i + 1));
  }
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new UserError(`OLLAMA_HOST '${value}' has an invalid port`, { hint: "use e.g. 127.0.0.1:11434" });
  }
  return { host: host || "127.0.0.1", port };
}

/** A positive integer from the environment; unset or empty is undefined, anything else an error. */
function positiveEnv(env: Record<string, string | undefined>, name: string): number | undefined {
  const raw = env[name]?.trim();
  if (!raw) return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) {
    throw new UserError(`${name}='${raw}' is not a positive whole number`, {
      hint: `set e.g. ${name}=2, or unset it for the default`,
    });
  }
  return n;
}

/** A boolean from the environment as Go's strconv.ParseBool reads it; unset or empty is undefined. */
function boolEnv(env: Record<string, string | undefined>, name: string): boolean | undefined {
  const raw = env[name]?.trim();
  if (!raw) return undefined;
  if (["1", "t", "T", "true", "TRUE", "True"].includes(raw)) return true;
  if (["0", "f", "F", "false", "FALSE", "False"].includes(raw)) return false;
  throw new UserError(`${name}='${raw}' is not a boolean`, { hint: `set ${name}=1 or ${name}=0` });
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
  const env = options.env ?? Deno.env.toObject();
  const cfg = options.config.daemon;
  const log = options.log ?? ((line: string) => console.error(`[daemon] ${line}`));
  const fromEnv = env.OLLAMA_HOST ? parseOllamaHost(env.OLLAMA_HOST) : undefined;
  const host = options.host ?? fromEnv?.host ?? cfg.host;
  const port = options.port ?? fromEnv?.port ?? cfg.port;
  const keepAliveMs = defaultKeepAlive(env.OLLAMA_KEEP_ALIVE || cfg.keep_alive);
  const origins = allowedOrigins([
    ...(env.OLLAMA_ORIGINS ? env.OLLAMA_ORIGINS.split(",") : []),
    ...cfg.origins,
  ]);
  const apiKey = env.LLAMA_MGR_API_KEY || cfg.api_key;
  const parallel = positiveEnv(env, "OLLAMA_NUM_PARALLEL") ?? cfg.num_parallel;
  const maxLoaded = positiveEnv(env, "OLLAMA_MAX_LOADED_MODELS") ?? cfg.max_loaded_models;
  // Ollama queues up to OLLAMA_MAX_QUEUE requests (default 512) beyond those its runners take; here the
  // runners' part is their slots (OLLAMA_NUM_PARALLEL, else llama-server's 4) for each model that may load.
  const maxQueue = positiveEnv(env, "OLLAMA_MAX_QUEUE") ?? cfg.max_queue;
  const flashAttention = boolEnv(env, "OLLAMA_FLASH_ATTENTION") ?? cfg.flash_attention;
  let cacheType = env.OLLAMA_KV_CACHE_TYPE?.trim().toLowerCase() || cfg.kv_cache_type;
  if (cacheType && !CACHE_TYPES.includes(cacheType)) {
    throw new UserError(
      `KV cache type '${cacheType}' (OLLAMA_KV_CACHE_TYPE, daemon.kv_cache_type) is unknown`,
      {
        hint: `use one of ${CACHE_TYPES.join(", ")} (Ollama's are f16, q8_0, q4_0)`,
      },
    );
  }
  if (cacheType && !["f16", "f32", "bf16"].includes(cacheType) && flashAttention === false) {
    // As Ollama does: a quantized V cache needs flash attention.
    log(`OLLAMA_KV_CACHE_TYPE=${cacheType} needs flash attention, which is off: using f16`);
    cacheType = undefined;
  }
  // OLLAMA_LOAD_TIMEOUT as Ollama reads it (a duration or seconds, like OLLAMA_KEEP_ALIVE); 0 or negative is
  // no limit (a day).
  const rawLoadTimeout = env.OLLAMA_LOAD_TIMEOUT?.trim();
  const loadTimeout = rawLoadTimeout ? defaultKeepAlive(rawLoadTimeout) : undefined;
  const readyTimeoutMs = loadTimeout === undefined || (loadTimeout > 0 && Number.isFinite(loadTimeout))
    ? loadTimeout
    : 24 * 3600_000;

  const launcher = options.launcher ?? await serverLauncher({
    paths: options.paths,
    config: options.config,
    instance: options.instance,
    log,
    parallel,
    flashAttention,
    cacheType,
    readyTimeoutMs,
    onStopped: dropConnections,
  });
  const listModels = options.listModels ?? (() => indexedModels(options.paths, options.config));
  const ctxEnv = Number(env.OLLAMA_CONTEXT_LENGTH ?? "");
  const scheduler = createScheduler({
    launcher,
    maxLoaded,
    maxInFlight: maxQueue + (parallel ?? 4) * maxLoaded,
    defaultCtx: Number.isInteger(ctxEnv) && ctxEnv > 0 ? ctxEnv : undefined,
    log,
  });
  const catalog = createCatalog({ paths: options.paths, listModels, aliases: options.config.models.aliases });
  const ctx: DaemonContext = {
    paths: options.paths,
    catalog,
    scheduler,
    defaultKeepAliveMs: keepAliveMs,
    version: options.config.daemon.ollama_version ?? OLLAMA_API_VERSION,
    log,
    arrivals: new Arrivals(),
  };
  // /api/show's parameters: what the model's preset sets (the preset the launcher loads it with).
  const parameters = (model: CatalogModel): Record<string, number> => {
    const p = presetForModel(options.config, model);
    return {
      ...(p?.ctx ? { num_ctx: p.ctx } : {}),
      ...(p?.ngl !== undefined ? { num_gpu: p.ngl } : {}),
    };
  };
  const app = createRoutes(ctx, { listenHost: host, origins, apiKey, parameters });

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
    return Promise.resolve(app.fetch(req)).finally(() => {
      handling--;
      if (generation) arrivals.done(req);
    });
  };
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
  const urlHost = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      rotation.stop();
      abort.abort();
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
