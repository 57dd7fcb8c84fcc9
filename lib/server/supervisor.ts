/**
 * The llama-server supervisor: start a server detached (it outlives the CLI), wait for `/health`, record its
 * state, tell the truth about it later (a dead or reused pid is never "running"), and stop it with SIGTERM,
 * then SIGKILL. The daemon runs its models through the same functions.
 *
 * @module
 */
import { join } from "node:path";
import type { Paths } from "../config/paths.ts";
import type { InstanceRecord } from "../llamacpp/instances.ts";
import { binaryPath, getInstance } from "../llamacpp/instances.ts";
import { exists } from "../util/fs.ts";
import { UserError } from "../util/errors.ts";
import { withLock } from "../util/lock.ts";
import { pidAlive, pidCmdline, pidRss, pidStartTicks } from "../util/process.ts";
import { findFreePort, portInUse } from "./ports.ts";
import { failureReason, followFile, rotateLog, serverLogPath, START_MARKER, tailFile } from "./logs.ts";
import {
  readAllRecords,
  readRecord,
  type ServerOwner,
  type ServerRecord,
  type ServerState,
  transition,
  validateServerName,
  writeRecord,
} from "./state.ts";

/** What to start. */
export interface ServerSpec {
  /** A unique name (`chat`, `qwen3-4b`). */
  name: string;
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
  /** How long to wait for `/health` (default 120 s). */
  readyTimeoutMs?: number;
  /** Who starts it. */
  owner?: ServerOwner;
  /** Model name the server reports (`--alias`). */
  alias?: string;
}

/** A server as it is now. */
export interface ServerStatus {
  /** Name. */
  name: string;
  /** The true state: stored state checked against the process. */
  state: ServerState;
  /** Process id while running. */
  pid?: number;
  /** Bind address. */
  host: string;
  /** Port. */
  port: number;
  /** Base URL, e.g. `http://127.0.0.1:8081`. */
  url: string;
  /** Model file. */
  modelPath: string;
  /** Model name, if known. */
  modelName?: string;
  /** Instance name. */
  instance: string;
  /** When it started. */
  startedAt?: string;
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
  spec: ServerRecord["spec"];
}

const RUNNING: ServerState[] = ["starting", "ready", "stopping"];

/** True when `pid` is the llama-server this record started (not a dead or reused pid). */
export function isOurProcess(rec: ServerRecord): boolean {
  if (!rec.pid || !pidAlive(rec.pid)) return false;
  const ticks = pidStartTicks(rec.pid);
  if (rec.startTicks !== undefined && ticks !== undefined && ticks !== rec.startTicks) return false;
  const cmd = pidCmdline(rec.pid);
  if (cmd === undefined) return true; // no /proc: trust the pid
  const portAt = cmd.indexOf("--port");
  return cmd.some((a) => a.endsWith("llama-server")) && portAt >= 0 && cmd[portAt + 1] === String(rec.port);
}

function toStatus(rec: ServerRecord): ServerStatus {
  let state: ServerState = rec.state;
  let exitReason = rec.exitReason;
  const alive = isOurProcess(rec);
  if (RUNNING.includes(state) && !alive) {
    state = rec.state === "stopping" ? "stopped" : "crashed";
    exitReason ??= `process ${rec.pid ?? "?"} is gone (killed, crashed, or the machine restarted)`;
  }
  const running = RUNNING.includes(state);
  const urlHost = rec.host === "0.0.0.0" ? "127.0.0.1" : rec.host.includes(":") ? `[${rec.host}]` : rec.host;
  return {
    name: rec.name,
    state,
    pid: running ? rec.pid : undefined,
    host: rec.host,
    port: rec.port,
    url: `http://${urlHost}:${rec.port}`,
    modelPath: rec.spec.modelPath,
    modelName: rec.spec.modelName,
    instance: rec.spec.instance,
    startedAt: rec.startedAt,
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

function lockPath(paths: Paths, name: string): string {
  return join(paths.locksDir, `server-${name}.lock`);
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

async function health(url: string): Promise<number | undefined> {
  try {
    const r = await fetch(`${url}/health`, { signal: AbortSignal.timeout(2000) });
    await r.body?.cancel();
    return r.status;
  } catch {
    return undefined;
  }
}

/**
 * Waits until the server answers `/health` with 200, its process dies, or time runs out.
 * Returns `ready`, or the reason it is not.
 */
export async function waitReady(
  status: Pick<ServerStatus, "url" | "pid">,
  timeoutMs = 120_000,
): Promise<{ ok: true } | { ok: false; why: "exited" | "timeout" }> {
  const deadline = Date.now() + timeoutMs;
  let delay = 50;
  while (Date.now() < deadline) {
    if (status.pid && !pidAlive(status.pid)) return { ok: false, why: "exited" };
    if ((await health(status.url)) === 200) return { ok: true };
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 250);
  }
  return { ok: false, why: "timeout" };
}

async function killAndWait(pid: number, timeoutMs: number): Promise<"exited" | "killed"> {
  const send = (sig: Deno.Signal) => {
    // The server leads its own process group: signal the group so helpers die with it.
    try {
      Deno.kill(-pid, sig);
    } catch {
      try {
        Deno.kill(pid, sig);
      } catch { /* gone */ }
    }
  };
  send("SIGTERM");
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!pidAlive(pid)) return "exited";
    await new Promise((r) => setTimeout(r, 50));
  }
  send("SIGKILL");
  for (let i = 0; i < 100 && pidAlive(pid); i++) await new Promise((r) => setTimeout(r, 50));
  return "killed";
}

