/**
 * How an indexed GGUF model looks in Ollama's responses: `details` (family, parameter size, quantization),
 * a digest, and `model_info` keys in GGUF's own naming.
 *
 * @module
 */
import type { CatalogModel } from "../../models/catalog.ts";
import type { DaemonContext } from "../context.ts";
import type { ModelDetails } from "../types.ts";
import { FILE_TYPES } from "../../gguf/types.ts";

/** `7615616512` -> `"7.6B"`, `134515008` -> `"134.52M"`, as Ollama formats parameter counts. */
export function formatParameterCount(n: number | undefined): string {
  if (!n || !Number.isFinite(n)) return "";
  const units: [number, string][] = [[1e12, "T"], [1e9, "B"], [1e6, "M"], [1e3, "K"]];
  for (const [v, u] of units) {
    if (n >= v) {
      const x = n / v;
      const s = x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2);
      return `${Number(s)}${u}`;
    }
  }
  return String(n);
}

/** The quantization name of a model, e.g. `Q4_K_M`. */
export function quantizationLevel(fileType: number | string | undefined): string {
  if (typeof fileType === "string") return fileType.toUpperCase();
  if (typeof fileType === "number") return FILE_TYPES[fileType] ?? `type ${fileType}`;
  return "";
}

/** `details` of a model. */
export function modelDetails(m: CatalogModel): ModelDetails {
  const f = m.entry.facts;
  const family = String(f.architecture ?? "");
  return {
    parent_model: "",
    format: "gguf",
    family,
    families: family ? [family] : null,
    parameter_size: formatParameterCount(Number(f.parameterCount ?? 0)),
    quantization_level: quantizationLevel(f.fileType),
  };
}

/**
 * A model's digest as Ollama lists it: the sha256 of its content, in hex. Empty while it is not known yet (a
 * file found on disk is hashed once in the background, lib/models/digests.ts): never made up from the path.
 */
export async function modelDigest(ctx: DaemonContext, m: CatalogModel): Promise<string> {
  const digest = await ctx.digests?.get(m.entry);
  return digest ? digest.slice("sha256:".length) : "";
}

/** `model_info` in GGUF key names, from the facts the index keeps. */
export function modelInfo(m: CatalogModel): Record<string, unknown> {
  const f = m.entry.facts;
  const arch = String(f.architecture ?? "unknown");
  const info: Record<string, unknown> = {
    "general.architecture": arch,
  };
  const put = (k: string, v: unknown) => {
    if (v !== undefined && v !== null && v !== "") info[k] = v;
  };
  put("general.parameter_count", f.parameterCount);
  put("general.file_type", f.fileType);
  put(`${arch}.context_length`, f.contextLength);
  put(`${arch}.embedding_length`, f.embeddingLength);
  put(`${arch}.block_count`, f.blockCount);
  put(`${arch}.attention.head_count`, f.headCount);
  put(`${arch}.attention.head_count_kv`, f.headCountKv);
  return info;
}
