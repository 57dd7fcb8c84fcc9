/**
 * KV caches kept across evictions. Before a runner is stopped, each of its idle slots that holds a conversation
 * is saved by llama-server itself (`POST /slots/{id}?action=save`) into one directory under the data dir (every
 * runner's `--slot-save-path`). A saved file starts with the tokens the slot held, so its key is the hash of
 * the model and those tokens. When a later request to a freshly started runner of the same model continues a
 * saved conversation (its prompt, tokenized by the runner, shares a long prefix with the saved tokens), the file
 * is restored into an idle slot (`action=restore`) and the request is pinned to that slot (`id_slot`), so
 * llama-server computes only the new tokens. The prompt is known for Ollama's `/api/chat` and `/api/generate`,
 * OpenAI's chat completions, completions and Responses, and Anthropic's messages (./chat_forms.ts); llama-server
 * drops `id_slot` from Anthropic's body, but picks by itself the idle slot whose tokens share the longest prefix
 * with the prompt, which is the restored one. The files are bounded by a size cap, least recently used removed
 * first; the index (`index.json`) is written atomically.
 *
 * A restore that fails (a file from another cache type, a conversation longer than the new context, no room
 * left in a shared KV cache) costs one request to llama-server and is not tried again on that runner; the
 * request then runs as if nothing had been saved.
 *
 * @module
 */
import { join } from "node:path";
import { createHash } from "node:crypto";
import { readJson, writeJsonAtomic } from "../../util/fs.ts";
import { formatBytes } from "../../util/fs.ts";
import { UserError } from "../../util/errors.ts";
import { postJson, upstreamAuth } from "../upstream/client.ts";
import { anthropicToChat, responsesToChat } from "./chat_forms.ts";

/** The default size cap of the saved KV caches: 2 GiB. */
export const DEFAULT_KV_CACHE_MAX_BYTES: number = 2 * 1024 ** 3;

/** Conversations shorter than this many tokens are not worth a file (recomputing them is as quick). */
const MIN_TOKENS = 32;
/** How long saving a runner's slots may take before the runner is stopped anyway. */
const SAVE_TIMEOUT_MS = 30_000;
/** How long `GET /slots` may take before saving is given up. */
const LIST_TIMEOUT_MS = 5_000;
/** A `pending-*` file older than this was left by a daemon that died while saving. */
const STALE_MS = 10 * 60_000;
/** After this many requests to a runner without a restore, it stops looking (each look tokenizes the prompt). */
const LOOKS_PER_RUNNER = 32;
/** llama.cpp's `LLAMA_STATE_SEQ_MAGIC` ('ggsq') and the version whose header this module reads. */
const SEQ_MAGIC = 0x67677371;

/**
 * Reads a size such as `2GiB`, `512 MB`, `1.5G` or a number of bytes.
 *
 * @example
 * ```ts
 * parseByteSize("2GiB"); // 2147483648
 * parseByteSize(0); // 0 (off)
 * ```
 */
export function parseByteSize(value: string | number): number {
  if (typeof value === "number") {
    if (Number.isFinite(value) && value >= 0) return Math.floor(value);
  } else {
    const m = value.trim().match(/^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?$/i);
    if (m) {
      const power = " kmgt".indexOf(m[2].toLowerCase() || " ");
      const base = m[3] || !m[2] ? 1024 : 1000;
      return Math.floor(Number(m[1]) * base ** power);
    }
  }
  throw new UserError(`invalid size ${JSON.stringify(value)}`, {
    hint: "give bytes or a size such as 512MiB or 2GiB (0 turns it off)",
  });
}

/**
 * One saved conversation.
 *
 * @example
 * ```ts
 * const e: KvEntry = { file: "kv-1a2b.bin", model: "/m/smol.gguf", tokens: 4012, bytes: 92_000_000, lastUsed: 0 };
 * ```
 */
export interface KvEntry {
  /** File name in the cache directory. */
  file: string;
  /** The runner it came from (model file, template, adapters and cache settings). */
  model: string;
  /** Tokens it holds. */
  tokens: number;
  /** File size. */
  bytes: number;
  /** When it was saved or last restored (ms since the epoch). */
  lastUsed: number;
}

/**
 * Counters since the cache was opened.
 *
 * @example
 * ```ts ignore
 * const { saved, restored, restoredTokens } = cache.stats();
 * ```
 */
export interface KvStats {
  /** Slots saved. */
  saved: number;
  /** Slots restored. */
  restored: number;
  /** Tokens llama-server did not have to compute thanks to restores. */
  restoredTokens: number;
}

