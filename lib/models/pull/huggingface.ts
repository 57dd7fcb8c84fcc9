/**
 * The Hugging Face source of `llama-mgr pull`: `hf.co/org/repo[:QUANT]`, `huggingface.co/...`, `hf:org/repo`
 * and `https://huggingface.co/org/repo/{blob,resolve}/REV/file.gguf` are listed through the Hub's API, the files
 * are picked as llama.cpp's `-hf` picks them (see `../hf_files.ts`) and stored in the Hugging Face cache exactly
 * as huggingface_hub stores them, so `huggingface-cli`, llama.cpp and the index see them with no copy:
 *
 * ```
 * <hub>/models--org--repo/
 *   blobs/<sha256>                       the LFS file, named by its SHA-256 (a non-LFS file: its git blob id)
 *   snapshots/<commit>/<path in repo>    a relative symlink to the blob (../../blobs/<sha256>)
 *   refs/main                            the commit the revision pointed at (no newline)
 * <hub>/.locks/models--org--repo/<blob>.lock   flock()ed while a blob is written, as huggingface_hub does
 * ```
 *
 * @example
 * ```ts ignore
 * import { pullHuggingFace } from "./huggingface.ts";
 * const r = await pullHuggingFace("hf.co/bartowski/SmolLM2-135M-Instruct-GGUF:Q8_0", {
 *   onProgress: (p) => console.log(p.status, p.completed ?? "", p.total ?? ""),
 * });
 * console.log(r.name, r.files, r.mmproj);
 * ```
 *
 * @module
 */
import { dirname, join, relative } from "node:path";
import { UserError } from "../../util/errors.ts";
import { expandHome, writeFileAtomic } from "../../util/fs.ts";
import { hfHubDir } from "../sources.ts";
import {
  ggufNameInfo,
  isModelFile,
  pickMmproj,
  pickModelFile,
  quantTag,
  repoQuants,
  splitParts,
} from "../hf_files.ts";
import { download, DownloadError } from "./download.ts";

/** The Hub when `HF_ENDPOINT` does not name another. */
export const HF_DEFAULT_ENDPOINT = "https://huggingface.co";

/** A parsed Hugging Face reference. */
export interface HfRef {
  /** `org/repo`, as the Hub spells it. */
  repo: string;
  /** Branch, tag or commit (`main` unless a URL names one). */
  revision: string;
  /** The quant asked for (`Q4_K_M`, any case); none means llama.cpp's default. */
  tag?: string;
  /** The exact file a URL names (its path in the repo). */
  file?: string;
}

/** A file of a repo, as the Hub's tree API lists it. */
export interface HfRepoFile {
  /** Path in the repo. */
  path: string;
  /** Size in bytes (of the LFS file, for one). */
  size: number;
  /** The git blob id (40 hex). */
  oid: string;
  /** The SHA-256 of an LFS file (64 hex): its blob name in the cache. */
  sha256?: string;
}

/** A repo's files at one commit. */
export interface HfRepoListing {
  /** The commit the revision points at (40 hex). */
  commit: string;
  /** Every file, in the Hub's order. */
  files: HfRepoFile[];
  /** The repo asks users to accept its licence (the revision API's `gated`; unknown for a commit). */
  gated?: boolean;
}

/** A progress line, as Ollama's `/api/pull` streams them. */
export interface PullProgress {
  /** `pulling manifest`, `pulling <12 hex>`, `verifying sha256 digest`, `writing manifest`, `success`... */
  status: string;
  /** `sha256:<hex>` of the file being pulled. */
  digest?: string;
  /** Its size. */
  total?: number;
  /** Bytes of it on disk. */
  completed?: number;
}

/** Options for {@linkcode pullHuggingFace} (every one has a default from the environment). */
export interface HfPullOptions {
  /** The hub cache (default: `$HF_HUB_CACHE`, `$HF_HOME/hub`, `~/.cache/huggingface/hub`). */
  hubDir?: string;
  /** The Hub (default: `$HF_ENDPOINT`, else https://huggingface.co). */
  endpoint?: string;
  /** An access token (default: `$HF_TOKEN`, else the token `huggingface-cli login` saved). */
  token?: string;
  /** Use the cache only (default: `$HF_HUB_OFFLINE`). */
  offline?: boolean;
  /** Also pull the projector llama.cpp would pair (default true). */
  mmproj?: boolean;
  /** Where the defaults come from (default: Deno.env). */
  env?: Record<string, string | undefined>;
  /** Progress lines. */
  onProgress?: (p: PullProgress) => void;
  /** Stops the pull. */
  signal?: AbortSignal;
  /** The fetch to use (tests). */
  fetch?: typeof fetch;
}

