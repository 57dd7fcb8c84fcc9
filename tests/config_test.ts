import { assertEquals, assertRejects, assertThrows } from "./_assert.ts";
import { loadConfig, parseConfig } from "../lib/config/load.ts";
import { resolvePaths } from "../lib/config/paths.ts";
import { UserError } from "../lib/util/errors.ts";
import { tempDir } from "./_fixtures.ts";

Deno.test("config validation names the file, the key path and what was expected", async (t) => {
  await t.step("an empty file gives the defaults", () => {
    const c = parseConfig(null, "c.yaml");
    assertEquals(c.daemon.port, 11434);
    assertEquals(c.daemon.host, "127.0.0.1");
    assertEquals(c.models.dirs, []);
    assertEquals(c.python.torch, "cpu");
  });
  await t.step("an unknown key is rejected with its full path", () => {
    const err = assertThrows(() => parseConfig({ daemon: { prot: 1 } }, "/x/config.yaml"), UserError);
    assertEquals(err.message.includes("/x/config.yaml"), true, err.message);
    assertEquals(err.message.includes("daemon.prot: unknown key"), true, err.message);
  });
  await t.step("a bad value names the key and the expected type", () => {
    const err = assertThrows(() => parseConfig({ daemon: { port: "eleven" } }, "c.yaml"), UserError);
    assertEquals(/daemon\.port: .*number/i.test(err.message), true, err.message);
    const err2 = assertThrows(
      () => parseConfig({ presets: { chat: { model: "m", ngl: "all" } } }, "c.yaml"),
      UserError,
    );
    assertEquals(err2.message.includes("presets.chat.ngl"), true, err2.message);
    const err3 = assertThrows(() => parseConfig({ python: { torch: "cuda" } }, "c.yaml"), UserError);
    assertEquals(err3.message.includes("python.torch"), true, err3.message);
  });
  await t.step("YAML syntax errors are reported as such", async () => {
    const d = await tempDir();
    try {
      await Deno.writeTextFile(`${d.path}/c.yaml`, "daemon:\n  port: [1\n");
      await assertRejects(() => loadConfig(`${d.path}/c.yaml`), UserError, "not valid YAML");
      await Deno.writeTextFile(
        `${d.path}/ok.yaml`,
        "models:\n  dirs: [~/models]\n  aliases: {coder: qwen:7b}\n",
      );
      const c = await loadConfig(`${d.path}/ok.yaml`);
      assertEquals(c.models.aliases.coder, "qwen:7b");
    } finally {
      await d.cleanup();
    }
  });
});

Deno.test("data and config locations follow flags, then environment, then XDG", () => {
  const env = { HOME: "/home/u" };
  assertEquals(resolvePaths({ env }).dataDir, "/home/u/.local/share/llama-mgr");
  assertEquals(resolvePaths({ env }).configFile, "/home/u/.config/llama-mgr/config.yaml");
  assertEquals(resolvePaths({ env: { ...env, XDG_DATA_HOME: "/xdg" } }).dataDir, "/xdg/llama-mgr");
  assertEquals(
    resolvePaths({ env: { ...env, XDG_CONFIG_HOME: "/cfg" } }).configFile,
    "/cfg/llama-mgr/config.yaml",
  );
  assertEquals(resolvePaths({ env: { ...env, LLAMA_MGR_DATA_DIR: "/d" } }).dataDir, "/d");
  assertEquals(
    resolvePaths({ env: { ...env, LLAMA_MGR_DATA_DIR: "/d" }, dataDir: "~/x" }).dataDir,
    "/home/u/x".replace("/home/u", Deno.env.get("HOME") ?? ""),
  );
  assertEquals(resolvePaths({ env, dataDir: "/flag" }).instancesDir, "/flag/instances");
});
