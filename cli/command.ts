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
      if (!quiet) console.error(useColor("stderr") ? paint.cyan(text) : text);
    },
    warn: (text) => console.error(`${useColor("stderr") ? paint.yellow("warning:") : "warning:"} ${text}`),
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

/**
 * Whether to colour what goes to a stream: only a terminal, and not with `NO_COLOR` set to anything
 * (no-color.org) or `TERM=dumb`. Piped output stays plain, byte for byte what it was.
 */
export function useColor(
  stream: "stdout" | "stderr",
  options: { env?: Record<string, string | undefined>; isTerminal?: boolean } = {},
): boolean {
  const env = options.env ?? { NO_COLOR: Deno.env.get("NO_COLOR"), TERM: Deno.env.get("TERM") };
  if (env.NO_COLOR || env.TERM === "dumb") return false;
  return options.isTerminal ?? (stream === "stdout" ? Deno.stdout : Deno.stderr).isTerminal();
}

const sgr = (open: number, close: number) => (text: string) => `\x1b[${open}m${text}\x1b[${close}m`;

/** ANSI styles, for text {@linkcode useColor} said may be coloured. */
export const paint = {
  bold: sgr(1, 22),
  red: sgr(31, 39),
  yellow: sgr(33, 39),
  cyan: sgr(36, 39),
};

/** Renders rows as an aligned text table; the header bold when stdout is a terminal (see {@linkcode useColor}). */
export function table(headers: string[], rows: string[][], options: { color?: boolean } = {}): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => cells.map((c, i) => (c ?? "").padEnd(widths[i])).join("  ").trimEnd();
  const head = line(headers);
  return [(options.color ?? useColor("stdout")) ? paint.bold(head) : head, ...rows.map(line)].join("\n");
}
