/**
 * Getting a model: one `pullModel` for the CLI and the daemon, which takes what people type and goes to the
 * right place: a Hugging Face reference (`hf.co/org/repo[:QUANT]`, `hf:org/repo`, a huggingface.co URL) into
 * the Hugging Face cache, any other `https://` URL of a GGUF file into the models folder, and an Ollama name
 * (`qwen3:4b`, `user/model:tag`, `host:port/ns/model:tag`) from that registry into llama-mgr's own Ollama
 * store. Progress comes as Ollama's pull lines. And `verifyModel` checks a model already on disk against the
 * digest its store names it by.
 *
 * @module
 */
import { basename, join } from "node:path";
import type { Paths } from "../../config/paths.ts";
import type { Config } from "../../config/schema.ts";
import { UserError } from "../../util/errors.ts";
import { sha256File } from "../../util/fs.ts";
import { getInstance, instanceSourceDir } from "../../llamacpp/instances.ts";
import { ollamaPullDir } from "../sources.ts";
import { isValidModelName, normalizeName } from "../names.ts";
import type { ModelEntry } from "../index.ts";
import { parseHfRef, pullHuggingFace } from "./huggingface.ts";
import { pullOllama } from "./ollama.ts";
import { ollamaKeyPath } from "./registry_auth.ts";
import { download } from "./download.ts";
import { storeDigest } from "../digests.ts";

/**
 * One progress line, as Ollama's `/api/pull` streams them.
 *
 * @example
 * ```ts
 * const line: PullEvent = { status: "pulling 3f1a2b3c4d5e", digest: "sha256:3f1a...", total: 100, completed: 40 };
 * ```
 */
export interface PullEvent {
  /** `pulling manifest`, `pulling <12 hex>`, `verifying sha256 digest`, `writing manifest`, `success`. */
  status: string;
  /** `sha256:<hex>` of the file being fetched. */
  digest?: string;
  /** Its size. */
  total?: number;
  /** Bytes of it on disk. */
  completed?: number;
}

/**
 * Options for {@linkcode pullModel}.
 *
 * @example
 * ```ts
 * const options: PullOptions = { insecure: true, onProgress: (e) => console.log(e.status) };
 * ```
 */
export interface PullOptions {
  /** Plain HTTP to a registry (Ollama's `--insecure`). */
  insecure?: boolean;
  /** A Hugging Face token (default `$HF_TOKEN`). */
  token?: string;
  /** The instance whose llama.cpp must load the model (default: the default instance, when one is installed). */
  instance?: string;
  /**
   * The key that signs in to an Ollama registry that asks for it (default `$HOME/.ollama/id_ed25519` of
   * `env`, Ollama's key).
   */
  keyPath?: string;
  /** Where `HF_*` settings and `HOME` come from (default: the process environment). */
  env?: Record<string, string | undefined>;
  /** Progress lines. */
  onProgress?: (e: PullEvent) => void;
  /** Stops the pull (what was fetched is kept for the next try). */
  signal?: AbortSignal;
  /** For tests. */
  fetch?: typeof fetch;
}

/**
 * What a pull got.
 *
 * @example
 * ```ts ignore
 * const { name, files } = await pullModel(paths, config, "qwen3:4b");
 * ```
 */
export interface PullResult {
  /** The name to use the model by. */
  name: string;
  /** Where it came from. */
  source: "huggingface" | "ollama" | "url";
  /** Its files on disk. */
  files: string[];
  /** Bytes fetched by this pull (0 when everything was there). */
  fetchedBytes: number;
}

/**
 * What kind of reference `ref` is: a Hugging Face one, a URL of a file, an Ollama name, or none.
 *
 * @example
 * ```ts
 * pullKind("hf.co/org/repo:Q4_K_M"); // "huggingface"
 * pullKind("qwen3:4b"); // "ollama"
 * ```
 */
