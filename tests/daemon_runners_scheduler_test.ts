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
  LoadFailedError,
  QueueFullError,
  type Scheduler,
  type SchedulerOptions,
} from "../lib/daemon/runners/mod.ts";
import type { CatalogModel, ModelEntry } from "../lib/models/mod.ts";
import { describeModel } from "../lib/gguf/mod.ts";
import { UserError } from "../lib/util/errors.ts";

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
