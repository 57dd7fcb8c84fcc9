/**
 * A model from an Ollama store (the user's, the system service's, or llama-mgr's own pulled store) served with
 * its manifest's layers, as Ollama serves it: the Go template (translated to Jinja for llama-server), the
 * default options (`params`), the system prompt, the seeded messages, the licenses and the LoRA adapters. They
 * become the same {@linkcode ModelSettings} a Modelfile's TEMPLATE, PARAMETER, SYSTEM, MESSAGE, LICENSE and
 * ADAPTER become through `/api/create`, so one code path serves both.
 *
 * A layer that cannot be used never fails a request: a template with a construct that has no translation
 * leaves the GGUF's own chat template in charge, an option Ollama would not accept is left out, an unreadable
 * layer is skipped; each is logged once, saying why.
 *
 * @module
 */
import { join } from "node:path";
import type { ModelSettings } from "../../models/catalog.ts";
import { goTemplateHasTools } from "../../models/capabilities.ts";
import type { ModelEntry } from "../../models/index.ts";
import { exists, writeFileAtomic } from "../../util/fs.ts";
import { checkParameters } from "../options.ts";
import { goTemplateToJinja, TemplateError } from "./template.ts";

/**
 * Writes a Jinja chat template under `dir`, named by its content (so a template written once is reused), and
 * returns the file's path, for llama-server's `--chat-template-file`.
 *
 * @example
 * ```ts ignore
 * const file = await storeChatTemplate(`${dataDir}/daemon/templates`, "{{ messages[0].content }}");
 * ```
 */
export async function storeChatTemplate(dir: string, jinja: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(jinja));
  const hex = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
  const file = join(dir, `${hex.slice(0, 24)}.jinja`);
  if (!(await exists(file))) {
    await writeFileAtomic(file, jinja);
  }
  return file;
}

/**
 * Options for {@linkcode ollamaLayerSettings}.
 *
 * @example
 * ```ts ignore
 * const options: LayerSettingsOptions = { templatesDir: `${dataDir}/daemon/templates`, warn: console.error };
 * ```
 */
export interface LayerSettingsOptions {
  /** Where translated templates are written (shared with `/api/create`'s). */
  templatesDir: string;
  /** Hears why a layer is not used (once per set of layers). */
  warn?: (line: string) => void;
}

/**
 * What a model's own manifest layers make of it, read once per set of layers (blobs are named by their
 * content, so they never change); undefined for a model without layers.
 *
 * @example
 * ```ts ignore
 * const settingsOf = ollamaLayerSettings({ templatesDir, warn: (l) => logger.warn(l) });
 * const catalog = createCatalog({ paths, listModels, ownSettings: settingsOf });
 * ```
 */
export function ollamaLayerSettings(
  options: LayerSettingsOptions,
): (entry: ModelEntry) => Promise<ModelSettings | undefined> {
  const cache = new Map<string, Promise<ModelSettings | undefined>>();
  return (entry) => {
    const layers = entry.ollamaLayers;
    if (!layers || Object.keys(layers).length === 0) return Promise.resolve(undefined);
    const key = JSON.stringify(layers);
    let p = cache.get(key);
    if (!p) {
      p = readLayers(entry, options);
      cache.set(key, p);
    }
    return p;
  };
}

