/**
 * `llama-mgr exec`: run any llama.cpp binary of an instance with stdio and exit code passed through, and the
 * short aliases for the common tools (`bench`, `tokenize`, `gguf-split`, `perplexity`).
 *
 * @module
 */
import type { Command, Context } from "./command.ts";
import { getInstance, type InstanceRecord } from "../lib/llamacpp/instances.ts";
import { ensureTool } from "../lib/llamacpp/tools.ts";
import { UserError } from "../lib/util/errors.ts";
import { createProgress } from "../lib/util/progress.ts";

/**
 * The path of a tool of an instance, built first (with progress on stderr) when the instance lacks it and
 * the config's `build.on_demand` allows it.
 */
export async function toolPath(ctx: Context, instance: InstanceRecord, tool: string): Promise<string> {
  const config = await ctx.config();
  const r = await ensureTool(ctx.paths, instance, tool, {
    build: config.build.on_demand,
    parallel: config.build.parallel,
    ccache: config.build.ccache,
    onInfo: ctx.info,
    progress: (step) => createProgress(step, { quiet: ctx.quiet }),
  });
  return r.path;
}

/** Runs a tool of the chosen instance with inherited stdio; returns its exit code. */
export async function execTool(ctx: Context, tool: string, toolArgs: string[]): Promise<number> {
  const config = await ctx.config();
  const inst = await getInstance(ctx.paths, ctx.instance, config.default_instance);
  const name = tool.startsWith("llama-") || tool.startsWith("ggml-") || tool.includes("/")
    ? tool
    : `llama-${tool}`;
  if (name.includes("/") || name.includes("..")) throw new UserError(`invalid tool name '${tool}'`);
  const path = await toolPath(ctx, inst, name);
  const child = new Deno.Command(path, {
    args: toolArgs,
    stdin: "inherit",
    stdout: "inherit",
    stderr: "inherit",
  })
    .spawn();
  const forward = (sig: Deno.Signal) => () => {
    try {
      child.kill(sig);
    } catch { /* gone */ }
  };
  const onInt = forward("SIGINT");
  const onTerm = forward("SIGTERM");
  Deno.addSignalListener("SIGINT", onInt);
  Deno.addSignalListener("SIGTERM", onTerm);
  try {
    const status = await child.status;
    return status.signal ? 128 + (status.signal === "SIGINT" ? 2 : 15) : status.code;
  } finally {
    Deno.removeSignalListener("SIGINT", onInt);
    Deno.removeSignalListener("SIGTERM", onTerm);
  }
}

/** The `exec` command. */
export const execCommand: Command = {
  name: "exec",
  summary: "run any llama.cpp binary of an instance (stdio and exit code passed through)",
  usage: ["exec [-i NAME] TOOL [ARGS...]"],
  details:
    "TOOL is a binary name such as llama-bench or ggml-rpc-server; the `llama-` prefix may be left out.\n" +
    "A tool the instance has not built yet is built first (build.on_demand in the config).",
  examples: ["llama-mgr exec llama-bench -m model.gguf", "llama-mgr exec -i rocm llama-server --version"],
  flags: {},
  passthroughAfter: 1,
  async run(ctx, args) {
    const tool = args.positionals[0];
    if (!tool) {
      throw new UserError("exec needs a tool name", { hint: "llama-mgr exec llama-bench -m model.gguf" });
    }
    return await execTool(ctx, tool, args.rest);
  },
};

function alias(name: string, tool: string, what: string, example: string): Command {
  return {
    name,
    summary: `${what} (runs ${tool})`,
    usage: [`${name} [ARGS...]`],
    details: `All arguments go to ${tool}; \`llama-mgr ${name} --help\` shows its own help. ` +
      `Global flags such as -i go before '${name}'.`,
    examples: [example],
    flags: {},
    passthroughAfter: 0,
    run: (ctx, args) => execTool(ctx, tool, args.rest),
  };
}

/** Short aliases for the common tools. */
export const TOOL_ALIASES: Command[] = [
  alias("bench", "llama-bench", "benchmark a model", "llama-mgr bench -m model.gguf -p 512 -n 128"),
  alias(
    "tokenize",
    "llama-tokenize",
    "tokenize text with a model's vocabulary",
    "llama-mgr tokenize -m model.gguf -p 'Hello'",
  ),
  alias(
    "gguf-split",
    "llama-gguf-split",
    "split or merge GGUF files",
    "llama-mgr gguf-split --split-max-size 2G in.gguf out",
  ),
  alias(
    "perplexity",
    "llama-perplexity",
    "measure perplexity on a text file",
    "llama-mgr perplexity -m model.gguf -f wiki.test.raw",
  ),
];
