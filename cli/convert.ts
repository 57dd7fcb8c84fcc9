/**
 * `llama-mgr convert`: a Hugging Face model folder (or a snapshot in the Hugging Face cache) to GGUF, with
 * the instance's own converter in its uv environment, into the models folder.
 *
 * @module
 */
import { join } from "node:path";
import type { Command } from "./command.ts";
import { bool, str } from "./args.ts";
import { PYTHON_FLAGS, pythonOptions } from "./install.ts";
import { CONVERT_OUTTYPES, convertModel, type ConvertOuttype } from "../lib/convert/convert.ts";
import { getInstance } from "../lib/llamacpp/instances.ts";
import { scanModels } from "../lib/gguf/index.ts";
import { UserError } from "../lib/util/errors.ts";
import { formatBytes } from "../lib/util/fs.ts";
import { createProgress } from "../lib/util/progress.ts";

const PYTHON_FLAG_NAMES = Object.keys(PYTHON_FLAGS);

/** The `convert` command. */
export const convertCommand: Command = {
  name: "convert",
  summary: "convert a Hugging Face model folder to GGUF (into the models folder)",
  usage: [
    "convert MODEL_DIR|hf:Org/Name[@rev] [--outtype f16|bf16|q8_0|f32|auto] [--name NAME] [-o FILE] [--force]",
    "        [--torch cpu|auto|system|skip] [--find-links DIR] [--index-url URL] [--offline] [-- converter args]",
  ],
  details: [
    "Runs the instance's own convert_hf_to_gguf.py in the instance's uv environment, creating or repairing it",
    "first (with the options it was made with, or the --torch/--find-links/--index-url flags given here).",
    "The output goes to <data>/models/<name>-<TYPE>.gguf and is listed by `llama-mgr models` at once. It is",
    "written to a hidden temporary folder and renamed only on success: a failed or interrupted conversion",
    "leaves nothing behind and prints the converter's own reason. Arguments after -- go to the converter.",
    "hf:Org/Name reads the snapshot in $HF_HUB_CACHE, $HF_HOME/hub or ~/.cache/huggingface/hub.",
  ].join("\n"),
  examples: [
    "llama-mgr convert ~/hf/Qwen2.5-0.5B-Instruct --outtype f16 --name qwen2.5:0.5b",
    "llama-mgr convert hf:Qwen/Qwen2.5-0.5B-Instruct",
    "llama-mgr convert ./all-MiniLM-L6-v2 --outtype f16 -o /models/minilm-f16.gguf",
    "llama-mgr convert ./model --find-links /opt/wheels --torch-version 2.13.0",
  ],
  flags: {
    outtype: {
      type: "string",
      value: "TYPE",
      description: "f16, bf16, q8_0, f32, tq1_0, tq2_0 or auto (default: auto, bf16 weights stay bf16)",
    },
    name: { type: "string", short: "n", value: "NAME", description: "model name, e.g. qwen2.5:0.5b" },
    output: {
      type: "string",
      short: "o",
      value: "FILE",
      description: "output file (default: models folder)",
    },
    force: { type: "boolean", short: "f", description: "replace an existing output" },
    ...PYTHON_FLAGS,
  },
  async run(ctx, args) {
    const source = args.positionals[0];
    if (!source) {
      throw new UserError("convert needs a model folder or hf:Org/Name", {
        hint: "llama-mgr convert ~/hf/Qwen2.5-0.5B-Instruct",
      });
    }
    if (args.positionals.length > 1) {
      throw new UserError(`convert takes one model (got also '${args.positionals[1]}')`, {
        hint: "pass converter options after --",
      });
    }
    const outtype = (str(args, "outtype") ?? "auto").toLowerCase();
    if (!CONVERT_OUTTYPES.includes(outtype as ConvertOuttype)) {
      throw new UserError(`--outtype '${outtype}' is not one of ${CONVERT_OUTTYPES.join(", ")}`);
    }
    const config = await ctx.config();
    const instance = await getInstance(ctx.paths, ctx.instance, config.default_instance);
    const explicitPython = PYTHON_FLAG_NAMES.some((f) => args.flags[f] !== undefined);
    await Deno.mkdir(ctx.paths.logsDir, { recursive: true });
    const logFile = join(ctx.paths.logsDir, "convert.log");
    const result = await convertModel({
      source,
      instance,
      paths: ctx.paths,
      python: explicitPython ? pythonOptions(config.python, args) : undefined,
      fallbackPython: config.python,
      outtype: outtype as ConvertOuttype,
      name: str(args, "name"),
      output: str(args, "output"),
      force: bool(args, "force"),
      extraArgs: args.rest,
      onInfo: ctx.info,
      progress: createProgress("convert", { quiet: ctx.quiet }),
      logFile,
    });
    let name: string | undefined;
    try {
      const scan = await scanModels(ctx.paths, config);
      name = scan.models.find((m) => m.path === result.path || m.files.includes(result.path))?.name;
    } catch { /* the file is written; the index catches up on the next listing */ }
    const size = (await Deno.stat(result.path)).size;
    if (ctx.json) {
      ctx.print(JSON.stringify({ ...result, name, sizeBytes: size }, null, 2));
      return;
    }
    ctx.print(
      `converted ${result.sourceDir} -> ${result.path} (${result.outtype}, ${formatBytes(size)}, ${
        result.seconds.toFixed(1)
      }s)` + (name ? `\n  model name: ${name}` : ""),
    );
  },
};
