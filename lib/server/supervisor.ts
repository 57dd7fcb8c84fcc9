/**
 * The llama-server supervisor: start a server detached (it outlives the CLI), wait for `/health`, record its
 * state, tell the truth about it later (a dead or reused pid is never "running"), and stop it with SIGTERM,
 * then SIGKILL. The daemon runs its models through the same functions.
 *
 * @module
 */
import { basename, join } from "node:path";
import type { Paths } from "../config/paths.ts";
import type { InstanceRecord } from "../llamacpp/instances.ts";
import { binaryPath, getInstance } from "../llamacpp/instances.ts";
import { exists } from "../util/fs.ts";
import { UserError } from "../util/errors.ts";
import { type LockOptions, withLock } from "../util/lock.ts";
import { shellQuote } from "../util/run.ts";
import { pidAlive, pidRss, pidStartTicks } from "../util/process.ts";
import { findFreePort, portInUse } from "./ports.ts";
import { probeHealth, probeTcp } from "./health.ts";
import { bootId, checkProcess, type ProcessCheck } from "./identity.ts";
import {
  failureReason,
  followFile,
  logEnding,
  rotateLog,
  serverLogPath,
  START_MARKER,
  tailFile,
  tailLog,
} from "./logs.ts";
import {
  readAllRecords,
  readRecord,
  removeRecord,
  type ServerKind,
  type ServerOwner,
  type ServerRecord,
  type ServerState,
  type StoredSpec,
  transition,
  validateServerName,
  writeRecord,
} from "./state.ts";

/**
 * What to start.
 *
 * @example
 * ```ts ignore
 * const spec: ServerSpec = {
 *   name: "chat",
 *   modelPath: "/models/qwen3-4b-q4_k_m.gguf",
 *   instance: await getInstance(paths),
 *   port: "auto",
 *   ctx: 16384,
 *   args: ["--jinja"],
 * };
 * ```
 */
export interface ServerSpec {
  /** A unique name (`chat`, `qwen3-4b`). */
  name: string;
  /**
   * What to run (default `llama-server`). An `rpc-worker` runs the instance's `ggml-rpc-server` with `args`;
   * it has no model (`modelPath` is empty) and is ready once it accepts a TCP connection.
   */
  kind?: ServerKind;
  /** The model file (first part of a split model). */
  modelPath: string;
  /** The model's name in the index. */
  modelName?: string;
  /** Projector file for a vision model (`--mmproj`). */
  mmproj?: string;
  /** The llama.cpp instance whose llama-server runs it. */
  instance: InstanceRecord;
  /** Bind address (default 127.0.0.1). */
  host?: string;
  /** Port, or `auto` (default) for a free one. */
  port?: number | "auto";
  /** Context size (`-c`). */
  ctx?: number;
  /** GPU layers (`-ngl`). */
  ngl?: number;
  /** More llama-server flags, passed through. */
  args?: string[];
  /** Environment for the process (e.g. CUDA_VISIBLE_DEVICES). */
  env?: Record<string, string>;
  /**
   * API key llama-server requires on every request but `/health` and `/models`. Given to it as `LLAMA_API_KEY`
   * in its environment, never on its command line (which `ps` shows to every user) nor in its record.
   */
  apiKey?: string;
  /** How long to wait for `/health` (default 120 s). */
  readyTimeoutMs?: number;
  /** Who starts it. */
  owner?: ServerOwner;
  /** Model name the server reports (`--alias`). */
  alias?: string;
  /** Cancels the start: the server is stopped and recorded `stopped` (Ctrl-C in the CLI). */
  signal?: AbortSignal;
}

/**
 * A server as it is now.
 *
 * @example
 * ```ts ignore
 * const s: ServerStatus = await serverStatus(paths, "chat");
 * if (s.state === "failed" || s.state === "crashed") console.log(s.exitReason, s.logFile);
 * ```
 */