export function pullKind(
  ref: string,
  env: Record<string, string | undefined> = {},
): PullResult["source"] | undefined {
  if (parseHfRef(ref, { endpoint: env.HF_ENDPOINT })) return "huggingface";
  if (/^https?:\/\//i.test(ref)) return /\.gguf(\?.*)?$/i.test(ref) ? "url" : undefined;
  return isValidModelName(ref) ? "ollama" : undefined;
}

const running = new Map<string, Promise<PullResult>>();

/**
 * Pulls a model. Two pulls of the same reference at once in one process share one pull; across processes the
 * download engine's locks make one download.
 *
 * @example
 * ```ts ignore
 * const r = await pullModel(paths, config, "hf.co/bartowski/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M", {
 *   onProgress: (e) => console.log(e.status, e.completed, e.total),
 * });
 * console.log(r.name);
 * ```
 */
export function pullModel(
  paths: Paths,
  config: Config,
  ref: string,
  options: PullOptions = {},
): Promise<PullResult> {
  const key = `${normalizeName(ref)} ${options.insecure ? "insecure" : ""}`;
  const same = running.get(key);
  if (same) return same;
  const p = pullOnce(paths, config, ref.trim(), options).finally(() => running.delete(key));
  running.set(key, p);
  return p;
}

async function pullOnce(
  paths: Paths,
  config: Config,
  ref: string,
  options: PullOptions,
): Promise<PullResult> {
  const env = options.env ?? Deno.env.toObject();
  const say = (e: PullEvent) => options.onProgress?.(e);
  switch (pullKind(ref, env)) {
    case "huggingface": {
      const r = await pullHuggingFace(ref, {
        env,
        token: options.token,
        onProgress: say,
        signal: options.signal,
        fetch: options.fetch,
      });
      return {
        name: r.name,
        source: "huggingface",
        files: [...r.files, ...(r.mmproj ? [r.mmproj] : [])],
        fetchedBytes: r.fetchedBytes,
      };
    }
    case "url": {
      const url = new URL(ref);
      const file = decodeURIComponent(basename(url.pathname));
      const dest = join(paths.modelsDir, file);
      await Deno.mkdir(paths.modelsDir, { recursive: true });
      const digest = `url:${file}`;
      say({ status: `pulling ${file}`, digest });
      const r = await download({
        url: ref,
        dest,
        onProgress: (p) => say({ status: `pulling ${file}`, digest, total: p.total, completed: p.completed }),
        signal: options.signal,
        fetch: options.fetch,
      });
      say({ status: "success" });
      return { name: file, source: "url", files: [r.path], fetchedBytes: r.fetchedBytes };
    }
    case "ollama": {
      let instance;
      try {
        const rec = await getInstance(paths, options.instance, config.default_instance);
        instance = {
          name: rec.name,
          sourceDir: instanceSourceDir(paths, rec.name),
          version: rec.version,
          commit: rec.commit,
        };
      } catch (err) {
        // With no instance installed there is nothing to check the model against; the pull goes on.
        if (options.instance) throw err;
      }
      const r = await pullOllama(ref, {
        storeDir: ollamaPullDir(paths),
        insecure: options.insecure,
        keyPath: options.keyPath ?? ollamaKeyPath(env),
        instance,
        onProgress: say,
        signal: options.signal,
        fetch: options.fetch,
      });
      return {
        name: r.name,
        source: "ollama",
        files: [r.model, ...(r.projector ? [r.projector] : [])],
        fetchedBytes: r.fetchedBytes,
      };
    }
    default:
      throw new UserError(`'${ref}' is not something to pull`, {
        hint:
          "give an Ollama name (qwen3:4b, user/model:tag), hf.co/org/repo[:QUANT], or an https:// URL of a " +
          ".gguf file",
      });
  }
}

/**
 * Checks a model on disk against the digests its store names its files by (as `/api/pull` of a model that is
 * here already does). Files in a plain folder have no digest to check: the answer is then `checked: 0`. A
 * mismatch throws, naming the file.
 *
 * @example
 * ```ts ignore
 * const { checked } = await verifyModel(entry, (e) => console.log(e.status));
 * ```
 */
export async function verifyModel(
  entry: Pick<ModelEntry, "files" | "mmproj">,
  onProgress?: (e: PullEvent) => void,
): Promise<{ checked: number }> {
  let checked = 0;
  for (const file of [...entry.files, ...(entry.mmproj ? [entry.mmproj] : [])]) {
    const want = await storeDigest(file);
    if (!want) continue;
    if (checked === 0) onProgress?.({ status: "verifying sha256 digest" });
    const got = await sha256File(file).catch((err) => {
      throw new UserError(`cannot read ${file}: ${(err as Error).message}`);
    });
    if (got !== want) {
      throw new UserError(`${file} is damaged: its sha256 is ${got}, its store names it ${want}`, {
        hint: "delete it and pull the model again",
      });
    }
    checked++;
  }
  return { checked };
}
