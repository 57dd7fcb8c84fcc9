/**
 * The model index: every GGUF model on the machine with its name, facts and size, cached in the data dir by
 * path, size and mtime, so a rescan of unchanged files reads no GGUF bytes. Split models are one model,
 * `mmproj` files are paired with their model, one file reached by two paths appears once.
 *
 * @module
 */
import { basename, dirname } from "node:path";
import type { Paths } from "../config/paths.ts";
import type { Config } from "../config/schema.ts";
import { expandHome, writeFileAtomic } from "../util/fs.ts";
import { GgufError, readGgufHeader } from "../gguf/reader.ts";
import { describeModel, type ModelFacts } from "../gguf/facts.ts";
import {
  type Candidate,
  findCandidates,
  type ModelSource,
  type OllamaLayerFiles,
  type SourceOptions,
} from "./sources.ts";
import { modelName } from "./names.ts";
import { pickModelFile, quantTag } from "./hf_files.ts";

/**
 * One model in the index.
 *
 * @example
 * ```ts ignore
 * for (const m of await listModels(paths, config)) {
 *   console.log(m.name, m.source, m.facts.fileType, m.sizeBytes, m.mmproj ? "vision" : "");
 * }
 * ```
 */
export interface ModelEntry {
  /** `name:tag`, lower case, unique. */
  name: string;
  /** Other names that find it: Ollama's name, `hf.co/org/repo:quant`, config aliases. */
  aliases: string[];
  /** The file (first part of a split model). */
  path: string;
  /** All parts. */
  files: string[];
  /** The paired vision projector. */
  mmproj?: string;
  /** Where it was found. */
  source: ModelSource;
  /** For a model from an Ollama manifest: its other layers (template, parameters, system prompt...). */
  ollamaLayers?: OllamaLayerFiles;
  /**
   * Ollama names of the same file (among `aliases`, lower case) whose manifests list other layers: each is a model
   * of its own to the daemon, as in Ollama (`ollama create` with a SYSTEM over the same weights).
   */
  ollamaTagLayers?: Record<string, OllamaLayerFiles>;
  /** Bytes on disk (all parts). */
  sizeBytes: number;
  /** Latest modification time of its parts. */
  mtimeMs: number;
  /** What the header says. */
  facts: ModelFacts;
}

/**
 * What a scan found.
 *
 * @example
 * ```ts ignore
 * const r: ScanResult = await scanModels(paths, config);
 * console.log(`${r.models.length} models, ${r.added.length} new, ${r.filesRead} files read`);
 * for (const u of r.unreadable) console.log(u.path, u.error);
 * ```
 */
export interface ScanResult {
  /** Every model. */
  models: ModelEntry[];
  /** Files read for the first time. */
  added: string[];
  /** Files read again because their size or mtime changed. */
  changed: string[];
  /** Files in the cache that are gone. */
  removed: string[];
  /** Files that are not readable GGUF, with the reason. */
  unreadable: { path: string; error: string }[];
  /** How many files were read (0 on a warm rescan). */
  filesRead: number;
}

interface CacheEntry {
  size: number;
  mtimeMs: number;
  facts?: ModelFacts;
  error?: string;
  /** The error was the file's access, not its content (no permission, I/O): try again at the next scan, since
   * fixing permissions does not change the size or mtime the cache is keyed by. */
  retry?: boolean;
}

interface IndexFile {
  version: number;
  entries: Record<string, CacheEntry>;
  /** Chat templates by hash: models share them, so the file holds each once. */
  templates?: Record<string, string>;
}

const INDEX_VERSION = 7; // bumped whenever describeModel's output changes (new fields, new rules): old caches are rebuilt;
// tests/models_index_test.ts records it with a hash of facts.ts and fails when one changes without the other

type StoredFacts = Omit<ModelFacts, "chatTemplate"> & { chatTemplate?: string; templateId?: string };

function toStored(entries: Record<string, CacheEntry>): IndexFile {
  const templates: Record<string, string> = {};
  const out: Record<string, CacheEntry> = {};
  for (const [k, e] of Object.entries(entries)) {
    if (!e.facts?.chatTemplate) {
      out[k] = e;
      continue;
    }
    const { chatTemplate, ...rest } = e.facts;
    const id = shortHash(chatTemplate) + chatTemplate.length.toString(36);
    templates[id] = chatTemplate;
    out[k] = { ...e, facts: { ...rest, templateId: id } as unknown as ModelFacts };
  }
  return { version: INDEX_VERSION, entries: out, templates };
}

