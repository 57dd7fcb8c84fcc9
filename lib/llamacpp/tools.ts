/**
 * Tools built on demand: an instance is installed with what the first answer needs (`llama-server`), and
 * another tool (llama-quantize, llama-bench, the RPC server, ...) is built the first time a command needs it,
 * from the same source and configuration as the release in use, then added to that release.
 *
 * The tool appears in the release only once it is built and starts (a copy beside it, then a rename), so an
 * interrupted build leaves the release as it was.
 *
 * @module
 */
import { join } from "node:path";
import type { Paths } from "../config/paths.ts";
import {
  binaryPath,
  instanceDir,
  instanceLockPath,
  type InstanceRecord,
  readInstance,
  writeInstance,
} from "./instances.ts";
import { configureAndBuild } from "./build.ts";
import { checkoutPatched } from "./patches.ts";
import { configureCommand } from "./cmake.ts";
import { exists, removeAll } from "../util/fs.ts";
import { UserError } from "../util/errors.ts";
import { run, which } from "../util/run.ts";
import { withLock } from "../util/lock.ts";
import type { Progress } from "../util/progress.ts";

/** Older and newer names of the same tool: a binary under either name will do. */
const TOOL_NAMES: Record<string, string[]> = {
  "ggml-rpc-server": ["ggml-rpc-server", "rpc-server"],
  "rpc-server": ["rpc-server", "ggml-rpc-server"],
};

/**
 * Options for {@linkcode ensureTool}.
 *
 * @example
 * ```ts
 * const options: EnsureToolOptions = { build: true, parallel: 2, onInfo: (t) => console.error(t) };
 * ```
 */
export interface EnsureToolOptions {
  /** Build the tool when the release lacks it (default true); false gives an error saying how to. */
  build?: boolean;
  /** Build jobs (default: CPU count). */
  parallel?: number;
  /** Use ccache when the release was built with it and it is installed (default true). */
  ccache?: boolean;
  /** Status lines. */
  onInfo?: (text: string) => void;
  /** Progress displays for configure and build. */
  progress?: (step: string) => Progress;
}

/**
 * What {@linkcode ensureTool} found or made.
 *
 * @example
 * ```ts ignore
 * const { path, built }: EnsuredTool = await ensureTool(paths, inst, "llama-bench");
 * ```
 */
export interface EnsuredTool {
  /** The instance's record (with the tool among its targets when it was built). */
  instance: InstanceRecord;
  /** The binary's path. */
  path: string;
  /** True when it was built by this call. */
  built: boolean;
  /** Seconds the build took (0 when nothing was built). */
  seconds: number;
}

async function present(instance: InstanceRecord, tool: string): Promise<string | undefined> {
  for (const n of TOOL_NAMES[tool] ?? [tool]) {
    if (await exists(binaryPath(instance, n))) return binaryPath(instance, n);
  }
  return undefined;
}

/**
 * The path of a tool of the instance's release in use, building it first when the release lacks it (under the
 * instance's lock, so a concurrent install or a second command waits and then finds it built).
 *
 * @example
 * ```ts ignore
 * const { path } = await ensureTool(paths, await getInstance(paths, "cpu"), "llama-quantize", {
 *   onInfo: (t) => console.error(t),
 * });
 * ```
 */
