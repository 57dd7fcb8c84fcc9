/**
 * `llama-mgr uninstall`: remove one instance completely, after confirmation.
 *
 * @module
 */
import type { Command } from "./command.ts";
import { bool } from "./args.ts";
import { getInstance, instanceDir, instanceSize, removeInstance } from "../lib/llamacpp/instances.ts";
import { instanceLockPath } from "../lib/llamacpp/install.ts";
import { withLock } from "../lib/util/lock.ts";
import { formatBytes } from "../lib/util/fs.ts";
import { UserError } from "../lib/util/errors.ts";

/** The `uninstall` command. */
export const uninstallCommand: Command = {
  name: "uninstall",
  summary: "remove an instance (its source, builds and Python environment)",
  usage: ["uninstall -i NAME [--yes]"],
  examples: ["llama-mgr uninstall -i rocm", "llama-mgr uninstall -i old --yes"],
  flags: { yes: { type: "boolean", short: "y", description: "do not ask for confirmation" } },
  async run(ctx, args) {
    const name = ctx.instance ?? args.positionals[0];
    if (!name) {
      throw new UserError("uninstall needs the instance name", { hint: "llama-mgr uninstall -i NAME" });
    }
    const inst = await getInstance(ctx.paths, name);
    const dir = instanceDir(ctx.paths, inst.name);
    if (!bool(args, "yes")) {
      if (!Deno.stdin.isTerminal()) {
        throw new UserError(`refusing to remove instance '${name}' without confirmation`, {
          hint: "pass --yes to confirm when not running in a terminal",
        });
      }
      const size = formatBytes(await instanceSize(ctx.paths, inst.name));
      const answer = prompt(`Remove instance '${name}' (${inst.arch}, ${size}) at ${dir}? [y/N]`);
      if (!answer || !/^y(es)?$/i.test(answer.trim())) {
        ctx.print("nothing removed");
        return 1;
      }
    }
    await withLock(
      instanceLockPath(ctx.paths, inst.name),
      `uninstall of '${name}'`,
      () => removeInstance(ctx.paths, inst.name),
    );
    ctx.print(`removed instance '${name}'`);
  },
};
