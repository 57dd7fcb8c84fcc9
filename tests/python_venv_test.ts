/**
 * The uv environment for llama.cpp's conversion scripts, made for real from the shared instance's scripts with
 * torch from the machine's local wheel: created, reused as a fast no-op, repaired when broken, and a clear
 * error when torch cannot be found.
 */
import { join } from "node:path";
import { assert, assertEquals, assertRejects, assertStringIncludes } from "./_assert.ts";
import { tempDir, testInstance } from "./_fixtures.ts";
import type { PythonOptions } from "../lib/config/schema.ts";
import { ensureVenv, type VenvOptions } from "../lib/python/venv.ts";
import { UserError } from "../lib/util/errors.ts";
import { run } from "../lib/util/run.ts";

const LOCAL_TORCH: PythonOptions = {
  torch: "cpu",
  torch_version: "2.13.0",
  find_links: "/opt/wheels",
  offline: true,
};

async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; seconds: number }> {
  const t0 = performance.now();
  const value = await fn();
  return { value, seconds: (performance.now() - t0) / 1000 };
}

Deno.test({
  name: "the conversion scripts' Python environment is made, reused, repaired, and explains a missing torch",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const { instance } = await testInstance();
    const scriptsDir = instance.pythonDir!;
    assert(scriptsDir, "the shared instance records its Python scripts folder");
    const tmp = await tempDir("llama-mgr-venv-test-");
    const venvDir = join(tmp.path, "venv");
    const logFile = join(tmp.path, "uv.log");
    const opts = { venvDir, scriptsDir, python: LOCAL_TORCH, logFile, quiet: true };
    try {
      let py = "";
      await t.step(
        "a first call creates it offline with torch from the local wheel, and no CUDA",
        async () => {
          const { value: env, seconds } = await timed(() => ensureVenv(opts));
          console.log(`venv cold: ${seconds.toFixed(1)}s`);
          py = env.python;
          assertEquals(env.upToDate, false);
          assertEquals(env.torch, "2.13.0+cpu");
          const list = (await run(["uv", "pip", "list", "--python", py])).stdout;
          assert(!/nvidia|triton/i.test(list), `no CUDA packages expected:\n${list}`);
          assertStringIncludes(list, "transformers");
          // The converter itself starts in it (imports torch, transformers, gguf from the scripts dir).
          const help = await run([py, join(scriptsDir, "convert_hf_to_gguf.py"), "--help"]);
          assertStringIncludes(help.stdout, "--outtype");
          assertStringIncludes(await Deno.readTextFile(logFile), "torch");
        },
      );

      await t.step("an unchanged second call does nothing (uv is not run)", async () => {
        const log = await Deno.readTextFile(logFile);
        const { value: env, seconds } = await timed(() => ensureVenv(opts));
        console.log(`venv warm (no-op): ${seconds.toFixed(2)}s`);
        assertEquals(env.upToDate, true);
        assertEquals(await Deno.readTextFile(logFile), log, "uv was run");
        assertEquals(env.torch, "2.13.0+cpu");
      });

      await t.step("a package removed from the environment is put back", async () => {
        await run(["uv", "pip", "uninstall", "--python", py, "transformers"]);
        const { value: env, seconds } = await timed(() => ensureVenv(opts));
        console.log(`venv repair (missing package): ${seconds.toFixed(1)}s`);
        assertEquals(env.upToDate, false);
        const r = await run([py, "-c", "import transformers; print(transformers.__version__)"]);
        assert(r.stdout.trim().length > 0);
      });

      await t.step("an environment whose interpreter is gone is recreated", async () => {
        for await (const e of Deno.readDir(join(venvDir, "bin"))) {
          if (e.name.startsWith("python")) await Deno.remove(join(venvDir, "bin", e.name));
        }
        const { value: env, seconds } = await timed(() => ensureVenv(opts));
        console.log(`venv repair (no interpreter): ${seconds.toFixed(1)}s`);
        assertEquals(env.upToDate, false);
        assertEquals(env.torch, "2.13.0+cpu");
        const r = await run([env.python, "-c", "import torch, numpy, gguf; print(torch.__version__)"]);
        assertEquals(r.stdout.trim(), "2.13.0+cpu");
      });

      await t.step(
        "a torch that cannot be found is a clear error naming --find-links, --index-url and --torch",
        async () => {
          const err = await assertRejects(
            () =>
              ensureVenv({
                ...opts,
                venvDir: join(tmp.path, "venv-missing-torch"),
                python: { ...LOCAL_TORCH, torch_version: "9.9.9" },
              }),
            UserError,
          );
          assertStringIncludes(err.message, "torch");
          const hint = (err as UserError).hint ?? "";
          for (const flag of ["--find-links", "--index-url", "--torch-version", "--torch system"]) {
            assertStringIncludes(hint, flag);
          }
        },
      );

      await t.step("an unreachable private index is named in the error, with what to check", async () => {
        const err = await assertRejects(
          () =>
            ensureVenv({
              ...opts,
              venvDir: join(tmp.path, "venv-bad-index"),
              python: { torch: "auto", index_url: "http://127.0.0.1:9/simple", offline: false },
            }),
          UserError,
        );
        assertStringIncludes(err.message, "could not reach the package index http://127.0.0.1:9");
        assertStringIncludes((err as UserError).hint ?? "", "--index-url");
      });

      await t.step("torch 'system' uses the interpreter's own torch, or says it has none", async () => {
        const interpreter = (await run(["python3", "-c", "import sys; print(sys.executable)"])).stdout.trim();
        const has = await run([interpreter, "-c", "import torch; print(torch.__version__)"], {
          check: false,
        });
        const system: VenvOptions = {
          ...opts,
          venvDir: join(tmp.path, "venv-system"),
          python: { torch: "system", python: interpreter, offline: true },
        };
        if (has.code === 0) {
          const env = await ensureVenv(system);
          assertEquals(env.torch, has.stdout.trim());
        } else {
          const err = await assertRejects(() => ensureVenv(system), UserError);
          assertStringIncludes(err.message, `--torch system: the interpreter ${interpreter} has no torch`);
          assertStringIncludes((err as UserError).hint ?? "", "--find-links");
        }
        const cfg = await Deno.readTextFile(join(tmp.path, "venv-system", "pyvenv.cfg"));
        assertStringIncludes(cfg, "include-system-site-packages = true");
      });

      await t.step(
        "two callers at once (torch 'skip', offline): one makes it, the other waits and finds it made",
        async () => {
          const skip: VenvOptions = {
            ...opts,
            venvDir: join(tmp.path, "venv-skip"),
            python: { torch: "skip", offline: true },
          };
          const both = await Promise.all([ensureVenv(skip), ensureVenv(skip)]);
          assertEquals(both.map((e) => e.upToDate).sort(), [false, true]);
          assertEquals(both[0].torch, undefined);
          const r = await run([both[0].python, "-c", "import torch"], { check: false });
          assert(r.code !== 0, "torch is not installed with --torch skip");
          await run([both[0].python, "-c", "import numpy, gguf, sentencepiece"]);
        },
      );
    } finally {
      await tmp.cleanup();
    }
  },
});
