/**
 * Clusters (`clusters:` in the config): named lists of RPC workers a model can be spread over. Before a
 * llama-server starts on a cluster every worker is asked for its devices and memory; one that cannot be
 * reached is named in the error, and the answers give the memory the cluster lends the model.
 *
 * @module
 */
import type { Config } from "../config/schema.ts";
import { UserError } from "../util/errors.ts";
import { formatBytes } from "../util/fs.ts";
import { parseEndpoint, queryWorker, type WorkerInfo, WorkerQueryError } from "./protocol.ts";
import { probeTcp } from "../server/health.ts";
import { tailFile } from "../server/logs.ts";

/**
 * A cluster as checked just now.
 *
 * @example
 * ```ts ignore
 * const c: ClusterCheck = await checkCluster(config, "lab");
 * console.log(c.workers.length, c.freeBytes);
 * ```
 */
export interface ClusterCheck {
  /** Cluster name. */
  name: string;
  /** Each worker's report, in config order. */
  workers: WorkerInfo[];
  /** Free bytes over every worker's devices. */
  freeBytes: number;
  /** Total bytes over every worker's devices. */
  totalBytes: number;
}

/**
 * A cluster's memory as a device the scheduler can pack models onto: its id (`rpc:<cluster>`) and free and
 * total bytes over its workers.
 *
 * @example
 * ```ts ignore
 * const budget: ClusterBudget = clusterBudget(await checkCluster(config, "lab"));
 * ```
 */
export interface ClusterBudget {
  /** `rpc:<cluster name>`. */
  id: string;
  /** Always `rpc`. */
  kind: "rpc";
  /** The workers' endpoints. */
  workers: string[];
  /** Free bytes when checked. */
  freeBytes: number;
  /** Total bytes. */
  totalBytes: number;
}

/**
 * A checked cluster as a memory budget entry.
 *
 * @example
 * ```ts ignore
 * console.log(clusterBudget(await checkCluster(config, "lab")).id); // rpc:lab
 * ```
 */
export function clusterBudget(c: ClusterCheck): ClusterBudget {
  return {
    id: `rpc:${c.name}`,
    kind: "rpc",
    workers: c.workers.map((w) => w.endpoint),
    freeBytes: c.freeBytes,
    totalBytes: c.totalBytes,
  };
}

/**
 * The workers of a configured cluster; a clear error for a cluster that is not configured.
 *
 * @example
 * ```ts ignore
 * clusterWorkers(config, "lab"); // ["gpu-box-1:50052", "gpu-box-2:50052"]
 * ```
 */
export function clusterWorkers(config: Pick<Config, "clusters">, name: string): string[] {
  const c = config.clusters[name];
  if (!c) {
    const names = Object.keys(config.clusters);
    throw new UserError(`no cluster named '${name}' in the config`, {
      hint: names.length
        ? `clusters: ${names.join(", ")}`
        : 'add one: clusters: { lab: { workers: ["host1:50052", "host2:50052"] } }',
    });
  }
  return c.workers;
}

/**
 * Asks every worker of a cluster (at once) for its devices and memory. Throws a {@linkcode UserError} naming
 * each worker that is unreachable, busy with another llama-server, or speaks another protocol version.
 *
 * @example
 * ```ts ignore
 * const c = await checkCluster(config, "lab");
 * for (const w of c.workers) console.log(w.endpoint, w.freeBytes);
 * ```
 */
export async function checkCluster(
  config: Pick<Config, "clusters">,
  name: string,
  options: { timeoutMs?: number } = {},
): Promise<ClusterCheck> {
  const endpoints = clusterWorkers(config, name);
  const answers = await Promise.allSettled(endpoints.map((e) => queryWorker(e, options)));
  const failed = answers.flatMap((a) => a.status === "rejected" ? [a.reason] : []);
  if (failed.length) {
    const lines = failed.map((e) => e instanceof Error ? e.message : String(e));
    const unreachable = failed.filter((e) => e instanceof WorkerQueryError && e.why === "unreachable")
      .map((e: WorkerQueryError) => e.endpoint);
    throw new UserError(`cluster '${name}': ${lines.join("; ")}`, {
      hint: unreachable.length
        ? `start ${unreachable.length > 1 ? "them" : "it"} (\`llama-mgr rpc serve\` on ${
          unreachable.join(", ")
        }), ` +
          `or remove ${unreachable.length > 1 ? "them" : "it"} from clusters.${name}.workers`
        : "a worker serves one llama-server at a time: stop the other one, or check the builds match",
    });
  }
  const workers = answers.map((a) => (a as PromiseFulfilledResult<WorkerInfo>).value);
  return {
    name,
    workers,
    freeBytes: workers.reduce((n, w) => n + w.freeBytes, 0),
    totalBytes: workers.reduce((n, w) => n + w.totalBytes, 0),
  };
}

/**
 * The llama-server flags that spread a model over a checked cluster's workers.
 *
 * @example
 * ```ts ignore
 * args.push(...rpcFlags(await checkCluster(config, "lab"))); // --rpc gpu-box-1:50052,gpu-box-2:50052
 * ```
 */
export function rpcFlags(c: Pick<ClusterCheck, "workers">): string[] {
  return ["--rpc", c.workers.map((w) => w.endpoint).join(",")];
}

/**
 * Refuses a model that does not fit the memory a cluster has free.
 *
 * @example
 * ```ts ignore
 * assertFits(await checkCluster(config, "lab"), 20e9, "qwen3:32b");
 * ```
 */
export function assertFits(c: ClusterCheck, needBytes: number, model: string): void {
  if (needBytes <= c.freeBytes) return;
  const each = c.workers.map((w) => `${w.endpoint} ${formatBytes(w.freeBytes)}`).join(", ");
  throw new UserError(
    `${model} needs about ${formatBytes(needBytes)}, and cluster '${c.name}' has ${
      formatBytes(c.freeBytes)
    } free (${each})`,
    { hint: `add workers to clusters.${c.name}.workers, or use a smaller quantisation or context` },
  );
}

/**
 * Why a llama-server on a cluster stopped answering: the workers that no longer accept connections, and
 * llama-server's own RPC error from its log. Undefined when every worker is up and the log says nothing of
 * RPC.
 *
 * @example
 * ```ts ignore
 * await diagnoseCluster("lab", ["10.0.0.2:50052", "10.0.0.3:50052"], "/data/logs/server-big.log");
 * // "RPC worker 10.0.0.3:50052 of cluster 'lab' is unreachable (llama-server: Remote RPC server crashed ...)"
 * ```
 */
export async function diagnoseCluster(
  name: string,
  endpoints: string[],
  logFile?: string,
): Promise<string | undefined> {
  const up = await Promise.all(endpoints.map((e) => {
    const { host, port } = parseEndpoint(e);
    return probeTcp(host, port, 1000);
  }));
  const down = endpoints.filter((_, i) => !up[i]);
  const lines = logFile ? await tailFile(logFile, 100).catch(() => []) : [];
  const said = lines.findLast((l) => /\bRPC\b/.test(l) && !/^\s*(main|srv|load|print_info): .*=/.test(l))
    ?.replace(/^.*?ggml-rpc\.cpp:\d+:\s*/, "").trim();
  if (!down.length && !said) return undefined;
  const who = down.length
    ? `RPC worker${down.length > 1 ? "s" : ""} ${down.join(", ")} of cluster '${name}' ${
      down.length > 1 ? "are" : "is"
    } unreachable`
    : `an RPC worker of cluster '${name}' failed`;
  return said ? `${who} (llama-server: ${said})` : who;
}
