/**
 * The scheduler: one llama-server per loaded model. A request asks for a runner with {@linkcode Scheduler.acquire},
 * gets a lease when the model is loaded (started on first use, never twice for concurrent requests), and
 * releases it when its answer is written. Loading, reloading when load-time options change, keep-alive
 * expiry and least-recently-used eviction past `max_loaded_models` live here and nowhere else.
 *
 * Runner states: `loading` -> `ready` -> `unloading` -> gone. A runner whose start failed is dropped and every
 * request waiting on it gets a {@linkcode LoadFailedError}; a request past the queue limit a
 * {@linkcode QueueFullError}.
 *
 * @module
 */
import type { CatalogModel } from "../../models/catalog.ts";
import type { LoadOptions } from "../options.ts";
import { loadKey } from "../options.ts";
import { LoadFailedError, QueueFullError } from "./errors.ts";
import { UserError } from "../../util/errors.ts";

/**
 * What the scheduler asks a launcher to start.
 *
 * @example
 * ```ts ignore
 * const launcher: Launcher = {
 *   async start(spec: LaunchSpec) {
 *     console.log(spec.serverName, spec.model.entry.path, spec.load.ctx, spec.embedding);
 *     return { url: "http://127.0.0.1:8080" };
 *   },
 *   async stop() {},
 *   alive: () => true,
 * };
 * ```
 */
export interface LaunchSpec {
  /** Unique server name for this runner. */
  serverName: string;
  /** The model. */
  model: CatalogModel;
  /** Effective load-time options (ctx always set). */
  load: LoadOptions & { ctx: number };
  /** Start in embeddings mode (`--embeddings`). */
  embedding: boolean;
}

/**
 * A started server.
 *
 * @example
 * ```ts
 * const launched: Launched = { url: "http://127.0.0.1:41234", pid: 4242, sizeBytes: 2_500_000_000 };
 * ```
 */
export interface Launched {
  /** Base URL, e.g. `http://127.0.0.1:41234`. */
  url: string;
  /** Its pid. */
  pid?: number;
  /** Estimated memory use in bytes (weights + KV cache). */
  sizeBytes?: number;
  /** Bytes of that in GPU memory. */
  sizeVramBytes?: number;
}

/**
 * Starts and stops llama-servers: lib/server in the daemon (./launcher.ts), a fake in the scheduler's unit
 * tests. Only the scheduler calls it.
 *
 * @example
 * ```ts ignore
 * // Every model on one llama-server that is already running (a router, a remote machine...).
 * const remote: Launcher = {
 *   start: async () => ({ url: "http://gpu-box:8080" }),
 *   stop: async () => {},
 *   alive: () => true,
 * };
 * const scheduler = createScheduler({ launcher: remote, maxLoaded: 1 });
 * ```
 */
export interface Launcher {
  /** Starts a server and resolves when it answers `/health`. */
  start(spec: LaunchSpec): Promise<Launched>;
  /** Stops a server by name. */
  stop(serverName: string): Promise<void>;
  /** Whether a started server's process is still alive (one that crashed or was killed is started again). */
  alive(serverName: string): boolean;
  /** Resolves the load options of a model when the request gives none (preset ctx/ngl). */
  defaults?(model: CatalogModel): { ctx?: number; ngl?: number };
}

/**
 * The scheduler's clock: tests pass a fake one to step through keep-alive expiry in no time.
 *
 * @example
 * ```ts
 * let now = 0;
 * const clock: Clock = { now: () => now, setTimeout: () => 0, clearTimeout: () => {} };
 * now += 60_000;
 * ```
 */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Calls `fn` after `ms` (at most 2^31-1). */
  setTimeout(fn: () => void, ms: number): unknown;
  /** Cancels a call of {@linkcode Clock.setTimeout}. */
  clearTimeout(handle: unknown): void;
}

const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as number),
};

/**
 * A loaded (or loading) model as `/api/ps` shows it.
 *
 * @example
 * ```ts ignore
 * for (const r of scheduler.list()) console.log(r.name, r.state, r.refs, new Date(r.expiresAt));
 * ```
 */
export interface RunnerInfo {
  /** Name it was loaded under. */
  name: string;
  /** The llama-server it runs on (lib/server's name). */
  serverName: string;
  /** The model. */
  model: CatalogModel;
  /** `loading`, `ready` or `unloading`. */
  state: "loading" | "ready" | "unloading";
  /** Base URL once ready. */
  url?: string;
  /** Server pid. */
  pid?: number;
  /** Requests in flight. */
  refs: number;
  /** When it unloads (ms since epoch; Infinity = never). */
  expiresAt: number;
  /** Context size it runs with. */
  ctx: number;
  /** Estimated bytes. */
  sizeBytes: number;
  /** Bytes in GPU memory. */
  sizeVramBytes: number;
  /** Embeddings mode. */
  embedding: boolean;
}

