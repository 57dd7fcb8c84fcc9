/**
 * lib/daemon/arrivals.ts: prepared generation requests wait for the ones prepared beside them and go out
 * together; a request alone, or one never announced, is not held; a request that fails or waits too long
 * does not hold the others.
 */
import { assertEquals } from "./_assert.ts";
import { Arrivals, isGeneration } from "../lib/daemon/arrivals.ts";

const req = (path = "/api/chat") => new Request(`http://127.0.0.1${path}`, { method: "POST" });

/** Which of `promises` have settled once pending callbacks and timers due now have run. */
async function settled(promises: Promise<unknown>[]): Promise<boolean[]> {
  const state = promises.map(() => false);
  promises.forEach((p, i) => p.then(() => (state[i] = true)));
  await new Promise((r) => setTimeout(r, 0));
  return state;
}

Deno.test("arrivals: a request alone is sent at once", async () => {
  const a = new Arrivals(60_000);
  const r = req();
  a.arrive(r);
  assertEquals(a.preparing, 1);
  assertEquals(await settled([a.ready(r)]), [true]);
  assertEquals(a.preparing, 0);
});

Deno.test("arrivals: requests prepared together are released together, when the last is ready", async () => {
  const a = new Arrivals(60_000);
  const rs = [req(), req(), req("/v1/chat/completions")];
  for (const r of rs) a.arrive(r);
  const first = a.ready(rs[0]);
  const second = a.ready(rs[1]);
  assertEquals(await settled([first, second]), [false, false]);
  const third = a.ready(rs[2]);
  assertEquals(await settled([first, second, third]), [true, true, true]);
  // The next one alone is not held by the earlier group.
  const next = req();
  a.arrive(next);
  assertEquals(await settled([a.ready(next)]), [true]);
});

Deno.test("arrivals: a companion that fails (done without being sent) releases the held ones", async () => {
  const a = new Arrivals(60_000);
  const [r1, r2] = [req(), req()];
  a.arrive(r1);
  a.arrive(r2);
  const held = a.ready(r1);
  assertEquals(await settled([held]), [false]);
  a.done(r2);
  assertEquals(await settled([held]), [true]);
  a.done(r1); // after being sent: nothing changes
  assertEquals(a.preparing, 0);
});

Deno.test("arrivals: no request waits longer than maxHoldMs for a slow companion", async () => {
  const a = new Arrivals(30);
  const [r1, r2] = [req(), req()];
  a.arrive(r1);
  a.arrive(r2); // e.g. waiting for its model to load
  const held = a.ready(r1);
  assertEquals(await settled([held]), [false]);
  await held; // the test fails by its own timeout if this never settles
  assertEquals(a.preparing, 1);
});

Deno.test("arrivals: a request never announced is not held by others", async () => {
  const a = new Arrivals(60_000);
  const other = req();
  a.arrive(other);
  assertEquals(await settled([a.ready(req())]), [true]);
  assertEquals(a.preparing, 1);
});

Deno.test("arrivals: which requests are generation requests", () => {
  assertEquals(
    ["/api/chat", "/api/generate", "/v1/chat/completions", "/v1/completions", "/api/embed", "/api/tags"]
      .map((p) => isGeneration(req(p))),
    [true, true, true, true, false, false],
  );
  assertEquals(isGeneration(new Request("http://127.0.0.1/api/chat")), false);
});
