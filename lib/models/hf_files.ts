/**
 * Which files of a Hugging Face GGUF repo make a model, read as llama.cpp's `-hf repo[:quant]` reads them
 * (`common/download.cpp`): a file's quant tag is the last `-`/`.`-separated word of its name before the split
 * suffix (`Qwen3-4B-Q4_K_M-00001-of-00002.gguf` is `Q4_K_M`); a tag picks the first model file whose path
 * holds `TAG-` or `TAG.` (any case); without a tag `Q4_K_M` is tried, then `Q8_0`, then the first model file; a
 * split model comes with all its parts; the paired `mmproj` is the one in the model's folder (or the nearest
 * folder above it) whose quant is closest to the model's. The pull and the index both use it, so the name a
 * pull prints is the name the index finds.
 *
 * @example
 * ```ts
 * import { pickModelFile } from "./hf_files.ts";
 * const files = [{ path: "m-Q8_0.gguf" }, { path: "m-Q4_K_M.gguf" }];
 * pickModelFile(files)?.path; // "m-Q4_K_M.gguf"
 * ```
 *
 * @module
 */

/** What a GGUF file's name says (llama.cpp's `get_gguf_split_info`). */
export interface GgufNameInfo {
  /** The path without `.gguf` and without the split suffix. */
  prefix: string;
  /** The quant tag in upper case (`Q4_K_M`, `F16`, `UD-Q4_K_XL` gives `Q4_K_XL`), if the name has one. */
  tag?: string;
  /** The part number (1 for a file that is not split). */
  index: number;
  /** The part count (1 for a file that is not split). */
  count: number;
}

/** The default quants, in order, when a reference names none (llama.cpp's `find_best_model`). */
export const DEFAULT_QUANTS: readonly string[] = ["Q4_K_M", "Q8_0"];

const SPLIT_RE = /^(.+)-(\d{5})-of-(\d{5})$/i;
const TAG_RE = /[-.]([A-Z0-9_]+)$/i;
// Files beside a model that are not models: projectors, importance matrices, speculative-decoding heads.
const NOT_MODEL = ["mmproj", "imatrix", "mtp-", "eagle3-", "dflash-", "dspark-"];

/**
 * Splits a GGUF path into prefix, quant tag and part; undefined for a path that is not `.gguf`.
 *
 * @example
 * ```ts
 * ggufNameInfo("Q4/Qwen3-4B-Q4_K_M-00001-of-00002.gguf");
 * // { prefix: "Q4/Qwen3-4B-Q4_K_M", tag: "Q4_K_M", index: 1, count: 2 }
 * ```
 */
export function ggufNameInfo(path: string): GgufNameInfo | undefined {
  if (!path.toLowerCase().endsWith(".gguf")) return undefined;
  let prefix = path.slice(0, -".gguf".length);
  let index = 1;
  let count = 1;
  const split = prefix.match(SPLIT_RE);
  if (split) {
    prefix = split[1];
    index = Number(split[2]);
    count = Number(split[3]);
  }
  const tag = prefix.match(TAG_RE)?.[1].toUpperCase();
  return tag ? { prefix, tag, index, count } : { prefix, index, count };
}

/**
 * The quant tag of a GGUF file's name, in upper case.
 *
 * @example
 * ```ts
 * quantTag("bartowski/SmolLM2-135M-Instruct-q8_0.gguf"); // "Q8_0"
 * ```
 */
export function quantTag(path: string): string | undefined {
  return ggufNameInfo(path)?.tag;
}

/**
 * The bits a quant tag says (`Q4_K_M` 4, `F16` 16, `IQ2_XXS` 2), 0 when it says none: how llama.cpp measures
 * how close a projector is to its model.
 *
 * @example
 * ```ts
 * quantBits("mmproj-model-f16.gguf"); // 16
 * ```
 */
export function quantBits(path: string): number {
  const digits = quantTag(path)?.match(/\d+/);
  return digits ? Number(digits[0]) : 0;
}

/**
 * True for a `.gguf` file that is a model, not a projector, importance matrix or draft head.
 *
 * @example
 * ```ts
 * isModelFile("mmproj-F16.gguf"); // false
 * ```
 */
