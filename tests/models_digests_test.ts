/**
 * Content digests: the sha256 of a model's bytes, known by name for a blob stored under its digest, hashed
 * once in the background for any other file and cached by device, inode, size and mtime; a listing never
 * waits for one, and a changed file gets a new one. Then the daemon's `/api/tags` and `/api/ps` with them.
 */
import { join } from "node:path";
import { assert, assertEquals } from "./_assert.ts";
import { sha256File, smolModelPath } from "./_fixtures.ts";
import { createDigestCache, type DigestSubject } from "../lib/models/digests.ts";
import { withDaemon } from "./_daemon.ts";

async function subject(path: string): Promise<DigestSubject> {
  const st = await Deno.stat(path);
  return { files: [path], sizeBytes: st.size, mtimeMs: st.mtime!.getTime() };
}

Deno.test("digest cache: background sha256, cached by dev/inode/size/mtime, never waited for", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "llama-mgr-digests-" });
  try {
    const model = join(dir, "m.gguf");
    await Deno.writeTextFile(model, "first content");
    const cacheFile = join(dir, "digests.json");

    await t.step("unknown at first, the real sha256 once hashed in the background", async () => {
      const cache = createDigestCache(cacheFile);
      assertEquals(await cache.get(await subject(model)), undefined);
      await cache.idle();
      assertEquals(await cache.get(await subject(model)), `sha256:${await sha256File(model)}`);
      await cache.close();
    });

    await t.step("kept across restarts: a new cache does not hash the file again", async () => {
      let hashed = 0;
      const cache = createDigestCache(cacheFile, {
        hash: () => {
          hashed++;
          return Promise.resolve("0".repeat(64));
        },
      });
      assertEquals(await cache.get(await subject(model)), `sha256:${await sha256File(model)}`);
      assertEquals(hashed, 0);
      await cache.close();
    });

    await t.step("a changed file gets a new digest", async () => {
      const cache = createDigestCache(cacheFile);
      const before = await cache.get(await subject(model));
      await Deno.writeTextFile(model, "second content, longer");
      assertEquals(await cache.get(await subject(model)), undefined);
      await cache.idle();
      const after = await cache.get(await subject(model));
      assertEquals(after, `sha256:${await sha256File(model)}`);
      assert(after !== before);
      await cache.close();
    });

    await t.step(
      "a listing does not wait for a slow hash; one hash per file however often asked",
      async () => {
        let release = () => {};
        const gate = new Promise<void>((r) => release = r);
        let hashed = 0;
        const other = join(dir, "slow.gguf");
        await Deno.writeTextFile(other, "slow");
        const cache = createDigestCache(join(dir, "slow.json"), {
          hash: async () => {
            hashed++;
            await gate;
            return "ab".repeat(32);
          },
        });
        const t0 = performance.now();
        for (let i = 0; i < 5; i++) assertEquals(await cache.get(await subject(other)), undefined);
        assert(performance.now() - t0 < 1000);
        release();
        await cache.idle();
        assertEquals(await cache.get(await subject(other)), `sha256:${"ab".repeat(32)}`);
        assertEquals(hashed, 1);
        await cache.close();
      },
    );

    await t.step(
      "a blob stored under its digest (Ollama's, Hugging Face's) is known by its name, not hashed",
      async () => {
        const hex = "c".repeat(64);
        const blob = join(dir, `sha256-${hex}`);
        await Deno.writeTextFile(blob, "whatever");
        const cache = createDigestCache(join(dir, "none.json"), {
          hash: () => Promise.reject(new Error("hashed")),
        });
        assertEquals(await cache.get(await subject(blob)), `sha256:${hex}`);
        // A Hugging Face cache's snapshot file links to its blob, named by the content's sha256.
        const hf = "d".repeat(64);
        await Deno.mkdir(join(dir, "blobs"));
        await Deno.writeTextFile(join(dir, "blobs", hf), "weights");
        await Deno.symlink(join(dir, "blobs", hf), join(dir, "model-Q4_K_M.gguf"));
        assertEquals(await cache.get(await subject(join(dir, "model-Q4_K_M.gguf"))), `sha256:${hf}`);
        await cache.close();
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("daemon: /api/tags digests are the model file's sha256 once known, empty before", async () => {
  await withDaemon({}, async ({ url, daemon, dataDir }) => {
    const tags = async () => {
      const r = await fetch(`${url}/api/tags`);
      const { models } = await r.json();
      return models.find((m: { name: string }) => m.name === "smol:latest");
    };
    const first = await tags();
    assertEquals(first.digest, "", "not known yet: no digest made up from the path");
    await daemon.ctx.digests!.idle();
    const known = await tags();
    assertEquals(known.digest, await sha256File(await smolModelPath()));
    // Cached on disk for the next daemon.
    const saved = JSON.parse(await Deno.readTextFile(join(dataDir, "digests.json")));
    assertEquals(Object.values(saved), [known.digest]);
  });
});
