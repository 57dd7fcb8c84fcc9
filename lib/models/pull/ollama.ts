/**
 * Pulls a model from an Ollama registry (registry.ollama.ai, or the host a name starts with) the way
 * `ollama pull` does, into llama-mgr's own store `<data>/ollama/` ({@linkcode ollamaPullDir}), laid out as
 * Ollama's: `manifests/<host>/<namespace>/<model>/<tag>` (the manifest as the registry sent it) and
 * `blobs/sha256-<hex>`. Ollama's own store (`~/.ollama/models`) is never written.
 *
 * The steps and progress lines are Ollama's (`server/images.go` PullModel): `pulling manifest`, then
 * `pulling <12 hex digits>` per layer with `digest`, `total` and `completed` (the manifest's layers in
 * order, then its config blob), `verifying sha256 digest`, `writing manifest`, `success`. One step is ours:
 * before any blob is fetched the model layer's GGUF header is read with Range requests and checked against
 * the llama.cpp instance that will run it (architecture, tensor types, tensor extents), so a model that
 * build cannot load is refused after a few hundred kilobytes, not after gigabytes. A blob already in the
 * store with the manifest's size is not fetched again; a fetched blob whose SHA-256 is not its digest is
 * fetched once more, then refused. A registry that asks for sign-in (a 401 with a Bearer challenge: a private
 * model on ollama.com, a private registry) gets it as Ollama gives it, with the user's Ollama key
 * (registry_auth.ts).
 *
 * @module
 */
import { join } from "node:path";
import { readGgufHeader } from "../../gguf/reader.ts";
import { UserError } from "../../util/errors.ts";
import { writeFileAtomic } from "../../util/fs.ts";
import { withLock } from "../../util/lock.ts";
import { checkHeaderSupport, type InstanceSource, readLlamaSupport } from "../../llamacpp/support.ts";
import { DIGEST_RE, parseModelName } from "../names.ts";
import { download, type DownloadProgress } from "./download.ts";
import { readRemoteGgufHeader } from "./gguf_range.ts";
import { registryFetch } from "./registry_auth.ts";

export { ollamaPullDir } from "../sources.ts";

/** Ollama's registry: the host of a name that names none. */
export const OLLAMA_REGISTRY = "registry.ollama.ai";

/** The manifest type Ollama asks registries for. */
export const MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json";

const LAYER = "application/vnd.ollama.image.";

/** A name resolved to a registry: where its manifest and blobs are, and where they go in the store. */
export interface RegistryRef {
  /** `https`, or `http` with `insecure` (as Ollama, which then uses plain HTTP for every request). */
  scheme: "http" | "https";
  /** Registry host (may hold a port). */
  host: string;
  /** Namespace (`library` when the name has none). */
  namespace: string;
  /** Model. */
  model: string;
  /** Tag (`latest` when the name has none). */
  tag: string;
  /** Ollama's shortest display name: `smol:latest`, `user/smol:q4`, `host:5000/ns/smol:latest`. */
  displayName: string;
  /** The manifest's URL. */
  manifestUrl: string;
}

/**
 * Resolves a name `[http(s)://][host/][namespace/]model[:tag]` to its registry. A name that asks for
 * `http://` needs `insecure`, as in Ollama.
 *
 * @example
 * ```ts
 * registryRef("qwen3:4b").manifestUrl; // "https://registry.ollama.ai/v2/library/qwen3/manifests/4b"
 * registryRef("127.0.0.1:5000/me/smol", { insecure: true }).manifestUrl;
 * // "http://127.0.0.1:5000/v2/me/smol/manifests/latest"
 * ```
 */