/**
 * The store of saved slots.
 *
 * @example
 * ```ts ignore
 * const cache = await openKvCache({ dir: "/data/daemon/slots", maxBytes: 2 * 1024 ** 3 });
 * await cache.save("http://127.0.0.1:41234", "/models/smol.gguf");  // before stopping that runner
 * const body = await cache.resume(url, "/models/smol.gguf", "/v1/chat/completions", { messages });
 * ```
 */
export interface KvCache {
  /** The directory (every runner's `--slot-save-path`). */
  readonly dir: string;
  /** The size cap in bytes. */
  readonly maxBytes: number;
  /** Saves the idle slots of the runner at `url` (of runner `model`) that hold a conversation. */
  save(url: string, model: string): Promise<KvEntry[]>;
  /**
   * Restores into an idle slot of the runner at `url` the saved conversation that the request continues, if
   * any not yet restored there; returns the body to send (pinned with `id_slot` after a restore).
   */
  resume(
    url: string,
    model: string,
    path: string,
    body: Record<string, unknown>,
  ): Promise<Record<string, unknown>>;
  /** Whether a saved conversation of `model` could still be restored into the runner at `url` (no I/O). */
  candidates(url: string, model: string): boolean;
  /** Forgets what was restored into the runner at `url` (it stopped). */
  forget(url: string): void;
  /** The saved conversations, most recently used first. */
  entries(): KvEntry[];
  /** Counters. */
  stats(): KvStats;
}

/**
 * Options for {@linkcode openKvCache}.
 *
 * @example
 * ```ts
 * const options: KvCacheOptions = { dir: "/tmp/slots", maxBytes: 512 * 1024 ** 2 };
 * ```
 */
export interface KvCacheOptions {
  /** Directory of the files and the index. */
  dir: string;
  /** Size cap in bytes (default {@linkcode DEFAULT_KV_CACHE_MAX_BYTES}). */
  maxBytes?: number;
  /** Log sink. */
  log?: (line: string) => void;
  /** Clock for `lastUsed` (tests). */
  now?: () => number;
}

interface IndexFile {
  version: 1;
  entries: KvEntry[];
}

/**
 * The tokens at the start of a slot file written by llama-server (`llama_state_seq_save_file`: magic, version,
 * count, then the slot's tokens, packed by the server as a marker, a format version and the token list, or as
 * a plain token list by older servers); undefined when the file is not one.
 *
 * @example
 * ```ts ignore
 * const tokens = await readSlotTokens("/data/daemon/slots/kv-1a2b.bin");
 * ```
 */
export async function readSlotTokens(path: string): Promise<Int32Array | undefined> {
  const f = await Deno.open(path, { read: true });
  try {
    const head = new Uint8Array(12);
    if (!(await readFull(f, head))) return undefined;
    const hv = new DataView(head.buffer);
    if (hv.getUint32(0, true) !== SEQ_MAGIC) return undefined;
    const n = hv.getUint32(8, true);
    if (n > 16 * 1024 * 1024) return undefined;
    const words = new Uint8Array(n * 4);
    if (!(await readFull(f, words))) return undefined;
    const all = new Int32Array(words.buffer);
    if (all.length === 0 || all[0] !== -1) return all;
    // [-1, state version, count, tokens..., media...]
    const count = all[2] ?? 0;
    if (all.length < 3 + count) return undefined;
    return all.slice(3, 3 + count);
  } finally {
    f.close();
  }
}

async function readFull(f: Deno.FsFile, buf: Uint8Array): Promise<boolean> {
  let off = 0;
  while (off < buf.length) {
    const n = await f.read(buf.subarray(off));
    if (n === null) return false;
    off += n;
  }
  return true;
}

