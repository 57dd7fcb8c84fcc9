import { assert, assertEquals, assertRejects, assertStringIncludes, assertThrows } from "./_assert.ts";
import { join } from "node:path";
import {
  checkCudaTargets,
  cmakeDefine,
  cublasCmakeArgs,
  findCublas,
  findGlslc,
  glslcSupports,
  parseNvccArchList,
  sourceShaderNeeds,
  unguardedHeaderNeeds,
  unguardedShaderNeeds,
} from "../lib/llamacpp/toolchain.ts";
import {
  applyPatches,
  keepUnchangedTimes,
  patchedFiles,
  snapshotFiles,
  validatePatches,
} from "../lib/llamacpp/patches.ts";
import { BACKEND_DL_ARGS, configureCommand } from "../lib/llamacpp/cmake.ts";
import { UserError } from "../lib/util/errors.ts";
import { run, which } from "../lib/util/run.ts";
import { cli, tempDir, testPaths } from "./_fixtures.ts";
import { exists } from "../lib/util/fs.ts";

const NVCC13 = ["75", "80", "86", "87", "88", "89", "90", "100", "110", "103", "120", "121"];
const NVCC12_4 = ["50", "52", "53", "60", "61", "62", "70", "72", "75", "80", "86", "87", "89", "90"];

Deno.test("CUDA targets are checked against nvcc and the machine before a build", async (t) => {
  await t.step("a multi-architecture list that nvcc 13 supports passes, normalised", () => {
    assertEquals(checkCudaTargets(["8.6", "8.9", "12.0"], { supported: NVCC13, gpus: [] }), [
      "86",
      "89",
      "120",
    ]);
  });
  await t.step("every architecture the nvcc lacks is named, with what it supports", () => {
    const err = assertThrows(
      () => checkCudaTargets(["8.6", "8.9", "12.0"], { supported: NVCC12_4, gpus: [], nvccVersion: "12.4" }),
      UserError,
      "cannot compile for 12.0 (sm_120)",
    );
    assertStringIncludes(err.hint!, "it supports 5.0, 5.2");
    assertThrows(
      () => checkCudaTargets(["5.0", "6.1", "8.0"], { supported: NVCC13, gpus: [] }),
      UserError,
      "5.0 (sm_50), 6.1 (sm_61)",
    );
  });
  await t.step("an a/f suffix is checked by its base architecture", () => {
    assertEquals(checkCudaTargets(["120a"], { supported: NVCC13, gpus: [] }), ["120a"]);
  });
  await t.step("native without a GPU says to name the targets", () => {
    const err = assertThrows(() => checkCudaTargets(["native"], { supported: NVCC13, gpus: [] }), UserError);
    assertStringIncludes(err.message, "native needs a visible NVIDIA GPU");
    assertStringIncludes(err.hint!, "--gpu-targets 8.6,8.9,12.0");
    assertEquals(checkCudaTargets(["native"], { supported: NVCC13, gpus: ["8.6"] }), ["native"]);
  });
  await t.step("no targets and no GPU is an error too (cmake would pick native)", () => {
    assertThrows(() => checkCudaTargets([], { gpus: [] }), UserError, "without --gpu-targets");
  });
  await t.step("nvcc --list-gpu-arch output parses", async () => {
    assertEquals(parseNvccArchList("compute_75\ncompute_80\ncompute_120\n"), ["75", "80", "120"]);
    const nvcc = which("nvcc");
    if (!nvcc) return console.log("  (no nvcc here: the real list is not read)");
    const r = await run([nvcc, "--list-gpu-arch"]);
    assert(parseNvccArchList(r.stdout).includes("80"), r.stdout);
  });
});