function fromStored(file: IndexFile): Record<string, CacheEntry> {
  const t = file.templates ?? {};
  for (const e of Object.values(file.entries)) {
    const f = e.facts as StoredFacts | undefined;
    if (f?.templateId) {
      f.chatTemplate = t[f.templateId];
      delete f.templateId;
    }
  }
  return file.entries;
}
const SPLIT = /-(\d{5})-of-(\d{5})\.gguf$/i;

async function loadCache(file: string): Promise<IndexFile> {
  try {
    const parsed = JSON.parse(await Deno.readTextFile(file)) as IndexFile;
    if (parsed?.version === INDEX_VERSION && parsed.entries && typeof parsed.entries === "object") {
      // Chat templates are stored once, by id: put them back into the facts.
      return { version: INDEX_VERSION, entries: fromStored(parsed) };
    }
  } catch { /* missing or corrupt: rebuilt */ }
  return { version: INDEX_VERSION, entries: {} };
}

function isProjector(facts: ModelFacts | undefined, path: string): boolean {
  return facts?.type === "mmproj" || facts?.architecture === "clip" || /mmproj/i.test(basename(path));
}

function shortHash(s: string): string {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return (h >>> 0).toString(16).padStart(8, "0").slice(0, 6);
}

/**
 * Options for {@linkcode scanModels}.
 *
 * @example
 * ```ts
 * const options: ScanOptions = { onlyDirs: ["/srv/models"], noSave: true };
 * ```
 */
export interface ScanOptions extends SourceOptions {
  /** Do not write the cache back (a read-only scan). */
  noSave?: boolean;
}

/**
 * Scans every source, reading headers only of new or changed files, and returns the models.
 *
 * @example
 * ```ts ignore
 * const { models, unreadable } = await scanModels(paths, config);
 * ```
 */
export async function scanModels(
  paths: Paths,
  config: Config,
  options: ScanOptions = {},
): Promise<ScanResult> {
  const cache = await loadCache(paths.indexFile);
  const candidates = await findCandidates(paths, config, options);
  const added: string[] = [];
  const changed: string[] = [];
  const unreadable: { path: string; error: string }[] = [];
  const next: Record<string, CacheEntry> = {};
  let filesRead = 0;
  let dirty = false;
  const facts = new Map<string, ModelFacts>();
  for (const c of candidates) {
    const hit = cache.entries[c.realPath];
    let entry: CacheEntry;
    const same = hit && hit.size === c.size && hit.mtimeMs === c.mtimeMs;
    if (same && !hit.retry) {
      entry = hit;
    } else {
      if (!same) (hit ? changed : added).push(c.path);
      filesRead++;
      dirty = true;
      try {
        const header = await readGgufHeader(c.realPath, { skipArraysOver: 256 });
        entry = { size: c.size, mtimeMs: c.mtimeMs, facts: describeModel(header) };
      } catch (err) {
        const msg = err instanceof GgufError ? err.message : `${c.path}: ${(err as Error).message}`;
        const retry = !(err instanceof GgufError) || err.kind === "io";
        entry = { size: c.size, mtimeMs: c.mtimeMs, error: msg, ...(retry ? { retry } : {}) };
      }
      if (same && entry.facts) changed.push(c.path); // unreadable before, readable now
    }
    next[c.realPath] = entry;
    if (entry.error) unreadable.push({ path: c.path, error: entry.error });
    else if (entry.facts) facts.set(c.realPath, entry.facts);
  }
  const removed = options.onlyDirs ? [] : Object.keys(cache.entries).filter((p) => !(p in next));
  if (
    !options.noSave &&
    (dirty || removed.length ||
      Object.keys(next).length !== Object.keys(cache.entries).length)
  ) {
    const merged = options.onlyDirs ? { ...cache.entries, ...next } : next;
    await Deno.mkdir(dirname(paths.indexFile), { recursive: true });
    await writeFileAtomic(paths.indexFile, JSON.stringify(toStored(merged)));
  }
  const models = buildModels(candidates.filter((c) => facts.has(c.realPath)), facts, config, unreadable);
  return { models, added, changed, removed, unreadable, filesRead };
}

/**
 * The facts of a split model: the first part's metadata with the tensors of every part (parameters, bytes and
 * the quant mix add up; the first part alone holds a fraction of the weights).
 */
