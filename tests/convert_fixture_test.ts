/** The shared MiniLM GGUF fixture (used by the daemon's embedding tests) is a real, complete bert GGUF. */
import { assert, assertEquals } from "./_assert.ts";
import { minilmGguf } from "./_fixtures.ts";
import { readGgufHeader } from "../lib/gguf/reader.ts";

Deno.test({
  name: "minilmGguf() gives all-MiniLM-L6-v2 converted to GGUF f16 by the shared instance, made once",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    let file = "";
    await t.step(
      "the file is a bert model with 384-wide f16 weights and the model's vocabulary",
      async () => {
        file = await minilmGguf();
        const h = await readGgufHeader(file, { skipArraysOver: 0 });
        assertEquals(h.metadata["general.architecture"], "bert");
        assertEquals(h.metadata["bert.embedding_length"], 384);
        assertEquals(h.metadata["bert.block_count"], 6);
        assertEquals(h.metadata["general.file_type"], 1);
        assertEquals(h.metadata["tokenizer.ggml.model"], "bert");
        assertEquals((h.metadata["tokenizer.ggml.tokens"] as { length: number }).length, 30522);
        assert(!file.includes(".partial"));
      },
    );
    await t.step("a second call returns the cached file without making it again", async () => {
      const before = await Deno.stat(file);
      assertEquals(await minilmGguf(), file);
      // Made again, it would be a new file renamed over this one.
      const after = await Deno.stat(file);
      assertEquals([after.ino, after.mtime?.getTime()], [before.ino, before.mtime?.getTime()]);
    });
  },
});
