/**
 * imatrix against a real llama-imatrix: a tiny llama made here (random weights, SentencePiece tokenizer trained
 * offline), converted with the instance's converter, its importance matrix computed with good defaults, then
 * an imatrix-only type (IQ2_XXS) that fails without the matrix and works with it, and llama-server generating
 * from the result. The shared test build lacks llama-imatrix, so it is added to that build once (one object
 * and a link, seconds with the libraries already built).
 */
import { join } from "node:path";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./_assert.ts";
import { cli, tempDir, testInstance } from "./_fixtures.ts";
import { resolvePaths } from "../lib/config/paths.ts";
import { instanceDir, type InstanceRecord } from "../lib/llamacpp/instances.ts";
import { computeImatrix, imatrixPath } from "../lib/convert/imatrix.ts";
import { ensureVenv } from "../lib/python/venv.ts";
import { startServer, stopAllServers } from "../lib/server/mod.ts";
import { readGgufHeader } from "../lib/gguf/reader.ts";
import { exists } from "../lib/util/fs.ts";
import { run } from "../lib/util/run.ts";
import { UserError } from "../lib/util/errors.ts";
import { imatrixCommand } from "../cli/imatrix.ts";
import { parseFlags } from "../cli/args.ts";
import { createContext } from "../cli/command.ts";

/** The same torch choice as the other convert tests, so they share one environment without reinstalls. */
const TORCH_FLAGS = ["--torch-version", "2.13.0", "--find-links", "/opt/wheels"];
const TORCH = { torch: "cpu" as const, torch_version: "2.13.0", find_links: "/opt/wheels", offline: false };
const WORDS =
  ("the cat sat on a mat dog ran in park sun is hot we like tea llama model runs fast small big red " +
    "blue green sky sea tree house car").split(" ");

