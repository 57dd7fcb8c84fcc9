/** `deno install` gives a working `llama-mgr` command, as the README's install section says. */
import { assertEquals, assertStringIncludes } from "./_assert.ts";
import { tempDir } from "./_fixtures.ts";
import { VERSION } from "../lib/version.ts";

Deno.test({
  name: "deno install puts a llama-mgr command on the PATH that runs from source",
  sanitizeResources: false,
  async fn() {
    const d = await tempDir();
    try {
      const root = new URL("..", import.meta.url).pathname;
      const inst = await new Deno.Command(Deno.execPath(), {
        args: [
          "install",
          "-g",
          "-A",
          "-f",
          "--root",
          d.path,
          "-n",
          "llama-mgr",
          "--config",
          `${root}deno.json`,
          `${root}cli/main.ts`,
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assertEquals(inst.code, 0, new TextDecoder().decode(inst.stderr));
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
