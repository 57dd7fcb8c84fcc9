import { assertEquals, assertThrows } from "./_assert.ts";
import {
  archCmakeArgs,
  configureCommand,
  normalizeCudaArch,
  normalizeRocmTarget,
  splitCmakeArgs,
  UNITY_BATCH_SIZE,
  UNITY_SKIP,
  UNITY_TARGETS,
  unityIncludePath,
  unityIncludeText,
  usesUnity,
} from "../lib/llamacpp/cmake.ts";
import {
  ninjaProgress,
  parseNinjaProgress,
  resolveTargets,
  unusedCmakeVariables,
} from "../lib/llamacpp/build.ts";
import { parseComputeCaps, parseGfxTargets } from "../lib/llamacpp/detect.ts";
import { UserError } from "../lib/util/errors.ts";
import { parseConfig } from "../lib/config/load.ts";
import { buildSettings } from "../lib/llamacpp/install.ts";
import type { InstanceRecord } from "../lib/llamacpp/instances.ts";

Deno.test("build flags map to cmake options for every backend", async (t) => {
  await t.step("cpu adds nothing and refuses GPU targets", () => {
    assertEquals(archCmakeArgs({ arch: "cpu" }), []);
    assertThrows(() => archCmakeArgs({ arch: "cpu", gpuTargets: ["86"] }), UserError, "does not apply");
  });
  await t.step("cuda turns on GGML_CUDA and lists architectures in CMake's form", () => {
    assertEquals(archCmakeArgs({ arch: "cuda" }), ["-DGGML_CUDA=ON"]);
    assertEquals(archCmakeArgs({ arch: "cuda", gpuTargets: ["8.6", "sm_89", "86", "12.0"] }), [
      "-DGGML_CUDA=ON",
      "-DCMAKE_CUDA_ARCHITECTURES=86;89;120",
    ]);
    assertEquals(
      archCmakeArgs({ arch: "cuda", gpuTargets: ["native"] })[1],
      "-DCMAKE_CUDA_ARCHITECTURES=native",
    );
  });
  await t.step("cuda architecture spellings normalise, nonsense is refused", () => {
    assertEquals(normalizeCudaArch("compute_75"), "75");
    assertEquals(normalizeCudaArch("9.0a"), "90a");
    assertEquals(normalizeCudaArch("all-major"), "all-major");
    assertThrows(() => normalizeCudaArch("ampere"), UserError, "invalid CUDA architecture");
    assertThrows(() => normalizeCudaArch("8"), UserError);
  });
  await t.step("rocm turns on GGML_HIP with gfx targets under both variable names", () => {
    assertEquals(archCmakeArgs({ arch: "rocm", gpuTargets: ["gfx1100", "GFX1030", "gfx1100"] }), [
      "-DGGML_HIP=ON",
      "-DGPU_TARGETS=gfx1100;gfx1030",
      "-DAMDGPU_TARGETS=gfx1100;gfx1030",
    ]);
    assertEquals(normalizeRocmTarget("gfx90a:xnack+"), "gfx90a:xnack+");
    assertThrows(() => normalizeRocmTarget("rdna3"), UserError, "invalid ROCm GPU target");
  });
  await t.step("vulkan and metal take no targets", () => {
    assertEquals(archCmakeArgs({ arch: "vulkan" }), ["-DGGML_VULKAN=ON"]);
    assertEquals(archCmakeArgs({ arch: "metal" }), ["-DGGML_METAL=ON", "-DGGML_METAL_EMBED_LIBRARY=ON"]);
    assertThrows(() => archCmakeArgs({ arch: "vulkan", gpuTargets: ["gfx1100"] }), UserError);
  });
  await t.step("sycl uses the oneAPI compilers and one vendor target", () => {
    assertEquals(archCmakeArgs({ arch: "sycl", gpuTargets: ["nvidia"] }), [
      "-DGGML_SYCL=ON",
      "-DCMAKE_C_COMPILER=icx",
      "-DCMAKE_CXX_COMPILER=icpx",
      "-DGGML_SYCL_TARGET=NVIDIA",
    ]);
    assertThrows(
      () => archCmakeArgs({ arch: "sycl", gpuTargets: ["arc"] }),
      UserError,
      "invalid SYCL target",
    );
  });
  await t.step("an unknown backend is refused", () => {
    // deno-lint-ignore no-explicit-any
    assertThrows(() => archCmakeArgs({ arch: "opencl" as any }), UserError, "unknown --arch");
  });
});