async function readLayers(
  entry: ModelEntry,
  options: LayerSettingsOptions,
): Promise<ModelSettings | undefined> {
  const layers = entry.ollamaLayers!;
  const warn = (what: string) => options.warn?.(`model ${entry.name}: ${what}`);
  const text = async (path: string, what: string): Promise<string | undefined> => {
    try {
      return await Deno.readTextFile(path);
    } catch (err) {
      warn(`its ${what} layer ${path} cannot be read (${(err as Error).message}); serving without it`);
      return undefined;
    }
  };
  const json = async (path: string, what: string): Promise<unknown> => {
    const t = await text(path, what);
    if (t === undefined) return undefined;
    try {
      return JSON.parse(t);
    } catch (err) {
      warn(`its ${what} layer ${path} is not JSON (${(err as Error).message}); serving without it`);
      return undefined;
    }
  };
  const s: ModelSettings = {};
  if (layers.system) {
    const system = await text(layers.system, "system");
    if (system) s.system = system;
  }
  if (layers.params) {
    const raw = await json(layers.params, "params");
    if (raw && typeof raw === "object" && !Array.isArray(raw)) {
      // Checked one by one: an option that Ollama's options do not take is left out, the others still apply.
      const parameters: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(raw)) {
        try {
          Object.assign(parameters, checkParameters({ [k]: v }));
        } catch (err) {
          warn(`its default option ${k}=${JSON.stringify(v)} is left out: ${(err as Error).message}`);
        }
      }
      if (Object.keys(parameters).length) s.parameters = parameters;
    } else if (raw !== undefined) warn(`its params layer is not a JSON object; serving without it`);
  }
  if (layers.messages) {
    const raw = await json(layers.messages, "messages");
    if (Array.isArray(raw)) {
      const messages = raw.filter((m): m is Record<string, unknown> =>
        typeof m === "object" && m !== null && typeof m.role === "string"
      );
      if (messages.length) s.messages = messages;
    } else if (raw !== undefined) warn(`its messages layer is not a JSON list; serving without it`);
  }
  const license: string[] = [];
  for (const path of layers.license ?? []) {
    const l = await text(path, "license");
    if (l !== undefined) license.push(l);
  }
  if (license.length) s.license = license;
  if (layers.template) {
    const template = await text(layers.template, "template");
    if (template !== undefined) {
      s.template = template;
      // When the GGUF's own template can do more, Ollama serves that one (still showing the Go one).
      if (!preferGgufTemplate(entry.facts?.chatTemplate, template)) {
        try {
          s.chatTemplateFile = await storeChatTemplate(options.templatesDir, goTemplateToJinja(template));
        } catch (err) {
          // The model is still served, as Ollama serves a model whose template it cannot use.
          const why = err instanceof TemplateError
            ? err.message
            : `cannot write it: ${(err as Error).message}`;
          warn(`its TEMPLATE is not used, the GGUF's own chat template is (${why})`);
        }
      }
    }
  }
  if (layers.adapters?.length) s.adapters = [...layers.adapters];
  return Object.keys(s).length ? s : undefined;
}

/** What a template can do, as Ollama's server/images.go reads it. */
interface TemplateCaps {
  tools: boolean;
  thinking: boolean;
  insert: boolean;
  /** Tool calls and their results both written back into the prompt. */
  roundTrip: boolean;
}

const count = (c: TemplateCaps) => Number(c.tools) + Number(c.thinking) + Number(c.insert);

/** A GGUF's Jinja chat template (Ollama's chatTemplateCapabilities and chatTemplateHasToolRoundTrip). */
function jinjaCaps(t: string): TemplateCaps {
  const tools = t.includes("tools") || t.includes("tool_call");
  const thinking = (t.includes("<think>") && t.includes("</think>")) ||
    ((t.includes("content.split('</think>')") || t.includes('content.split("</think>")')) &&
      !t.includes("reasoning_content") && !t.includes("<SPECIAL_12>"));
  const results = [
    "tool_response",
    "tool_results",
    "role'] == 'tool'",
    `role'] == "tool"`,
    `role"] == 'tool'`,
    `role"] == "tool"`,
    "message.role == 'tool'",
    `message.role == "tool"`,
    "ipython",
  ];
  const roundTrip = tools && (t.includes("tool_calls") || t.includes("assistant_tool_call")) &&
    results.some((r) => t.includes(r));
  return { tools, thinking, insert: false, roundTrip };
}

/** A Go template (Ollama's goTemplateCapabilities and goTemplateHasToolRoundTrip, by the fields it uses). */
function goCaps(t: string): TemplateCaps {
  const uses = (field: string) => new RegExp(`\\.${field}\\b`).test(t);
  const tools = goTemplateHasTools(t);
  const roundTrip = tools && uses("ToolCalls") &&
    (t.includes(`eq .Role "tool"`) || t.includes("tool_response") || t.includes("TOOL_RESULTS"));
  return { tools, thinking: uses("Thinking"), insert: uses("Suffix"), roundTrip };
}

/**
 * Ollama's choice between a model's Go template and its GGUF's own chat template (shouldPreferChatTemplate): the
 * GGUF's when it can do more, unless only the Go template writes tool results back; with the same tools support,
 * the GGUF's when only it writes tool results back.
 */
function preferGgufTemplate(jinja: string | undefined, go: string): boolean {
  if (!jinja) return false;
  const j = jinjaCaps(jinja);
  const g = goCaps(go);
  if (count(j) > count(g)) return !g.roundTrip || j.roundTrip;
  const same = j.tools === g.tools && j.thinking === g.thinking && j.insert === g.insert;
  if (!same || !j.tools || !g.tools) return false;
  return j.roundTrip && !g.roundTrip;
}
