/**
 * An interrupted conversion leaves nothing behind: `llama-mgr convert` is stopped with SIGTERM while the
 * converter is writing its temporary file, and killed with SIGKILL (whose leftover the next run removes).
 */
import { join } from "node:path";
import { assert, assertEquals, assertStringIncludes } from "./_assert.ts";
import { minilmDir, tempDir, testInstance } from "./_fixtures.ts";
import { instanceDir } from "../lib/llamacpp/instances.ts";
import { pidAlive } from "../lib/util/process.ts";

const TORCH_FLAGS = ["--torch-version", "2.13.0", "--find-links", "/opt/wheels"];

/** Child processes of a process (all its threads' children). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const t of Deno.readDirSync(`/proc/${pid}/task`)) {
      const text = Deno.readTextFileSync(`/proc/${pid}/task/${t.name}/children`).trim();
      if (text) out.push(...text.split(/\s+/).map(Number));
    }
  } catch { /* gone */ }
  return out;
}

function hidden(dir: string): string[] {
  try {
    return [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.startsWith("."));
  } catch {
    return [];
  }
}

function ggufs(dir: string): string[] {
  try {
    return [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.endsWith(".gguf"));
  } catch {
    return [];
  }
}

async function waitFor(what: string, cond: () => boolean, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Starts `llama-mgr convert`, waits until the converter's temporary output exists, then sends `signal`. */
async function convertAndInterrupt(
  args: string[],
  modelsDir: string,
  signal: Deno.Signal,
): Promise<{ code: number; stderr: string; python: number[]; sawPartial: string[] }> {
  const main = new URL("../cli/main.ts", import.meta.url).pathname;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", main, ...args],
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const output = child.output();
  let python: number[] = [];
  let sawPartial: string[] = [];
  try {
    await waitFor("the converter's temporary file", () => {
      sawPartial = hidden(modelsDir);
      return sawPartial.some((n) => n.includes(".partial-"));
    }, 180_000);
    python = childrenOf(child.pid);
    child.kill(signal);
  } catch (err) {
    child.kill("SIGKILL");
    await output;
    throw err;
  }
  const out = await output;
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr), python, sawPartial };
}

Deno.test({
  name: "an interrupted conversion leaves no output, no temporary file and no converter process",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const { paths: shared } = await testInstance();
    const tmp = await tempDir();
    const data = join(tmp.path, "data");
    const models = join(data, "models");
    await Deno.mkdir(join(data, "instances"), { recursive: true });
    await Deno.symlink(instanceDir(shared, "cpu"), join(data, "instances", "cpu"));
    const base = ["-d", data, "--config", join(tmp.path, "none.yaml"), "convert", await minilmDir()];
    try {
      await t.step("SIGTERM while the converter writes: exit 130, the reason, nothing left", async () => {
        const r = await convertAndInterrupt([...base, "--outtype", "f16", ...TORCH_FLAGS], models, "SIGTERM");
        assert(r.sawPartial.length > 0);
        assertEquals(r.code, 130, r.stderr);
        assertStringIncludes(r.stderr, "interrupted (SIGTERM)");
        assertEquals(ggufs(models), []);
        assertEquals(hidden(models), []);
        await waitFor("the converter to exit", () => r.python.every((p) => !pidAlive(p)), 10_000);
      });

      await t.step(
        "after SIGKILL the leftover temporary file is removed by the next conversion",
        async () => {
          const r = await convertAndInterrupt(
            [...base, "--outtype", "f16", ...TORCH_FLAGS],
            models,
            "SIGKILL",
          );
          assertEquals(r.code, 137);
          // The orphaned converter finishes its temporary file; nothing renames it into place.
          await waitFor("the orphaned converter to exit", () => r.python.every((p) => !pidAlive(p)), 120_000);
          assertEquals(ggufs(models), []);
          const left = hidden(models);
          assert(left.some((n) => n.includes(".partial-")), `leftover: ${left.join(", ")}`);
          const main = new URL("../cli/main.ts", import.meta.url).pathname;
          const again = await new Deno.Command(Deno.execPath(), {
            args: ["run", "-A", main, ...base, "--outtype", "f16", ...TORCH_FLAGS],
            env: { NO_COLOR: "1" },
            stdout: "piped",
            stderr: "piped",
          }).output();
          assertEquals(again.code, 0, new TextDecoder().decode(again.stderr));
          assertEquals(ggufs(models), ["all-minilm-l6-v2-f16.gguf"]);
          assertEquals(hidden(models), []);
        },
      );
    } finally {
      await tmp.cleanup();
    }
  },
});
