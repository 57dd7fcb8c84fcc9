/**
 * Split models in the index: the model's facts count the tensors of every part (the first part alone holds
 * a fraction of the weights, and the memory estimate the scheduler uses would be that fraction), a split model
 * missing a part is listed as unreadable with the parts it lacks, and a model with a paired projector can see.
 * Parameter counts are checked against gguf's own GGUFReader on the same files.
 */
import { assert, assertEquals } from "./_assert.ts";
import { cli, tempDir } from "./_fixtures.ts";
import { python, testVenv } from "./_python.ts";
import { resolvePaths } from "../lib/config/paths.ts";
import { parseConfig } from "../lib/config/load.ts";
import { estimateMemory } from "../lib/gguf/mod.ts";
import { scanModels } from "../lib/models/mod.ts";

const scripts = new URL("../scripts/gguf/", import.meta.url).pathname;

Deno.test({
  name: "a split model is one model with the tensors of all its parts; a missing part is reported",
  sanitizeResources: false,
  async fn(t) {
    const tmp = await tempDir();
    const env = { HOME: `${tmp.path}/home` };
    const paths = resolvePaths({ dataDir: `${tmp.path}/data`, env: {} });
    const config = parseConfig({ models: { dirs: [`${tmp.path}/mine`] } });
    try {
      const py = await testVenv("gguf", ["gguf==0.19.0", "numpy"]);
      const gen = `${tmp.path}/gen`;
      await python(py, `${scripts}make_fixtures.py`, [gen]);
      const parts = ["split-00001-of-00002.gguf", "split-00002-of-00002.gguf"];
      await Deno.mkdir(`${tmp.path}/mine/split`, { recursive: true });
      await Deno.mkdir(`${tmp.path}/mine/vision`, { recursive: true });
      for (const p of parts) await Deno.copyFile(`${gen}/${p}`, `${tmp.path}/mine/split/${p}`);
      await Deno.copyFile(`${gen}/types-le.gguf`, `${tmp.path}/mine/vision/model.gguf`);
      await Deno.copyFile(`${gen}/aligned-64.gguf`, `${tmp.path}/mine/vision/mmproj-model-f16.gguf`);
      const ref = JSON.parse(await python(py, `${scripts}dump.py`, parts.map((p) => `${gen}/${p}`)));
      const perPart = parts.map((p) =>
        (ref[`${gen}/${p}`].tensors as { dims: number[] }[]).reduce(
          (a, x) => a + x.dims.reduce((b, d) => b * d, 1),
          0,
        )
      );
      assert(perPart.every((n) => n > 0), "each part holds tensors");

      await t.step(
        "parameters and tensor bytes add up over the parts, as GGUFReader counts them",
        async () => {
          const r = await scanModels(paths, config, { env });
          assertEquals(r.unreadable, []);
          const split = r.models.find((m) => m.files.length === 2)!;
          assert(split, r.models.map((m) => m.name).join(", "));
          assertEquals(split.facts.parameterCount, perPart[0] + perPart[1]);
          const bytes = split.facts.quantMix.reduce((a, q) => a + q.bytes, 0);
          assertEquals(split.facts.tensorBytes, bytes);
          assertEquals(split.facts.quantMix.reduce((a, q) => a + q.tensors, 0), 4);
          // The weights the scheduler plans for are those of the whole model, not of its first file.
          const est = estimateMemory(split.facts, { ctx: 512, cacheType: "f16" });
          assertEquals(est.weightsBytes, bytes);
          const sizes = await Promise.all(split.files.map(async (f) => (await Deno.stat(f)).size));
          assert(est.weightsBytes < sizes[0] + sizes[1], "weights fit in the files");
          assert(est.weightsBytes > sizes[0] - 4096, "weights are more than the first part's");
        },
      );

      await t.step("a model with a projector next to it can see (vision)", async () => {
        const r = await scanModels(paths, config, { env });
        const m = r.models.find((x) => x.path.endsWith("/vision/model.gguf"))!;
        assert(m.mmproj?.endsWith("mmproj-model-f16.gguf"), String(m.mmproj));
        assert(m.facts.capabilities.includes("vision"), m.facts.capabilities.join(", "));
        assert(m.facts.capabilities.includes("completion"), m.facts.capabilities.join(", "));
        const split = r.models.find((x) => x.files.length === 2)!;
        assert(!split.facts.capabilities.includes("vision"), "no projector, no vision");
      });

      await t.step("a split model missing a part is unreadable, with the part it lacks named", async () => {
        await Deno.remove(`${tmp.path}/mine/split/${parts[1]}`);
        const r = await scanModels(paths, config, { env });
        assertEquals(r.removed.map((p) => p.split("/").pop()), [parts[1]]);
        assertEquals(r.models.filter((m) => m.path.includes("/split/")), []);
        assertEquals(r.unreadable.length, 1);
        assertEquals(r.unreadable[0].path, `${tmp.path}/mine/split/${parts[0]}`);
        assert(r.unreadable[0].error.includes(`1 of 2 parts; missing ${parts[1]}`), r.unreadable[0].error);
      });

      await t.step("two split models sharing a prefix but not a part count stay two", async () => {
        await Deno.copyFile(`${gen}/${parts[1]}`, `${tmp.path}/mine/split/${parts[1]}`);
        // A lone first part of a three-part model with the same prefix.
        await Deno.copyFile(`${gen}/${parts[0]}`, `${tmp.path}/mine/split/split-00001-of-00003.gguf`);
        const r = await scanModels(paths, config, { env });
        const two = r.models.filter((m) => m.path.includes("/split/"));
        assertEquals(two.map((m) => m.files.length), [2]);
        assertEquals(r.unreadable.map((u) => u.path.split("/").pop()), ["split-00001-of-00003.gguf"]);
        assert(r.unreadable[0].error.includes("1 of 3 parts"), r.unreadable[0].error);
      });

      await t.step("models show --tensors lists the tensors of every part", async () => {
        const cfg = `${tmp.path}/config.yaml`;
        await Deno.writeTextFile(cfg, `models:\n  dirs: [${JSON.stringify(`${tmp.path}/mine`)}]\n`);
        const part1 = `${tmp.path}/mine/split/${parts[0]}`;
        const r = await cli([
          "--data-dir",
          paths.dataDir,
          "--config",
          cfg,
          "models",
          "show",
          part1,
          "--tensors",
          "--json",
        ], {
          env: { HOME: env.HOME, PATH: Deno.env.get("PATH") ?? "" },
        });
        assertEquals(r.code, 0, r.stderr);
        const j = JSON.parse(r.stdout);
        assertEquals(j.files.length, 2);
        assertEquals(
          j.tensors.map((x: { name: string }) => x.name).sort(),
          ["blk.0.attn_norm.weight", "blk.0.attn_q.weight", "blk.1.attn_q.weight", "token_embd.weight"],
        );
      });
    } finally {
      await tmp.cleanup();
    }
  },
});
