/**
 * What the daemon tells about itself and its models, against a real model: `/` and `/api/version`, `/api/tags`
 * with Ollama's details, `/api/show` (checked against another GGUF reader), and the options a model's preset
 * sets as `/api/show` lists them.
 */
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./_assert.ts";
import { post, withDaemon } from "./_daemon.ts";
import { ListResponseSchema, ShowResponseSchema } from "../lib/daemon/types.ts";
import { smolModelPath } from "./_fixtures.ts";
import { gguf as hfGguf } from "@huggingface/gguf";

Deno.test("daemon: /, /api/version, /api/tags and /api/show answer as Ollama's do", async (t) => {
  await withDaemon({}, async ({ url }) => {
    await t.step("GET and HEAD / answer 'Ollama is running'", async () => {
      const r = await fetch(`${url}/`);
      assertEquals(r.status, 200);
      assertEquals(await r.text(), "Ollama is running");
      const h = await fetch(`${url}/`, { method: "HEAD" });
      assertEquals(h.status, 200);
      await h.body?.cancel();
    });

    await t.step("/api/version reports an Ollama version that clients checking for one accept", async () => {
      const r = await fetch(`${url}/api/version`);
      const v = await r.json();
      assertMatch(v.version, /^\d+\.\d+\.\d+$/);
      // VS Code's Copilot reads each part as a number and wants at least 0.6.4.
      const [major, minor, patch] = v.version.split(".").map((x: string) => parseInt(x, 10));
      assert(major > 0 || minor > 6 || (minor === 6 && patch >= 4), `${v.version} is below 0.6.4`);
      assertMatch(r.headers.get("x-llama-mgr-version") ?? "", /^\d+\.\d+\.\d+/);
    });

    await t.step("/api/tags lists the model with Ollama's details", async () => {
      const r = await fetch(`${url}/api/tags`);
      assertEquals(r.status, 200);
      const { models } = ListResponseSchema.parse(await r.json());
      const smol = models.find((m) => m.name === "smol:latest");
      assert(smol, `smol:latest missing from ${JSON.stringify(models.map((m) => m.name))}`);
      assertEquals(smol.details.format, "gguf");
      assertEquals(smol.details.family, "llama");
      assertEquals(smol.details.quantization_level, "Q4_1");
      assertMatch(smol.digest, /^([0-9a-f]{64})?$/); // empty until hashed (tests/models_digests_test.ts)
      assert(smol.size > 50_000_000);
    });

    await t.step(
      "/api/show gives model_info, details and capabilities; 400 without model, 404 unknown",
      async () => {
        const r = await post(`${url}/api/show`, { model: "smol" });
        assertEquals(r.status, 200);
        const show = ShowResponseSchema.parse(await r.json());
        assertEquals(show.model_info["general.architecture"], "llama");
        assert(show.capabilities?.includes("completion"));
        // As Ollama gives them: every metadata key of the file but its name and chat template, long arrays
        // empty unless verbose, and the tensors; checked against another reader, npm @huggingface/gguf.
        const theirs = await hfGguf(await smolModelPath(), { allowLocalFile: true });
        const keys = Object.keys(theirs.metadata).filter((k) =>
          !["version", "tensor_count", "kv_count", "general.name", "tokenizer.chat_template"].includes(k)
        );
        const verbose = ShowResponseSchema.parse(
          await (await post(`${url}/api/show`, { model: "smol", verbose: true })).json(),
        );
        for (const k of keys) {
          const v = (theirs.metadata as Record<string, unknown>)[k];
          const plain = typeof v === "bigint" ? Number(v) : v;
          if (Array.isArray(v)) {
            assertEquals(show.model_info[k], v.length > 5 ? [] : v, k);
            assertEquals((verbose.model_info[k] as unknown[]).length, v.length, k);
          } else assertEquals(show.model_info[k], plain, k);
        }
        assert(!("general.name" in show.model_info) && !("tokenizer.chat_template" in show.model_info));
        assertEquals(
          show.tensors?.map((t) => [t.name, t.shape]),
          theirs.tensorInfos.map((t) => [t.name, t.shape.map(Number)]),
        );
        assertEquals(show.tensors?.[0].type, "Q8_0");
        const none = await post(`${url}/api/show`, {});
        assertEquals(none.status, 400);
        assertEquals((await none.json()).error, "model is required");
        const unknown = await post(`${url}/api/show`, { model: "nope" });
        assertEquals(unknown.status, 404);
        assertEquals((await unknown.json()).error, "model 'nope' not found");
      },
    );
  });
});

Deno.test("daemon: /api/show lists what a model's preset sets, for the model and a name made from it", async () => {
  await withDaemon(
    { config: { presets: { smol: { model: "smol", ctx: 2048, ngl: 0 } } } },
    async ({ url }) => {
      const copy = await post(`${url}/api/copy`, { source: "smol", destination: "smol-copy" });
      assertEquals(copy.status, 200);
      await copy.body?.cancel();
      for (const model of ["smol", "smol-copy"]) {
        const show = await (await post(`${url}/api/show`, { model })).json();
        assertMatch(show.parameters, /^num_ctx {24}2048$/m, model);
        assertMatch(show.parameters, /^num_gpu {24}0$/m, model);
        assertStringIncludes(show.modelfile, "PARAMETER num_ctx                        2048", model);
      }
    },
  );
});
