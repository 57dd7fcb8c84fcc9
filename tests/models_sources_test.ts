/**
 * The model index beyond the common layouts: LM Studio's folder and llama.cpp's cache as sources (and turned
 * off in the config), a model over 4 GiB (sparse file, tensor offsets past 32 bits) checked against PyPI gguf's
 * GGUFReader, Ollama manifests with a projector layer, a user namespace and an `hf.co/...` pull (mixed case, as
 * Ollama shows it), and the CLI's `scan --dir`, `alias` and `show --tensors` as a user runs them.
 */
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./_assert.ts";
import { cli, sha256File, smolModelPath, tempDir } from "./_fixtures.ts";
import { python, testVenv } from "./_python.ts";
import { resolvePaths } from "../lib/config/paths.ts";
import { parseConfig } from "../lib/config/load.ts";
import { readGgufHeader } from "../lib/gguf/mod.ts";
import { resolveModel, scanModels } from "../lib/models/mod.ts";

const scripts = new URL("../scripts/gguf/", import.meta.url).pathname;

/** Puts a GGUF file into an Ollama store under `manifests/<host>/<ns>/<model>/<tag>`, Ollama's format. */
async function ollamaPull(
  store: string,
  ref: string[],
  model: string,
  projector?: string,
): Promise<string> {
  await Deno.mkdir(`${store}/blobs`, { recursive: true });
  const layer = async (file: string, mediaType: string) => {
    const digest = await sha256File(file);
    await Deno.copyFile(file, `${store}/blobs/sha256-${digest}`);
    return { mediaType, digest: `sha256:${digest}`, size: (await Deno.stat(file)).size };
  };
  const layers = [await layer(model, "application/vnd.ollama.image.model")];
  if (projector) layers.push(await layer(projector, "application/vnd.ollama.image.projector"));
  const params = `${store}/params.json`;
  await Deno.writeTextFile(params, JSON.stringify({ stop: ["<|im_end|>"] }));
  layers.push(await layer(params, "application/vnd.ollama.image.params"));
  const dir = `${store}/manifests/${ref.slice(0, 3).join("/")}`;
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(
    `${dir}/${ref[3]}`,
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.docker.distribution.manifest.v2+json",
      config: {
        mediaType: "application/vnd.docker.container.image.v1+json",
        digest: layers[0].digest,
        size: 1,
      },
      layers,
    }),
  );
  return layers[0].digest.slice("sha256:".length);
}

