/**
 * Build options from the config: a profile per backend (`build.profiles.<arch>`) and an entry per instance
 * (`build.instances.<name>`), validated strictly, and how they combine with the flags and with what an
 * instance was built with before. (The releases test runs a real build with a profile's cmake args.)
 */
import { assertEquals, assertStringIncludes, assertThrows } from "./_assert.ts";
import { parseConfig } from "../lib/config/load.ts";
import { buildSettings } from "../lib/llamacpp/install.ts";
import type { InstanceRecord } from "../lib/llamacpp/instances.ts";
import { UserError } from "../lib/util/errors.ts";

const noDetection = () => Promise.reject(new Error("detection ran although the backend was known"));

const build = parseConfig({
  build: {
    cmake_args: ["-DGGML_NATIVE=ON"],
    profiles: {
      cuda: { gpu_targets: ["8.6"], cmake_args: ["-DGGML_CUDA_F16=ON"] },
      rocm: { gpu_targets: ["gfx1100"] },
    },
    instances: {
      "cuda-big": {
        arch: "cuda",
        gpu_targets: ["8.9", "12.0"],
        cmake_args: ["-DGGML_CUDA_FA_ALL_QUANTS=ON"],
      },
      tools: { arch: "cpu", targets: ["llama-server", "llama-bench"] },
    },
  },
}).build;

Deno.test("build profiles and instance entries are validated with the key path and the reason", async (t) => {
  const fails = (value: unknown, ...parts: string[]) => {
    const err = assertThrows(() => parseConfig(value, "config.yaml"), UserError);
    for (const p of parts) assertStringIncludes(err.message, p);
  };
  await t.step("defaults: one release kept, tools on demand, no profiles", () => {
    const b = parseConfig({}).build;
    assertEquals([b.keep_releases, b.on_demand, b.profiles, b.instances], [1, true, {}, {}]);
  });
  await t.step("a profile for an unknown backend", () => {
    fails({ build: { profiles: { gpu: {} } } }, "build.profiles.gpu: unknown key");
  });
  await t.step("GPU targets that do not fit the backend", () => {
    fails(
      { build: { profiles: { cuda: { gpu_targets: ["8.x"] } } } },
      "build.profiles.cuda.gpu_targets",
      "8.x",
    );
    fails({ build: { profiles: { vulkan: { gpu_targets: ["x"] } } } }, "build.profiles.vulkan.gpu_targets");
    fails(
      { build: { instances: { r: { arch: "rocm", gpu_targets: ["sm_86"] } } } },
      "build.instances.r.gpu_targets",
      "invalid ROCm GPU target 'sm_86'",
    );
  });
  await t.step("cmake args that are not cmake options, and unknown keys", () => {
    fails(
      { build: { profiles: { cpu: { cmake_args: ["GGML_AVX=ON"] } } } },
      "build.profiles.cpu.cmake_args.0",
    );
    fails({ build: { instances: { x: { cmakeargs: [] } } } }, "build.instances.x.cmakeargs: unknown key");
    fails({ build: { instances: { x: { arch: "tpu" } } } }, "build.instances.x.arch");
    fails({ build: { keep_releases: -1 } }, "build.keep_releases");
  });
});

Deno.test("build settings: flags, then the instance's entry, then the backend profile, then the record", async (t) => {
  await t.step(
    "a backend profile gives GPU targets and adds its cmake args after the global ones",
    async () => {
      const s = await buildSettings("cuda", { arch: "cuda", build }, undefined, { detect: noDetection });
      assertEquals(s.arch, "cuda");
      assertEquals(s.gpuTargets, ["8.6"]);
      assertEquals(s.cmakeArgs, ["-DGGML_NATIVE=ON", "-DGGML_CUDA_F16=ON"]);
      assertEquals(s.targets, ["llama-server"]);
    },
  );
  await t.step("an instance's entry picks the backend and wins over the profile's targets", async () => {
    const s = await buildSettings("cuda-big", { build }, undefined, { detect: noDetection });
    assertEquals(s.arch, "cuda");
    assertEquals(s.gpuTargets, ["8.9", "12.0"]);
    assertEquals(s.cmakeArgs, ["-DGGML_NATIVE=ON", "-DGGML_CUDA_F16=ON", "-DGGML_CUDA_FA_ALL_QUANTS=ON"]);
    const tools = await buildSettings("tools", { build }, undefined, { detect: noDetection });
    assertEquals(tools.targets, ["llama-server", "llama-bench"]);
  });
  await t.step("flags win, and the flag's cmake args come last", async () => {
    const s = await buildSettings(
      "cuda-big",
      { gpuTargets: ["9.0"], cmakeArgs: ["-DGGML_CUDA_GRAPHS=OFF"], targets: ["llama-server"], build },
      undefined,
      { detect: noDetection },
    );
    assertEquals(s.gpuTargets, ["9.0"]);
    assertEquals(s.cmakeArgs.at(-1), "-DGGML_CUDA_GRAPHS=OFF");
    assertEquals(s.flagCmakeArgs, ["-DGGML_CUDA_GRAPHS=OFF"]);
  });
  await t.step(
    "an update without flags keeps the record's flags, and takes the config as it is now",
    async () => {
      const existing = {
        name: "rocm",
        arch: "rocm",
        gpuTargets: ["gfx1030"],
        cmakeArgs: ["-DGGML_NATIVE=ON", "-DGGML_HIP_ROCWMMA_FATTN=ON"],
        flagCmakeArgs: ["-DGGML_HIP_ROCWMMA_FATTN=ON"],
        targets: ["llama-server", "llama-quantize"],
      } as InstanceRecord;
      const s = await buildSettings("rocm", { build }, existing, { detect: noDetection });
      assertEquals(s.arch, "rocm");
      // The profile's targets win over the record's (the config was edited since).
      assertEquals(s.gpuTargets, ["gfx1100"]);
      assertEquals(s.cmakeArgs, ["-DGGML_NATIVE=ON", "-DGGML_HIP_ROCWMMA_FATTN=ON"]);
      assertEquals(s.targets, ["llama-server", "llama-quantize"]);
      // Without a profile, the record's GPU targets stay.
      const bare = parseConfig({}).build;
      const kept = await buildSettings("rocm", { build: bare }, existing, { detect: noDetection });
      assertEquals(kept.gpuTargets, ["gfx1030"]);
      assertEquals(kept.cmakeArgs, ["-DGGML_HIP_ROCWMMA_FATTN=ON"]);
    },
  );
});
