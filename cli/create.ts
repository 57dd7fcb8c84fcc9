/**
 * `llama-mgr create NAME -f Modelfile [-q TYPE]`: a model made from a Modelfile through the daemon's
 * `/api/create`, as `ollama create` does: FROM a model name or a local GGUF file, ADAPTER a LoRA GGUF (local
 * files are uploaded to the daemon as blobs), TEMPLATE, SYSTEM, PARAMETER, MESSAGE and LICENSE. A daemon is
 * started in the background when none answers. FROM a folder (safetensors) is not supported.
 *
 * @module
 */
import { dirname, isAbsolute, join, resolve } from "node:path";
import type { Command } from "./command.ts";
import { str } from "./args.ts";
import { connect } from "./connect.ts";
import { ModelfileError, modelfileRequest, parseModelfile } from "../lib/daemon/ollama/modelfile.ts";
import { isValidModelName } from "../lib/models/names.ts";
import { UserError } from "../lib/util/errors.ts";
import { sha256File } from "../lib/util/fs.ts";

/** A Modelfile path as Ollama expands it: `~` is home, a relative path is relative to the Modelfile's folder. */
function expandPath(p: string, relativeTo: string): string {
  if (p === "~" || p.startsWith("~/")) return join(Deno.env.get("HOME") ?? "", p.slice(1));
  return isAbsolute(p) ? p : resolve(relativeTo, p);
}

/** The SHA-256 digest of a file, as the blob store names it. */
async function fileDigest(path: string): Promise<string> {
  return "sha256:" + await sha256File(path);
}

/** The `create` command. */
export const createCommand: Command = {
  name: "create",
  summary: "make a model from a Modelfile through the daemon (as `ollama create`)",
  usage: ["create NAME [-f Modelfile] [-q TYPE]"],
  examples: [
    "llama-mgr create pirate -f Modelfile",
    "llama-mgr create smol-q4 -f Modelfile -q Q4_K_M",
  ],
  details: [
    "FROM a model name or a GGUF file (uploaded to the daemon as a blob); a folder of safetensors is not",
    "supported (convert it with `llama-mgr convert` first). ADAPTER: a LoRA GGUF. TEMPLATE: an Ollama Go",
    "template, translated to a Jinja chat template for llama-server. -q quantizes an F16/BF16/F32 model.",
  ].join("\n"),
  flags: {
    file: { type: "string", short: "f", value: "FILE", description: "the Modelfile (default ./Modelfile)" },
    quantize: { type: "string", short: "q", value: "TYPE", description: "quantize to TYPE (e.g. Q4_K_M)" },
  },
  async run(ctx, args) {
    const name = args.positionals[0];
    if (!name) throw new UserError("create needs a name", { hint: "llama-mgr create NAME -f Modelfile" });
    if (!isValidModelName(name)) throw new UserError(`invalid model name: ${name}`);
    const file = str(args, "file") ?? "Modelfile";
    let text: string;
    try {
      text = await Deno.readTextFile(file);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) {
        throw new UserError(`no Modelfile at ${file}`, {
          hint: "write one (FROM MODEL or FROM ./model.gguf, then SYSTEM, PARAMETER...) and pass it with -f",
        });
      }
      throw err;
    }
    let req;
    try {
      req = modelfileRequest(parseModelfile(text), { warn: (w) => ctx.info(w) });
    } catch (err) {
      if (err instanceof ModelfileError) throw new UserError(`${file}: ${err.message}`);
      throw err;
    }
    const dir = dirname(resolve(file));
    const client = await connect(ctx, { start: true });
    const body: Record<string, unknown> = { model: name };
    const from = expandPath(req.from, dir);
    const stat = await Deno.stat(from).catch(() => undefined);
    if (stat?.isDirectory) {
      throw new UserError(
        `FROM ${req.from} is a folder: llama-mgr create takes a model name or a GGUF file`,
        {
          hint: "convert a safetensors folder first: llama-mgr convert DIR",
        },
      );
    }
    const upload = async (path: string) => {
      const digest = await fileDigest(path);
      ctx.info(`copying file ${digest}`);
      await client.uploadBlob(digest, path);
      return digest;
    };
    if (stat) body.files = { [from.split("/").pop()!]: await upload(from) };
    else body.from = req.from;
    if (req.adapters.length) {
      const a = expandPath(req.adapters[0], dir);
      if (!(await Deno.stat(a).catch(() => undefined))) {
        throw new UserError(`ADAPTER ${req.adapters[0]} not found`);
      }
      body.adapters = { [a.split("/").pop()!]: await upload(a) };
    }
    for (const k of ["template", "system", "license", "parameters", "messages"] as const) {
      if (req[k] !== undefined) body[k] = req[k];
    }
    const q = str(args, "quantize");
    if (q) body.quantize = q;
    // Progress of a step (a quantization) is shown a line per 10%.
    let last = "";
    for await (
      const line of client.lines<{ status?: string; total?: number; completed?: number }>(
        "/api/create",
        body,
      )
    ) {
      if (line.status === "success") break;
      const decile = line.total ? Math.floor(((line.completed ?? 0) / line.total) * 10) : undefined;
      const shown = `${line.status ?? ""}${decile !== undefined ? ` ${decile * 10}%` : ""}`;
      if (shown !== last) ctx.info(shown);
      last = shown;
    }
    ctx.print("success");
    return 0;
  },
};
