/**
 * `pull` from an Ollama registry, against a registry served inside the test that answers as Ollama's does
 * (manifests by tag, `MANIFEST_UNKNOWN` 404s, blobs redirected to another path that serves ranges): the real
 * SmolLM2 GGUF as the model layer, checked against the shared test build's llama.cpp before it is fetched,
 * stored in Ollama's layout under the data dir, listed by the index under its Ollama name; a made-up
 * architecture refused from its header alone; corrupt blobs fetched once more, then refused.
 */
import { assert, assertEquals, assertRejects, assertStringIncludes, assertThrows } from "./_assert.ts";
import { sha256File, smolModelPath, tempDir, testInstance } from "./_fixtures.ts";
import { Registry } from "./_registry.ts";
import { ggufFile } from "./_gguf.ts";
import { resolvePaths } from "../lib/config/paths.ts";
import { exists } from "../lib/util/fs.ts";
import { UserError } from "../lib/util/errors.ts";
import { parseConfig } from "../lib/config/load.ts";
import { instanceSourceDir } from "../lib/llamacpp/instances.ts";
import { checkHeaderSupport, readLlamaSupport } from "../lib/llamacpp/support.ts";
import { parseGgufHeader } from "../lib/gguf/reader.ts";
import { resolveModel, scanModels } from "../lib/models/mod.ts";
import {
  ollamaPullDir,
  type OllamaPullProgress,
  pullOllama,
  RegistryError,
  registryRef,
  UnsupportedModelError,
} from "../lib/models/pull/ollama.ts";

const te = new TextEncoder();

const MT = "application/vnd.ollama.image.";
const TEMPLATE = "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}{{ .Prompt }}";
const PARAMS = JSON.stringify({ stop: ["<|im_end|>"], temperature: 0.2 });
const SYSTEM = "You are a small, helpful assistant.";
const LICENSE = "Apache License 2.0";

const projector = () =>
  ggufFile([["general.architecture", "str", "clip"]], [{
    name: "v.patch_embd.weight",
    dims: [16],
    type: 0,
    bytes: 64,
  }]);
const tinyLlama = () =>
  ggufFile([["general.architecture", "str", "llama"], ["llama.context_length", "u32", 2048]], [
    { name: "token_embd.weight", dims: [64], type: 0, bytes: 256 },
  ]);

async function instance() {
  const { paths, instance } = await testInstance();
  return {
    name: instance.name,
    sourceDir: instanceSourceDir(paths, instance.name),
    version: instance.version,
    commit: instance.commit,
  };
}

Deno.test("a name maps to its registry's manifest URL as in Ollama", () => {
  assertEquals(
    registryRef("qwen3:4b").manifestUrl,
    "https://registry.ollama.ai/v2/library/qwen3/manifests/4b",
  );
  assertEquals(
    registryRef("someone/smol").manifestUrl,
    "https://registry.ollama.ai/v2/someone/smol/manifests/latest",
  );
  assertEquals(registryRef("someone/smol").displayName, "someone/smol:latest");
  const local = registryRef("127.0.0.1:5000/team/smol:q4", { insecure: true });
  assertEquals(local.manifestUrl, "http://127.0.0.1:5000/v2/team/smol/manifests/q4");
  assertEquals(local.displayName, "127.0.0.1:5000/team/smol:q4");
  const err = assertThrows(
    () => registryRef("http://127.0.0.1:5000/team/smol"),
    UserError,
    "insecure protocol",
  );
  assertStringIncludes(err.hint ?? "", "--insecure");
});