/**
 * A runner handed to one request.
 *
 * @example
 * ```ts ignore
 * const lease: Lease = await scheduler.acquire({ model, keepAliveMs: 300_000 });
 * try {
 *   await fetch(`${lease.url}/completion`, { method: "POST", body: JSON.stringify({ prompt: "hi" }) });
 * } finally {
 *   lease.release();
 * }
 * ```
 */
export interface Lease {
  /** llama-server's base URL. */
  url: string;
  /** Time this request waited for the model to load, in ms (0 when it was loaded). */
  loadMs: number;
  /** Context size. */
  ctx: number;
  /** Gives the runner back; call exactly once (extra calls are ignored). */
  release(): void;
}

/**
 * What a request asks for.
 *
 * @example
 * ```ts ignore
 * const req: AcquireRequest = { model: await catalog.get("all-minilm"), embedding: true, keepAliveMs: 0 };
 * ```
 */
export interface AcquireRequest {
  /** The model. */
  model: CatalogModel;
  /** Load-time options from the request. */
  load?: LoadOptions;
  /** Needs embeddings mode. */
  embedding?: boolean;
  /** Keep-alive after this request, ms (Infinity = forever, 0 = unload when idle). */
  keepAliveMs: number;
}

/**
 * The scheduler's operations.
 *
 * @example
 * ```ts ignore
 * const scheduler: Scheduler = createScheduler({ launcher, maxLoaded: 2 });
 * await scheduler.expire(await catalog.get("qwen3:4b")); // unload it once idle
 * await scheduler.stopAll();
 * ```
 */
export interface Scheduler {
  /** Gets a ready runner for a model, loading or reloading it as needed. */
  acquire(req: AcquireRequest): Promise<Lease>;
  /** Unloads a model now if idle, else as soon as its requests finish. */
  expire(model: CatalogModel): Promise<void>;
  /** The loaded models, latest expiry first. */
  list(): RunnerInfo[];
  /** Requests holding a runner (until their answer is written) or waiting for one. */
  inFlight(): number;
  /** Stops every server (daemon shutdown). */
  stopAll(): Promise<void>;
}

/**
 * Options for {@linkcode createScheduler}.
 *
 * @example
 * ```ts ignore
 * const options: SchedulerOptions = { launcher, maxLoaded: 3, defaultCtx: 4096, maxInFlight: 512 };
 * ```
 */
export interface SchedulerOptions {
  /** Starts and stops servers. */
  launcher: Launcher;
  /** Most models loaded at once (LRU eviction beyond). */
  maxLoaded: number;
  /** Default context when neither request nor preset sets one (Ollama: 4096). */
  defaultCtx?: number;
  /** Called on state changes, for logs. */
  log?: (line: string) => void;
  /** Most requests in flight (running or waiting) before new ones get a {@linkcode QueueFullError}, as Ollama's
   * OLLAMA_MAX_QUEUE bounds its queue; unlimited when unset. */
  maxInFlight?: number;
  /** Time and timers (default: the system's). */
  clock?: Clock;
  /** Part of every runner's server name that tells this daemon's runners from another's on the same data dir
   * (the daemon's port); asked when a runner starts. */
  serverTag?: () => string | undefined;
}

interface Runner extends RunnerInfo {
  key: string;
  loadKey: string;
  keepAliveMs: number;
  lastUsed: number;
  ready: Promise<Launched>;
  loadStarted: number;
  timer?: unknown;
  stopped?: Promise<void>;
  expireWhenIdle?: boolean;
}

/**
 * What one llama-server serves: the model file, and the chat template and LoRA adapters a created name gives it
 * (they are llama-server flags, so names that differ in them need servers of their own).
 *
 * @example
 * ```ts ignore
 * runnerKey(model); // "/models/smol.gguf" or "/models/smol.gguf|template=/data/daemon/templates/1a2b.jinja"
 * ```
 */
export function runnerKey(model: CatalogModel): string {
  const s = model.settings;
  return model.entry.path + (s?.chatTemplateFile ? `|template=${s.chatTemplateFile}` : "") +
    (s?.adapters?.length ? `|lora=${s.adapters.join(",")}` : "");
}

/**
 * The llama-server name of a model's runner: file-name-safe, from the model's file.
 *
 * @example
 * ```ts ignore
 * runnerServerName(model, false); // "daemon-SmolLM2-135M-Instruct.Q4_1-1a2b3c4d"
 * runnerServerName(model, false, "11434"); // "daemon-11434-SmolLM2-135M-Instruct.Q4_1-1a2b3c4d"
 * ```
 */