function mergeParts(first: ModelFacts, rest: ModelFacts[]): ModelFacts {
  const mix = new Map(first.quantMix.map((q) => [q.type, { ...q }]));
  let params = first.parameterCount;
  let bytes = first.tensorBytes;
  for (const f of rest) {
    params += f.parameterCount;
    bytes += f.tensorBytes;
    for (const q of f.quantMix) {
      const e = mix.get(q.type) ?? { type: q.type, tensors: 0, bytes: 0 };
      e.tensors += q.tensors;
      e.bytes += q.bytes;
      mix.set(q.type, e);
    }
  }
  const quantMix = [...mix.values()].sort((a, b) => b.bytes - a.bytes);
  // Without general.file_type the file type is the dominant tensor type: of the whole model, then.
  const derived = first.fileType === (first.quantMix[0]?.type ?? "unknown");
  return {
    ...first,
    parameterCount: params,
    tensorBytes: bytes,
    quantMix,
    fileType: derived ? quantMix[0]?.type ?? first.fileType : first.fileType,
  };
}

/** Plain code-unit order: the same in every locale, and no localeCompare, whose first call sets up ICU's
 * collator (a noticeable part of every fresh `llama-mgr models`). */
function byText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

interface HfModel {
  entry: ModelEntry;
  repo: string;
  /** The path in the repo. */
  path: string;
}

/**
 * Per Hugging Face repo: a quant the file names claim is dropped from the other models' metadata aliases, and
 * the model llama.cpp's `-hf repo` would load from the cache (`Q4_K_M`, else `Q8_0`, else the first) is also
 * `hf.co/org/repo` (`:latest`), the name a pull without a quant prints.
 */
function hfRepoAliases(models: HfModel[]): void {
  const byRepo = new Map<string, HfModel[]>();
  for (const m of models) byRepo.set(m.repo, [...(byRepo.get(m.repo) ?? []), m]);
  for (const [repo, list] of byRepo) {
    const named = new Map<string, ModelEntry>();
    for (const m of list) {
      const tag = quantTag(m.path);
      if (tag) named.set(`hf.co/${repo}:${tag}`.toLowerCase(), m.entry);
    }
    for (const m of list) {
      m.entry.aliases = m.entry.aliases.filter((a) => (named.get(a) ?? m.entry) === m.entry);
    }
    const best = pickModelFile([...list].sort((a, b) => byText(a.path, b.path)));
    best?.entry.aliases.push(`hf.co/${repo}:latest`.toLowerCase());
  }
}