/** What a pull got. */
export interface HfPullResult {
  /** `org/repo`. */
  repo: string;
  /** The revision asked for. */
  revision: string;
  /** The commit it pointed at. */
  commit: string;
  /** The model's files in the snapshot (every part of a split model, in order). */
  files: string[];
  /** The paired projector in the snapshot. */
  mmproj?: string;
  /** The name the index finds it by: `hf.co/org/repo:QUANT` (`hf.co/org/repo` for a file without a quant). */
  name: string;
  /** Bytes downloaded (0 when everything was in the cache already). */
  fetchedBytes: number;
  /** True when the Hub was not asked (offline) or could not be reached and the cache had it all. */
  fromCache: boolean;
}

/** The Hub refused a request or could not be reached (`status` undefined); the message says what to do. */
export class HubError extends UserError {
  /** The HTTP status, when the Hub answered. */
  status?: number;
  /** Builds the error. */
  constructor(message: string, options: { status?: number; hint?: string; cause?: unknown } = {}) {
    super(message, { hint: options.hint, cause: options.cause });
    this.name = "HubError";
    this.status = options.status;
  }
}

const COMMIT_RE = /^[0-9a-f]{40}$/;
const SHA256_RE = /^[0-9a-f]{64}$/;
// huggingface_hub's validate_repo_id: word characters, `-` and `.`, neither first nor last, no `--` or `..`
// (`--` separates the parts of the cache folder's name).
const REPO_PART_RE = /^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?$/;
const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;
const NOT_USERS = new Set(["datasets", "spaces", "api", "docs", "models", "collections"]);

function validRepo(org: string, name: string): boolean {
  return [org, name].every((p) => REPO_PART_RE.test(p) && !p.includes("--") && !p.includes("..")) &&
    !NOT_USERS.has(org.toLowerCase());
}

/** A path inside the repo that stays inside the snapshot folder (huggingface_hub's _validate_relative_filename). */
function safeRepoPath(p: string): boolean {
  return p !== "" && !p.startsWith("/") && !p.includes("\\") && !/^[A-Za-z]:/.test(p) &&
    p.split("/").every((s) => s !== "" && s !== "." && s !== "..");
}

function safeRevision(rev: string): boolean {
  return safeRepoPath(rev) && !/[\0\n]/.test(rev);
}

function decode(s: string): string | undefined {
  try {
    return decodeURIComponent(s);
  } catch {
    return undefined;
  }
}

/**
 * Parses a Hugging Face reference; undefined for anything else (an Ollama name, a path...). Forms:
 * `hf.co/Org/Repo[:QUANT]`, `huggingface.co/Org/Repo[:QUANT]`, `hf:Org/Repo[:QUANT]`, and the web's URLs
 * `https://huggingface.co/Org/Repo[/tree/REV]` and `.../{blob,resolve}/REV/path/file.gguf` (the exact file).
 * A tag of `latest` (Ollama's default tag) means no tag. URLs of `endpoint`'s host are taken too.
 *
 * @example
 * ```ts
 * parseHfRef("hf.co/bartowski/Qwen3-4B-GGUF:q4_k_m"); // { repo: "bartowski/Qwen3-4B-GGUF", revision: "main", tag: "q4_k_m" }
 * parseHfRef("https://huggingface.co/org/r/blob/main/sub/m-Q8_0.gguf"); // { repo: "org/r", revision: "main", file: "sub/m-Q8_0.gguf" }
 * parseHfRef("qwen3:4b"); // undefined
 * ```
 */