Deno.test({
  name: "smol pulled from a plain-HTTP registry lands in Ollama's layout under the data dir, and is listed",
  sanitizeResources: false,
  async fn(t) {
    const tmp = await tempDir();
    const registry = new Registry();
    try {
      const paths = resolvePaths({ dataDir: `${tmp.path}/data`, env: {} });
      const config = parseConfig({});
      const env = { HOME: `${tmp.path}/home` };
      const store = ollamaPullDir(paths);
      const smol = await smolModelPath();
      const { manifest, digests } = await registry.publish("library/smol:latest", [
        { mediaType: `${MT}model`, bytes: await Deno.readFile(smol) },
        { mediaType: `${MT}projector`, bytes: projector() },
        { mediaType: `${MT}template`, bytes: te.encode(TEMPLATE) },
        { mediaType: `${MT}params`, bytes: te.encode(PARAMS) },
        { mediaType: `${MT}system`, bytes: te.encode(SYSTEM) },
        { mediaType: `${MT}license`, bytes: te.encode(LICENSE) },
      ]);
      const name = `${registry.host}/library/smol:latest`;
      const inst = await instance();

      await t.step(
        "without --insecure the plain-HTTP registry is refused, and the error says so",
        async () => {
          const err = await assertRejects(
            () => pullOllama(name, { storeDir: store, instance: inst }),
            RegistryError,
          );
          assertStringIncludes(err.message, "does not answer over HTTPS");
          assertStringIncludes(err.hint ?? "", "--insecure");
          await assertRejects(
            () => pullOllama(`http://${name}`, { storeDir: store }),
            Error,
            "insecure protocol http",
          );
          assertEquals(registry.log, [], "nothing was asked of the plain-HTTP server");
        },
      );

      const lines: OllamaPullProgress[] = [];
      let result: Awaited<ReturnType<typeof pullOllama>>;
      await t.step(
        "with insecure it is pulled: manifest and blobs in Ollama's layout, digests verified",
        async () => {
          result = await pullOllama(name, {
            storeDir: store,
            insecure: true,
            instance: inst,
            onProgress: (p) => lines.push(p),
          });
          assertEquals(result.name, `${registry.host}/library/smol:latest`);
          assertEquals(result.architecture, "llama");
          assertEquals(result.manifestPath, `${store}/manifests/${registry.host}/library/smol/latest`);
          assertEquals(await Deno.readFile(result.manifestPath), manifest);
          for (const d of digests) {
            const blob = `${store}/blobs/sha256-${d.slice(7)}`;
            assertEquals(await sha256File(blob), d.slice(7));
          }
          assertEquals(result.model, `${store}/blobs/sha256-${digests[0].slice(7)}`);
          assertEquals(result.projector, `${store}/blobs/sha256-${digests[1].slice(7)}`);
          assertEquals(await Deno.readTextFile(result.template!), TEMPLATE);
          assertEquals(JSON.parse(await Deno.readTextFile(result.params!)), JSON.parse(PARAMS));
          assertEquals(await Deno.readTextFile(result.system!), SYSTEM);
          assertEquals(await Deno.readTextFile(result.license![0]), LICENSE);
          assert(!(await exists(`${tmp.path}/home/.ollama`)), "Ollama's own store is not touched");
        },
      );

      await t.step("progress lines are Ollama's, in Ollama's order", () => {
        const statuses = lines.map((l) => l.status).filter((s, i, all) => s !== all[i - 1]);
        assertEquals(statuses, [
          "pulling manifest",
          ...digests.map((d) => `pulling ${d.slice(7, 19)}`),
          "verifying sha256 digest",
          "writing manifest",
          "success",
        ]);
        for (const d of digests) {
          const mine = lines.filter((l) => l.digest === d);
          assert(mine.every((l) => l.total === mine[0].total && l.completed! <= l.total!));
          assertEquals(mine.at(-1)!.completed, mine.at(-1)!.total);
        }
      });

      await t.step(
        "the index lists it under its Ollama name with its projector; resolve finds it",
        async () => {
          const { models } = await scanModels(paths, config, { env });
          const entry = models.find((m) => m.name === result.name);
          assert(entry, models.map((m) => m.name).join(", "));
          assertEquals(entry.source, "pulled");
          assertEquals(entry.path, result.model);
          assertEquals(entry.mmproj, result.projector);
          assert(entry.facts.capabilities.includes("vision"));
          assertEquals(entry.ollamaLayers?.template, result.template);
          assertEquals(entry.ollamaLayers?.params, result.params);
          assertEquals(entry.ollamaLayers?.system, result.system);
          const found = await resolveModel(paths, config, `${registry.host}/library/SMOL`, { env });
          assertEquals(found.path, result.model);
        },
      );

      await t.step("a second pull fetches the manifest and nothing else", async () => {
        registry.log = [];
        const before = (await Deno.stat(result.manifestPath)).mtime;
        const again = await pullOllama(name, { storeDir: store, insecure: true, instance: inst });
        assertEquals(registry.log, [`GET /v2/library/smol/manifests/latest`]);
        assertEquals(again.fetchedBytes, 0);
        assertEquals(again.model, result.model);
        assertEquals((await Deno.stat(result.manifestPath)).mtime, before);
      });
    } finally {
      await registry.close();
      await tmp.cleanup();
    }
  },
});

