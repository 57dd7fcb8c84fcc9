/**
 * The daemon's launcher: llama-servers started through the supervisor (`lib/server`), marked as owned by this
 * daemon's pid, with the instance and preset configured for the model. On start it stops servers left behind
 * by a daemon that died without cleaning up (`kill -9`); a server it stops is removed from the server list.
 *
 * @module
 */
import type { Paths } from "../../config/paths.ts";
import type { Config } from "../../config/schema.ts";
import { getInstance } from "../../llamacpp/instances.ts";
import { pidAlive } from "../../util/process.ts";
import { listServers, processAlive, removeServer, startServer, stopServer } from "../../server/mod.ts";
import { estimateMemory } from "../../gguf/mod.ts";
import { type CatalogModel, embeddingOnly, presetForModel } from "../../models/mod.ts";
import { loadFlags } from "../options.ts";
import { setUpstreamKey } from "../upstream/client.ts";
import { type Launcher, runnerKey } from "./scheduler.ts";
import { attachRunner, detachRunner, type KvCache } from "./kv_cache.ts";

/**
 * Options for {@linkcode serverLauncher}.
 *
 * @example
 * ```ts ignore
 * const options: ServerLauncherOptions = { paths, config, instance: "rocm", parallel: 2, cacheType: "q8_0" };
 * ```
 */
export interface ServerLauncherOptions {
  /** Data locations. */
  paths: Paths;
  /** Config (presets, default instance). */
  config: Config;
  /** Instance when no preset names one. */
  instance?: string;
  /** Log sink. */
  log?: (line: string) => void;
  /** How long a server may take to become ready (default {@linkcode DEFAULT_LOAD_TIMEOUT_MS}). */
  readyTimeoutMs?: number;
  /** Parallel requests per model, each with the full context (`-np N`, context x N); unset: llama-server's. */
  parallel?: number;
  /** Flash attention (`-fa on|off`, OLLAMA_FLASH_ATTENTION); unset: llama-server's `auto`. */
  flashAttention?: boolean;
  /** KV cache type for K and V (`-ctk`/`-ctv`, OLLAMA_KV_CACHE_TYPE); unset: f16. */
  cacheType?: string;
  /** Where chat runners save their slots before they stop, and restore them from (`--slot-save-path`). */
  kvCache?: KvCache;
  /** Called with a server's address once it has stopped (the daemon drops its kept-alive connections to it). */
  onStopped?: (url: string) => void;
}

/** How long a model may take to load when `OLLAMA_LOAD_TIMEOUT` is unset: 3 minutes. */
export const DEFAULT_LOAD_TIMEOUT_MS = 180_000;

/** KV cache types llama-server accepts (`--cache-type-k`). */
export const CACHE_TYPES = ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1"];

/**
 * Stops llama-servers whose owning daemon is no longer alive; returns their names.
 *
 * @example
 * ```ts
 * const stopped = await stopOrphans(paths);
 * ```
 */
export async function stopOrphans(paths: Paths): Promise<string[]> {
  const stopped: string[] = [];
  for (const s of await listServers(paths)) {
    if (s.owner?.kind !== "daemon" || pidAlive(s.owner.pid)) continue;
    const running = s.state === "starting" || s.state === "ready" || s.state === "stopping";
    await stopServer(paths, s.name).catch(() => {});
    await removeServer(paths, s.name).catch(() => {});
    if (running) stopped.push(s.name);
  }
  return stopped;
}

/** 32 random bytes as hex: a runner's API key. */
function newApiKey(): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(32)), (b) => b.toString(16).padStart(2, "0")).join(
    "",
  );
}

/**
 * Memory a loaded model needs: the weights plus an f16 KV cache for `ctx` tokens (2 x layers x ctx x KV width
 * x 2 bytes), from the facts the index keeps; undefined when the facts are missing.
 */
export function estimateBytes(model: CatalogModel, ctx: number): number | undefined {
  const f = model.entry.facts;
  const layers = Number(f.blockCount ?? 0);
  const emb = Number(f.embeddingLength ?? 0);
  const heads = Number(f.headCount ?? 0);
  const kvHeads = Number(f.headCountKv ?? heads);
  if (!layers || !emb || !heads) return undefined;
  const kvWidth = (emb / heads) * kvHeads;
  return model.entry.sizeBytes + 2 * layers * ctx * kvWidth * 2;
}

