/**
 * From llama-mgr's build flags to cmake's: one pure function per concern, so the mapping for every GPU
 * backend can be tested without a GPU.
 *
 * @module
 */
import { join } from "node:path";
import { type Arch, ARCHES } from "./instances.ts";
import { UserError } from "../util/errors.ts";

/** What to build. */
export interface BuildSpec {
  /** GPU backend. */
  arch: Arch;
  /** GPU targets: CUDA compute capabilities (`8.6`, `86`, `sm_86`, `native`, `all`), ROCm gfx targets
   * (`gfx1100`), SYCL targets (`INTEL`, `NVIDIA`, `AMD`). */
  gpuTargets?: string[];
  /** Extra cmake arguments, passed through last so they win. */
  cmakeArgs?: string[];
  /** Use ccache as the compiler launcher. */
  ccache?: boolean;
  /** Compile the libraries around the model as unity batches ({@linkcode UNITY_TARGETS}). */
  unity?: boolean;
}

/** Normalises a CUDA architecture: `8.6`, `86`, `sm_86`, `compute_86` all become `86`; `native`, `all`,
 * `all-major` pass through; a suffix like `90a` is kept. */
export function normalizeCudaArch(target: string): string {
  const t = target.trim().toLowerCase();
  if (["native", "all", "all-major"].includes(t)) return t;
  const m = t.match(/^(?:sm_|compute_)?(\d+)(?:\.(\d))?([af]?)$/);
  if (!m) {
    throw new UserError(`invalid CUDA architecture '${target}'`, {
      hint: "use a compute capability such as 8.6, 86 or sm_86 (see `nvidia-smi --query-gpu=compute_cap " +
        "--format=csv`), or native/all",
    });
  }
  const major = m[1];
  const minor = m[2];
  if (minor !== undefined) return `${major}${minor}${m[3]}`;
  if (major.length < 2) {
    throw new UserError(`invalid CUDA architecture '${target}'`, { hint: "write it as 8.6 or 86" });
  }
  return `${major}${m[3]}`;
}

/** Checks a ROCm target such as `gfx1100` or `gfx90a`. */
export function normalizeRocmTarget(target: string): string {
  const t = target.trim().toLowerCase();
  if (!/^gfx[0-9a-f]{3,4}(:[a-z+-]+)*$/.test(t)) {
    throw new UserError(`invalid ROCm GPU target '${target}'`, {
      hint: "use a gfx name such as gfx1100, gfx1030 or gfx90a (see `rocminfo | grep gfx` or `amdgpu-arch`)",
    });
  }
  return t;
}

const SYCL_TARGETS = ["INTEL", "NVIDIA", "AMD"];

/**
 * The cmake `-D` options for a backend and its GPU targets (without the common ones).
 *
 * @example
 * ```ts
 * archCmakeArgs({ arch: "cuda", gpuTargets: ["8.6", "89"] });
 * // ["-DGGML_CUDA=ON", "-DCMAKE_CUDA_ARCHITECTURES=86;89"]
 * ```
 */
export function archCmakeArgs(spec: BuildSpec): string[] {
  const targets = (spec.gpuTargets ?? []).map((t) => t.trim()).filter((t) => t.length > 0);
  const noTargets = () => {
    if (targets.length) {
      throw new UserError(`--gpu-targets does not apply to --arch ${spec.arch}`, {
        hint:
          "GPU targets are for cuda (compute capabilities), rocm (gfx targets) and sycl (INTEL/NVIDIA/AMD)",
      });
    }
  };
  switch (spec.arch) {
    case "cpu":
      noTargets();
      return [];
    case "cuda": {
      const out = ["-DGGML_CUDA=ON"];
      if (targets.length) {
        out.push(`-DCMAKE_CUDA_ARCHITECTURES=${[...new Set(targets.map(normalizeCudaArch))].join(";")}`);
      }
      return out;
    }
    case "rocm": {
      const out = ["-DGGML_HIP=ON"];
      if (targets.length) {
        const list = [...new Set(targets.map(normalizeRocmTarget))].join(";");
        // GPU_TARGETS is read by current llama.cpp; AMDGPU_TARGETS by releases before mid-2025.
        out.push(`-DGPU_TARGETS=${list}`, `-DAMDGPU_TARGETS=${list}`);
      }
      return out;
    }
    case "vulkan":
      noTargets();
      return ["-DGGML_VULKAN=ON"];
    case "metal":
      noTargets();
      return ["-DGGML_METAL=ON", "-DGGML_METAL_EMBED_LIBRARY=ON"];
    case "sycl": {
      const out = ["-DGGML_SYCL=ON", "-DCMAKE_C_COMPILER=icx", "-DCMAKE_CXX_COMPILER=icpx"];
      if (targets.length > 1) throw new UserError("--arch sycl takes one GPU target: INTEL, NVIDIA or AMD");
      if (targets.length) {
        const t = targets[0].toUpperCase();
        if (!SYCL_TARGETS.includes(t)) {
          throw new UserError(`invalid SYCL target '${targets[0]}'`, { hint: "use INTEL, NVIDIA or AMD" });
        }
        out.push(`-DGGML_SYCL_TARGET=${t}`);
      }
      return out;
    }
    default:
      throw new UserError(`unknown --arch '${spec.arch}'`, { hint: `use one of ${ARCHES.join(", ")}` });
  }
}

