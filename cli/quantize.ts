/**
 * `llama-mgr quantize`: a GGUF model to a smaller type with the instance's `llama-quantize`, into the models
 * folder as `<model>-<TYPE>.gguf`.
 *
 * @module
 */
import { join } from "node:path";
import type { Command } from "./command.ts";
import { table } from "./command.ts";
import { bool, int, str } from "./args.ts";
import { listQuantTypes, quantizeModel } from "../lib/convert/quantize.ts";
import { getInstance } from "../lib/llamacpp/instances.ts";
import { resolveModel, scanModels } from "../lib/gguf/index.ts";
import { UserError } from "../lib/util/errors.ts";
import { formatBytes } from "../lib/util/fs.ts";
import { createProgress } from "../lib/util/progress.ts";

/** The `quantize` command. */
export const quantizeCommand: Command = {
  name: "quantize",
  summary: "quantize a GGUF model (Q4_K_M, Q8_0, ...) into the models folder",
  usage: [
    "quantize MODEL TYPE [--imatrix FILE] [--allow-requantize] [--force] [-o FILE] [--threads N] [-- flags]",
    "quantize --list",
  ],
  details: [
    "MODEL is a name, name:tag, alias or GGUF path. TYPE is checked against this instance's llama-quantize",
    "(`quantize --list` shows them, any case is accepted). The output is <model>-<TYPE>.gguf in the models",
    "folder; free space is checked against an estimate first; the file appears only when llama-quantize",
    "succeeded. Flags after -- go to llama-quantize (e.g. --pure, --output-tensor-type q8_0).",
  ].join("\n"),
  examples: [
    "llama-mgr quantize qwen2.5:0.5b-f16 Q4_K_M",
    "llama-mgr quantize ./Qwen2.5-0.5B-F16.gguf q8_0 -o /models/qwen-q8.gguf",
    "llama-mgr quantize qwen2.5:0.5b-f16 IQ4_XS --imatrix imatrix.gguf",
    "llama-mgr quantize --list",
  ],
  flags: {
    list: { type: "boolean", short: "l", description: "list the types this instance supports" },
    imatrix: { type: "string", value: "FILE", description: "importance matrix (llama-imatrix output)" },
    "allow-requantize": { type: "boolean", description: "allow quantizing an already quantized model" },
    force: { type: "boolean", short: "f", description: "replace an existing output" },
    output: {
      type: "string",
      short: "o",
      value: "FILE",
      description: "output file (default: models folder)",
    },
    threads: { type: "string", short: "t", value: "N", description: "threads (default: all cores)" },
  },
  async run(ctx, args) {
    const config = await ctx.config();
    const instance = await getInstance(ctx.paths, ctx.instance, config.default_instance);
    if (bool(args, "list")) {
      const types = await listQuantTypes(instance);
      if (ctx.json) ctx.print(JSON.stringify(types, null, 2));
      else {
        ctx.print(
          table(
            ["TYPE", "ID", "DESCRIPTION"],
            types.map((t) => [t.name, t.id?.toString() ?? "", t.description]),
          ),
        );
      }
      return;
    }
    const [ref, type, extra] = args.positionals;
    if (!ref || !type) {
      throw new UserError("quantize needs a model and a type", {
        hint: "llama-mgr quantize qwen2.5:0.5b-f16 Q4_K_M (types: llama-mgr quantize --list)",
      });
    }
    if (extra) {
      throw new UserError(`quantize: unexpected argument '${extra}'`, {
        hint: "flags for llama-quantize go after --",
      });
    }
    const threads = int(args, "threads", "quantize");
    if (threads !== undefined && threads < 1) throw new UserError("--threads must be at least 1");
    const model = await resolveModel(ctx.paths, config, ref);
    await Deno.mkdir(ctx.paths.logsDir, { recursive: true });
    const result = await quantizeModel({
      input: model.path,
      parameterCount: model.facts.parameterCount,
      fileType: model.facts.fileType,
      type,
      instance,
      paths: ctx.paths,
      output: str(args, "output"),
      imatrix: str(args, "imatrix"),
      allowRequantize: bool(args, "allow-requantize"),
      force: bool(args, "force"),
      threads,
      extraArgs: args.rest,
      onInfo: ctx.info,
      progress: createProgress("quantize", { quiet: ctx.quiet }),
      logFile: join(ctx.paths.logsDir, "quantize.log"),
    });
    let name: string | undefined;
    try {
      const scan = await scanModels(ctx.paths, config);
      name = scan.models.find((m) => m.path === result.path)?.name;
    } catch { /* the index catches up on the next listing */ }
    if (ctx.json) {
      ctx.print(JSON.stringify({ ...result, name, input: model.path }, null, 2));
      return;
    }
    ctx.print(
      `quantized ${model.name} -> ${result.path} (${result.type}, ${formatBytes(result.sizeBytes)}, ${
        result.seconds.toFixed(1)
      }s)` + (name ? `\n  model name: ${name}` : ""),
    );
  },
};
