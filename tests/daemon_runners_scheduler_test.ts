/**
 * The scheduler on its own, with a fake launcher (no llama-server) and a fake clock (keep-alive without
 * waiting): a model is started once however many requests ask for it, loaded models are evicted least recently
 * used first and never while busy, changed load options reload a model once its requests are done, keep-alive
 * expiry unloads idle models on time, the queue limit answers Ollama's busy error, a failed start fails every
 * request waiting on it, and a server that died is started again.
 */
import { assert, assertEquals, assertRejects } from "./_assert.ts";
import {
  BUSY_MESSAGE,
  type Clock,
  createScheduler,
  type Launched,
  type Launcher,
  type LaunchSpec,
  type Lease,
  LoadFailedError,
  QueueFullError,
  type Scheduler,
  type SchedulerOptions,
} from "../lib/daemon/runners/mod.ts";
import type { CatalogModel, ModelEntry } from "../lib/models/mod.ts";
import { describeModel } from "../lib/gguf/mod.ts";
import { UserError } from "../lib/util/errors.ts";
import { createCpuTurns } from "../lib/daemon/runners/cpu_turns.ts";

/** A llama model as the index describes it, with the context length it was trained for (0: unknown). */
function model(short: string, trainedCtx = 0): CatalogModel {
  const facts = describeModel({
    version: 3,
    littleEndian: true,
    metadata: {
      "general.architecture": "llama",
      ...(trainedCtx ? { "llama.context_length": trainedCtx } : {}),
    },
    metadataTypes: {},
    tensors: [],
    alignment: 32,
    dataOffset: 0,
    headerBytes: 0,
    fileSize: 0,
  });
  const name = `${short}:latest`;
  const path = `/models/${short}.gguf`;
  const entry: ModelEntry = {
    name,
    aliases: [],
    path,
    files: [path],
    source: "dir",
    sizeBytes: 1000,
    mtimeMs: 0,
    facts,
  };
  return { name, entry, copy: false };
}

/** Time that only moves when a test moves it; timers fire, in order, as it passes them. */
class FakeClock implements Clock {
  t = 1_000_000;
  #seq = 0;
  timers: { id: number; at: number; fn: () => void }[] = [];
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.#seq;
    this.timers.push({ id, at: this.t + ms, fn });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.timers = this.timers.filter((x) => x.id !== handle);
  }
  /** Moves time on by `ms`, firing every timer due on the way (one set by a timer too). */
  advance(ms: number): void {
    const end = this.t + ms;
    while (true) {
      const due = this.timers.filter((x) => x.at <= end).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      this.timers = this.timers.filter((x) => x !== due);
      this.t = Math.max(this.t, due.at);
      due.fn();
    }
    this.t = end;
  }
}

/**
 * A launcher that starts nothing: it records every start and stop in order ("start a", "stop a"), with the
 * specs; a start can be held until the test lets it finish or fail, can fail at once, or can take fake time;
 * a started server can be marked dead; `defaults` answers like presets, per model name.
 */
class FakeLauncher implements Launcher {
  calls: string[] = [];
  specs: LaunchSpec[] = [];
  presets: Record<string, { ctx?: number; ngl?: number }> = {};
  /** Starts wait for {@linkcode FakeLauncher.finish} or {@linkcode FakeLauncher.fail}. */
  holdStarts = false;
  held: PromiseWithResolvers<void>[] = [];
  /** Stops wait for {@linkcode FakeLauncher.finishStop}. */
  holdStops = false;
  heldStops: PromiseWithResolvers<void>[] = [];
  /** The next start rejects with this. */
  failNext?: unknown;
  /** Fake time a start takes. */
  startMs = 0;
  dead = new Set<string>();
  #port = 40000;
  #names = new Map<string, string>();

  constructor(readonly clock: FakeClock) {}

