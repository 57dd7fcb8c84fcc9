/**
 * Disk space, against a real small filesystem (a tmpfs mounted for the test): quantize refuses before it
 * starts when the estimate does not fit, and a conversion that fills the disk leaves no partial file and shows
 * the converter's own reason.
 */
import { join } from "node:path";
import { assertEquals, assertMatch, assertStringIncludes } from "./_assert.ts";
import { cli, minilmDir, minilmGguf, tempDir, testInstance } from "./_fixtures.ts";
import { instanceDir } from "../lib/llamacpp/instances.ts";
import { run } from "../lib/util/run.ts";

const TORCH_FLAGS = ["--torch-version", "2.13.0", "--find-links", "/opt/wheels"];

/** Mounts a tmpfs of `mb` MiB at `dir`; false where mounting is not permitted (not root, no CAP_SYS_ADMIN). */
async function mountSmall(dir: string, mb: number): Promise<boolean> {
  await Deno.mkdir(dir, { recursive: true });
  const r = await run(["mount", "-t", "tmpfs", "-o", `size=${mb}m`, "tmpfs", dir], { check: false }).catch(
    () => undefined,
  );
  return r?.code === 0;
}

function entries(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
}

const probe = await Deno.makeTempDir({ prefix: "llama-mgr-mount-probe-" });
const canMount = await mountSmall(probe, 1);
if (canMount) await run(["umount", probe]);
await Deno.remove(probe, { recursive: true });

Deno.test({
  name: "a disk too small: quantize refuses before starting, a conversion that fills it leaves nothing",
  ignore: !canMount,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const { paths: shared } = await testInstance();
    const f16 = await minilmGguf();
    const tmp = await tempDir();
    const data = join(tmp.path, "data");
    const small = join(tmp.path, "small");
    await Deno.mkdir(join(data, "instances"), { recursive: true });
    await Deno.symlink(instanceDir(shared, "cpu"), join(data, "instances", "cpu"));
    const base = ["-d", data, "--config", join(tmp.path, "none.yaml")];
    let mounted = false;
    try {
      mounted = await mountSmall(small, 20);
      await t.step("quantize to a 20 MiB disk: refused with the estimate and the free space", async () => {
        const out = join(small, "minilm-f32.gguf");
        const r = await cli([...base, "quantize", f16, "F32", "-o", out]);
        assertEquals(r.code, 1, r.stdout);
        assertMatch(r.stderr, /not enough free disk space .*about .* needed, .* free/);
        assertStringIncludes(r.stderr, "-o");
        assertEquals(entries(small), []);
      });

      await t.step(
        "convert to a 20 MiB disk (44 MiB of f16): the converter's reason, no partial file",
        async () => {
          const out = join(small, "minilm-f16.gguf");
          const r = await cli([
            ...base,
            "convert",
            await minilmDir(),
            "--outtype",
            "f16",
            "-o",
            out,
            ...TORCH_FLAGS,
          ]);
          assertEquals(r.code, 1, r.stdout);
          assertStringIncludes(r.stderr, "convert_hf_to_gguf.py failed");
          // gguf-py checks the free space itself before writing; the OS error would do as well.
          assertMatch(r.stderr, /Not enough free space|No space left on device/);
          assertEquals(entries(small), []);
        },
      );
    } finally {
      if (mounted) await run(["umount", small], { check: false });
      await tmp.cleanup();
    }
  },
});