export interface ServerStatus {
  /** Name. */
  name: string;
  /** llama-server or RPC worker. */
  kind: ServerKind;
  /** The true state: stored state checked against the process. */
  state: ServerState;
  /** Process id while running. */
  pid?: number;
  /** Bind address. */
  host: string;
  /** Port. */
  port: number;
  /** Base URL, e.g. `http://127.0.0.1:8081` (`tcp://127.0.0.1:50052` for an RPC worker). */
  url: string;
  /** `host:port` to connect to, e.g. `127.0.0.1:50052` (what `--rpc` takes for a worker). */
  endpoint: string;
  /** Model file. */
  modelPath: string;
  /** Model name, if known. */
  modelName?: string;
  /** Instance name. */
  instance: string;
  /** When it started. */
  startedAt?: string;
  /** When it answered `/health` first. */
  readyAt?: string;
  /** When it stopped or failed. */
  stoppedAt?: string;
  /** Seconds since it started, while running. */
  uptimeSeconds?: number;
  /** Why it stopped, failed or crashed. */
  exitReason?: string;
  /** Who started it. */
  owner?: ServerOwner;
  /** Resident memory of the process. */
  rssBytes?: number;
  /** The log file. */
  logFile: string;
  /** The command line. */
  argv: string[];
  /** What it was started with (for restart). */
  spec: StoredSpec;
}

const RUNNING: ServerState[] = ["starting", "ready", "stopping"];

/** True when the state is one of a live process (starting, ready, stopping). */
export function isRunning(state: ServerState): boolean {
  return RUNNING.includes(state);
}

/** True when `pid` is the llama-server this record started (not a dead or reused pid, nor one from before a reboot). */
export function isOurProcess(rec: ServerRecord): boolean {
  return checkProcess(rec).alive;
}

const GONE: Record<Exclude<ProcessCheck, { alive: true }>["why"], string> = {
  "no-pid": "it has no process",
  gone: "its process is gone (killed or crashed)",
  reused: "its process is gone (the pid now belongs to another program)",
  rebooted: "the machine restarted since it was started",
};

function toStatus(rec: ServerRecord): ServerStatus {
  let state: ServerState = rec.state;
  let exitReason = rec.exitReason;
  const check = checkProcess(rec);
  if (RUNNING.includes(state) && !check.alive) {
    // A server that was being stopped, or whose machine restarted, is simply stopped; any other death is a crash.
    state = rec.state === "stopping" || check.why === "rebooted" ? "stopped" : "crashed";
    if (exitReason === undefined) {
      const ending = check.why === "rebooted" ? [] : logEnding(rec.logFile);
      exitReason = `${GONE[check.why]} (pid ${rec.pid ?? "?"})` +
        (ending.length ? `; its log ends:\n${ending.join("\n")}` : "");
    }
  }
  const running = RUNNING.includes(state);
  const urlHost = rec.host === "0.0.0.0" || rec.host === "::"
    ? "127.0.0.1"
    : rec.host.includes(":")
    ? `[${rec.host}]`
    : rec.host;
  const kind = rec.spec.kind ?? "llama-server";
  return {
    name: rec.name,
    kind,
    state,
    pid: running ? rec.pid : undefined,
    host: rec.host,
    port: rec.port,
    url: `${kind === "rpc-worker" ? "tcp" : "http"}://${urlHost}:${rec.port}`,
    endpoint: `${urlHost}:${rec.port}`,
    modelPath: rec.spec.modelPath,
    modelName: rec.spec.modelName,
    instance: rec.spec.instance,
    startedAt: rec.startedAt,
    readyAt: rec.readyAt,
    stoppedAt: running ? undefined : rec.stoppedAt,
    uptimeSeconds: running && rec.startedAt
      ? Math.round((Date.now() - Date.parse(rec.startedAt)) / 1000)
      : undefined,
    exitReason: running ? undefined : exitReason,
    owner: rec.spec.owner,
    rssBytes: running && rec.pid ? pidRss(rec.pid) : undefined,
    logFile: rec.logFile,
    argv: rec.argv,
    spec: rec.spec,
  };
}

/**
 * The status of a record, brought up to date: a server still `starting` whose starter died (a CLI killed
 * while waiting) but which now answers `/health` is recorded `ready`; running servers' logs are rotated in
 * place when too large.
 */
