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

/** `llama-mgr convert FOLDER` as a user starts it, with the machine's local torch. */
function spawnConvert(data: string, tmp: string, folder: string): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("../cli/main.ts", import.meta.url).pathname,
      "-d",
      data,
      "--config",
      join(tmp, "none.yaml"),
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
}

/** Waits until a hidden temp file shows up in `dir`; returns its name. */
async function waitForPartial(dir: string): Promise<string> {
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    const partial = [...Deno.readDirSync(dir)].find((e) => e.name.includes(".partial-"))?.name;
    if (partial) return partial;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error("the converter never started writing");
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
    const child = spawnConvert(data, tmp.path, folder);
    const output = child.output();
    try {
      // Interrupt once the converter has started writing its (hidden) temp file.
      const partial = await waitForPartial(models);
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

Deno.test({
  name: "kill -9 of convert: the converter does not live on, and the next run cleans up and succeeds",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const { paths: shared } = await testInstance();
    const folder = await minilmDir();
    const tmp = await tempDir();
    const data = join(tmp.path, "data");
    const models = join(data, "models");
    await Deno.mkdir(join(data, "instances"), { recursive: true });
    await Deno.mkdir(models, { recursive: true });
    await Deno.symlink(join(shared.instancesDir, "cpu"), join(data, "instances", "cpu"));
    const child = spawnConvert(data, tmp.path, folder);
    const output = child.output();
    try {
      await t.step(
        "the orphaned converter ends (its output pipe is gone) instead of writing on",
        async () => {
          const partial = await waitForPartial(models);
          child.kill("SIGKILL");
          await output;
          const deadline = Date.now() + 10_000;
          while (processesWith(partial).length && Date.now() < deadline) {
            await new Promise((r) => setTimeout(r, 100));
          }
          assertEquals(processesWith(partial), [], "no converter process left");
          assert(
            ![...Deno.readDirSync(models)].some((e) => e.name === "all-minilm-l6-v2-f16.gguf"),
            "no output under the real name",
          );
        },
      );
      await t.step("the next convert removes the dead run's temp file and writes the output", async () => {
        const again = await spawnConvert(data, tmp.path, folder).output();
        assertEquals(again.code, 0, new TextDecoder().decode(again.stderr));
        assertEquals([...Deno.readDirSync(models)].map((e) => e.name), ["all-minilm-l6-v2-f16.gguf"]);
      });
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
