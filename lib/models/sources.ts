/**
 * Where GGUF files are on a machine: configured folders (recursive), the Hugging Face cache, Ollama's store
 * (manifests resolved to blobs), LM Studio's folder, llama.cpp's download cache, and the store of models
 * `llama-mgr pull` fetched from an Ollama registry (`<data>/ollama/`, Ollama's own layout).
 *
 * @module
 */
import { join } from "node:path";
import type { Paths } from "../config/paths.ts";
import type { Config } from "../config/schema.ts";
import { expandHome } from "../util/fs.ts";

/**
 * Where a model was found: a folder of the config (`dir`), the data dir's `models/`, another tool's store,
 * (`pulled`) llama-mgr's own store of models pulled from an Ollama registry, or (`api`) the daemon's blob
 * store, for a model made from uploaded files.
 *
 * @example
 * ```ts ignore
 * const own = (await listModels(paths, config)).filter((m) => m.source === "dir" || m.source === "models");
 * ```
 */
export type ModelSource =
  | "dir"
  | "models"
  | "pulled"
  | "huggingface"
  | "ollama"
  | "lmstudio"
  | "llamacpp"
  | "api";

/**
 * The blobs an Ollama manifest lists beside the model: what `ollama show` reads its settings from.
 *
 * @example
 * ```ts ignore
 * const system = entry.ollamaLayers?.system && await Deno.readTextFile(entry.ollamaLayers.system);
 * ```
 */
export interface OllamaLayerFiles {
  /** The Go template (`application/vnd.ollama.image.template`), text. */
  template?: string;
  /** Default parameters (`.params`), a JSON object. */
  params?: string;
  /** The system prompt (`.system`), text. */
  system?: string;
  /** Messages put before every chat (`.messages`), a JSON array. */
  messages?: string;
  /** License texts (`.license`), one blob each. */
  license?: string[];
  /** LoRA adapters (`.adapter`), GGUF. */
  adapters?: string[];
}

/** A GGUF file found on disk. */
export interface Candidate {
  /** The path as found. */
  path: string;
  /** The real path (links resolved): one file reached by two paths is one model. */
  realPath: string;
  /** Which source found it. */
  source: ModelSource;
  /** Ollama's name for it (`llama3:8b`), for files from Ollama's store. */
  ollamaName?: string;
  /** Ollama's other names for the same blob (more tags of one model). */
  ollamaAliases?: string[];
  /** The projector blob an Ollama manifest pairs with it. */
  ollamaProjector?: string;
  /** The manifest's other layers (template, parameters, system prompt...), as blob paths. */
  ollamaLayers?: OllamaLayerFiles;
  /** The layers of each of `ollamaAliases` whose manifest lists other layers than `ollamaLayers`. */
  ollamaTagLayers?: Record<string, OllamaLayerFiles>;
  /** `org/name` of a Hugging Face cache repo. */
  hfRepo?: string;
  /** The file's path in that repo (below `snapshots/<rev>/`). */
  hfPath?: string;
  /** Size in bytes. */
  size: number;
  /** Modification time. */
  mtimeMs: number;
}

/**
 * Which sources a scan reads (the base of {@linkcode ScanOptions}).
 *
 * @example
 * ```ts
 * const options: SourceOptions = { env: { HOME: "/home/me", OLLAMA_MODELS: "/srv/ollama/models" } };
 * ```
 */
export interface SourceOptions {
  /** Environment to read HF_HOME, HF_HUB_CACHE, OLLAMA_MODELS, LLAMA_CACHE, HOME from (default: Deno.env). */
  env?: Record<string, string | undefined>;
  /** Only these folders (the `models scan --dir` case), instead of every source. */
  onlyDirs?: string[];
}

const OLLAMA_DIGEST = /^sha256[:-]([0-9a-fA-F]{64})$/;

async function stat(path: string): Promise<Deno.FileInfo | undefined> {
  try {
    return await Deno.stat(path);
  } catch {
    return undefined;
  }
}

