/**
 * lib/util/memory.ts in a process of its own: dropping the deno binary's pages gives resident memory back and
 * the process goes on working (the pages come back from the file when used); without the FFI permission both
 * calls do nothing and say so.
 */
import { assert, assertEquals } from "./_assert.ts";
import { tempDir } from "./_fixtures.ts";

const memoryUrl = new URL("../lib/util/memory.ts", import.meta.url).href;
const processUrl = new URL("../lib/util/process.ts", import.meta.url).href;

/** Runs `body` in a fresh deno with `perms`, returning its JSON output. */
async function child(perms: string[], body: string): Promise<Record<string, unknown>> {
  const dir = await tempDir();
  try {
    const file = `${dir.path}/child.ts`;
    await Deno.writeTextFile(
      file,
      [
        `import { dropExecutablePages, startMemoryTrimmer, trimAllocator } from ${
          JSON.stringify(memoryUrl)
        };`,
        `import { pidStatusBytes } from ${JSON.stringify(processUrl)};`,
        `const fileKb = () => (pidStatusBytes(Deno.pid, "RssFile") ?? -1024) / 1024;`,
        `const out: Record<string, unknown> = {};`,
        body,
        `console.log(JSON.stringify(out));`,
      ].join("\n"),
    );
    const r = await new Deno.Command(Deno.execPath(), { args: ["run", ...perms, file], stderr: "inherit" })
      .output();
    assertEquals(r.code, 0, "the child process failed");
    return JSON.parse(new TextDecoder().decode(r.stdout));
  } finally {
    await dir.cleanup();
  }
}

Deno.test({
  name: "memory: the binary's pages are given back and come back when used; the allocator is trimmed",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const out = await child(
      ["-A"],
      `
      out.before = fileKb();
      out.mappings = dropExecutablePages();
      out.after = fileKb();
      out.trimmed = await trimAllocator();
      // Code that has not run yet in this process, then code that ran before the drop.
      out.work = [new Intl.NumberFormat("de-DE").format(1234.5), JSON.stringify({ a: [1, 2] }),
        "a-b-c".replace(/-/g, "+"), await crypto.subtle.digest("SHA-256", new Uint8Array([1])).then((d) => d.byteLength)];
      out.later = fileKb();
      `,
    );
    const before = out.before as number;
    const after = out.after as number;
    assert((out.mappings as number) > 0, `no mapping given back: ${JSON.stringify(out)}`);
    // A deno process holds tens of MB of its binary after start; most of it is start-up code.
    assert(before > 10_000 && after < before * 0.75, `resident file pages ${before} -> ${after} kB`);
    assertEquals(out.work, ["1.234,5", '{"a":[1,2]}', "a+b+c", 32]);
    assert((out.later as number) > after, "used pages come back from the file");
    assertEquals(out.trimmed, true);
  },
});