  async start(spec: LaunchSpec): Promise<Launched> {
    const short = spec.model.name.replace(/:latest$/, "");
    this.calls.push(`start ${short}`);
    this.specs.push(spec);
    this.#names.set(spec.serverName, short);
    this.dead.delete(spec.serverName);
    const url = `http://127.0.0.1:${this.#port++}`;
    await Promise.resolve();
    if (this.failNext !== undefined) {
      const err = this.failNext;
      this.failNext = undefined;
      throw err;
    }
    if (this.holdStarts) {
      const gate = Promise.withResolvers<void>();
      this.held.push(gate);
      await gate.promise;
    }
    if (this.startMs) this.clock.advance(this.startMs);
    return { url, pid: 1000 + this.#port, sizeBytes: 2000 };
  }
  async stop(serverName: string): Promise<void> {
    this.calls.push(`stop ${this.#names.get(serverName) ?? serverName}`);
    if (this.holdStops) {
      const gate = Promise.withResolvers<void>();
      this.heldStops.push(gate);
      await gate.promise;
    }
  }
  alive(serverName: string): boolean {
    return !this.dead.has(serverName);
  }
  defaults(model: CatalogModel): { ctx?: number; ngl?: number } {
    return this.presets[model.name] ?? {};
  }
  /** Lets the oldest held start finish. */
  finish(): void {
    this.held.shift()!.resolve();
  }
  /** Makes the oldest held start fail. */
  fail(err: unknown): void {
    this.held.shift()!.reject(err);
  }
  /** Lets the oldest held stop finish. */
  finishStop(): void {
    this.heldStops.shift()!.resolve();
  }
  /** Marks a model's server as crashed. */
  kill(m: CatalogModel): void {
    for (const spec of this.specs) if (spec.model.name === m.name) this.dead.add(spec.serverName);
  }
  starts(): number {
    return this.calls.filter((c) => c.startsWith("start")).length;
  }
}

/** Lets every promise chain that can move on do so (a real macrotask; the fake clock does not move). */
const settle = () => new Promise<void>((r) => setTimeout(r, 0));

function setup(options: Partial<SchedulerOptions> = {}) {
  const clock = new FakeClock();
  const launcher = new FakeLauncher(clock);
  const sched: Scheduler = createScheduler({ launcher, clock, maxLoaded: 3, ...options });
  return { clock, launcher, sched };
}

/** Whether a promise has settled yet. */
async function done(p: Promise<unknown>): Promise<boolean> {
  let settled = false;
  p.then(() => settled = true, () => settled = true);
  await settle();
  return settled;
}

const KEEP = 300_000;

Deno.test("scheduler: concurrent requests start a model once and share its server; only waiting ones report a load time", async () => {
  const { launcher, sched } = setup();
  const a = model("a");
  launcher.holdStarts = true;
  const first = sched.acquire({ model: a, keepAliveMs: KEEP });
  const second = sched.acquire({ model: a, keepAliveMs: KEEP });
  await settle();
  assertEquals(launcher.calls, ["start a"]);
  assertEquals(sched.list().map((r) => [r.state, r.refs]), [["loading", 2]]);
  assertEquals(sched.inFlight(), 2);
  await new Promise((r) => setTimeout(r, 3)); // loadMs is real (monotonic) time
  launcher.finish();
  const [l1, l2] = await Promise.all([first, second]);
  assertEquals(l1.url, l2.url);
  assert(l1.loadMs >= 2, `the first request waited for the load: ${l1.loadMs}`);
  assert(l2.loadMs >= 2, `the second request waited for the load: ${l2.loadMs}`);
  assertEquals(sched.list().map((r) => [r.state, r.refs, r.url]), [["ready", 2, l1.url]]);
  l1.release();
  l2.release();
  const l3 = await sched.acquire({ model: a, keepAliveMs: KEEP });
  assertEquals(l3.loadMs, 0, "the model was loaded");
  assertEquals(l3.url, l1.url);
  assertEquals(launcher.calls, ["start a"]);
  l3.release();
  assertEquals(sched.inFlight(), 0);
});

Deno.test("scheduler: past maxLoaded the least recently used idle model is evicted, by use and not by loading", async () => {
  const { clock, launcher, sched } = setup({ maxLoaded: 2 });
  const [a, b, c] = [model("a"), model("b"), model("c")];
  const use = async (m: CatalogModel) => {
    clock.advance(1000);
    (await sched.acquire({ model: m, keepAliveMs: KEEP })).release();
  };
  await use(a);
  await use(b);
  await use(a); // a was loaded first but used last
  await use(c);
  assertEquals(launcher.calls, ["start a", "start b", "stop b", "start c"]);
  assertEquals(sched.list().map((r) => r.name).sort(), ["a:latest", "c:latest"]);
  await use(b); // now a is the least recently used
  assertEquals(launcher.calls.slice(4), ["stop a", "start b"]);
});

Deno.test("scheduler: a busy model is never evicted; a new model waits for a release and evicts the released one", async () => {
  const { clock, launcher, sched } = setup({ maxLoaded: 2 });
  const [a, b, c] = [model("a"), model("b"), model("c")];
  const la = await sched.acquire({ model: a, keepAliveMs: KEEP });
  clock.advance(1000);
  const lb = await sched.acquire({ model: b, keepAliveMs: KEEP });
  clock.advance(1000);
  const pc = sched.acquire({ model: c, keepAliveMs: KEEP });
  assertEquals(await done(pc), false, "c waits while a and b are busy");
  assertEquals(launcher.calls, ["start a", "start b"]);
  assertEquals(sched.inFlight(), 3);
  lb.release(); // b was used last, but a is busy
  const lc = await pc;
  assertEquals(launcher.calls, ["start a", "start b", "stop b", "start c"]);
  assertEquals(sched.list().map((r) => r.name).sort(), ["a:latest", "c:latest"]);
  la.release();
  lc.release();
});

Deno.test("scheduler: a model being stopped counts against maxLoaded until its server has stopped", async () => {
  const { clock, launcher, sched } = setup({ maxLoaded: 1 });
  const [a, b, c] = [model("a"), model("b"), model("c")];
  launcher.holdStops = true;

  // Expired by keep-alive: b waits for a's server to be gone.
  (await sched.acquire({ model: a, keepAliveMs: 1000 })).release();
  clock.advance(1000);
  const pb = sched.acquire({ model: b, keepAliveMs: KEEP });
  assertEquals(await done(pb), false, "b waits while a stops");
  assertEquals(launcher.calls, ["start a", "stop a"]);
  launcher.finishStop();
  const lb = await pb;
  assertEquals(launcher.calls, ["start a", "stop a", "start b"]);

  // Evicted for another request: a third model asking meanwhile does not start beside it either.
  const pa = sched.acquire({ model: a, keepAliveMs: KEEP });
  const pc = sched.acquire({ model: c, keepAliveMs: KEEP });
  await settle();
  lb.release(); // b is evicted for a (or c); the other waits
  await settle();
  assertEquals(launcher.calls.slice(3), ["stop b"], "nothing starts while b stops");
  launcher.finishStop();
  await settle();
  assertEquals(launcher.calls.length, 5);
  assertEquals(sched.list().length, 1, "one model at a time");
  launcher.holdStops = false;
  const winner = await Promise.race([
    pa.then((lease) => ({ lease, other: pc })),
    pc.then((lease) => ({ lease, other: pa })),
  ]);
  winner.lease.release();
  (await winner.other).release();
  assertEquals(launcher.starts(), 4);
  assertEquals(sched.list().length, 1);
});

Deno.test("scheduler: changed load options reload a model once its requests finish; the same options reuse it", async () => {
  const { launcher, sched } = setup();
  const a = model("a");
  const l1 = await sched.acquire({ model: a, load: { ctx: 2048 }, keepAliveMs: KEEP });
  l1.release();
  const l2 = await sched.acquire({ model: a, load: { ctx: 2048 }, keepAliveMs: KEEP });
  assertEquals([l2.url, l2.ctx, l2.loadMs], [l1.url, 2048, 0]);
  assertEquals(launcher.calls, ["start a"], "the same options reuse the server");

  const bigger = sched.acquire({ model: a, load: { ctx: 8192 }, keepAliveMs: KEEP });
  assertEquals(await done(bigger), false, "the reload waits for the request using the model");
  assertEquals(launcher.calls, ["start a"]);
  l2.release();
  const l3 = await bigger;
  assertEquals(launcher.calls, ["start a", "stop a", "start a"]);
  assertEquals(launcher.specs[1].load.ctx, 8192);
  assertEquals(l3.ctx, 8192);
  assert(l3.url !== l1.url, "a new server");
  assertEquals(sched.list().map((r) => [r.ctx, r.url]), [[8192, l3.url]]);
  l3.release();
});

Deno.test("scheduler: the context comes from the request, the preset, defaultCtx or 4096, capped to the trained context only for the last two", async (t) => {
  const ctxOf = async (
    m: CatalogModel,
    opts: { request?: number; preset?: number; defaultCtx?: number },
  ) => {
    const { launcher, sched } = setup({ defaultCtx: opts.defaultCtx });
    if (opts.preset !== undefined) launcher.presets[m.name] = { ctx: opts.preset, ngl: 12 };
    const lease = await sched.acquire({
      model: m,
      load: opts.request === undefined ? undefined : { ctx: opts.request },
      keepAliveMs: KEEP,
    });
    lease.release();
    assertEquals(launcher.specs[0].load.ctx, lease.ctx, "the lease's ctx is the one started with");
    return { ctx: lease.ctx, ngl: launcher.specs[0].load.ngl };
  };
  const small = model("small", 2048);
  const large = model("large", 32768);
  const unknown = model("unknown");

  await t.step("nothing set: 4096, or the trained context when smaller", async () => {
    assertEquals((await ctxOf(large, {})).ctx, 4096);
    assertEquals((await ctxOf(small, {})).ctx, 2048);
    assertEquals((await ctxOf(unknown, {})).ctx, 4096);
  });
  await t.step("defaultCtx replaces 4096 and is capped the same way", async () => {
    assertEquals((await ctxOf(large, { defaultCtx: 8192 })).ctx, 8192);
    assertEquals((await ctxOf(small, { defaultCtx: 8192 })).ctx, 2048);
    assertEquals((await ctxOf(unknown, { defaultCtx: 8192 })).ctx, 8192);
  });
  await t.step("a preset's ctx wins over defaultCtx and is not capped; its ngl is used", async () => {
    assertEquals(await ctxOf(small, { preset: 8192, defaultCtx: 1024 }), { ctx: 8192, ngl: 12 });
  });
  await t.step("the request's ctx wins over the preset and is not capped", async () => {
    assertEquals(await ctxOf(small, { request: 16384, preset: 8192 }), { ctx: 16384, ngl: 12 });
  });
  await t.step("the request's ngl wins over the preset's", async () => {
    const { launcher, sched } = setup();
    launcher.presets[small.name] = { ngl: 12 };
    (await sched.acquire({ model: small, load: { ngl: 0 }, keepAliveMs: KEEP })).release();
    assertEquals(launcher.specs[0].load.ngl, 0);
  });
});

Deno.test("scheduler: keep-alive expiry unloads idle models on time", async (t) => {
  await t.step("a model unloads keepAliveMs after its last release, not after its load", async () => {
    const { clock, launcher, sched } = setup();
    launcher.startMs = 5000; // the load takes 5 s
    const a = model("a");
    const lease = await sched.acquire({ model: a, keepAliveMs: 60_000 });
    clock.advance(100_000); // a request may take long: nothing expires while it runs
    await settle();
    assertEquals(launcher.calls, ["start a"]);
    const releasedAt = clock.now();
    lease.release();
    assertEquals(sched.list()[0].expiresAt, releasedAt + 60_000);
    clock.advance(59_999);
    await settle();
    assertEquals(launcher.calls, ["start a"]);
    clock.advance(1);
    await settle();
    assertEquals(launcher.calls, ["start a", "stop a"]);
    assertEquals(sched.list(), []);
  });

  await t.step("a request before expiry cancels it, and the new release starts the time again", async () => {
    const { clock, launcher, sched } = setup();
    const a = model("a");
    (await sched.acquire({ model: a, keepAliveMs: 60_000 })).release();
    clock.advance(50_000);
    (await sched.acquire({ model: a, keepAliveMs: 60_000 })).release();
    clock.advance(50_000); // past the first expiry
    await settle();
    assertEquals(launcher.calls, ["start a"]);
    clock.advance(10_000);
    await settle();
    assertEquals(launcher.calls, ["start a", "stop a"]);
  });

  await t.step("keepAliveMs 0 unloads as soon as the last request is done", async () => {
    const { launcher, sched } = setup();
    const a = model("a");
    const l1 = await sched.acquire({ model: a, keepAliveMs: 0 });
    const l2 = await sched.acquire({ model: a, keepAliveMs: 0 });
    l1.release();
    await settle();
    assertEquals(launcher.calls, ["start a"], "still in use");
    l2.release();
    await settle();
    assertEquals(launcher.calls, ["start a", "stop a"]);
  });

  await t.step("Infinity never unloads", async () => {
    const { clock, launcher, sched } = setup();
    const a = model("a");
    (await sched.acquire({ model: a, keepAliveMs: Infinity })).release();
    assertEquals(clock.timers, [], "no timer is set");
    clock.advance(1e12);
    await settle();
    assertEquals(launcher.calls, ["start a"]);
    assertEquals(sched.list()[0].expiresAt, Infinity);
  });

  await t.step("a keep-alive past setTimeout's limit (720h) unloads on time, not later", async () => {
    const { clock, launcher, sched } = setup();
    const a = model("a");
    const keep = 720 * 3_600_000; // more than 2^31-1 ms
    (await sched.acquire({ model: a, keepAliveMs: keep })).release();
    const expiresAt = clock.now() + keep;
    clock.advance(keep - 1);
    await settle();
    assertEquals(launcher.calls, ["start a"]);
    assertEquals(sched.list()[0].expiresAt, expiresAt, "re-arming the timer does not move the expiry");
    clock.advance(1);
    await settle();
    assertEquals(launcher.calls, ["start a", "stop a"]);
  });

  await t.step("expire() unloads an idle model now, a busy one after its last release", async () => {
    const { launcher, sched } = setup();
    const [a, b] = [model("a"), model("b")];
    (await sched.acquire({ model: a, keepAliveMs: KEEP })).release();
    await sched.expire(a);
    assertEquals(launcher.calls, ["start a", "stop a"]);
    const lb = await sched.acquire({ model: b, keepAliveMs: KEEP });
    await sched.expire(b);
    assertEquals(launcher.calls.slice(2), ["start b"], "b is busy");
    assertEquals(sched.list().map((r) => r.name), ["b:latest"]);
    lb.release();
    await settle();
    assertEquals(launcher.calls.slice(2), ["start b", "stop b"]);
    assertEquals(sched.list(), []);
    await sched.expire(model("never-loaded")); // harmless
  });

  await t.step("list() shows when each model expires, latest expiry first", async () => {
    const { clock, sched } = setup({ maxLoaded: 4 });
    const [a, b, c, d] = [model("a"), model("b"), model("c"), model("d")];
    const now = clock.now();
    (await sched.acquire({ model: a, keepAliveMs: 10_000 })).release();
    (await sched.acquire({ model: b, keepAliveMs: Infinity })).release();
    (await sched.acquire({ model: c, keepAliveMs: 60_000 })).release();
    const busy = await sched.acquire({ model: d, keepAliveMs: 30_000 });
    assertEquals(sched.list().map((r) => [r.name, r.expiresAt, r.refs]), [
      ["b:latest", Infinity, 0],
      ["c:latest", now + 60_000, 0],
      ["d:latest", now + 30_000, 1],
      ["a:latest", now + 10_000, 0],
    ]);
    busy.release();
  });
});

Deno.test("scheduler: past maxInFlight a request gets Ollama's busy error until one finishes", async () => {
  const { launcher, sched } = setup({ maxInFlight: 2 });
  const [a, b] = [model("a"), model("b")];
  launcher.holdStarts = true;
  const pa = sched.acquire({ model: a, keepAliveMs: KEEP });
  const pb = sched.acquire({ model: b, keepAliveMs: KEEP });
  await settle();
  assertEquals(sched.inFlight(), 2, "waiting requests count");
  const err = await assertRejects(() => sched.acquire({ model: a, keepAliveMs: KEEP }), QueueFullError);
  assertEquals(err.message, BUSY_MESSAGE);
  launcher.finish();
  launcher.finish();
  const [la, lb] = await Promise.all([pa, pb]);
  assertEquals(sched.inFlight(), 2, "running requests count");
  await assertRejects(() => sched.acquire({ model: a, keepAliveMs: KEEP }), QueueFullError, BUSY_MESSAGE);
  assertEquals(sched.inFlight(), 2, "a refused request takes no place");
  la.release();
  assertEquals(sched.inFlight(), 1);
  const again = await sched.acquire({ model: a, keepAliveMs: KEEP });
  assertEquals(sched.inFlight(), 2);
  again.release();
  lb.release();
  assertEquals(sched.inFlight(), 0);
  assertEquals(launcher.starts(), 2);
});

Deno.test("scheduler: a failed start fails every request waiting on it with the launcher's reason, and the next request tries again", async () => {
  const { clock, launcher, sched } = setup({ maxInFlight: 4 });
  const a = model("a");
  launcher.holdStarts = true;
  const p1 = sched.acquire({ model: a, keepAliveMs: KEEP });
  const p2 = sched.acquire({ model: a, keepAliveMs: KEEP });
  await settle();
  launcher.fail(new UserError("instance 'rocm' is not installed", { hint: "run `llama-mgr instances`" }));
  const results = await Promise.allSettled([p1, p2]);
  for (const r of results) {
    assert(r.status === "rejected");
    assert(r.reason instanceof LoadFailedError, String(r.reason));
    assertEquals(r.reason.message, "instance 'rocm' is not installed (run `llama-mgr instances`)");
    assertEquals(r.reason.model, "a:latest");
    assert(r.reason.cause instanceof UserError);
  }
  assertEquals(sched.list(), [], "the runner is gone");
  assertEquals(sched.inFlight(), 0);
  clock.advance(3_600_000);
  await settle();
  assertEquals(launcher.calls, ["start a"], "no retry by itself");

  launcher.holdStarts = false;
  launcher.failNext = new Error("llama-server exited with code 1");
  await assertRejects(
    () => sched.acquire({ model: a, keepAliveMs: KEEP }),
    LoadFailedError,
    "llama-server exited with code 1",
  );
  assertEquals(launcher.calls, ["start a", "start a"]);
  const lease = await sched.acquire({ model: a, keepAliveMs: KEEP });
  assertEquals(launcher.calls, ["start a", "start a", "start a"]);
  assertEquals(sched.list().map((r) => [r.state, r.url]), [["ready", lease.url]]);
  lease.release();
});

Deno.test("scheduler: a server that died while idle is stopped and started again on the next request", async () => {
  const { launcher, sched } = setup();
  const a = model("a");
  const l1 = await sched.acquire({ model: a, keepAliveMs: KEEP });
  l1.release();
  launcher.kill(a);
  const l2 = await sched.acquire({ model: a, keepAliveMs: KEEP });
  assertEquals(launcher.calls, ["start a", "stop a", "start a"]);
  assert(l2.url !== l1.url);
  assertEquals(sched.list().map((r) => r.url), [l2.url]);
  l2.release();
});

Deno.test("scheduler: a server that died with a request still on it is not handed to the next one", async () => {
  const { launcher, sched } = setup();
  const a = model("a");
  const l1 = await sched.acquire({ model: a, keepAliveMs: KEEP });
  launcher.kill(a); // l1's answer has not yet seen the crash
  const l2 = await sched.acquire({ model: a, keepAliveMs: KEEP });
  assertEquals(launcher.calls, ["start a", "stop a", "start a"]);
  assert(l2.url !== l1.url);
  l1.release();
  assertEquals(sched.list().map((r) => [r.url, r.refs]), [[l2.url, 1]]);
  l2.release();
  assertEquals(sched.inFlight(), 0);
});

Deno.test("scheduler: stopAll stops every server, busy or idle, and a second release() changes nothing", async (t) => {
  await t.step("stopAll", async () => {
    const { launcher, sched } = setup();
    const [a, b] = [model("a"), model("b")];
    (await sched.acquire({ model: a, keepAliveMs: KEEP })).release();
    const lb = await sched.acquire({ model: b, keepAliveMs: KEEP });
    await sched.stopAll();
    assertEquals(launcher.calls.filter((c) => c.startsWith("stop")).sort(), ["stop a", "stop b"]);
    assertEquals(sched.list(), []);
    lb.release(); // after shutdown: harmless
    assertEquals(sched.inFlight(), 0);
  });

  await t.step("release() twice", async () => {
    const { launcher, sched } = setup();
    const a = model("a");
    const l1 = await sched.acquire({ model: a, keepAliveMs: 0 });
    const l2 = await sched.acquire({ model: a, keepAliveMs: 0 });
    l1.release();
    l1.release();
    await settle();
    assertEquals(sched.inFlight(), 1);
    assertEquals(sched.list().map((r) => r.refs), [1]);
    assertEquals(launcher.calls, ["start a"], "the other request still holds the model");
    l2.release();
    await settle();
    assertEquals(sched.inFlight(), 0);
    assertEquals(launcher.calls, ["start a", "stop a"]);
  });
});

// Packing by bytes: a launcher that also plans (devices with budgets, each model's need), as the daemon's does
// from `--list-devices` and the index's estimate. Imports for this part (ES imports are hoisted).
import {
  CannotFitError,
  groupConflicts,
  type LaunchPlan,
  type ModelNeed,
  placeModel,
} from "../lib/daemon/runners/mod.ts";
import type { DeviceBudget } from "../lib/llamacpp/devices.ts";
import { errorStatus } from "../lib/daemon/http.ts";

const GB = 1e9;

function cpuDevice(budgetBytes: number): DeviceBudget {
  return {
    name: "CPU",
    description: "system memory",
    kind: "cpu",
    totalBytes: 64 * GB,
    freeBytes: 60 * GB,
    budgetBytes,
  };
}

function gpuDevice(name: string, budgetBytes: number): DeviceBudget {
  return { name, description: "a fake GPU", kind: "gpu", totalBytes: 8 * GB, freeBytes: 8 * GB, budgetBytes };
}

/** A need of `total` bytes: weights 80%, KV cache 15%, compute buffers 5%, over 31 layers. */
function needOf(total: number, layers = 31): ModelNeed {
  return {
    totalBytes: total,
    weightsBytes: total * 0.8,
    kvBytes: total * 0.15,
    computeBytes: total * 0.05,
    layers,
  };
}

/** The fake launcher, planning each model on `devices` with the need set for it (1 GB unless set). */
class PlanningLauncher extends FakeLauncher {
  devices: DeviceBudget[] = [cpuDevice(10 * GB)];
  needs: Record<string, ModelNeed> = {};
  plan(spec: Omit<LaunchSpec, "serverName">): Promise<LaunchPlan> {
    const short = spec.model.name.replace(/:latest$/, "");
    return Promise.resolve({ devices: this.devices, need: this.needs[short] ?? needOf(GB) });
  }
}

function setupBytes(needs: Record<string, number>, options: Partial<SchedulerOptions> = {}) {
  const clock = new FakeClock();
  const launcher = new PlanningLauncher(clock);
  for (const [name, total] of Object.entries(needs)) launcher.needs[name] = needOf(total);
  const sched: Scheduler = createScheduler({ launcher, clock, maxLoaded: 10, ...options });
  // Uses a model once (a request that ends at once), a second of fake time after the last.
  const use = async (m: CatalogModel) => {
    clock.advance(1000);
    (await sched.acquire({ model: m, keepAliveMs: KEEP })).release();
  };
  const loaded = () => sched.list().map((r) => r.name.replace(/:latest$/, "")).sort();
  return { clock, launcher, sched, use, loaded };
}

Deno.test("scheduler, by bytes: models stay loaded together while their bytes fit the budget, and list() shows them", async () => {
  const { launcher, sched, use, loaded } = setupBytes({ a: 4 * GB, b: 4 * GB, c: 1.5 * GB });
  const [a, b, c] = [model("a"), model("b"), model("c")];
  await use(a);
  await use(b);
  await use(c); // 9.5 GB of 10
  assertEquals(launcher.calls, ["start a", "start b", "start c"]);
  assertEquals(loaded(), ["a", "b", "c"]);
  assertEquals(sched.list().find((r) => r.name === "a:latest")?.usage, { CPU: 4 * GB });
  assertEquals(sched.list().find((r) => r.name === "a:latest")?.sizeBytes, 4 * GB);
  assertEquals(sched.devices(), [{ name: "CPU", kind: "cpu", budgetBytes: 10 * GB, usedBytes: 9.5 * GB }]);
});

Deno.test("scheduler, by bytes: to make room, idle models are unloaded least recently used first, only as many as needed", async () => {
  const { launcher, use, loaded } = setupBytes({ a: 3 * GB, b: 3 * GB, c: 3 * GB, d: 5 * GB, e: 2 * GB });
  const [a, b, c, d, e] = [model("a"), model("b"), model("c"), model("d"), model("e")];
  await use(a);
  await use(b);
  await use(c);
  await use(a); // b is now the least recently used, then c
  await use(d); // 9 + 5 > 10: b and c go, a stays
  assertEquals(launcher.calls.slice(3), ["stop b", "stop c", "start d"]);
  assertEquals(loaded(), ["a", "d"]);
  await use(e); // 8 + 2 fits: nothing is unloaded
  assertEquals(launcher.calls.slice(6), ["start e"]);
  assertEquals(loaded(), ["a", "d", "e"]);
});

Deno.test("scheduler, by bytes: a busy model is never unloaded, and idle ones stay while that would not make room", async () => {
  const { clock, launcher, sched, loaded } = setupBytes({ a: 6 * GB, b: 3 * GB, c: 5 * GB });
  const [a, b, c] = [model("a"), model("b"), model("c")];
  const la = await sched.acquire({ model: a, keepAliveMs: KEEP });
  clock.advance(1000);
  (await sched.acquire({ model: b, keepAliveMs: KEEP })).release();
  clock.advance(1000);
  const pc = sched.acquire({ model: c, keepAliveMs: KEEP }); // needs a's bytes: unloading b alone is no use
  assertEquals(await done(pc), false, "c waits for the busy a");
  assertEquals(launcher.calls, ["start a", "start b"], "b stays loaded while a is busy");
  assertEquals(sched.waiting(), 1);
  la.release(); // now both can go: b first (used before a's release)
  const lc = await pc;
  assertEquals(launcher.calls.slice(2), ["stop b", "stop a", "start c"]);
  assertEquals(loaded(), ["c"]);
  assertEquals(sched.waiting(), 0);
  lc.release();
});

Deno.test("scheduler, by bytes: requests that need room load in order of arrival; one for a loaded model does not wait", async () => {
  const { clock, launcher, sched, loaded } = setupBytes({ a: 8 * GB, b: 5 * GB, c: 1 * GB });
  const [a, b, c] = [model("a"), model("b"), model("c")];
  const la = await sched.acquire({ model: a, keepAliveMs: KEEP });
  clock.advance(1000);
  const pb = sched.acquire({ model: b, keepAliveMs: KEEP });
  await settle();
  const pc = sched.acquire({ model: c, keepAliveMs: KEEP }); // would fit now (8 + 1), but b came first
  assertEquals(await done(pb), false);
  assertEquals(await done(pc), false, "c waits behind b");
  assertEquals(sched.waiting(), 2);
  const la2 = await sched.acquire({ model: a, keepAliveMs: KEEP }); // a is loaded: no wait
  assertEquals(sched.waiting(), 2);
  la.release();
  la2.release();
  const [lb, lc] = await Promise.all([pb, pc]);
  assertEquals(launcher.calls, ["start a", "stop a", "start b", "start c"]);
  assertEquals(loaded(), ["b", "c"]);
  lb.release();
  lc.release();
});

Deno.test("scheduler, by bytes: a model larger than the whole budget fails at once with its need and the budget (a 500)", async () => {
  const { launcher, sched, use, loaded } = setupBytes({ a: 2 * GB, big: 12 * GB });
  await use(model("a"));
  const err = await assertRejects(
    () => sched.acquire({ model: model("big"), keepAliveMs: KEEP }),
    CannotFitError,
  );
  assertEquals(
    err.message.split(":")[0],
    "model requires more system memory (11.2 GiB) than is available (9.3 GiB)",
  );
  assert(err.message.includes("memory.budgets.CPU"), err.message);
  assertEquals([err.model, err.device, err.needBytes, err.budgetBytes], [
    "big:latest",
    "CPU",
    12 * GB,
    10 * GB,
  ]);
  assertEquals(errorStatus(err), 500);
  assertEquals(launcher.calls, ["start a"], "nothing was unloaded for it");
  assertEquals(loaded(), ["a"]);
  assertEquals([sched.inFlight(), sched.waiting()], [0, 0]);
});

Deno.test("scheduler, by bytes: max_loaded_models still caps the count when the bytes fit", async () => {
  const { launcher, use, loaded } = setupBytes({}, { maxLoaded: 2 });
  const [a, b, c] = [model("a"), model("b"), model("c")];
  await use(a);
  await use(b);
  await use(c);
  assertEquals(launcher.calls, ["start a", "start b", "stop a", "start c"]);
  assertEquals(loaded(), ["b", "c"]);
});

Deno.test("scheduler, by bytes: groups keep swap members and exclusive members apart, whatever the bytes", async (t) => {
  const conflicts = groupConflicts({
    pair: { members: ["a", "b"], swap: true, exclusive: false },
    solo: { members: ["x"], swap: false, exclusive: true },
    free: { members: ["c", "d"], swap: false, exclusive: false },
  });
  const [a, b, c, d, x] = [model("a"), model("b"), model("c"), model("d"), model("x")];

  await t.step("members of a swap group load one at a time; others load beside them", async () => {
    const { launcher, use, loaded } = setupBytes({}, { conflicts });
    await use(a);
    await use(c);
    await use(d);
    await use(b);
    assertEquals(launcher.calls, ["start a", "start c", "start d", "stop a", "start b"]);
    assertEquals(loaded(), ["b", "c", "d"]);
  });

  await t.step("an exclusive group's member runs alone, and waits for a busy model outside it", async () => {
    const { launcher, sched, use, loaded } = setupBytes({}, { conflicts });
    await use(c);
    const la = await sched.acquire({ model: a, keepAliveMs: KEEP });
    const px = sched.acquire({ model: x, keepAliveMs: KEEP });
    assertEquals(await done(px), false, "x waits for a");
    la.release();
    (await px).release();
    assertEquals(launcher.calls, ["start c", "start a", "stop c", "stop a", "start x"]);
    assertEquals(loaded(), ["x"]);
    await use(d); // and a model outside the group unloads it
    assertEquals(launcher.calls.slice(5), ["stop x", "start d"]);
  });

  await t.step("a model can be named by an alias or its file", () => {
    const byPath = groupConflicts({ g: { members: ["/models/a.gguf", "B"], swap: true, exclusive: false } })!;
    assertEquals(byPath(a, b), true);
    assertEquals(byPath(a, c), false);
    assertEquals(groupConflicts({}), undefined, "no groups: no check at all");
  });
});

Deno.test("scheduler, by bytes: with no num_gpu the GPU takes the most layers that fit its budget, the rest stays on the CPU", async (t) => {
  await t.step("placeModel: fitted, all, given, none", () => {
    const cpu = cpuDevice(30 * GB);
    const need = needOf(6.4 * GB, 31); // 32 units (31 layers + output) of 0.19 GB, 0.32 GB compute
    const part = placeModel(need, [gpuDevice("CUDA0", 3.2 * GB), cpu]);
    assertEquals(part.ngl, 15); // 0.32 + 15 × 0.19 = 3.17 GB
    assert(part.sizeVramBytes <= 3.2 * GB && part.sizeVramBytes > 3 * GB, String(part.sizeVramBytes));
    assertEquals(Object.keys(part.usage), ["CUDA0", "CPU"]);
    assertEquals(part.sizeBytes, part.usage.CUDA0 + part.usage.CPU);
    const all = placeModel(need, [gpuDevice("CUDA0", 8 * GB), cpu]);
    assertEquals([all.ngl, all.sizeVramBytes, all.usage], [32, 6.4 * GB, { CUDA0: 6.4 * GB }]);
    assertEquals(placeModel(need, [gpuDevice("CUDA0", 8 * GB), cpu], 10).ngl, 10, "num_gpu wins");
    assertEquals(placeModel(need, [gpuDevice("CUDA0", 8 * GB), cpu], -1).ngl, 32, "-1 is all");
    const none = placeModel(need, [gpuDevice("CUDA0", 0.1 * GB), cpu]);
    assertEquals([none.ngl, none.usage, none.sizeVramBytes], [0, { CPU: 6.4 * GB }, 0]);
    const cpuOnly = placeModel(need, [cpu]);
    assertEquals([cpuOnly.ngl, cpuOnly.usage], [undefined, { CPU: 6.4 * GB }]);
    const two = placeModel(need, [gpuDevice("Vulkan0", 3 * GB), gpuDevice("Vulkan1", 1 * GB), cpu]);
    assertEquals(two.ngl, 19, "two GPUs pool their budgets");
    assertEquals(Math.round(two.usage.Vulkan0 / two.usage.Vulkan1), 3, "in proportion to their budgets");
  });

  await t.step("placeModel: the output layer goes first at its own size, the token embedding stays", () => {
    // A small model with a large vocabulary and tied embeddings (as SmolLM2): the output layer is the token
    // embedding again, as big as 10 repeating layers; llama.cpp puts that copy on the GPU first.
    const cpu = cpuDevice(30 * GB);
    const need: ModelNeed = {
      totalBytes: 2.1 * GB,
      weightsBytes: 1.5 * GB,
      kvBytes: 0.5 * GB,
      computeBytes: 0.1 * GB,
      layers: 20,
      layerBytes: { input: 0.5 * GB, output: 0.5 * GB, repeating: 1 * GB },
    };
    // 0.1 compute + 0.5 output + 5 × (0.05 + 0.025) = 0.975 GB: 6 units in 1 GB (an even split says 10).
    const part = placeModel(need, [gpuDevice("Vulkan0", 1 * GB), cpu]);
    assertEquals(part.ngl, 6);
    assert(part.sizeVramBytes > 0.95 * GB && part.sizeVramBytes <= 1 * GB, String(part.sizeVramBytes));
    // The CPU keeps the embedding and the other 15 layers, and runs them with its own compute buffers.
    assertEquals(part.usage.CPU, Math.round(0.5 * GB + 15 * 0.075 * GB + 0.1 * GB));
    const evenly = placeModel({ ...need, layerBytes: undefined }, [gpuDevice("Vulkan0", 1 * GB), cpu]);
    assertEquals(evenly.ngl, 9, "without layerBytes: 21 even units of 0.095 GB");
    const all = placeModel(need, [gpuDevice("Vulkan0", 4 * GB), cpu]);
    assertEquals(all.ngl, 21);
    assertEquals(
      all.usage,
      { Vulkan0: 2.1 * GB, CPU: 0.5 * GB },
      "the copy on the GPU, the embedding in RAM",
    );
    const none = placeModel(need, [gpuDevice("Vulkan0", 0.5 * GB), cpu]);
    assertEquals(none.ngl, 0, "not even the output layer fits");
  });

  await t.step(
    "the scheduler starts llama-server with the fitted layers and shows size and size_vram",
    async () => {
      const { launcher, sched } = setupBytes({});
      launcher.devices = [gpuDevice("CUDA0", 3.2 * GB), cpuDevice(30 * GB)];
      launcher.needs.big = needOf(6.4 * GB, 31);
      launcher.needs.small = needOf(1 * GB, 31);
      const a = model("big");
      const lease = await sched.acquire({ model: a, keepAliveMs: KEEP });
      assertEquals(launcher.specs[0].load.ngl, 15);
      const [info] = sched.list();
      assertEquals([info.ngl, info.sizeBytes, info.sizeVramBytes], [
        15,
        info.usage.CUDA0 + info.usage.CPU,
        info.usage.CUDA0,
      ]);
      lease.release();
      // A model that needs the GPU's bytes unloads the idle one there.
      (await sched.acquire({ model: model("small"), keepAliveMs: KEEP })).release();
      assertEquals(launcher.calls, ["start big", "stop big", "start small"]);
      assertEquals(launcher.specs[1].load.ngl, 32, "all of it fits");
      // The request's num_gpu is used as given; too many layers for the GPU's budget is an error naming it.
      const err = await assertRejects(
        () => sched.acquire({ model: a, load: { ngl: 99 }, keepAliveMs: KEEP }),
        CannotFitError,
      );
      assertEquals([err.device, err.needBytes > 3.2 * GB], ["CUDA0", true]);
      assert(
        err.message.startsWith("model requires more memory on CUDA0 (6.0 GiB) than is available (3.0 GiB)"),
      );
      assert(err.message.includes("fewer GPU layers (num_gpu)"), err.message);
      (await sched.acquire({ model: a, load: { ngl: 4 }, keepAliveMs: KEEP })).release();
      assertEquals(launcher.specs.at(-1)!.load.ngl, 4);
    },
  );
});

Deno.test("scheduler, by bytes: new load options that can never fit leave the loaded model running", async () => {
  const { launcher, sched, use, loaded } = setupBytes({ a: 2 * GB });
  const a = model("a");
  await use(a);
  launcher.needs.a = needOf(20 * GB); // as at a larger context
  await assertRejects(
    () => sched.acquire({ model: a, load: { ctx: 131072 }, keepAliveMs: KEEP }),
    CannotFitError,
  );
  assertEquals(launcher.calls, ["start a"]);
  assertEquals(loaded(), ["a"]);
});

Deno.test("scheduler, by bytes: a device's first budget stands when a later plan measures less free memory", async () => {
  const { launcher, sched, use, loaded } = setupBytes({ a: 4 * GB, b: 4 * GB });
  await use(model("a"));
  // Listed again with a loaded, the free memory is lower by a's bytes: counting it again would evict a.
  launcher.devices = [cpuDevice(6 * GB)];
  await use(model("b"));
  assertEquals(loaded(), ["a", "b"]);
  assertEquals(sched.devices().map((d) => [d.budgetBytes, d.usedBytes]), [[10 * GB, 8 * GB]]);
});

Deno.test("cpu turns: one runner's requests run together, another's wait, and the turn passes in order", async () => {
  const turns = createCpuTurns();
  const order: string[] = [];
  await turns.enter("a");
  await turns.enter("a"); // a second request of the runner that has the turn joins it
  const b = turns.enter("b").then(() => order.push("b"));
  const a3 = turns.enter("a").then(() => order.push("a3")); // behind b: a stream of a's cannot keep b waiting
  await new Promise((r) => setTimeout(r, 10));
  assertEquals([order, turns.holder(), turns.waiting()], [[], "a", 2]);
  turns.leave("a");
  await new Promise((r) => setTimeout(r, 10));
  assertEquals(order, [], "b waits for the last of a's requests");
  turns.leave("a");
  await b;
  assertEquals([order, turns.holder()], [["b"], "b"]);
  turns.leave("b");
  await a3;
  assertEquals([order, turns.holder(), turns.waiting()], [["b", "a3"], "a", 0]);
  turns.leave("a");
  assertEquals(turns.holder(), undefined);
});

Deno.test("cpu turns: two daemons on one machine take turns through the lock file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const lockFile = `${dir}/cpu.lock`;
    const one = createCpuTurns({ lockFile });
    const two = createCpuTurns({ lockFile });
    await one.enter("a");
    let twoRuns = false;
    const other = two.enter("b").then(() => twoRuns = true);
    await new Promise((r) => setTimeout(r, 200));
    assert(!twoRuns, "the second daemon's runner ran while the first's had the turn");
    one.leave("a");
    await other;
    assert(twoRuns);
    two.leave("b");
    // The turn is free again: the first daemon gets it back.
    await one.enter("c");
    one.leave("c");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("scheduler, cpu turns: a request for another CPU model waits until the running one's requests end", async () => {
  const { sched } = setup({ cpuTurns: createCpuTurns() });
  const [a, b] = [model("a"), model("b")];
  const first = await sched.acquire({ model: a, keepAliveMs: KEEP });
  const second = await sched.acquire({ model: a, keepAliveMs: KEEP }); // the same model batches in its slots
  let got: Lease | undefined;
  const waiting = sched.acquire({ model: b, keepAliveMs: KEEP }).then((l) => got = l);
  await new Promise((r) => setTimeout(r, 20));
  assertEquals(got, undefined, "b ran beside a on the CPU");
  assertEquals(sched.waiting(), 1);
  first.release();
  second.release();
  await waiting;
  assert(got);
  assertEquals(sched.list().map((r) => r.name).sort(), ["a:latest", "b:latest"], "both stay loaded");
  got.release();
});
