/**
 * A real CUDA build without a GPU (opt-in: LLAMA_MGR_SLOW=1, it compiles ggml-cuda for one architecture):
 * the bundled release built with the installed nvcc for compute capability 8.0, cuBLAS taken from PyPI's
 * `nvidia-cublas` wheel, and the resulting llama-server started on this machine, which has no NVIDIA driver:
 * it serves on the CPU and says that no CUDA device was found. The build is kept in the shared fixtures
 * (instance `cuda`) and reused.
 *
 * @module
 */
import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { join } from "node:path";
import { bundlePath, fixturesDir, smolModelPath, tempDir, testPaths } from "./_fixtures.ts";
import { post } from "./_daemon.ts";
import { installInstance } from "../lib/llamacpp/install.ts";
import { type InstanceRecord, readInstance } from "../lib/llamacpp/instances.ts";
import { listDeviceLines } from "../lib/llamacpp/devices.ts";
import { resolvePaths } from "../lib/config/paths.ts";
import { startServer, stopServer } from "../lib/server/supervisor.ts";
import { exists } from "../lib/util/fs.ts";
import { run, which } from "../lib/util/run.ts";
import { createProgress } from "../lib/util/progress.ts";

const SLOW = Deno.env.get("LLAMA_MGR_SLOW") === "1";
const skip = !SLOW
  ? "set LLAMA_MGR_SLOW=1 to compile the CUDA instance (hours on 2 shared cores)"
  : !which("nvcc")
  ? "no nvcc on PATH"
  : which("nvidia-smi")
  ? "this machine has an NVIDIA driver: scripts/gpu_check.sh is the check for it"
  : undefined;
if (skip) console.log(`llamacpp_cuda_test skipped: ${skip}`);

/** PyPI's nvidia-cublas unpacked under the fixtures cache; returns its libcublas. */
async function cublasWheel(): Promise<string> {
  const dir = join(fixturesDir(), "nvidia-cublas");
  const lib = join(dir, "nvidia", "cu13", "lib", "libcublas.so.13");
  if (await exists(lib)) return lib;
  const tmp = await Deno.makeTempDir({ dir: fixturesDir(), prefix: ".tmp-cublas-" });
  try {
    await run(["python3", "-m", "pip", "download", "--no-deps", "-d", tmp, "nvidia-cublas"]);
    const whl = [...Deno.readDirSync(tmp)].find((e) => e.name.endsWith(".whl"))!.name;
    await run(["python3", "-m", "zipfile", "-e", join(tmp, whl), join(tmp, "x")]);
    await Deno.rename(join(tmp, "x"), dir);
  } finally {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
  return lib;
}

async function cudaInstance(): Promise<InstanceRecord> {
  const paths = testPaths();
  const existing = await readInstance(paths, "cuda");
  if (existing && await exists(join(existing.binDir, "llama-server"))) return existing;
  const lib = await cublasWheel();
  const r = await installInstance(paths, {
    name: "cuda",
    arch: "cuda",
    gpuTargets: ["8.0"],
    repoUrl: await bundlePath(),
    targets: ["llama-server"],
    cmakeArgs: [`-DCUDA_cublas_LIBRARY=${lib}`],
    parallel: 2,
    ignorePython: true,
    wait: true,
    onInfo: (t) => console.error(t),
    progress: (step) => createProgress(step, { quiet: true }),
  });
  console.log(`built the CUDA instance in ${r.record!.buildSeconds}s`);
  return r.record!;
}

Deno.test({
  name: "a CUDA build starts without a GPU driver and serves on the CPU",
  ignore: skip !== undefined,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const inst = await cudaInstance();
    console.log(`  build took ${inst.buildSeconds}s (${inst.version})`);
    assert(
      await exists(join(inst.binDir, "libggml-cuda.so")),
      "the CUDA backend is a module beside the server",
    );
    const devices = await listDeviceLines(inst.binDir);
    assertEquals(devices.error, undefined);
    assertEquals(devices.lines.filter((l) => l.startsWith("CUDA")), []);

    const tmp = await tempDir();
    const paths = resolvePaths({ dataDir: tmp.path, env: {} });
    try {
      const s = await startServer(paths, {
        name: "cuda",
        modelPath: await smolModelPath(),
        instance: inst,
        ctx: 512,
      });
      try {
        const res = await post(`${s.url}/completion`, { prompt: "Hello", n_predict: 8, temperature: 0 });
        assertEquals(res.status, 200);
        assert((await res.json()).content.length > 0);
      } finally {
        await stopServer(paths, "cuda");
      }
      const log = await Deno.readTextFile(s.logFile);
      console.log(log.split("\n").filter((l) => /cuda/i.test(l)).slice(0, 3).join("\n"));
      assertMatch(log, /cuda/i);
    } finally {
      await tmp.cleanup();
    }
  },
});
