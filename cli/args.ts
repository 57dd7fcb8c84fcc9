/**
 * Flag parsing for every command: the global flags plus the command's own, on top of `node:util`'s
 * `parseArgs` (the twin of `@std/cli`'s), with `--` separating pass-through arguments.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { UserError } from "../lib/util/errors.ts";

/** One flag of a command. */
export interface FlagSpec {
  /** `string` takes a value; `boolean` does not. */
  type: "string" | "boolean";
  /** One-letter alias. */
  short?: string;
  /** May be given more than once (values collected in an array). */
  multiple?: boolean;
  /** Shown in help. */
  description: string;
  /** Placeholder for the value in help, e.g. `DIR`. */
  value?: string;
}

/** Flags every command accepts. */
export const GLOBAL_FLAGS: Record<string, FlagSpec> = {
  "data-dir": {
    type: "string",
    short: "d",
    value: "DIR",
    description: "data directory (env LLAMA_MGR_DATA_DIR)",
  },
  config: { type: "string", value: "FILE", description: "config file (env LLAMA_MGR_CONFIG)" },
  instance: { type: "string", short: "i", value: "NAME", description: "llama.cpp instance to use" },
  json: { type: "boolean", description: "print data as JSON" },
  quiet: { type: "boolean", short: "q", description: "print only results and errors" },
  help: { type: "boolean", short: "h", description: "show help" },
  version: {
    type: "boolean",
    description: "print llama-mgr's version (with -v, each instance's llama.cpp too)",
  },
};

/** Parsed command line. */
export interface ParsedArgs {
  /** Flag values by long name. */
  flags: Record<string, string | boolean | string[] | undefined>;
  /** Positional arguments. */
  positionals: string[];
  /** Arguments after `--` (or after the pass-through point). */
  rest: string[];
}

/**
 * Parses argv against the global flags and a command's own flags. Unknown flags are errors that name the
 * flag and point to `--help`.
 *
 * @example
 * ```ts
 * const a = parseFlags(["-i", "cpu", "--json"], {}, "instances");
 * ```
 */
export function parseFlags(
  argv: string[],
  spec: Record<string, FlagSpec>,
  command: string,
  options: { passthroughAfter?: number; leading?: string[] } = {},
): ParsedArgs {
  const all = { ...GLOBAL_FLAGS, ...spec };
  let args = argv;
  let rest: string[] = [];
  if (options.passthroughAfter !== undefined) {
    // Everything after the Nth positional passes through untouched, `--` included (exec, tool aliases).
    const split = splitPassthrough(argv, all, options.passthroughAfter);
    args = split.head;
    rest = split.tail;
  } else {
    const dd = argv.indexOf("--");
    if (dd >= 0) {
      args = argv.slice(0, dd);
      rest = argv.slice(dd + 1);
    }
  }
  args = [...(options.leading ?? []), ...args];
  const parseSpec: Record<string, { type: "string" | "boolean"; short?: string; multiple?: boolean }> = {};
  for (const [name, f] of Object.entries(all)) {
    parseSpec[name] = { type: f.type, ...(f.short ? { short: f.short } : {}), multiple: f.multiple ?? false };
  }
  try {
    const { values, positionals } = parseArgs({
      args,
      options: parseSpec,
      allowPositionals: true,
      strict: true,
    });
    return { flags: values as ParsedArgs["flags"], positionals, rest };
  } catch (err) {
    const msg = (err as Error).message.replace(/\. To specify a positional argument.*$/s, "");
    throw new UserError(`${command}: ${msg}`, { hint: `run \`llama-mgr ${command} --help\`` });
  }
}

/** Splits argv after the Nth positional: flags before it are ours, everything after passes through. */
export function splitPassthrough(
  args: string[],
  spec: Record<string, FlagSpec>,
  n: number,
): { head: string[]; tail: string[] } {
  let seen = 0;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (seen >= n) return { head: args.slice(0, i), tail: args.slice(i) };
    if (a === "--") return { head: args.slice(0, i), tail: args.slice(i + 1) };
    if (a.startsWith("-") && a !== "-") {
      const name = a.startsWith("--")
        ? a.slice(2).split("=")[0]
        : Object.keys(spec).find((k) => spec[k].short === a.slice(1, 2));
      const f = name ? spec[name] : undefined;
      if (f?.type === "string" && !a.includes("=") && !(a.length > 2 && !a.startsWith("--"))) i++;
      continue;
    }
    seen++;
  }
  return { head: args, tail: [] };
}

/** Reads a string flag. */
export function str(a: ParsedArgs, name: string): string | undefined {
  const v = a.flags[name];
  return typeof v === "string" ? v : undefined;
}

/** Reads a boolean flag. */
export function bool(a: ParsedArgs, name: string): boolean {
  return a.flags[name] === true;
}

/** Reads an integer flag, with a clear error for a bad value. */
export function int(a: ParsedArgs, name: string, command: string): number | undefined {
  const v = str(a, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n)) {
    throw new UserError(`${command}: --${name} expects a whole number, got '${v}'`);
  }
  return n;
}