Deno.test("CUDA builds load backends as modules, so a machine without the driver still runs them", () => {
  const cmd = configureCommand("s", "b", { arch: "cuda", gpuTargets: ["8.0"] });
  for (const a of BACKEND_DL_ARGS) assert(cmd.includes(a), a);
  assert(!cmd.includes("-DBUILD_SHARED_LIBS=OFF"));
  assert(configureCommand("s", "b", { arch: "vulkan" }).includes("-DBUILD_SHARED_LIBS=OFF"));
});

Deno.test("cuBLAS from a PyPI wheel is found and handed to cmake by path", async () => {
  const d = await tempDir();
  try {
    const wheel = join(d.path, "nvidia", "cu13");
    await Deno.mkdir(join(wheel, "include"), { recursive: true });
    await Deno.mkdir(join(wheel, "lib"), { recursive: true });
    await Deno.writeTextFile(join(wheel, "include", "cublas_v2.h"), "");
    await Deno.writeTextFile(join(wheel, "lib", "libcublas.so.13"), "");
    await Deno.writeTextFile(join(wheel, "lib", "libcublasLt.so.13"), "");
    const lib = join(wheel, "lib", "libcublas.so.13");
    const env = { PATH: "/nonexistent", CUDAToolkit_ROOT: join(d.path, "no-toolkit") };
    const loc = await findCublas([`-DCUDA_cublas_LIBRARY=${lib}`], env);
    assertEquals(loc, { includeDir: join(wheel, "include"), libDir: join(wheel, "lib"), wheel: true });
    const args = await cublasCmakeArgs(loc!, [
      `-DCUDA_cublas_LIBRARY=${lib}`,
      "-DCMAKE_CUDA_FLAGS=-lineinfo",
    ]);
    assertEquals(args, [
      `-DCUDA_cublasLt_LIBRARY=${join(wheel, "lib", "libcublasLt.so.13")}`,
      `-DCMAKE_CUDA_FLAGS=-I${join(wheel, "include")} -lineinfo`,
    ]);
    assertEquals(cmakeDefine(["-DA=1", "-DA:STRING=2"], "A"), "2");
  } finally {
    await d.cleanup();
  }
});

Deno.test("install and doctor say cuBLAS is missing before configuring", {
  ignore: !which("nvcc") || which("nvidia-smi") !== undefined,
}, async () => {
  if (await findCublas()) return console.log("  (cuBLAS is installed here: nothing to refuse)");
  const d = await tempDir();
  try {
    const r = await cli(["-d", d.path, "install", "-i", "cuda", "--arch", "cuda", "--gpu-targets", "8.0"]);
    assertEquals(r.code, 1, r.stderr);
    assertStringIncludes(r.stderr, "cuBLAS is missing");
    assertStringIncludes(r.stderr, "pip install nvidia-cublas");
    // Refused before the source was fetched.
    assertEquals(await exists(join(d.path, "instances", "cuda", "src")), false);
    const doc = await cli(["-d", d.path, "doctor", "--arch", "cuda"]);
    assertEquals(doc.code, 1);
    assertStringIncludes(doc.stdout, "MISSING  cuBLAS");
    const native = await cli([
      "-d",
      d.path,
      "install",
      "-i",
      "c2",
      "--arch",
      "cuda",
      "--gpu-targets",
      "native",
    ]);
    assertStringIncludes(native.stderr, "native needs a visible NVIDIA GPU");
  } finally {
    await d.cleanup();
  }
});