/** Environment a backend's build needs (e.g. HIP's clang). */
export function archEnv(
  arch: Arch,
  env: Record<string, string | undefined> = Deno.env.toObject(),
): Record<string, string> {
  if (arch === "rocm" && !env.HIPCXX) {
    const rocm = env.ROCM_PATH ?? env.HIP_PATH ?? "/opt/rocm";
    return { HIPCXX: `${rocm}/llvm/bin/clang`, HIP_PATH: rocm };
  }
  return {};
}

/**
 * CUDA builds load their backends as modules (llama.cpp's GGML_BACKEND_DL): a machine without the NVIDIA
 * driver then runs the same binaries on the CPU instead of failing to start for want of libcuda.so. The
 * libraries find each other through `$ORIGIN`, so a release folder can move; libraries linked from outside
 * the build (cuBLAS from a wheel) keep their folder in the rpath.
 *
 * @example
 * ```ts
 * configureCommand("src", "build", { arch: "cuda" }).includes(BACKEND_DL_ARGS[1]); // true
 * ```
 */
export const BACKEND_DL_ARGS: string[] = [
  "-DBUILD_SHARED_LIBS=ON",
  "-DGGML_BACKEND_DL=ON",
  // llama.cpp refuses GGML_NATIVE with backend modules; without it the CPU part targets AVX2/FMA/F16C.
  "-DGGML_NATIVE=OFF",
  "-DCMAKE_BUILD_WITH_INSTALL_RPATH=ON",
  "-DCMAKE_INSTALL_RPATH=$ORIGIN",
  "-DCMAKE_INSTALL_RPATH_USE_LINK_PATH=ON",
];

/**
 * The libraries compiled as unity batches (several sources per compilation, so the headers they share, such
 * as nlohmann/json, are parsed once per batch instead of once per file): the libraries around the model that
 * `llama-server` links, by their current and older target names. Not ggml's: its compute kernels stay
 * compiled as upstream compiles them, so inference speed cannot change (and ggml-cpu's x86 repack.cpp and
 * ggml-rpc clash in a batch: both define the same static helpers), nor the GPU backends. llama batches its
 * model graphs itself; {@linkcode unityIncludeText} adds its core sources to its batches.
 *
 * @example
 * ```ts
 * UNITY_TARGETS.includes("llama-common"); // true
 * ```
 */
export const UNITY_TARGETS: string[] = [
  "llama-common",
  "common",
  "mtmd",
  "server-context",
  "llama-server-impl",
  "llama-cli-impl",
  "vendor-hash",
];

/**
 * Sources of {@linkcode UNITY_TARGETS} that cannot share a batch, each with its target: common/json.cpp
 * declares `ordered_json` otherwise than the files before it, and mtmd-helper.cpp and mtmd-helper-gen.cpp
 * refuse (`#error`) to see mtmd's internal headers that their batch mates include.
 *
 * @example
 * ```ts
 * UNITY_SKIP.some(([, file]) => file === "common/json.cpp"); // true
 * ```
 */
export const UNITY_SKIP: [target: string, file: string][] = [
  ["llama-common", "common/json.cpp"],
  ["common", "common/json.cpp"],
  ["mtmd", "tools/mtmd/mtmd-helper.cpp"],
  ["mtmd", "tools/mtmd/mtmd-helper-gen.cpp"],
];

