/**
 * `llama-mgr imatrix`: `llama-imatrix` with good defaults, for `quantize --imatrix`.
 *
 * @module
 */
import { join } from "node:path";
import type { Command } from "./command.ts";
import { bool, int, str } from "./args.ts";
import { computeImatrix } from "../lib/convert/imatrix.ts";
import { getInstance } from "../lib/llamacpp/instances.ts";
import { toolPath } from "./exec.ts";
import { resolveModel } from "../lib/models/resolve.ts";
import { UserError } from "../lib/util/errors.ts";
import { createProgress } from "../lib/util/progress.ts";

/** The `imatrix` command. */
export const imatrixCommand: Command = {
  name: "imatrix",
  summary: "compute an importance matrix (llama-imatrix with good defaults) for quantize --imatrix",
  usage: [
    "imatrix MODEL --data FILE [-o FILE] [--ctx 512] [--chunks N] [--ngl N] [--force] [-- llama-imatrix flags]",
  ],
  details: [
    "MODEL is a name, name:tag, alias or GGUF path (best: the f16/bf16 file you will quantize). The matrix is",
    "written to <data>/imatrix/<model>.imatrix.gguf (temporary file + rename), with 512-token chunks and all",
    "layers on the GPU of a GPU instance. Then: llama-mgr quantize MODEL IQ4_XS --imatrix <that file>.",
  ].join("\n"),
  examples: [
    "llama-mgr imatrix qwen2.5:0.5b-f16 --data calibration.txt",
    "llama-mgr imatrix ./Qwen3-4B-F16.gguf -f calibration.txt --chunks 100 -o qwen3-4b.imatrix.gguf",
    "llama-mgr imatrix -m model-f16.gguf -f calibration.txt -- --no-ppl",
  ],
  flags: {
    model: {
      type: "string",
      short: "m",
      value: "MODEL",
      description: "the model (instead of the positional)",
    },
    data: { type: "string", short: "f", value: "FILE", description: "calibration text file" },
    output: { type: "string", short: "o", value: "FILE", description: "output (default: <data>/imatrix/)" },
    ctx: { type: "string", short: "c", value: "N", description: "tokens per chunk (default 512)" },
    chunks: { type: "string", value: "N", description: "process at most N chunks (default: all)" },
    ngl: { type: "string", value: "N", description: "GPU layers (default: all on a GPU instance)" },
    threads: { type: "string", short: "t", value: "N", description: "threads" },
    force: { type: "boolean", description: "replace an existing matrix" },
  },
  async run(ctx, args) {
    // llama-imatrix's own spelling (-m MODEL -f FILE -o OUT -c N) works too.
    const ref = str(args, "model") ?? args.positionals[0];
    const data = str(args, "data");
    if (!ref || !data) {
      throw new UserError("imatrix needs a model and --data FILE", {
        hint: "llama-mgr imatrix qwen2.5:0.5b-f16 --data calibration.txt",
      });
    }
    const extra = args.positionals[str(args, "model") ? 0 : 1];
    if (extra) {
      throw new UserError(`imatrix: unexpected argument '${extra}'`, {
        hint: "flags for llama-imatrix go after --",
      });
    }
    const config = await ctx.config();
    let instance = await getInstance(ctx.paths, ctx.instance, config.default_instance);
    const model = await resolveModel(ctx.paths, config, ref);
    await toolPath(ctx, instance, "llama-imatrix");
    instance = await getInstance(ctx.paths, instance.name);
    if (!/^(f32|f16|bf16)$/i.test(model.facts.fileType)) {
      ctx.warn(`${model.name} is ${model.facts.fileType}; a matrix from the f16/bf16 model is more accurate`);
    }
    const positive = (name: string) => {
      const v = int(args, name, "imatrix");
      if (v !== undefined && v < (name === "ngl" ? 0 : 1)) throw new UserError(`--${name} must be positive`);
      return v;
    };
    await Deno.mkdir(ctx.paths.logsDir, { recursive: true });
    const progress = createProgress("imatrix", { quiet: ctx.quiet });
    const r = await computeImatrix({
      instance,
      paths: ctx.paths,
      model: model.path,
      data,
      output: str(args, "output"),
      ctx: positive("ctx"),
      chunks: positive("chunks"),
      ngl: positive("ngl"),
      threads: positive("threads"),
      force: bool(args, "force"),
      extraArgs: args.rest,
      onInfo: ctx.info,
      onProgress: (n, total) => progress.update(n, total, "chunks"),
      logFile: join(ctx.paths.logsDir, "imatrix.log"),
    });
    progress.done(`${r.chunks} chunks`);
    if (ctx.json) {
      ctx.print(JSON.stringify({ ...r, model: model.path }, null, 2));
      return;
    }
    ctx.print(
      `importance matrix of ${model.name}: ${r.output} (${r.chunks} chunks, ${r.seconds.toFixed(1)}s)\n` +
        `  use it: llama-mgr quantize ${model.name} IQ4_XS --imatrix ${r.output}`,
    );
  },
};
