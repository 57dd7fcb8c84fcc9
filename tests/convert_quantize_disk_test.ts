/**
 * quantize and a small disk: the free-space check refuses before anything is written, and when the disk fills
 * up anyway while llama-quantize writes (another writer took the space after the check), the partial file is
 * removed and the error says the disk is full. Uses real tmpfs mounts (root only).
 */
import { join } from "node:path";
import { assert, assertEquals, assertRejects, assertStringIncludes } from "./_assert.ts";
import { cli, minilmGguf, tempDir, testInstance } from "./_fixtures.ts";
import { quantizeModel } from "../lib/convert/quantize.ts";
import { UserError } from "../lib/util/errors.ts";
import { run } from "../lib/util/run.ts";

const canMount = Deno.uid() === 0;

async function withTmpfs<T>(dir: string, megabytes: number, fn: () => Promise<T>): Promise<T> {
  await Deno.mkdir(dir, { recursive: true });
  await run(["mount", "-t", "tmpfs", "-o", `size=${megabytes}m`, "tmpfs", dir]);
  try {
    return await fn();
  } finally {
    await run(["umount", dir], { check: false });
  }
}

Deno.test({
  name: "quantize on a small disk: refused before writing, and a disk that fills up leaves no partial file",
  ignore: !canMount,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const f16 = await minilmGguf();
    const { paths: shared, instance } = await testInstance();
    const tmp = await tempDir();
    const data = join(tmp.path, "data");
    await Deno.mkdir(join(data, "instances"), { recursive: true });
    await Deno.symlink(join(shared.instancesDir, "cpu"), join(data, "instances", "cpu"));
    const small = join(tmp.path, "small");
    try {
      await t.step(
        "8 MB free for a ~24 MB Q8_0: refused up front, naming both sizes, nothing written",
        async () => {
          await withTmpfs(small, 8, async () => {
            const r = await cli([
              "-d",
              data,
              "--config",
              join(tmp.path, "none.yaml"),
              "quantize",
              f16,
              "Q8_0",
              "-o",
              join(small, "minilm-Q8_0.gguf"),
            ]);
            assertEquals(r.code, 1, r.stdout);
            assertStringIncludes(r.stderr, "not enough free disk space for minilm-Q8_0.gguf");
            assertStringIncludes(r.stderr, "8.0 MiB free");
            assertEquals([...Deno.readDirSync(small)].map((e) => e.name), []);
          });
        },
      );
      await t.step(
        "the disk fills up while writing: a clear 'disk filled up' error, no partial file",
        async () => {
          await withTmpfs(small, 20, async () => {
            const err = await assertRejects(
              () =>
                quantizeModel({
                  instance,
                  input: f16,
                  // Understated on purpose: the check passes, as when another writer takes the space after it.
                  parameterCount: 1_000,
                  type: "Q8_0",
                  outDir: small,
                }),
              UserError,
            );
            assertStringIncludes(err.message, "the disk filled up while writing all-minilm-l6-v2-Q8_0.gguf");
            assertStringIncludes(err.message, "iostream error");
            assertEquals([...Deno.readDirSync(small)].map((e) => e.name), [], "no partial file left");
          });
        },
      );
      await t.step("with room, the same call writes the complete file", async () => {
        await withTmpfs(small, 48, async () => {
          const r = await quantizeModel({
            instance,
            input: f16,
            parameterCount: 22_700_000,
            type: "Q8_0",
            outDir: small,
          });
          assertEquals(r.output, join(small, "all-minilm-l6-v2-Q8_0.gguf"));
          assert(r.bytes > 20e6 && r.bytes < 30e6, `${r.bytes} bytes`);
          assertEquals([...Deno.readDirSync(small)].map((e) => e.name), ["all-minilm-l6-v2-Q8_0.gguf"]);
        });
      });
    } finally {
      await tmp.cleanup();
    }
  },
});