Deno.test({
  name: "memory: the trimmer gives pages back once settled and again when work stops, not while it goes on",
  // (work is either new requests or one still being answered)
  ignore: Deno.build.os !== "linux",
  async fn() {
    const out = await child(
      ["-A"],
      `
      const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
      // Work that touches code pages of the binary the start-up did not.
      const work = async () => {
        new Intl.DateTimeFormat("ja-JP", { dateStyle: "full" }).format(new Date());
        await crypto.subtle.digest("SHA-512", new Uint8Array(64));
        new Intl.Collator("sv").compare("a", "b");
      };
      out.before = fileKb();
      let answering = false; // a long answer being streamed, with no new request meanwhile
      const t = startMemoryTrimmer({ settleMs: 50, idleMs: 150, busy: () => answering });
      out.mappings = await t.settled;
      out.settled = fileKb();
      // Busy: activity in every interval, so nothing is given back while it lasts.
      const busyUntil = performance.now() + 700;
      while (performance.now() < busyUntil) {
        t.activity();
        await work();
        await sleep(20);
      }
      out.busy = fileKb();
      await sleep(600); // two quiet intervals
      out.quiet = fileKb();
      out.givenQuiet = t.givenBack;
      t.activity();
      answering = true;
      const answerUntil = performance.now() + 700;
      while (performance.now() < answerUntil) {
        await work();
        await sleep(20);
      }
      out.givenAnswering = t.givenBack;
      answering = false;
      await sleep(600);
      out.givenAfter = t.givenBack;
      await t.stop();
      `,
    );
    const kb = (k: string) => out[k] as number;
    assert(kb("mappings") > 0, JSON.stringify(out));
    assert(kb("settled") < kb("before") * 0.75, `settling gave nothing back: ${JSON.stringify(out)}`);
    assert(kb("busy") > kb("settled"), `pages used while busy stay: ${JSON.stringify(out)}`);
    assert(kb("quiet") < kb("busy") * 0.8, `going quiet gave nothing back: ${JSON.stringify(out)}`);
    // Once settled, once quiet; nothing while an answer went on without new requests; once after it.
    assertEquals(out.givenQuiet, 2, JSON.stringify(out));
    assertEquals(out.givenAnswering, 2, `given back in the middle of an answer: ${JSON.stringify(out)}`);
    assertEquals(out.givenAfter, 3, JSON.stringify(out));
  },
});

Deno.test("memory: without the FFI permission nothing is done, and the calls say so", async () => {
  const out = await child(
    ["--allow-read"],
    `
    out.mappings = dropExecutablePages();
    out.trimmed = await trimAllocator();
    const t = startMemoryTrimmer({ settleMs: 1 });
    out.settled = await t.settled;
    await t.stop();
    `,
  );
  assertEquals(out, { mappings: 0, trimmed: false, settled: 0 });
});

Deno.test({
  name: "memory: the allocator is trimmed after a short quiet, the code pages only after a long one",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const out = await child(
      ["-A"],
      `
      const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
      const t = startMemoryTrimmer({ settleMs: 20, idleMs: 100, pagesIdleMs: 600 });
      await t.settled;
      out.settled = [t.givenBack, t.trimmed];
      t.activity();
      await sleep(350); // a pause longer than the short quiet, shorter than the long one
      out.shortPause = [t.givenBack, t.trimmed];
      t.activity();
      await sleep(1000);
      out.longPause = [t.givenBack, t.trimmed];
      await t.stop();
      `,
    );
    // [pages given back, allocator trims]
    assertEquals(out.settled, [1, 1]);
    assertEquals(out.shortPause, [1, 2], `a short pause trims only the allocator: ${JSON.stringify(out)}`);
    assertEquals(
      out.longPause,
      [2, 3],
      `a long pause gives the pages back once more: ${JSON.stringify(out)}`,
    );
  },
});

Deno.test({
  name:
    "memory: under work that never pauses the allocator is trimmed every busyTrimMs, and not at all without it",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const out = await child(
      ["-A"],
      `
      const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
      const every = startMemoryTrimmer({ settleMs: 10, idleMs: 50, busyTrimMs: 200, busy: () => true });
      const never = startMemoryTrimmer({ settleMs: 10, idleMs: 50, busy: () => true });
      await Promise.all([every.settled, never.settled]);
      await sleep(1100);
      out.every = [every.givenBack, every.trimmed];
      out.never = [never.givenBack, never.trimmed];
      await every.stop();
      await never.stop();
      `,
    );
    // [pages given back, allocator trims]: once on settling; then only the busy trims, about every 200 ms.
    const [pages, trims] = out.every as number[];
    assertEquals(pages, 1, JSON.stringify(out));
    assert(trims >= 3 && trims <= 7, `about five trims in a second of work: ${JSON.stringify(out)}`);
    assertEquals(out.never, [1, 1], `trimmed while busy without busyTrimMs: ${JSON.stringify(out)}`);
  },
});
