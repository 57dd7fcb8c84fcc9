/**
 * Everything about model names: the name a GGUF file gets from its metadata (`name:tag`), names and blob
 * digests as Ollama validates them, the one normaliser every lookup uses, and the closest names for a miss.
 *
 * Ollama's rules: a name is `[host/][namespace/]model[:tag]`; every
 * part starts with a letter, digit or `_` and goes on with letters, digits, `_`, `-`, `.` (no `.` in the
 * namespace, `:` only in the host for a port); parts are 1 to 80 characters (host 350). A name that passes
 * cannot hold `..`, a leading `/` or any other way out of the model stores: the daemon looks names up in its
 * catalogue and never turns request text into a path.
 *
 * @module
 */
import type { ModelFacts } from "../gguf/facts.ts";

/**
 * A name split into its parts (missing parts are empty).
 *
 * @example
 * ```ts
 * const n: ModelName | undefined = parseModelName("hf.co/unsloth/Qwen3-4B-GGUF:Q4_K_M");
 * // { host: "hf.co", namespace: "unsloth", model: "Qwen3-4B-GGUF", tag: "Q4_K_M" }
 * ```
 */
export interface ModelName {
  /** Registry host (may hold a port). */
  host: string;
  /** Namespace (user or organisation). */
  namespace: string;
  /** Model. */
  model: string;
  /** Tag, `latest` when not given. */
  tag: string;
}

function validPart(kind: "host" | "namespace" | "model" | "tag", s: string): boolean {
  const max = kind === "host" ? 350 : 80;
  if (s.length < 1 || s.length > max) return false;
  if (!/^[A-Za-z0-9_]/.test(s)) return false;
  for (let i = 1; i < s.length; i++) {
    const c = s[i];
    if (/[A-Za-z0-9_-]/.test(c)) continue;
    if (c === "." && kind !== "namespace") continue;
    if (c === ":" && kind === "host") continue;
    return false;
  }
  return true;
}

/**
 * Splits and validates a model name; returns undefined when it is not a valid Ollama name.
 *
 * @example
 * ```ts
 * parseModelName("qwen3:4b"); // { host: "", namespace: "", model: "qwen3", tag: "4b" }
 * parseModelName("../../etc/passwd"); // undefined
 * ```
 */
export function parseModelName(name: string): ModelName | undefined {
  let s = name;
  if (s.includes("://")) s = s.slice(s.indexOf("://") + 3);
  let tag = "latest";
  if (s.lastIndexOf(":") > s.lastIndexOf("/")) {
    tag = s.slice(s.lastIndexOf(":") + 1);
    s = s.slice(0, s.lastIndexOf(":"));
    if (!validPart("tag", tag)) return undefined;
  }
  const parts = s.split("/");
  if (parts.length > 3) return undefined;
  const [host, namespace, model] = parts.length === 3
    ? parts
    : parts.length === 2
    ? ["", parts[0], parts[1]]
    : ["", "", parts[0]];
  if (!validPart("model", model)) return undefined;
  if (parts.length >= 2 && !validPart("namespace", namespace)) return undefined;
  if (parts.length === 3 && !validPart("host", host)) return undefined;
  return { host, namespace, model, tag };
}

/**
 * True when `name` is a valid Ollama model name.
 *
 * @example
 * ```ts
 * isValidModelName("qwen3:4b"); // true
 * isValidModelName("../etc/passwd"); // false
 * ```
 */
export function isValidModelName(name: string): boolean {
  return parseModelName(name) !== undefined;
}

/**
 * The lookup key of a name: lower-cased, with `:latest` added when there is no tag, and Ollama's default
 * host and namespace (`registry.ollama.ai/library/`) removed.
 *
 * @example
 * ```ts
 * normalizeName("Llama3"); // "llama3:latest"
 * normalizeName("registry.ollama.ai/library/llama3:8b"); // "llama3:8b"
 * ```
 */
