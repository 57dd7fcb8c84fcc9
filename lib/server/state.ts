/**
 * A supervised server's record (one JSON file per name in `<data>/servers/`, written atomically) and the
 * state machine its `state` follows. Transitions happen here and nowhere else.
 *
 * @module
 */
import { join } from "node:path";
import type { Paths } from "../config/paths.ts";
import { readJson, writeJsonAtomic } from "../util/fs.ts";
import { UserError } from "../util/errors.ts";

/**
 * The states a server goes through. `crashed` is never stored: it is what a dead `ready` process is.
 *
 * @example
 * ```ts ignore
 * const up = (await listServers(paths)).filter((s) => s.state === "ready");
 * ```
 */
export type ServerState = "starting" | "ready" | "stopping" | "stopped" | "failed" | "crashed";

/** Allowed transitions of the stored state. */
export const TRANSITIONS: Record<ServerState, ServerState[]> = {
  stopped: ["starting"],
  failed: ["starting", "stopped"],
  crashed: ["starting", "stopped"],
  starting: ["ready", "failed", "stopping", "stopped"],
  ready: ["stopping", "stopped", "crashed"],
  stopping: ["stopped"],
};

/**
 * What a supervised process is: a llama-server serving a model, or a llama.cpp RPC worker (`ggml-rpc-server`)
 * lending its devices to a llama-server on another machine.
 *
 * @example
 * ```ts ignore
 * const workers = await listServers(paths, { kind: "rpc-worker" });
 * ```
 */
export type ServerKind = "llama-server" | "rpc-worker";

/**
 * Who started a server: the CLI, or a daemon (which cleans up after a daemon that died).
 *
 * @example
 * ```ts ignore
 * const mine = (await listServers(paths)).filter((s) => s.owner?.pid === Deno.pid);
 * ```
 */
export interface ServerOwner {
  /** `cli` or `daemon`. */
  kind: "cli" | "daemon";
  /** The owner's pid. */
  pid: number;
}

/**
 * What is needed to start (or restart) a server: what it was started with, as recorded.
 *
 * @example
 * ```ts ignore
 * const { spec } = await serverStatus(paths, "chat");
 * console.log(spec.modelPath, spec.ctx, spec.args);
 * ```
 */
export interface StoredSpec {
  /** Server name. */
  name: string;
  /** What runs: llama-server (absent) or an RPC worker. */
  kind?: ServerKind;
  /** Model file (first part of a split model). */
  modelPath: string;
  /** The model's name in the index, if known. */
  modelName?: string;
  /** Projector for vision models. */
  mmproj?: string;
  /** Instance name. */
  instance: string;
  /** Bind address. */
  host: string;
  /** Port (a number once chosen). */
  port: number | "auto";
  /** Context size. */
  ctx?: number;
  /** GPU layers. */
  ngl?: number;
  /** Extra llama-server flags. */
  args: string[];
  /** Extra environment. */
  env: Record<string, string>;
  /** Started with an API key; the key itself is not recorded (a restart takes it from the running process). */
  keyed?: boolean;
  /** Name the server reports for its model (`--alias`). */
  alias?: string;
  /** Who started it. */
  owner?: ServerOwner;
}

/** The stored record of one server. */
export interface ServerRecord {
  /** Server name. */
  name: string;
  /** Stored state. */
  state: Exclude<ServerState, "crashed">;
  /** The llama-server process id while it runs. */
  pid?: number;
  /** The process start time (clock ticks since boot), to tell our process from a reused pid. */
  startTicks?: number;
  /** The boot it was started in, to tell a record from before a reboot. */
  bootId?: string;
  /** The process that started it and waits for it to be ready (the CLI or the daemon). */
  starterPid?: number;
  /** The llama-server binary. */
  binary: string;
  /** The whole command line. */
  argv: string[];
  /** Bind address. */
  host: string;
  /** Port. */
  port: number;
  /** When it was started (ISO). */
  startedAt?: string;
  /** When it became ready (ISO). */
  readyAt?: string;
  /** When it stopped (ISO). */
  stoppedAt?: string;
  /** Why it stopped or failed. */
  exitReason?: string;
  /** The log file. */
  logFile: string;
  /** What it was started with. */
  spec: StoredSpec;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** Checks a server name. */
export function validateServerName(name: string): string {
  if (!NAME_RE.test(name)) {
    throw new UserError(`invalid server name '${name}'`, {
      hint: "use letters, digits, '.', '_' and '-' (at most 64 characters)",
    });
  }
  return name;
}

/** Turns any model name into a valid server name (`qwen3:4b` → `qwen3-4b`). */
export function serverNameFor(model: string): string {
  const n = model.toLowerCase().replace(/[^a-z0-9._-]+/g, "-").replace(/^[^a-z0-9]+/, "").slice(0, 64);
  return n || "server";
}

/** The record file of a server. */
export function recordPath(paths: Paths, name: string): string {
  return join(paths.serversDir, `${name}.json`);
}

/** Reads a record; undefined when there is none. */
export async function readRecord(paths: Paths, name: string): Promise<ServerRecord | undefined> {
  return await readJson<ServerRecord>(recordPath(paths, validateServerName(name))).catch(() => undefined);
}

/** Every record. */
export async function readAllRecords(paths: Paths): Promise<ServerRecord[]> {
  const out: ServerRecord[] = [];
  try {
    for await (const e of Deno.readDir(paths.serversDir)) {
      if (!e.isFile || !e.name.endsWith(".json")) continue;
      const name = e.name.slice(0, -5);
      if (!NAME_RE.test(name)) continue;
      const r = await readRecord(paths, name);
      if (r) out.push(r);
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

/**
 * Moves a record to a new state (checked against {@linkcode TRANSITIONS}) and stores it atomically.
 *
 * @example
 * ```ts ignore
 * rec = await transition(paths, rec, "ready", { readyAt: new Date().toISOString() });
 * ```
 */
export async function transition(
  paths: Paths,
  rec: ServerRecord,
  to: ServerRecord["state"],
  changes: Partial<ServerRecord> = {},
): Promise<ServerRecord> {
  if (rec.state !== to && !TRANSITIONS[rec.state].includes(to)) {
    throw new Error(`server '${rec.name}': invalid state change ${rec.state} -> ${to}`);
  }
  const next: ServerRecord = { ...rec, ...changes, state: to };
  await writeJsonAtomic(recordPath(paths, rec.name), next);
  return next;
}

/** Stores a new record (for a first start). */
export async function writeRecord(paths: Paths, rec: ServerRecord): Promise<void> {
  await writeJsonAtomic(recordPath(paths, rec.name), rec);
}

/** Removes a record. */
export async function removeRecord(paths: Paths, name: string): Promise<void> {
  await Deno.remove(recordPath(paths, name)).catch(() => {});
}