// The walk uses sync calls: a stat is a few microseconds, an awaited one several times that, and a warm
// rescan of a thousand files is nothing but stats.
function statSync(path: string): Deno.FileInfo | undefined {
  try {
    return Deno.statSync(path);
  } catch {
    return undefined;
  }
}

async function walk(
  dir: string,
  onFile: (path: string, info: Deno.FileInfo) => Promise<void>,
  depth = 0,
  seen = new Set<string>(),
): Promise<void> {
  if (depth > 12) return;
  // Symlinked folders are followed (a models folder linked from a big disk), each real folder once.
  const self = statSync(dir);
  if (!self?.isDirectory) return;
  const id = self.ino ? `${self.dev}:${self.ino}` : dir;
  if (seen.has(id)) return;
  seen.add(id);
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(dir)];
  } catch {
    return;
  }
  for (const e of entries) {
    if (e.name.startsWith(".")) continue;
    const full = join(dir, e.name);
    if (e.isDirectory) await walk(full, onFile, depth + 1, seen);
    else if (e.isSymlink || e.isFile) {
      const gguf = e.name.toLowerCase().endsWith(".gguf");
      if (!gguf && !e.isSymlink) continue;
      const info = statSync(full);
      if (info?.isDirectory) await walk(full, onFile, depth + 1, seen);
      else if (gguf && info?.isFile) await onFile(full, info);
    }
  }
}

/** The Ollama store directory (the user's: see {@linkcode ollamaDirs} for every place it may be). */
export function ollamaDir(env: Record<string, string | undefined>): string {
  return ollamaDirs(env)[0];
}

/** Where Ollama's system service keeps its store on Linux (the official installer runs `ollama serve` as user
 * `ollama`, whose home is `/usr/share/ollama`): most Linux users' models are there, not in `~/.ollama`. */
export const OLLAMA_SYSTEM_DIR = "/usr/share/ollama/.ollama/models";

/**
 * Every place Ollama's store may be: `$OLLAMA_MODELS` when set, else `~/.ollama/models` and, on Linux, the
 * system service's store.
 *
 * @example
 * ```ts
 * ollamaDirs({ HOME: "/home/me" }); // ["/home/me/.ollama/models", "/usr/share/ollama/.ollama/models"] on Linux
 * ```
 */
export function ollamaDirs(env: Record<string, string | undefined>): string[] {
  if (env.OLLAMA_MODELS) return [expandHome(env.OLLAMA_MODELS)];
  const user = join(env.HOME ?? "/", ".ollama", "models");
  return Deno.build.os === "linux" && user !== OLLAMA_SYSTEM_DIR ? [user, OLLAMA_SYSTEM_DIR] : [user];
}

/** The revisions the refs of a Hugging Face cache repo name (`refs/main`, `refs/pr/1`...). */
function hfRefs(dir: string, out = new Set<string>(), depth = 0): Set<string> {
  let entries: Deno.DirEntry[] = [];
  try {
    entries = [...Deno.readDirSync(dir)];
  } catch {
    return out;
  }
  for (const e of entries) {
    const full = join(dir, e.name);
    if (e.isDirectory && depth < 4) hfRefs(full, out, depth + 1);
    else if (e.isFile) {
      try {
        out.add(Deno.readTextFileSync(full).trim());
      } catch { /* unreadable ref */ }
    }
  }
  return out;
}

/**
 * The Hugging Face hub cache directory, found as huggingface_hub finds it: `$HF_HUB_CACHE` (or the older
 * `$HUGGINGFACE_HUB_CACHE`), else `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else
 * `~/.cache/huggingface/hub`.
 *
 * @example
 * ```ts
 * hfHubDir({ HOME: "/home/me" }); // "/home/me/.cache/huggingface/hub"
 * ```
 */
export function hfHubDir(env: Record<string, string | undefined>): string {
  const hub = env.HF_HUB_CACHE || env.HUGGINGFACE_HUB_CACHE;
  if (hub) return expandHome(hub);
  if (env.HF_HOME) return join(expandHome(env.HF_HOME), "hub");
  return join(env.XDG_CACHE_HOME || join(env.HOME ?? "/", ".cache"), "huggingface", "hub");
}

