/**
 * A warm rescan (nothing changed, no GGUF byte read) must give exactly the models a cold scan gave: the
 * index cache stores chat templates once by id, and every fact must come back from it, templates included.
 */
import { assert, assertEquals, assertRejects, assertStringIncludes } from "./_assert.ts";
import { smolModelPath, tempDir } from "./_fixtures.ts";
import { resolvePaths } from "../lib/config/paths.ts";
import { parseConfig } from "../lib/config/load.ts";
import { resolveModel, scanModels } from "../lib/models/mod.ts";
import { UserError } from "../lib/util/errors.ts";

Deno.test({
  name: "a warm rescan gives the same models as the cold scan, chat templates included",
  sanitizeResources: false,
  async fn() {
    const tmp = await tempDir();
    try {
      await Deno.mkdir(`${tmp.path}/mine/a`, { recursive: true });
      await Deno.mkdir(`${tmp.path}/mine/b`, { recursive: true });
      // Two copies: two models sharing one template, stored once in the cache.
      await Deno.copyFile(await smolModelPath(), `${tmp.path}/mine/a/smol.gguf`);
      await Deno.copyFile(await smolModelPath(), `${tmp.path}/mine/b/smol.gguf`);
      const paths = resolvePaths({ dataDir: `${tmp.path}/data`, env: {} });
      const config = parseConfig({
        models: {
          dirs: [`${tmp.path}/mine`],
          sources: { huggingface: false, ollama: false, lmstudio: false, llamacpp: false },
        },
      });
      const cold = await scanModels(paths, config, { env: {} });
      assertEquals(cold.filesRead, 2);
      assert(cold.models.every((m) => m.facts.chatTemplate?.includes("<|im_start|>")), "cold: templates");
      const stored = await Deno.readTextFile(paths.indexFile);
      assertEquals(stored.split("<|im_start|>").length - 1, 3, "the template is stored once (it has 3 tags)");
      const warm = await scanModels(paths, config, { env: {} });
      assertEquals(warm.filesRead, 0);
      // Compared as JSON (what `models --json` prints): fields left undefined are not stored.
      const json = (v: unknown) => JSON.parse(JSON.stringify(v));
      assertEquals(json(warm.models), json(cold.models));
      // And once more: a warm scan must not lose what the previous warm scan restored.
      assertEquals(json((await scanModels(paths, config, { env: {} })).models), json(cold.models));
    } finally {
      await tmp.cleanup();
    }
  },
});

Deno.test({
  name: "a bare name shared by many models asks which, naming a few and how many more",
  sanitizeResources: false,
  async fn() {
    const tmp = await tempDir();
    try {
      await Deno.mkdir(`${tmp.path}/mine`, { recursive: true });
      for (let i = 0; i < 12; i++) {
        await Deno.copyFile(await smolModelPath(), `${tmp.path}/mine/smol-${i}.gguf`);
      }
      const paths = resolvePaths({ dataDir: `${tmp.path}/data`, env: {} });
      const config = parseConfig({
        models: {
          dirs: [`${tmp.path}/mine`],
          sources: { huggingface: false, ollama: false, lmstudio: false, llamacpp: false },
        },
      });
      const err = await assertRejects(() => resolveModel(paths, config, "smollm2", { env: {} }), UserError);
      assertStringIncludes(err.message, "'smollm2' names 12 models");
      assertStringIncludes(err.hint ?? "", "and 4 more (`llama-mgr models` lists them)");
      assertEquals((err.hint ?? "").split(", ").length, 9);
    } finally {
      await tmp.cleanup();
    }
  },
});

Deno.test({
  name: "an alias may name another alias; aliases that loop are a clear error, not an endless rescan",
  sanitizeResources: false,
  async fn() {
    const tmp = await tempDir();
    try {
      await Deno.mkdir(`${tmp.path}/mine`, { recursive: true });
      const file = `${tmp.path}/mine/smol.gguf`;
      await Deno.copyFile(await smolModelPath(), file);
      const paths = resolvePaths({ dataDir: `${tmp.path}/data`, env: {} });
      const config = parseConfig({
        models: {
          dirs: [`${tmp.path}/mine`],
          aliases: { coder: "chat", chat: "tiny", tiny: file, x: "y", y: "z", z: "x" },
          sources: { huggingface: false, ollama: false, lmstudio: false, llamacpp: false },
        },
      });
      assertEquals((await resolveModel(paths, config, "coder", { env: {} })).path, file);
      const err = await assertRejects(() => resolveModel(paths, config, "x", { env: {} }), UserError);
      assertStringIncludes(err.message, "'x' -> 'y' -> 'z' -> 'x' go round in a loop");
      assertStringIncludes(err.hint ?? "", "models.aliases");
    } finally {
      await tmp.cleanup();
    }
  },
});
