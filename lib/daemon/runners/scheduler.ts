/**
 * The scheduler: one llama-server per loaded model. A request asks for a runner with {@linkcode Scheduler.acquire},
 * gets a lease when the model is loaded (started on first use, never twice for concurrent requests), and
 * releases it when its answer is written. Loading, reloading when load-time options change, keep-alive
 * expiry and eviction live here and nowhere else.
 *
 * Models are packed by bytes when the launcher can plan them ({@linkcode Launcher.plan}): each device (`CPU`,
 * `CUDA0`...) has a budget, a model's estimate is placed on the devices of its instance (GPU layers fitted to
 * the GPU's budget unless `num_gpu` is given), and it loads when its bytes fit beside the loaded models. To
 * make room, idle models are unloaded least recently used first; a busy model is never unloaded. Requests
 * that need room wait in order of arrival. `max_loaded_models` caps the count on top, and groups
 * (`conflicts`) keep models that must not run together apart.
 *
 * Runner states: `loading` -> `ready` -> `unloading` -> gone. A runner whose start failed is dropped and every
 * request waiting on it gets a {@linkcode LoadFailedError}; a request past the queue limit a
 * {@linkcode QueueFullError}; a model larger than a device's whole budget a {@linkcode CannotFitError}.
 *
 * @module
 */
import type { CatalogModel } from "../../models/catalog.ts";
import type { LoadOptions } from "../options.ts";
import { loadKey } from "../options.ts";
import { CannotFitError, LoadFailedError, QueueFullError } from "./errors.ts";
import { UserError } from "../../util/errors.ts";
import type { DeviceBudget } from "../../llamacpp/devices.ts";
import { type ModelNeed, type Placement, placeModel } from "./placement.ts";
import type { CpuTurns } from "./cpu_turns.ts";

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
 * Where a model would run and what it needs, before it starts: the devices of its instance with their
 * budgets, and the index's memory estimate at the load options.
 *
 * @example
 * ```ts
 * const cpu = { name: "CPU", description: "RAM", kind: "cpu" as const, totalBytes: 16e9, freeBytes: 12e9, budgetBytes: 12e9 };
 * const plan: LaunchPlan = {
 *   devices: [cpu],
 *   need: { totalBytes: 5e9, weightsBytes: 4e9, kvBytes: 0.8e9, computeBytes: 0.2e9, layers: 32 },
 * };
 * ```
 */
export interface LaunchPlan {
  /** The instance's devices (GPUs, then the CPU) and their budgets. */
  devices: DeviceBudget[];
  /** What the model needs. */
  need: ModelNeed;
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
  /** Requests it answers at once (llama-server's slots). */
  slots?: number;
  /** Where those bytes are, by device id, when not all on this machine (`rpc:lab`: a cluster's workers). */
  devices?: { id: string; bytes: number }[];
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
  /** Plans a model before it starts (packing by bytes); without it the scheduler counts models only. */
  plan?(spec: Omit<LaunchSpec, "serverName">): Promise<LaunchPlan>;
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
  /** Where its bytes are, when not all on this machine (see {@linkcode Launched.devices}). */
  devices?: { id: string; bytes: number }[];
  /** Embeddings mode. */
  embedding: boolean;
  /** Bytes on each device it runs on (`{ CPU: n }`, `{ CUDA0: n, CPU: m }`); empty when not planned. */
  usage: Record<string, number>;
  /** GPU layers it was started with, when set. */
  ngl?: number;
  /** Requests it answers at once, when the launcher says. */
  slots?: number;
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
  /** Requests waiting for a runner (for room, or for their model to load). */
  waiting(): number;
  /** The budget of each device seen so far and the bytes the loaded models hold there. */
  devices(): { name: string; kind: "gpu" | "cpu"; budgetBytes: number; usedBytes: number }[];
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
  /** Turns on the CPU for runners that run there alone (./cpu_turns.ts); default: none, all run at once. */
  cpuTurns?: CpuTurns;
  /** Whether two models must not be loaded at the same time (groups); default: any may. */
  conflicts?: (a: CatalogModel, b: CatalogModel) => boolean;
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

  // Requests holding a lease or waiting for one (OLLAMA_MAX_QUEUE counts them), and those holding one.
  let inFlight = 0;
  let leased = 0;

  // A runner on the CPU alone takes turns with the others (cpu_turns.ts); one with layers elsewhere does not.
  const onCpuOnly = (r: Runner) =>
    r.sizeVramBytes === 0 && !r.devices?.length && Object.keys(r.usage).every((d) => d === "CPU");