export function runnerServerName(model: CatalogModel, embedding: boolean, tag?: string): string {
  const slug = model.entry.path.split("/").pop()!.replace(/\.gguf$/i, "").replace(/[^A-Za-z0-9_.-]+/g, "-")
    .slice(0, 40);
  let h = 0;
  for (const c of runnerKey(model)) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return `daemon-${tag ? `${tag.replace(/[^A-Za-z0-9_.-]+/g, "-")}-` : ""}${slug}-${h.toString(16)}${
    embedding ? "-e" : ""
  }`;
}

/**
 * The launcher's failure as the scheduler reports it: a UserError's message with its hint (what to do), any
 * other error's message.
 */
function loadFailed(model: string, err: unknown): LoadFailedError {
  if (err instanceof LoadFailedError) return err;
  const message = err instanceof UserError && err.hint
    ? `${err.message} (${err.hint})`
    : err instanceof Error
    ? err.message
    : String(err);
  return new LoadFailedError(model, message, { cause: err });
}

/**
 * Creates a scheduler.
 *
 * @example
 * ```ts ignore
 * const sched = createScheduler({ launcher, maxLoaded: 3 });
 * const lease = await sched.acquire({ model, keepAliveMs: 300_000 });
 * try { await fetch(lease.url + "/health"); } finally { lease.release(); }
 * ```
 */