async function refresh(paths: Paths, rec: ServerRecord): Promise<ServerStatus> {
  let status = toStatus(rec);
  if (RUNNING.includes(status.state)) {
    await rotateLog(rec.logFile, { copyTruncate: true }).catch(() => false);
  }
  if (status.state === "starting" && rec.starterPid && !pidAlive(rec.starterPid)) {
    if (await isReady(status)) {
      const done = await settle(paths, rec, "ready", { readyAt: new Date().toISOString() });
      if (done) status = toStatus(done);
    }
  }
  return status;
}

function lockPath(paths: Paths, name: string): string {
  return join(paths.locksDir, `server-${name}.lock`);
}

const queues = new Map<string, Promise<void>>();

/**
 * One operation at a time on a server: queued within this process (the daemon starts and stops many at
 * once), and a lock file across processes.
 */
async function withServerLock<T>(
  paths: Paths,
  name: string,
  what: string,
  fn: () => Promise<T>,
  options: LockOptions,
): Promise<T> {
  const key = lockPath(paths, name);
  const before = queues.get(key) ?? Promise.resolve();
  let release!: () => void;
  const gate = new Promise<void>((r) => release = r);
  const mine = before.then(() => gate);
  queues.set(key, mine);
  await before;
  try {
    return await withLock(key, what, fn, options);
  } finally {
    release();
    if (queues.get(key) === mine) queues.delete(key);
  }
}

/**
 * Moves a server that is still `starting` with this pid to a final state, under its lock. Returns undefined
 * when someone else (a stop) changed it meanwhile.
 */
async function settle(
  paths: Paths,
  rec: ServerRecord,
  to: "ready" | "failed" | "stopped",
  changes: Partial<ServerRecord>,
): Promise<ServerRecord | undefined> {
  return await withServerLock(paths, rec.name, `start of server '${rec.name}'`, async () => {
    const cur = await readRecord(paths, rec.name);
    if (!cur || cur.pid !== rec.pid || cur.state !== "starting") return undefined;
    return await transition(paths, cur, to, changes);
  }, { wait: true, timeoutMs: 60_000 });
}

/** The llama-server command line for a spec. */
export function serverArgv(binary: string, spec: ServerSpec, port: number): string[] {
  const argv = [binary, "-m", spec.modelPath, "--host", spec.host ?? "127.0.0.1", "--port", String(port)];
  if (spec.ctx !== undefined) argv.push("-c", String(spec.ctx));
  if (spec.ngl !== undefined) argv.push("-ngl", String(spec.ngl));
  if (spec.mmproj) argv.push("--mmproj", spec.mmproj);
  if (spec.alias) argv.push("--alias", spec.alias);
  return [...argv, ...(spec.args ?? [])];
}

/** The binary file names of llama.cpp's RPC server (`rpc-server` before it was renamed). */
export const RPC_BINARIES = ["ggml-rpc-server", "rpc-server"];

/** The RPC server command line for a spec: its own flags are `-H`/`-p`, which it also takes long. */
export function rpcWorkerArgv(binary: string, spec: ServerSpec, port: number): string[] {
  return [binary, "--host", spec.host ?? "127.0.0.1", "--port", String(port), ...(spec.args ?? [])];
}

/** The instance's RPC server binary (either name), or the path it would have when it has none. */
async function rpcBinary(instance: InstanceRecord): Promise<string> {
  for (const name of RPC_BINARIES) {
    const path = binaryPath(instance, name);
    if (await exists(path)) return path;
  }
  return binaryPath(instance, RPC_BINARIES[0]);
}

/** Ready: llama-server answers `/health` with 200; an RPC worker (which speaks no HTTP) accepts a connection. */
async function isReady(status: Pick<ServerStatus, "url"> & { kind?: ServerKind }): Promise<boolean> {
  if (status.kind === "rpc-worker") {
    const u = new URL(status.url);
    return await probeTcp(u.hostname.replace(/^\[(.*)\]$/, "$1"), Number(u.port));
  }
  return (await probeHealth(status.url)) === 200;
}

