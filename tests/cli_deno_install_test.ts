/**
 * `deno install` gives a working `llama-mgr` command, as the README's install section says, and every entry point
 * runs with the V8 flags the daemon's memory figures were measured with.
 */
import { assert, assertEquals, assertStringIncludes } from "./_assert.ts";
import { tempDir } from "./_fixtures.ts";
import { DAEMON_V8_FLAGS, VERSION } from "../lib/version.ts";

const root = new URL("..", import.meta.url).pathname;
const tasks: Record<string, string> = JSON.parse(await Deno.readTextFile(`${root}deno.json`)).tasks;
const v8Flag = `--v8-flags=${DAEMON_V8_FLAGS.join(",")}`;

Deno.test("the llama-mgr task, install-cli and compile give the daemon its V8 flags", async () => {
  assert(tasks["llama-mgr"].split(" ").includes(v8Flag), `llama-mgr task: ${tasks["llama-mgr"]}`);
  assert(tasks["install-cli"].split(" ").includes(v8Flag), `install-cli task: ${tasks["install-cli"]}`);
  assertStringIncludes(await Deno.readTextFile(`${root}scripts/compile.ts`), "DAEMON_V8_FLAGS.join");
});

Deno.test({
  name: "deno install puts a llama-mgr command on the PATH that runs from source",
  sanitizeResources: false,
  async fn() {
    const d = await tempDir();
    try {
      // The install-cli task as the README runs it, into a temp root instead of ~/.deno.
      const [deno, install, ...rest] = tasks["install-cli"].split(" ");
      assertEquals([deno, install], ["deno", "install"]);
      const inst = await new Deno.Command(Deno.execPath(), {
        args: [install, "--root", d.path, ...rest],
        cwd: root,
        stdout: "piped",
        stderr: "piped",
      }).output();
      assertEquals(inst.code, 0, new TextDecoder().decode(inst.stderr));
      assertStringIncludes(await Deno.readTextFile(`${d.path}/bin/llama-mgr`), v8Flag);
      const out = await new Deno.Command(`${d.path}/bin/llama-mgr`, {
        args: ["--version"],
        stdout: "piped",
        stderr: "piped",
        env: { PATH: `${Deno.execPath().replace(/\/[^/]+$/, "")}:${Deno.env.get("PATH")}` },
      }).output();
      assertEquals(new TextDecoder().decode(out.stdout).trim(), VERSION);
      const help = await new Deno.Command(`${d.path}/bin/llama-mgr`, {
        args: ["doctor", "--help"],
        stdout: "piped",
        env: { PATH: `${Deno.execPath().replace(/\/[^/]+$/, "")}:${Deno.env.get("PATH")}` },
      }).output();
      assertStringIncludes(new TextDecoder().decode(help.stdout), "llama-mgr doctor");
    } finally {
      await d.cleanup();
    }
  },
});
