/**
 * Where llama-mgr keeps its data and configuration.
 *
 * Data: `--data-dir`, else `$LLAMA_MGR_DATA_DIR`, else `$XDG_DATA_HOME/llama-mgr`, else
 * `~/.local/share/llama-mgr`. Config: `--config`, else `$LLAMA_MGR_CONFIG`, else
 * `$XDG_CONFIG_HOME/llama-mgr/config.yaml`, else `~/.config/llama-mgr/config.yaml`.
 *
 * @module
 */
import { join } from "node:path";
import { expandHome } from "../util/fs.ts";

/**
 * Every path llama-mgr uses, derived from the data dir and the config file.
 *
 * @example
 * ```ts
 * const paths: Paths = resolvePaths({ dataDir: "/tmp/llm" });
 * console.log(paths.serversDir); // /tmp/llm/servers
 * ```
 */
export interface Paths {
  /** Root of all data. */
  dataDir: string;
  /** The YAML config file. */
  configFile: string;
  /** `<data>/instances`: one folder per llama.cpp instance. */
  instancesDir: string;
  /** `<data>/models`: where convert and quantize write models. */
  modelsDir: string;
  /** `<data>/logs`: build and server logs. */
  logsDir: string;
  /** `<data>/servers`: supervised server state. */
  serversDir: string;
  /** `<data>/locks`: lock files. */
  locksDir: string;
  /** `<data>/state.json`: small global state (default instance). */
  stateFile: string;
  /** `<data>/index.json`: the model index cache. */
  indexFile: string;
}

/**
 * Overrides for {@linkcode resolvePaths}.
 *
 * @example
 * ```ts
 * const options: PathOptions = { configFile: "./llama-mgr.yaml", env: { HOME: "/home/me" } };
 * resolvePaths(options).dataDir; // /home/me/.local/share/llama-mgr
 * ```
 */
export interface PathOptions {
  /** Data dir (the `--data-dir` flag). */
  dataDir?: string;
  /** Config file (the `--config` flag). */
  configFile?: string;
  /** Environment to read (default: the process environment). */
  env?: Record<string, string | undefined>;
}

/**
 * Resolves the data dir and config file from flags, environment and XDG defaults.
 *
 * @example
 * ```ts
 * const paths = resolvePaths({ dataDir: "/tmp/llm" });
 * console.log(paths.instancesDir); // /tmp/llm/instances
 * ```
 */
export function resolvePaths(options: PathOptions = {}): Paths {
  const env = options.env ?? Deno.env.toObject();
  const home = env.HOME ?? "/";
  const dataDir = expandHome(
    options.dataDir ?? env.LLAMA_MGR_DATA_DIR ??
      join(env.XDG_DATA_HOME || join(home, ".local", "share"), "llama-mgr"),
  );
  const configFile = expandHome(
    options.configFile ?? env.LLAMA_MGR_CONFIG ??
      join(env.XDG_CONFIG_HOME || join(home, ".config"), "llama-mgr", "config.yaml"),
  );
  return {
    dataDir,
    configFile,
    instancesDir: join(dataDir, "instances"),
    modelsDir: join(dataDir, "models"),
    logsDir: join(dataDir, "logs"),
    serversDir: join(dataDir, "servers"),
    locksDir: join(dataDir, "locks"),
    stateFile: join(dataDir, "state.json"),
    indexFile: join(dataDir, "index.json"),
  };
}
