/**
 * The daemon's model catalogue: a request never waits for a rescan of the model stores when the model is in the
 * last listing, a model added since that listing is still found, `/api/tags` is never older than the cache
 * time, and a change made through the daemon is not undone by a scan that started before it.
 */
import { assert, assertEquals } from "./_assert.ts";
import { createCatalog, type ModelEntry } from "../lib/models/mod.ts";
import { listModels } from "../lib/models/index.ts";
import { ollamaPullDir } from "../lib/models/sources.ts";
import { describeModel } from "../lib/gguf/mod.ts";
import { resolvePaths } from "../lib/config/paths.ts";
import { parseConfig } from "../lib/config/load.ts";
import { exists } from "../lib/util/fs.ts";
import { sha256Hex, tempDir } from "./_fixtures.ts";
import { ggufFile } from "./_gguf.ts";

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

Deno.test("catalogue: a pulled model's LoRA adapter is its --lora, a copy keeps it, and it goes with the last name on it", async () => {
  const dir = await tempDir();
  try {
    const paths = resolvePaths({ dataDir: dir.path, env: {} });
    const config = parseConfig({
      models: { sources: { huggingface: false, ollama: false, lmstudio: false, llamacpp: false } },
    });
    // The pulled store as `llama-mgr pull` leaves it: two tags whose manifests list the same model and adapter.
    const store = ollamaPullDir(paths);
    await Deno.mkdir(`${store}/blobs`, { recursive: true });
    const blob = async (bytes: Uint8Array<ArrayBuffer>, mediaType: string) => {
      const digest = await sha256Hex(bytes);
      await Deno.writeFile(`${store}/blobs/sha256-${digest}`, bytes);
      return {
        mediaType,
        digest: `sha256:${digest}`,
        size: bytes.length,
        path: `${store}/blobs/sha256-${digest}`,
      };
    };
    const model = await blob(
      ggufFile([["general.architecture", "str", "llama"], ["llama.context_length", "u32", 2048]]),
      "application/vnd.ollama.image.model",
    );
    const adapter = await blob(
      ggufFile([["general.architecture", "str", "llama"], ["general.type", "str", "adapter"]]),
      "application/vnd.ollama.image.adapter",
    );
    const system = await blob(new TextEncoder().encode("Be brief."), "application/vnd.ollama.image.system");
    const manifest = async (tag: string, layers: { mediaType: string; digest: string; size: number }[]) => {
      const d = `${store}/manifests/registry.ollama.ai/library/tuned`;
      await Deno.mkdir(d, { recursive: true });
      await Deno.writeTextFile(
        `${d}/${tag}`,
        JSON.stringify({
          schemaVersion: 2,
          config: { digest: model.digest, size: 1 },
          layers: layers.map(({ mediaType, digest, size }) => ({ mediaType, digest, size })),
        }),
      );
    };
    await manifest("latest", [model, adapter, system]);
    await manifest("other", [model, adapter]);
    const catalog = createCatalog({ paths, listModels: () => listModels(paths, config) });
    const blobs = async () =>
      (await Array.fromAsync(Deno.readDir(`${store}/blobs`))).map((e) => e.name).sort();

    const latest = (await catalog.find("tuned"))!;
    assertEquals(latest.settings?.adapters, [adapter.path]);
    await catalog.copy((await catalog.find("tuned:other"))!, "mine");
    const mine = (await catalog.find("mine"))!;
    assertEquals(mine.settings?.adapters, [adapter.path]);

    // Another manifest lists the adapter: only the system prompt's blob goes.
    await catalog.remove(latest);
    assertEquals(await blobs(), [model.path, adapter.path].map((p) => p.split("/").pop()!).sort());
    // No manifest is left, but the copy stands on the model and the adapter.
    catalog.invalidate();
    await catalog.remove((await catalog.find("tuned:other"))!);
    assertEquals(await Array.fromAsync(Deno.readDir(`${store}/manifests`)), []);
    assertEquals(await blobs(), [model.path, adapter.path].map((p) => p.split("/").pop()!).sort());
    catalog.invalidate();
    assertEquals((await catalog.find("mine"))?.settings?.adapters, [adapter.path]);
    // The last name on them goes: so do they.
    await catalog.remove((await catalog.find("mine"))!);
    assertEquals(await blobs(), []);
  } finally {
    await dir.cleanup();
  }
});

Deno.test("catalogue: an uploaded adapter's blob goes with the last name made with it", async () => {
  const dir = await tempDir();
  try {
    const paths = resolvePaths({ dataDir: dir.path, env: {} });
    const catalog = createCatalog({ paths, listModels: () => Promise.resolve([]) });
    await Deno.mkdir(catalog.blobsDir, { recursive: true });
    const put = async (bytes: Uint8Array<ArrayBuffer>) => {
      const path = `${catalog.blobsDir}/sha256-${await sha256Hex(bytes)}`;
      await Deno.writeFile(path, bytes);
      return path;
    };
    const model = await put(ggufFile([["general.architecture", "str", "llama"]]));
    const adapter = await put(
      ggufFile([["general.architecture", "str", "llama"], ["general.type", "str", "adapter"]]),
    );
    await catalog.create("a", { path: model, settings: { adapters: [adapter] } });
    await catalog.create("b", { path: model, settings: { adapters: [adapter] } });
    await catalog.remove((await catalog.find("a"))!);
    assert(await exists(adapter), "the adapter went while 'b' still uses it");
    await catalog.remove((await catalog.find("b"))!);
    assert(!(await exists(adapter)), "the adapter blob was left behind");
    assert(!(await exists(model)), "the model blob was left behind");
  } finally {
    await dir.cleanup();
  }
});
