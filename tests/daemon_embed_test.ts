/**
 * `/api/embed` and the older `/api/embeddings` with a generation model (SmolLM2) served for embeddings:
 * normalised vectors, empty input, `dimensions`, and an input longer than the context refused or truncated.
 * The daemon with a real embedding model is daemon_embed_model_test.ts.
 */
import { assert, assertEquals, assertStringIncludes } from "./_assert.ts";
import { post, withDaemon } from "./_daemon.ts";
import { EmbedResponseSchema } from "../lib/daemon/types.ts";

Deno.test("daemon: /api/embed and /api/embeddings against a real llama-server", async (t) => {
  await withDaemon({}, async ({ url }) => {
    await t.step("/api/embed returns normalised vectors; empty input gives []", async () => {
      const r = await post(`${url}/api/embed`, { model: "smol", input: ["hello world", "goodbye"] });
      assertEquals(r.status, 200);
      const e = EmbedResponseSchema.parse(await r.json());
      assertEquals(e.embeddings.length, 2);
      assertEquals(e.embeddings[0].length, e.embeddings[1].length);
      const norm = Math.hypot(...e.embeddings[0]);
      assert(Math.abs(norm - 1) < 1e-3, `norm ${norm}`);
      assert((e.prompt_eval_count ?? 0) >= 3);
      const empty = await (await post(`${url}/api/embed`, { model: "smol", input: [] })).json();
      assertEquals(empty.embeddings, []);
      const dims = await (await post(`${url}/api/embed`, { model: "smol", input: "hi", dimensions: 16 }))
        .json();
      assertEquals(dims.embeddings[0].length, 16);
      const old = await (await post(`${url}/api/embeddings`, { model: "smol", prompt: "hello" })).json();
      assertEquals(old.embedding.length, e.embeddings[0].length);
    });

    await t.step("/api/embed with truncate false refuses an input longer than the context", async () => {
      const long = "word ".repeat(400);
      const r = await post(`${url}/api/embed`, {
        model: "smol",
        input: long,
        truncate: false,
        options: { num_ctx: 128 },
      });
      assertEquals(r.status, 400);
      assertStringIncludes((await r.json()).error, "exceeds maximum context length");
      const ok = await post(`${url}/api/embed`, { model: "smol", input: long, options: { num_ctx: 128 } });
      assertEquals(ok.status, 200);
      assertEquals((await ok.json()).embeddings.length, 1);
    });
  });
});