Deno.test("the Vulkan shader generator's unguarded cooperative-matrix shaders are found", async (t) => {
  const coop = "coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseA> m;";
  await t.step("from a flag outside the #if, only when the shader uses the matrix types", () => {
    const gen = [
      "#if defined(GGML_VULKAN_COOPMAT_GLSLC_SUPPORT)",
      '    string_to_spv("mm_cm1", "mm.comp", {{"A", "1"}}, true, true, false, false);',
      "#endif",
      '    string_to_spv("fa_decode_ph1", "fa1.comp", {}, true, true, false, false);',
      '    string_to_spv("plain", "plain.comp", {}, true, true, false, false);',
      '    string_to_spv("add_f32", "add.comp", {{"A_TYPE", "float"}});',
    ].join("\n");
    const shaders: Record<string, string> = {
      "mm.comp": coop,
      "fa1.comp": coop,
      "plain.comp": "void main(){}",
    };
    assertEquals(unguardedShaderNeeds(gen, (f) => shaders[f]), [
      { extension: "GL_KHR_cooperative_matrix", shaders: ["fa_decode_ph1"] },
    ]);
  });
  await t.step("the #else branch of the guard counts as unguarded", () => {
    const gen = [
      "#if defined(GGML_VULKAN_COOPMAT_GLSLC_SUPPORT)",
      "#else",
      '    string_to_spv("x", "x.comp", {}, true, true, false, false);',
      "#endif",
    ].join("\n");
    assertEquals(unguardedShaderNeeds(gen, () => coop).length, 1);
  });
  const src = join(testPaths().instancesDir, "cpu", "src");
  const gen = "ggml/src/ggml-vulkan/vulkan-shaders/vulkan-shaders-gen.cpp";
  const have = await exists(join(src, gen));
  await t.step({
    name:
      "the bundled release needs GL_KHR_cooperative_matrix and VK_EXT_layer_settings; the patches remove both",
    ignore: !have,
    fn: async () => {
      assertEquals(await sourceShaderNeeds(src), [
        { extension: "GL_KHR_cooperative_matrix", shaders: ["fa_decode_ph1", "fa_decode_ph2"] },
      ]);
      // A copy of the two files the patch touches, in a scratch git repo (the shared checkout stays as is).
      const d = await tempDir();
      try {
        const files = [gen, "ggml/src/ggml-vulkan/ggml-vulkan.cpp"];
        const dir = "ggml/src/ggml-vulkan/vulkan-shaders";
        for (const f of files) {
          await Deno.mkdir(join(d.path, f, ".."), { recursive: true });
          await Deno.copyFile(join(src, f), join(d.path, f));
        }
        for (const f of ["flash_attn_decode_phase_1.comp", "flash_attn_decode_phase_2.comp"]) {
          await Deno.copyFile(join(src, dir, f), join(d.path, dir, f));
        }
        await run(["git", "-C", d.path, "init", "-q"]);
        const cpp = join(d.path, "ggml/src/ggml-vulkan/ggml-vulkan.cpp");
        assertEquals(unguardedHeaderNeeds(await Deno.readTextFile(cpp)), ["VK_EXT_layer_settings"]);
        assertEquals(patchedFiles(["vulkan-no-coopmat", "vulkan-old-headers"]).sort(), files.slice().sort());
        await applyPatches(d.path, ["vulkan-no-coopmat", "vulkan-old-headers"]);
        assertEquals(await sourceShaderNeeds(d.path), []);
        assertEquals(unguardedHeaderNeeds(await Deno.readTextFile(cpp)), []);
        const patched = await Deno.readTextFile(join(d.path, gen));
        assertStringIncludes(
          patched,
          '#if defined(GGML_VULKAN_COOPMAT_GLSLC_SUPPORT)\n    string_to_spv("fa_decode_ph1"',
        );
        // Applying it twice does not fit the source any more, and says so.
        await assertRejects(() => applyPatches(d.path, ["vulkan-no-coopmat"]), UserError, "does not apply");
        // A checkout and re-patch that leaves a file's text as it was gives it back its time (ninja then
        // does not regenerate what depends on it); a file whose text changed keeps its new time.
        const genPath = join(d.path, gen);
        const past = new Date("2020-01-01T00:00:00Z");
        for (const f of [genPath, cpp]) await Deno.utime(f, past, past);
        const before = await snapshotFiles(d.path, [gen, files[1]]);
        await Deno.writeTextFile(genPath, await Deno.readTextFile(genPath));
        await Deno.writeTextFile(cpp, (await Deno.readTextFile(cpp)) + "\n");
        await keepUnchangedTimes(d.path, before);
        assertEquals((await Deno.stat(genPath)).mtime!.getTime(), past.getTime());
        assert((await Deno.stat(cpp)).mtime!.getTime() > past.getTime());
      } finally {
        await d.cleanup();
      }
    },
  });
  await t.step("Vulkan header needs: a use outside #if defined(VK_...) counts, one inside does not", () => {
    assertEquals(unguardedHeaderNeeds("std::vector<vk::LayerSettingEXT> s;"), ["VK_EXT_layer_settings"]);
    assertEquals(
      unguardedHeaderNeeds("#if defined(VK_EXT_layer_settings)\nvk::LayerSettingEXT s;\n#endif\n"),
      [],
    );
    assertEquals(
      unguardedHeaderNeeds("#if defined(VK_EXT_layer_settings)\n#else\nvk::LayerSettingEXT s;\n#endif"),
      [
        "VK_EXT_layer_settings",
      ],
    );
  });
  await t.step("unknown patch names are refused with the list", () => {
    assertThrows(() => validatePatches(["vulkan-fast"]), UserError, "unknown --patch 'vulkan-fast'");
    assertEquals(validatePatches(["vulkan-no-coopmat", "vulkan-no-coopmat"]), ["vulkan-no-coopmat"]);
  });
});

