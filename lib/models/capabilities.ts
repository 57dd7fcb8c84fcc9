/**
 * What a model can do, as model facts: the header's capabilities, `vision` when a projector is paired, and
 * `completion` when the header says nothing (a plain text model).
 *
 * @module
 */
import type { Capability } from "../gguf/facts.ts";
import type { ModelEntry } from "./index.ts";

/**
 * A model's capabilities in Ollama's words: completion, embedding, vision, tools, thinking, insert.
 *
 * @example
 * ```ts ignore
 * modelCapabilities(entry); // ["completion", "tools"]
 * ```
 */
export function modelCapabilities(entry: Pick<ModelEntry, "facts" | "mmproj">): Capability[] {
  const caps = new Set<Capability>(entry.facts.capabilities ?? []);
  if (entry.mmproj) caps.add("vision");
  if (caps.size === 0) caps.add("completion");
  return [...caps];
}

/**
 * True when the model only makes embeddings (no text generation).
 *
 * @example
 * ```ts ignore
 * if (embeddingOnly(entry)) args.push("--embeddings");
 * ```
 */
export function embeddingOnly(entry: Pick<ModelEntry, "facts" | "mmproj">): boolean {
  const caps = modelCapabilities(entry);
  return caps.includes("embedding") && !caps.includes("completion");
}