/** llama.cpp's download cache directory. */
export function llamaCacheDir(env: Record<string, string | undefined>): string {
  if (env.LLAMA_CACHE) return expandHome(env.LLAMA_CACHE);
  if (Deno.build.os === "darwin") return join(env.HOME ?? "/", "Library", "Caches", "llama.cpp");
  return join(env.XDG_CACHE_HOME || join(env.HOME ?? "/", ".cache"), "llama.cpp");
}

/**
 * The store `llama-mgr pull` writes models from Ollama registries to: `<data>/ollama/`, laid out as Ollama's
 * own (`manifests/<host>/<namespace>/<model>/<tag>` and `blobs/sha256-<hex>`), never Ollama's store itself.
 *
 * @example
 * ```ts ignore
 * ollamaPullDir(paths); // "/home/me/.local/share/llama-mgr/ollama"
 * ```
 */
export function ollamaPullDir(paths: Paths): string {
  return join(paths.dataDir, "ollama");
}

/**
 * Removes a model from an Ollama-layout store that llama-mgr owns (the pulled store): its manifest, then every
 * blob no remaining manifest lists and `keep` does not name (as Ollama prunes unused layers). Returns false
 * when no manifest has that name.
 *
 * @example
 * ```ts ignore
 * await removeFromOllamaStore(ollamaPullDir(paths), "smol:latest");
 * ```
 */
export async function removeFromOllamaStore(
  root: string,
  name: string,
  keep: ReadonlySet<string> = new Set(),
): Promise<boolean> {
  const manifests = join(root, "manifests");
  const all: { rel: string[]; full: string }[] = [];
  const visit = async (dir: string, rel: string[]) => {
    for await (const e of Deno.readDir(dir)) {
      const full = join(dir, e.name);
      if (e.isDirectory && rel.length < 3) await visit(full, [...rel, e.name]);
      else if (e.isFile && rel.length === 3) all.push({ rel: [...rel, e.name], full });
    }
  };
  await visit(manifests, []).catch(() => {});
  const target = all.find((m) => ollamaNameFromManifest(m.rel)?.toLowerCase() === name.toLowerCase());
  if (!target) return false;
  const listed = await manifestBlobs(root, target.full);
  await Deno.remove(target.full);
  // Empty folders up to manifests/ go too.
  for (let depth = 3; depth >= 1; depth--) {
    await Deno.remove(join(manifests, ...target.rel.slice(0, depth))).catch(() => {});
  }
  await pruneOllamaStore(root, listed ?? [], keep);
  return true;
}

/** The blob paths a manifest lists (config and layers); undefined when it cannot be read. */
async function manifestBlobs(root: string, manifest: string): Promise<string[] | undefined> {
  try {
    const m = JSON.parse(await Deno.readTextFile(manifest)) as {
      config?: { digest?: string };
      layers?: { digest?: string }[];
    };
    return [m.config?.digest, ...(m.layers ?? []).map((l) => l.digest)].flatMap((d) => {
      const hex = d?.match(OLLAMA_DIGEST)?.[1];
      return hex ? [join(root, "blobs", `sha256-${hex.toLowerCase()}`)] : [];
    });
  } catch {
    return undefined;
  }
}

/**
 * Removes those of `candidates` (blob paths of an Ollama-layout store) that no manifest lists and `keep` does not
 * name, as Ollama prunes a deleted model's layers. Only candidates are looked at, so a blob a pull has just
 * fetched (its manifest not written yet) is never touched. An unreadable manifest keeps every blob.
 *
 * @example
 * ```ts ignore
 * await pruneOllamaStore(ollamaPullDir(paths), [blob], new Set());
 * ```
 */
export async function pruneOllamaStore(
  root: string,
  candidates: readonly string[],
  keep: ReadonlySet<string> = new Set(),
): Promise<void> {
  if (!candidates.length) return;
  const manifests: string[] = [];
  const visit = async (dir: string, depth: number) => {
    for await (const e of Deno.readDir(dir)) {
      const full = join(dir, e.name);
      if (e.isDirectory && depth < 3) await visit(full, depth + 1);
      else if (e.isFile && depth === 3) manifests.push(full);
    }
  };
  await visit(join(root, "manifests"), 0).catch(() => {});
  const used = new Set<string>();
  for (const m of manifests) {
    const blobs = await manifestBlobs(root, m);
    if (!blobs) return;
    for (const b of blobs) used.add(b);
  }
  for (const path of candidates) {
    if (!used.has(path) && !keep.has(path)) await Deno.remove(path).catch(() => {});
  }
}