  const lease = async (r: Runner, launched: Launched, loadMs: number): Promise<Lease> => {
    let done = false;
    const turn = options.cpuTurns && onCpuOnly(r) ? options.cpuTurns : undefined;
    if (turn) {
      const t0 = performance.now();
      await turn.enter(r.key);
      const waited = performance.now() - t0;
      if (waited > 1000) log(`${r.name} waited ${Math.round(waited)} ms for its turn on the CPU`);
    }
    leased++;
    return {
      url: launched.url,
      loadMs,
      ctx: r.ctx,
      release() {
        if (done) return;
        done = true;
        turn?.leave(r.key);
        inFlight--;
        leased--;
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

  // Device budgets by name, from the plans seen: one device used by two instances (the CPU) is one budget.
  const budgets = new Map<string, DeviceBudget>();
  // Requests that need room for a new runner, in order of arrival: only the first may load or evict.
  const roomQueue: object[] = [];

  const usedOn = (device: string, gone: Set<Runner>): number => {
    let n = 0;
    for (const r of runners.values()) if (!gone.has(r)) n += r.usage[device] ?? 0;
    return n;
  };

  // The model's place on its instance's devices; a model larger than a device's whole budget never loads.
  const plan = async (req: AcquireRequest, load: LoadOptions & { ctx: number }, embedding: boolean) => {
    if (!options.launcher.plan) return undefined;
    let planned: LaunchPlan;
    try {
      planned = await options.launcher.plan({ model: req.model, load, embedding });
    } catch (err) {
      throw loadFailed(req.model.name, err);
    }
    // The first budget of a device stands: a later plan's may have been measured with models loaded.
    for (const d of planned.devices) if (!budgets.has(d.name)) budgets.set(d.name, d);
    const placement = placeModel(planned.need, planned.devices, load.ngl);
    for (const [device, bytes] of Object.entries(placement.usage)) {
      const budget = budgets.get(device)?.budgetBytes ?? Infinity;
      if (bytes > budget) throw new CannotFitError(req.model.name, device, bytes, budget);
    }
    return placement;
  };

  /**
   * What to do to load `model` (placed as `placement`) now: `load`, unload an idle runner, or `wait` for busy
   * runners to finish (or for runners being stopped to be gone).
   */
  const makeRoom = (model: CatalogModel, key: string, placement?: Placement): "load" | "wait" | Runner => {
    const others = [...runners.values()].filter((x) => x.key !== key);
    const conflicting = options.conflicts ? others.filter((x) => options.conflicts!(model, x.model)) : [];
    const need = Object.entries(placement?.usage ?? {});
    const budget = (d: string) => budgets.get(d)?.budgetBytes ?? Infinity;
    const fitsWithout = (gone: Set<Runner>) =>
      conflicting.every((x) => gone.has(x)) && runners.size - gone.size < options.maxLoaded &&
      need.every(([d, n]) => usedOn(d, gone) + n <= budget(d));
    const none = new Set<Runner>();
    if (fitsWithout(none)) return "load";
    const idle = others.filter((x) => x.refs === 0 && x.state === "ready").sort((a, b) =>
      a.lastUsed - b.lastUsed
    );
    // Unload nothing unless that makes room: while a busy model holds what is needed, the idle ones stay.
    if (!fitsWithout(new Set([...idle, ...others.filter((x) => x.state === "unloading")]))) return "wait";
    const short = need.filter(([d, n]) => usedOn(d, none) + n > budget(d)).map(([d]) => d);
    return idle.find((x) => conflicting.includes(x)) ??
      idle.find((x) => short.some((d) => (x.usage[d] ?? 0) > 0)) ??
      (runners.size >= options.maxLoaded ? idle[0] : undefined) ?? "wait";
  };

  // Gives up a request's place in the room queue (on a lease, an error, or when its model was loaded by another).
  const leaveQueue = (ticket: object) => {
    const i = roomQueue.indexOf(ticket);
    if (i < 0) return;
    roomQueue.splice(i, 1);
    if (i === 0) notify();
  };

  const acquireRunner = async (req: AcquireRequest): Promise<Lease> => {
    const ticket = {};
    try {
      return await acquireQueued(req, ticket);
    } finally {
      leaveQueue(ticket);
    }
  };

  const acquireQueued = async (req: AcquireRequest, ticket: object): Promise<Lease> => {
    const embedding = req.embedding ?? false;
    const load = effective(req);
    const key = runnerKey(req.model);
    const want = loadKey(load) + (embedding ? "+embed" : "");
    const t0 = performance.now();
    let placement: Placement | undefined;
    let planned = false;
    while (true) {
      const r = runners.get(key);
      if (r) {
        if (r.state === "unloading") {
          await r.stopped;
          continue;
        }
        // Asked on every request, busy or not: a runner that died serves nobody, and requests still on it get
        // their error from the broken connection.
        if (r.state === "ready" && !options.launcher.alive(r.serverName)) {
          log(`${r.name}'s llama-server (pid ${r.pid}) is gone; starting a new one`);
          await unload(r);
          continue;
        }
        if (r.loadKey === want) {
          leaveQueue(ticket);
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
          return await lease(r, launched, wasLoading ? performance.now() - t0 : 0);
        }
        // Different load options: wait for its requests, then reload.
        if (r.refs > 0) {
          await wake.promise;
          continue;
        }
        // A model that can never fit with the new options keeps running with the old ones.
        if (!planned) {
          placement = await plan(req, load, embedding);
          planned = true;
          continue;
        }
        log(`reloading ${r.name}: load options changed`);
        await unload(r);
        continue;
      }
      // In the queue from the first time it needs room, so that planning (which takes time) keeps the order.
      if (!roomQueue.includes(ticket)) roomQueue.push(ticket);
      if (!planned) {
        placement = await plan(req, load, embedding);
        planned = true;
        continue; // the plan took time: look again
      }
      if (roomQueue[0] !== ticket) {
        await wake.promise;
        continue;
      }
      // A runner being unloaded still holds its memory: it counts until its server has stopped.
      const room = makeRoom(req.model, key, placement);
      if (room === "wait") {
        await wake.promise;
        continue;
      }
      if (room !== "load") {
        log(`evicting ${room.name} to make room for ${req.model.name}`);
        await unload(room);
        continue;
      }
      leaveQueue(ticket);
      if (placement?.ngl !== undefined) load.ngl = placement.ngl;
      const serverName = runnerServerName(req.model, embedding, options.serverTag?.());
      const runner: Runner = {
        key,
        name: req.model.name,
        model: req.model,
        state: "loading",
        refs: 1,
        expiresAt: Infinity,
        ctx: load.ctx,
        sizeBytes: placement?.sizeBytes ?? req.model.entry.sizeBytes,
        sizeVramBytes: placement?.sizeVramBytes ?? 0,
        usage: placement?.usage ?? {},
        ngl: load.ngl,
        embedding,
        serverName,
        loadKey: want,
        keepAliveMs: req.keepAliveMs,
        lastUsed: clock.now(),
        loadStarted: performance.now(),
        ready: undefined as unknown as Promise<Launched>,
      };
      const where = Object.keys(runner.usage).join("+");
      log(
        `loading ${runner.name} (ctx ${load.ctx}${embedding ? ", embeddings" : ""}${
          load.ngl !== undefined ? `, ngl ${load.ngl}` : ""
        }${where ? `, ${Math.round(runner.sizeBytes / 2 ** 20)} MiB on ${where}` : ""})`,
      );
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
      runner.slots = launched.slots;
      runner.devices = launched.devices;
      // The plan's placement is what the scheduler counts; without one, the launcher's own figures.
      if (!placement) {
        runner.sizeBytes = launched.sizeBytes ?? runner.sizeBytes;
        runner.sizeVramBytes = launched.sizeVramBytes ?? 0;
      }
      runner.expiresAt = clock.now() + runner.keepAliveMs;
      log(
        `loaded ${runner.name} at ${launched.url} in ${
          Math.round(performance.now() - runner.loadStarted)
        } ms`,
      );
      return await lease(runner, launched, performance.now() - t0);
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
        devices: r.devices,
        embedding: r.embedding,
        usage: { ...r.usage },
        ngl: r.ngl,
        slots: r.slots,
      })).sort((a, b) => b.expiresAt - a.expiresAt);
    },
    inFlight: () => inFlight,
    waiting: () => inFlight - leased,
    devices() {
      const none = new Set<Runner>();
      return [...budgets.values()].map((d) => ({
        name: d.name,
        kind: d.kind,
        budgetBytes: d.budgetBytes,
        usedBytes: usedOn(d.name, none),
      }));
    },
    async stopAll() {
      await Promise.all([...runners.values()].map((r) => unload(r)));
    },
  };
}
