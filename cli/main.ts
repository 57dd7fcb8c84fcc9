#!/usr/bin/env -S deno run -A
/**
 * The llama-mgr command line: one dispatcher over one file per command.
 *
 * @module
 */
import { parseFlags } from "./args.ts";
import { type Command, commandHelp, createContext, paint, useColor } from "./command.ts";
import { COMMANDS } from "./commands.ts";
import { formatError, UserError } from "../lib/util/errors.ts";
import { CommandError } from "../lib/util/run.ts";
import { VERSION } from "../lib/version.ts";
import { editDistance } from "../lib/models/names.ts";

function mainHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    `llama-mgr ${VERSION}: build, run and serve llama.cpp on your own machine`,
    "",
    "Usage: llama-mgr <command> [options]",
    "",
    "Commands:",
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    "",
    "Run `llama-mgr <command> --help` for a command's options and examples.",
    "",
    "Examples:",
    "  llama-mgr doctor",
    "  llama-mgr install",
    "  llama-mgr models",
    "  llama-mgr daemon",
  ].join("\n");
}

function closest(word: string, names: string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const n of names) {
    const d = editDistance(word, n);
    if (d < bestD) [best, bestD] = [n, d];
  }
  return bestD <= 2 ? best : undefined;
}

/** `--version -v`: llama-mgr's version, then each instance's llama.cpp version (build and commit) and backend. */
async function versions(before: string[]): Promise<number> {
  const { listInstances } = await import("../lib/llamacpp/instances.ts");
  const args = parseFlags(before.filter((a) => a !== "-v" && a !== "--verbose"), {}, "--version");
  const ctx = createContext(args);
  const instances = await listInstances(ctx.paths);
  if (ctx.json) {
    ctx.print(JSON.stringify({
      version: VERSION,
      instances: instances.map((i) => ({
        name: i.name,
        version: i.version,
        commit: i.commit,
        backend: i.arch,
      })),
    }));
    return 0;
  }
  ctx.print(`llama-mgr ${VERSION}`);
  if (!instances.length) ctx.print("no llama.cpp instances installed");
  for (const i of instances) {
    ctx.print(`${i.name}: llama.cpp ${i.version || "unknown"}, backend ${i.arch}`);
  }
  return 0;
}

/**
 * Runs the CLI with the given arguments and returns the exit code.
 *
 * @example
 * ```ts
 * const code = await main(["--version"]);
 * ```
 */
export async function main(argv: string[]): Promise<number> {
  // The command is the first argument that is not a global flag or its value.
  let idx = 0;
  while (idx < argv.length && argv[idx].startsWith("-")) {
    const a = argv[idx];
    const takesValue = ["-d", "--data-dir", "-i", "--instance", "--config"].includes(a);
    idx += takesValue ? 2 : 1;
  }
  const name = argv[idx];
  const before = argv.slice(0, idx);
  const after = argv.slice(idx + 1);
  try {
    if (name === undefined) {
      if (before.includes("--version")) {
        if (before.includes("-v") || before.includes("--verbose")) return await versions(before);
        console.log(VERSION);
        return 0;
      }
      console.log(mainHelp());
      return before.includes("--help") || before.includes("-h") ? 0 : 2;
    }
    if (name === "help") {
      const target = COMMANDS.find((c) => c.name === after[0]);
      console.log(target ? commandHelp(await target.load()) : mainHelp());
      return 0;
    }
    if (name === "__complete") {
      // Hidden: the completion scripts' source of instance and model names.
      const args = parseFlags(after, {}, name, { leading: before });
      return await (await import("./completion.ts")).complete(createContext(args), args.positionals[0]);
    }
    const entry = COMMANDS.find((c) => c.name === name);
    if (!entry) {
      const guess = closest(name, COMMANDS.map((c) => c.name));
      throw new UserError(`unknown command '${name}'`, {
        hint: guess ? `did you mean \`llama-mgr ${guess}\`?` : "run `llama-mgr --help` for the list",
        exitCode: 2,
      });
    }
    const cmd: Command = await entry.load();
    const args = parseFlags(after, cmd.flags, cmd.name, {
      passthroughAfter: cmd.passthroughAfter,
      leading: before,
    });
    if (args.flags.help === true && (cmd.passthroughAfter === undefined || args.positionals.length === 0)) {
      console.log(commandHelp(cmd));
      return 0;
    }
    if (args.flags.version === true) {
      console.log(VERSION);
      return 0;
    }
    const ctx = createContext(args);
    const code = await cmd.run(ctx, args);
    return code ?? 0;
  } catch (err) {
    const text = formatError(err);
    console.error(
      useColor("stderr")
        ? text.replace(/^error:/, paint.red(paint.bold("error:"))).replace(/^hint:/m, paint.cyan("hint:"))
        : text,
    );
    if (err instanceof UserError) return err.exitCode;
    if (err instanceof CommandError) return 1;
    if (!(err instanceof Error) || Deno.env.get("LLAMA_MGR_DEBUG")) console.error(err);
    return 1;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
