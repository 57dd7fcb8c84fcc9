/**
 * The daemon's settings, read in one place: the flags (`--host`, `--port`), Ollama's environment variables
 * (`OLLAMA_HOST`, `OLLAMA_KEEP_ALIVE`, `OLLAMA_ORIGINS`, `OLLAMA_CONTEXT_LENGTH`, `OLLAMA_NUM_PARALLEL`,
 * `OLLAMA_MAX_LOADED_MODELS`, `OLLAMA_MAX_QUEUE`, `OLLAMA_FLASH_ATTENTION`, `OLLAMA_KV_CACHE_TYPE`,
 * `OLLAMA_LOAD_TIMEOUT`; `OLLAMA_API_KEY` is the client's, the daemon's key is `LLAMA_MGR_API_KEY`) and the
 * config's `daemon` section. A flag wins over the environment, which wins over the config, whose schema holds
 * the defaults. Pure: no environment or file is read here, and what would be logged comes back as `warnings`.
 *
 * @module
 */
import type { Config } from "../config/schema.ts";
import { UserError } from "../util/errors.ts";
import { type LogFormat, type LogLevel, parseLogFormat, parseLogLevel } from "../util/log.ts";
import { OLLAMA_API_VERSION } from "../version.ts";
import { defaultKeepAlive, type KeepAliveMs } from "./keep_alive.ts";
import { CACHE_TYPES, DEFAULT_LOAD_TIMEOUT_MS } from "./runners/launcher.ts";
import { allowedOrigins } from "./security.ts";
import { DEFAULT_KV_CACHE_MAX_BYTES, parseByteSize } from "./runners/kv_cache.ts";

/** What {@linkcode daemonSettings} reads. */
export interface DaemonSettingsInput {
  /** The config's `daemon` section (validated, so with the schema's defaults). */
  config: Config["daemon"];
  /** The environment (the daemon passes the process environment). */
  env: Record<string, string | undefined>;
  /** The command line's flags. */
  flags?: {
    /** `--host`: the address to listen on. */
    host?: string;
    /** `--port`: the port (0 picks a free one). */
    port?: number;
    /** `--log-level`. */
    logLevel?: string;
    /** `--log-format`. */
    logFormat?: string;
  };
}

/** Every setting the daemon runs with, resolved. */
export interface DaemonSettings {
  /** Address to listen on. */
  host: string;
  /** Port to listen on (0: a free one). */
  port: number;
  /** The default keep_alive, in milliseconds (`Infinity`: forever). */
  keepAliveMs: KeepAliveMs;
  /** Allowed browser origins: the user's (environment, then config), then Ollama's defaults. */
  origins: string[];
  /** When set, requests must send `Authorization: Bearer <key>` (or `x-api-key: <key>`). */
  apiKey?: string;
  /** Requests one model answers at once, each with the full context; unset: llama-server's 4 shared slots. */
  parallel?: number;
  /** How many models may be loaded at once. */
  maxLoaded: number;
  /** Requests that may wait beyond the slots of the models that may be loaded. */
  maxQueue: number;
  /** Requests running or waiting before new ones get a 503: the queue plus every loadable model's slots. */
  maxInFlight: number;
  /** Flash attention for chat models; unset: llama-server's `auto`. */
  flashAttention?: boolean;
  /** KV cache type for chat models (one of the launcher's `CACHE_TYPES`); unset: f16. */
  cacheType?: string;
  /** How long a model may take to load, in milliseconds. */
  readyTimeoutMs: number;
  /** Size cap of the KV caches saved when a model is unloaded, in bytes (0: none are saved). */
  kvCacheMaxBytes: number;
  /** Context for a model whose preset and request set none; unset: the scheduler's 4096. */
  defaultCtx?: number;
  /** The Ollama version `/api/version` reports. */
  ollamaVersion: string;
  /** The daemon's log level: `--log-level`, else `LLAMA_MGR_LOG_LEVEL`, else info. */
  logLevel: LogLevel;
  /** The daemon's log lines: `--log-format`, else `LLAMA_MGR_LOG_FORMAT`, else text. */
  logFormat: LogFormat;
  /** Lines to log: settings that were read but changed (a quantized KV cache without flash attention). */
  warnings: string[];
}

