/**
 * `llama-mgr models`: every GGUF model on the machine, named, described and sized.
 *
 * @module
 */
import { type Command, type Context, table } from "./command.ts";
import { int, type ParsedArgs, str } from "./args.ts";
import {
  CACHE_TYPE_BYTES,
  estimateMemory,
  ggmlTypeName,
  readGgufHeader,
  tensorBytes,
} from "../lib/gguf/mod.ts";
import { type ModelEntry, resolveModel, scanModels } from "../lib/models/mod.ts";
import { resolve } from "node:path";
import { expandHome, formatBytes } from "../lib/util/fs.ts";
import { UserError } from "../lib/util/errors.ts";
import { setConfigValue } from "../lib/config/edit.ts";

/** `1.2B`, `135M`. */
export function formatParams(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(n >= 1e10 ? 0 : 1)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(0)}M`;
  return `${(n / 1e3).toFixed(0)}K`;
}

function listRows(models: ModelEntry[]): string[][] {
  return models.map((m) => [
    m.name,
    m.facts.architecture,
    formatParams(m.facts.parameterCount),
    m.facts.fileType,
    formatBytes(m.sizeBytes),
    String(m.facts.contextLength || "-"),
    m.source + (m.mmproj ? "+mmproj" : ""),
  ]);
}

async function show(ctx: Context, args: ParsedArgs): Promise<void> {
  const ref = args.positionals[1];
  if (!ref) throw new UserError("models show needs a model", { hint: "llama-mgr models show qwen3:4b" });
  const config = await ctx.config();
  const m = await resolveModel(ctx.paths, config, ref);
  const ctxLen = int(args, "ctx", "models show") ?? Math.min(m.facts.contextLength || 4096, 4096);
  const cacheType = str(args, "cache-type") ?? "f16";
  if (!(cacheType in CACHE_TYPE_BYTES)) {
    throw new UserError(`unknown --cache-type '${cacheType}'`, {
      hint: `use ${Object.keys(CACHE_TYPE_BYTES).join(", ")}`,
    });
  }
  const mmprojBytes = m.mmproj ? (await Deno.stat(m.mmproj).catch(() => undefined))?.size ?? 0 : 0;
  const est = estimateMemory(m.facts, { ctx: ctxLen, cacheType, extraBytes: mmprojBytes });
  // Every part of a split model holds some of the tensors.
  const headers = args.flags.tensors === true
    ? await Promise.all(m.files.map((f) => readGgufHeader(f, { skipArraysOver: 0 })))
    : undefined;
  const tensors = headers?.flatMap((h) => h.tensors).map((t) => ({
    name: t.name,
    type: ggmlTypeName(t.type),
    dims: t.dims,
    bytes: tensorBytes(t.dims, t.type),
  }));
  if (ctx.json) {
    ctx.print(JSON.stringify({ ...m, memory: { ctx: ctxLen, cacheType, ...est }, tensors }, null, 2));
    return;
  }
  const f = m.facts;
  const rows: [string, string | undefined][] = [
    ["name", m.name],
    ["aliases", m.aliases.join(", ") || undefined],
    ["path", m.files.length > 1 ? `${m.path} (+${m.files.length - 1} parts)` : m.path],
    ["mmproj", m.mmproj],
    ["source", m.source],
    ["arch", f.architecture],
    ["params", `${formatParams(f.parameterCount)} (${f.parameterCount.toLocaleString("en")})`],
    ["quant", `${f.fileType}: ${f.quantMix.map((q) => `${q.type} ${q.tensors}`).join(", ")}`],
    ["size", formatBytes(m.sizeBytes)],
    ["context", String(f.contextLength)],
    ["embedding", String(f.embeddingLength)],
    ["layers", String(f.blockCount)],
    ["heads", `${f.headCount} (kv ${f.headCountKv}), head dims k ${f.keyLength} v ${f.valueLength}`],
    [
      "window",
      f.slidingWindow ? `${f.slidingWindow} on ${f.slidingLayers?.filter(Boolean).length} layers` : undefined,
    ],
    ["experts", f.expertCount ? `${f.expertUsedCount ?? "?"} of ${f.expertCount}` : undefined],
    ["tokenizer", `${f.tokenizer ?? "?"}, ${f.vocabSize} tokens`],
    ["template", f.chatTemplate ? `${f.chatTemplate.length} characters` : undefined],
    ["caps", [...new Set([...f.capabilities, ...(m.mmproj ? ["vision"] : [])])].join(", ")],
    [
      "memory",
      `${formatBytes(est.totalBytes)} at ctx ${ctxLen} (${cacheType} cache): weights ${
        formatBytes(est.weightsBytes)
      }` +
      ` + KV ${formatBytes(est.kvBytes)}` +
      (est.recurrentBytes ? ` + recurrent state ${formatBytes(est.recurrentBytes)}` : "") +
      ` + compute ${formatBytes(est.computeBytes)}`,
    ],
  ];
  for (const [k, v] of rows) if (v !== undefined) ctx.print(`${k.padEnd(10)} ${v}`);
  if (tensors) {
    ctx.print("");
    ctx.print(
      table(
        ["TENSOR", "TYPE", "SHAPE", "BYTES"],
        tensors.map((t) => [t.name, t.type, t.dims.join("x"), formatBytes(t.bytes)]),
      ),
    );
  }
}

async function alias(ctx: Context, args: ParsedArgs): Promise<void> {
  const [, name, target] = args.positionals;
  if (!name || !target) {
    throw new UserError("models alias needs a name and a model", {
      hint: "llama-mgr models alias coder qwen2.5-coder:7b-q4_k_m",
    });
  }
  if (!/^[a-z0-9_][a-z0-9_.:/-]*$/i.test(name)) {
    throw new UserError(`invalid alias '${name}'`, { hint: "letters, digits, '.', '_', '-', ':'" });
  }
  const config = await ctx.config();
  const m = await resolveModel(ctx.paths, config, target);
  await setConfigValue(ctx.paths.configFile, ["models", "aliases", name], m.name);
  ctx.print(`alias '${name}' -> ${m.name} (in ${ctx.paths.configFile})`);
}

/** Adds folders to `models.dirs` in the config file (comments and layout kept); returns those it added. */
async function rememberDirs(ctx: Context, dirs: string[]): Promise<string[]> {
  const config = await ctx.config();
  const known = new Set(config.models.dirs.map((d) => resolve(expandHome(d))));
  const fresh = [...new Set(dirs.map((d) => resolve(expandHome(d))))].filter((d) => !known.has(d));
  if (!fresh.length) return [];
  await setConfigValue(ctx.paths.configFile, ["models", "dirs"], [...config.models.dirs, ...fresh]);
  return fresh;
}

/** The `models` command. */
export const modelsCommand: Command = {
  name: "models",
  summary: "list, scan, describe and alias the GGUF models on this machine",
  usage: [
    "models [--json]",
    "models scan [--dir DIR]...",
    "models show MODEL [--json] [--tensors] [--ctx N --cache-type f16|q8_0|q4_0]",
    "models alias NAME MODEL",
  ],
  details: [
    "Sources: the models folder in the data dir, models.dirs from the config, the Hugging Face cache",
    "($HF_HOME/hub), Ollama's store ($OLLAMA_MODELS), LM Studio (~/.lmstudio/models) and llama.cpp's cache",
    "($LLAMA_CACHE). MODEL is a name, name:tag, alias or path. The index is cached in <data>/index.json.",
  ].join("\n"),
  examples: [
    "llama-mgr models",
    "llama-mgr models scan --dir ~/models",
    "llama-mgr models show qwen3:4b-q4_k_m --ctx 32768 --cache-type q8_0",
    "llama-mgr models alias coder qwen2.5-coder:7b-q4_k_m",
  ],
  flags: {
    dir: {
      type: "string",
      multiple: true,
      value: "DIR",
      description: "scan: this folder (repeatable); it is added to models.dirs",
    },
    tensors: { type: "boolean", description: "show: list every tensor" },
    ctx: { type: "string", value: "N", description: "show: context for the memory estimate" },
    "cache-type": { type: "string", value: "TYPE", description: "show: KV cache type (f16, q8_0, q4_0)" },
  },
  async run(ctx, args) {
    const sub = args.positionals[0];
    const config = await ctx.config();
    if (sub === "show") return void await show(ctx, args);
    if (sub === "alias") return void await alias(ctx, args);
    if (sub === "scan") {
      const dirs = args.flags.dir as string[] | undefined;
      for (const d of dirs ?? []) {
        const info = await Deno.stat(expandHome(d)).catch(() => undefined);
        if (!info?.isDirectory) {
          throw new UserError(`'${d}' is not a folder`, {
            hint: "models scan --dir takes a folder of GGUF files",
          });
        }
      }
      const t0 = performance.now();
      const r = await scanModels(ctx.paths, config, dirs?.length ? { onlyDirs: dirs } : {});
      const ms = performance.now() - t0;
      // A folder scanned once stays known: `models`, the server and the daemon find its models from now on.
      const remembered = dirs?.length ? await rememberDirs(ctx, dirs) : [];
      if (ctx.json) {
        return void ctx.print(
          JSON.stringify({ ...r, models: r.models.map((m) => m.name), ms, remembered }, null, 2),
        );
      }
      ctx.print(
        `${r.models.length} models; ${r.added.length} new, ${r.changed.length} changed, ${r.removed.length} removed, ` +
          `${r.unreadable.length} unreadable (${ms.toFixed(0)} ms)`,
      );
      for (const p of r.added) ctx.print(`  new        ${p}`);
      for (const p of r.changed) ctx.print(`  changed    ${p}`);
      for (const p of r.removed) ctx.print(`  removed    ${p}`);
      for (const u of r.unreadable) ctx.print(`  unreadable ${u.error}`);
      for (const d of remembered) ctx.print(`added ${d} to models.dirs in ${ctx.paths.configFile}`);
      return;
    }
    if (sub !== undefined && sub !== "list" && sub !== "ls") {
      throw new UserError(`models: unknown sub-command '${sub}'`, { hint: "use list, scan, show or alias" });
    }
    const r = await scanModels(ctx.paths, config);
    if (ctx.json) return void ctx.print(JSON.stringify(r.models, null, 2));
    if (!r.models.length) {
      ctx.print(
        "no models found; add folders under models.dirs in the config or run `llama-mgr models scan --dir DIR`",
      );
    } else ctx.print(table(["NAME", "ARCH", "PARAMS", "QUANT", "SIZE", "CTX", "SOURCE"], listRows(r.models)));
    if (r.unreadable.length) {
      ctx.warn(`${r.unreadable.length} unreadable file(s): run \`llama-mgr models scan\` for details`);
    }
  },
};