/**
 * Whether {@linkcode waitReady} saw the server ready, and why it gave up when not.
 *
 * @example
 * ```ts ignore
 * const r: WaitResult = await waitReady(await serverStatus(paths, "chat"), 30_000);
 * if (!r.ok && r.why === "exited") console.log((await readServerLog(paths, "chat", { lines: 20 })).join("\n"));
 * ```
 */
export type WaitResult = { ok: true } | { ok: false; why: "exited" | "timeout" | "aborted" };

/**
 * Waits until the server answers `/health` with 200 (an RPC worker: accepts a connection), its process dies,
 * time runs out, or the signal aborts.
 *
 * @example
 * ```ts ignore
 * const r = await waitReady(await serverStatus(paths, "chat"), 60_000);
 * if (!r.ok) console.log(r.why);
 * ```
 */
export async function waitReady(
  status: Pick<ServerStatus, "url" | "pid"> & { kind?: ServerKind },
  timeoutMs = 120_000,
  options: { signal?: AbortSignal } = {},
): Promise<WaitResult> {
  const deadline = Date.now() + timeoutMs;
  let delay = 50;
  while (Date.now() < deadline) {
    if (options.signal?.aborted) return { ok: false, why: "aborted" };
    if (status.pid && !pidAlive(status.pid)) return { ok: false, why: "exited" };
    if (await isReady(status)) return { ok: true };
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 100);
  }
  return { ok: false, why: "timeout" };
}

async function killAndWait(pid: number, timeoutMs: number): Promise<"exited" | "killed"> {
  const send = (sig: Deno.Signal) => {
    // The server leads its own session and process group: signal the group so helpers die with it.
    try {
      Deno.kill(-pid, sig);
    } catch {
      try {
        Deno.kill(pid, sig);
      } catch { /* gone */ }
    }
  };
  send("SIGTERM");
  send("SIGCONT"); // a stopped process (Ctrl-Z, SIGSTOP) only acts on SIGTERM once it runs again
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!pidAlive(pid)) return "exited";
    await new Promise((r) => setTimeout(r, 50));
  }
  send("SIGKILL");
  for (let i = 0; i < 100 && pidAlive(pid); i++) await new Promise((r) => setTimeout(r, 50));
  return "killed";
}

/** Flags the supervisor sets itself; passed through they would make its records lie. */
const OWNED_FLAGS = ["-m", "--model", "--port", "--host"];
const OWNED_RPC_FLAGS = ["-p", "--port", "-H", "--host"];

/** The variable llama-server reads as `--api-key` (common/arg.cpp). */
const API_KEY_ENV = "LLAMA_API_KEY";

/**
 * The spec with an API key given as `--api-key K` in its flags or `LLAMA_API_KEY` in its environment (a
 * preset's) moved to `apiKey`, so that it reaches llama-server through its environment only: not on the
 * command line `ps` shows, not in the record. An explicit `apiKey` wins.
 */
function keyOutOfSight(spec: ServerSpec): ServerSpec {
  const args: string[] = [];
  let fromArgs: string | undefined;
  const given = spec.args ?? [];
  for (let i = 0; i < given.length; i++) {
    if (given[i] === "--api-key" && i + 1 < given.length) fromArgs = given[++i];
    else if (given[i].startsWith("--api-key=")) fromArgs = given[i].slice("--api-key=".length);
    else args.push(given[i]);
  }
  const { [API_KEY_ENV]: fromEnv, ...env } = spec.env ?? {};
  const apiKey = spec.apiKey ?? fromArgs ?? fromEnv;
  return { ...spec, args, env, apiKey: apiKey || undefined };
}

/** The API key a running llama-server was given through its environment (Linux: /proc/PID/environ). */
async function runningKey(pid: number | undefined): Promise<string | undefined> {
  if (pid === undefined) return undefined;
  const environ = await Deno.readTextFile(`/proc/${pid}/environ`).catch(() => "");
  const entry = environ.split("\0").find((e) => e.startsWith(`${API_KEY_ENV}=`));
  return entry?.slice(API_KEY_ENV.length + 1);
}