/** What `OLLAMA_LOAD_TIMEOUT` of 0 or less means: no limit, which is a day. */
const NO_LOAD_LIMIT_MS = 24 * 3600_000;

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
  const v6 = s.match(/^\[([^\]]+)\](?::(.*))?$/);
  // A colon with nothing after it (`host:`) is no port at all: Go's strconv reads "" as an error, and so
  // does Ollama's envconfig.Host(); Number("") would be 0, a random port.
  let portText: string | undefined;
  if (v6) {
    host = v6[1];
    portText = v6[2];
  } else if (s.includes(":")) {
    const i = s.lastIndexOf(":");
    host = s.slice(0, i);
    portText = s.slice(i + 1);
  }
  if (portText !== undefined) port = /^\d+$/.test(portText) ? Number(portText) : NaN;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new UserError(`OLLAMA_HOST '${value}' has an invalid port`, { hint: "use e.g. 127.0.0.1:11434" });
  }
  return { host: host || "127.0.0.1", port };
}

/**
 * A variable's value as Ollama's envconfig reads it: without surrounding spaces and quotes; blank is unset
 * (undefined).
 */
function envVar(env: Record<string, string | undefined>, name: string): string | undefined {
  return env[name]?.trim().replace(/^["']+|["']+$/g, "").trim() || undefined;
}

/** A positive integer from the environment; unset or blank is undefined, anything else an error. */
function positiveEnv(env: Record<string, string | undefined>, name: string): number | undefined {
  const raw = envVar(env, name);
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
  const raw = envVar(env, name);
  if (!raw) return undefined;
  if (["1", "t", "T", "true", "TRUE", "True"].includes(raw)) return true;
  if (["0", "f", "F", "false", "FALSE", "False"].includes(raw)) return false;
  throw new UserError(`${name}='${raw}' is not a boolean`, { hint: `set ${name}=1 or ${name}=0` });
}

/**
 * `OLLAMA_LOAD_TIMEOUT` as Ollama reads it: a duration or seconds (like `OLLAMA_KEEP_ALIVE`, so an unreadable
 * value is 5 minutes); 0 or negative is no limit (a day); unset or empty is the launcher's default.
 */
function loadTimeoutEnv(env: Record<string, string | undefined>): number {
  const raw = envVar(env, "OLLAMA_LOAD_TIMEOUT");
  if (!raw) return DEFAULT_LOAD_TIMEOUT_MS;
  const ms = defaultKeepAlive(raw);
  return ms > 0 && Number.isFinite(ms) ? ms : NO_LOAD_LIMIT_MS;
}

/**
 * `OLLAMA_CONTEXT_LENGTH`: a positive whole number, else unset. Read leniently, as Ollama reads it (its
 * `envconfig.Uint` logs a bad value and uses the default): a bad value is ignored, not an error.
 */
function contextLengthEnv(env: Record<string, string | undefined>): number | undefined {
  const n = Number(envVar(env, "OLLAMA_CONTEXT_LENGTH") ?? "");
  return Number.isInteger(n) && n > 0 ? n : undefined;
}

/** `daemon.kv_cache_max` in bytes, with the config key named in the error. */
function kvCacheMax(value: string | number | undefined): number {
  if (value === undefined) return DEFAULT_KV_CACHE_MAX_BYTES;
  try {
    return parseByteSize(value);
  } catch (err) {
    throw new UserError(`daemon.kv_cache_max: ${(err as Error).message}`, { hint: (err as UserError).hint });
  }
}

/**
 * Resolves every daemon setting from the flags, the environment and the config (in that order of
 * precedence). Throws a {@linkcode UserError} naming the variable for a bad `OLLAMA_HOST` port, a bad
 * number or boolean, or an unknown KV cache type.
 *
 * @example
 * ```ts
 * const s = daemonSettings({ config: config.daemon, env: { OLLAMA_HOST: ":11500" }, flags: {} });
 * s.port; // 11500
 * ```
 */
export function daemonSettings(input: DaemonSettingsInput): DaemonSettings {
  const { config: cfg, env, flags = {} } = input;
  const warnings: string[] = [];
  const hostVar = envVar(env, "OLLAMA_HOST");
  const fromEnv = hostVar ? parseOllamaHost(hostVar) : undefined;
  const host = flags.host ?? fromEnv?.host ?? cfg.host;
  const port = flags.port ?? fromEnv?.port ?? cfg.port;
  const keepAliveMs = defaultKeepAlive(envVar(env, "OLLAMA_KEEP_ALIVE") ?? cfg.keep_alive);
  const originsVar = envVar(env, "OLLAMA_ORIGINS");
  const origins = allowedOrigins([...(originsVar ? originsVar.split(",") : []), ...cfg.origins]);
  const apiKey = env.LLAMA_MGR_API_KEY || cfg.api_key;
  const parallel = positiveEnv(env, "OLLAMA_NUM_PARALLEL") ?? cfg.num_parallel;
  const maxLoaded = positiveEnv(env, "OLLAMA_MAX_LOADED_MODELS") ?? cfg.max_loaded_models;
  // Ollama queues up to OLLAMA_MAX_QUEUE requests (default 512) beyond those its runners take; here the
  // runners' part is their slots (OLLAMA_NUM_PARALLEL, else llama-server's 4) for each model that may load.
  const maxQueue = positiveEnv(env, "OLLAMA_MAX_QUEUE") ?? cfg.max_queue;
  const flashAttention = boolEnv(env, "OLLAMA_FLASH_ATTENTION") ?? cfg.flash_attention;
  const cacheTypeVar = envVar(env, "OLLAMA_KV_CACHE_TYPE");
  const cacheTypeFrom = cacheTypeVar ? "OLLAMA_KV_CACHE_TYPE" : "daemon.kv_cache_type";
  let cacheType = (cacheTypeVar ?? cfg.kv_cache_type?.trim())?.toLowerCase() || undefined;
  if (cacheType && !CACHE_TYPES.includes(cacheType)) {
    throw new UserError(
      `KV cache type '${cacheType}' (${cacheTypeFrom}) is unknown`,
      {
        hint: `use one of ${CACHE_TYPES.join(", ")} (Ollama's are f16, q8_0, q4_0)`,
      },
    );
  }
  if (cacheType && !["f16", "f32", "bf16"].includes(cacheType) && flashAttention === false) {
    // As Ollama does: a quantized V cache needs flash attention.
    warnings.push(`${cacheTypeFrom}=${cacheType} needs flash attention, which is off: using f16`);
    cacheType = undefined;
  }
  return {
    host,
    port,
    keepAliveMs,
    origins,
    apiKey,
    parallel,
    maxLoaded,
    maxQueue,
    maxInFlight: maxQueue + (parallel ?? 4) * maxLoaded,
    flashAttention,
    cacheType,
    readyTimeoutMs: loadTimeoutEnv(env),
    kvCacheMaxBytes: kvCacheMax(cfg.kv_cache_max),
    defaultCtx: contextLengthEnv(env),
    ollamaVersion: cfg.ollama_version ?? OLLAMA_API_VERSION,
    logLevel: flags.logLevel !== undefined
      ? parseLogLevel(flags.logLevel, "--log-level")
      : parseLogLevel(envVar(env, "LLAMA_MGR_LOG_LEVEL") ?? "info", "LLAMA_MGR_LOG_LEVEL"),
    logFormat: flags.logFormat !== undefined
      ? parseLogFormat(flags.logFormat, "--log-format")
      : parseLogFormat(envVar(env, "LLAMA_MGR_LOG_FORMAT") ?? "text", "LLAMA_MGR_LOG_FORMAT"),
    warnings,
  };
}
