/**
 * The daemon's view of the models: the model index plus the names made with `/api/copy` and
 * `/api/create`, looked up as Ollama looks names up (case-insensitive, `:latest` implied). Names created
 * through the API live in `<data>/daemon/names.json` with what `/api/create` set on them (system prompt,
 * parameters, messages, license); a name created from uploaded files points at the blob in
 * `<data>/daemon/blobs/`, read directly (the blob store is not part of the index). `/api/delete` removes those
 * names (and a blob no other name uses), or a model file llama-mgr itself wrote under `<data>/models`; it never
 * deletes files that belong to another tool's store.
 *
 * @module
 */
import { join } from "node:path";
import type { Paths } from "../config/paths.ts";
import { readJson, writeJsonAtomic } from "../util/fs.ts";
import { type ModelEntry, modelFromFile } from "./index.ts";
import { ollamaPullDir, pruneOllamaStore, removeFromOllamaStore } from "./sources.ts";
import { normalizeName } from "./names.ts";
import { findByName, resolveByName } from "./resolve.ts";
import { ForeignModelError, ModelStoreError } from "./errors.ts";

/**
 * What `/api/create` sets on a name (a Modelfile's SYSTEM, PARAMETER, MESSAGE and LICENSE), as Ollama keeps it.
 *
 * @example
 * ```ts
 * const pirate: ModelSettings = { system: "Answer like a pirate.", parameters: { temperature: 0.2 } };
 * ```
 */
export interface ModelSettings {
  /** The system prompt used when a request gives none. */
  system?: string;
  /** Default options (checked), under each request's own. */
  parameters?: Record<string, unknown>;
  /** Messages put before every chat's own. */
  messages?: Record<string, unknown>[];
  /** License texts. */
  license?: string[];
  /** The Modelfile's TEMPLATE as given (an Ollama Go template), for `/api/show`. */
  template?: string;
  /** Its Jinja translation, the file llama-server is given with `--chat-template-file`. */
  chatTemplateFile?: string;
  /** LoRA adapters (GGUF), each given to llama-server with `--lora`. */
  adapters?: string[];
}

/**
 * A model as the daemon serves it: the Ollama name and the entry behind it.
 *
 * @example
 * ```ts ignore
 * const m: CatalogModel = await catalog.get("pirate");
 * console.log(m.name, m.entry.path, m.copy, m.settings?.system);
 * ```
 */
export interface CatalogModel {
  /** The name clients see and use. */
  name: string;
  /** The entry. */
  entry: ModelEntry;
  /** True for names made by `/api/copy` or `/api/create`. */
  copy: boolean;
  /** What `/api/create` set on the name. */
  settings?: ModelSettings;
  /** For a name made through the API, the model's own name it was first made from (its preset applies). */
  from?: string;
}

/**
 * A name made through the API: the file it stands for and what was set on it.
 *
 * @example
 * ```ts ignore
 * const base = await catalog.get("qwen3:4b");
 * const record: NameRecord = { ...catalog.recordOf(base), settings: { system: "Answer like a pirate." } };
 * await catalog.create("pirate:latest", record);
 * ```
 */
export interface NameRecord {
  /** The GGUF file. */
  path: string;
  /** Its vision projector, for a model made from uploaded files. */
  mmproj?: string;
  /** System prompt, parameters, messages, license. */
  settings?: ModelSettings;
  /** The model's own name it was first made from (not another made name). */
  from?: string;
}

/**
 * The catalogue's operations.
 *
 * @example
 * ```ts ignore
 * const catalog: Catalog = createCatalog({ paths, listModels: () => listModels(paths, config) });
 * await catalog.copy(await catalog.get("qwen3:4b"), "assistant:latest");
 * console.log((await catalog.list()).map((m) => m.name));
 * ```
 */
export interface Catalog {
  /** Every model, index entries first, then API-made names. */
  list(): Promise<CatalogModel[]>;
  /** Finds a model by name or alias; undefined when unknown. */
  find(name: string): Promise<CatalogModel | undefined>;
  /** Finds a model by name or alias; a ModelNotFoundError (with the closest names) when unknown. */
  get(name: string): Promise<CatalogModel>;
  /** Makes `destination` another name for `source`'s model, with what was set on it. */
  copy(source: CatalogModel, destination: string): Promise<void>;
  /** Makes (or replaces) a name (`/api/create`). */
  create(name: string, record: NameRecord): Promise<void>;
  /**
   * What a new name made from `model` starts as: its file, its projector when that lives in the blob store
   * (where the index does not pair it), what was set on it, and the model's own name it was first made from.
   */
  recordOf(model: CatalogModel): NameRecord;
  /** Where models made from uploaded files are kept (the daemon's blob store). */
  readonly blobsDir: string;
  /** Deletes a model name (see the module doc for what is removed). */
  remove(model: CatalogModel): Promise<void>;
  /** Forgets the cached index. */
  invalidate(): void;
}

