/**
 * The daemon's runners: the scheduler (which model runs where, loading, keep-alive, eviction, the queue) and
 * the launcher it alone drives (llama-servers started through lib/server). The scheduler raises its own
 * errors; the HTTP layer maps them to status codes.
 *
 * @example
 * ```ts ignore
 * import { createScheduler, serverLauncher } from "./mod.ts";
 * const scheduler = createScheduler({ launcher: await serverLauncher({ paths, config }), maxLoaded: 3 });
 * const lease = await scheduler.acquire({ model, keepAliveMs: 300_000 });
 * lease.release();
 * ```
 *
 * @module
 */
export * from "./scheduler.ts";
export * from "./launcher.ts";
export * from "./kv_cache.ts";
export * from "./errors.ts";
export * from "./placement.ts";
export * from "./groups.ts";
export * from "./cpu_turns.ts";
