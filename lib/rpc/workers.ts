/**
 * RPC workers on this machine: llama.cpp's `ggml-rpc-server` run through the same supervisor as llama-server
 * (lib/server: detached, state, logs, the truth after a crash), ready once it accepts a connection.
 *
 * @module
 */
import type { Paths } from "../config/paths.ts";
import type { InstanceRecord } from "../llamacpp/instances.ts";
import {
  listServers,
  RPC_BINARIES,
  type ServerStatus,
  serverStatus,
  startServer,
  stopServer,
} from "../server/mod.ts";
import { binaryPath } from "../llamacpp/instances.ts";
import { exists } from "../util/fs.ts";
import { UserError } from "../util/errors.ts";

/** The port llama.cpp's RPC server uses by default. */
export const DEFAULT_RPC_PORT = 50052;

/**
 * What `llama-mgr rpc serve` starts.
 *
 * @example
 * ```ts ignore
 * const spec: WorkerSpec = { instance, host: "127.0.0.1", port: 50052, threads: 8 };
 * ```
 */
export interface WorkerSpec {
  /** The instance whose `ggml-rpc-server` runs (built with `GGML_RPC=ON`). */
  instance: InstanceRecord;
  /** Bind address (default 127.0.0.1). */
  host?: string;
  /** Port (default {@linkcode DEFAULT_RPC_PORT}). */
  port?: number;
  /** Name of the worker (default `rpc-<port>`). */
  name?: string;
  /** CPU threads for a CPU device (default: every CPU; the RPC server's own default is 1). */
  threads?: number;
  /** Devices to lend, e.g. `["CUDA0"]` (default: all). */
  devices?: string[];
  /** Memory to advertise in MiB (`--mem`; only for RPC servers that still take it). */
  memMiB?: number;
  /** Keep received tensors in a local file cache (`-c`): a model sent again loads faster. */
  cache?: boolean;
  /**
   * Allow a bind address other than loopback. The RPC protocol has no authentication: whoever reaches the port
   * can run computations and read and write the worker's memory.
   */
  allowRemote?: boolean;
  /** How long to wait for it to listen (default 30 s). */
  readyTimeoutMs?: number;
}

/** True for 127.0.0.0/8, ::1 and localhost. */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/**
 * The warning printed when a worker binds beyond loopback.
 *
 * @example
 * ```ts
 * console.warn(remoteBindWarning("0.0.0.0", 50052));
 * ```
 */
export function remoteBindWarning(host: string, port: number): string {
  return `warning: the RPC worker listens on ${host}:${port} without any authentication: anyone who can ` +
    `reach that port can run code on its devices and read its memory. Use it only on a private network you ` +
    `trust, or keep it on 127.0.0.1 and reach it through an SSH tunnel ` +
    `(ssh -N -L ${port}:127.0.0.1:${port} worker-host).`;
}

async function supportsMem(binary: string): Promise<boolean> {
  const out = await new Deno.Command(binary, { args: ["--help"], stdout: "piped", stderr: "piped" }).output()
    .catch(() => undefined);
  if (!out) return false;
  return /--mem\b/.test(new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr));
}

/**
 * Starts an RPC worker (detached, supervised) and waits until it listens. A bind address other than loopback
 * is refused unless `allowRemote` is set.
 *
 * @example
 * ```ts ignore
 * const w = await startWorker(paths, { instance: await getInstance(paths), port: 50052 });
 * console.log(w.name, w.endpoint, w.state); // rpc-50052 127.0.0.1:50052 ready
 * ```
 */
export async function startWorker(paths: Paths, spec: WorkerSpec): Promise<ServerStatus> {
  const host = spec.host ?? "127.0.0.1";
  const port = spec.port ?? DEFAULT_RPC_PORT;
  if (!isLoopback(host) && !spec.allowRemote) {
    throw new UserError(
      `refusing to bind the RPC worker to ${host}: the RPC protocol has no authentication`,
      {
        hint: "keep 127.0.0.1 and use an SSH tunnel, or on a private network you trust add --allow-remote",
      },
    );
  }
  const args: string[] = ["-t", String(spec.threads ?? navigator.hardwareConcurrency ?? 1)];
  if (spec.devices?.length) args.push("-d", spec.devices.join(","));
  if (spec.cache) args.push("-c");
  if (spec.memMiB !== undefined) {
    const binary = RPC_BINARIES.map((b) => binaryPath(spec.instance, b));
    const found = (await Promise.all(binary.map(exists))).findIndex((e) => e);
    if (found >= 0 && !(await supportsMem(binary[found]))) {
      throw new UserError(
        `the RPC server of instance '${spec.instance.name}' has no --mem option (newer llama.cpp reports each ` +
          `device's real free memory instead)`,
        { hint: "leave out --mem; choose which devices to lend with --device" },
      );
    }
    args.push("-m", String(spec.memMiB));
  }
  return await startServer(paths, {
    name: spec.name ?? `rpc-${port}`,
    kind: "rpc-worker",
    modelPath: "",
    instance: spec.instance,
    host,
    port,
    args,
    readyTimeoutMs: spec.readyTimeoutMs ?? 30_000,
  });
}

/**
 * The RPC workers this machine supervises, with their true state.
 *
 * @example
 * ```ts ignore
 * for (const w of await listWorkers(paths)) console.log(w.name, w.state, w.endpoint);
 * ```
 */
export async function listWorkers(paths: Paths): Promise<ServerStatus[]> {
  return await listServers(paths, { kind: "rpc-worker" });
}

/**
 * Stops an RPC worker by name (SIGTERM, then SIGKILL).
 *
 * @example
 * ```ts ignore
 * await stopWorker(paths, "rpc-50052");
 * ```
 */
export async function stopWorker(paths: Paths, name: string): Promise<ServerStatus> {
  const s = await workerStatus(paths, name);
  return await stopServer(paths, s.name);
}

/**
 * One RPC worker's status; a clear error when the name is not a worker.
 *
 * @example
 * ```ts ignore
 * console.log((await workerStatus(paths, "rpc-50052")).state);
 * ```
 */
export async function workerStatus(paths: Paths, name: string): Promise<ServerStatus> {
  const s = await serverStatus(paths, name).catch(() => undefined);
  if (!s || s.kind !== "rpc-worker") {
    const names = (await listWorkers(paths)).map((w) => w.name);
    throw new UserError(`no RPC worker named '${name}'`, {
      hint: names.length ? `workers: ${names.join(", ")}` : "start one with `llama-mgr rpc serve`",
    });
  }
  return s;
}
