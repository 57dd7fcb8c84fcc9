/**
 * Ollama-style names for GGUF models (`name:tag`), derived from the metadata, and the closest-name search
 * for a miss.
 *
 * @module
 */
import type { ModelFacts } from "./facts.ts";

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

/** Lower-cases a reference and adds `:latest` when it has no tag (as Ollama does). */
export function normalizeRef(ref: string): string {
  const r = ref.trim().toLowerCase();
  const last = r.split("/").pop()!;
  return last.includes(":") ? r : `${r}:latest`;
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

/** The names closest to `ref` (substring matches first, then by edit distance). */
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
