/**
 * `llama-mgr instances`: list installed llama.cpp instances and choose the default.
 *
 * @module
 */
import { type Command, table } from "./command.ts";
import {
  defaultInstanceName,
  getInstance,
  instanceReleases,
  instanceSize,
  listBinaries,
  listInstances,
  setDefaultInstance,
} from "../lib/llamacpp/instances.ts";
import { formatBytes } from "../lib/util/fs.ts";
import { UserError } from "../lib/util/errors.ts";
import { formatDeviceViews, instanceDeviceViews } from "../lib/llamacpp/devices.ts";

/** The `instances` command. */
export const instancesCommand: Command = {
  name: "instances",
  summary: "list installed llama.cpp instances, show one, or set the default",
  usage: ["instances [--json]", "instances show NAME [--json]", "instances default NAME"],
  examples: ["llama-mgr instances", "llama-mgr instances --json", "llama-mgr instances default rocm"],
  flags: {},
  async run(ctx, args) {
    const [sub, arg, extra] = args.positionals;
    const config = await ctx.config();
    if (extra !== undefined) throw new UserError(`instances: unexpected argument '${extra}'`);
    if (sub === "default") {
      if (!arg) {
        const cur = await defaultInstanceName(ctx.paths, config.default_instance);
        ctx.print(cur ?? "(no instance installed)");
        return;
      }
      await setDefaultInstance(ctx.paths, arg);
      if (config.default_instance && config.default_instance !== arg) {
        ctx.warn(`the config file sets default_instance: ${config.default_instance}, which takes precedence`);
      }
      ctx.print(`default instance: ${arg}`);
      return;
    }
    if (sub === "show") {
      const inst = await getInstance(ctx.paths, arg ?? ctx.instance, config.default_instance);
      const { previous: _previous, ...fields } = inst;
      const out = {
        ...fields,
        sizeBytes: await instanceSize(ctx.paths, inst.name),
        binaries: await listBinaries(inst),
        releases: instanceReleases(inst),
      };
      // Its devices (llama-server --list-devices, and system RAM) with the daemon's budgets, listed with the
      // environment its llama-server runs with (and its presets' when theirs shows other devices).
      const isDefault = inst.name === await defaultInstanceName(ctx.paths, config.default_instance);
      const views = await instanceDeviceViews(inst, config, { isDefault });
      const devices = views[0].devices ?? { error: views[0].error };
      if (ctx.json) {
        const presetDevices = views.length > 1 ? { presetDevices: views.slice(1) } : {};
        ctx.print(JSON.stringify({ ...out, devices, ...presetDevices }, null, 2));
      } else {
        for (const [k, v] of Object.entries(out)) {
          if (k === "releases") continue;
          const text = Array.isArray(v) ? v.join(" ") : v && typeof v === "object" ? JSON.stringify(v) : v;
          ctx.print(`${k.padEnd(14)} ${text ?? ""}`);
        }
        ctx.print("");
        ctx.print(table(
          ["", "COMMIT", "VERSION", "BACKEND", "TARGETS", "BUILT", "FOLDER"],
          out.releases.map((r) => [
            r.current ? "*" : "",
            r.commit.slice(0, 10),
            r.version,
            r.arch + (r.gpuTargets.length ? ` ${r.gpuTargets.join(",")}` : ""),
            r.targets.join(",") || "(common tools)",
            r.builtAt.replace("T", " ").slice(0, 16),
            r.binDir,
          ]),
        ));
        if (out.releases.length > 1) {
          ctx.print(`\n* in use; \`llama-mgr install -i ${inst.name} --rollback\` switches to the next one`);
        }
        ctx.print(`${"devices".padEnd(14)} ${formatDeviceViews(views).join(`\n${" ".repeat(15)}`)}`);
      }
      return;
    }
    if (sub !== undefined) {
      throw new UserError(`instances: unknown sub-command '${sub}'`, {
        hint: "use `instances`, `instances show NAME` or `instances default NAME`",
      });
    }
    const all = await listInstances(ctx.paths);
    const def = await defaultInstanceName(ctx.paths, config.default_instance);
    const rows = await Promise.all(all.map(async (i) => ({
      ...i,
      sizeBytes: await instanceSize(ctx.paths, i.name),
      default: i.name === def,
    })));
    if (ctx.json) {
      ctx.print(JSON.stringify(rows, null, 2));
      return;
    }
    if (!rows.length) {
      ctx.print("no instances installed; run `llama-mgr install`");
      return;
    }
    ctx.print(table(
      ["NAME", "ARCH", "TARGETS", "COMMIT", "VERSION", "BUILT", "SIZE", "DEFAULT"],
      rows.map((r) => [
        r.name,
        r.arch,
        r.gpuTargets.join(",") || "-",
        r.commit.slice(0, 10),
        r.version,
        r.builtAt.replace("T", " ").slice(0, 16),
        formatBytes(r.sizeBytes),
        r.default ? "*" : "",
      ]),
    ));
  },
};