Deno.test({
  name: "a model of an architecture the instance lacks is refused from its header, before it is downloaded",
  sanitizeResources: false,
  async fn(t) {
    const tmp = await tempDir();
    const registry = new Registry();
    try {
      const store = `${tmp.path}/store`;
      const inst = await instance();
      // 8 MiB of weights behind a header of a few hundred bytes.
      const weird = ggufFile(
        [["general.architecture", "str", "zorblax"], ["zorblax.block_count", "u32", 2]],
        [
          { name: "token_embd.weight", dims: [1024, 2048], type: 0, bytes: 8 << 20 },
        ],
      );
      const { digests } = await registry.publish("library/weird:latest", [
        { mediaType: `${MT}model`, bytes: weird },
        { mediaType: `${MT}params`, bytes: te.encode(PARAMS) },
      ]);

      await t.step("the refusal names the architecture and the instance", async () => {
        const err = await assertRejects(
          () =>
            pullOllama(`${registry.host}/library/weird`, { storeDir: store, insecure: true, instance: inst }),
          UnsupportedModelError,
        );
        assertStringIncludes(err.message, "architecture 'zorblax' is not supported by llama.cpp");
        assertStringIncludes(err.message, `of instance '${inst.name}'`);
        assertStringIncludes(err.hint ?? "", "Ollama's own engine");
      });

      await t.step("only header-sized ranges of the model were served, and nothing was stored", async () => {
        const hex = digests[0].slice(7);
        const served = registry.served.get(hex) ?? 0;
        assert(served > 0 && served <= 512 * 1024, `served ${served} of ${weird.length} bytes`);
        assert(
          registry.log.filter((l) => l.includes(hex)).every((l) =>
            l.includes("bytes=") || l.includes("/v2/")
          ),
        );
        assertEquals(registry.served.get(digests[1].slice(7)), undefined, "no other layer was fetched");
        assert(!(await exists(`${store}/blobs/sha256-${hex}`)));
        assert(!(await exists(`${store}/manifests`)));
      });

      await t.step(
        "the instance's tables: known architectures and tensor types, removed types refused",
        async () => {
          const support = await readLlamaSupport(inst.sourceDir, inst.commit);
          assert(support.architectures?.has("llama") && support.architectures.has("clip"));
          assert(!support.architectures?.has("zorblax"));
          assert(
            support.tensorTypes?.has(3) && !support.tensorTypes.has(4),
            "Q4_1 is read, Q4_2 was removed",
          );
          const header = parseGgufHeader(
            ggufFile([["general.architecture", "str", "llama"]], [{
              name: "blk.0.ffn_up.weight",
              dims: [32],
              type: 4,
              bytes: 32,
            }]),
          );
          const problems = checkHeaderSupport(header, support, inst);
          assertEquals(problems.length, 1, problems.join("; "));
          assertStringIncludes(problems[0], "tensor type TYPE_4 (of 'blk.0.ffn_up.weight'");
        },
      );
    } finally {
      await registry.close();
      await tmp.cleanup();
    }
  },
});

Deno.test({
  name: "blobs are checked against their digests; an unknown tag is the registry's 404",
  sanitizeResources: false,
  async fn(t) {
    const tmp = await tempDir();
    const registry = new Registry();
    try {
      const { digests } = await registry.publish("library/tiny:latest", [
        { mediaType: `${MT}model`, bytes: tinyLlama() },
        { mediaType: `${MT}params`, bytes: te.encode(PARAMS) },
      ]);
      const params = digests[1].slice(7);
      const name = `${registry.host}/library/tiny:latest`;

      await t.step("a blob that arrives corrupt is fetched once more", async () => {
        registry.corrupt.set(params, 1);
        const r = await pullOllama(name, { storeDir: `${tmp.path}/a`, insecure: true });
        assertEquals(registry.fromStart.get(params), 2);
        assertEquals(await sha256File(r.params!), params);
      });

      await t.step("a blob corrupt twice is an error, and neither it nor the manifest is kept", async () => {
        registry.corrupt.set(params, 2);
        const store = `${tmp.path}/b`;
        const err = await assertRejects(
          () => pullOllama(name, { storeDir: store, insecure: true }),
          RegistryError,
        );
        assertStringIncludes(err.message, `blob sha256:${params}`);
        assertStringIncludes(err.message, "does not match its digest");
        assert(!(await exists(`${store}/blobs/sha256-${params}`)));
        assert(!(await exists(`${store}/manifests`)));
      });

      await t.step("an unknown tag says the model is not found, in the registry's words", async () => {
        const err = await assertRejects(
          () =>
            pullOllama(`${registry.host}/library/tiny:nope`, { storeDir: `${tmp.path}/c`, insecure: true }),
          RegistryError,
        );
        assertEquals(err.status, 404);
        assertEquals(err.code, "MANIFEST_UNKNOWN");
        assertEquals(
          err.message,
          `model '${registry.host}/library/tiny:nope' not found in registry ${registry.host}: manifest unknown`,
        );
      });
    } finally {
      await registry.close();
      await tmp.cleanup();
    }
  },
});
