/**
 * An instance's releases: the one in use and the earlier good ones it keeps (`build.keep_releases`), the
 * switch between them (one atomic write of `instance.json`), and `install --rollback`.
 *
 * A running llama-server keeps the binary it started from; processes started later read `instance.json` when
 * they start. So a switch never touches a running server, and a release that a process still runs from stays
 * on disk until a later switch finds it unused.
 *
 * @module
 */
import { join } from "node:path";
import type { Paths } from "../config/paths.ts";
import {
  currentRelease,
  instanceDir,
  instanceLockPath,
  type InstanceRecord,
  readInstance,
  type ReleaseRecord,
  validateInstanceName,
  writeInstance,
} from "./instances.ts";
import { exists, removeAll } from "../util/fs.ts";
import { UserError } from "../util/errors.ts";
import { run } from "../util/run.ts";
import { withLock } from "../util/lock.ts";

/**
 * Pids of the processes whose executable lies under `dir` (Linux: `/proc/<pid>/exe`; elsewhere none are
 * found, so nothing is kept for them).
 *
 * @example
 * ```ts ignore
 * const pids = await processesRunningFrom("/data/instances/cpu/releases/de3ff815ea-20261203T145444");
 * ```
 */
export async function processesRunningFrom(dir: string): Promise<number[]> {
  const out: number[] = [];
  const prefix = dir.endsWith("/") ? dir : `${dir}/`;
  try {
    for await (const e of Deno.readDir("/proc")) {
      if (!/^\d+$/.test(e.name)) continue;
      const exe = await Deno.readLink(`/proc/${e.name}/exe`).catch(() => undefined);
      if (exe?.startsWith(prefix)) out.push(Number(e.name));
    }
  } catch { /* no /proc */ }
  return out;
}

/** The release folder (`releases/<id>`) of a release's `bin` dir. */
function releaseFolder(r: { binDir: string }): string {
  return join(r.binDir, "..");
}

/**
 * Makes `record` the instance's record (one atomic write: from then on new processes use its binaries),
 * keeps at most `keep` of `record.previous`, and removes release folders that no record names and no
 * process runs from.
 *
 * @example
 * ```ts ignore
 * await switchRelease(paths, { ...inst, ...inst.previous![0], previous: [currentRelease(inst)] }, 1);
 * ```
 */
export async function switchRelease(
  paths: Paths,
  record: InstanceRecord,
  keep: number,
  options: { onInfo?: (text: string) => void } = {},
): Promise<void> {
  const current = releaseFolder(record);
  const seen = new Set([current]);
  // A release is listed once, never beside itself, and never when its binaries are gone.
  const previous: ReleaseRecord[] = [];
  for (const r of record.previous ?? []) {
    const folder = releaseFolder(r);
    if (seen.has(folder) || !(await exists(join(r.binDir, "llama-server")))) continue;
    seen.add(folder);
    previous.push(r);
  }
  record.previous = previous.slice(0, Math.max(0, keep));
  await writeInstance(paths, record);
  const named = new Set([current, ...record.previous.map(releaseFolder)]);
  const releasesDir = join(instanceDir(paths, record.name), "releases");
  let entries: string[] = [];
  try {
    entries = (await Array.fromAsync(Deno.readDir(releasesDir))).map((e) => join(releasesDir, e.name));
  } catch { /* none */ }
  for (const folder of entries) {
    if (named.has(folder)) continue;
    const pids = await processesRunningFrom(folder);
    if (pids.length) {
      options.onInfo?.(
        `release ${folder.split("/").pop()} stays on disk while pid ${pids.join(", ")} runs from it`,
      );
      continue;
    }
    await removeAll(folder);
  }
}

/**
 * What {@linkcode rollbackInstance} did.
 *
 * @example
 * ```ts ignore
 * const r: RollbackResult = await rollbackInstance(paths, "cpu");
 * console.log(`${r.from.version} -> ${r.to.version} in ${r.seconds.toFixed(2)}s`);
 * ```
 */
export interface RollbackResult {
  /** The instance's record after the switch. */
  record: InstanceRecord;
  /** The release that was in use. */
  from: ReleaseRecord;
  /** The release in use now. */
  to: ReleaseRecord;
  /** Seconds it took. */
  seconds: number;
}

/**
 * Switches an instance back to the newest release it kept, with no build; the release it leaves is kept in
 * turn, so a second rollback returns to it. Processes already running keep their binaries.
 *
 * @example
 * ```ts ignore
 * const { to } = await rollbackInstance(paths, "cpu");
 * console.log(`now at ${to.commit.slice(0, 10)} (${to.version})`);
 * ```
 */
export async function rollbackInstance(
  paths: Paths,
  name: string,
  options: { keep?: number; wait?: boolean; onInfo?: (text: string) => void } = {},
): Promise<RollbackResult> {
  validateInstanceName(name);
  const started = performance.now();
  return await withLock(instanceLockPath(paths, name), `rollback of '${name}'`, async () => {
    const existing = await readInstance(paths, name);
    if (!existing) {
      throw new UserError(`instance '${name}' is not installed, so there is nothing to roll back`, {
        hint: "run `llama-mgr instances` to list the installed ones",
      });
    }
    const [to, ...rest] = existing.previous ?? [];
    if (!to) {
      throw new UserError(`instance '${name}' keeps no earlier release to roll back to`, {
        hint: "an update keeps the release it replaces (build.keep_releases in the config, default 1); " +
          `\`llama-mgr instances show ${name}\` lists the releases`,
      });
    }
    const server = join(to.binDir, "llama-server");
    const v = (await exists(server))
      ? await run([server, "--version"], { check: false, timeoutMs: 30_000 }).catch(() => undefined)
      : undefined;
    if (v?.code !== 0) {
      throw new UserError(
        `the kept release ${to.commit.slice(0, 10)} of '${name}' no longer runs (${server}); nothing changed`,
        { hint: `rebuild it: llama-mgr install -i ${name} --branch ${to.commit}` },
      );
    }
    const from = currentRelease(existing);
    // The ref and source stay: an update after a rollback follows the same branch as before.
    const record: InstanceRecord = {
      ...existing,
      ...to,
      repoUrl: existing.repoUrl,
      ref: existing.ref,
      ccache: to.ccache,
      unity: to.unity,
      previous: [from, ...rest],
    };
    await switchRelease(paths, record, Math.max(1, options.keep ?? 1), options);
    return { record, from, to, seconds: (performance.now() - started) / 1000 };
  }, {
    wait: options.wait,
    onWait: (h) => options.onInfo?.(`waiting for ${h.what} (pid ${h.pid}) to finish`),
  });
}
