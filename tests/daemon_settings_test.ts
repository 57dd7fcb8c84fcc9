/**
 * The daemon's settings, read by one pure function (lib/daemon/settings.ts): every flag, `OLLAMA_*` variable
 * and config key, their precedence (flag > environment > config > the schema's default), the forms Ollama
 * accepts and the errors a bad value gives. A table: each row is a config (overrides of the `daemon` section),
 * an environment and flags, and either the settings expected (a subset) or the error.
 */
import { assertEquals, assertThrows } from "./_assert.ts";
import { parseConfig } from "../lib/config/load.ts";
import { type DaemonSettings, daemonSettings, type DaemonSettingsInput } from "../lib/daemon/settings.ts";
import { CACHE_TYPES, DEFAULT_LOAD_TIMEOUT_MS } from "../lib/daemon/runners/launcher.ts";
import { DEFAULT_ORIGINS } from "../lib/daemon/security.ts";
import { defaultKeepAlive } from "../lib/daemon/keep_alive.ts";
import { UserError } from "../lib/util/errors.ts";
import { OLLAMA_API_VERSION } from "../lib/version.ts";

interface Row {
  name: string;
  /** Overrides of the config's `daemon` section (validated by the schema, which adds its defaults). */
  config?: Record<string, unknown>;
  env?: Record<string, string>;
  flags?: DaemonSettingsInput["flags"];
  /** The settings expected: only the keys given are compared. */
  expect?: Partial<DaemonSettings>;
  /** A substring of the UserError's message. */
  error?: string;
  /** The UserError's hint, exactly. */
  hint?: string;
}

const DAY = 24 * 3600_000;
const NOT_POSITIVE = (name: string, value: string) => `${name}='${value}' is not a positive whole number`;
const NOT_BOOL = (name: string, value: string) => `${name}='${value}' is not a boolean`;
const FA_OFF = (type: string, from = "OLLAMA_KV_CACHE_TYPE") =>
  `${from}=${type} needs flash attention, which is off: using f16`;

