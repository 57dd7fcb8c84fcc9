/**
 * What ccache saves: its own counters for every build on the machine (`ccache --print-stats`), and the hits
 * and misses each instance's last build recorded (from a per-build stats log, so other builds on the machine
 * do not count).
 *
 * @module
 */
import type { InstanceRecord } from "./instances.ts";
import { run, which } from "../util/run.ts";

/**
 * ccache's state and what it saved.
 *
 * @example
 * ```ts ignore
 * const r = await ccacheReport(await listInstances(paths));
 * if (r) console.log(`${r.hits} of ${r.hits + r.misses} compilations from the cache`);
 * ```
 */
export interface CcacheReport {
  /** The ccache executable. */
  path: string;
  /** Its version line. */
  version?: string;
  /** Compilations answered from the cache, all builds on this machine (since its stats were last zeroed). */
  hits: number;
  /** Compilations it had to run. */
  misses: number;
  /** The cache's size on disk, in bytes. */
  sizeBytes?: number;
  /** Each instance's last build: hits, misses and the build's seconds. */
  builds: { instance: string; hits: number; misses: number; seconds: number }[];
}

/**
 * Parses `ccache --print-stats` (tab-separated `name value` lines).
 *
 * @example
 * ```ts
 * parsePrintStats("direct_cache_hit\t12\ncache_miss\t3\n"); // { direct_cache_hit: 12, cache_miss: 3 }
 * ```
 */
export function parsePrintStats(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split("\n")) {
    const [k, v] = line.trim().split(/\t+/);
    if (k && v !== undefined && /^\d+$/.test(v)) out[k] = Number(v);
  }
  return out;
}

/**
 * ccache's counters and the instances' last builds; undefined when ccache is not installed.
 *
 * @example
 * ```ts ignore
 * const report = await ccacheReport(await listInstances(paths));
 * ```
 */
export async function ccacheReport(instances: InstanceRecord[]): Promise<CcacheReport | undefined> {
  const path = which("ccache");
  if (!path) return undefined;
  const stats = await run([path, "--print-stats"], { check: false, timeoutMs: 10_000 }).catch(() =>
    undefined
  );
  const s = parsePrintStats(stats?.stdout ?? "");
  const version = (await run([path, "--version"], { check: false, timeoutMs: 10_000 }).catch(() => undefined))
    ?.stdout.split("\n")[0].trim();
  return {
    path,
    version,
    hits: (s.direct_cache_hit ?? 0) + (s.preprocessed_cache_hit ?? 0),
    misses: s.cache_miss ?? 0,
    sizeBytes: s.cache_size_kibibyte !== undefined ? s.cache_size_kibibyte * 1024 : undefined,
    builds: instances.filter((i) => i.ccache).map((i) => ({
      instance: i.name,
      hits: i.ccache!.hits,
      misses: i.ccache!.misses,
      seconds: i.buildSeconds,
    })),
  };
}