function buildModels(
  candidates: Candidate[],
  facts: Map<string, ModelFacts>,
  config: Config,
  unreadable: { path: string; error: string }[],
): ModelEntry[] {
  // Split parts group under their first part; projectors pair with models in the same folder.
  const groups = new Map<string, Candidate[]>();
  const projectors: Candidate[] = [];
  for (const c of candidates) {
    if (isProjector(facts.get(c.realPath), c.path)) {
      projectors.push(c);
      continue;
    }
    // The part number goes, the part count stays: `x-00001-of-00002` and `x-00001-of-00003` are two models.
    const key = c.path.replace(SPLIT, "-of-$2");
    groups.set(key, [...(groups.get(key) ?? []), c]);
  }
  const order: Record<ModelSource, number> = {
    models: 0,
    pulled: 1,
    dir: 2,
    ollama: 3,
    huggingface: 4,
    lmstudio: 5,
    llamacpp: 6,
    api: 7,
  };
  const entries: ModelEntry[] = [];
  const hfModels: HfModel[] = [];
  for (const parts of groups.values()) {
    parts.sort((a, b) => byText(a.path, b.path));
    const first = parts.find((p) => /-00001-of-\d{5}\.gguf$/i.test(p.path)) ?? parts[0];
    const split = first.path.match(SPLIT);
    if (split) {
      // A split model with a part missing (a download under way, a part deleted) cannot load: say which.
      const count = Number(split[2]);
      const have = new Set(parts.map((p) => Number(p.path.match(SPLIT)?.[1])));
      const missing = Array.from({ length: count }, (_, i) => i + 1).filter((i) => !have.has(i));
      if (missing.length) {
        const part = (i: number) =>
          first.path.replace(SPLIT, `-${String(i).padStart(5, "0")}-of-${split[2]}.gguf`);
        unreadable.push({
          path: first.path,
          error: `${first.path}: split model has ${count - missing.length} of ${count} parts; missing ${
            missing.map((i) => basename(part(i))).join(", ")
          }`,
        });
        continue;
      }
    }
    const f0 = facts.get(first.realPath)!;
    const f = parts.length > 1
      ? mergeParts(f0, parts.filter((p) => p !== first).map((p) => facts.get(p.realPath)!))
      : f0;
    const aliases: string[] = [];
    // Ollama shows `hf.co/Org/Repo:Q4_K_M` in mixed case; names here are lower case, lookups ignore case.
    for (const n of [first.ollamaName, ...(first.ollamaAliases ?? [])]) if (n) aliases.push(n.toLowerCase());
    if (first.hfRepo) {
      // The quant in the file's name is the one `-hf repo:QUANT` and a pull go by; the file type in its metadata
      // can differ (`UD-Q4_K_XL` files say Q4_K_M inside) and is a name too, unless another file's name claims it.
      const tag = quantTag(first.hfPath ?? basename(first.path));
      for (const q of new Set([tag, f.fileType.toUpperCase()])) {
        if (q) aliases.push(`hf.co/${first.hfRepo}:${q}`.toLowerCase());
      }
    }
    let mmproj = first.ollamaProjector;
    if (!mmproj) {
      const near = projectors.filter((p) => dirname(p.path) === dirname(first.path));
      mmproj = near.length === 1
        ? near[0].path
        : near.find((p) => first.path.includes(basename(p.path).split(/[-_.]mmproj/i)[0]))?.path;
    }
    // A paired projector makes the model see images (Ollama lists it as `vision`).
    const capabilities: ModelFacts["capabilities"] = mmproj && !f.capabilities.includes("vision")
      ? [...f.capabilities, "vision"]
      : f.capabilities;
    const entry: ModelEntry = {
      name: first.ollamaName?.toLowerCase() ?? modelName(f, first.path),
      aliases,
      path: first.path,
      files: parts.map((p) => p.path),
      mmproj,
      source: first.source,
      ...(first.ollamaLayers && Object.keys(first.ollamaLayers).length
        ? { ollamaLayers: first.ollamaLayers }
        : {}),
      ...(first.ollamaTagLayers
        ? {
          ollamaTagLayers: Object.fromEntries(
            Object.entries(first.ollamaTagLayers).map(([n, l]) => [n.toLowerCase(), l]),
          ),
        }
        : {}),
      sizeBytes: parts.reduce((a, p) => a + p.size, 0),
      mtimeMs: Math.max(...parts.map((p) => p.mtimeMs)),
      facts: capabilities === f.capabilities ? f : { ...f, capabilities },
    };
    entries.push(entry);
    if (first.hfRepo) {
      hfModels.push({ entry, repo: first.hfRepo, path: first.hfPath ?? basename(first.path) });
    }
  }
  hfRepoAliases(hfModels);
  entries.sort((a, b) => order[a.source] - order[b.source] || byText(a.path, b.path));
  const seen = new Set<string>();
  for (const e of entries) {
    if (seen.has(e.name)) {
      const [base, tag] = e.name.split(":");
      e.name = `${base}:${tag}-${shortHash(e.path)}`;
    }
    seen.add(e.name);
  }
  for (const [alias, target] of Object.entries(config.models.aliases)) {
    const t = entries.find((e) =>
      e.name === target.toLowerCase() || e.path === expandHome(target) ||
      e.aliases.includes(target.toLowerCase())
    );
    if (t) t.aliases.push(alias.toLowerCase());
  }
  return entries.sort((a, b) => byText(a.name, b.name));
}

/**
 * Every model (an incremental scan: fast when nothing changed).
 *
 * @example
 * ```ts ignore
 * const names = (await listModels(paths, config)).map((m) => m.name);
 * ```
 */
export async function listModels(
  paths: Paths,
  config: Config,
  options: ScanOptions = {},
): Promise<ModelEntry[]> {
  return (await scanModels(paths, config, options)).models;
}

/**
 * A model entry for one file given by path, read directly (not through the index).
 *
 * @example
 * ```ts ignore
 * const m = await modelFromFile("/tmp/download/model.gguf");
 * console.log(m.name); // e.g. smollm2:135m-q4_1
 * ```
 */
export async function modelFromFile(path: string): Promise<ModelEntry> {
  const info = await Deno.stat(path);
  const header = await readGgufHeader(path, { skipArraysOver: 256 });
  const facts = describeModel(header);
  return {
    name: modelName(facts, path),
    aliases: [],
    path,
    files: [path],
    source: "dir",
    sizeBytes: info.size,
    mtimeMs: info.mtime?.getTime() ?? 0,
    facts,
  };
}