export async function ensureTool(
  paths: Paths,
  instance: InstanceRecord,
  tool: string,
  options: EnsureToolOptions = {},
): Promise<EnsuredTool> {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(tool)) throw new UserError(`invalid tool name '${tool}'`);
  const found = await present(instance, tool);
  if (found) return { instance, path: found, built: false, seconds: 0 };
  const name = instance.name;
  if (options.build === false) {
    throw new UserError(`instance '${name}' has no ${tool}`, {
      hint:
        `build it: llama-mgr install -i ${name} --targets ${
          [...new Set([...instance.targets, tool])].join(",")
        }` +
        " (or set build.on_demand: true in the config to build tools on first use)",
    });
  }
  const info = options.onInfo ?? (() => {});
  return await withLock(instanceLockPath(paths, name), `build of ${tool} for '${name}'`, async () => {
    // The instance may have changed (an install, a rollback, the same tool built) while this waited.
    const rec = (await readInstance(paths, name)) ?? instance;
    const again = await present(rec, tool);
    if (again) return { instance: rec, path: again, built: false, seconds: 0 };
    const dir = instanceDir(paths, name);
    const srcDir = join(dir, "src");
    if (!(await exists(join(srcDir, ".git")))) {
      throw new UserError(`instance '${name}' has no ${tool}, and no source to build it from`, {
        hint: `reinstall it with the tool: llama-mgr install -i ${name} --targets ` +
          [...new Set([...rec.targets, tool])].join(","),
      });
    }
    info(`${tool} is not built yet in instance '${name}': building it now (first use)`);
    await Deno.mkdir(paths.logsDir, { recursive: true });
    const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\..*$/, "");
    const logFile = join(paths.logsDir, `build-${name}-${tool}-${stamp}.log`);
    // The same source as the release in use: its commit with its patches (after a rollback the tree is at
    // another commit, patched for another release or not).
    await checkoutPatched(srcDir, rec.commit, rec.patches ?? [], { logFile });
    if (rec.patches?.length) info(`patched: ${rec.patches.join(", ")}`);
    const ccache = (options.ccache ?? true) && rec.cmakeCommand.some((a) => a.endsWith("LAUNCHER=ccache")) &&
      !!which("ccache");
    // And its configuration: the install added what it found on the machine (cuBLAS from a wheel...) to the
    // recorded args; the same configure command keeps the build tree instead of starting it anew.
    // Unity as the release was built: another setting would reconfigure and rebuild the whole tree.
    const spec = {
      arch: rec.arch,
      gpuTargets: rec.gpuTargets,
      cmakeArgs: rec.cmakeArgs,
      ccache,
      unity: rec.unity,
    };
    const base = configureCommand(srcDir, join(dir, "build"), spec);
    const found = base.every((a, i) => rec.cmakeCommand[i] === a) ? rec.cmakeCommand.slice(base.length) : [];
    const built = await configureAndBuild({
      srcDir,
      buildDir: join(dir, "build"),
      spec: { ...spec, cmakeArgs: [...rec.cmakeArgs, ...found] },
      targets: [tool],
      parallel: options.parallel,
      logFile,
      ccacheBaseDir: paths.dataDir,
      ccacheStatsLog: join(paths.logsDir, `ccache-${name}-${tool}-${stamp}.stats`),
      progress: options.progress,
      onWarning: (w) => info(`warning: ${w}`),
    });
    const binary = built.targets[0] ?? tool;
    const dest = binaryPath(rec, binary);
    const staged = join(rec.binDir, `.${binary}.staging`);
    try {
      await Deno.copyFile(join(dir, "build", "bin", binary), staged);
      await Deno.chmod(staged, 0o755);
      // It must start: a signal (a bad binary, a missing library) keeps it out of the release.
      const r = await run([staged, "--help"], { check: false, timeoutMs: 60_000, logFile });
      if (r.code < 0) throw new UserError(`the built ${binary} does not start; see ${logFile}`);
      await Deno.rename(staged, dest);
    } finally {
      await removeAll(staged);
    }
    // An update builds the targets recorded, so the tool stays built. (An empty list, as builds from before
    // tools came on demand have, stands for the common tools and is left as it is.)
    const record: InstanceRecord = {
      ...rec,
      targets: rec.targets.length ? [...new Set([...rec.targets, tool])] : rec.targets,
    };
    await writeInstance(paths, record);
    info(`built ${binary} in ${built.seconds.toFixed(1)}s`);
    return { instance: record, path: dest, built: true, seconds: built.seconds };
  }, { wait: true, onWait: (h) => info(`waiting for ${h.what} (pid ${h.pid}) to finish`) });
}