/** Ollama's display name for a manifest path below `manifests/`. */
export function ollamaNameFromManifest(rel: string[]): string | undefined {
  if (rel.length !== 4) return undefined;
  const [host, ns, model, tag] = rel;
  if (host === "registry.ollama.ai") return ns === "library" ? `${model}:${tag}` : `${ns}/${model}:${tag}`;
  return `${host}/${ns}/${model}:${tag}`;
}

const LAYER = "application/vnd.ollama.image.";

async function ollamaCandidates(
  root: string,
  push: (c: Omit<Candidate, "realPath">) => Promise<void>,
  source: "ollama" | "pulled" = "ollama",
): Promise<void> {
  const manifests = join(root, "manifests");
  const visit = async (dir: string, rel: string[]) => {
    let entries: Deno.DirEntry[];
    try {
      entries = await Array.fromAsync(Deno.readDir(dir));
    } catch {
      return;
    }
    for (const e of entries) {
      const full = join(dir, e.name);
      if (e.isDirectory && rel.length < 4) await visit(full, [...rel, e.name]);
      else if (e.isFile && rel.length === 3) {
        const name = ollamaNameFromManifest([...rel, e.name]);
        if (!name) continue;
        let manifest: { layers?: { mediaType?: string; digest?: string }[] };
        try {
          manifest = JSON.parse(await Deno.readTextFile(full));
        } catch {
          continue;
        }
        const blobs = (kind: string) =>
          (manifest.layers ?? []).filter((l) => l.mediaType === LAYER + kind).flatMap((l) => {
            const m = l.digest?.match(OLLAMA_DIGEST);
            return m ? [join(root, "blobs", `sha256-${m[1].toLowerCase()}`)] : [];
          });
        const blob = (kind: string) => blobs(kind)[0];
        const model = blob("model");
        if (!model) continue;
        const info = await stat(model);
        if (!info?.isFile) continue;
        const layers: OllamaLayerFiles = {
          // Models made by Ollama before 0.1 name their template layer `prompt`.
          template: blob("template") ?? blob("prompt"),
          params: blob("params"),
          system: blob("system"),
          messages: blob("messages"),
          license: blobs("license"),
          adapters: blobs("adapter"),
        };
        await push({
          path: model,
          source,
          ollamaName: name,
          ollamaProjector: blob("projector"),
          ollamaLayers: Object.fromEntries(
            Object.entries(layers).filter(([, v]) => v !== undefined && v.length !== 0),
          ),
          size: info.size,
          mtimeMs: info.mtime?.getTime() ?? 0,
        });
      }
    }
  };
  await visit(manifests, []);
}

/**
 * Every GGUF file the configured sources hold, each real file once (the first source that found it wins;
 * an Ollama name found for the same blob is kept).
 *
 * @example
 * ```ts ignore
 * const files = await findCandidates(paths, config);
 * ```
 */