export function registryRef(name: string, options: { insecure?: boolean } = {}): RegistryRef {
  const scheme = name.match(/^([A-Za-z][A-Za-z0-9+.-]*):\/\//)?.[1].toLowerCase();
  if (scheme && scheme !== "http" && scheme !== "https") {
    throw new UserError(
      `invalid model name '${name}': a registry is reached over http or https, not ${scheme}`,
    );
  }
  const parsed = parseModelName(name);
  if (!parsed) {
    throw new UserError(`invalid model name '${name}'`, {
      hint: "a name is [host/][namespace/]model[:tag], e.g. qwen3:4b or registry.example.com/team/model:q4",
    });
  }
  if (scheme === "http" && !options.insecure) {
    throw new UserError(`insecure protocol http: '${name}' asks for a plain-HTTP registry`, {
      hint: "pass --insecure to pull over plain HTTP",
    });
  }
  const host = parsed.host || OLLAMA_REGISTRY;
  const namespace = parsed.namespace || "library";
  const { model, tag } = parsed;
  const displayName = host.toLowerCase() !== OLLAMA_REGISTRY
    ? `${host}/${namespace}/${model}:${tag}`
    : namespace.toLowerCase() !== "library"
    ? `${namespace}/${model}:${tag}`
    : `${model}:${tag}`;
  const s = options.insecure ? "http" : "https";
  return {
    scheme: s,
    host,
    namespace,
    model,
    tag,
    displayName,
    manifestUrl: `${s}://${host}/v2/${namespace}/${model}/manifests/${tag}`,
  };
}

/** A blob's URL in the registry (which may redirect it to a CDN). */
export function blobUrl(ref: RegistryRef, digest: string): string {
  return `${ref.scheme}://${ref.host}/v2/${ref.namespace}/${ref.model}/blobs/${digest}`;
}

/** One layer (or the config) of a manifest. */
export interface OllamaLayer {
  /** `application/vnd.ollama.image.model`, `.projector`, `.template`, `.params`... */
  mediaType: string;
  /** `sha256:<hex>`. */
  digest: string;
  /** Bytes. */
  size: number;
}

/** An Ollama image manifest (Docker's schema 2). */
export interface OllamaManifest {
  /** 2. */
  schemaVersion: number;
  /** {@linkcode MANIFEST_MEDIA_TYPE}. */
  mediaType?: string;
  /** The config blob (model format, family, file type). */
  config?: OllamaLayer;
  /** The layers. */
  layers: OllamaLayer[];
}

/** One progress line, as Ollama's `/api/pull` streams them. */
export interface OllamaPullProgress {
  /** `pulling manifest`, `pulling <12 hex>`, `verifying sha256 digest`, `writing manifest`, `success`. */
  status: string;
  /** The blob's digest, on `pulling <digest>` lines. */
  digest?: string;
  /** The blob's size. */
  total?: number;
  /** Bytes of it in the store. */
  completed?: number;
}

/** Options for {@linkcode pullOllama}. */
export interface OllamaPullOptions {
  /** The store to write to: {@linkcode ollamaPullDir} of the data dir. */
  storeDir: string;
  /** Use plain HTTP (Ollama's `--insecure`), for a registry without TLS. */
  insecure?: boolean;
  /** The instance whose llama.cpp must be able to load the model; without it the header is read, not checked. */
  instance?: InstanceSource;
  /** Progress lines. */
  onProgress?: (p: OllamaPullProgress) => void;
  /** Cancels the pull. */
  signal?: AbortSignal;
  /** The fetch to use (tests). */
  fetch?: typeof fetch;
  /**
   * The ed25519 key that signs token requests when the registry asks for sign-in (default
   * `$HOME/.ollama/id_ed25519`, Ollama's key).
   */
  keyPath?: string;
  /** Parts of one blob fetched at once (the download engine's `parallel`). */
  parallel?: number;
}

/** What a pull put in the store. */
export interface OllamaPullResult {
  /** The name as the index lists it (Ollama's display name, lower case): `smol:latest`. */
  name: string;
  /** Ollama's display name as given (case kept, as Ollama keeps it in the store). */
  displayName: string;
  /** The manifest file. */
  manifestPath: string;
  /** The model blob (GGUF). */
  model: string;
  /** The vision projector blob. */
  projector?: string;
  /** The template blob (text). */
  template?: string;
  /** The parameters blob (JSON). */
  params?: string;
  /** The system prompt blob (text). */
  system?: string;
  /** The messages blob (JSON). */
  messages?: string;
  /** License blobs (text). */
  license?: string[];
  /** LoRA adapter blobs (GGUF). */
  adapters?: string[];
  /** The model's architecture (`general.architecture`). */
  architecture: string;
  /** Bytes fetched from the registry (0 when everything was in the store). */
  fetchedBytes: number;
}

/**
 * The registry answered with an error, or could not be reached. `status` is the HTTP status, `code` the
 * registry's error code (`MANIFEST_UNKNOWN`).
 */
export class RegistryError extends UserError {
  /** HTTP status, when the registry answered. */
  status?: number;
  /** The registry's error code. */
  code?: string;
  /** Builds the error. */
  constructor(
    message: string,
    options: { status?: number; code?: string; hint?: string; cause?: unknown } = {},
  ) {
    super(message, { hint: options.hint, cause: options.cause });
    this.name = "RegistryError";
    this.status = options.status;
    this.code = options.code;
  }
}

/** The model is not one the chosen llama.cpp can load (found from its header, before the download). */
export class UnsupportedModelError extends UserError {
  /** Builds the error. */
  constructor(message: string, hint: string) {
    super(message, { hint });
    this.name = "UnsupportedModelError";
  }
}

const TLS_FAILURE = /InvalidContentType|corrupt message|tls|ssl|certificate|handshake/i;

async function request(
  ref: RegistryRef,
  url: string,
  init: RequestInit,
  options: OllamaPullOptions,
): Promise<Response> {
  try {
    return await (options.fetch ?? fetch)(url, { ...init, signal: options.signal });
  } catch (err) {
    if (options.signal?.aborted || err instanceof UserError) throw err;
    const why = `${(err as Error).message}${(err as Error).cause ? `: ${(err as Error).cause}` : ""}`;
    if (ref.scheme === "https" && TLS_FAILURE.test(why)) {
      throw new RegistryError(`registry ${ref.host} does not answer over HTTPS (${why})`, {
        hint: "if it is a registry that serves plain HTTP (a local one), pass --insecure",
        cause: err,
      });
    }
    throw new RegistryError(`cannot reach registry ${ref.host}: ${why}`, { cause: err });
  }
}

/** The registry's own words for an error: `{"errors":[{"code","message"}]}` (Docker's distribution API). */
async function registryWords(res: Response): Promise<{ code?: string; message: string }> {
  const text = (await res.text().catch(() => "")).slice(0, 2000);
  try {
    const e = JSON.parse(text)?.errors?.[0];
    if (e && (e.code || e.message)) {
      return { code: e.code, message: String(e.message ?? e.code).toLowerCase() };
    }
  } catch { /* not JSON */ }
  return { message: text.trim() || res.statusText || `HTTP ${res.status}` };
}

function checkLayer(l: unknown, what: string, name: string): OllamaLayer {
  const layer = l as Partial<OllamaLayer> | undefined;
  if (
    !layer || typeof layer.mediaType !== "string" || typeof layer.digest !== "string" ||
    !DIGEST_RE.test(layer.digest) || typeof layer.size !== "number" || !Number.isSafeInteger(layer.size) ||
    layer.size < 0
  ) {
    // A digest reaches a file path: nothing but `sha256:<64 hex>` may (Ollama's fix for CVE-2024-37032).
    throw new RegistryError(
      `the manifest of '${name}' has an invalid ${what}: ${JSON.stringify(l)?.slice(0, 200)}`,
    );
  }
  return { mediaType: layer.mediaType, digest: layer.digest, size: layer.size };
}

/** Fetches and checks a manifest; returns it with its bytes as sent (the store keeps them unchanged). */
async function pullManifest(
  ref: RegistryRef,
  options: OllamaPullOptions,
): Promise<{ manifest: OllamaManifest; bytes: Uint8Array }> {
  const res = await request(ref, ref.manifestUrl, { headers: { Accept: MANIFEST_MEDIA_TYPE } }, options);
  if (res.status === 404) {
    const { code, message } = await registryWords(res);
    throw new RegistryError(`model '${ref.displayName}' not found in registry ${ref.host}: ${message}`, {
      status: 404,
      code,
      hint: ref.host === OLLAMA_REGISTRY
        ? "check the name and tag at https://ollama.com/library"
        : "check the model's name and tag",
    });
  }
  if (res.status === 401 || res.status === 403) {
    const { code, message } = await registryWords(res);
    throw new RegistryError(`registry ${ref.host} refused access to '${ref.displayName}': ${message}`, {
      status: res.status,
      code,
      hint: "the registry refused access without asking for sign-in: check the name, or ask its operator",
    });
  }
  if (!res.ok) {
    const { code, message } = await registryWords(res);
    throw new RegistryError(
      `registry ${ref.host} answered ${res.status} for the manifest of '${ref.displayName}': ${message}`,
      { status: res.status, code },
    );
  }
  const bytes = new Uint8Array(await res.arrayBuffer());
  let raw: { schemaVersion?: unknown; mediaType?: unknown; config?: unknown; layers?: unknown };
  try {
    raw = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw new RegistryError(`the manifest of '${ref.displayName}' from ${ref.host} is not JSON`);
  }
  if (!raw || !Array.isArray(raw.layers)) {
    throw new RegistryError(`the manifest of '${ref.displayName}' from ${ref.host} has no layers`);
  }
  const manifest: OllamaManifest = {
    schemaVersion: Number(raw.schemaVersion),
    mediaType: typeof raw.mediaType === "string" ? raw.mediaType : undefined,
    layers: raw.layers.map((l, i) => checkLayer(l, `layer ${i}`, ref.displayName)),
    config: raw.config && (raw.config as OllamaLayer).digest
      ? checkLayer(raw.config, "config", ref.displayName)
      : undefined,
  };
  return { manifest, bytes };
}

const hexOf = (digest: string) => digest.slice(7).toLowerCase();

async function sizeOf(path: string): Promise<number | undefined> {
  try {
    const info = await Deno.stat(path);
    return info.isFile ? info.size : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Pulls `name` from its registry into `options.storeDir` (see the module doc for the steps).
 *
 * @example
 * ```ts ignore
 * const r = await pullOllama("qwen3:4b", {
 *   storeDir: ollamaPullDir(paths),
 *   instance: { name: "cpu", sourceDir: instanceSourceDir(paths, "cpu"), version: inst.version },
 *   onProgress: (p) => console.log(JSON.stringify(p)),
 * });
 * console.log(r.name, r.model);
 * ```
 */
export async function pullOllama(name: string, options: OllamaPullOptions): Promise<OllamaPullResult> {
  const ref = registryRef(name, options);
  // Every request of this pull goes through one fetch that signs in when the registry asks for it.
  options = {
    ...options,
    fetch: registryFetch({
      origin: `${ref.scheme}://${ref.host}`,
      name: ref.displayName,
      keyPath: options.keyPath,
      fetch: options.fetch,
      signal: options.signal,
    }),
  };
  const emit = options.onProgress ?? (() => {});
  const blobsDir = join(options.storeDir, "blobs");
  const blobPath = (digest: string) => join(blobsDir, `sha256-${hexOf(digest)}`);

  emit({ status: "pulling manifest" });
  const { manifest, bytes } = await pullManifest(ref, options);
  const ofType = (kind: string) => manifest.layers.filter((l) => l.mediaType === LAYER + kind);
  const modelLayer = ofType("model")[0];
  if (!modelLayer) {
    const types = [...new Set(manifest.layers.map((l) => l.mediaType))].join(", ");
    throw new UnsupportedModelError(
      `'${ref.displayName}' has no GGUF model layer (its layers: ${types || "none"})`,
      "llama.cpp runs GGUF models; this one is for Ollama's own engine (pull it with Ollama)",
    );
  }

  // The header first: a model this llama.cpp cannot load is refused before its gigabytes are fetched.
  const label = `${ref.displayName} (model layer ${modelLayer.digest.slice(0, 19)})`;
  let fetchedBytes = 0;
  const local = blobPath(modelLayer.digest);
  let header;
  if (await sizeOf(local) === modelLayer.size) header = await readGgufHeader(local, { skipArraysOver: 256 });
  else {
    const remote = await readRemoteGgufHeader(blobUrl(ref, modelLayer.digest), {
      size: modelLayer.size,
      label,
      signal: options.signal,
      fetch: options.fetch,
    });
    header = remote.header;
    fetchedBytes += remote.fetchedBytes;
  }
  const architecture = String(header.metadata["general.architecture"] ?? "");
  if (options.instance) {
    const support = await readLlamaSupport(options.instance.sourceDir, options.instance.commit);
    const problems = checkHeaderSupport(header, support, options.instance);
    if (problems.length) {
      throw new UnsupportedModelError(
        `cannot pull '${ref.displayName}': ${problems.join("; ")}`,
        `Ollama's own engine may run it (\`ollama pull ${name}\` with Ollama); or update the instance ` +
          `(\`llama-mgr install -i ${options.instance.name}\`) if a newer llama.cpp supports it`,
      );
    }
  }

  // Every blob, each digest once: the layers in order, then the config (as Ollama).
  const blobs = [...manifest.layers, ...(manifest.config ? [manifest.config] : [])]
    .filter((l, i, all) => all.findIndex((o) => o.digest.toLowerCase() === l.digest.toLowerCase()) === i);
  await Deno.mkdir(blobsDir, { recursive: true });
  for (const layer of blobs) {
    const dest = blobPath(layer.digest);
    const status = `pulling ${hexOf(layer.digest).slice(0, 12)}`;
    const line = (completed: number) => emit({ status, digest: layer.digest, total: layer.size, completed });
    // Two pulls sharing a blob (two tags of one model) take turns on it; the second finds it done.
    await withLock(
      join(options.storeDir, ".locks", `sha256-${hexOf(layer.digest)}.lock`),
      status,
      async () => {
        if (await sizeOf(dest) === layer.size) return line(layer.size);
        line(0);
        for (let attempt = 1;; attempt++) {
          await Deno.remove(dest).catch(() => {});
          const r = await download({
            url: blobUrl(ref, layer.digest),
            dest,
            size: layer.size,
            parallel: options.parallel,
            onProgress: (p: DownloadProgress) => line(p.completed),
            signal: options.signal,
            fetch: options.fetch,
          });
          fetchedBytes += r.fetchedBytes;
          // The digest is checked here, not by the engine, so that a corrupt transfer can be fetched once more.
          if (r.sha256.toLowerCase() === hexOf(layer.digest) && r.size === layer.size) break;
          await Deno.remove(dest).catch(() => {});
          if (attempt === 2) {
            throw new RegistryError(
              `blob ${layer.digest} of '${ref.displayName}' does not match its digest, twice ` +
                `(got sha256:${r.sha256}, ${r.size} bytes)`,
              { hint: "the registry, a proxy or the network corrupts it; try again later" },
            );
          }
        }
        line(layer.size);
      },
      { wait: true },
    );
  }
  // Each blob was hashed as it arrived and compared above; this line keeps Ollama's sequence for clients.
  emit({ status: "verifying sha256 digest" });

  emit({ status: "writing manifest" });
  const manifestPath = join(options.storeDir, "manifests", ref.host, ref.namespace, ref.model, ref.tag);
  const old = await Deno.readFile(manifestPath).catch(() => undefined);
  if (!old || old.length !== bytes.length || old.some((b, i) => b !== bytes[i])) {
    await writeFileAtomic(manifestPath, bytes);
  }
  emit({ status: "success" });

  const one = (kind: string) => ofType(kind)[0] && blobPath(ofType(kind)[0].digest);
  const all = (kind: string) => ofType(kind).map((l) => blobPath(l.digest));
  const result: OllamaPullResult = {
    name: ref.displayName.toLowerCase(),
    displayName: ref.displayName,
    manifestPath,
    model: blobPath(modelLayer.digest),
    projector: one("projector"),
    template: one("template"),
    params: one("params"),
    system: one("system"),
    messages: one("messages"),
    license: all("license"),
    adapters: all("adapter"),
    architecture,
    fetchedBytes,
  };
  for (const [k, v] of Object.entries(result)) {
    if (v === undefined || (Array.isArray(v) && v.length === 0)) {
      delete (result as unknown as Record<string, unknown>)[k];
    }
  }
  return result;
}