const BIND_FAILURE = /couldn't bind|address already in use/i;

/**
 * Starts a llama-server and waits until it is ready. Refuses a name that is running and a port in use
 * (before spawning). When llama-server cannot start, the state is `failed` and the error carries
 * llama-server's own reason from its log. With `port: "auto"`, a port someone else took between choosing
 * and binding is retried with another free port.
 *
 * @example
 * ```ts ignore
 * const s = await startServer(paths, { name: "chat", modelPath: "/m/qwen.gguf", instance, port: "auto" });
 * console.log(s.url);
 * ```
 */
export async function startServer(paths: Paths, spec: ServerSpec): Promise<ServerStatus> {
  const name = validateServerName(spec.name);
  spec = keyOutOfSight(spec);
  const auto = spec.port === undefined || spec.port === "auto";
  for (let attempt = 1;; attempt++) {
    const r = await startOnce(paths, spec, name);
    if (r.ok) return r.status;
    if (auto && attempt < 3 && BIND_FAILURE.test(r.why)) continue;
    const what = spec.kind === "rpc-worker" ? "RPC worker" : "llama-server";
    throw new UserError(`${what} '${name}' failed to start:\n${r.why}`, {
      hint: `full log: ${r.logFile}`,
    });
  }
}

type StartOutcome = { ok: true; status: ServerStatus } | { ok: false; why: string; logFile: string };

