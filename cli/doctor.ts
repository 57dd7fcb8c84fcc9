/**
 * `llama-mgr doctor`: what is installed, what is missing, how to install it.
 *
 * @module
 */
import { type Command, type Context, table } from "./command.ts";
import { str } from "./args.ts";
import { platformHint, runDoctor } from "../lib/llamacpp/doctor.ts";
import { detectGpu } from "../lib/llamacpp/detect.ts";
import { type Arch, ARCHES, defaultInstanceName, listInstances } from "../lib/llamacpp/instances.ts";
import { UserError } from "../lib/util/errors.ts";
import { type DeviceView, formatDeviceViews, instanceDeviceViews } from "../lib/llamacpp/devices.ts";
import { type CcacheReport, ccacheReport } from "../lib/llamacpp/ccache.ts";
import { formatBytes } from "../lib/util/fs.ts";

/** The `doctor` command. */
export const doctorCommand: Command = {
  name: "doctor",
  summary: "check build tools and GPU toolkits; say how to install what is missing",
  usage: ["doctor [--arch ARCH] [--json]"],
  details: "Exits with code 1 when a tool required for the backend (default: the detected one) is missing.",
  examples: ["llama-mgr doctor", "llama-mgr doctor --arch rocm", "llama-mgr doctor --json"],
  flags: {
    arch: { type: "string", value: "ARCH", description: `backend to check for: ${ARCHES.join(", ")}` },
  },
  async run(ctx, args) {
    return await doctorFor(ctx, str(args, "arch"));
  },
};

/** Runs the checks and prints them; returns the exit code. */
export async function doctorFor(ctx: Context, archFlag?: string): Promise<number> {
  if (archFlag && !ARCHES.includes(archFlag as Arch)) {
    throw new UserError(`unknown --arch '${archFlag}'`, { hint: `use one of ${ARCHES.join(", ")}` });
  }
  const detected = await detectGpu();
  const arch = (archFlag ?? detected.arch) as Arch;
  const checks = await runDoctor(arch);
  const missing = checks.filter((c) => c.required && !c.ok);
  const instances = await listInstances(ctx.paths);
  const config = await ctx.config();
  // Each instance's devices as its llama-server sees them with the environment it runs with (the instance's,
  // and each preset's that lists other devices), with the budgets the daemon packs models into.
  const def = await defaultInstanceName(ctx.paths, config.default_instance);
  const views: Record<string, DeviceView[]> = {};
  for (const i of instances) {
    views[i.name] = await instanceDeviceViews(i, config, { isDefault: i.name === def });
  }
  const ccache = await ccacheReport(instances);
  if (ctx.json) {
    ctx.print(
      JSON.stringify(
        {
          arch,
          detected,
          dataDir: ctx.paths.dataDir,
          configFile: ctx.paths.configFile,
          checks,
          instances: instances.map((i) => i.name),
          devices: Object.fromEntries(
            Object.entries(views).map(([name, v]) => [name, v[0].devices ?? { error: v[0].error }]),
          ),
          ccache,
          unity: {
            config: config.build.unity,
            instances: Object.fromEntries(instances.map((i) => [i.name, !!i.unity])),
          },
          hiddenDevices: Object.fromEntries(
            Object.entries(views).filter(([, v]) => v[0].hidden.length).map((
              [name, v],
            ) => [name, v[0].hidden]),
          ),
          presetDevices: Object.fromEntries(
            Object.entries(views).filter(([, v]) => v.length > 1).map(([name, v]) => [name, v.slice(1)]),
          ),
          ok: missing.length === 0,
        },
        null,
        2,
      ),
    );
    return missing.length ? 1 : 0;
  }
  ctx.print(`backend: ${arch}${archFlag ? "" : ` (detected: ${detected.reason})`}`);
  ctx.print(`data:    ${ctx.paths.dataDir}`);
  ctx.print(`config:  ${ctx.paths.configFile}`);
  ctx.print(`instances: ${instances.map((i) => `${i.name} (${i.arch})`).join(", ") || "none"}`);
  for (const [name, list] of Object.entries(views)) {
    ctx.print(`devices of ${name}:`);
    for (const line of formatDeviceViews(list)) ctx.print(`  ${line}`);
  }
  ctx.print("");
  ctx.print(table(
    ["", "TOOL", "VERSION", "FOR"],
    checks.filter((c) =>
      c.required || c.ok || c.purpose.includes("optional") || !c.purpose.includes("--arch") ||
      c.purpose.includes(`--arch ${arch}`)
    )
      .map((
        c,
      ) => [
        c.ok ? "ok" : c.required ? "MISSING" : "missing",
        c.name,
        c.version?.slice(0, 40) ?? "-",
        c.purpose,
      ]),
  ));
  const toInstall = checks.filter((c) =>
    !c.ok && (c.required || !c.purpose.includes("--arch") || c.purpose.includes(`--arch ${arch}`))
  );
  if (toInstall.length) {
    ctx.print("");
    ctx.print("To install what is missing:");
    for (const c of toInstall) {
      const here = platformHint(c.install);
      ctx.print(`  ${c.name}${c.required ? " (required)" : ""}:`);
      ctx.print(`    ${here.platform.padEnd(14)} ${here.command}`);
      for (
        const [p, cmd] of [["Debian/Ubuntu", c.install.debian], ["Fedora", c.install.fedora], [
          "Arch",
          c.install.arch,
        ], ["macOS", c.install.macos]]
      ) {
        if (p !== here.platform) ctx.print(`    ${p.padEnd(14)} ${cmd}`);
      }
    }
  }
  printCcache(ctx, ccache);
  ctx.print(
    `unity builds: ${
      config.build.unity ? "on for new instances" : "off (build.unity: false in the config)"
    }; install --unity or --no-unity switches an instance`,
  );
  for (const i of instances) {
    ctx.print(`  '${i.name}' was built ${i.unity ? "in unity batches" : "file by file"}`);
  }
  ctx.print("");
  ctx.print(
    missing.length ? `${missing.length} required tool(s) missing for ${arch}` : `ready to build for ${arch}`,
  );
  return missing.length ? 1 : 0;
}

function percent(hits: number, misses: number): string {
  return `${(hits / Math.max(1, hits + misses) * 100).toFixed(0)}%`;
}

/** What ccache saves: each compilation it answers is one the compiler does not run. */
function printCcache(ctx: Context, r: CcacheReport | undefined): void {
  ctx.print("");
  if (!r) {
    ctx.print("ccache: not installed; every rebuild compiles everything again (see above to install it)");
    return;
  }
  ctx.print(
    `ccache: ${r.hits} of ${r.hits + r.misses} compilations on this machine came from the cache (${
      percent(r.hits, r.misses)
    })${r.sizeBytes !== undefined ? `; cache size ${formatBytes(r.sizeBytes)}` : ""}`,
  );
  for (const b of r.builds) {
    ctx.print(
      `  last build of '${b.instance}': ${b.hits} of ${b.hits + b.misses} compilations from the cache (${
        percent(b.hits, b.misses)
      }), ${b.seconds}s`,
    );
  }
}
