/**
 * A file the scan cannot open (no read permission) is listed as unreadable, and once the user fixes the
 * permission the next scan finds the model: chmod changes neither the size nor the mtime the index cache is
 * keyed by, so access errors must not be cached the way a corrupt header is. Tests run as root, whom
 * permissions do not stop, so the scans run under `setpriv` without the capabilities that override them.
 */
import { assert, assertEquals, assertStringIncludes } from "./_assert.ts";
import { smolModelPath, tempDir } from "./_fixtures.ts";

const main = new URL("../cli/main.ts", import.meta.url).pathname;

/** `llama-mgr models scan --json` as a user whom file permissions apply to. */
async function scan(data: string, config: string): Promise<Record<string, any>> {
  const asUser = Deno.uid() === 0
    ? [
      "setpriv",
      "--bounding-set=-dac_override,-dac_read_search",
      "--inh-caps=-dac_override,-dac_read_search",
    ]
    : [];
  const argv = [...asUser, Deno.execPath(), "run", "-A", main, "--data-dir", data, "--config", config];
  const out = await new Deno.Command(argv[0], {
    args: [...argv.slice(1), "models", "scan", "--json"],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  assertEquals(out.code, 0, dec.decode(out.stderr));
  return JSON.parse(dec.decode(out.stdout));
}

Deno.test({
  name: "a file without read permission is unreadable until the permission is fixed, then found",
  sanitizeResources: false,
  async fn(t) {
    const tmp = await tempDir();
    try {
      const dir = `${tmp.path}/mine`;
      await Deno.mkdir(dir);
      const model = `${dir}/smol.gguf`;
      await Deno.copyFile(await smolModelPath(), model);
      await Deno.chmod(model, 0o000);
      const config = `${tmp.path}/config.yaml`;
      await Deno.writeTextFile(
        config,
        `models:\n  dirs: [${
          JSON.stringify(dir)
        }]\n  sources: {huggingface: false, ollama: false, lmstudio: false, llamacpp: false}\n`,
      );
      const data = `${tmp.path}/data`;
      const mtime = (await Deno.stat(model)).mtime?.getTime();

      await t.step("the scan lists it as unreadable, saying why", async () => {
        const r = await scan(data, config);
        assertEquals(r.models, []);
        assertEquals(r.unreadable.length, 1);
        assertEquals(r.unreadable[0].path, model);
        assertStringIncludes(r.unreadable[0].error.toLowerCase(), "permission denied");
      });

      await t.step("after chmod (same size and mtime) the next scan finds the model", async () => {
        await Deno.chmod(model, 0o644);
        assertEquals((await Deno.stat(model)).mtime?.getTime(), mtime, "chmod keeps the mtime");
        const r = await scan(data, config);
        assertEquals(r.unreadable, []);
        assertEquals(r.models.length, 1);
        assert(r.models[0].startsWith("smollm2:"), r.models[0]);
        assertEquals(r.changed, [model]);
      });

      await t.step("and the scan after that reads nothing", async () => {
        const r = await scan(data, config);
        assertEquals(r.filesRead, 0);
        assertEquals([r.added, r.changed, r.models.length], [[], [], 1]);
      });
    } finally {
      await Deno.chmod(`${tmp.path}/mine/smol.gguf`, 0o644).catch(() => {});
      await tmp.cleanup();
    }
  },
});
