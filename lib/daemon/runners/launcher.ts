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
import {
  type DeviceBudget,
  deviceBudgets,
  listDevices,
  serverEnv,
  VK_VISIBLE,
} from "../../llamacpp/devices.ts";
import { type CatalogModel, embeddingOnly, presetForModel } from "../../models/mod.ts";
import { loadFlags } from "../options.ts";
import { setUpstreamDiagnosis, setUpstreamKey } from "../upstream/client.ts";
import { assertFits, checkCluster, clusterBudget, diagnoseCluster, rpcFlags } from "../../rpc/cluster.ts";
import { type Launcher, type LaunchSpec, runnerKey } from "./scheduler.ts";
import type { ModelNeed } from "./placement.ts";
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
  /** Environment for `OLLAMA_GPU_OVERHEAD` (default: the process's). */
  env?: Record<string, string | undefined>;
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
): ModelNeed | undefined {
  try {
    const e = estimateMemory(model.entry.facts, { ctx, ...more });
    if (!(Number.isFinite(e.totalBytes) && e.totalBytes > 0)) return undefined;
    return {
      totalBytes: e.totalBytes,
      weightsBytes: e.weightsBytes,
      kvBytes: e.kvBytes + e.recurrentBytes,
      computeBytes: e.computeBytes,
      layers: model.entry.facts.blockCount,
      layerBytes: model.entry.facts.layerBytes,
    };
  } catch {
    return undefined;
  }
}

/**
 * What the memory of a server started for `spec` depends on, besides the model: its slots, the KV cache type
 * and flash attention (the daemon's settings unless the preset's flags set them), and the micro-batch.
 */
function serverShape(
  spec: Pick<LaunchSpec, "load" | "embedding">,
  presetArgs: string[],
  options: ServerLauncherOptions,
) {
  const args = [...presetArgs, ...loadFlags(spec.load)];
  const has = (...names: string[]) => args.some((a) => names.some((n) => a === n || a.startsWith(`${n}=`)));
  // Ollama's OLLAMA_NUM_PARALLEL: that many slots, each with the whole num_ctx (llama-server splits -c between
  // its slots).
  const parallel = has("-np", "--parallel") ? undefined : options.parallel;
  const flashAttention = !spec.embedding && !has("-fa", "--flash-attn") ? options.flashAttention : undefined;
  const cacheType = !spec.embedding && !has("-ctk", "--cache-type-k", "-ctv", "--cache-type-v")
    ? options.cacheType
    : undefined;
  return { args, has, parallel, flashAttention, cacheType, totalCtx: spec.load.ctx * (parallel ?? 1) };
}

