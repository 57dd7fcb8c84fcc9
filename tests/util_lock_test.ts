/** Cross-process locks: one holder at a time, a clear message naming the holder, stale locks taken over. */
import { assertEquals, assertRejects, assertStringIncludes } from "./_assert.ts";
import { tempDir } from "./_fixtures.ts";
import { withLock } from "../lib/util/lock.ts";
import { UserError } from "../lib/util/errors.ts";

Deno.test("locks admit one holder at a time, name a live holder, and take over a dead one's", async (t) => {
  const d = await tempDir();
  const lock = `${d.path}/locks/x.lock`;
  try {
    await t.step("twenty waiters run one at a time", async () => {
      let inside = 0;
      let most = 0;
      await Promise.all(Array.from({ length: 20 }, (_, i) =>
        withLock(lock, `job ${i}`, async () => {
          inside++;
          most = Math.max(most, inside);
          await new Promise((r) => setTimeout(r, 3));
          inside--;
        }, { wait: true })));
      assertEquals(most, 1);
    });
    await t.step("a live holder is named; without --wait the second fails at once", async () => {
      const holder = new Deno.Command("sleep", { args: ["30"] }).spawn();
      try {
        await Deno.writeTextFile(
          lock,
          JSON.stringify({ pid: holder.pid, what: "install of 'cpu'", since: "now" }),
        );
        const err = await assertRejects(() => withLock(lock, "other", () => Promise.resolve()), UserError);
        assertStringIncludes(err.message, `install of 'cpu' is running (pid ${holder.pid}`);
      } finally {
        holder.kill();
        await holder.status;
      }
    });
    await t.step("a dead holder's lock is taken over", async () => {
      let ran = false;
      await withLock(lock, "after", () => Promise.resolve(void (ran = true)));
      assertEquals(ran, true);
    });
  } finally {
    await d.cleanup();
  }
});

Deno.test("a waiter stops waiting when its signal aborts", async () => {
  const d = await tempDir();
  const lock = `${d.path}/x.lock`;
  try {
    await withLock(lock, "holder", async () => {
      const ac = new AbortController();
      setTimeout(() => ac.abort(new Error("stop")), 100);
      await assertRejects(
        () => withLock(lock, "waiter", () => Promise.resolve(), { wait: true, signal: ac.signal }),
        Error,
        "stop",
      );
    });
  } finally {
    await d.cleanup();
  }
});
