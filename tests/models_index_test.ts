/**
 * The model index over real store layouts built in a temp dir: folders, the Hugging Face cache (symlinks into
 * blobs), Ollama's store (manifests and blobs), split models, mmproj pairing, unreadable files, the cache that
 * makes a rescan read nothing; name resolution; and the memory estimate against a real llama-server.
 */
import { assert, assertEquals, assertRejects, assertStringIncludes } from "./_assert.ts";
import { cli, sha256File, smolModelPath, tempDir, testInstance } from "./_fixtures.ts";
import { python, testVenv } from "./_python.ts";
import { resolvePaths } from "../lib/config/paths.ts";
import { parseConfig } from "../lib/config/load.ts";
import { estimateMemory } from "../lib/gguf/mod.ts";
import { resolveModel, scanModels } from "../lib/models/mod.ts";
import { UserError } from "../lib/util/errors.ts";
import { binaryPath } from "../lib/llamacpp/instances.ts";
import { findFreePort } from "../lib/server/mod.ts";

Deno.test({
  name: "the index finds every model in folders, the HF cache and Ollama's store, named and described",
  sanitizeResources: false,
  async fn(t) {
    const tmp = await tempDir();
    const home = `${tmp.path}/home`;
    const env = {
      HOME: home,
      HF_HOME: `${tmp.path}/hf`,
      OLLAMA_MODELS: `${tmp.path}/ollama`,
      LLAMA_CACHE: `${tmp.path}/llcache`,
    };
    const paths = resolvePaths({ dataDir: `${tmp.path}/data`, env: {} });
    const config = parseConfig({
      models: { dirs: [`${tmp.path}/mine`], aliases: { tiny: "testmodel:1m-f16" } },
    });
    try {
      const py = await testVenv("gguf", ["gguf==0.19.0", "numpy"]);
      const gen = `${tmp.path}/gen`;
      await python(py, new URL("../scripts/gguf/make_fixtures.py", import.meta.url).pathname, [gen]);
      const smol = await smolModelPath();
      // A folder: a split model, a model with its projector, a broken file.
      await Deno.mkdir(`${tmp.path}/mine/split`, { recursive: true });
      await Deno.mkdir(`${tmp.path}/mine/vision`, { recursive: true });
      for (const p of ["split-00001-of-00002.gguf", "split-00002-of-00002.gguf"]) {
        await Deno.copyFile(`${gen}/${p}`, `${tmp.path}/mine/split/${p}`);
      }
      await Deno.copyFile(`${gen}/types-le.gguf`, `${tmp.path}/mine/vision/model.gguf`);
      await Deno.copyFile(`${gen}/aligned-64.gguf`, `${tmp.path}/mine/vision/mmproj-model-f16.gguf`);
      await Deno.writeTextFile(`${tmp.path}/mine/broken.gguf`, "GGUF\x03\x00\x00\x00");
      // The HF cache: snapshots link into blobs; two revisions link the same blob.
      const repo = `${tmp.path}/hf/hub/models--HuggingFaceTB--SmolLM2-135M-GGUF`;
      await Deno.mkdir(`${repo}/blobs`, { recursive: true });
      await Deno.copyFile(smol, `${repo}/blobs/abc123`);
      for (const rev of ["rev1", "rev2"]) {
        await Deno.mkdir(`${repo}/snapshots/${rev}`, { recursive: true });
        await Deno.symlink(`../../blobs/abc123`, `${repo}/snapshots/${rev}/smollm2-q4_1.gguf`);
      }
      // Ollama's store: a manifest naming a model layer.
      const digest = await sha256File(`${gen}/big-vocab.gguf`);
      await Deno.mkdir(`${tmp.path}/ollama/blobs`, { recursive: true });
      await Deno.copyFile(`${gen}/big-vocab.gguf`, `${tmp.path}/ollama/blobs/sha256-${digest}`);
      await Deno.mkdir(`${tmp.path}/ollama/manifests/registry.ollama.ai/library/bigvocab`, {
        recursive: true,
      });
      await Deno.writeTextFile(
        `${tmp.path}/ollama/manifests/registry.ollama.ai/library/bigvocab/latest`,
        JSON.stringify({
          schemaVersion: 2,
          mediaType: "application/vnd.docker.distribution.manifest.v2+json",
          config: {
            mediaType: "application/vnd.docker.container.image.v1+json",
            digest: `sha256:${"0".repeat(64)}`,
            size: 2,
          },
          layers: [
            { mediaType: "application/vnd.ollama.image.model", digest: `sha256:${digest}`, size: 1 },
            {
              mediaType: "application/vnd.ollama.image.template",
              digest: `sha256:${"1".repeat(64)}`,
              size: 1,
            },
          ],
        }),
      );

      let first: Awaited<ReturnType<typeof scanModels>>;
      await t.step("a first scan reads every file and lists each model once", async () => {
        first = await scanModels(paths, config, { env });
        const byName = Object.fromEntries(first.models.map((m) => [m.name, m]));
        assertEquals(first.models.length, 4, first.models.map((m) => m.name).join(", "));
        assert(byName["bigvocab:latest"], "Ollama's name");
        assertEquals(byName["bigvocab:latest"].source, "ollama");
        assertEquals(byName["bigvocab:latest"].facts.vocabSize, 151936);
        const split = first.models.find((m) => m.files.length === 2)!;
        assert(split.path.endsWith("-00001-of-00002.gguf"));
        assertEquals(split.facts.splitCount, 2);
        const hf = first.models.find((m) => m.source === "huggingface")!;
        assertEquals(hf.files.length, 1, "two snapshot paths to one blob are one model");
        assert(hf.aliases.includes("hf.co/huggingfacetb/smollm2-135m-gguf:q4_1"), hf.aliases.join());
        const vision = first.models.find((m) => m.path.endsWith("vision/model.gguf"))!;
        assert(vision.mmproj?.endsWith("mmproj-model-f16.gguf"), "projector paired");
        assertEquals(first.unreadable.length, 1);
        assertStringIncludes(first.unreadable[0].error, "broken.gguf");
        assertStringIncludes(first.unreadable[0].error, "at byte");
      });

      await t.step("a rescan of unchanged files reads no GGUF bytes", async () => {
        const again = await scanModels(paths, config, { env });
        assertEquals(again.filesRead, 0);
        assertEquals(again.models.map((m) => m.name), first.models.map((m) => m.name));
      });

      await t.step("changed, new and removed files are reported", async () => {
        await Deno.remove(`${tmp.path}/mine/broken.gguf`);
        await Deno.copyFile(`${gen}/types-v2.gguf`, `${tmp.path}/mine/extra.gguf`);
        const r = await scanModels(paths, config, { env });
        assertEquals(r.added.map((p) => p.split("/").pop()), ["extra.gguf"]);
        assertEquals(r.removed.map((p) => p.split("/").pop()), ["broken.gguf"]);
        assertEquals(r.unreadable.length, 0);
      });

      await t.step("a corrupt index cache is rebuilt, not fatal", async () => {
        await Deno.writeTextFile(paths.indexFile, "{ not json");
        const r = await scanModels(paths, config, { env });
        assertEquals(r.models.length, 5);
        JSON.parse(await Deno.readTextFile(paths.indexFile));
      });

      await t.step("names, name:tag, aliases and paths resolve; a miss suggests the closest", async () => {
        assertEquals((await resolveModel(paths, config, "bigvocab", { env })).source, "ollama");
        assertEquals((await resolveModel(paths, config, "BigVocab:latest", { env })).source, "ollama");
        assertEquals(
          (await resolveModel(paths, config, "hf.co/huggingfacetb/smollm2-135m-gguf:q4_1", { env })).source,
          "huggingface",
        );
        assertEquals(
          (await resolveModel(paths, config, `${tmp.path}/mine/extra.gguf`, { env })).path,
          `${tmp.path}/mine/extra.gguf`,
        );
        const err = await assertRejects(
          () => resolveModel(paths, config, "bigvocap", { env }),
          UserError,
          "model 'bigvocap' not found",
        );
        assertStringIncludes(err.hint ?? "", "bigvocab:latest");
      });
    } finally {
      await tmp.cleanup();
    }
  },
});

