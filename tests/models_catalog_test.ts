/**
 * The daemon's model catalogue: a request never waits for a rescan of the model stores when the model is in the
 * last listing, a model added since that listing is still found, `/api/tags` is never older than the cache
 * time, and a change made through the daemon is not undone by a scan that started before it.
 */
import { assert, assertEquals } from "./_assert.ts";
import { createCatalog, type ModelEntry } from "../lib/models/mod.ts";
import { describeModel } from "../lib/gguf/mod.ts";
import { resolvePaths } from "../lib/config/paths.ts";
import { tempDir } from "./_fixtures.ts";

/** What the index says of a llama model with no metadata beyond its architecture. */
const FACTS = describeModel({
  version: 3,
  littleEndian: true,
  metadata: { "general.architecture": "llama" },
  metadataTypes: {},
  tensors: [],
  alignment: 32,
  dataOffset: 0,
  headerBytes: 0,
  fileSize: 0,
});

function entry(name: string): ModelEntry {
  const path = `/models/${name.replace(":", "-")}.gguf`;
  return { name, aliases: [], path, files: [path], source: "dir", sizeBytes: 1, mtimeMs: 0, facts: FACTS };
}

/** A model store whose scans can be held open, counting how many ran. */
function store(initial: string[]) {
  const names = [...initial];
  let gate: PromiseWithResolvers<void> | undefined;
  let scans = 0;
  return {
    names,
    get scans() {
      return scans;
    },
    hold() {
      gate = Promise.withResolvers<void>();
    },
    releaseHold() {
      gate?.resolve();
      gate = undefined;
    },
    async listModels(): Promise<ModelEntry[]> {
      scans++;
      const snapshot = names.map(entry);
      if (gate) await gate.promise;
      return snapshot;
    },
  };
}

/** A catalogue over a store holding `a:latest`, in a fresh data dir (removed by `cleanup`). */
async function catalogue(times: { cacheMs: number; lookupRefreshMs: number }) {
  const dir = await tempDir();
  const s = store(["a:latest"]);
  const paths = resolvePaths({ dataDir: dir.path, env: {} });
  const catalog = createCatalog({ paths, listModels: () => s.listModels(), ...times });
  return { s, catalog, dataDir: dir.path, cleanup: dir.cleanup };
}

Deno.test("catalogue: lookups use the last listing and rescan only when they must", async (t) => {
  const { s, catalog, cleanup } = await catalogue({ cacheMs: 50, lookupRefreshMs: 50 });

  await t.step("the first lookup scans", async () => {
    assertEquals((await catalog.find("a"))?.name, "a:latest");
    assertEquals(s.scans, 1);
  });

  await t.step("an old listing answers at once while a rescan runs in the background", async () => {
    await new Promise((r) => setTimeout(r, 80));
    s.hold(); // the next scan does not finish until released
    const found = await Promise.race([
      catalog.find("a"),
      new Promise<"waited">((r) => setTimeout(() => r("waited"), 1000)),
    ]);
    assert(found !== "waited", "the lookup waited for the scan");
    assertEquals(found?.name, "a:latest");
    assertEquals(s.scans, 2, "a background rescan started");
    s.releaseHold();
    await new Promise((r) => setTimeout(r, 10));
  });

  await t.step("a model added after the last listing is found by a fresh scan", async () => {
    s.names.push("b:latest");
    const scans = s.scans;
    assertEquals((await catalog.find("b"))?.name, "b:latest");
    assertEquals(s.scans, scans + 1);
  });

  await t.step("an unknown name is unknown after one fresh scan", async () => {
    const scans = s.scans;
    assertEquals(await catalog.find("nope"), undefined);
    assertEquals(s.scans, scans + 1);
  });

  await t.step("the list clients see is never older than the cache time", async () => {
    s.names.push("c:latest");
    await new Promise((r) => setTimeout(r, 80));
    const names = (await catalog.list()).map((m) => m.name);
    assertEquals(names, ["a:latest", "b:latest", "c:latest"]);
  });

  await t.step(
    "a scan that began before a change made through the daemon cannot bring back the old list",
    async () => {
      await new Promise((r) => setTimeout(r, 80));
      s.hold();
      const stale = catalog.list(); // scans with c still present
      s.names.splice(s.names.indexOf("c:latest"), 1);
      catalog.invalidate(); // as /api/delete does after removing the file
      s.releaseHold();
      assert((await stale).some((m) => m.name === "c:latest"), "the old scan saw c");
      const names = (await catalog.list()).map((m) => m.name);
      assertEquals(names, ["a:latest", "b:latest"]);
    },
  );
  await cleanup();
});

Deno.test("catalogue: busy lookups do not rescan more often than lookupRefreshMs; the model list stays fresh", async () => {
  const { s, catalog, cleanup } = await catalogue({ cacheMs: 50, lookupRefreshMs: 60_000 });
  try {
    assertEquals((await catalog.find("a"))?.name, "a:latest");
    for (let i = 0; i < 5; i++) {
      await new Promise((r) => setTimeout(r, 30));
      assertEquals((await catalog.find("a"))?.name, "a:latest");
    }
    assertEquals(s.scans, 1, "lookups rescanned although the listing was younger than lookupRefreshMs");
    s.names.push("b:latest");
    assertEquals((await catalog.list()).map((m) => m.name), ["a:latest", "b:latest"]);
    assertEquals(s.scans, 2);
  } finally {
    await cleanup();
  }
});

Deno.test("catalogue: names made at the same time are all kept, in memory and on disk", async () => {
  const { catalog, dataDir, cleanup } = await catalogue({ cacheMs: 2000, lookupRefreshMs: 30_000 });
  try {
    const a = (await catalog.find("a"))!;
    await Promise.all(Array.from({ length: 12 }, (_, i) => catalog.copy(a, `copy${i}`)));
    const names = (await catalog.list()).filter((m) => m.copy).map((m) => m.name).sort();
    assertEquals(names, Array.from({ length: 12 }, (_, i) => `copy${i}:latest`).sort());
    // A fresh catalogue reads the same names from the file.
    const again = createCatalog({
      paths: resolvePaths({ dataDir, env: {} }),
      listModels: () => Promise.resolve([entry("a:latest")]),
    });
    assertEquals((await again.list()).filter((m) => m.copy).length, 12);
    await Promise.all(names.slice(0, 6).map(async (n) => catalog.remove((await catalog.find(n))!)));
    assertEquals((await catalog.list()).filter((m) => m.copy).length, 6);
  } finally {
    await cleanup();
  }
});
