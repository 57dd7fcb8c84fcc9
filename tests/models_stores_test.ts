/**
 * Where the stores are looked for. Ollama's Linux installer runs the server as user `ollama` whose home is
 * `/usr/share/ollama`, so most Linux users' pulled models are in its store, not in `~/.ollama`. The Hugging
 * Face cache keeps every snapshot a user ever downloaded; a re-uploaded file is listed once, as of now.
 */
import { assertEquals } from "./_assert.ts";
import { OLLAMA_SYSTEM_DIR, ollamaDir, ollamaDirs } from "../lib/models/sources.ts";
import { scanModels } from "../lib/models/index.ts";
import { smolModelPath, tempDir } from "./_fixtures.ts";
import { resolvePaths } from "../lib/config/paths.ts";
import { parseConfig } from "../lib/config/load.ts";

Deno.test("Ollama's store is looked for where Ollama keeps it", async (t) => {
  await t.step("OLLAMA_MODELS, when set, is the only place", () => {
    assertEquals(ollamaDirs({ HOME: "/home/me", OLLAMA_MODELS: "/data/ollama" }), ["/data/ollama"]);
  });
  await t.step("else the user's store, and on Linux the system service's store too", () => {
    const dirs = ollamaDirs({ HOME: "/home/me" });
    assertEquals(
      dirs,
      Deno.build.os === "linux"
        ? ["/home/me/.ollama/models", OLLAMA_SYSTEM_DIR]
        : ["/home/me/.ollama/models"],
    );
    assertEquals(ollamaDir({ HOME: "/home/me" }), "/home/me/.ollama/models");
  });
  await t.step("the service's own HOME does not list its store twice", () => {
    assertEquals(ollamaDirs({ HOME: "/usr/share/ollama" }), [OLLAMA_SYSTEM_DIR]);
  });
});

Deno.test({
  name: "the Hugging Face cache lists the current revision's files, not an older snapshot's copies",
  sanitizeResources: false,
  async fn() {
    const tmp = await tempDir();
    try {
      // As huggingface_hub lays it out: blobs by hash, snapshots/<rev>/ of links into them, refs/main naming
      // the current revision. The quant was re-uploaded (new blob); the old snapshot still links the old one.
      const repo = `${tmp.path}/hf/hub/models--bartowski--SmolLM2-135M-Instruct-GGUF`;
      const smol = await smolModelPath();
      await Deno.mkdir(`${repo}/blobs`, { recursive: true });
      for (const blob of ["old", "new", "only-old"]) await Deno.copyFile(smol, `${repo}/blobs/${blob}`);
      const link = async (rev: string, file: string, blob: string) => {
        await Deno.mkdir(`${repo}/snapshots/${rev}`, { recursive: true });
        await Deno.symlink(`../../blobs/${blob}`, `${repo}/snapshots/${rev}/${file}`);
      };
      await link("1111", "SmolLM2-135M-Instruct-Q4_1.gguf", "old");
      await link("1111", "SmolLM2-135M-Instruct-Q8_0.gguf", "only-old");
      await link("2222", "SmolLM2-135M-Instruct-Q4_1.gguf", "new");
      await Deno.mkdir(`${repo}/refs`);
      await Deno.writeTextFile(`${repo}/refs/main`, "2222");
      const paths = resolvePaths({ dataDir: `${tmp.path}/data`, env: {} });
      const config = parseConfig({
        models: { sources: { huggingface: true, ollama: false, lmstudio: false, llamacpp: false } },
      });
      const r = await scanModels(paths, config, {
        env: { HOME: `${tmp.path}/home`, HF_HOME: `${tmp.path}/hf` },
      });
      assertEquals(r.models.map((m) => m.path.slice(repo.length + 1)).sort(), [
        "snapshots/1111/SmolLM2-135M-Instruct-Q8_0.gguf",
        "snapshots/2222/SmolLM2-135M-Instruct-Q4_1.gguf",
      ]);
      assertEquals(r.models.map((m) => m.source), ["huggingface", "huggingface"]);
    } finally {
      await tmp.cleanup();
    }
  },
});