Deno.test("the shader compiler is probed for an extension by compiling a shader that requires it", {
  ignore: !findGlslc(),
}, async () => {
  const glslc = findGlslc()!;
  assertEquals((await glslcSupports(glslc, "GL_EXT_control_flow_attributes")).ok, true);
  const bogus = await glslcSupports(glslc, "GL_LLAMA_MGR_no_such_extension");
  assertEquals(bogus.ok, false);
  assertStringIncludes(bogus.message, "GL_LLAMA_MGR_no_such_extension");
  const coop = await glslcSupports(glslc, "GL_KHR_cooperative_matrix");
  console.log(
    `  ${glslc}: GL_KHR_cooperative_matrix ${coop.ok ? "supported" : `not supported (${coop.message})`}`,
  );
});

Deno.test("doctor --arch vulkan names the Vulkan packages and the shader extension", async () => {
  const d = await tempDir();
  try {
    const r = await cli(["-d", d.path, "doctor", "--arch", "vulkan", "--json"]);
    const out = JSON.parse(r.stdout);
    const names = out.checks.map((c: { name: string }) => c.name);
    for (const n of ["glslc", "libvulkan-dev", "spirv-headers", "vulkan driver"]) {
      assert(names.includes(n), n);
    }
    const glslc = findGlslc();
    if (glslc) {
      const coop = out.checks.find((c: { name: string }) =>
        c.name === "glslc with GL_KHR_cooperative_matrix"
      );
      assertEquals(coop.ok, (await glslcSupports(glslc, "GL_KHR_cooperative_matrix")).ok);
      if (!coop.ok) assertStringIncludes(coop.install.debian, "--patch vulkan-no-coopmat");
    }
    const lib = out.checks.find((c: { name: string }) => c.name === "libvulkan-dev");
    assertEquals(lib.ok, await exists("/usr/include/vulkan/vulkan.h"));
    if (lib.ok) {
      const core = await Deno.readTextFile("/usr/include/vulkan/vulkan_core.h");
      const hdr = out.checks.find((c: { name: string }) =>
        c.name === "libvulkan-dev with VK_EXT_layer_settings"
      );
      assertEquals(hdr.ok, core.includes("#define VK_EXT_layer_settings 1"));
      if (!hdr.ok) assertStringIncludes(hdr.install.debian, "--patch vulkan-old-headers");
    }
    assertEquals(
      r.code,
      out.checks.some((c: { ok: boolean; required: boolean }) => c.required && !c.ok) ? 1 : 0,
    );
  } finally {
    await d.cleanup();
  }
});