export function normalizeName(name: string): string {
  let s = name.toLowerCase();
  s = s.replace(/^https?:\/\//, "");
  s = s.replace(/^registry\.ollama\.ai\//, "");
  s = s.replace(/^library\//, "");
  if (!(s.lastIndexOf(":") > s.lastIndexOf("/"))) s += ":latest";
  return s;
}

/** A blob digest as Ollama accepts it: `sha256:` or `sha256-` and 64 hex digits, nothing else. */
export const DIGEST_RE: RegExp = /^sha256[:-][0-9a-fA-F]{64}$/;

/**
 * Validates a digest and returns its canonical file name (`sha256-<hex>`, lower case), or undefined.
 *
 * @example
 * ```ts
 * digestFileName("sha256:" + "a".repeat(64)); // "sha256-aaaa..."
 * digestFileName("sha256:../../x"); // undefined
 * ```
 */
export function digestFileName(digest: string): string | undefined {
  if (!DIGEST_RE.test(digest)) return undefined;
  return `sha256-${digest.slice(7).toLowerCase()}`;
}

function clean(s: string): string {
  return s.toLowerCase().replace(/[^a-z0-9._-]+/g, "-").replace(/-+/g, "-").replace(/^[-.]+|[-.]+$/g, "");
}

const QUANT_IN_NAME = /[-_.](i?q\d[a-z0-9_]*|f16|f32|bf16)$/i;
const SPLIT_IN_NAME = /-\d{5}-of-\d{5}$/;
const FINETUNE_TAG = /^(instruct|chat|it|base|coder|code|thinking|reasoning|math|vl|vision)([-.]|$)/;

/**
 * The name a model gets: `basename:size[-finetune]-quant`, e.g. `qwen2.5-coder:7b-instruct-q4_k_m`, from
 * `general.basename` (else `general.name`, else the file name), `general.size_label` and the file type.
 *
 * @example
 * ```ts ignore
 * modelName(facts, "/models/Qwen3-4B-Q4_K_M.gguf"); // "qwen3:4b-q4_k_m"
 * ```
 */
export function modelName(facts: ModelFacts, path: string): string {
  const file = path.split("/").pop()!.replace(/\.gguf$/i, "").replace(SPLIT_IN_NAME, "");
  const base = clean(facts.basename ?? "") ||
    clean((facts.name ?? "").replace(/\s+\d+(\.\d+)?[bm]\b.*$/i, "")) ||
    clean(file.replace(QUANT_IN_NAME, ""));
  const parts: string[] = [];
  if (facts.sizeLabel) parts.push(clean(facts.sizeLabel));
  // The fine-tune as Ollama's tags carry it (`3b-instruct`, `4b-it`, `4b-thinking-2507`); free text such as a
  // training run's name (`8k-lc100k-mix1-ep2`) is left out, and so is one the base name already says.
  const ft = facts.finetune ? clean(facts.finetune) : "";
  if (FINETUNE_TAG.test(ft) && ft.length <= 24 && !base.includes(ft)) parts.push(ft);
  parts.push(clean(facts.fileType));
  return `${base || "model"}:${parts.filter(Boolean).join("-")}`;
}

/** Levenshtein distance. */
export function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0];
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j];
      prev[j] = Math.min(prev[j] + 1, prev[j - 1] + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = tmp;
    }
  }
  return prev[b.length];
}

/**
 * The names closest to `ref` (substring matches first, then by edit distance).
 *
 * @example
 * ```ts
 * closestNames("qwen3:4", ["qwen3:4b", "qwen3:8b", "llama3:8b"]); // ["qwen3:4b", "qwen3:8b"]
 * ```
 */
export function closestNames(ref: string, names: string[], n = 3): string[] {
  const r = ref.toLowerCase();
  const scored = names.map((name) => {
    const base = name.split(":")[0];
    const d = name.includes(r) || r.includes(base)
      ? 0
      : Math.min(editDistance(r, name), editDistance(r.split(":")[0], base));
    return { name, d };
  });
  return scored.filter((s) => s.d <= Math.max(3, Math.floor(r.length / 2))).sort((a, b) =>
    a.d - b.d || a.name.localeCompare(b.name)
  )
    .slice(0, n).map((s) => s.name);
}