export async function findCandidates(
  paths: Paths,
  config: Config,
  options: SourceOptions = {},
): Promise<Candidate[]> {
  const env = options.env ?? Deno.env.toObject();
  const out = new Map<string, Candidate>();
  const byInode = new Map<string, string>();
  const push = async (c: Omit<Candidate, "realPath">, info?: Deno.FileInfo) => {
    // One file reached by two paths (links, symlinked folders) is one model: identify it by device and inode
    // when the platform gives them, else by its real path.
    let realPath = c.path;
    const inode = info?.ino ? `${info.dev}:${info.ino}` : undefined;
    const known = inode ? byInode.get(inode) : undefined;
    if (known) realPath = known;
    else {
      if (!inode || info?.isSymlink !== false) {
        try {
          realPath = await Deno.realPath(c.path);
        } catch { /* keep */ }
      }
      if (inode) byInode.set(inode, realPath);
    }
    const prev = out.get(realPath);
    if (prev) {
      if (c.ollamaName && !prev.ollamaName) {
        out.set(realPath, {
          ...prev,
          ollamaName: c.ollamaName,
          ...(c.ollamaLayers ? { ollamaLayers: c.ollamaLayers } : {}),
          ...(c.ollamaProjector && !prev.ollamaProjector ? { ollamaProjector: c.ollamaProjector } : {}),
        });
      } else if (c.ollamaName && c.ollamaName !== prev.ollamaName) {
        // Another tag of the same blob (`ollama cp`, or `latest` and `q4_k_m`): one model, every name finds it.
        // A tag made with other layers (`ollama create` with a SYSTEM over the same weights) keeps its own.
        const own = c.ollamaLayers ?? {};
        const differs = JSON.stringify(own) !== JSON.stringify(prev.ollamaLayers ?? {});
        out.set(realPath, {
          ...prev,
          ollamaAliases: [...(prev.ollamaAliases ?? []), c.ollamaName],
          ...(differs ? { ollamaTagLayers: { ...prev.ollamaTagLayers, [c.ollamaName]: own } } : {}),
        });
      }
      return;
    }
    out.set(realPath, { ...c, realPath });
  };
  const fromDir = (source: Candidate["source"]) => async (path: string, info: Deno.FileInfo) =>
    await push({ path, source, size: info.size, mtimeMs: info.mtime?.getTime() ?? 0 }, info);

  if (options.onlyDirs) {
    for (const d of options.onlyDirs) await walk(expandHome(d), fromDir("dir"));
    return [...out.values()];
  }
  await walk(paths.modelsDir, fromDir("models"));
  // Models llama-mgr pulled are its own, like `models/`: listed whatever `models.sources` says of Ollama's.
  await ollamaCandidates(ollamaPullDir(paths), push, "pulled");
  for (const d of config.models.dirs) await walk(expandHome(d), fromDir("dir"));
  const src = config.models.sources;
  if (src.ollama) { for (const d of ollamaDirs(env)) await ollamaCandidates(d, push); }
  if (src.huggingface) {
    const hub = hfHubDir(env);
    let repos: Deno.DirEntry[] = [];
    try {
      repos = await Array.fromAsync(Deno.readDir(hub));
    } catch { /* no cache */ }
    for (const r of repos) {
      const m = r.name.match(/^models--([^-].*?)--(.+)$/);
      if (!m || !r.isDirectory) continue;
      const hfRepo = `${m[1]}/${m[2]}`;
      const snapshots = join(hub, r.name, "snapshots");
      const found: { rev: string; rel: string; path: string; info: Deno.FileInfo }[] = [];
      await walk(snapshots, (path, info) => {
        const [rev, ...rel] = path.slice(snapshots.length + 1).split("/");
        found.push({ rev, rel: rel.join("/"), path, info });
        return Promise.resolve();
      });
      // An older snapshot's copy of a file the current revision (one a ref names, e.g. refs/main) also has is
      // stale (a re-uploaded quant): listing both would show one model twice. Files only older snapshots have
      // stay listed.
      const current = hfRefs(join(hub, r.name, "refs"));
      const currentFiles = new Set(found.filter((f) => current.has(f.rev)).map((f) => f.rel));
      for (const f of found) {
        if (!current.has(f.rev) && currentFiles.has(f.rel)) continue;
        await push({
          path: f.path,
          source: "huggingface",
          hfRepo,
          hfPath: f.rel,
          size: f.info.size,
          mtimeMs: f.info.mtime?.getTime() ?? 0,
        });
      }
    }
  }
  if (src.lmstudio) {
    const home = env.HOME ?? "/";
    await walk(join(home, ".lmstudio", "models"), fromDir("lmstudio"));
    await walk(join(home, ".cache", "lm-studio", "models"), fromDir("lmstudio"));
  }
  if (src.llamacpp) await walk(llamaCacheDir(env), fromDir("llamacpp"));
  return [...out.values()];
}
