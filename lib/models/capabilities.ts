/**
 * What a model can do, as model facts: the header's capabilities, `vision` when a projector is paired, and
 * `completion` when the header says nothing (a plain text model); and as served, when a preset or
 * `/api/create` gives it another chat template.
 *
 * @module
 */
import type { Capability } from "../gguf/facts.ts";
import type { Preset } from "../config/schema.ts";
import type { CatalogModel } from "./catalog.ts";
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

/**
 * Whether a chat template can call tools, as Ollama decides (it mentions `tools` or `tool_call`).
 *
 * @example
 * ```ts
 * templateHasTools("{% if tools %}...{% endif %}"); // true
 * ```
 */
export function templateHasTools(template: string): boolean {
  return template.includes("tools") || template.includes("tool_call");
}

/**
 * Whether an Ollama Go template takes tools: it uses `.Tools` (Ollama's own test, server/images.go).
 *
 * @example
 * ```ts
 * goTemplateHasTools("{{ if .Tools }}{{ json .Tools }}{{ end }}{{ .Prompt }}"); // true
 * ```
 */
export function goTemplateHasTools(template: string): boolean {
  return /\.Tools\b/.test(template);
}

/**
 * The chat template llama-server runs a model with when it is not the model file's own: a preset's
 * `--chat-template-file` (read) or inline `--chat-template` Jinja, else the Jinja file `/api/create` made from a
 * TEMPLATE. Undefined when the file's own is used, or the override is a built-in template name or unreadable.
 */
async function templateOverride(
  model: Pick<CatalogModel, "settings">,
  preset: Pick<Preset, "args"> | undefined,
): Promise<string | undefined> {
  const args = preset?.args ?? [];
  const value = (flag: string): string | undefined => {
    for (let i = 0; i < args.length; i++) {
      if (args[i] === flag) return args[i + 1];
      if (args[i].startsWith(`${flag}=`)) return args[i].slice(flag.length + 1);
    }
    return undefined;
  };
  const file = value("--chat-template-file");
  if (file !== undefined) return await Deno.readTextFile(file).catch(() => undefined);
  const inline = value("--chat-template");
  if (inline !== undefined) return inline.includes("{") ? inline : undefined;
  const made = model.settings?.chatTemplateFile;
  return made ? await Deno.readTextFile(made).catch(() => undefined) : undefined;
}

/**
 * What a model can do as the daemon serves it: {@linkcode modelCapabilities}, with `tools` decided by the chat
 * template llama-server is given when a preset or `/api/create` replaces the model file's own.
 *
 * @example
 * ```ts ignore
 * const caps = await servedCapabilities(model, presetForModel(config, model)); // ["completion", "tools"]
 * ```
 */
export async function servedCapabilities(
  model: Pick<CatalogModel, "entry" | "settings">,
  preset?: Pick<Preset, "args">,
): Promise<Capability[]> {
  const caps = modelCapabilities(model.entry);
  if (!caps.includes("completion")) return caps;
  const template = await templateOverride(model, preset);
  if (template === undefined) return caps;
  const rest = caps.filter((c) => c !== "tools");
  // A template /api/create made from a Go template (a preset's own flag wins over it): as Ollama, tools only
  // when the Go template uses `.Tools`. Its Jinja translation always has a place for tool calls.
  const go = model.settings?.chatTemplateFile && !presetTemplates(preset)
    ? model.settings.template
    : undefined;
  const tools = go !== undefined ? goTemplateHasTools(go) : templateHasTools(template);
  return tools ? [...rest, "tools"] : rest;
}

function presetTemplates(preset: Pick<Preset, "args"> | undefined): boolean {
  return (preset?.args ?? []).some((a) => /^--chat-template(-file)?(=|$)/.test(a));
}