Deno.test("models CLI lists, shows and scans", async () => {
  const tmp = await tempDir();
  try {
    await Deno.mkdir(`${tmp.path}/data/models`, { recursive: true });
    await Deno.symlink(await smolModelPath(), `${tmp.path}/data/models/smol.gguf`);
    const env = { HOME: `${tmp.path}/home` };
    const list = await cli(["-d", `${tmp.path}/data`, "--config", `${tmp.path}/none.yaml`, "models"], {
      env,
    });
    assertEquals(list.code, 0, list.stderr);
    assertStringIncludes(list.stdout, "smollm2:135m-q4_1");
    assertStringIncludes(list.stdout, "Q4_1");
    const show = await cli([
      "-d",
      `${tmp.path}/data`,
      "--config",
      `${tmp.path}/none.yaml`,
      "models",
      "show",
      "smollm2",
      "--json",
      "--ctx",
      "4096",
      "--cache-type",
      "q8_0",
    ], { env });
    const j = JSON.parse(show.stdout);
    assertEquals(j.facts.headCountKv, 3);
    assertEquals(j.memory.cacheType, "q8_0");
    const miss = await cli([
      "-d",
      `${tmp.path}/data`,
      "--config",
      `${tmp.path}/none.yaml`,
      "models",
      "show",
      "smollm",
    ], { env });
    assertEquals(miss.code, 1);
  } finally {
    await tmp.cleanup();
  }
});