function calibration(lines: number, seed = 1): string {
  let x = seed;
  const rnd = () => (x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const out: string[] = [];
  for (let i = 0; i < lines; i++) {
    const words = Array.from({ length: 12 }, () => WORDS[Math.floor(rnd() * WORDS.length)]);
    out.push(words.join(" ") + ".");
  }
  return out.join("\n") + "\n";
}

/** The shared build with llama-imatrix added (built in its build folder; the release stays as installed). */
async function withImatrix(instance: InstanceRecord, sharedInstanceDir: string): Promise<InstanceRecord> {
  const buildDir = join(sharedInstanceDir, "build");
  if (!(await exists(join(buildDir, "bin", "llama-imatrix")))) {
    await run(["cmake", "--build", buildDir, "--target", "llama-imatrix"], { tailLines: 40 });
  }
  return { ...instance, binDir: join(buildDir, "bin") };
}

Deno.test({
  name: "imatrix computes an importance matrix that quantize uses for imatrix-only types",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const { paths: shared, instance: sharedInstance } = await testInstance();
    const tmp = await tempDir();
    const data = join(tmp.path, "data");
    const paths = resolvePaths({ dataDir: data, env: {} });
    await Deno.mkdir(paths.instancesDir, { recursive: true });
    await Deno.symlink(instanceDir(shared, "cpu"), join(paths.instancesDir, "cpu"));
    const base = ["-d", data, "--config", join(tmp.path, "none.yaml")];
    try {
      const instance = await withImatrix(sharedInstance, instanceDir(shared, "cpu"));
      let f16 = "";
      let matrix = "";
      await t.step("a tiny llama made here converts to f16", async () => {
        const env = await ensureVenv({
          venvDir: instanceDir(shared, "cpu") + "/venv",
          scriptsDir: sharedInstance.pythonDir!,
          python: TORCH,
        });
        const dir = join(tmp.path, "tiny-llama");
        await run([
          env.python,
          new URL("../scripts/python/make_tiny_llama.py", import.meta.url).pathname,
          dir,
        ]);
        const c = await cli([
          ...base,
          "convert",
          dir,
          "--name",
          "tiny-imx",
          "--outtype",
          "f16",
          ...TORCH_FLAGS,
        ]);
        assertEquals(c.code, 0, c.stderr);
        f16 = join(paths.modelsDir, "tiny-imx-f16.gguf");
        assert(await exists(f16), c.stdout);
      });

      await t.step(
        "calibration text too short for two chunks is refused before llama-imatrix runs, saying what it needs",
        async () => {
          const short = join(tmp.path, "short.txt");
          await Deno.writeTextFile(short, "the cat sat on a mat.\n");
          const err = await computeImatrix({ instance, paths, model: f16, data: short, ctx: 128 }).then(
            () => undefined,
            (e) => e,
          );
          assert(err instanceof UserError, String(err));
          assertStringIncludes(err.message, "too short");
          assertStringIncludes(err.message, "22 bytes");
          assertStringIncludes(err.message, "256 tokens");
          assertStringIncludes(err.hint ?? "", "smaller --ctx");
          assertEquals(await exists(imatrixPath(paths, f16)), false);
        },
      );

      await t.step(
        "text long enough in bytes but too few tokens fails in llama-imatrix with its reason and leaves no file",
        async () => {
          // About 400 bytes of words: past the byte check, but far fewer than 256 tokens.
          const few = join(tmp.path, "few.txt");
          await Deno.writeTextFile(few, calibration(8));
          assert((await Deno.stat(few)).size >= 256);
          const err = await computeImatrix({ instance, paths, model: f16, data: few, ctx: 128 }).then(
            () => undefined,
            (e) => e,
          );
          assert(err instanceof UserError, String(err));
          assertStringIncludes(err.message, "llama-imatrix failed");
          // llama-imatrix's own lines say it, unless llama.cpp lost them at exit (it can); the hint says it
          // either way.
          assertMatch(err.hint ?? "", /needs at least 256 tokens for 128-token chunks/);
          assertEquals(await exists(imatrixPath(paths, f16)), false);
          const leftovers = await Array.fromAsync(Deno.readDir(join(data, "imatrix")));
          assertEquals(leftovers.map((e) => e.name), []);
        },
      );

      await t.step(
        "the matrix goes to <data>/imatrix/<model>.imatrix.gguf with progress to the last chunk",
        async () => {
          const calib = join(tmp.path, "calibration.txt");
          await Deno.writeTextFile(calib, calibration(500));
          const seen: [number, number][] = [];
          const r = await computeImatrix({
            instance,
            paths,
            model: f16,
            data: calib,
            ctx: 128,
            onProgress: (n, total) => seen.push([n, total]),
          });
          matrix = r.output;
          assertEquals(matrix, join(data, "imatrix", "tiny-imx-f16.imatrix.gguf"));
          assert(r.chunks > 10, `chunks: ${r.chunks}`);
          assertEquals(seen.at(-1), [r.chunks, r.chunks]);
          const h = await readGgufHeader(matrix, { skipArraysOver: 0 });
          assertEquals(h.metadata["general.type"], "imatrix");
          const again = await computeImatrix({ instance, paths, model: f16, data: calib, ctx: 128 }).then(
            () => undefined,
            (e) => e,
          );
          assert(
            again instanceof UserError && /exists/.test(again.message) && /--force/.test(again.hint ?? ""),
          );
        },
      );

      await t.step(
        "the imatrix command on an instance without llama-imatrix says how to add it",
        async () => {
          // Tools built on first use are off here: the shared build must not change.
          await Deno.writeTextFile(join(tmp.path, "off.yaml"), "build:\n  on_demand: false\n");
          const argv = [
            "-d",
            data,
            "--config",
            join(tmp.path, "off.yaml"),
            "-m",
            f16,
            "-f",
            join(tmp.path, "x"),
          ];
          const a = parseFlags(argv, imatrixCommand.flags, "imatrix");
          await Deno.writeTextFile(join(tmp.path, "x"), calibration(10));
          const err = await Promise.resolve(imatrixCommand.run(createContext(a), a)).then(
            () => undefined,
            (e) => e,
          );
          assert(err instanceof UserError, String(err));
          assertStringIncludes(err.message, "instance 'cpu' has no llama-imatrix");
          assertStringIncludes(err.hint ?? "", "--targets");
          assertStringIncludes(err.hint ?? "", "llama-imatrix");
        },
      );

      await t.step(
        "IQ2_XXS without the matrix fails with llama-quantize's reason, and nothing is written",
        async () => {
          const r = await cli([...base, "quantize", f16, "IQ2_XXS"]);
          assertEquals(r.code, 1);
          assertStringIncludes(r.stderr, "requires an importance matrix");
          assertEquals(await exists(join(paths.modelsDir, "tiny-imx-IQ2_XXS.gguf")), false);
          const hidden = [...Deno.readDirSync(paths.modelsDir)].filter((e) => e.name.startsWith("."));
          assertEquals(hidden.map((e) => e.name), []);
        },
      );

      await t.step("with the matrix IQ2_XXS is written and llama-server generates from it", async () => {
        const r = await cli([...base, "quantize", f16, "IQ2_XXS", "--imatrix", matrix]);
        assertEquals(r.code, 0, r.stderr);
        const out = join(paths.modelsDir, "tiny-imx-IQ2_XXS.gguf");
        const h = await readGgufHeader(out, { skipArraysOver: 0 });
        assertEquals(h.metadata["general.file_type"], 19);
        assertEquals(h.metadata["quantize.imatrix.file"], matrix);
        const s = await startServer(paths, { name: "tiny-imx", modelPath: out, instance, ctx: 256 });
        const res = await fetch(`${s.url}/completion`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ prompt: "the cat", n_predict: 8, temperature: 0 }),
        });
        assertEquals(res.status, 200);
        const body = await res.json();
        assertEquals(body.tokens_predicted, 8);
      });
    } finally {
      await stopAllServers(paths);
      await tmp.cleanup();
    }
  },
});