Deno.test({
  name:
    "every store is a source: LM Studio, llama.cpp's cache, Ollama projectors and namespaces, files over 4 GiB",
  sanitizeResources: false,
  async fn(t) {
    const tmp = await tempDir();
    const env = {
      HOME: `${tmp.path}/home`,
      HF_HOME: `${tmp.path}/hf`,
      OLLAMA_MODELS: `${tmp.path}/ollama`,
      LLAMA_CACHE: `${tmp.path}/llcache`,
    };
    const paths = resolvePaths({ dataDir: `${tmp.path}/data`, env: {} });
    const config = parseConfig({ models: { dirs: [`${tmp.path}/big`] } });
    try {
      const py = await testVenv("gguf", ["gguf==0.19.0", "numpy"]);
      const gen = `${tmp.path}/gen`;
      await python(py, `${scripts}make_fixtures.py`, [gen]);
      const lms = `${env.HOME}/.lmstudio/models/lmstudio-community/Test-GGUF`;
      await Deno.mkdir(lms, { recursive: true });
      await Deno.copyFile(`${gen}/types-le.gguf`, `${lms}/test-F16.gguf`);
      await Deno.mkdir(env.LLAMA_CACHE, { recursive: true });
      await Deno.copyFile(`${gen}/aligned-64.gguf`, `${env.LLAMA_CACHE}/org_Repo-GGUF_aligned-F16.gguf`);
      await Deno.mkdir(`${tmp.path}/big`, { recursive: true });
      const large = `${tmp.path}/big/largetest-7B-F32.gguf`;
      await python(py, `${scripts}make_large.py`, [large]);
      const smol = await smolModelPath();
      await ollamaPull(
        env.OLLAMA_MODELS,
        ["registry.ollama.ai", "library", "llava-tiny", "latest"],
        `${gen}/types-be.gguf`,
        `${gen}/big-vocab.gguf`,
      );
      await ollamaPull(env.OLLAMA_MODELS, ["registry.ollama.ai", "someone", "smol", "q4"], smol);
      await ollamaPull(env.OLLAMA_MODELS, ["registry.ollama.ai", "library", "smol-copy", "latest"], smol);
      await ollamaPull(
        env.OLLAMA_MODELS,
        ["hf.co", "bartowski", "Split-GGUF", "Q4_K_M"],
        `${gen}/split-00001-of-00002.gguf`,
      );

      let models: Awaited<ReturnType<typeof scanModels>>["models"] = [];
      await t.step("a scan finds the model in each store, with the source it came from", async () => {
        const r = await scanModels(paths, config, { env });
        models = r.models;
        assertEquals(r.unreadable, []);
        const bySource = Object.groupBy(models, (m) => m.source);
        assertEquals(bySource.lmstudio?.map((m) => m.path), [`${lms}/test-F16.gguf`]);
        assertEquals(bySource.llamacpp?.map((m) => m.path), [
          `${env.LLAMA_CACHE}/org_Repo-GGUF_aligned-F16.gguf`,
        ]);
        assertEquals(bySource.dir?.map((m) => m.path), [large]);
        assertEquals(bySource.ollama?.length, 3, JSON.stringify(bySource.ollama?.map((m) => m.name)));
      });

      await t.step(
        "Ollama names are Ollama's: library without prefix, user namespaces and hf.co pulls kept",
        () => {
          const names = models.filter((m) => m.source === "ollama").map((m) => [m.name, ...m.aliases]).flat();
          assert(names.includes("llava-tiny:latest"), names.join(", "));
          assert(names.includes("someone/smol:q4"), names.join(", "));
          const smol = models.find((m) =>
            m.name === "someone/smol:q4" || m.aliases.includes("someone/smol:q4")
          )!;
          assert(
            smol.name === "smol-copy:latest" || smol.aliases.includes("smol-copy:latest"),
            "a second tag of the same blob is the same model, found by both names",
          );
          assert(
            names.some((n) => n.toLowerCase() === "hf.co/bartowski/split-gguf:q4_k_m"),
            names.join(", "),
          );
          for (const m of models) assertEquals(m.name, m.name.toLowerCase(), "names are lower case");
        },
      );

      await t.step("an Ollama projector layer is the model's mmproj, not a model of its own", () => {
        const llava = models.find((m) => m.name === "llava-tiny:latest")!;
        assert(llava.mmproj?.includes("/blobs/sha256-"), String(llava.mmproj));
        assertEquals(models.filter((m) => m.facts.vocabSize === 151936).length, 0, "projector not listed");
      });

      await t.step(
        "Ollama's mixed-case hf.co name resolves as typed; both tags of one blob resolve",
        async () => {
          const m = await resolveModel(paths, config, "hf.co/bartowski/Split-GGUF:Q4_K_M", { env });
          assertEquals(m.source, "ollama");
          assertEquals(m.facts.splitCount, 2);
          const a = await resolveModel(paths, config, "someone/smol:q4", { env });
          const b = await resolveModel(paths, config, "smol-copy", { env });
          assertEquals(a.path, b.path);
        },
      );

      await t.step(
        "a 7.8 GB model is read from its header: offsets past 4 GiB agree with gguf's reader",
        async () => {
          const m = models.find((m) => m.path === large)!;
          assertEquals(m.sizeBytes, (await Deno.stat(large)).size);
          assert(m.sizeBytes > 2 ** 32 * 1.5, String(m.sizeBytes));
          assertEquals(m.name, "largetest:7b-f32");
          const ours = await readGgufHeader(large, { skipArraysOver: 0 });
          const theirs = JSON.parse(await python(py, `${scripts}dump.py`, [large]))[large];
          assertEquals(ours.tensors.length, theirs.tensors.length);
          for (const [i, tt] of theirs.tensors.entries()) {
            const ot = ours.tensors[i];
            assertEquals(ot.name, tt.name);
            assertEquals(ours.dataOffset + ot.offset, tt.absOffset, `offset of ${tt.name}`);
          }
          assert(ours.tensors.at(-1)!.offset > 2 ** 32, "the last tensor lies past 4 GiB");
          assertEquals(
            ours.dataOffset + m.facts.tensorBytes,
            m.sizeBytes,
            "tensor bytes fill the file exactly",
          );
          const params = 2 * 4096 * 152064 +
            4 * (2 * 4096 * 4096 + 2 * 4096 * 1024 + 3 * 4096 * 11008 + 2 * 4096) +
            4096;
          assertEquals(m.facts.parameterCount, params);
        },
      );

      await t.step("a symlinked folder is followed, a symlink loop is not a hang", async () => {
        const root = `${tmp.path}/linked`;
        await Deno.mkdir(root, { recursive: true });
        await Deno.symlink(lms, `${root}/lmstudio-link`);
        await Deno.symlink(root, `${root}/loop`);
        await Deno.symlink(".", `${root}/self`);
        const r = await scanModels(paths, config, { env, onlyDirs: [root], noSave: true });
        assertEquals(r.models.map((m) => m.path), [`${root}/lmstudio-link/test-F16.gguf`]);
      });

      await t.step("stores turned off in the config are not read", async () => {
        const off = parseConfig({
          models: {
            dirs: [],
            sources: { lmstudio: false, llamacpp: false, ollama: false, huggingface: false },
          },
        });
        const r = await scanModels(paths, off, { env, noSave: true });
        assertEquals(r.models.map((m) => m.source), []);
      });
    } finally {
      await tmp.cleanup();
    }
  },
});

