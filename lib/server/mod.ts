/**
 * Supervised llama-server processes: start, status, stop, restart, logs.
 *
 * @example
 * ```ts ignore
 * import { listServers, resolvePaths } from "../../mod.ts";
 * for (const s of await listServers(resolvePaths())) console.log(s.name, s.state, s.url);
 * ```
 *
 * @module
 */
export * from "./supervisor.ts";
export * from "./state.ts";
export * from "./ports.ts";
export * from "./logs.ts";
export * from "./identity.ts";
export * from "./health.ts";