export function parseHfRef(ref: string, options: { endpoint?: string } = {}): HfRef | undefined {
  const s = ref.trim();
  let rest: string | undefined;
  let url = false;
  const host = s.match(/^(https?:\/\/)?(?:www\.)?(?:hf\.co|huggingface\.co)\/(.*)$/i);
  if (host) {
    rest = host[2];
    url = true;
  } else if (/^hf:/i.test(s)) {
    rest = s.slice(3);
  } else if (options.endpoint) {
    const base = options.endpoint.replace(/\/+$/, "");
    if (s.toLowerCase().startsWith(base.toLowerCase() + "/")) {
      rest = s.slice(base.length + 1);
      url = true;
    }
  }
  if (rest === undefined) return undefined;
  if (url) rest = rest.replace(/[?#].*$/, "");
  const parts = rest.replace(/\/+$/, "").split("/");
  if (parts.length < 2) return undefined;
  const [org, nameAndTag, ...more] = parts;
  let name = nameAndTag;
  let tag: string | undefined;
  const colon = nameAndTag.indexOf(":");
  if (colon >= 0) {
    if (more.length) return undefined;
    name = nameAndTag.slice(0, colon);
    tag = nameAndTag.slice(colon + 1);
    if (!TAG_RE.test(tag)) return undefined;
    if (tag.toLowerCase() === "latest") tag = undefined;
  }
  if (!validRepo(org, name)) return undefined;
  const repo = `${org}/${name}`;
  if (!more.length) return tag ? { repo, revision: "main", tag } : { repo, revision: "main" };
  const [kind, rawRev, ...path] = more;
  const revision = rawRev === undefined ? undefined : decode(rawRev);
  if (!revision || !safeRevision(revision)) return undefined;
  if (kind === "tree" && path.length === 0) return { repo, revision };
  if (kind !== "blob" && kind !== "resolve") return undefined;
  const file = path.map(decode);
  if (!file.length || file.some((p) => p === undefined)) return undefined;
  const joined = file.join("/");
  return safeRepoPath(joined) ? { repo, revision, file: joined } : undefined;
}

/** A reference given as an object, checked as a parsed one is (its parts become paths in the cache). */
function validRef(ref: HfRef): HfRef | undefined {
  const [org, name, ...more] = ref.repo.split("/");
  const ok = !more.length && name !== undefined && validRepo(org, name) && safeRevision(ref.revision) &&
    (ref.tag === undefined || TAG_RE.test(ref.tag)) && (ref.file === undefined || safeRepoPath(ref.file));
  return ok ? ref : undefined;
}

function isTrue(v: string | undefined): boolean {
  return v !== undefined && ["1", "ON", "YES", "TRUE"].includes(v.toUpperCase());
}

/**
 * The access token huggingface_hub would use: `$HF_TOKEN` (or the older `$HUGGING_FACE_HUB_TOKEN`), else the
 * file `huggingface-cli login` writes (`$HF_TOKEN_PATH`, default `$HF_HOME/token`).
 *
 * @example
 * ```ts
 * hfToken({ HF_TOKEN: "hf_abc" }); // "hf_abc"
 * ```
 */
export function hfToken(env: Record<string, string | undefined>): string | undefined {
  const clean = (t: string | undefined) => t?.replace(/[\r\n]/g, "").trim() || undefined;
  const fromEnv = clean(env.HF_TOKEN || env.HUGGING_FACE_HUB_TOKEN);
  if (fromEnv) return fromEnv;
  const home = env.HF_HOME
    ? expandHome(env.HF_HOME)
    : join(env.XDG_CACHE_HOME || join(env.HOME ?? "/", ".cache"), "huggingface");
  const path = env.HF_TOKEN_PATH ? expandHome(env.HF_TOKEN_PATH) : join(home, "token");
  try {
    return clean(Deno.readTextFileSync(path));
  } catch {
    return undefined;
  }
}

/** The cache folder of a model repo: `models--org--repo`. */
export function hfRepoFolder(repo: string): string {
  return `models--${repo.split("/").join("--")}`;
}

interface HubContext {
  repo: string;
  revision: string;
  endpoint: string;
  token?: string;
  fetch: typeof fetch;
  signal?: AbortSignal;
}

function webUrl(ctx: HubContext): string {
  return `${ctx.endpoint}/${ctx.repo}`;
}

/** The Hub's refusal, in words that say what to do. */
function refusal(
  status: number,
  ctx: HubContext,
  detail: { code?: string | null; message?: string | null; file?: string } = {},
): HubError {
  if (status === 401 || status === 403) {
    const what = detail.code === "GatedRepo" ? "gated" : "gated or private";
    return new HubError(
      `${ctx.repo} is ${what}: the Hub answered ${status}${detail.message ? ` (${detail.message})` : ""}; ` +
        `accept its licence on ${webUrl(ctx)} and set HF_TOKEN (or --token)`,
      {
        status,
        hint: ctx.token
          ? `the token given was refused for ${ctx.repo}: sign in on ${
            webUrl(ctx)
          } with the account the token ` +
            "belongs to, accept the licence (or ask for access), or use a token with read access"
          : `sign in on ${webUrl(ctx)}, accept the licence (or ask for access), make a read token at ` +
            `${ctx.endpoint}/settings/tokens and set HF_TOKEN=hf_... (or pass --token); a repo that does not exist ` +
            "is answered the same way without a token",
      },
    );
  }
  if (status === 404) {
    if (detail.code === "RevisionNotFound") {
      return new HubError(`revision '${ctx.revision}' not found in ${ctx.repo}`, {
        status,
        hint: `see the branches and tags on ${webUrl(ctx)}`,
      });
    }
    if (detail.code === "EntryNotFound" && detail.file) {
      return new HubError(`${detail.file} not found in ${ctx.repo} at ${ctx.revision}`, { status });
    }
    return new HubError(`repo ${ctx.repo} not found on ${ctx.endpoint}`, {
      status,
      hint:
        `check the name (org/repo, as in ${HF_DEFAULT_ENDPOINT}/org/repo); names are case-sensitive on the Hub`,
    });
  }
  return new HubError(
    `${ctx.endpoint} answered ${status} for ${ctx.repo}${detail.message ? `: ${detail.message}` : ""}`,
    {
      status,
      hint: status >= 500 || status === 429 ? "the Hub is busy or down: try again later" : undefined,
    },
  );
}

async function hubGet(url: string, ctx: HubContext): Promise<Response> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (ctx.token) headers.Authorization = `Bearer ${ctx.token}`;
  let res: Response;
  try {
    res = await ctx.fetch(url, { headers, signal: ctx.signal });
  } catch (err) {
    if (ctx.signal?.aborted) throw err;
    throw new HubError(`cannot reach ${ctx.endpoint}: ${(err as Error).message}`, {
      cause: err,
      hint: "check the network (or HF_ENDPOINT); with HF_HUB_OFFLINE=1 models already in the cache are used",
    });
  }
  if (res.ok) return res;
  let message = res.headers.get("x-error-message");
  try {
    message ??= (await res.json())?.error ?? null;
  } catch {
    await res.body?.cancel().catch(() => {});
  }
  throw refusal(res.status, ctx, { code: res.headers.get("x-error-code"), message });
}

async function hubJson(url: string, ctx: HubContext): Promise<{ body: unknown; res: Response }> {
  const res = await hubGet(url, ctx);
  try {
    return { body: await res.json(), res };
  } catch (err) {
    throw new HubError(`${ctx.endpoint} sent a listing of ${ctx.repo} that is not JSON`, { cause: err });
  }
}

function nextPage(res: Response, url: string): string | undefined {
  const link = res.headers.get("link");
  const m = link?.match(/<([^>]+)>\s*;\s*rel="?next"?/);
  return m ? new URL(m[1], url).href : undefined;
}

function toRepoFile(item: unknown): HfRepoFile | undefined {
  if (!item || typeof item !== "object") return undefined;
  const e = item as { type?: unknown; path?: unknown; size?: unknown; oid?: unknown; lfs?: unknown };
  if (e.type !== "file" || typeof e.path !== "string" || !safeRepoPath(e.path)) return undefined;
  const lfs = e.lfs && typeof e.lfs === "object" ? e.lfs as { oid?: unknown; size?: unknown } : undefined;
  const sha256 = typeof lfs?.oid === "string" ? lfs.oid.toLowerCase() : undefined;
  const oid = typeof e.oid === "string" ? e.oid.toLowerCase() : "";
  const size = typeof lfs?.size === "number" ? lfs.size : typeof e.size === "number" ? e.size : -1;
  // A name that is not a hash would become a path in blobs/: skip it, as llama.cpp does.
  if (sha256 !== undefined ? !SHA256_RE.test(sha256) : !COMMIT_RE.test(oid)) return undefined;
  if (!Number.isSafeInteger(size) || size < 0) return undefined;
  return sha256 ? { path: e.path, size, oid, sha256 } : { path: e.path, size, oid };
}

function hubContext(repo: string, revision: string, options: HfListOptions): HubContext {
  return {
    repo,
    revision,
    endpoint: (options.endpoint ?? HF_DEFAULT_ENDPOINT).replace(/\/+$/, ""),
    token: options.token,
    fetch: options.fetch ?? fetch,
    signal: options.signal,
  };
}

/** Options for {@linkcode listHfRepo}. */
export interface HfListOptions {
  /** The Hub (default https://huggingface.co). */
  endpoint?: string;
  /** An access token. */
  token?: string;
  /** Stops the listing. */
  signal?: AbortSignal;
  /** The fetch to use. */
  fetch?: typeof fetch;
}

/**
 * A repo's files at a revision, as huggingface_hub's snapshot_download lists them: the revision's commit from
 * `GET /api/models/{repo}/revision/{rev}` (skipped for a commit hash), then
 * `GET /api/models/{repo}/tree/{commit}?recursive=true`, page after page (`Link: <...>; rel="next"`). Each file
 * has `size`, `oid` and, for an LFS file, `lfs.oid`: its SHA-256.
 *
 * @example
 * ```ts ignore
 * const { commit, files } = await listHfRepo("bartowski/SmolLM2-135M-Instruct-GGUF", "main");
 * ```
 */
export async function listHfRepo(
  repo: string,
  revision: string,
  options: HfListOptions = {},
): Promise<HfRepoListing> {
  const ctx = hubContext(repo, revision, options);
  const api = `${ctx.endpoint}/api/models/${repo}`;
  let commit = revision;
  let gated: boolean | undefined;
  if (!COMMIT_RE.test(revision)) {
    const { body } = await hubJson(`${api}/revision/${encodeURIComponent(revision)}`, ctx);
    const info = (body ?? {}) as { sha?: unknown; gated?: unknown };
    if (typeof info.sha !== "string" || !COMMIT_RE.test(info.sha)) {
      throw new HubError(`${ctx.endpoint} gave no commit for ${repo} at ${revision}`);
    }
    commit = info.sha;
    gated = !!info.gated; // false, or "auto" / "manual"
  }
  const files: HfRepoFile[] = [];
  let url: string | undefined = `${api}/tree/${commit}?recursive=true`;
  for (let page = 0; url && page < 10_000; page++) {
    const { body, res }: { body: unknown; res: Response } = await hubJson(url, ctx);
    if (!Array.isArray(body)) throw new HubError(`${ctx.endpoint} sent a tree of ${repo} that is not a list`);
    for (const item of body) {
      const f = toRepoFile(item);
      if (f) files.push(f);
    }
    url = nextPage(res, url);
  }
  return gated === undefined ? { commit, files } : { commit, files, gated };
}

/** The files a reference names in a listing: the model's (all parts) and its projector. */
interface Plan<T extends { path: string }> {
  model: T[];
  mmproj?: T;
}

function plan<T extends { path: string }>(files: T[], ref: HfRef, withMmproj: boolean): Plan<T> {
  const ggufs = files.filter((f) => f.path.toLowerCase().endsWith(".gguf"));
  let primary: T | undefined;
  if (ref.file) {
    primary = files.find((f) => f.path.toLowerCase() === ref.file!.toLowerCase());
    if (!primary) {
      throw new UserError(`${ref.repo} has no file ${ref.file} at ${ref.revision}`, {
        hint: ggufs.length
          ? `its GGUF files: ${ggufs.slice(0, 12).map((f) => f.path).join(", ")}${
            ggufs.length > 12 ? ", ..." : ""
          }`
          : `${ref.repo} has no GGUF files`,
      });
    }
    if (!primary.path.toLowerCase().endsWith(".gguf")) {
      throw new UserError(`${ref.file} in ${ref.repo} is not a GGUF file`, {
        hint: "llama-mgr pulls GGUF models; `llama-mgr convert` makes one from a Hugging Face folder",
      });
    }
  } else {
    primary = pickModelFile(files, ref.tag);
    if (!primary) {
      const quants = repoQuants(files);
      if (!ggufs.some((f) => isModelFile(f.path))) {
        throw new UserError(`${ref.repo} has no GGUF model files at ${ref.revision}`, {
          hint: "llama-mgr pulls GGUF models; `llama-mgr convert` makes one from a Hugging Face folder",
        });
      }
      throw new UserError(
        `${ref.repo} has no ${ref.tag} file; its quants: ${
          quants.length ? quants.join(", ") : "(none named)"
        }`,
        { hint: quants.length ? `e.g. hf.co/${ref.repo}:${quants[0]}` : undefined },
      );
    }
  }
  const model = splitParts(files, primary);
  const info = ggufNameInfo(primary.path);
  if (info && model.length !== info.count) {
    throw new UserError(
      `${primary.path} is part of a split model of ${info.count} parts, but ${ref.repo} has ${model.length} of them`,
    );
  }
  const mmproj = withMmproj && isModelFile(primary.path) ? pickMmproj(files, primary.path) : undefined;
  return mmproj ? { model, mmproj } : { model };
}

/** The files below a snapshot folder (links followed), as paths in the repo, sorted. */
async function snapshotFiles(dir: string): Promise<{ path: string }[]> {
  const out: { path: string }[] = [];
  const walk = async (d: string, rel: string[], depth: number) => {
    let entries: Deno.DirEntry[];
    try {
      entries = await Array.fromAsync(Deno.readDir(d));
    } catch {
      return;
    }
    for (const e of entries) {
      const full = join(d, e.name);
      if (e.isDirectory && depth < 16) await walk(full, [...rel, e.name], depth + 1);
      else if ((e.isFile || e.isSymlink) && (await statSize(full)) !== undefined) {
        out.push({ path: [...rel, e.name].join("/") });
      }
    }
  };
  await walk(dir, [], 0);
  return out.sort((a, b) => a.path < b.path ? -1 : a.path > b.path ? 1 : 0);
}

async function statSize(path: string): Promise<number | undefined> {
  try {
    const info = await Deno.stat(path);
    return info.isFile ? info.size : undefined;
  } catch {
    return undefined;
  }
}

/** Runs `fn` holding huggingface_hub's lock for a blob (an flock on `.locks/<folder>/<blob>.lock`). */
async function withBlobLock<T>(path: string, fn: () => Promise<T>): Promise<T> {
  await Deno.mkdir(dirname(path), { recursive: true });
  const file = await Deno.open(path, { read: true, write: true, create: true, mode: 0o664 });
  try {
    await file.lock(true);
    return await fn();
  } finally {
    file.close(); // closing releases the lock
  }
}

/** Points `pointer` at `blob` with a relative symlink (a copy where links cannot be made), replacing it. */
async function linkPointer(blob: string, pointer: string): Promise<void> {
  await Deno.mkdir(dirname(pointer), { recursive: true });
  await Deno.remove(pointer).catch(() => {});
  try {
    await Deno.symlink(relative(dirname(pointer), blob), pointer);
  } catch (err) {
    if (err instanceof Deno.errors.AlreadyExists) return; // another pull linked it meanwhile
    await Deno.copyFile(blob, pointer);
  }
}

async function gitBlobId(path: string): Promise<string> {
  const data = await Deno.readFile(path);
  const head = new TextEncoder().encode(`blob ${data.length}\0`);
  const all = new Uint8Array(head.length + data.length);
  all.set(head);
  all.set(data, head.length);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-1", all));
  return [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
}

const CACHEDIR_TAG = "Signature: 8a477f597d28d172789f06886806bc55\n" +
  "# This file is a cache directory tag created by huggingface_hub.\n" +
  "# For information about cache directory tags, see:\n" +
  "#\thttps://bford.info/cachedir/\n";

function displayRef(ref: HfRef): string {
  if (ref.file) return `${ref.repo}/${ref.file}`;
  return `hf.co/${ref.repo}${ref.tag ? `:${ref.tag}` : ""}`;
}

function resultName(repo: string, primary: string): string {
  const tag = quantTag(primary);
  return tag ? `hf.co/${repo}:${tag}` : `hf.co/${repo}`;
}

/** The model a reference names, from the cache alone; undefined when the cache does not have all of it. */
async function fromCache(
  storage: string,
  ref: HfRef,
  withMmproj: boolean,
): Promise<Omit<HfPullResult, "fetchedBytes" | "fromCache"> | undefined> {
  let commit = ref.revision;
  if (!COMMIT_RE.test(commit)) {
    try {
      commit = (await Deno.readTextFile(join(storage, "refs", ...ref.revision.split("/")))).trim();
    } catch {
      return undefined;
    }
    if (!COMMIT_RE.test(commit)) return undefined;
  }
  const snapshot = join(storage, "snapshots", commit);
  const files = await snapshotFiles(snapshot);
  let chosen: Plan<{ path: string }>;
  try {
    chosen = plan(files, ref, withMmproj);
  } catch {
    return undefined;
  }
  const at = (f: { path: string }) => join(snapshot, ...f.path.split("/"));
  return {
    repo: ref.repo,
    revision: ref.revision,
    commit,
    files: chosen.model.map(at),
    ...(chosen.mmproj ? { mmproj: at(chosen.mmproj) } : {}),
    name: resultName(ref.repo, chosen.model[0].path),
  };
}

/**
 * Pulls a model from the Hugging Face Hub into the Hugging Face cache: lists the repo, picks the file as
 * llama.cpp's `-hf` does (the tag, else Q4_K_M, Q8_0, the first), with every part of a split model and the
 * paired `mmproj`, downloads each from `{endpoint}/{repo}/resolve/{commit}/{path}` checking its SHA-256 against
 * the LFS oid, and links it into `snapshots/<commit>/`. Files already there are not fetched again. Offline
 * (`HF_HUB_OFFLINE=1`), or when the Hub cannot be reached, a model the cache has is used as it is.
 *
 * @example
 * ```ts ignore
 * const r = await pullHuggingFace("hf.co/bartowski/SmolLM2-135M-Instruct-GGUF", { onProgress: console.log });
 * r.name; // "hf.co/bartowski/SmolLM2-135M-Instruct-GGUF:Q4_K_M"
 * ```
 */
export async function pullHuggingFace(
  ref: string | HfRef,
  options: HfPullOptions = {},
): Promise<HfPullResult> {
  const env = options.env ?? Deno.env.toObject();
  const endpoint = (options.endpoint ?? (env.HF_ENDPOINT || HF_DEFAULT_ENDPOINT)).replace(/\/+$/, "");
  const parsed = typeof ref === "string" ? parseHfRef(ref, { endpoint }) : validRef(ref);
  if (!parsed) {
    throw new UserError(
      `'${typeof ref === "string" ? ref : JSON.stringify(ref)}' is not a Hugging Face reference`,
      {
        hint: "use hf.co/org/repo[:QUANT] or a https://huggingface.co/org/repo/... URL",
      },
    );
  }
  const hubDir = options.hubDir ?? hfHubDir(env);
  const storage = join(hubDir, hfRepoFolder(parsed.repo));
  const offline = options.offline ?? isTrue(env.HF_HUB_OFFLINE || env.TRANSFORMERS_OFFLINE);
  const withMmproj = options.mmproj ?? true;
  const say = (p: PullProgress) => options.onProgress?.(p);
  const cached = async (reason: string, cause?: unknown): Promise<HfPullResult> => {
    const hit = await fromCache(storage, parsed, withMmproj);
    if (!hit) {
      throw new HubError(
        `${reason}, and ${displayRef(parsed)} is not in the Hugging Face cache (${storage})`,
        {
          cause,
          hint: offline
            ? "unset HF_HUB_OFFLINE (and TRANSFORMERS_OFFLINE) to download it"
            : cause instanceof UserError
            ? cause.hint
            : undefined,
        },
      );
    }
    for (const s of ["verifying sha256 digest", "writing manifest", "success"]) say({ status: s });
    return { ...hit, fetchedBytes: 0, fromCache: true };
  };
  if (offline) return await cached(options.offline ? "offline" : "offline (HF_HUB_OFFLINE is set)");

  const token = options.token ?? hfToken(env);
  const ctx = hubContext(parsed.repo, parsed.revision, { ...options, endpoint, token });
  say({ status: "pulling manifest" });
  let listing: HfRepoListing;
  try {
    listing = await listHfRepo(parsed.repo, parsed.revision, { ...options, endpoint, token });
  } catch (err) {
    if (err instanceof HubError && err.status === undefined) return await cached(err.message, err);
    throw err;
  }
  const { commit } = listing;
  const chosen = plan(listing.files, parsed, withMmproj);

  // As huggingface_hub: the cache tag, then the ref, then each blob under its lock, then its snapshot link.
  await Deno.mkdir(storage, { recursive: true });
  const tag = join(hubDir, "CACHEDIR.TAG");
  if ((await statSize(tag)) === undefined) await Deno.writeTextFile(tag, CACHEDIR_TAG).catch(() => {});
  if (parsed.revision !== commit) {
    const refFile = join(storage, "refs", ...parsed.revision.split("/"));
    const old = await Deno.readTextFile(refFile).catch(() => undefined);
    if (old !== commit) await writeFileAtomic(refFile, commit);
  }
  const snapshot = join(storage, "snapshots", commit);
  const headers: Record<string, string> = token ? { Authorization: `Bearer ${token}` } : {};
  let fetchedBytes = 0;
  const store = async (file: HfRepoFile): Promise<string> => {
    const blobName = file.sha256 ?? file.oid;
    const blob = join(storage, "blobs", blobName);
    const pointer = join(snapshot, ...file.path.split("/"));
    const line = {
      status: `pulling ${file.sha256 ? file.sha256.slice(0, 12) : file.path}`,
      ...(file.sha256 ? { digest: `sha256:${file.sha256}` } : {}),
      total: file.size,
    };
    if ((await statSize(pointer)) === file.size) {
      say({ ...line, completed: file.size });
      return pointer;
    }
    await withBlobLock(join(hubDir, ".locks", hfRepoFolder(parsed.repo), `${blobName}.lock`), async () => {
      if ((await statSize(blob)) !== file.size) {
        say({ ...line, completed: 0 });
        const url = `${endpoint}/${parsed.repo}/resolve/${commit}/${
          file.path.split("/").map(encodeURIComponent).join("/")
        }`;
        try {
          const r = await download({
            url,
            dest: blob,
            size: file.size,
            ...(file.sha256 ? { sha256: file.sha256 } : {}),
            headers,
            onProgress: (p) => say({ ...line, completed: p.completed }),
            signal: options.signal,
            fetch: options.fetch,
          });
          fetchedBytes += r.fetchedBytes;
        } catch (err) {
          if (err instanceof DownloadError && err.status !== undefined && err.status >= 400) {
            // The listing of a gated repo is public; its files are not (401 without a token, 403 without access).
            const code = err.status === 404 ? "EntryNotFound" : listing.gated ? "GatedRepo" : undefined;
            throw refusal(err.status, ctx, { code, file: file.path });
          }
          throw err;
        }
        if (!file.sha256 && (await gitBlobId(blob)) !== file.oid) {
          await Deno.remove(blob).catch(() => {});
          throw new HubError(`${file.path} from ${parsed.repo} does not match its git blob id ${file.oid}`, {
            hint: "try again; a proxy may have changed it",
          });
        }
      }
      say({ ...line, completed: file.size });
      await linkPointer(blob, pointer);
    });
    return pointer;
  };
  const files: string[] = [];
  for (const f of chosen.model) files.push(await store(f));
  const mmproj = chosen.mmproj ? await store(chosen.mmproj) : undefined;
  say({ status: "verifying sha256 digest" });
  say({ status: "writing manifest" });
  say({ status: "success" });
  return {
    repo: parsed.repo,
    revision: parsed.revision,
    commit,
    files,
    ...(mmproj ? { mmproj } : {}),
    name: resultName(parsed.repo, chosen.model[0].path),
    fetchedBytes,
    fromCache: false,
  };
}