/** The memory a server for `spec` needs, by the index's estimate (or weights + an f16 cache, or the file). */
function memoryNeed(
  spec: Pick<LaunchSpec, "model" | "load" | "embedding">,
  shape: ReturnType<typeof serverShape>,
): ModelNeed {
  // Embedding servers run with -ub ctx (a whole input in one micro-batch), which sizes their compute buffers.
  const need = indexEstimate(spec.model, shape.totalCtx, {
    ubatch: spec.embedding ? spec.load.ctx : undefined,
    cacheType: shape.cacheType,
    flashAttention: shape.flashAttention,
    parallel: shape.parallel,
  });
  if (need) return need;
  const total = estimateBytes(spec.model, shape.totalCtx) ?? spec.model.entry.sizeBytes;
  const weights = spec.model.entry.sizeBytes;
  return {
    totalBytes: total,
    weightsBytes: weights,
    kvBytes: Math.max(0, total - weights),
    computeBytes: 0,
    layers: Number(spec.model.entry.facts.blockCount ?? 0),
  };
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
  // A cluster's memory as first seen: while one of our runners uses its workers they answer "busy", and the
  // scheduler keeps a device's first budget anyway.
  const clusters = new Map<string, DeviceBudget>();
  const clusterDevice = async (name: string): Promise<DeviceBudget> => {
    let d = clusters.get(name);
    if (!d) {
      const b = clusterBudget(await checkCluster(config, name));
      d = {
        name: b.id,
        description: `RPC workers ${b.workers.join(", ")}`,
        kind: "gpu",
        totalBytes: b.totalBytes,
        freeBytes: b.freeBytes,
        budgetBytes: b.freeBytes,
      };
      clusters.set(name, d);
    }
    return d;
  };
  // The model's preset, and the instance it runs on: the preset's `instance:`, else the daemon's, else the default.
  // Its environment is the instance's under the preset's: the devices are listed with what the server will see.
  const presetAndInstance = async (model: CatalogModel) => {
    const preset = presetForModel(config, model);
    const instance = await getInstance(paths, preset?.instance ?? options.instance, config.default_instance);
    return { preset, instance, env: serverEnv(config, instance.name, preset?.env) };
  };
  // Said once per instance and environment: a Vulkan build that sees no device runs its models on the CPU.
  const warned = new Set<string>();
  return {
    defaults(model) {
      const p = presetForModel(config, model);
      return { ctx: p?.ctx, ngl: p?.ngl };
    },
    async plan(spec) {
      // A model's own instance (its preset's `instance:`) decides which devices it can use.
      const { preset, instance, env } = await presetAndInstance(spec.model);
      const devices = deviceBudgets(
        await listDevices(instance, { env }),
        config.memory,
        options.env ?? Deno.env.toObject(),
      );
      const key = `${instance.name} ${JSON.stringify(env)}`;
      if (instance.arch === "vulkan" && !devices.some((d) => d.kind === "gpu") && !warned.has(key)) {
        warned.add(key);
        log(
          `instance '${instance.name}' lists no Vulkan device, so ${spec.model.name} runs on the CPU; a software ` +
            `device (Mesa's lavapipe) is used only with ${VK_VISIBLE}=0 in the preset's env or in ` +
            `build.instances.${instance.name}.env`,
        );
      }
      // A cluster's workers take the offloaded layers as a GPU would: its memory is one more budget, so a model
      // on it is packed (and an idle one on the same workers unloaded to make room) like any other.
      if (preset?.cluster) devices.unshift(await clusterDevice(preset.cluster));
      return { devices, need: memoryNeed(spec, serverShape(spec, preset?.args ?? [], options)) };
    },
    async start(spec) {
      const { preset, instance, env } = await presetAndInstance(spec.model);
      const ctx = spec.load.ctx;
      // A preset's own flags win over the daemon's settings.
      const shape = serverShape(spec, preset?.args ?? [], options);
      const { args, has, totalCtx } = shape;
      const np = shape.parallel;
      if (np !== undefined) args.push("-np", String(np));
      // OLLAMA_FLASH_ATTENTION and OLLAMA_KV_CACHE_TYPE, for chat models.
      if (shape.flashAttention !== undefined) args.push("-fa", shape.flashAttention ? "on" : "off");
      if (shape.cacheType) args.push("-ctk", shape.cacheType, "-ctv", shape.cacheType);
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
      const size = memoryNeed(spec, shape).totalBytes;
      // A model bound to a cluster: every worker answers (or is named in the error) and the model must fit
      // the memory they have free, before llama-server is started with `--rpc`.
      const cluster = preset?.cluster ? await checkCluster(config, preset.cluster) : undefined;
      if (cluster) {
        // With layers placed by the scheduler the rest stays on this machine; with none, all must fit there.
        if (spec.load.ngl === undefined) assertFits(cluster, size, spec.model.name);
        args.push(...rpcFlags(cluster));
        log(
          `${spec.model.name} runs on cluster '${cluster.name}': ${
            cluster.workers.map((w) => w.endpoint).join(", ")
          }`,
        );
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
        env,
        apiKey,
        readyTimeoutMs: options.readyTimeoutMs ?? DEFAULT_LOAD_TIMEOUT_MS,
        owner: { kind: "daemon", pid: Deno.pid },
        alias: spec.model.name,
      });
      const gpu = instance.arch !== "cpu" && spec.load.ngl !== 0;
      setUpstreamKey(status.url, apiKey);
      if (cluster) {
        // An answer cut short on a cluster names the worker that went away, not just "llama-server closed".
        const endpoints = cluster.workers.map((w) => w.endpoint);
        setUpstreamDiagnosis(status.url, () => diagnoseCluster(cluster.name, endpoints, status.logFile));
      }
      running.set(spec.serverName, { url: status.url, pid: status.pid, apiKey });
      if (kv) attachRunner(status.url, kv, kvModel);
      // llama-server's own choice of slots is 4 (`-np -1`).
      const npArg = args.findIndex((a) => a === "-np" || a === "--parallel");
      const slots = np ?? (npArg >= 0 ? Number(args[npArg + 1]) : NaN);
      return {
        url: status.url,
        pid: status.pid,
        sizeBytes: size,
        sizeVramBytes: gpu ? size : 0,
        slots: Number.isInteger(slots) && slots > 0 ? slots : 4,
        ...(cluster ? { devices: [{ id: clusterBudget(cluster).id, bytes: size }] } : {}),
      };
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
          setUpstreamDiagnosis(server.url, undefined);
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