Deno.test("the configure command always has RPC, Ninja, Release and static libs, user args last", () => {
  const cmd = configureCommand("/s", "/b", {
    arch: "rocm",
    gpuTargets: ["gfx1100"],
    cmakeArgs: ["-DGGML_HIP_ROCWMMA_FATTN=ON"],
    ccache: true,
  });
  assertEquals(cmd.slice(0, 5), ["cmake", "-S", "/s", "-B", "/b"]);
  for (
    const opt of [
      "-DGGML_RPC=ON",
      "-DCMAKE_BUILD_TYPE=Release",
      "-DBUILD_SHARED_LIBS=OFF",
      "-DCMAKE_CXX_COMPILER_LAUNCHER=ccache",
      "-DGGML_HIP=ON",
    ]
  ) {
    assertEquals(cmd.includes(opt), true, opt);
  }
  assertEquals(cmd[cmd.indexOf("-G") + 1], "Ninja");
  assertEquals(cmd.at(-1), "-DGGML_HIP_ROCWMMA_FATTN=ON");
  assertEquals(configureCommand("/s", "/b", { arch: "cpu" }).some((a) => a.includes("ccache")), false);
});

Deno.test("--cmake-args splits like a shell and accepts only cmake options", () => {
  assertEquals(splitCmakeArgs(`-DA=ON  "-DCMAKE_CXX_FLAGS=-O3 -g" -DB='x y'`), [
    "-DA=ON",
    "-DCMAKE_CXX_FLAGS=-O3 -g",
    "-DB=x y",
  ]);
  assertEquals(splitCmakeArgs(""), []);
  assertThrows(() => splitCmakeArgs("-DA=ON rm -rf"), UserError, "'rm' is not a cmake option");
  assertThrows(() => splitCmakeArgs(`-DA="x`), UserError, "unclosed");
});

Deno.test("build output is read for progress, unused options and targets", async (t) => {
  await t.step("ninja status lines give n of N", () => {
    assertEquals(parseNinjaProgress("[12/219] Building CXX object src/llama.cpp.o")?.n, 12);
    assertEquals(parseNinjaProgress("[12/219] Building CXX object src/llama.cpp.o")?.total, 219);
    assertEquals(parseNinjaProgress("-- Configuring done"), undefined);
  });
  await t.step("a sub-build's own ninja lines do not move the main build's bar", () => {
    // As a Vulkan build prints them: the shader generator is an ExternalProject with a ninja of its own.
    const lines = [
      "[0/2] Re-checking globbed directories...",
      "[47/528] Linking CXX static library tools/ui/libllama-ui.a",
      "[48/528] Performing build step for 'vulkan-shaders-gen'",
      "[1/2] Building CXX object CMakeFiles/vulkan-shaders-gen.dir/vulkan-shaders-gen.cpp.o",
      "[2/2] Linking CXX executable vulkan-shaders-gen",
      "[49/528] Performing install step for 'vulkan-shaders-gen'",
      "[52/528] Generate vulkan shaders for acc.comp",
      "[53/526] Generate vulkan shaders for add1.comp",
    ];
    const progress = ninjaProgress();
    const seen = lines.map(progress).filter((p) => p !== undefined).map((p) => `${p.n}/${p.total}`);
    assertEquals(seen, ["0/2", "47/528", "48/528", "49/528", "52/528", "53/526"]);
  });
  await t.step("cmake's unused-variable warning is found", () => {
    const out =
      "CMake Warning:\n  Manually-specified variables were not used by the project:\n\n    LLAMA_FOO\n    GGML_BAR\n\n\n-- Build files";
    assertEquals(unusedCmakeVariables(out), ["LLAMA_FOO", "GGML_BAR"]);
    assertEquals(unusedCmakeVariables("-- Generating done"), []);
  });
  await t.step("target names resolve across llama.cpp versions", () => {
    assertEquals(
      resolveTargets(["rpc-server", "llama-server"], new Set(["ggml-rpc-server", "llama-server"])),
      [
        "ggml-rpc-server",
        "llama-server",
      ],
    );
    assertThrows(
      () => resolveTargets(["llama-nope"], new Set(["llama-server"])),
      UserError,
      "no build target 'llama-nope'",
    );
  });
  await t.step("GPU detection output is parsed", () => {
    assertEquals(parseComputeCaps("8.6\n8.6\n12.0\n"), ["8.6", "12.0"]);
    assertEquals(parseGfxTargets("  Name:  gfx000\n  Name: gfx1100\n gfx1030\ngfx1100"), [
      "gfx1100",
      "gfx1030",
    ]);
  });
});