async function startOnce(paths: Paths, spec: ServerSpec, name: string): Promise<StartOutcome> {
  const timeoutMs = spec.readyTimeoutMs ?? 120_000;
  let child!: Deno.ChildProcess;
  const rec = await withServerLock(paths, name, `start of server '${name}'`, async () => {
    const prev = await readRecord(paths, name);
    if (prev) {
      const s = toStatus(prev);
      if (RUNNING.includes(s.state)) {
        throw new UserError(`server '${name}' is already running (${s.state}, pid ${s.pid}, ${s.url})`, {
          hint: `stop it first (\`llama-mgr server stop ${name}\`), restart it, or choose another --name`,
        });
      }
    }
    const host = spec.host ?? "127.0.0.1";
    const rpc = spec.kind === "rpc-worker";
    const binary = rpc ? await rpcBinary(spec.instance) : binaryPath(spec.instance, "llama-server");
    if (!(await exists(binary))) {
      throw new UserError(`instance '${spec.instance.name}' has no ${basename(binary)} at ${binary}`, {
        hint: rpc
          ? `build it (built by default, with GGML_RPC=ON): llama-mgr install -i ${spec.instance.name}`
          : `reinstall it: llama-mgr install -i ${spec.instance.name}`,
      });
    }
    if (!rpc && !(await exists(spec.modelPath))) {
      throw new UserError(`model file not found: ${spec.modelPath}`, { hint: "run `llama-mgr models scan`" });
    }
    if (spec.mmproj && !(await exists(spec.mmproj))) {
      throw new UserError(`projector file not found: ${spec.mmproj}`, {
        hint: "run `llama-mgr models scan`",
      });
    }
    const owned = (spec.args ?? []).find((a) =>
      (rpc ? OWNED_RPC_FLAGS : OWNED_FLAGS).includes(a.split("=")[0])
    );
    if (owned) {
      throw new UserError(`'${owned}' cannot be passed through to llama-server: the supervisor sets it`, {
        hint: "use --port, --host and the model argument of `server start` instead",
      });
    }
    let port: number;
    if (spec.port === undefined || spec.port === "auto") {
      port = findFreePort(host);
    } else {
      port = spec.port;
      if (!Number.isInteger(port) || port < 1 || port > 65535) {
        throw new UserError(`invalid port ${port}`, { hint: "use 1-65535 or auto" });
      }
      if (await portInUse(host, port)) {
        const holder = (await readAllRecords(paths)).map(toStatus)
          .find((s) => s.port === port && RUNNING.includes(s.state));
        throw new UserError(
          `port ${port} on ${host} is already in use${holder ? ` by server '${holder.name}'` : ""}`,
          { hint: "choose another --port, or --port auto for a free one" },
        );
      }
    }
    const argv = rpc ? rpcWorkerArgv(binary, spec, port) : serverArgv(binary, spec, port);
    const logFile = serverLogPath(paths, name);
    await Deno.mkdir(paths.logsDir, { recursive: true });
    await rotateLog(logFile);
    const startedAt = new Date().toISOString();
    await Deno.writeTextFile(logFile, `${START_MARKER} ${startedAt}: ${shellQuote(argv)}\n`, {
      append: true,
    });

    const stored: StoredSpec = {
      name,
      ...(rpc ? { kind: spec.kind } : {}),
      modelPath: spec.modelPath,
      modelName: spec.modelName,
      mmproj: spec.mmproj,
      instance: spec.instance.name,
      host,
      port,
      ctx: spec.ctx,
      ngl: spec.ngl,
      args: spec.args ?? [],
      env: spec.env ?? {},
      ...(spec.apiKey ? { keyed: true } : {}),
      alias: spec.alias,
      owner: spec.owner ?? { kind: "cli", pid: Deno.pid },
    };
    let r: ServerRecord = {
      name,
      state: prev?.state === "stopped" || prev?.state === "failed" ? prev.state : "stopped",
      binary,
      argv,
      host,
      port,
      logFile,
      spec: stored,
    };
    if (!prev || r.state !== prev.state) await writeRecord(paths, r);
    r = await transition(paths, r, "starting", {
      startedAt,
      exitReason: undefined,
      stoppedAt: undefined,
      readyAt: undefined,
      pid: undefined,
      startTicks: undefined,
      bootId: bootId(),
      starterPid: Deno.pid,
    });

    // Detached in its own session, output appended to the log: it outlives this process and the terminal.
    child = new Deno.Command("sh", {
      args: ["-c", 'log="$1"; shift; exec "$@" >>"$log" 2>&1 </dev/null', "sh", logFile, ...argv],
      env: spec.apiKey === undefined ? spec.env : { ...spec.env, [API_KEY_ENV]: spec.apiKey },
      detached: true,
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    child.unref();
    // The start time does not change at exec; read it once the pid exists.
    const spawned: ServerRecord = { ...r, pid: child.pid, startTicks: pidStartTicks(child.pid) };
    // Until it has exec'd, the child's command line is a copy of ours: wait for it to be llama-server (or to
    // die), so nobody reading the record in between takes it for a reused pid.
    for (let i = 0; i < 400 && !checkProcess(spawned).alive && pidAlive(child.pid); i++) {
      await new Promise((res) => setTimeout(res, 5));
    }
    return await transition(paths, r, "starting", { pid: spawned.pid, startTicks: spawned.startTicks });
    // The lock is held only for these checks and the spawn, so a concurrent start of the same name waits a
    // moment and then sees it running.
  }, { wait: true, timeoutMs: 15_000 });

  // Reap it when it exits while we are alive (no zombie that looks alive); note why a ready server ended.
  child.status.then(async (st) => {
    const cur = await readRecord(paths, name);
    if (cur?.pid !== child.pid || cur.state !== "ready") return;
    const how = st.signal ? `killed by ${st.signal}` : `exited with code ${st.code}`;
    const said = failureReason(await tailFile(rec.logFile, 200));
    await transition(paths, cur, "ready", { exitReason: `${how}; its last words:\n${said}` });
  }).catch(() => {});

  const ready = await waitReady({ url: toStatus(rec).url, pid: child.pid, kind: spec.kind }, timeoutMs, {
    signal: spec.signal,
  });
  const now = () => new Date().toISOString();
  const stoppedMeanwhile = () =>
    new UserError(`server '${name}' was stopped while it was starting`, { hint: `log: ${rec.logFile}` });
  if (ready.ok) {
    const done = await settle(paths, rec, "ready", { readyAt: now() });
    if (!done) throw stoppedMeanwhile();
    return { ok: true, status: toStatus(done) };
  }
  if (ready.why === "aborted") {
    await killAndWait(child.pid, 5000);
    await settle(paths, rec, "stopped", { exitReason: "start cancelled", stoppedAt: now() });
    throw new UserError(`start of server '${name}' cancelled; it was stopped`);
  }
  let why: string;
  if (ready.why === "timeout") {
    await killAndWait(child.pid, 5000);
    const waited = timeoutMs < 10_000 ? `${timeoutMs} ms` : `${Math.round(timeoutMs / 1000)}s`;
    why = `not ready after ${waited}; its last words:\n` +
      failureReason(await tailFile(rec.logFile, 400));
  } else {
    // An unref'd child's status keeps nothing alive: waiting on it alone would let the event loop end.
    child.ref();
    await child.status.catch(() => {});
    why = failureReason(await tailFile(rec.logFile, 400));
  }
  const failed = await settle(paths, rec, "failed", { exitReason: why, stoppedAt: now() });
  if (!failed) throw stoppedMeanwhile();
  return { ok: false, why, logFile: failed.logFile };
}

/**
 * The current status of one server (checked against the process).
 *
 * @example
 * ```ts ignore
 * const s = await serverStatus(paths, "chat");
 * console.log(s.state, s.url, s.uptimeSeconds);
 * ```
 */
export async function serverStatus(paths: Paths, name: string): Promise<ServerStatus> {
  const rec = await readRecord(paths, name);
  if (!rec) {
    const names = (await readAllRecords(paths)).map((r) => r.name);
    throw new UserError(`no server named '${name}'`, {
      hint: names.length ? `servers: ${names.join(", ")}` : "start one with `llama-mgr server start MODEL`",
    });
  }
  return await refresh(paths, rec);
}

/**
 * Every known server of one kind (default: llama-servers) with its true state (each recorded pid checked
 * against the live process).
 *
 * @example
 * ```ts ignore
 * for (const s of await listServers(paths)) console.log(s.name, s.state, s.url);
 * const workers = await listServers(paths, { kind: "rpc-worker" });
 * ```
 */
export async function listServers(
  paths: Paths,
  options: { kind?: ServerKind } = {},
): Promise<ServerStatus[]> {
  const kind = options.kind ?? "llama-server";
  const records = (await readAllRecords(paths)).filter((r) => (r.spec.kind ?? "llama-server") === kind);
  return await Promise.all(records.map((r) => refresh(paths, r)));
}

/**
 * Stops a server: SIGTERM, wait, then SIGKILL. Stopping a server that is not running just records it stopped.
 *
 * @example
 * ```ts ignore
 * await stopServer(paths, "chat");
 * ```
 */
export async function stopServer(
  paths: Paths,
  name: string,
  options: { timeoutMs?: number } = {},
): Promise<ServerStatus> {
  await serverStatus(paths, name); // a clear error for an unknown name
  return await withServerLock(paths, name, `stop of server '${name}'`, async () => {
    let rec = (await readRecord(paths, name))!;
    const status = toStatus(rec);
    const pid = rec.pid;
    if (RUNNING.includes(status.state) && pid) {
      rec = await transition(paths, rec, "stopping");
      const how = await killAndWait(pid, options.timeoutMs ?? 10_000);
      rec = await transition(paths, rec, "stopped", {
        stoppedAt: new Date().toISOString(),
        exitReason: how === "exited" ? "stopped" : "stopped (killed after not exiting on SIGTERM)",
      });
    } else if (rec.state !== "stopped" && rec.state !== "failed") {
      rec = await transition(paths, rec, "stopped", {
        exitReason: status.exitReason,
        stoppedAt: new Date().toISOString(),
      });
    }
    return toStatus(rec);
  }, { wait: true, timeoutMs: 60_000 });
}

/**
 * Stops every running server (those `filter` accepts); returns their names.
 *
 * @example
 * ```ts ignore
 * const stopped = await stopAllServers(paths, (s) => s.owner?.kind !== "daemon");
 * ```
 */
export async function stopAllServers(
  paths: Paths,
  filter: (s: ServerStatus) => boolean = () => true,
): Promise<string[]> {
  const running = (await listServers(paths)).filter((s) => RUNNING.includes(s.state) && filter(s));
  await Promise.all(running.map((s) => stopServer(paths, s.name)));
  return running.map((s) => s.name);
}

/**
 * Restarts a server with what it was started with, on the same port.
 *
 * @example
 * ```ts ignore
 * const s = await restartServer(paths, "chat", { readyTimeoutMs: 300_000 });
 * ```
 */
export async function restartServer(
  paths: Paths,
  name: string,
  options: { readyTimeoutMs?: number; apiKey?: string } = {},
): Promise<ServerStatus> {
  const before = await serverStatus(paths, name);
  // Everything the new start needs is checked before the running server is stopped.
  const instance = await getInstance(paths, before.spec.instance);
  // The key is not recorded: a keyed server keeps the key its running process has.
  const { keyed, ...spec } = before.spec;
  const apiKey = options.apiKey ?? (keyed ? await runningKey(before.pid) : undefined);
  if (keyed && !apiKey) {
    throw new UserError(`server '${name}' was started with an API key, which is not recorded`, {
      hint: `give it again: llama-mgr server restart ${name} --api-key KEY`,
    });
  }
  // A server spread over RPC workers needs each of them: one that accepts no connection is named before the
  // running server is stopped (a worker busy with that server still accepts; it answers once free).
  const rpcAt = spec.args.indexOf("--rpc");
  for (const endpoint of rpcAt >= 0 ? (spec.args[rpcAt + 1] ?? "").split(",").filter(Boolean) : []) {
    const colon = endpoint.lastIndexOf(":");
    const host = endpoint.slice(0, colon).replace(/^\[(.*)\]$/, "$1");
    if (!(await probeTcp(host, Number(endpoint.slice(colon + 1))))) {
      throw new UserError(
        `RPC worker ${endpoint} of server '${name}' is unreachable; '${name}' was left as it is`,
        {
          hint: `start it (\`llama-mgr rpc serve\` on that host), then restart again`,
        },
      );
    }
  }
  await stopServer(paths, name);
  return await startServer(paths, {
    ...spec,
    port: before.port,
    instance,
    apiKey,
    readyTimeoutMs: options.readyTimeoutMs,
  });
}

/**
 * Forgets a stopped server's record (its log stays).
 *
 * @example
 * ```ts ignore
 * await stopServer(paths, "chat");
 * await removeServer(paths, "chat");
 * ```
 */
export async function removeServer(paths: Paths, name: string): Promise<void> {
  await serverStatus(paths, name); // a clear error for an unknown name
  await withServerLock(paths, name, `removal of server '${name}'`, async () => {
    const rec = await readRecord(paths, name);
    if (!rec) return;
    if (RUNNING.includes(toStatus(rec).state)) {
      throw new UserError(`server '${name}' is running`, {
        hint: `stop it first: llama-mgr server stop ${name}`,
      });
    }
    await removeRecord(paths, name);
  }, { wait: true, timeoutMs: 60_000 });
}

/**
 * The last lines of a server's log.
 *
 * @example
 * ```ts ignore
 * console.log((await readServerLog(paths, "chat", { lines: 50 })).join("\n"));
 * ```
 */
export async function readServerLog(
  paths: Paths,
  name: string,
  options: { lines?: number } = {},
): Promise<string[]> {
  const s = await serverStatus(paths, name);
  return await tailLog(s.logFile, options.lines ?? 100);
}

/**
 * Follows a server's log until the signal aborts.
 *
 * @example
 * ```ts ignore
 * const ac = new AbortController();
 * setTimeout(() => ac.abort(), 60_000);
 * await followServerLog(paths, "chat", (text) => Deno.stdout.write(new TextEncoder().encode(text)), ac.signal);
 * ```
 */
export async function followServerLog(
  paths: Paths,
  name: string,
  onText: (text: string) => void,
  signal: AbortSignal,
): Promise<void> {
  const s = await serverStatus(paths, name);
  await followFile(s.logFile, onText, signal);
}