Deno.test({
  name: "the memory estimate matches what a real llama-server allocates for the same model and context",
  sanitizeResources: false,
  async fn() {
    const { instance } = await testInstance();
    const model = await smolModelPath();
    const { describeModel } = await import("../lib/gguf/facts.ts");
    const { readGgufHeader } = await import("../lib/gguf/reader.ts");
    const facts = describeModel(await readGgufHeader(model, { skipArraysOver: 256 }));
    for (const [ctx, cache] of [[4096, "f16"], [2048, "q8_0"]] as const) {
      const child = new Deno.Command(binaryPath(instance, "llama-server"), {
        args: [
          "-m",
          model,
          "--host",
          "127.0.0.1",
          "--port",
          String(findFreePort()),
          "-c",
          String(ctx),
          "-lv",
          "4",
          "-ctk",
          cache,
          "-ctv",
          cache,
        ],
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      let log = "";
      const dec = new TextDecoder();
      const reader = (async () => {
        for await (const c of child.stderr) log += dec.decode(c);
      })();
      (async () => {
        for await (const c of child.stdout) log += dec.decode(c);
      })();
      const deadline = Date.now() + 60_000;
      while (!/compute buffer size/.test(log) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
      }
      child.kill("SIGKILL");
      await child.status;
      await reader.catch(() => {});
      const mib = (re: RegExp) => Number(log.match(re)?.[1]) * 1048576;
      const weights = mib(/model buffer size =\s+([\d.]+) MiB/);
      const kv = mib(/KV buffer size =\s+([\d.]+) MiB/);
      const compute = mib(/compute buffer size =\s+([\d.]+) MiB/);
      const est = estimateMemory(facts, { ctx, cacheType: cache });
      const close = (a: number, b: number, tol: number) => Math.abs(a - b) / b <= tol;
      assert(close(est.weightsBytes, weights, 0.01), `weights ${est.weightsBytes} vs ${weights}`);
      assert(close(est.kvBytes, kv, 0.01), `kv ${est.kvBytes} vs ${kv} (${cache})`);
      assert(close(est.computeBytes, compute, 0.25), `compute ${est.computeBytes} vs ${compute}`);
      assert(close(est.totalBytes, weights + kv + compute, 0.03), "total");
    }
  },
});

Deno.test("index cache: a change to how facts are read comes with a new cache version", async () => {
  // The index keeps each file's facts; a new llama-mgr that reads facts differently must not show the old
  // ones, so lib/models/index.ts's INDEX_VERSION changes with lib/gguf/facts.ts. Recorded together here:
  const recorded = {
    version: 7,
    factsSha256: "2bf1ea90afa01bccd0aa5e2043240bf2253f2af737fb45596868e1a737a8879a",
  };
  const index = await Deno.readTextFile(new URL("../lib/models/index.ts", import.meta.url));
  const version = Number(index.match(/const INDEX_VERSION = (\d+)/)?.[1]);
  const now = await sha256File(new URL("../lib/gguf/facts.ts", import.meta.url).pathname);
  assert(
    now === recorded.factsSha256,
    "lib/gguf/facts.ts changed: if describeModel's output changed, bump INDEX_VERSION in lib/models/index.ts " +
      `(now ${version}) so cached facts are read again; then record { version, factsSha256: "${now}" } here`,
  );
  assertEquals(version, recorded.version, "INDEX_VERSION changed: record it here with the facts.ts hash");
});