Deno.test("unity builds: one cmake include for the libraries llama-server links, and a way out", async (t) => {
  await t.step("asked for, the configure command includes llama-mgr's file from the build tree", () => {
    const cmd = configureCommand("/s", "/b", { arch: "cpu", unity: true, cmakeArgs: ["-DGGML_NATIVE=OFF"] });
    assertEquals(cmd.filter((a) => a.startsWith("-DCMAKE_PROJECT_INCLUDE=")), [
      `-DCMAKE_PROJECT_INCLUDE=${unityIncludePath("/b")}`,
    ]);
    assertEquals(unityIncludePath("/b"), "/b/llama-mgr-unity.cmake");
    // The user's args still come last, after it.
    assertEquals(cmd.at(-1), "-DGGML_NATIVE=OFF");
  });
  await t.step("off, or overridden by the user's own cmake args, nothing is added", () => {
    for (
      const spec of [
        { arch: "cpu" as const },
        { arch: "cpu" as const, unity: false },
        { arch: "cpu" as const, unity: true, cmakeArgs: ["-DCMAKE_UNITY_BUILD=OFF"] },
        { arch: "cuda" as const, unity: true, cmakeArgs: ["-DCMAKE_PROJECT_INCLUDE:FILEPATH=/mine.cmake"] },
      ]
    ) {
      const cmd = configureCommand("/s", "/b", spec);
      assertEquals(cmd.some((a) => a.includes("llama-mgr-unity")), false, JSON.stringify(spec));
      assertEquals(usesUnity(spec), false, JSON.stringify(spec));
    }
    assertEquals(usesUnity({ arch: "vulkan", unity: true, cmakeArgs: ["-DGGML_VULKAN_DEBUG=ON"] }), true);
  });
  await t.step(
    "the include names the libraries around the model, never ggml's kernels, llama or a GPU backend",
    () => {
      const text = unityIncludeText();
      const items = text.match(/foreach\(t IN ITEMS ([^)]*)\)/)?.[1].split(" ") ?? [];
      assertEquals(items, UNITY_TARGETS);
      for (const t of ["llama-common", "mtmd", "server-context", "llama-server-impl"]) {
        assertEquals(items.includes(t), true, t);
      }
      for (const t of ["ggml-base", "ggml-cpu", "ggml-rpc", "llama", "ggml-cuda", "ggml-vulkan"]) {
        assertEquals(items.includes(t), false, t);
      }
      assertEquals(text.includes(`UNITY_BUILD_BATCH_SIZE ${UNITY_BATCH_SIZE}`), true);
      for (const [target, file] of UNITY_SKIP) {
        assertEquals(
          text.includes(`"\${CMAKE_SOURCE_DIR}/${file}" TARGET_DIRECTORY ${target}\n`),
          true,
          file,
        );
      }
      // Deferred to the end of the top directory, so every target exists; a CMake without DEFER skips it.
      assertEquals(
        text.includes('cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL llama_mgr_unity)'),
        true,
      );
      assertEquals(text.includes("VERSION_LESS 3.19"), true);
    },
  );
});

Deno.test("unity setting: on for a new instance, kept by an update, switched by a flag or the config", async () => {
  const on = parseConfig({}).build;
  const off = parseConfig({ build: { unity: false } }).build;
  const known = { arch: "cpu" as const };
  const unity = async (
    options: { unity?: boolean; build: typeof on; cmakeArgs?: string[] },
    existing?: Partial<InstanceRecord>,
  ) => (await buildSettings("cpu", { ...known, ...options }, existing as InstanceRecord)).unity;
  assertEquals(on.unity, true);
  assertEquals(await unity({ build: on }), true);
  assertEquals(await unity({ build: off }), false);
  // A record from before unity builds has no field: it was built file by file and an update keeps that.
  assertEquals(await unity({ build: on }, { arch: "cpu", cmakeArgs: [] }), false);
  assertEquals(await unity({ build: on }, { arch: "cpu", cmakeArgs: [], unity: true }), true);
  assertEquals(await unity({ build: off }, { arch: "cpu", cmakeArgs: [], unity: true }), false);
  assertEquals(await unity({ build: on, unity: true }, { arch: "cpu", cmakeArgs: [] }), true);
  assertEquals(await unity({ build: on, unity: false }), false);
  // The user's own unity settings in cmake args win over llama-mgr's.
  assertEquals(await unity({ build: on, cmakeArgs: ["-DCMAKE_UNITY_BUILD=ON"] }), false);
  assertThrows(() => parseConfig({ build: { unity: "yes" } }), UserError, "build.unity");
});
