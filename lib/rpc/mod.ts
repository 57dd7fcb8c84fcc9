/**
 * llama.cpp RPC workers: run `ggml-rpc-server` supervised on a worker machine, and spread a model over a
 * configured cluster of them from the head (`llama-server --rpc`).
 *
 * @example
 * ```ts ignore
 * import { checkCluster, rpcFlags } from "./mod.ts";
 * const lab = await checkCluster(config, "lab");
 * console.log(rpcFlags(lab)); // ["--rpc", "gpu-box-1:50052,gpu-box-2:50052"]
 * ```
 *
 * @module
 */
export * from "./protocol.ts";
export * from "./workers.ts";
export * from "./cluster.ts";