/**
 * Options for {@linkcode createCatalog}.
 *
 * @example
 * ```ts ignore
 * const options: CatalogOptions = {
 *   paths,
 *   listModels: () => listModels(paths, config),
 *   aliases: config.models.aliases,
 *   cacheMs: 5_000,
 * };
 * ```
 */
export interface CatalogOptions {
  /** Data locations. */
  paths: Paths;
  /** Lists the indexed models (lib/gguf's listModels bound to paths and config). */
  listModels: () => Promise<ModelEntry[]>;
  /** Config aliases (alias -> model name or path). */
  aliases?: Record<string, string>;
  /** How long the index listing is reused for the model list (`/api/tags`, `/v1/models`), in ms (default 2000). */
  cacheMs?: number;
  /**
   * How old the listing a lookup uses may get before a lookup starts a rescan in the background, in ms (default
   * 30000). A model added since the listing is found by a fresh scan anyway; this bounds how long a changed or
   * removed file goes unnoticed by lookups, and keeps scans of large model stores off busy request paths.
   */
  lookupRefreshMs?: number;
  /**
   * What a model of the index is served with from its store's manifest layers (template, default options,
   * system prompt, messages, license, adapters), in the shape `/api/create` gives a name, so that one code path
   * serves both; carried over to a copy, as Ollama copies the layers. Default: the adapters only.
   */
  ownSettings?: (entry: ModelEntry) => Promise<ModelSettings | undefined>;
}

/** The files the names made through the API stand on. */
function namedFiles(names: NamesFile): Set<string> {
  return new Set(Object.values(names.names).flatMap(recordFiles));
}

/** The files a name stands on: the model, its projector and its LoRA adapters. */
function recordFiles(r: NameRecord): string[] {
  return [r.path, ...(r.mmproj ? [r.mmproj] : []), ...(r.settings?.adapters ?? [])];
}

/**
 * What a model's own name is served with when the catalogue is not told how to read its manifest's layers: the
 * ADAPTER layers (LoRA GGUF blobs), given to llama-server with `--lora`.
 */
function adapterSettings(entry: ModelEntry): Promise<ModelSettings | undefined> {
  const adapters = entry.ollamaLayers?.adapters;
  return Promise.resolve(adapters?.length ? { adapters: [...adapters] } : undefined);
}

interface NamesFile {
  names: Record<string, NameRecord & { createdAt: string }>;
}

/**
 * Creates the catalogue.
 *
 * @example
 * ```ts ignore
 * const catalog = createCatalog({ paths, listModels: () => listModels(paths, config) });
 * const m = await catalog.find("smollm2:latest");
 * ```
 */