/** lib/gguf's estimate (weights, KV cache per layer, compute buffers), when the facts are complete. */
function indexEstimate(
  model: CatalogModel,
  ctx: number,
  more: { ubatch?: number; parallel?: number; cacheType?: string; flashAttention?: boolean } = {},
): number | undefined {
  try {
    const total = estimateMemory(model.entry.facts, { ctx, ...more }).totalBytes;
    return Number.isFinite(total) && total > 0 ? total : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A launcher on top of lib/server. Cleans up orphans first.
 *
 * @example
 * ```ts ignore
 * const launcher = await serverLauncher({ paths, config });
 * ```
 */
export async function serverLauncher(options: ServerLauncherOptions): Promise<Launcher> {
  const { paths, config } = options;
  const log = options.log ?? (() => {});
  const orphans = await stopOrphans(paths);
  if (orphans.length) {
    log(`stopped ${orphans.length} server(s) left by a daemon that died: ${orphans.join(", ")}`);
  }
  // Each running server's address and pid: its address is reported when it stops, its pid says it is alive.
  const running = new Map<string, { url: string; pid?: number; apiKey: string }>();
  return {
    defaults(model) {
      const p = presetForModel(config, model);
      return { ctx: p?.ctx, ngl: p?.ngl };
    },
    async start(spec) {
      const preset = presetForModel(config, spec.model);
      const instance = await getInstance(
        paths,
        preset?.instance ?? options.instance,
        config.default_instance,
      );
      const ctx = spec.load.ctx;
      const args = [...(preset?.args ?? []), ...loadFlags(spec.load)];
      // A preset's own flags win over the daemon's settings.
      const has = (...names: string[]) =>
        args.some((a) => names.some((n) => a === n || a.startsWith(`${n}=`)));
      // Ollama's OLLAMA_NUM_PARALLEL: that many slots, each with the whole num_ctx (llama-server splits -c
      // between its slots).
      const np = has("-np", "--parallel") ? undefined : options.parallel;
      if (np !== undefined) args.push("-np", String(np));
      const totalCtx = ctx * (np ?? 1);
      // OLLAMA_FLASH_ATTENTION and OLLAMA_KV_CACHE_TYPE, for chat models.
      if (!spec.embedding && options.flashAttention !== undefined && !has("-fa", "--flash-attn")) {
        args.push("-fa", options.flashAttention ? "on" : "off");
      }
      if (!spec.embedding && options.cacheType && !has("-ctk", "--cache-type-k", "-ctv", "--cache-type-v")) {
        args.push("-ctk", options.cacheType, "-ctv", options.cacheType);
      }
      // The daemon keeps connections to llama-server alive (stream_client.ts); llama-server's HTTP server holds
      // a thread per open connection, so give it enough that idle kept-alive connections never starve new ones.
      if (!has("--threads-http")) args.push("--threads-http", "64");
      // What /api/create set on the name: a TEMPLATE (translated to Jinja) unless the preset gives its own, and
      // ADAPTER LoRAs.
      const made = spec.model.settings;
      if (!spec.embedding && made?.chatTemplateFile && !has("--chat-template-file", "--chat-template")) {
        args.push("--chat-template-file", made.chatTemplateFile);
      }
      for (const lora of made?.adapters ?? []) args.push("--lora", lora);
      if (spec.embedding) {
        args.push("--embeddings", "-b", String(ctx), "-ub", String(ctx));
        if (!embeddingOnly(spec.model.entry)) args.push("--pooling", "mean");
      } else {
        args.push("--jinja");
      }
      // Saved slots are only restored into a runner of the same model, template, adapters and cache layout.
      const kv = !spec.embedding && options.kvCache && !has("--slot-save-path") ? options.kvCache : undefined;
      if (kv) args.push("--slot-save-path", kv.dir);
      const kvModel = `${runnerKey(spec.model)}|ctk=${options.cacheType ?? "f16"}|fa=${
        options.flashAttention ?? "auto"
      }`;
      // A key of its own, so that nothing on this machine reaches the runner around the daemon (its Host and
      // Origin checks, its queue, its options). llama-server leaves /health open, so readiness still works.
      const apiKey = newApiKey();
      const status = await startServer(paths, {
        name: spec.serverName,
        modelPath: spec.model.entry.path,
        modelName: spec.model.name,
        mmproj: spec.embedding ? undefined : spec.model.entry.mmproj,
        instance,
        host: "127.0.0.1",
        port: "auto",
        ctx: totalCtx,
        ngl: spec.load.ngl,
        args,
        env: preset?.env,
        apiKey,
        readyTimeoutMs: options.readyTimeoutMs ?? DEFAULT_LOAD_TIMEOUT_MS,
        owner: { kind: "daemon", pid: Deno.pid },
        alias: spec.model.name,
      });
      // Embedding servers run with -ub ctx (a whole input in one micro-batch), which sizes their compute buffers.
      const size = indexEstimate(spec.model, totalCtx, {
        ubatch: spec.embedding ? ctx : undefined,
        cacheType: spec.embedding ? undefined : options.cacheType,
        flashAttention: spec.embedding ? undefined : options.flashAttention,
        parallel: np,
      }) ?? estimateBytes(spec.model, totalCtx) ??
        spec.model.entry.sizeBytes;
      const gpu = instance.arch !== "cpu" && spec.load.ngl !== 0;
      setUpstreamKey(status.url, apiKey);
      running.set(spec.serverName, { url: status.url, pid: status.pid, apiKey });
      if (kv) attachRunner(status.url, kv, kvModel);
      return { url: status.url, pid: status.pid, sizeBytes: size, sizeVramBytes: gpu ? size : 0 };
    },
    async stop(name) {
      const server = running.get(name);
      // Its conversations' KV caches go to disk first (a server that died has none to give).
      if (server) {
        await detachRunner(server.url, { save: server.pid === undefined || processAlive(server.pid) });
      }
      try {
        await stopServer(paths, name);
        await removeServer(paths, name).catch(() => {});
      } finally {
        running.delete(name);
        if (server) {
          setUpstreamKey(server.url, undefined, server.apiKey);
          options.onStopped?.(server.url);
        }
      }
    },
    alive(name) {
      const pid = running.get(name)?.pid;
      return pid === undefined || processAlive(pid);
    },
  };
}
