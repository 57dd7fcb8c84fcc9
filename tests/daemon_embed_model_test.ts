/**
 * The daemon with a real embedding model (all-MiniLM-L6-v2 converted to GGUF by the shared instance): the npm
 * `ollama` client's embed and the `openai` client's embeddings give the vectors sentence-transformers gives.
 */
import { Ollama } from "ollama";
import OpenAI from "openai";
import { assert, assertEquals } from "./_assert.ts";
import { minilmDir, minilmGguf } from "./_fixtures.ts";
import { testVenv } from "./_python.ts";
import { withDaemon } from "./_daemon.ts";
import { run } from "../lib/util/run.ts";
import { cosine } from "./_vectors.ts";

const SENTENCES = ["A man is eating food.", "The new movie is awesome.", "Two cats sleep in the sun."];

Deno.test({
  name: "an embedding-only model through the daemon gives sentence-transformers' vectors to real clients",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const gguf = await minilmGguf();
    const st = await testVenv("st", ["sentence-transformers", "sentencepiece", "torch==2.13.0"], [
      "--find-links",
      "/opt/wheels",
    ]);
    const ref: number[][] = JSON.parse(
      (await run(
        [st, new URL("../scripts/python/st_embed.py", import.meta.url).pathname, await minilmDir()],
        {
          stdin: JSON.stringify(SENTENCES),
        },
      )).stdout,
    );
    await withDaemon({ models: { "minilm.gguf": gguf } }, async ({ url }) => {
      const ollama = new Ollama({ host: url });
      const { models } = await ollama.list();
      const name = models.find((m) => m.name.startsWith("all-minilm"))!.name;
      const show = await ollama.show({ model: name });
      assert(show.capabilities?.includes("embedding"), JSON.stringify(show.capabilities));
      assert(!show.capabilities?.includes("completion"));
      const res = await ollama.embed({ model: name, input: SENTENCES });
      assertEquals(res.embeddings.length, SENTENCES.length);
      assertEquals(res.embeddings[0].length, 384);
      res.embeddings.forEach((v, i) =>
        assert(cosine(v, ref[i]) >= 0.99, `ollama embed ${i}: ${cosine(v, ref[i])}`)
      );
      const chat = await fetch(`${url}/api/chat`, {
        method: "POST",
        body: JSON.stringify({ model: name, messages: [{ role: "user", content: "hi" }], stream: false }),
      });
      assertEquals(chat.status, 400, "an embedding-only model does not chat");
      await chat.body?.cancel();
      const openai = new OpenAI({ baseURL: `${url}/v1`, apiKey: "unused" });
      const o = await openai.embeddings.create({ model: name, input: SENTENCES });
      o.data.forEach((d, i) => assert(cosine(d.embedding, ref[i]) >= 0.99, `openai embeddings ${i}`));
    });
  },
});