Deno.test({
  name: "models CLI: scan --dir remembers the folder, alias names a model, show --tensors lists every tensor",
  sanitizeResources: false,
  async fn(t) {
    const tmp = await tempDir();
    const env = {
      // Deno's own cache stays where it is (a temporary HOME would make every run fetch the npm packages).
      DENO_DIR: Deno.env.get("DENO_DIR") ?? `${Deno.env.get("HOME")}/.cache/deno`,
      HOME: `${tmp.path}/home`,
      HF_HOME: `${tmp.path}/hf`,
      OLLAMA_MODELS: `${tmp.path}/ollama`,
      LLAMA_CACHE: `${tmp.path}/llcache`,
    };
    const configFile = `${tmp.path}/config.yaml`;
    const base = ["-d", `${tmp.path}/data`, "--config", configFile];
    const run = (...args: string[]) => cli([...base, ...args], { env });
    try {
      await Deno.writeTextFile(configFile, "# my settings\ndaemon:\n  port: 11500 # not the default\n");
      await Deno.mkdir(`${tmp.path}/mymodels/chat`, { recursive: true });
      await Deno.symlink(await smolModelPath(), `${tmp.path}/mymodels/chat/SmolLM2-135M-Instruct.Q4_1.gguf`);

      await t.step("an empty machine says how to add models", async () => {
        const r = await run("models");
        assertEquals(r.code, 0, r.stderr);
        assertStringIncludes(r.stdout, "models scan --dir");
      });

      await t.step("scan --dir reports the new model, and `models` lists it afterwards", async () => {
        const r = await run("models", "scan", "--dir", `${tmp.path}/mymodels`);
        assertEquals(r.code, 0, r.stderr);
        assertStringIncludes(r.stdout, "1 new");
        assertStringIncludes(r.stdout, "SmolLM2-135M-Instruct.Q4_1.gguf");
        assertStringIncludes(r.stdout, `added ${tmp.path}/mymodels to models.dirs`);
        assertStringIncludes(await Deno.readTextFile(configFile), `${tmp.path}/mymodels`);
        const list = await run("models");
        assertEquals(list.code, 0, list.stderr);
        assertStringIncludes(list.stdout, "smollm2:135m-q4_1");
        const again = await run("models", "scan");
        assertStringIncludes(again.stdout, "0 new, 0 changed, 0 removed");
      });

      await t.step("alias writes the config, keeps the user's comments, and the alias resolves", async () => {
        const r = await run("models", "alias", "tiny", "smollm2");
        assertEquals(r.code, 0, r.stderr);
        const text = await Deno.readTextFile(configFile);
        assertStringIncludes(text, "# my settings");
        assertStringIncludes(text, "# not the default");
        assertStringIncludes(text, "tiny: smollm2:135m-q4_1");
        const show = await run("models", "show", "tiny", "--json");
        assertEquals(show.code, 0, show.stderr);
        const j = JSON.parse(show.stdout);
        assertEquals(j.name, "smollm2:135m-q4_1");
        assert(j.aliases.includes("tiny"), j.aliases.join());
      });

      await t.step("show prints the facts a user asks about; --tensors lists all 272 tensors", async () => {
        const r = await run("models", "show", "smollm2:135m-q4_1", "--tensors", "--ctx", "8192");
        assertEquals(r.code, 0, r.stderr);
        assertStringIncludes(r.stdout, "llama");
        assertStringIncludes(r.stdout, "Q4_1");
        assertStringIncludes(r.stdout, "at ctx 8192");
        assertStringIncludes(r.stdout, "token_embd.weight");
        assertStringIncludes(r.stdout, "576x49152");
        const rows = r.stdout.split("\n").filter((l) => /^(blk\.\d+\.|token_embd|output)/.test(l));
        assertEquals(rows.length, 272);
      });

      await t.step("a model pulled by Ollama with a projector shows the vision capability", async () => {
        const proj = `${tmp.path}/projector.bin`;
        await Deno.writeTextFile(proj, "a projector blob");
        await ollamaPull(
          env.OLLAMA_MODELS,
          ["registry.ollama.ai", "library", "smolvision", "latest"],
          await smolModelPath(),
          proj,
        );
        const r = await run("models", "show", "smolvision");
        assertEquals(r.code, 0, r.stderr);
        assertMatch(r.stdout, /^caps\s+completion, vision$/m);
        assertMatch(r.stdout, /^mmproj\s+.*\/blobs\/sha256-[0-9a-f]{64}$/m);
      });

      await t.step("bad input says what was wrong and what to do", async () => {
        const bad = await run("models", "show", "smollm2", "--cache-type", "q3");
        assertEquals(bad.code, 1);
        assertStringIncludes(bad.stderr, "q3");
        assertStringIncludes(bad.stderr, "q8_0");
        const miss = await run("models", "show", "smolm2");
        assertEquals(miss.code, 1);
        assertStringIncludes(miss.stderr, "smollm2:135m-q4_1");
        const alias = await run("models", "alias", "x", "nothing-like-it");
        assertEquals(alias.code, 1);
        assertStringIncludes(alias.stderr, "not found");
      });
    } finally {
      await tmp.cleanup();
    }
  },
});
