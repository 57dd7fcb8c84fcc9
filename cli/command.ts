/**
 * What a command is, the context it runs in, and how its help is printed.
 *
 * @module
 */
import type { FlagSpec, ParsedArgs } from "./args.ts";
import { GLOBAL_FLAGS } from "./args.ts";
import { type Paths, resolvePaths } from "../lib/config/paths.ts";
import { loadConfig } from "../lib/config/load.ts";
import type { Config } from "../lib/config/schema.ts";

/** What every command gets: resolved paths, the config (loaded on first use), output helpers. */
export interface Context {
  /** Data and config locations. */
  paths: Paths;
  /** Loads and validates the config file (once). */
  config(): Promise<Config>;
  /** `--json` was given. */
  json: boolean;
  /** `--quiet` was given. */
  quiet: boolean;
  /** `--instance` was given. */
  instance?: string;
  /** Prints a result line to stdout. */
  print(text: string): void;
  /** Prints a status line to stderr unless quiet. */
  info(text: string): void;
  /** Prints a warning to stderr. */
  warn(text: string): void;
}

/** A CLI command: one file in `cli/` exports one of these. */
export interface Command {
  /** The word that invokes it. */
  name: string;
  /** One line for the command list. */
  summary: string;
  /** Usage lines, without the program name. */
  usage: string[];
  /** Examples shown in help (each a full command line). */
  examples: string[];
  /** The command's own flags. */
  flags: Record<string, FlagSpec>;
  /** Everything after this many positionals passes through untouched (exec and tool aliases). */
  passthroughAfter?: number;
  /** More help text after the usage. */
  details?: string;
  /** Runs the command; returns the exit code (default 0). */
  run(ctx: Context, args: ParsedArgs): Promise<number | void>;
}

/** Builds a context from the global flags. */
export function createContext(args: ParsedArgs, env?: Record<string, string | undefined>): Context {
  const paths = resolvePaths({
    dataDir: typeof args.flags["data-dir"] === "string" ? args.flags["data-dir"] : undefined,
    configFile: typeof args.flags.config === "string" ? args.flags.config : undefined,
    env,
  });
  let config: Promise<Config> | undefined;
  const quiet = args.flags.quiet === true;
  return {
    paths,
    config: () => config ??= loadConfig(paths.configFile),
    json: args.flags.json === true,
    quiet,
    instance: typeof args.flags.instance === "string" ? args.flags.instance : undefined,
    print: (text) => console.log(text),
    info: (text) => {
      if (!quiet) console.error(text);
    },
    warn: (text) => console.error(`warning: ${text}`),
  };
}

function flagLines(flags: Record<string, FlagSpec>): string[] {
  return Object.entries(flags).map(([name, f]) => {
    const left = `${f.short ? `-${f.short}, ` : "    "}--${name}${
      f.type === "string" ? ` ${f.value ?? "VALUE"}` : ""
    }`;
    return `  ${left.padEnd(30)} ${f.description}`;
  });
}

/** The help text of one command. */
export function commandHelp(cmd: Command): string {
  const out = [
    `llama-mgr ${cmd.name}: ${cmd.summary}`,
    "",
    "Usage:",
    ...cmd.usage.map((u) => `  llama-mgr ${u}`),
  ];
  if (cmd.details) out.push("", cmd.details);
  if (Object.keys(cmd.flags).length) out.push("", "Options:", ...flagLines(cmd.flags));
  out.push("", "Global options:", ...flagLines(GLOBAL_FLAGS));
  out.push("", "Examples:", ...cmd.examples.map((e) => `  ${e}`));
  return out.join("\n");
}

/** Renders rows as an aligned text table. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => cells.map((c, i) => (c ?? "").padEnd(widths[i])).join("  ").trimEnd();
  return [line(headers), ...rows.map(line)].join("\n");
}
