/**
 * Ctrl-C during `convert`: the converter is stopped, its partial file removed, nothing lands in the models
 * folder, and no Python process is left behind.
 */
import { join } from "node:path";
import { assert, assertEquals, assertStringIncludes } from "./_assert.ts";
import { minilmDir, tempDir, testInstance } from "./_fixtures.ts";

/** Pids whose command line mentions `text`. */
function processesWith(text: string): number[] {
  const out: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      if (Deno.readTextFileSync(`/proc/${e.name}/cmdline`).includes(text)) out.push(Number(e.name));
    } catch { /* gone */ }
  }
  return out;
}

Deno.test({
  name: "Ctrl-C during convert leaves no partial file, no output and no converter process",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const { paths: shared } = await testInstance();
    const folder = await minilmDir();
    const tmp = await tempDir();
    const data = join(tmp.path, "data");
    const models = join(data, "models");
    await Deno.mkdir(join(data, "instances"), { recursive: true });
    await Deno.mkdir(models, { recursive: true });
    await Deno.symlink(join(shared.instancesDir, "cpu"), join(data, "instances", "cpu"));
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("../cli/main.ts", import.meta.url).pathname,
        "-d",
        data,
        "--config",
        join(tmp.path, "none.yaml"),
        "convert",
        folder,
        "--torch-version",
        "2.13.0",
        "--find-links",
        "/opt/wheels",
      ],
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const output = child.output();
    try {
      // Interrupt once the converter has started writing its (hidden) temp file.
      const deadline = Date.now() + 120_000;
      let partial: string | undefined;
      while (!partial && Date.now() < deadline) {
        partial = [...Deno.readDirSync(models)].find((e) => e.name.includes(".partial-"))?.name;
        if (!partial) await new Promise((r) => setTimeout(r, 25));
      }
      assert(partial, "the converter never started writing");
      assert(partial.startsWith(".all-minilm-l6-v2-f16.gguf.partial-"), partial);
      child.kill("SIGINT");
      const out = await output;
      const stderr = new TextDecoder().decode(out.stderr);
      assertEquals(out.code, 130, stderr);
      assertStringIncludes(stderr, "interrupted (SIGINT)");
      assertEquals([...Deno.readDirSync(models)].map((e) => e.name), [], "nothing in the models folder");
      await new Promise((r) => setTimeout(r, 500));
      assertEquals(processesWith(partial), [], "no converter process left");
    } finally {
      try {
        child.kill("SIGKILL");
      } catch { /* ended */ }
      await output.catch(() => {});
      for (const pid of processesWith(models)) {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch { /* gone */ }
      }
      await tmp.cleanup();
    }
  },
});