/**
 * Starts a llama-server and waits until it is ready. Refuses a name that is running and a port in use
 * (before spawning). When llama-server cannot start, the state is `failed` and the error carries
 * llama-server's own reason from its log.
 *
 * @example
 * ```ts ignore
 * const s = await startServer(paths, { name: "chat", modelPath: "/m/qwen.gguf", instance, port: "auto" });
 * console.log(s.url);
 * ```
 */
export async function startServer(paths: Paths, spec: ServerSpec): Promise<ServerStatus> {
  const name = validateServerName(spec.name);
  return await withLock(lockPath(paths, name), `start of server '${name}'`, async () => {
    const prev = await readRecord(paths, name);
    if (prev) {
      const s = toStatus(prev);
      if (RUNNING.includes(s.state)) {
        throw new UserError(`server '${name}' is already running (pid ${s.pid}, ${s.url})`, {
          hint: `stop it first (\`llama-mgr server stop ${name}\`), restart it, or choose another --name`,
        });
      }
    }
    const host = spec.host ?? "127.0.0.1";
    const binary = binaryPath(spec.instance, "llama-server");
    if (!(await exists(binary))) {
      throw new UserError(`instance '${spec.instance.name}' has no llama-server at ${binary}`, {
        hint: `reinstall it: llama-mgr install -i ${spec.instance.name}`,
      });
    }
    if (!(await exists(spec.modelPath))) {
      throw new UserError(`model file not found: ${spec.modelPath}`, { hint: "run `llama-mgr models scan`" });
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
    const argv = serverArgv(binary, spec, port);
    const logFile = serverLogPath(paths, name);
    await Deno.mkdir(paths.logsDir, { recursive: true });
    await rotateLog(logFile);
    const startedAt = new Date().toISOString();
    await Deno.writeTextFile(logFile, `${START_MARKER} ${startedAt}: ${argv.join(" ")}\n`, { append: true });

    const stored = {
      name,
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
      alias: spec.alias,
      owner: spec.owner ?? { kind: "cli" as const, pid: Deno.pid },
    };
    let rec: ServerRecord = {
      name,
      state: prev?.state === "stopped" || prev?.state === "failed" ? prev.state : "stopped",
      binary,
      argv,
      host,
      port,
      logFile,
      spec: stored,
    };
    if (!prev) await writeRecord(paths, rec);
    rec = await transition(paths, rec, "starting", {
      startedAt,
      exitReason: undefined,
      stoppedAt: undefined,
      readyAt: undefined,
      pid: undefined,
    });

    // Detached in its own session, output appended to the log: it outlives this process.
    const child = new Deno.Command("sh", {
      args: ["-c", 'log="$1"; shift; exec "$@" >>"$log" 2>&1 </dev/null', "sh", logFile, ...argv],
      env: spec.env,
      detached: true,
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    child.unref();
    // Reap it when it exits while we are still alive (no zombie that looks alive), and note why it ended.
    child.status.then(async (st) => {
      const cur = await readRecord(paths, name);
      if (cur?.pid !== child.pid || (cur.state !== "ready" && cur.state !== "starting")) return;
      const how = st.signal ? `killed by ${st.signal}` : `exited with code ${st.code}`;
      const said = failureReason(await tailFile(logFile, 200));
      await transition(paths, cur, cur.state, { exitReason: `${how}; its last words:\n${said}` });
    }).catch(() => {});
    rec = await transition(paths, rec, "starting", { pid: child.pid });
    for (let i = 0; i < 40 && pidCmdline(child.pid)?.[0] === "sh"; i++) {
      await new Promise((r) => setTimeout(r, 5));
    }
    rec = await transition(paths, rec, "starting", { startTicks: pidStartTicks(child.pid) });

    const status = toStatus(rec);
    const ready = await waitReady(status, spec.readyTimeoutMs ?? 120_000);
    if (ready.ok) {
      rec = await transition(paths, rec, "ready", { readyAt: new Date().toISOString() });
      return toStatus(rec);
    }
    let why: string;
    if (ready.why === "timeout") {
      await killAndWait(child.pid, 5000);
      why = `not ready after ${Math.round((spec.readyTimeoutMs ?? 120_000) / 1000)}s; its last words:\n` +
        failureReason(await tailFile(logFile, 400));
    } else {
      await new Promise((r) => setTimeout(r, 50));
      why = failureReason(await tailFile(logFile, 400));
    }
    rec = await transition(paths, rec, "failed", { exitReason: why, stoppedAt: new Date().toISOString() });
    throw new UserError(`llama-server '${name}' failed to start:\n${why}`, { hint: `full log: ${logFile}` });
  });
}

/** The current status of one server (checked against the process). */
export async function serverStatus(paths: Paths, name: string): Promise<ServerStatus> {
  const rec = await readRecord(paths, name);
  if (!rec) {
    const names = (await readAllRecords(paths)).map((r) => r.name);
    throw new UserError(`no server named '${name}'`, {
      hint: names.length ? `servers: ${names.join(", ")}` : "start one with `llama-mgr server start MODEL`",
    });
  }
  return toStatus(rec);
}

/** Every known server with its true state. */
export async function listServers(paths: Paths): Promise<ServerStatus[]> {
  return (await readAllRecords(paths)).map(toStatus);
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
  return await withLock(lockPath(paths, name), `stop of server '${name}'`, async () => {
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

/** Stops every running server (those `filter` accepts); returns their names. */
export async function stopAllServers(
  paths: Paths,
  filter: (s: ServerStatus) => boolean = () => true,
): Promise<string[]> {
  const running = (await listServers(paths)).filter((s) => RUNNING.includes(s.state) && filter(s));
  await Promise.all(running.map((s) => stopServer(paths, s.name)));
  return running.map((s) => s.name);
}

/** Restarts a server with what it was started with, on the same port. */
export async function restartServer(
  paths: Paths,
  name: string,
  options: { readyTimeoutMs?: number } = {},
): Promise<ServerStatus> {
  const before = await serverStatus(paths, name);
  await stopServer(paths, name);
  const instance = await getInstance(paths, before.spec.instance);
  return await startServer(paths, {
    ...before.spec,
    port: before.port,
    instance,
    readyTimeoutMs: options.readyTimeoutMs,
  });
}

/** Forgets a stopped server's record. */
export async function removeServer(paths: Paths, name: string): Promise<void> {
  const s = await serverStatus(paths, name);
  if (RUNNING.includes(s.state)) {
    throw new UserError(`server '${name}' is running`, { hint: "stop it first" });
  }
  await Deno.remove(join(paths.serversDir, `${name}.json`)).catch(() => {});
}

/** The last lines of a server's log. */
export async function readServerLog(
  paths: Paths,
  name: string,
  options: { lines?: number } = {},
): Promise<string[]> {
  const s = await serverStatus(paths, name);
  return await tailFile(s.logFile, options.lines ?? 100);
}

/** Follows a server's log until the signal aborts. */
export async function followServerLog(
  paths: Paths,
  name: string,
  onText: (text: string) => void,
  signal: AbortSignal,
): Promise<void> {
  const s = await serverStatus(paths, name);
  await followFile(s.logFile, onText, signal);
}