const rows: Row[] = [
  // The defaults.
  {
    name: "nothing set: the defaults",
    expect: {
      host: "127.0.0.1",
      port: 11434,
      keepAliveMs: 300_000,
      origins: [...DEFAULT_ORIGINS],
      apiKey: undefined,
      parallel: undefined,
      maxLoaded: 3,
      maxQueue: 512,
      maxInFlight: 512 + 4 * 3,
      flashAttention: undefined,
      cacheType: undefined,
      readyTimeoutMs: DEFAULT_LOAD_TIMEOUT_MS,
      defaultCtx: undefined,
      ollamaVersion: OLLAMA_API_VERSION,
      logLevel: "info",
      logFormat: "text",
      warnings: [],
    },
  },

  // Logging: flag > LLAMA_MGR_LOG_LEVEL / LLAMA_MGR_LOG_FORMAT > info, text.
  { name: "LLAMA_MGR_LOG_LEVEL", env: { LLAMA_MGR_LOG_LEVEL: " DEBUG " }, expect: { logLevel: "debug" } },
  {
    name: "--log-level beats LLAMA_MGR_LOG_LEVEL",
    env: { LLAMA_MGR_LOG_LEVEL: "debug" },
    flags: { logLevel: "warn" },
    expect: { logLevel: "warn" },
  },
  {
    name: "an unknown log level names where it came from",
    env: { LLAMA_MGR_LOG_LEVEL: "loud" },
    error: "LLAMA_MGR_LOG_LEVEL 'loud' is not a log level",
  },
  { name: "--log-format json", flags: { logFormat: "json" }, expect: { logFormat: "json" } },
  { name: "LLAMA_MGR_LOG_FORMAT", env: { LLAMA_MGR_LOG_FORMAT: "json" }, expect: { logFormat: "json" } },
  {
    name: "an unknown log format",
    flags: { logFormat: "xml" },
    error: "--log-format 'xml' is not a log format",
  },

  // Host and port: flag > OLLAMA_HOST > config.
  {
    name: "config host and port",
    config: { host: "192.168.1.2", port: 8000 },
    expect: { host: "192.168.1.2", port: 8000 },
  },
  {
    name: "OLLAMA_HOST beats the config",
    config: { host: "192.168.1.2", port: 8000 },
    env: { OLLAMA_HOST: "0.0.0.0:9000" },
    expect: { host: "0.0.0.0", port: 9000 },
  },
  {
    name: "a bare host in OLLAMA_HOST gets 11434, not the config's port",
    config: { port: 8000 },
    env: { OLLAMA_HOST: "0.0.0.0" },
    expect: { host: "0.0.0.0", port: 11434 },
  },
  {
    name: "an empty OLLAMA_HOST is unset",
    config: { host: "192.168.1.2", port: 8000 },
    env: { OLLAMA_HOST: "" },
    expect: { host: "192.168.1.2", port: 8000 },
  },
  {
    name: "--host beats OLLAMA_HOST's host; its port still applies",
    config: { host: "192.168.1.2", port: 8000 },
    env: { OLLAMA_HOST: "0.0.0.0:9000" },
    flags: { host: "10.0.0.1" },
    expect: { host: "10.0.0.1", port: 9000 },
  },
  {
    name: "--port beats OLLAMA_HOST's port; its host still applies",
    env: { OLLAMA_HOST: "0.0.0.0:9000" },
    flags: { port: 1234 },
    expect: { host: "0.0.0.0", port: 1234 },
  },
  {
    name: "--port 0 (a free port) is kept",
    config: { port: 8000 },
    env: { OLLAMA_HOST: "0.0.0.0:9000" },
    flags: { port: 0 },
    expect: { port: 0 },
  },
  {
    name: "both flags beat everything",
    config: { host: "192.168.1.2", port: 8000 },
    env: { OLLAMA_HOST: "0.0.0.0:9000" },
    flags: { host: "::1", port: 1 },
    expect: { host: "::1", port: 1 },
  },
  {
    name: "OLLAMA_HOST host:port",
    env: { OLLAMA_HOST: "127.0.0.1:8080" },
    expect: { host: "127.0.0.1", port: 8080 },
  },
  { name: "OLLAMA_HOST :port", env: { OLLAMA_HOST: ":11500" }, expect: { host: "127.0.0.1", port: 11500 } },
  {
    name: "OLLAMA_HOST http://h is port 80",
    env: { OLLAMA_HOST: "http://example" },
    expect: { host: "example", port: 80 },
  },
  {
    name: "OLLAMA_HOST https://h is port 443",
    env: { OLLAMA_HOST: "https://example" },
    expect: { host: "example", port: 443 },
  },
  {
    name: "OLLAMA_HOST scheme://h:port/ with a path",
    env: { OLLAMA_HOST: "https://example:9000/" },
    expect: { host: "example", port: 9000 },
  },
  { name: "OLLAMA_HOST [::1]:8080", env: { OLLAMA_HOST: "[::1]:8080" }, expect: { host: "::1", port: 8080 } },
  { name: "OLLAMA_HOST [::1]", env: { OLLAMA_HOST: "[::1]" }, expect: { host: "::1", port: 11434 } },
  {
    name: "OLLAMA_HOST is trimmed",
    env: { OLLAMA_HOST: " 0.0.0.0:9000 " },
    expect: { host: "0.0.0.0", port: 9000 },
  },
  {
    name: "OLLAMA_HOST with a port past 65535",
    env: { OLLAMA_HOST: "localhost:99999" },
    error: "OLLAMA_HOST 'localhost:99999' has an invalid port",
    hint: "use e.g. 127.0.0.1:11434",
  },
  {
    name: "OLLAMA_HOST with a port that is no number",
    env: { OLLAMA_HOST: "localhost:http" },
    error: "OLLAMA_HOST 'localhost:http' has an invalid port",
    hint: "use e.g. 127.0.0.1:11434",
  },
  {
    name: "OLLAMA_HOST host: with an empty port is an error, as in Ollama",
    env: { OLLAMA_HOST: "localhost:" },
    error: "OLLAMA_HOST 'localhost:' has an invalid port",
  },
  {
    name: "OLLAMA_HOST [::1]: with an empty port is an error",
    env: { OLLAMA_HOST: "[::1]:" },
    error: "OLLAMA_HOST '[::1]:' has an invalid port",
  },
  {
    name: "a bad OLLAMA_HOST is an error even when --host and --port are given",
    env: { OLLAMA_HOST: "localhost:99999" },
    flags: { host: "127.0.0.1", port: 11434 },
    error: "has an invalid port",
  },

  // Keep-alive: OLLAMA_KEEP_ALIVE > config; a duration or bare seconds; negative is forever.
  { name: "config keep_alive duration", config: { keep_alive: "10m" }, expect: { keepAliveMs: 600_000 } },
  { name: "config keep_alive seconds (number)", config: { keep_alive: 60 }, expect: { keepAliveMs: 60_000 } },
  { name: "config keep_alive -1 is forever", config: { keep_alive: -1 }, expect: { keepAliveMs: Infinity } },
  { name: "config keep_alive 0 unloads at once", config: { keep_alive: "0" }, expect: { keepAliveMs: 0 } },
  {
    name: "OLLAMA_KEEP_ALIVE beats the config",
    config: { keep_alive: "10m" },
    env: { OLLAMA_KEEP_ALIVE: "1h" },
    expect: { keepAliveMs: 3_600_000 },
  },
  {
    name: "an empty OLLAMA_KEEP_ALIVE is unset",
    config: { keep_alive: "10m" },
    env: { OLLAMA_KEEP_ALIVE: "" },
    expect: { keepAliveMs: 600_000 },
  },
  {
    name: "a whitespace-only OLLAMA_KEEP_ALIVE is unset, as Ollama trims it",
    config: { keep_alive: "10m" },
    env: { OLLAMA_KEEP_ALIVE: "  " },
    expect: { keepAliveMs: 600_000 },
  },
  {
    name: "OLLAMA_KEEP_ALIVE loses surrounding spaces and quotes",
    env: { OLLAMA_KEEP_ALIVE: ' "1h" ' },
    expect: { keepAliveMs: 3_600_000 },
  },
  {
    name: "a whitespace-only OLLAMA_HOST is unset",
    config: { host: "0.0.0.0", port: 9001 },
    env: { OLLAMA_HOST: " " },
    expect: { host: "0.0.0.0", port: 9001 },
  },
  {
    name: "a whitespace-only OLLAMA_NUM_PARALLEL, OLLAMA_ORIGINS, OLLAMA_CONTEXT_LENGTH is unset",
    env: { OLLAMA_NUM_PARALLEL: " ", OLLAMA_ORIGINS: "  ", OLLAMA_CONTEXT_LENGTH: " " },
    expect: { parallel: undefined, origins: [...DEFAULT_ORIGINS], defaultCtx: undefined },
  },
  {
    name: "OLLAMA_KEEP_ALIVE bare seconds",
    env: { OLLAMA_KEEP_ALIVE: "300" },
    expect: { keepAliveMs: 300_000 },
  },
  {
    name: "OLLAMA_KEEP_ALIVE 1h30m",
    env: { OLLAMA_KEEP_ALIVE: "1h30m" },
    expect: { keepAliveMs: 5_400_000 },
  },
  { name: "OLLAMA_KEEP_ALIVE 0", env: { OLLAMA_KEEP_ALIVE: "0" }, expect: { keepAliveMs: 0 } },
  {
    name: "OLLAMA_KEEP_ALIVE -1 is forever",
    env: { OLLAMA_KEEP_ALIVE: "-1" },
    expect: { keepAliveMs: Infinity },
  },
  {
    name: "OLLAMA_KEEP_ALIVE -1s is forever",
    env: { OLLAMA_KEEP_ALIVE: "-1s" },
    expect: { keepAliveMs: Infinity },
  },
  {
    name: "an unreadable OLLAMA_KEEP_ALIVE is 5 minutes, as in Ollama",
    config: { keep_alive: "10m" },
    env: { OLLAMA_KEEP_ALIVE: "garbage" },
    expect: { keepAliveMs: 300_000 },
  },

  // Origins: OLLAMA_ORIGINS, then the config's, then Ollama's defaults.
  {
    name: "OLLAMA_ORIGINS (comma-separated, trimmed) and the config's add to the defaults",
    config: { origins: ["https://c.example"] },
    env: { OLLAMA_ORIGINS: "https://a.example, https://b.example,," },
    expect: { origins: ["https://a.example", "https://b.example", "https://c.example", ...DEFAULT_ORIGINS] },
  },
  {
    name: "OLLAMA_ORIGINS=*",
    env: { OLLAMA_ORIGINS: "*" },
    expect: { origins: ["*", ...DEFAULT_ORIGINS] },
  },

  // API key: LLAMA_MGR_API_KEY > config; OLLAMA_API_KEY is the client's.
  { name: "config api_key", config: { api_key: "k2" }, expect: { apiKey: "k2" } },
  {
    name: "LLAMA_MGR_API_KEY beats the config",
    config: { api_key: "k2" },
    env: { LLAMA_MGR_API_KEY: "k1" },
    expect: { apiKey: "k1" },
  },
  {
    name: "an empty LLAMA_MGR_API_KEY is unset",
    config: { api_key: "k2" },
    env: { LLAMA_MGR_API_KEY: "" },
    expect: { apiKey: "k2" },
  },
  {
    name: "OLLAMA_API_KEY is not the daemon's",
    env: { OLLAMA_API_KEY: "client" },
    expect: { apiKey: undefined },
  },

  // OLLAMA_NUM_PARALLEL > config num_parallel; it sizes maxInFlight.
  {
    name: "OLLAMA_NUM_PARALLEL",
    env: { OLLAMA_NUM_PARALLEL: "2" },
    expect: { parallel: 2, maxInFlight: 512 + 2 * 3 },
  },
  {
    name: "config num_parallel",
    config: { num_parallel: 3 },
    expect: { parallel: 3, maxInFlight: 512 + 3 * 3 },
  },
  {
    name: "OLLAMA_NUM_PARALLEL beats the config",
    config: { num_parallel: 3 },
    env: { OLLAMA_NUM_PARALLEL: "1" },
    expect: { parallel: 1 },
  },
  {
    name: "OLLAMA_NUM_PARALLEL is trimmed; empty is unset",
    env: { OLLAMA_NUM_PARALLEL: " 2 ", OLLAMA_MAX_QUEUE: "" },
    expect: { parallel: 2, maxQueue: 512 },
  },
  {
    name: "OLLAMA_NUM_PARALLEL not a number",
    env: { OLLAMA_NUM_PARALLEL: "two" },
    error: NOT_POSITIVE("OLLAMA_NUM_PARALLEL", "two"),
    hint: "set e.g. OLLAMA_NUM_PARALLEL=2, or unset it for the default",
  },
  {
    name: "OLLAMA_NUM_PARALLEL zero",
    env: { OLLAMA_NUM_PARALLEL: "0" },
    error: NOT_POSITIVE("OLLAMA_NUM_PARALLEL", "0"),
  },
  {
    name: "OLLAMA_NUM_PARALLEL negative",
    env: { OLLAMA_NUM_PARALLEL: "-1" },
    error: NOT_POSITIVE("OLLAMA_NUM_PARALLEL", "-1"),
  },
  {
    name: "OLLAMA_NUM_PARALLEL fractional",
    env: { OLLAMA_NUM_PARALLEL: "1.5" },
    error: NOT_POSITIVE("OLLAMA_NUM_PARALLEL", "1.5"),
  },

  // OLLAMA_MAX_LOADED_MODELS > config max_loaded_models.
  {
    name: "OLLAMA_MAX_LOADED_MODELS",
    env: { OLLAMA_MAX_LOADED_MODELS: "1" },
    expect: { maxLoaded: 1, maxInFlight: 512 + 4 * 1 },
  },
  { name: "config max_loaded_models", config: { max_loaded_models: 5 }, expect: { maxLoaded: 5 } },
  {
    name: "OLLAMA_MAX_LOADED_MODELS beats the config",
    config: { max_loaded_models: 5 },
    env: { OLLAMA_MAX_LOADED_MODELS: "2" },
    expect: { maxLoaded: 2 },
  },
  {
    name: "OLLAMA_MAX_LOADED_MODELS zero",
    env: { OLLAMA_MAX_LOADED_MODELS: "0" },
    error: NOT_POSITIVE("OLLAMA_MAX_LOADED_MODELS", "0"),
    hint: "set e.g. OLLAMA_MAX_LOADED_MODELS=2, or unset it for the default",
  },
  {
    name: "OLLAMA_MAX_LOADED_MODELS not a number",
    env: { OLLAMA_MAX_LOADED_MODELS: "all" },
    error: NOT_POSITIVE("OLLAMA_MAX_LOADED_MODELS", "all"),
  },

  // OLLAMA_MAX_QUEUE > config max_queue; maxInFlight is the queue plus every loadable model's slots.
  {
    name: "OLLAMA_MAX_QUEUE",
    env: { OLLAMA_MAX_QUEUE: "10" },
    expect: { maxQueue: 10, maxInFlight: 10 + 4 * 3 },
  },
  { name: "config max_queue", config: { max_queue: 100 }, expect: { maxQueue: 100 } },
  {
    name: "OLLAMA_MAX_QUEUE beats the config",
    config: { max_queue: 100 },
    env: { OLLAMA_MAX_QUEUE: "7" },
    expect: { maxQueue: 7 },
  },
  {
    name: "maxInFlight from all three",
    env: { OLLAMA_NUM_PARALLEL: "2", OLLAMA_MAX_LOADED_MODELS: "2", OLLAMA_MAX_QUEUE: "10" },
    expect: { maxInFlight: 10 + 2 * 2 },
  },
  {
    name: "maxInFlight from the config",
    config: { num_parallel: 1, max_loaded_models: 1, max_queue: 1 },
    expect: { maxInFlight: 2 },
  },
  {
    name: "OLLAMA_MAX_QUEUE negative",
    env: { OLLAMA_MAX_QUEUE: "-5" },
    error: NOT_POSITIVE("OLLAMA_MAX_QUEUE", "-5"),
    hint: "set e.g. OLLAMA_MAX_QUEUE=2, or unset it for the default",
  },
  {
    name: "OLLAMA_MAX_QUEUE not a number",
    env: { OLLAMA_MAX_QUEUE: "lots" },
    error: NOT_POSITIVE("OLLAMA_MAX_QUEUE", "lots"),
  },

  // OLLAMA_FLASH_ATTENTION (Go's ParseBool) > config flash_attention.
  ...["1", "t", "T", "true", "TRUE", "True"].map((v): Row => ({
    name: `OLLAMA_FLASH_ATTENTION=${v} is on`,
    env: { OLLAMA_FLASH_ATTENTION: v },
    expect: { flashAttention: true },
  })),
  ...["0", "f", "F", "false", "FALSE", "False"].map((v): Row => ({
    name: `OLLAMA_FLASH_ATTENTION=${v} is off`,
    env: { OLLAMA_FLASH_ATTENTION: v },
    expect: { flashAttention: false },
  })),
  { name: "config flash_attention", config: { flash_attention: false }, expect: { flashAttention: false } },
  {
    name: "OLLAMA_FLASH_ATTENTION beats the config",
    config: { flash_attention: true },
    env: { OLLAMA_FLASH_ATTENTION: "0" },
    expect: { flashAttention: false },
  },
  {
    name: "an empty OLLAMA_FLASH_ATTENTION is unset",
    config: { flash_attention: true },
    env: { OLLAMA_FLASH_ATTENTION: "" },
    expect: { flashAttention: true },
  },
  {
    name: "OLLAMA_FLASH_ATTENTION=yes",
    env: { OLLAMA_FLASH_ATTENTION: "yes" },
    error: NOT_BOOL("OLLAMA_FLASH_ATTENTION", "yes"),
    hint: "set OLLAMA_FLASH_ATTENTION=1 or OLLAMA_FLASH_ATTENTION=0",
  },
  {
    name: "OLLAMA_FLASH_ATTENTION=on",
    env: { OLLAMA_FLASH_ATTENTION: "on" },
    error: NOT_BOOL("OLLAMA_FLASH_ATTENTION", "on"),
  },

  // OLLAMA_KV_CACHE_TYPE > config kv_cache_type, one of llama-server's; quantized needs flash attention.
  ...CACHE_TYPES.map((type): Row => ({
    name: `OLLAMA_KV_CACHE_TYPE=${type}`,
    env: { OLLAMA_KV_CACHE_TYPE: type },
    expect: { cacheType: type, warnings: [] },
  })),
  {
    name: "OLLAMA_KV_CACHE_TYPE is trimmed and lower-cased",
    env: { OLLAMA_KV_CACHE_TYPE: " Q8_0 " },
    expect: { cacheType: "q8_0" },
  },
  { name: "config kv_cache_type", config: { kv_cache_type: "q4_0" }, expect: { cacheType: "q4_0" } },
  {
    name: "OLLAMA_KV_CACHE_TYPE beats the config",
    config: { kv_cache_type: "q4_0" },
    env: { OLLAMA_KV_CACHE_TYPE: "q8_0" },
    expect: { cacheType: "q8_0" },
  },
  {
    name: "an empty OLLAMA_KV_CACHE_TYPE is unset",
    config: { kv_cache_type: "q4_0" },
    env: { OLLAMA_KV_CACHE_TYPE: "" },
    expect: { cacheType: "q4_0" },
  },
  {
    name: "OLLAMA_KV_CACHE_TYPE unknown",
    env: { OLLAMA_KV_CACHE_TYPE: "q3_k" },
    error: "KV cache type 'q3_k' (OLLAMA_KV_CACHE_TYPE) is unknown",
    hint: `use one of ${CACHE_TYPES.join(", ")} (Ollama's are f16, q8_0, q4_0)`,
  },
  {
    name: "config kv_cache_type unknown",
    config: { kv_cache_type: "fp8" },
    error: "KV cache type 'fp8' (daemon.kv_cache_type) is unknown",
  },
  {
    name: "an unknown type is an error before the flash-attention fallback",
    env: { OLLAMA_KV_CACHE_TYPE: "q3_k", OLLAMA_FLASH_ATTENTION: "0" },
    error: "KV cache type 'q3_k'",
  },
  {
    name: "a quantized cache with flash attention off falls back to f16, with a warning",
    env: { OLLAMA_KV_CACHE_TYPE: "q8_0", OLLAMA_FLASH_ATTENTION: "0" },
    expect: { cacheType: undefined, flashAttention: false, warnings: [FA_OFF("q8_0")] },
  },
  {
    name: "the fallback from the config's settings too",
    config: { kv_cache_type: "q4_0", flash_attention: false },
    expect: { cacheType: undefined, warnings: [FA_OFF("q4_0", "daemon.kv_cache_type")] },
  },
  {
    name: "the fallback warning names the variable when the variable set the type",
    config: { kv_cache_type: "q4_0", flash_attention: false },
    env: { OLLAMA_KV_CACHE_TYPE: "q8_0" },
    expect: { cacheType: undefined, warnings: [FA_OFF("q8_0")] },
  },
  {
    name: "config kv_cache_type is lower-cased like the variable",
    config: { kv_cache_type: "Q8_0" },
    expect: { cacheType: "q8_0" },
  },
  {
    name: "a blank OLLAMA_KV_CACHE_TYPE is unset",
    config: { kv_cache_type: "q4_0" },
    env: { OLLAMA_KV_CACHE_TYPE: "  " },
    expect: { cacheType: "q4_0" },
  },
  ...["f16", "f32", "bf16"].map((type): Row => ({
    name: `${type} needs no flash attention`,
    env: { OLLAMA_KV_CACHE_TYPE: type, OLLAMA_FLASH_ATTENTION: "false" },
    expect: { cacheType: type, warnings: [] },
  })),
  {
    name: "a quantized cache with flash attention unset (llama-server's auto) is kept",
    env: { OLLAMA_KV_CACHE_TYPE: "q8_0" },
    expect: { cacheType: "q8_0", flashAttention: undefined, warnings: [] },
  },
  {
    name: "a quantized cache with flash attention on is kept",
    env: { OLLAMA_KV_CACHE_TYPE: "q4_0", OLLAMA_FLASH_ATTENTION: "1" },
    expect: { cacheType: "q4_0", flashAttention: true, warnings: [] },
  },

  // OLLAMA_LOAD_TIMEOUT: a duration or seconds; 0 or negative is no limit (a day).
  { name: "OLLAMA_LOAD_TIMEOUT unset", expect: { readyTimeoutMs: DEFAULT_LOAD_TIMEOUT_MS } },
  {
    name: "OLLAMA_LOAD_TIMEOUT empty",
    env: { OLLAMA_LOAD_TIMEOUT: " " },
    expect: { readyTimeoutMs: 180_000 },
  },
  { name: "OLLAMA_LOAD_TIMEOUT 50ms", env: { OLLAMA_LOAD_TIMEOUT: "50ms" }, expect: { readyTimeoutMs: 50 } },
  { name: "OLLAMA_LOAD_TIMEOUT 2m", env: { OLLAMA_LOAD_TIMEOUT: "2m" }, expect: { readyTimeoutMs: 120_000 } },
  {
    name: "OLLAMA_LOAD_TIMEOUT seconds",
    env: { OLLAMA_LOAD_TIMEOUT: "90" },
    expect: { readyTimeoutMs: 90_000 },
  },
  {
    name: "OLLAMA_LOAD_TIMEOUT 0 is a day",
    env: { OLLAMA_LOAD_TIMEOUT: "0" },
    expect: { readyTimeoutMs: DAY },
  },
  {
    name: "OLLAMA_LOAD_TIMEOUT -1 is a day",
    env: { OLLAMA_LOAD_TIMEOUT: "-1" },
    expect: { readyTimeoutMs: DAY },
  },
  {
    name: "OLLAMA_LOAD_TIMEOUT -5m is a day",
    env: { OLLAMA_LOAD_TIMEOUT: "-5m" },
    expect: { readyTimeoutMs: DAY },
  },
  {
    name: "an unreadable OLLAMA_LOAD_TIMEOUT is 5 minutes, Ollama's default",
    env: { OLLAMA_LOAD_TIMEOUT: "soon" },
    expect: { readyTimeoutMs: 300_000 },
  },

  // OLLAMA_CONTEXT_LENGTH: read leniently, as Ollama does (a bad value is ignored).
  { name: "OLLAMA_CONTEXT_LENGTH", env: { OLLAMA_CONTEXT_LENGTH: "8192" }, expect: { defaultCtx: 8192 } },
  ...["", "abc", "0", "-5", "1.5"].map((v): Row => ({
    name: `OLLAMA_CONTEXT_LENGTH='${v}' is ignored`,
    env: { OLLAMA_CONTEXT_LENGTH: v },
    expect: { defaultCtx: undefined },
  })),

  // The KV caches saved on unload: a size cap, 2 GiB unless set, 0 for none.
  { name: "kv_cache_max unset is 2 GiB", expect: { kvCacheMaxBytes: 2 * 1024 ** 3 } },
  {
    name: "kv_cache_max as a size",
    config: { kv_cache_max: "512MiB" },
    expect: { kvCacheMaxBytes: 512 * 1024 ** 2 },
  },
  { name: "kv_cache_max 0 saves none", config: { kv_cache_max: 0 }, expect: { kvCacheMaxBytes: 0 } },
  {
    name: "kv_cache_max unreadable",
    config: { kv_cache_max: "big" },
    error: 'daemon.kv_cache_max: invalid size "big"',
    hint: "give bytes or a size such as 512MiB or 2GiB (0 turns it off)",
  },

  // The version /api/version reports.
  { name: "config ollama_version", config: { ollama_version: "0.6.4" }, expect: { ollamaVersion: "0.6.4" } },
];