export function createCatalog(options: CatalogOptions): Catalog {
  const namesFile = join(options.paths.dataDir, "daemon", "names.json");
  const blobsDir = join(options.paths.dataDir, "daemon", "blobs");
  const inBlobs = (path: string) => path.startsWith(blobsDir + "/");
  const inPulled = (path: string) => path.startsWith(join(ollamaPullDir(options.paths), "blobs") + "/");
  // Models made from uploaded files: their blobs never change (they are named by their content), so each is
  // read once.
  const blobEntries = new Map<string, Promise<ModelEntry | undefined>>();
  const blobEntry = (path: string): Promise<ModelEntry | undefined> => {
    let p = blobEntries.get(path);
    if (!p) {
      p = modelFromFile(path).then(
        (e): ModelEntry => ({ ...e, source: "api" }),
        () => {
          blobEntries.delete(path);
          return undefined;
        },
      );
      blobEntries.set(path, p);
    }
    return p;
  };
  const settingsOf = options.ownSettings ?? adapterSettings;
  const ownSettings = async (entry: ModelEntry): Promise<{ settings?: ModelSettings }> => {
    const settings = entry.ollamaLayers ? await settingsOf(entry) : undefined;
    return settings ? { settings } : {};
  };
  const cacheMs = options.cacheMs ?? 2000;
  const lookupRefreshMs = options.lookupRefreshMs ?? 30_000;
  // The last listing, its age, and the scan under way. A change made through the daemon (create, delete)
  // bumps `generation` so a scan that started before it cannot bring the old listing back.
  let good: { at: number; list: ModelEntry[] } | undefined;
  let pending: { generation: number; list: Promise<ModelEntry[]> } | undefined;
  let generation = 0;
  const rescan = (): Promise<ModelEntry[]> => {
    if (pending && pending.generation === generation) return pending.list;
    const gen = generation;
    const list = options.listModels().then((l) => {
      if (gen === generation) good = { at: Date.now(), list: l };
      return l;
    }).finally(() => {
      if (pending?.list === list) pending = undefined;
    });
    pending = { generation: gen, list };
    return list;
  };
  // What `/api/tags` shows: never older than cacheMs.
  const entries = (): Promise<ModelEntry[]> =>
    good && Date.now() - good.at <= cacheMs ? Promise.resolve(good.list) : rescan();
  // What a lookup uses: the last listing at once (a request never waits for a scan), rescanned in the background
  // when it is older than lookupRefreshMs; `find` rescans and looks again when a name is not in it.
  const entriesNow = (): Promise<ModelEntry[]> => {
    if (!good) return rescan();
    if (Date.now() - good.at > lookupRefreshMs) rescan().catch(() => {});
    return Promise.resolve(good.list);
  };
  // Read once, then kept in memory (this daemon is the file's only writer); every change is written through.
  let namesCache: Promise<NamesFile> | undefined;
  const readNames = (): Promise<NamesFile> =>
    namesCache ??= readJson<NamesFile>(namesFile).then((n) => n ?? { names: {} }, (err) => {
      namesCache = undefined;
      throw new ModelStoreError(`cannot read ${namesFile}: ${(err as Error).message}`, { cause: err });
    });

  const withTag = (name: string) => (name.lastIndexOf(":") > name.lastIndexOf("/") ? name : `${name}:latest`);
  const targetOf = (all: ModelEntry[], target: string) => {
    const key = normalizeName(target);
    return all.find((e) =>
      e.path === target || e.files?.includes(target) ||
      normalizeName(e.name) === key || (e.aliases ?? []).some((a) => normalizeName(a) === key)
    );
  };

  const listFrom = async (all: ModelEntry[]): Promise<CatalogModel[]> => {
    // Tags of one file whose manifests differ in their layers are models of their own, as in Ollama.
    const split = all.flatMap((entry): ModelEntry[] => {
      const tags = entry.ollamaTagLayers;
      if (!tags) return [entry];
      const own = new Set(Object.keys(tags));
      return [
        { ...entry, aliases: entry.aliases.filter((a) => !own.has(a)), ollamaTagLayers: undefined },
        ...Object.entries(tags).map(([name, layers]): ModelEntry => {
          const { ollamaLayers: _, ollamaTagLayers: __, ...rest } = entry;
          return {
            ...rest,
            name,
            aliases: [],
            ...(Object.keys(layers).length ? { ollamaLayers: layers } : {}),
          };
        }),
      ];
    });
    const out: CatalogModel[] = await Promise.all(split.map(async (entry) => ({
      name: entry.name,
      entry,
      copy: false,
      ...await ownSettings(entry),
    })));
    // Config aliases are names of their own, listed like Ollama lists every name it has.
    for (const [alias, target] of Object.entries(options.aliases ?? {})) {
      const entry = targetOf(all, target);
      const name = withTag(alias.toLowerCase());
      if (entry && !out.some((m) => normalizeName(m.name) === normalizeName(name))) {
        out.push({ name, entry, copy: false, ...await ownSettings(entry) });
      }
    }
    const names = await readNames();
    const made: CatalogModel[] = [];
    for (const [name, rec] of Object.entries(names.names)) {
      // A name on a pulled model's blob outlives the model's own name (the blob stays while a name uses it):
      // blobs are named by their content, so they are read once, like uploaded ones.
      const entry = inBlobs(rec.path) ? await blobEntry(rec.path) : all.find((e) => e.path === rec.path) ??
        (inPulled(rec.path) ? await blobEntry(rec.path) : undefined);
      if (!entry) continue;
      const mmproj = rec.mmproj ?? entry.mmproj;
      made.push({
        name,
        entry: { ...entry, name, aliases: [], ...(mmproj ? { mmproj } : {}) },
        copy: true,
        ...(rec.settings ? { settings: rec.settings } : {}),
        ...(rec.from ? { from: rec.from } : {}),
      });
    }
    // A name made through the API replaces a model of the same name, as `ollama create` over an existing name
    // does (deleting it brings the model's own name back).
    const taken = new Set(made.map((m) => normalizeName(m.name)));
    return [...out.filter((m) => !taken.has(normalizeName(m.name))), ...made];
  };

  const list = async (): Promise<CatalogModel[]> => listFrom(await entries());

  // API-made names answer to their own name only; a model of the index also to the other names it has
  // (Ollama's name, hf.co/org/repo:quant, config aliases).
  const named = (models: CatalogModel[]) =>
    models.map((model) => ({ name: model.name, aliases: model.copy ? [] : model.entry.aliases, model }));

  const find = async (name: string): Promise<CatalogModel | undefined> => {
    const scannedAt = good?.at;
    const found = findByName(named(await listFrom(await entriesNow())), name)?.model;
    // Missing from a listing made before this request: a model added since then is found by a fresh scan.
    if (found || scannedAt === undefined) return found;
    return findByName(named(await listFrom(await rescan())), name)?.model;
  };

  const get = async (name: string): Promise<CatalogModel> => {
    const found = await find(name);
    if (found) return found;
    return resolveByName(named(await listFrom(await entriesNow())), name).model;
  };

  function invalidate(): void {
    generation++;
    good = undefined;
  }

  /**
   * Writes a changed names file; the in-memory copy is only changed once it is on disk. Changes run one after
   * another, each on the result of the one before.
   */
  let writing: Promise<void> = Promise.resolve();
  const writeNames = (change: (n: NamesFile["names"]) => void): Promise<void> => {
    const run = async () => {
      const names = await readNames();
      const next = structuredClone(names.names);
      change(next);
      await writeJsonAtomic(namesFile, { names: next });
      names.names = next;
    };
    const done = writing.then(run);
    writing = done.catch(() => {});
    return done;
  };

  const create = async (name: string, record: NameRecord): Promise<void> => {
    const key = normalizeName(name);
    await writeNames((n) => {
      for (const k of Object.keys(n)) if (normalizeName(k) === key) delete n[k];
      n[key] = { ...record, createdAt: new Date().toISOString() };
    });
  };

  const recordOf = (model: CatalogModel): NameRecord => {
    const from = model.copy ? model.from : model.name;
    return {
      path: model.entry.path,
      ...(model.entry.mmproj && inBlobs(model.entry.mmproj) ? { mmproj: model.entry.mmproj } : {}),
      ...(model.settings ? { settings: model.settings } : {}),
      ...(from ? { from } : {}),
    };
  };

  return {
    list,
    find,
    get,
    blobsDir,
    copy: (source, destination) => create(destination, recordOf(source)),
    create,
    recordOf,
    async remove(model) {
      const names = await readNames();
      const key = normalizeName(model.name);
      const own = Object.keys(names.names).find((n) => normalizeName(n) === key);
      if (own) {
        // A blob no other name uses goes with its last name, as Ollama prunes unused layers (decided on the
        // names as written, after this one is gone).
        let unused: string[] = [];
        let pulled: string[] = [];
        await writeNames((n) => {
          const rec = n[own];
          delete n[own];
          const left = Object.values(n);
          const files = rec ? recordFiles(rec) : [];
          unused = files.filter((f) => inBlobs(f) && !left.some((r) => recordFiles(r).includes(f)));
          pulled = files.filter(inPulled);
        });
        for (const file of unused) {
          blobEntries.delete(file);
          await Deno.remove(file).catch(() => {});
        }
        // A pulled model's blob that this name stood on goes too once no manifest and no other name uses it.
        for (const f of pulled) blobEntries.delete(f);
        await pruneOllamaStore(ollamaPullDir(options.paths), pulled, namedFiles(names));
        return;
      }
      if (model.entry.source === "pulled") {
        // llama-mgr's own store of pulled models: the manifest goes, and the blobs nothing else uses (blobs a
        // name made through the API stands on stay).
        if (!await removeFromOllamaStore(ollamaPullDir(options.paths), model.entry.name, namedFiles(names))) {
          throw new ModelStoreError(`no manifest for '${model.name}' in ${ollamaPullDir(options.paths)}`);
        }
        invalidate();
        return;
      }
      const modelsDir = options.paths.modelsDir.replace(/\/+$/, "") + "/";
      if (!model.entry.path.startsWith(modelsDir)) {
        throw new ForeignModelError(model.name, model.entry.source, model.entry.path);
      }
      await Deno.remove(model.entry.path);
      if (model.entry.mmproj?.startsWith(modelsDir)) await Deno.remove(model.entry.mmproj).catch(() => {});
      invalidate();
    },
    invalidate,
  };
}