function commonPrefix(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

function keyOf(model: string, tokens: Int32Array): string {
  const h = createHash("sha256");
  h.update(model);
  h.update("\n");
  h.update(new Uint8Array(tokens.buffer, tokens.byteOffset, tokens.byteLength));
  return h.digest("hex").slice(0, 32);
}

async function getJson(url: string, signal?: AbortSignal): Promise<unknown> {
  const res = await fetch(url, { headers: upstreamAuth(url), signal });
  const text = await res.text();
  if (!res.ok) throw new Error(`${url} answered ${res.status}: ${text.slice(0, 200)}`);
  return JSON.parse(text);
}

async function slotsOf(url: string, signal?: AbortSignal): Promise<{ id: number; busy: boolean }[]> {
  const slots = await getJson(`${url}/slots`, signal);
  if (!Array.isArray(slots)) return [];
  return slots.map((s) => ({ id: Number(s.id), busy: Boolean(s.is_processing) }));
}

async function slotAction(
  url: string,
  id: number,
  action: "save" | "restore",
  filename: string,
  signal?: AbortSignal,
): Promise<Record<string, unknown>> {
  const res = await fetch(`${url}/slots/${id}?action=${action}`, {
    method: "POST",
    headers: { ...upstreamAuth(url), "content-type": "application/json" },
    body: JSON.stringify({ filename }),
    signal,
  });
  const text = await res.text();
  if (!res.ok) {
    let message = text;
    try {
      message = JSON.parse(text)?.error?.message ?? text;
    } catch { /* not JSON */ }
    throw new Error(`${action} of slot ${id} failed: ${message}`);
  }
  return JSON.parse(text);
}

/**
 * The prompt's tokens as llama-server will see them for a request to `path` of the runner at `url`: through its
 * chat template for chat, Responses and Anthropic bodies, as given for completions; undefined when it cannot
 * tell.
 *
 * @example
 * ```ts ignore
 * const tokens = await promptTokens(url, "/v1/messages", { max_tokens: 8, messages: [{ role: "user", content: "Hi" }] });
 * ```
 */
export async function promptTokens(
  url: string,
  path: string,
  body: Record<string, unknown>,
): Promise<number[] | undefined> {
  let content: unknown;
  // Anthropic's and the Responses API's bodies become a chat body inside llama-server: the same conversion here
  // gives the prompt its template makes of them.
  const chat = path === "/v1/chat/completions" || path === "/chat/completions"
    ? body
    : path === "/v1/messages"
    ? anthropicToChat(body)
    : path === "/v1/responses" || path === "/responses"
    ? responsesToChat(body)
    : undefined;
  if (chat) {
    const { prompt } = await postJson(url, "/apply-template", chat) as { prompt?: unknown };
    content = prompt;
  } else if (path === "/completion" || path === "/completions" || path === "/v1/completions") {
    content = body.prompt;
  }
  if (Array.isArray(content) && content.every((t) => typeof t === "number")) return content as number[];
  if (typeof content !== "string") return undefined;
  const { tokens } = await postJson(url, "/tokenize", {
    content,
    add_special: true,
    parse_special: true,
  }) as {
    tokens?: number[];
  };
  return Array.isArray(tokens) ? tokens : undefined;
}

/**
 * Opens (creating) the store in `options.dir`, dropping files a crashed save left behind and entries whose file
 * is gone.
 *
 * @example
 * ```ts ignore
 * const cache = await openKvCache({ dir: join(paths.dataDir, "daemon", "slots"), maxBytes: 2 * 1024 ** 3 });
 * ```
 */
export async function openKvCache(options: KvCacheOptions): Promise<KvCache> {
  const dir = options.dir;
  const maxBytes = options.maxBytes ?? DEFAULT_KV_CACHE_MAX_BYTES;
  const log = options.log ?? (() => {});
  const now = options.now ?? (() => Date.now());
  const indexPath = join(dir, "index.json");
  await Deno.mkdir(dir, { recursive: true });
  const entries = new Map<string, KvEntry>();
  const tokensOf = new Map<string, Int32Array>();
  // Per runner (by URL): the files already restored into it, and a chain that runs its restores one at a time.
  const runners = new Map<string, { restored: Set<string>; chain: Promise<unknown> }>();
  const stats: KvStats = { saved: 0, restored: 0, restoredTokens: 0 };
  let chain: Promise<unknown> = Promise.resolve();
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const p = chain.then(fn, fn);
    chain = p.catch(() => {});
    return p;
  };

  const fileExists = async (file: string) => {
    try {
      return (await Deno.stat(join(dir, file))).isFile;
    } catch {
      return false;
    }
  };

  // Another daemon on this data dir may have written the index meanwhile: merge with it before writing.
  const load = async () => {
    let disk: IndexFile | undefined;
    try {
      disk = await readJson<IndexFile>(indexPath);
    } catch {
      disk = undefined; // unreadable: rebuilt from what this process knows
    }
    for (const e of disk?.entries ?? []) {
      if (typeof e?.file !== "string" || !/^kv-[0-9a-f]+\.bin$/.test(e.file)) continue;
      const mine = entries.get(e.file);
      if (!mine || mine.lastUsed < e.lastUsed) entries.set(e.file, { ...e });
    }
    for (const e of [...entries.values()]) if (!(await fileExists(e.file))) entries.delete(e.file);
  };
  const write = () =>
    writeJsonAtomic(
      indexPath,
      {
        version: 1,
        entries: [...entries.values()].sort((a, b) => b.lastUsed - a.lastUsed),
      } satisfies IndexFile,
    );

  const remove = async (file: string) => {
    entries.delete(file);
    tokensOf.delete(file);
    await Deno.remove(join(dir, file)).catch(() => {});
  };

  const enforceCap = async () => {
    let total = [...entries.values()].reduce((s, e) => s + e.bytes, 0);
    for (const e of [...entries.values()].sort((a, b) => a.lastUsed - b.lastUsed)) {
      if (total <= maxBytes) break;
      log(
        `kv cache: removing ${e.file} (${e.tokens} tokens, ${formatBytes(e.bytes)}) to stay under ${
          formatBytes(maxBytes)
        }`,
      );
      total -= e.bytes;
      await remove(e.file);
    }
  };

  await serial(async () => {
    await load();
    const known = new Set(entries.keys());
    for await (const f of Deno.readDir(dir)) {
      if (!f.isFile || !/^(kv|pending)-.*\.bin$/.test(f.name) || known.has(f.name)) continue;
      const st = await Deno.stat(join(dir, f.name)).catch(() => undefined);
      if (st && now() - (st.mtime?.getTime() ?? 0) > STALE_MS) {
        await Deno.remove(join(dir, f.name)).catch(() => {});
      }
    }
    await enforceCap();
    await write();
  });

  const tokens = async (file: string): Promise<Int32Array | undefined> => {
    let t = tokensOf.get(file);
    if (!t) {
      t = await readSlotTokens(join(dir, file)).catch(() => undefined);
      if (t) tokensOf.set(file, t);
    }
    return t;
  };

  const runnerOf = (url: string) => {
    let r = runners.get(url);
    if (!r) {
      r = { restored: new Set(), chain: Promise.resolve() };
      runners.set(url, r);
    }
    return r;
  };

  const pending = (url: string, model: string) => {
    const restored = runners.get(url)?.restored;
    return [...entries.values()].filter((e) => e.model === model && !restored?.has(e.file));
  };

  const saveOne = async (url: string, model: string, id: number, signal: AbortSignal) => {
    const tmp = `pending-${crypto.randomUUID()}.bin`;
    const t0 = performance.now();
    try {
      const res = await slotAction(url, id, "save", tmp, signal);
      const n = Number(res.n_saved ?? 0);
      if (n < MIN_TOKENS) return undefined;
      const toks = await readSlotTokens(join(dir, tmp));
      if (!toks || toks.length < MIN_TOKENS) return undefined;
      const file = `kv-${keyOf(model, toks)}.bin`;
      const bytes = (await Deno.stat(join(dir, tmp))).size;
      await Deno.rename(join(dir, tmp), join(dir, file));
      tokensOf.set(file, toks);
      log(
        `kv cache: saved slot ${id} (${toks.length} tokens, ${formatBytes(bytes)}) in ${
          Math.round(performance.now() - t0)
        } ms`,
      );
      return { file, model, tokens: toks.length, bytes, lastUsed: now() } satisfies KvEntry;
    } finally {
      await Deno.remove(join(dir, tmp)).catch(() => {});
    }
  };

  return {
    dir,
    maxBytes,
    async save(url, model) {
      if (maxBytes <= 0) return [];
      const signal = AbortSignal.timeout(SAVE_TIMEOUT_MS);
      const saved: KvEntry[] = [];
      try {
        // A busy slot would make llama-server wait for its answer: only idle ones are saved.
        // A server that does not list its slots at once is stuck (stopped, swapping): not waited for.
        for (const s of await slotsOf(url, AbortSignal.any([signal, AbortSignal.timeout(LIST_TIMEOUT_MS)]))) {
          if (s.busy) continue;
          const e = await saveOne(url, model, s.id, signal);
          if (e) saved.push(e);
        }
      } catch (err) {
        log(`kv cache: saving the slots of ${url} failed: ${(err as Error).message}`);
      }
      if (!saved.length) return saved;
      await serial(async () => {
        await load();
        for (const e of saved) {
          // A conversation saved again further on makes its shorter file redundant.
          const t = tokensOf.get(e.file)!;
          for (const old of [...entries.values()]) {
            if (old.model !== model || old.file === e.file || old.tokens > e.tokens) continue;
            const ot = await tokens(old.file);
            if (ot && commonPrefix(ot, t) === ot.length) await remove(old.file);
          }
          entries.set(e.file, e);
          stats.saved++;
        }
        await enforceCap();
        await write();
      });
      return saved.filter((e) => entries.has(e.file));
    },
    candidates(url, model) {
      return maxBytes > 0 && pending(url, model).length > 0;
    },
    resume(url, model, path, body) {
      if (maxBytes <= 0 || pending(url, model).length === 0) return Promise.resolve(body);
      const r = runnerOf(url);
      const run = async (): Promise<Record<string, unknown>> => {
        const left = pending(url, model);
        if (!left.length) return body;
        const want = await promptTokens(url, path, body).catch(() => undefined);
        if (!want) return body;
        let best: { e: KvEntry; lcp: number } | undefined;
        for (const e of left) {
          const t = await tokens(e.file);
          if (!t) continue;
          const lcp = commonPrefix(t, want);
          // Restoring reads the whole file: worth it when most of it is reused.
          if (lcp >= MIN_TOKENS && lcp * 2 >= t.length && (!best || lcp > best.lcp)) best = { e, lcp };
        }
        if (!best) return body;
        const free = (await slotsOf(url)).find((s) => !s.busy);
        if (!free) return body;
        const t0 = performance.now();
        try {
          await slotAction(url, free.id, "restore", best.e.file);
        } catch (err) {
          // Not tried again on this runner; the file stays for a runner it may suit (least recently used
          // files go first when the cap is reached).
          r.restored.add(best.e.file);
          log(
            `kv cache: could not restore ${best.e.file} into slot ${free.id} of ${url}: ${
              (err as Error).message
            }`,
          );
          return body;
        }
        r.restored.add(best.e.file);
        stats.restored++;
        stats.restoredTokens += best.lcp;
        log(
          `kv cache: restored ${best.e.tokens} tokens (${best.lcp} reused) into slot ${free.id} of ${url} in ${
            Math.round(performance.now() - t0)
          } ms`,
        );
        await serial(async () => {
          const e = entries.get(best.e.file);
          if (e) e.lastUsed = now();
          await write();
        });
        return { ...body, id_slot: free.id };
      };
      const p = r.chain.then(run, run);
      r.chain = p.catch(() => {});
      return p;
    },
    forget(url) {
      runners.delete(url);
    },
    entries: () => [...entries.values()].sort((a, b) => b.lastUsed - a.lastUsed),
    stats: () => ({ ...stats }),
  };
}

