/**
 * `convert hf:Org/Name` takes a snapshot from the Hugging Face cache (the real layout: refs/main, snapshots of
 * symlinks into blobs/), names the output after the repository, and explains a missing or malformed name.
 */
import { join } from "node:path";
import { assertEquals, assertMatch, assertStringIncludes } from "./_assert.ts";
import { cli, minilmDir, tempDir, testInstance } from "./_fixtures.ts";
import { readGgufHeader } from "../lib/gguf/reader.ts";

const REV = "c9745ed1d9f207416be6d2e6f8de32d1f16199bf";

/** Lays `folder` out as the HF hub cache does for `org/name`, under `<hfHome>/hub`. */
async function fakeHubCache(hfHome: string, org: string, name: string, folder: string): Promise<void> {
  const repo = join(hfHome, "hub", `models--${org}--${name}`);
  const snap = join(repo, "snapshots", REV);
  await Deno.mkdir(join(repo, "blobs"), { recursive: true });
  await Deno.mkdir(join(repo, "refs"), { recursive: true });
  await Deno.writeTextFile(join(repo, "refs", "main"), REV);
  const walk = async (rel: string): Promise<void> => {
    for await (const e of Deno.readDir(join(folder, rel))) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory) {
        await walk(r);
        continue;
      }
      const blob = `blob-${r.replaceAll("/", "_")}`;
      await Deno.copyFile(join(folder, r), join(repo, "blobs", blob));
      await Deno.mkdir(join(snap, r, ".."), { recursive: true });
      const depth = r.split("/").length + 1;
      await Deno.symlink(`${"../".repeat(depth)}blobs/${blob}`, join(snap, r));
    }
  };
  await walk("");
}

Deno.test({
  name: "convert hf:Org/Name converts a Hugging Face cache snapshot, named after the repository",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const { paths: shared } = await testInstance();
    const tmp = await tempDir();
    const data = join(tmp.path, "data");
    await Deno.mkdir(join(data, "instances"), { recursive: true });
    await Deno.symlink(join(shared.instancesDir, "cpu"), join(data, "instances", "cpu"));
    const hfHome = join(tmp.path, "hf");
    await fakeHubCache(hfHome, "sentence-transformers", "all-MiniLM-L6-v2", await minilmDir());
    const base = ["-d", data, "--config", join(tmp.path, "none.yaml")];
    const env = { HF_HOME: hfHome };
    try {
      await t.step(
        "the snapshot converts to all-minilm-l6-v2-f16.gguf, not to the revision's name",
        async () => {
          const r = await cli([
            ...base,
            "convert",
            "hf:sentence-transformers/all-MiniLM-L6-v2",
            "--torch-version",
            "2.13.0",
            "--find-links",
            "/opt/wheels",
          ], { env });
          assertEquals(r.code, 0, r.stderr);
          const out = join(data, "models", "all-minilm-l6-v2-f16.gguf");
          assertStringIncludes(r.stdout, out);
          const h = await readGgufHeader(out, { skipArraysOver: 0 });
          assertEquals(h.metadata["general.architecture"], "bert");
          assertEquals([...Deno.readDirSync(join(data, "models"))].map((e) => e.name), [
            "all-minilm-l6-v2-f16.gguf",
          ]);
        },
      );
      await t.step("a repository not in the cache is a clear error saying how to get it", async () => {
        const r = await cli([...base, "convert", "hf:Qwen/Qwen2.5-0.5B-Instruct"], { env });
        assertEquals(r.code, 1);
        assertStringIncludes(r.stderr, "Qwen/Qwen2.5-0.5B-Instruct is not in the Hugging Face cache");
        assertStringIncludes(r.stderr, join(hfHome, "hub"));
        assertMatch(r.stderr, /hint: .*download/);
      });
      await t.step("a malformed hf: name says what the form is", async () => {
        const r = await cli([...base, "convert", "hf:just-a-name"], { env });
        assertEquals(r.code, 1);
        assertStringIncludes(r.stderr, "'hf:just-a-name' is not hf:Org/Name");
      });
    } finally {
      await tmp.cleanup();
    }
  },
});