export function isModelFile(path: string): boolean {
  if (!path.toLowerCase().endsWith(".gguf")) return false;
  const name = path.slice(path.lastIndexOf("/") + 1).toLowerCase();
  return !NOT_MODEL.some((word) => name.includes(word));
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

function isFirstPart(path: string): boolean {
  const info = ggufNameInfo(path);
  return !info || info.count <= 1 || info.index === 1;
}

/**
 * The model file a tag picks (its first part, for a split model), or undefined. Without a tag: `Q4_K_M`, else
 * `Q8_0`, else the first model file, in the order given (the Hub's listing order, as llama.cpp keeps it).
 *
 * @example
 * ```ts
 * pickModelFile([{ path: "m-Q2_K.gguf" }, { path: "m-Q8_0.gguf" }])?.path; // "m-Q8_0.gguf"
 * pickModelFile([{ path: "m-Q2_K.gguf" }], "q2_k")?.path; // "m-Q2_K.gguf"
 * ```
 */
export function pickModelFile<T extends { path: string }>(files: readonly T[], tag?: string): T | undefined {
  const models = files.filter((f) => isModelFile(f.path) && isFirstPart(f.path));
  for (const t of tag ? [tag] : DEFAULT_QUANTS) {
    const pattern = new RegExp(`${escapeRegExp(t)}[.-]`, "i");
    const hit = models.find((f) => pattern.test(f.path));
    if (hit) return hit;
  }
  return tag ? undefined : models[0];
}

/**
 * Every part of the model `primary` starts (itself alone when it is not split), in part order.
 *
 * @example
 * ```ts
 * splitParts([{ path: "m-00002-of-00002.gguf" }, { path: "m-00001-of-00002.gguf" }], { path: "m-00001-of-00002.gguf" });
 * // [{ path: "m-00001-of-00002.gguf" }, { path: "m-00002-of-00002.gguf" }]
 * ```
 */
export function splitParts<T extends { path: string }>(files: readonly T[], primary: T): T[] {
  const info = ggufNameInfo(primary.path);
  if (!info || info.count <= 1) return [primary];
  return files
    .filter((f) => {
      const i = ggufNameInfo(f.path);
      return i !== undefined && i.count === info.count && i.prefix === info.prefix;
    })
    .sort((a, b) => ggufNameInfo(a.path)!.index - ggufNameInfo(b.path)!.index);
}

/**
 * The projector llama.cpp pairs with a model file (`find_best_mmproj`): a `.gguf` whose path holds `mmproj`,
 * in the model's folder or one above it (the deepest wins), then the one whose quant bits are closest to the
 * model's (`Q8_0` beside a `Q4_K_M` model rather than `F16`).
 *
 * @example
 * ```ts
 * pickMmproj([{ path: "mmproj-F16.gguf" }, { path: "mmproj-Q8_0.gguf" }], "m-Q4_K_M.gguf")?.path; // "mmproj-Q8_0.gguf"
 * ```
 */
export function pickMmproj<T extends { path: string }>(
  files: readonly T[],
  modelPath: string,
): T | undefined {
  const modelBits = quantBits(modelPath);
  const modelDirs = modelPath.split("/").slice(0, -1);
  let best: T | undefined;
  let bestDepth = 0;
  let bestDiff = 0;
  for (const f of files) {
    if (!f.path.toLowerCase().endsWith(".gguf") || !/mmproj/i.test(f.path)) continue;
    const dirs = f.path.split("/").slice(0, -1);
    let depth = 0;
    while (depth < dirs.length && depth < modelDirs.length && dirs[depth] === modelDirs[depth]) depth++;
    if (depth !== dirs.length) continue; // not the model's folder nor one above it
    const diff = Math.abs(quantBits(f.path) - modelBits);
    if (!best || depth > bestDepth || (depth === bestDepth && diff < bestDiff)) {
      best = f;
      bestDepth = depth;
      bestDiff = diff;
    }
  }
  return best;
}

/**
 * The quant tags a repo's model files carry, each once, in listing order: what a tag that matched nothing is
 * told to choose from.
 *
 * @example
 * ```ts
 * repoQuants([{ path: "m-Q4_K_M.gguf" }, { path: "mmproj-F16.gguf" }, { path: "m-Q8_0.gguf" }]); // ["Q4_K_M", "Q8_0"]
 * ```
 */
export function repoQuants(files: readonly { path: string }[]): string[] {
  const tags = files
    .filter((f) => isModelFile(f.path) && isFirstPart(f.path))
    .map((f) => quantTag(f.path))
    .filter((t): t is string => t !== undefined);
  return [...new Set(tags)];
}