Deno.test("daemon settings: every flag, variable and config key, as a table", async (t) => {
  for (const row of rows) {
    await t.step(row.name, () => {
      const input: DaemonSettingsInput = {
        config: parseConfig({ daemon: row.config ?? {} }).daemon,
        env: row.env ?? {},
        flags: row.flags,
      };
      if (row.error !== undefined) {
        const err = assertThrows(() => daemonSettings(input), UserError, row.error);
        if (row.hint !== undefined) assertEquals(err.hint, row.hint);
        return;
      }
      const got = daemonSettings(input);
      for (const [key, want] of Object.entries(row.expect ?? {})) {
        assertEquals(got[key as keyof DaemonSettings], want, `${row.name}: ${key}`);
      }
    });
  }
});

Deno.test("daemon settings: with nothing set, the config schema's defaults", () => {
  const cfg = parseConfig({}).daemon;
  const s = daemonSettings({ config: cfg, env: {} });
  assertEquals(s.host, cfg.host);
  assertEquals(s.port, cfg.port);
  assertEquals(s.keepAliveMs, defaultKeepAlive(cfg.keep_alive));
  assertEquals(s.origins, [...cfg.origins, ...DEFAULT_ORIGINS]);
  assertEquals(s.apiKey, cfg.api_key);
  assertEquals(s.parallel, cfg.num_parallel);
  assertEquals(s.maxLoaded, cfg.max_loaded_models);
  assertEquals(s.maxQueue, cfg.max_queue);
  assertEquals(s.flashAttention, cfg.flash_attention);
  assertEquals(s.cacheType, cfg.kv_cache_type);
  assertEquals(s.ollamaVersion, OLLAMA_API_VERSION);
});

Deno.test("daemon settings: only the environment given is read, not the process's", () => {
  const before = Deno.env.get("OLLAMA_NUM_PARALLEL");
  Deno.env.set("OLLAMA_NUM_PARALLEL", "7");
  try {
    const s = daemonSettings({ config: parseConfig({}).daemon, env: {} });
    assertEquals(s.parallel, undefined);
  } finally {
    if (before === undefined) Deno.env.delete("OLLAMA_NUM_PARALLEL");
    else Deno.env.set("OLLAMA_NUM_PARALLEL", before);
  }
});