/** Sources per unity batch: 16 leaves llama-common's 51 files in 4 batches, so two cores still share work. */
export const UNITY_BATCH_SIZE = 16;

/**
 * Where a build tree's unity settings file goes (`CMAKE_PROJECT_INCLUDE`): inside the tree, which
 * llama-mgr owns, so a fresh tree gets it written anew.
 *
 * @example
 * ```ts
 * unityIncludePath("/data/instances/cpu/build"); // "/data/instances/cpu/build/llama-mgr-unity.cmake"
 * ```
 */
export function unityIncludePath(buildDir: string): string {
  return join(buildDir, "llama-mgr-unity.cmake");
}

/**
 * The CMake file that turns unity builds on for {@linkcode UNITY_TARGETS}, without touching llama.cpp's
 * sources: included after `project()` (`CMAKE_PROJECT_INCLUDE`), it defers until every directory is added,
 * then sets `UNITY_BUILD` on those targets that exist in this release. CMake older than 3.19 (no
 * `cmake_language(DEFER)`) builds as usual.
 *
 * @example
 * ```ts
 * unityIncludeText().includes("UNITY_BUILD ON"); // true
 * ```
 */
export function unityIncludeText(): string {
  return [
    "# Written by llama-mgr (build.unity in its config, --no-unity to turn off): unity batches for the",
    "# libraries around the model that llama-server links (not ggml's kernels), for less CPU time from a cold cache.",
    "include_guard(GLOBAL)",
    "if(CMAKE_VERSION VERSION_LESS 3.19)",
    "  return()",
    "endif()",
    "function(llama_mgr_unity)",
    `  foreach(t IN ITEMS ${UNITY_TARGETS.join(" ")})`,
    "    if(TARGET ${t})",
    "      get_target_property(aliased ${t} ALIASED_TARGET)",
    "      get_target_property(imported ${t} IMPORTED)",
    "      if(NOT aliased AND NOT imported)",
    `        set_target_properties(\${t} PROPERTIES UNITY_BUILD ON UNITY_BUILD_BATCH_SIZE ${UNITY_BATCH_SIZE})`,
    '        message(STATUS "llama-mgr: unity build of ${t}")',
    "      endif()",
    "    endif()",
    "  endforeach()",
    ...UNITY_SKIP.flatMap(([t, file]) => [
      `  if(TARGET ${t} AND EXISTS "\${CMAKE_SOURCE_DIR}/${file}")`,
      `    set_source_files_properties("\${CMAKE_SOURCE_DIR}/${file}" TARGET_DIRECTORY ${t}`,
      "      PROPERTIES SKIP_UNITY_BUILD_INCLUSION ON)",
      "  endif()",
    ]),
    "  # llama's CMakeLists batches its model graphs only; its core sources batch cleanly too (measured: 181",
    "  # CPU-s file by file, 133 in batches), and a batch that does not compile makes the install go file by file.",
    "  if(TARGET llama)",
    "    get_target_property(unity llama UNITY_BUILD)",
    "    get_target_property(srcs llama SOURCES)",
    "    get_target_property(dir llama SOURCE_DIR)",
    "    if(unity)",
    "      foreach(s IN LISTS srcs)",
    '        if(s MATCHES "\\\\.cpp$" AND NOT s MATCHES "\\\\$<")',
    '          if(NOT IS_ABSOLUTE "${s}")',
    '            set(s "${dir}/${s}")',
    "          endif()",
    '          set_source_files_properties("${s}" TARGET_DIRECTORY llama PROPERTIES SKIP_UNITY_BUILD_INCLUSION OFF)',
    "        endif()",
    "      endforeach()",
    '      message(STATUS "llama-mgr: unity build of llama\'s core")',
    "    endif()",
    "  endif()",
    "  # CMake 4 can name a batch's sources by relative path, so ccache answers in another data dir too.",
    `  foreach(t IN ITEMS ${UNITY_TARGETS.join(" ")} llama)`,
    "    if(TARGET ${t})",
    "      get_target_property(aliased ${t} ALIASED_TARGET)",
    "      get_target_property(unity ${t} UNITY_BUILD)",
    "      if(NOT aliased AND unity)",
    "        set_target_properties(${t} PROPERTIES UNITY_BUILD_RELOCATABLE ON)",
    "      endif()",
    "    endif()",
    "  endforeach()",
    "endfunction()",
    'cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL llama_mgr_unity)',
    "",
  ].join("\n");
}

