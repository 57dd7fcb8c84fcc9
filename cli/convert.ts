/**
 * `llama-mgr convert`: a Hugging Face model folder to GGUF, in one command.
 *
 * @module
 */
import { join } from "node:path";
import type { Command } from "./command.ts";
import { str } from "./args.ts";
import { PYTHON_FLAGS, pythonOptions } from "./install.ts";
import { convertModel, OUTTYPES } from "../lib/convert/mod.ts";
import { getInstance } from "../lib/llamacpp/instances.ts";
import { resolveModel } from "../lib/models/mod.ts";
import { createProgress } from "../lib/util/progress.ts";
import { formatBytes } from "../lib/util/fs.ts";
import { UserError } from "../lib/util/errors.ts";

/** The `convert` command. */
export const convertCommand: Command = {
  name: "convert",
  summary: "convert a Hugging Face model folder (or hf:Org/Name from the HF cache) to GGUF",
  usage: [
    "convert FOLDER|hf:Org/Name [--outtype f16|bf16|q8_0|f32|auto] [--name NAME] [-o OUT.gguf] [-i INSTANCE]",
  ],
  details: [
    "Runs the instance's own convert_hf_to_gguf.py in its Python environment, which is created or repaired",
    "first (choose torch with --torch, --torch-version, --find-links, --index-url). The output goes to the",
    "models folder (<data>/models) and appears in `llama-mgr models` at once; it is written to a temporary",
    "file and renamed only when the conversion succeeded.",
  ].join("\n"),
  examples: [
    "llama-mgr convert ~/hf/Qwen2.5-0.5B-Instruct --outtype f16",
    "llama-mgr convert hf:Qwen/Qwen2.5-0.5B-Instruct --name qwen2.5:0.5b",
    "llama-mgr convert ./all-MiniLM-L6-v2 -o minilm.gguf --torch-version 2.13.0 --find-links /opt/wheels",
  ],
  flags: {
    outtype: {
      type: "string",
      value: "TYPE",
      description: `output type: ${OUTTYPES.join(", ")} (default f16)`,
    },
    name: { type: "string", value: "NAME", description: "model name (output file name and general.name)" },
    output: {
      type: "string",
      short: "o",
      value: "FILE",
      description: "output file (default: the models folder)",
    },
    ...PYTHON_FLAGS,
  },
  async run(ctx, args) {
    const source = args.positionals[0];
    if (!source) {
      throw new UserError("convert needs a model folder", {
        hint: "llama-mgr convert ~/hf/Qwen2.5-0.5B-Instruct",
      });
    }
    const config = await ctx.config();
    const instance = await getInstance(ctx.paths, ctx.instance, config.default_instance);
    await Deno.mkdir(ctx.paths.logsDir, { recursive: true });
    const logFile = join(ctx.paths.logsDir, `convert-${Date.now()}.log`);
    const progress = createProgress("convert", { quiet: ctx.quiet });
    let venvProgress: ReturnType<typeof createProgress> | undefined;
    const r = await convertModel(ctx.paths, {
      instance,
      source,
      outtype: str(args, "outtype"),
      name: str(args, "name"),
      output: str(args, "output"),
      python: pythonOptions(config.python, args),
      logFile,
      onInfo: ctx.info,
      onVenvProgress: (phase, total, text) => {
        venvProgress ??= createProgress("python environment", { quiet: ctx.quiet });
        venvProgress.update(phase, total, text);
      },
      onProgress: (p) => {
        venvProgress?.done("ready");
        venvProgress = undefined;
        progress.update(p, 100, "writing");
      },
    });
    venvProgress?.done("ready");
    progress.done("done");
    const size = (await Deno.stat(r.output)).size;
    const entry = await resolveModel(ctx.paths, config, r.output).catch(() => undefined);
    if (ctx.json) return void ctx.print(JSON.stringify({ ...r, bytes: size, name: entry?.name }, null, 2));
    ctx.print(
      `wrote ${r.output} (${formatBytes(size)}) in ${r.seconds.toFixed(1)}s${
        entry ? `; model name: ${entry.name}` : ""
      }`,
    );
  },
};
