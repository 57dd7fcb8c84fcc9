/**
 * `llama-mgr quantize`: quantize a GGUF model with the instance's llama-quantize.
 *
 * @module
 */
import { join } from "node:path";
import { type Command, table } from "./command.ts";
import { bool, int, str } from "./args.ts";
import { quantizeModel, quantTypes } from "../lib/convert/mod.ts";
import { getInstance } from "../lib/llamacpp/instances.ts";
import { toolPath } from "./exec.ts";
import { resolveModel } from "../lib/models/mod.ts";
import { createProgress } from "../lib/util/progress.ts";
import { formatBytes } from "../lib/util/fs.ts";
import { UserError } from "../lib/util/errors.ts";

/** The `quantize` command. */
export const quantizeCommand: Command = {
  name: "quantize",
  summary: "quantize a GGUF model (the output lands in the models folder as <model>-<TYPE>.gguf)",
  usage: [
    "quantize MODEL TYPE [--imatrix FILE] [--allow-requantize] [--force] [-o OUT.gguf]",
    "quantize --list",
  ],
  details: "MODEL is a name, alias or path. TYPE is checked against this instance's llama-quantize first.",
  examples: [
    "llama-mgr quantize qwen2.5:0.5b-f16 Q4_K_M",
    "llama-mgr quantize ~/models/model-f16.gguf Q8_0 --force",
    "llama-mgr quantize qwen2.5:0.5b-f16 IQ4_XS --imatrix imatrix.gguf",
    "llama-mgr quantize --list",
  ],
  flags: {
    list: { type: "boolean", description: "list the types this instance supports" },
    imatrix: { type: "string", value: "FILE", description: "importance matrix for low-bit types" },
    "allow-requantize": { type: "boolean", description: "allow quantizing an already quantized model" },
    force: { type: "boolean", short: "f", description: "overwrite an existing output" },
    output: {
      type: "string",
      short: "o",
      value: "FILE",
      description: "output file (default: the models folder)",
    },
    threads: { type: "string", short: "t", value: "N", description: "threads" },
  },
  async run(ctx, args) {
    const config = await ctx.config();
    let instance = await getInstance(ctx.paths, ctx.instance, config.default_instance);
    const needTool = async () => {
      await toolPath(ctx, instance, "llama-quantize");
      instance = await getInstance(ctx.paths, instance.name);
    };
    if (bool(args, "list")) {
      await needTool();
      const types = await quantTypes(instance);
      if (ctx.json) return void ctx.print(JSON.stringify(types, null, 2));
      ctx.print(
        table(
          ["TYPE", "ID", "DESCRIPTION"],
          types.map((t) => [t.name, t.id < 0 ? "-" : String(t.id), t.description]),
        ),
      );
      return;
    }
    const [ref, type] = args.positionals;
    if (!ref || !type) {
      throw new UserError("quantize needs a model and a type", {
        hint: "llama-mgr quantize qwen2.5:0.5b-f16 Q4_K_M",
      });
    }
    const model = await resolveModel(ctx.paths, config, ref);
    await needTool();
    await Deno.mkdir(ctx.paths.logsDir, { recursive: true });
    const progress = createProgress("quantize", { quiet: ctx.quiet });
    const r = await quantizeModel({
      instance,
      input: model.path,
      parameterCount: model.facts.parameterCount,
      type,
      output: str(args, "output"),
      outDir: ctx.paths.modelsDir,
      imatrix: str(args, "imatrix"),
      allowRequantize: bool(args, "allow-requantize"),
      force: bool(args, "force"),
      threads: int(args, "threads", "quantize"),
      logFile: join(ctx.paths.logsDir, `quantize-${Date.now()}.log`),
      onProgress: (n, total, tensor) => progress.update(n, total, tensor),
    });
    progress.done("done");
    const entry = await resolveModel(ctx.paths, config, r.output).catch(() => undefined);
    if (ctx.json) return void ctx.print(JSON.stringify({ ...r, name: entry?.name }, null, 2));
    ctx.print(
      `wrote ${r.output} (${formatBytes(r.bytes)}) in ${r.seconds.toFixed(1)}s${
        entry ? `; model name: ${entry.name}` : ""
      }`,
    );
  },
};