/**
 * The cmake option that includes the unity settings file, unless the user's args set their own
 * `CMAKE_PROJECT_INCLUDE` (theirs wins; unity is then off) or a global `CMAKE_UNITY_BUILD`.
 *
 * @example
 * ```ts
 * unityArgs("/b", { arch: "cpu", unity: true }); // ["-DCMAKE_PROJECT_INCLUDE=/b/llama-mgr-unity.cmake"]
 * ```
 */
export function unityArgs(buildDir: string, spec: BuildSpec): string[] {
  return usesUnity(spec) ? [`-DCMAKE_PROJECT_INCLUDE=${unityIncludePath(buildDir)}`] : [];
}

/**
 * Whether a build of this spec gets llama-mgr's unity batches: asked for, and not overridden by the user's own
 * `CMAKE_PROJECT_INCLUDE` or `CMAKE_UNITY_BUILD` in the cmake args.
 *
 * @example
 * ```ts
 * usesUnity({ arch: "cpu", unity: true, cmakeArgs: ["-DCMAKE_UNITY_BUILD=OFF"] }); // false
 * ```
 */
export function usesUnity(spec: BuildSpec): boolean {
  return !!spec.unity &&
    !(spec.cmakeArgs ?? []).some((a) => /^-D\s*CMAKE_(PROJECT_INCLUDE|UNITY_BUILD)(:\w+)?=/.test(a));
}

/**
 * The full cmake configure command for a source and build dir.
 *
 * @example
 * ```ts
 * configureCommand("src", "build", { arch: "vulkan", ccache: true });
 * ```
 */
export function configureCommand(srcDir: string, buildDir: string, spec: BuildSpec): string[] {
  const common = [
    "-G",
    "Ninja",
    "-DCMAKE_BUILD_TYPE=Release",
    // Static binaries can move from the staging dir to their release dir without rpath trouble.
    "-DBUILD_SHARED_LIBS=OFF",
    "-DGGML_RPC=ON",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
  ];
  if (spec.arch === "cuda") common.splice(common.indexOf("-DBUILD_SHARED_LIBS=OFF"), 1, ...BACKEND_DL_ARGS);
  if (spec.ccache) common.push("-DCMAKE_C_COMPILER_LAUNCHER=ccache", "-DCMAKE_CXX_COMPILER_LAUNCHER=ccache");
  if (spec.arch === "cuda" && spec.ccache) common.push("-DCMAKE_CUDA_COMPILER_LAUNCHER=ccache");
  common.push(...unityArgs(buildDir, spec));
  return [
    "cmake",
    "-S",
    srcDir,
    "-B",
    buildDir,
    ...common,
    ...archCmakeArgs(spec),
    ...(spec.cmakeArgs ?? []),
  ];
}

/**
 * Splits a `--cmake-args` string as a shell would (quotes respected), and checks each is a cmake option.
 *
 * @example
 * ```ts
 * splitCmakeArgs('-DGGML_HIP_ROCWMMA_FATTN=ON "-DCMAKE_CXX_FLAGS=-O3 -g"');
 * ```
 */
export function splitCmakeArgs(text: string): string[] {
  const out: string[] = [];
  let cur = "";
  let quote: string | undefined;
  let has = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quote) {
      if (c === quote) quote = undefined;
      else if (c === "\\" && quote === '"' && i + 1 < text.length) cur += text[++i];
      else cur += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      has = true;
    } else if (/\s/.test(c)) {
      if (has || cur) out.push(cur);
      cur = "";
      has = false;
    } else {
      cur += c;
      has = true;
    }
  }
  if (quote) throw new UserError(`--cmake-args has an unclosed ${quote} quote: ${text}`);
  if (has || cur) out.push(cur);
  for (const a of out) {
    if (!/^-[DUGTAC]|^--/.test(a)) {
      throw new UserError(`--cmake-args: '${a}' is not a cmake option`, {
        hint:
          "pass cmake options such as -DGGML_CUDA_F16=ON (several separated by spaces, quoted as one flag)",
      });
    }
  }
  return out;
}