/** The runners whose requests may continue saved conversations, by base URL (set by the launcher). */
const attached = new Map<string, { cache: KvCache; model: string; looks: number }>();

/**
 * Marks the runner at `url` as one whose requests may continue conversations saved by `cache` under `model`
 * (the launcher calls this once the runner is ready).
 *
 * @example
 * ```ts ignore
 * attachRunner("http://127.0.0.1:41234", cache, "/models/smol.gguf|ctk=f16");
 * ```
 */
export function attachRunner(url: string, cache: KvCache, model: string): void {
  attached.set(url, { cache, model, looks: 0 });
}

/**
 * Saves the conversations of the runner at `url` and forgets it (the launcher calls this before stopping it).
 *
 * @example
 * ```ts ignore
 * await detachRunner("http://127.0.0.1:41234", { save: true });
 * ```
 */
export async function detachRunner(url: string, options: { save: boolean }): Promise<void> {
  const a = attached.get(url);
  if (!a) return;
  attached.delete(url);
  a.cache.forget(url);
  if (options.save) await a.cache.save(url, a.model);
}

/**
 * The body to send to the runner at `url` for `path`: unchanged unless the request continues a saved
 * conversation, which is then restored into an idle slot and the body pinned to it (`id_slot`). Costs nothing
 * when no saved conversation could apply; never throws (a failed restore leaves the body unchanged).
 *
 * @example
 * ```ts ignore
 * const send = await resumeConversation(lease.url, "/v1/chat/completions", { messages, stream: true });
 * ```
 */
export async function resumeConversation(
  url: string,
  path: string,
  body: Record<string, unknown>,
): Promise<Record<string, unknown>> {
  const a = attached.get(url);
  if (!a || body.id_slot !== undefined || !a.cache.candidates(url, a.model)) return body;
  if (a.looks >= LOOKS_PER_RUNNER) return body;
  a.looks++;
  try {
    const out = await a.cache.resume(url, a.model, path, body);
    if (out !== body) a.looks = 0;
    return out;
  } catch {
    return body;
  }
}

/**
 * Whether a request to the runner at `url` might continue a saved conversation (then the caller passes its
 * body through {@linkcode resumeConversation}); false costs the caller nothing.
 *
 * @example
 * ```ts ignore
 * if (mayResume(lease.url)) send = JSON.stringify(await resumeConversation(lease.url, path, JSON.parse(send)));
 * ```
 */
export function mayResume(url: string): boolean {
  const a = attached.get(url);
  return a !== undefined && a.looks < LOOKS_PER_RUNNER && a.cache.candidates(url, a.model);
}