export function createScheduler(options: SchedulerOptions): Scheduler {
  const runners = new Map<string, Runner>();
  const log = options.log ?? (() => {});
  const clock = options.clock ?? systemClock;
  let wake: { promise: Promise<void>; resolve: () => void } = Promise.withResolvers<void>();
  const notify = () => {
    const w = wake;
    wake = Promise.withResolvers<void>();
    w.resolve();
  };

  const unload = (r: Runner): Promise<void> => {
    if (r.stopped) return r.stopped;
    r.state = "unloading";
    if (r.timer !== undefined) clock.clearTimeout(r.timer);
    r.timer = undefined;
    log(`unloading ${r.name}`);
    r.stopped = (async () => {
      try {
        await r.ready.catch(() => {});
        await options.launcher.stop(r.serverName);
      } catch (err) {
        log(`stopping ${r.name} failed: ${(err as Error).message}`);
      } finally {
        if (runners.get(r.key) === r) runners.delete(r.key);
        notify();
      }
    })();
    return r.stopped;
  };

  const scheduleExpiry = (r: Runner) => {
    if (r.timer !== undefined) clock.clearTimeout(r.timer);
    r.timer = undefined;
    if (r.refs > 0 || r.state !== "ready") return;
    if (r.keepAliveMs <= 0 || r.expireWhenIdle) {
      r.expiresAt = clock.now();
      void unload(r);
      return;
    }
    r.expiresAt = clock.now() + r.keepAliveMs;
    if (Number.isFinite(r.keepAliveMs)) armExpiry(r);
  };

  // setTimeout caps at 2^31-1 ms: a longer keep-alive re-arms for the time left, keeping its expiry.
  const armExpiry = (r: Runner) => {
    const wait = Math.min(Math.max(r.expiresAt - clock.now(), 0), 2_147_483_647);
    r.timer = clock.setTimeout(() => {
      r.timer = undefined;
      if (r.refs === 0 && r.state === "ready") {
        if (clock.now() >= r.expiresAt - 5) void unload(r);
        else armExpiry(r);
      }
    }, wait);
  };

  // Requests holding a lease or waiting for one (OLLAMA_MAX_QUEUE counts them).
  let inFlight = 0;

  const lease = (r: Runner, launched: Launched, loadMs: number): Lease => {
    let done = false;
    return {
      url: launched.url,
      loadMs,
      ctx: r.ctx,
      release() {
        if (done) return;
        done = true;
        inFlight--;
        r.refs--;
        r.lastUsed = clock.now();
        if (r.refs === 0) {
          scheduleExpiry(r);
          notify();
        }
      },
    };
  };

  const effective = (req: AcquireRequest): LoadOptions & { ctx: number } => {
    const d = options.launcher.defaults?.(req.model) ?? {};
    const trained = Number(req.model.entry.facts.contextLength ?? 0);
    let ctx = req.load?.ctx ?? d.ctx ?? options.defaultCtx ?? 4096;
    if (req.load?.ctx === undefined && d.ctx === undefined && trained > 0) ctx = Math.min(ctx, trained);
    return { ...req.load, ctx, ngl: req.load?.ngl ?? d.ngl };
  };

  const acquire = async (req: AcquireRequest): Promise<Lease> => {
    if (options.maxInFlight !== undefined && inFlight >= options.maxInFlight) {
      throw new QueueFullError();
    }
    inFlight++;
    try {
      return await acquireRunner(req); // the lease's release gives the place back
    } catch (err) {
      inFlight--;
      throw err;
    }
  };

  const acquireRunner = async (req: AcquireRequest): Promise<Lease> => {
    const embedding = req.embedding ?? false;
    const load = effective(req);
    const key = runnerKey(req.model);
    const want = loadKey(load) + (embedding ? "+embed" : "");
    const t0 = performance.now();
    while (true) {
      const r = runners.get(key);
      if (r) {
        if (r.state === "unloading") {
          await r.stopped;
          continue;
        }
        if (r.state === "ready" && r.refs === 0 && !options.launcher.alive(r.serverName)) {
          log(`${r.name}'s llama-server (pid ${r.pid}) is gone; starting a new one`);
          await unload(r);
          continue;
        }
        if (r.loadKey === want) {
          r.refs++;
          r.keepAliveMs = req.keepAliveMs;
          r.expireWhenIdle = false;
          if (r.timer !== undefined) clock.clearTimeout(r.timer);
          r.timer = undefined;
          r.expiresAt = clock.now() + (Number.isFinite(r.keepAliveMs) ? r.keepAliveMs : Infinity);
          const wasLoading = r.state === "loading";
          let launched: Launched;
          try {
            launched = await r.ready;
          } catch (err) {
            r.refs--;
            throw err;
          }
          r.lastUsed = clock.now();
          return lease(r, launched, wasLoading ? performance.now() - t0 : 0);
        }
        // Different load options: wait for its requests, then reload.
        if (r.refs > 0) {
          await wake.promise;
          continue;
        }
        log(`reloading ${r.name}: load options changed`);
        await unload(r);
        continue;
      }
      // A runner being unloaded still holds its memory: it counts until its server has stopped.
      if (runners.size >= options.maxLoaded) {
        const idle = [...runners.values()].filter((x) => x.refs === 0 && x.state === "ready").sort((a, b) =>
          a.lastUsed - b.lastUsed
        );
        if (idle.length) {
          log(`evicting ${idle[0].name} (max_loaded_models ${options.maxLoaded})`);
          await unload(idle[0]);
        } else {
          await wake.promise;
        }
        continue;
      }
      const serverName = runnerServerName(req.model, embedding, options.serverTag?.());
      const runner: Runner = {
        key,
        name: req.model.name,
        model: req.model,
        state: "loading",
        refs: 1,
        expiresAt: Infinity,
        ctx: load.ctx,
        sizeBytes: req.model.entry.sizeBytes,
        sizeVramBytes: 0,
        embedding,
        serverName,
        loadKey: want,
        keepAliveMs: req.keepAliveMs,
        lastUsed: clock.now(),
        loadStarted: performance.now(),
        ready: undefined as unknown as Promise<Launched>,
      };
      log(`loading ${runner.name} (ctx ${load.ctx}${embedding ? ", embeddings" : ""})`);
      runner.ready = options.launcher.start({ serverName, model: req.model, load, embedding }).catch(
        (err) => {
          throw loadFailed(req.model.name, err);
        },
      );
      runners.set(key, runner);
      let launched: Launched;
      try {
        launched = await runner.ready;
      } catch (err) {
        if (runners.get(key) === runner) runners.delete(key);
        notify();
        throw err;
      }
      runner.state = runner.state === "loading" ? "ready" : runner.state;
      runner.url = launched.url;
      runner.pid = launched.pid;
      runner.sizeBytes = launched.sizeBytes ?? runner.sizeBytes;
      runner.sizeVramBytes = launched.sizeVramBytes ?? 0;
      runner.expiresAt = clock.now() + runner.keepAliveMs;
      log(
        `loaded ${runner.name} at ${launched.url} in ${
          Math.round(performance.now() - runner.loadStarted)
        } ms`,
      );
      return lease(runner, launched, performance.now() - t0);
    }
  };

  return {
    acquire,
    async expire(model) {
      const r = runners.get(runnerKey(model));
      if (!r) return;
      r.expireWhenIdle = true;
      r.keepAliveMs = 0;
      if (r.refs === 0) {
        await r.ready.catch(() => {});
        await unload(r);
      }
    },
    list() {
      return [...runners.values()].map((r) => ({
        name: r.name,
        serverName: r.serverName,
        model: r.model,
        state: r.state,
        url: r.url,
        pid: r.pid,
        refs: r.refs,
        expiresAt: r.refs > 0 ? clock.now() + r.keepAliveMs : r.expiresAt,
        ctx: r.ctx,
        sizeBytes: r.sizeBytes,
        sizeVramBytes: r.sizeVramBytes,
        embedding: r.embedding,
      })).sort((a, b) => b.expiresAt - a.expiresAt);
    },
    inFlight: () => inFlight,
    async stopAll() {
      await Promise.all([...runners.values()].map((r) => unload(r)));
    },
  };
}
