/**
 * The command table: every command, in the order `llama-mgr --help` lists them, with its module loaded only
 * when it runs or its help is asked for. Loading every command's modules for each run cost every command
 * (the daemon most, which runs for weeks) megabytes of memory for code it never runs.
 *
 * @module
 */
import type { Command } from "./command.ts";

/** A command's line in the list, and how to load the command itself. */
export interface CommandEntry {
  /** The word that invokes it (the loaded command's `name`). */
  name: string;
  /** One line for the command list (the loaded command's `summary`). */
  summary: string;
  /** Loads the command's module. */
  load(): Promise<Command>;
}

const alias = (name: string, tool: string, what: string): CommandEntry => ({
  name,
  summary: `${what} (runs ${tool})`,
  load: async () => (await import("./exec.ts")).TOOL_ALIASES.find((c) => c.name === name)!,
});

/** Every command. A test checks each entry's name and summary against the command it loads. */
export const COMMANDS: CommandEntry[] = [
  {
    name: "doctor",
    summary: "check build tools and GPU toolkits; say how to install what is missing",
    load: async () => (await import("./doctor.ts")).doctorCommand,
  },
  {
    name: "install",
    summary: "clone and build llama.cpp into an instance (side by side, per GPU architecture)",
    load: async () => (await import("./install.ts")).installCommand,
  },
  {
    name: "uninstall",
    summary: "remove an instance (its source, builds and Python environment)",
    load: async () => (await import("./uninstall.ts")).uninstallCommand,
  },
  {
    name: "instances",
    summary: "list installed llama.cpp instances, show one, or set the default",
    load: async () => (await import("./instances.ts")).instancesCommand,
  },
  {
    name: "exec",
    summary: "run any llama.cpp binary of an instance (stdio and exit code passed through)",
    load: async () => (await import("./exec.ts")).execCommand,
  },
  alias("bench", "llama-bench", "benchmark a model"),
  alias("tokenize", "llama-tokenize", "tokenize text with a model's vocabulary"),
  alias("gguf-split", "llama-gguf-split", "split or merge GGUF files"),
  alias("perplexity", "llama-perplexity", "measure perplexity on a text file"),
  {
    name: "models",
    summary: "list, scan, describe and alias the GGUF models on this machine",
    load: async () => (await import("./models.ts")).modelsCommand,
  },
  {
    name: "server",
    summary: "start, list, inspect and stop supervised llama-server processes",
    load: async () => (await import("./server.ts")).serverCommand,
  },
  {
    name: "rpc",
    summary: "run llama.cpp RPC workers here and check a cluster of them (models across machines)",
    load: async () => (await import("./rpc.ts")).rpcCommand,
  },
  {
    name: "create",
    summary: "make a model from a Modelfile through the daemon (as `ollama create`)",
    load: async () => (await import("./create.ts")).createCommand,
  },
  {
    name: "pull",
    summary: "get a model from Hugging Face, an Ollama registry or a URL (as `ollama pull`)",
    load: async () => (await import("./pull.ts")).pullCommand,
  },
  {
    name: "run",
    summary: "chat with a model (pulled first when missing), or answer one prompt (as `ollama run`)",
    load: async () => (await import("./run.ts")).runCommand,
  },
  {
    name: "list",
    summary: "list the models the daemon serves (as `ollama list`)",
    load: async () => (await import("./ollama_verbs.ts")).listCommand,
  },
  {
    name: "ps",
    summary: "list the models loaded now (as `ollama ps`)",
    load: async () => (await import("./ollama_verbs.ts")).psCommand,
  },
  {
    name: "show",
    summary: "show a model's facts, or its Modelfile, parameters, template, system prompt or license",
    load: async () => (await import("./ollama_verbs.ts")).showCommand,
  },
  {
    name: "stop",
    summary: "unload a running model (as `ollama stop`)",
    load: async () => (await import("./ollama_verbs.ts")).stopCommand,
  },
  {
    name: "cp",
    summary: "copy a model to another name (as `ollama cp`)",
    load: async () => (await import("./ollama_verbs.ts")).cpCommand,
  },
  {
    name: "rm",
    summary: "delete models (names made with cp/create, and files llama-mgr wrote; never another tool's)",
    load: async () => (await import("./ollama_verbs.ts")).rmCommand,
  },
  {
    name: "daemon",
    summary: "serve the Ollama API (and OpenAI's /v1) on top of llama-server",
    load: async () => (await import("./daemon.ts")).daemonCommand,
  },
  {
    name: "convert",
    summary: "convert a Hugging Face model folder (or hf:Org/Name from the HF cache) to GGUF",
    load: async () => (await import("./convert.ts")).convertCommand,
  },
  {
    name: "quantize",
    summary: "quantize a GGUF model (the output lands in the models folder as <model>-<TYPE>.gguf)",
    load: async () => (await import("./quantize.ts")).quantizeCommand,
  },
  {
    name: "imatrix",
    summary: "compute an importance matrix (llama-imatrix with good defaults) for quantize --imatrix",
    load: async () => (await import("./imatrix.ts")).imatrixCommand,
  },
  {
    name: "completion",
    summary: "print a shell completion script (bash, zsh or fish)",
    load: async () => (await import("./completion.ts")).completionCommand,
  },
];
