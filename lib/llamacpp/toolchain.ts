/**
 * Preflight for GPU builds: what the llama.cpp source asks of the toolchain, checked before cmake runs, so
 * that a missing piece is named with the way to get it instead of failing minutes into a build. Vulkan: the
 * headers, SPIR-V headers, `glslc` and the shader extensions the source compiles unconditionally. CUDA:
 * cuBLAS beside `nvcc`, and GPU targets this `nvcc` can compile for.
 *
 * @module
 */
import { dirname, join } from "node:path";
import type { Arch } from "./instances.ts";
import { normalizeCudaArch } from "./cmake.ts";
import { exists } from "../util/fs.ts";
import { UserError } from "../util/errors.ts";
import { run, which } from "../util/run.ts";

/**
 * The cmake `-D` value a user gave in extra cmake args, if any (the last one wins, as in cmake).
 *
 * @example
 * ```ts
 * cmakeDefine(["-DGGML_CUDA_F16=ON", "-DCUDAToolkit_ROOT:PATH=/opt/cuda"], "CUDAToolkit_ROOT"); // "/opt/cuda"
 * ```
 */
export function cmakeDefine(cmakeArgs: string[], name: string): string | undefined {
  let value: string | undefined;
  for (const a of cmakeArgs) {
    const m = a.match(/^-D([A-Za-z0-9_]+)(?::[A-Z]+)?=(.*)$/);
    if (m && m[1] === name) value = m[2];
  }
  return value;
}

// ---------------------------------------------------------------------------------------------- Vulkan

/**
 * The shader compiler a Vulkan build will use: `-DVulkan_GLSLC_EXECUTABLE=`, then `$VULKAN_SDK/bin/glslc`,
 * then `glslc` on PATH (the order of cmake's FindVulkan).
 *
 * @example
 * ```ts
 * const glslc = findGlslc([]); // "/usr/bin/glslc" or undefined
 * ```
 */
export function findGlslc(
  cmakeArgs: string[] = [],
  env: Record<string, string | undefined> = Deno.env.toObject(),
): string | undefined {
  const given = cmakeDefine(cmakeArgs, "Vulkan_GLSLC_EXECUTABLE");
  if (given) return which(given) ?? given;
  if (env.VULKAN_SDK) {
    const p = which(join(env.VULKAN_SDK, "bin", "glslc"));
    if (p) return p;
  }
  return which("glslc");
}

/**
 * Whether a shader compiler accepts a GLSL extension: compiles a one-line compute shader that requires it.
 *
 * @example
 * ```ts ignore
 * const r = await glslcSupports("/usr/bin/glslc", "GL_KHR_cooperative_matrix");
 * if (!r.ok) console.log(r.message); // "extension not supported: GL_KHR_cooperative_matrix"
 * ```
 */
export async function glslcSupports(
  glslc: string,
  extension: string,
): Promise<{ ok: boolean; message: string }> {
  const dir = await Deno.makeTempDir({ prefix: "llama-mgr-glslc-" });
  try {
    const src = join(dir, "probe.comp");
    await Deno.writeTextFile(src, `#version 450\n#extension ${extension} : require\nvoid main() {}\n`);
    const r = await run(
      [glslc, "-fshader-stage=compute", "--target-env=vulkan1.3", src, "-o", join(dir, "probe.spv")],
      { check: false, timeoutMs: 30_000 },
    ).catch((err) => ({ code: -1, stdout: "", stderr: String(err) }));
    const text = (r.stderr || r.stdout).trim();
    const line = text.split("\n").find((l) => /error/i.test(l)) ?? text.split("\n")[0] ?? "";
    return { ok: r.code === 0, message: line.replace(/^.*?error:\s*/, "").trim() };
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/**
 * The version line of a shader compiler (`shaderc 2023.2-1`).
 *
 * @example
 * ```ts ignore
 * await glslcVersion("/usr/bin/glslc"); // "shaderc 2023.2-1"
 * ```
 */
export async function glslcVersion(glslc: string): Promise<string | undefined> {
  const r = await run([glslc, "--version"], { check: false, timeoutMs: 10_000 }).catch(() => undefined);
  return r?.stdout.split("\n")[0]?.trim() || undefined;
}

/**
 * A shader extension that the source compiles with whatever the shader compiler supports.
 *
 * @example
 * ```ts
 * const need: ShaderNeed = { extension: "GL_KHR_cooperative_matrix", shaders: ["fa_decode_ph1"] };
 * ```
 */
export interface ShaderNeed {
  /** The GLSL extension, e.g. `GL_KHR_cooperative_matrix`. */
  extension: string;
  /** The shader variants that need it without a guard. */
  shaders: string[];
}

const FLAG_EXTENSIONS: { arg: number; extension: string; guard: string; uses: RegExp }[] = [
  {
    arg: 4,
    extension: "GL_KHR_cooperative_matrix",
    guard: "GGML_VULKAN_COOPMAT_GLSLC_SUPPORT",
    uses: /\bcoopmat\s*</,
  },
  {
    arg: 5,
    extension: "GL_NV_cooperative_matrix2",
    guard: "GGML_VULKAN_COOPMAT2_GLSLC_SUPPORT",
    uses: /\bcoopmat\s*<|tensorLayoutNV/,
  },
];

function splitArgs(text: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = "";
  let quote = false;
  for (const c of text) {
    if (c === '"' && !cur.endsWith("\\")) quote = !quote;
    if (!quote && "({[".includes(c)) depth++;
    if (!quote && ")}]".includes(c)) depth--;
    if (!quote && c === "," && depth === 0) {
      out.push(cur.trim());
      cur = "";
    } else cur += c;
  }
  if (cur.trim()) out.push(cur.trim());
  return out;
}

/**
 * Reads llama.cpp's Vulkan shader generator (`vulkan-shaders-gen.cpp`) and finds the shaders it compiles
 * with a cooperative-matrix flag outside the `#if` that checks the shader compiler for it, keeping those
 * whose source (`.comp` beside it, read through `readShader`) really uses the matrix types.
 *
 * @example
 * ```ts
 * const gen = 'string_to_spv("fa_decode_ph1", "fa1.comp", {}, true, true, false, false);';
 * unguardedShaderNeeds(gen, () => "coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseA> m;");
 * // [{ extension: "GL_KHR_cooperative_matrix", shaders: ["fa_decode_ph1"] }]
 * ```
 */
export function unguardedShaderNeeds(
  generator: string,
  readShader: (file: string) => string | undefined,
): ShaderNeed[] {
  const stack: string[] = [];
  const found = new Map<string, Set<string>>();
  const lines = generator.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (/^#\s*if/.test(line)) stack.push(line);
    else if (/^#\s*else|^#\s*elif/.test(line)) stack[stack.length - 1] = `!${stack[stack.length - 1]}`;
    else if (/^#\s*endif/.test(line)) stack.pop();
    const at = line.indexOf("string_to_spv(");
    if (at < 0 || line.startsWith("void ") || line.startsWith("//")) continue;
    let call = line.slice(at + "string_to_spv(".length);
    for (let j = i + 1; !/\)\s*;/.test(call) && j < lines.length && j < i + 8; j++) call += lines[j].trim();
    const args = splitArgs(call.replace(/\)\s*;.*$/, ""));
    const name = args[0]?.match(/^"([^"]+)"$/)?.[1];
    const file = args[1]?.match(/^"([^"]+)"$/)?.[1];
    if (!name || !file) continue;
    for (const f of FLAG_EXTENSIONS) {
      if (args[f.arg] !== "true") continue;
      if (stack.some((c) => c.includes(f.guard) && !c.startsWith("!"))) continue;
      const source = readShader(file);
      if (source !== undefined && !f.uses.test(source)) continue;
      if (!found.has(f.extension)) found.set(f.extension, new Set());
      found.get(f.extension)!.add(name);
    }
  }
  return [...found].map(([extension, shaders]) => ({ extension, shaders: [...shaders] }));
}

/**
 * {@linkcode unguardedShaderNeeds} for a llama.cpp checkout; empty when it has no Vulkan shader generator.
 *
 * @example
 * ```ts ignore
 * await sourceShaderNeeds("/data/instances/vulkan/src");
 * // [{ extension: "GL_KHR_cooperative_matrix", shaders: ["fa_decode_ph1", "fa_decode_ph2"] }]
 * ```
 */
export async function sourceShaderNeeds(srcDir: string): Promise<ShaderNeed[]> {
  const dir = join(srcDir, "ggml", "src", "ggml-vulkan", "vulkan-shaders");
  const gen = await Deno.readTextFile(join(dir, "vulkan-shaders-gen.cpp")).catch(() => undefined);
  if (gen === undefined) return [];
  return unguardedShaderNeeds(gen, (file) => {
    try {
      return Deno.readTextFileSync(join(dir, file));
    } catch {
      return undefined;
    }
  });
}

/**
 * Vulkan extensions whose C++ types `ggml-vulkan.cpp` uses without an `#if defined(VK_...)` around them, so
 * the Vulkan headers must define them (e.g. `VK_EXT_layer_settings`, headers 1.3.272 and newer).
 *
 * @example
 * ```ts
 * unguardedHeaderNeeds("std::vector<vk::LayerSettingEXT> s;"); // ["VK_EXT_layer_settings"]
 * unguardedHeaderNeeds("#if defined(VK_EXT_layer_settings)\nvk::LayerSettingEXT s;\n#endif"); // []
 * ```
 */
export function unguardedHeaderNeeds(source: string): string[] {
  const uses: [RegExp, string][] = [[
    /\bvk::LayerSettings?(?:EXT|CreateInfoEXT|TypeEXT)\b/,
    "VK_EXT_layer_settings",
  ]];
  const out: string[] = [];
  for (const [re, ext] of uses) {
    const stack: string[] = [];
    for (const line of source.split("\n")) {
      const t = line.trim();
      if (/^#\s*if/.test(t)) stack.push(t);
      else if (/^#\s*(else|elif)/.test(t)) stack[stack.length - 1] = `!${stack[stack.length - 1]}`;
      else if (/^#\s*endif/.test(t)) stack.pop();
      else if (re.test(t) && !stack.some((c) => c.includes(ext) && !c.startsWith("!"))) {
        out.push(ext);
        break;
      }
    }
  }
  return out;
}

/** The Vulkan header (`vulkan_core.h`) under the given prefixes: its path and `VK_HEADER_VERSION` line. */
async function vulkanCoreHeader(prefixes: string[]): Promise<{ path: string; text: string } | undefined> {
  for (const p of prefixes) {
    const path = join(p, "include", "vulkan", "vulkan_core.h");
    const text = await Deno.readTextFile(path).catch(() => undefined);
    if (text !== undefined) return { path, text };
  }
  return undefined;
}

/** Files that show a Vulkan development package is installed, per package (Debian names). */
const VULKAN_FILES: { pkg: string; what: string; files: string[]; fedora: string; arch: string }[] = [
  {
    pkg: "libvulkan-dev",
    what: "Vulkan headers and loader",
    files: ["include/vulkan/vulkan.h"],
    fedora: "vulkan-headers vulkan-loader-devel",
    arch: "vulkan-headers vulkan-icd-loader",
  },
  {
    pkg: "spirv-headers",
    what: "SPIR-V headers (cmake package SPIRV-Headers)",
    files: [
      "share/cmake/SPIRV-Headers/SPIRV-HeadersConfig.cmake",
      "lib/cmake/SPIRV-Headers/SPIRV-HeadersConfig.cmake",
      "share/cmake/SPIRV-Headers/SPIRV-Headers-config.cmake",
      "lib/cmake/SPIRV-Headers/SPIRV-Headers-config.cmake",
    ],
    fedora: "spirv-headers-devel",
    arch: "spirv-headers",
  },
];

/**
 * One Vulkan build requirement and whether it is met.
 *
 * @example
 * ```ts ignore
 * for (const r of await vulkanRequirements({})) console.log(r.ok ? "ok" : "missing", r.pkg, r.what);
 * ```
 */
export interface Requirement {
  /** The Debian package that provides it. */
  pkg: string;
  /** What it is. */
  what: string;
  /** Met on this machine. */
  ok: boolean;
  /** Where it was found, or why it is not usable. */
  detail?: string;
  /** Install commands: Debian, Fedora, Arch. */
  install: { debian: string; fedora: string; arch: string; macos: string };
}

/**
 * What a Vulkan build needs, checked on this machine: headers, SPIR-V headers, `glslc`, and each shader
 * extension in `needs` (from {@linkcode sourceShaderNeeds}; without a source, GL_KHR_cooperative_matrix,
 * which current releases compile unconditionally).
 *
 * @example
 * ```ts ignore
 * const missing = (await vulkanRequirements({})).filter((r) => !r.ok);
 * ```
 */
export async function vulkanRequirements(options: {
  cmakeArgs?: string[];
  needs?: ShaderNeed[];
  /** Extensions the headers must define (from {@linkcode unguardedHeaderNeeds}; default: none checked). */
  headerNeeds?: string[];
  env?: Record<string, string | undefined>;
  prefixes?: string[];
}): Promise<Requirement[]> {
  const env = options.env ?? Deno.env.toObject();
  const prefixes = options.prefixes ??
    [...(env.VULKAN_SDK ? [env.VULKAN_SDK] : []), "/usr", "/usr/local", "/opt/homebrew"];
  const out: Requirement[] = [];
  for (const f of VULKAN_FILES) {
    let at: string | undefined;
    for (const p of prefixes) {
      for (const file of f.files) {
        if (!at && await exists(join(p, file))) at = join(p, file);
      }
    }
    out.push({
      pkg: f.pkg,
      what: f.what,
      ok: !!at,
      detail: at,
      install: {
        debian: `sudo apt install ${f.pkg}`,
        fedora: `sudo dnf install ${f.fedora}`,
        arch: `sudo pacman -S ${f.arch}`,
        macos: "brew install vulkan-sdk  (or LunarG's Vulkan SDK)",
      },
    });
  }
  const header = await vulkanCoreHeader(prefixes);
  for (const ext of header ? options.headerNeeds ?? [] : []) {
    const version = header!.text.match(/#define VK_HEADER_VERSION (\d+)/)?.[1];
    const ok = new RegExp(`#define ${ext} 1`).test(header!.text);
    out.push({
      pkg: `libvulkan-dev with ${ext}`,
      what: "Vulkan headers new enough for this release (1.3.272 or newer)",
      ok,
      detail: ok ? undefined : `${header!.path} is 1.3.${version ?? "?"} and lacks ${ext}`,
      install: {
        debian: "newer Vulkan headers: Debian 13 or Ubuntu 24.04 (`sudo apt install libvulkan-dev`), or " +
          "LunarG's Vulkan SDK (export VULKAN_SDK); or build with `--patch vulkan-old-headers`",
        fedora: "sudo dnf upgrade vulkan-headers; or --patch vulkan-old-headers",
        arch: "sudo pacman -Syu vulkan-headers; or --patch vulkan-old-headers",
        macos: "a current LunarG Vulkan SDK",
      },
    });
  }
  const glslc = findGlslc(options.cmakeArgs ?? [], env);
  const glslcInstall = {
    debian: "sudo apt install glslc",
    fedora: "sudo dnf install glslc",
    arch: "sudo pacman -S shaderc",
    macos: "brew install shaderc  (or LunarG's Vulkan SDK)",
  };
  out.push({
    pkg: "glslc",
    what: "Vulkan shader compiler (shaderc)",
    ok: !!glslc,
    detail: glslc ? `${glslc}: ${(await glslcVersion(glslc)) ?? "version unknown"}` : undefined,
    install: glslcInstall,
  });
  const needs = options.needs ??
    [{ extension: "GL_KHR_cooperative_matrix", shaders: ["the flash-attention decode shaders"] }];
  if (glslc) {
    for (const n of needs) {
      const probe = await glslcSupports(glslc, n.extension);
      out.push({
        pkg: `glslc with ${n.extension}`,
        what: `shader extension compiled unconditionally by this release (${n.shaders.join(", ")})`,
        ok: probe.ok,
        detail: probe.ok ? undefined : probe.message,
        install: {
          debian: "a newer glslc: Debian 13 or Ubuntu 24.04 (`sudo apt install glslc`), or LunarG's Vulkan " +
            "SDK (then -DVulkan_GLSLC_EXECUTABLE=$VULKAN_SDK/bin/glslc); or build with " +
            "`--patch vulkan-no-coopmat`, which leaves those shaders out",
          fedora: "sudo dnf upgrade glslc  (shaderc 2023.8 or newer); or --patch vulkan-no-coopmat",
          arch: "sudo pacman -Syu shaderc; or --patch vulkan-no-coopmat",
          macos: "brew upgrade shaderc  (or a current LunarG Vulkan SDK)",
        },
      });
    }
  }
  return out;
}

// ------------------------------------------------------------------------------------------------ CUDA

/**
 * Where cuBLAS was found: its header and library folders.
 *
 * @example
 * ```ts
 * const c: CublasLocation = { includeDir: "/usr/local/cuda/include", libDir: "/usr/local/cuda/lib64" };
 * ```
 */
export interface CublasLocation {
  /** Folder holding `cublas_v2.h`. */
  includeDir: string;
  /** Folder holding `libcublas.so*`. */
  libDir: string;
  /** From a PyPI wheel (`nvidia/cu13`, `nvidia/cublas`): cmake needs to be told where. */
  wheel?: boolean;
}

async function libFile(dir: string, stem: string): Promise<string | undefined> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) names.push(e.name);
  } catch { /* no such dir */ }
  names.sort();
  return names.find((n) => n === `${stem}.so`) ?? names.find((n) => n.startsWith(`${stem}.so.`)) ??
    names.find((n) => n === `${stem}_static.a`);
}

/** Python's site-packages folders (the interpreter's, the user's, and an active virtualenv's). */
async function sitePackages(env: Record<string, string | undefined>): Promise<string[]> {
  const out: string[] = [];
  const python = which("python3", env.PATH ?? "");
  if (python) {
    const r = await run([
      python,
      "-c",
      "import site\nfor p in site.getsitepackages() + [site.getusersitepackages()]: print(p)",
    ], { check: false, timeoutMs: 15_000 }).catch(() => undefined);
    if (r?.code === 0) out.push(...r.stdout.split("\n").map((l) => l.trim()).filter(Boolean));
  }
  if (env.VIRTUAL_ENV) {
    try {
      for await (const e of Deno.readDir(join(env.VIRTUAL_ENV, "lib"))) {
        if (e.name.startsWith("python")) out.push(join(env.VIRTUAL_ENV, "lib", e.name, "site-packages"));
      }
    } catch { /* not a venv */ }
  }
  return [...new Set(out)];
}

/**
 * The CUDA toolkit roots to look in: `-DCUDAToolkit_ROOT=`, `$CUDAToolkit_ROOT`, `$CUDA_HOME`, `$CUDA_PATH`,
 * the folder above `nvcc`, and `/usr/local/cuda`.
 *
 * @example
 * ```ts
 * cudaRoots(["-DCUDAToolkit_ROOT=/opt/cuda-13"]); // ["/opt/cuda-13", ..., "/usr/local/cuda"]
 * ```
 */
export function cudaRoots(
  cmakeArgs: string[] = [],
  env: Record<string, string | undefined> = Deno.env.toObject(),
): string[] {
  const nvcc = which("nvcc", env.PATH ?? "") ?? which("/usr/local/cuda/bin/nvcc");
  let real = nvcc;
  try {
    if (nvcc) real = Deno.realPathSync(nvcc);
  } catch { /* keep */ }
  const roots = [
    cmakeDefine(cmakeArgs, "CUDAToolkit_ROOT"),
    env.CUDAToolkit_ROOT,
    env.CUDA_HOME,
    env.CUDA_PATH,
    real ? dirname(dirname(real)) : undefined,
    nvcc ? dirname(dirname(nvcc)) : undefined,
    "/usr/local/cuda",
  ].filter((r): r is string => !!r);
  return [...new Set(roots)];
}

/**
 * Finds cuBLAS where cmake's FindCUDAToolkit looks: the toolkit's `include`/`lib64` (and
 * `targets/<arch>-linux/`), or the folders given with `-DCUDA_cublas_LIBRARY=` / `CPATH`.
 *
 * @example
 * ```ts ignore
 * const c = await findCublas([]);
 * if (!c) console.log("no cuBLAS: install libcublas-dev or pip install nvidia-cublas");
 * ```
 */
export async function findCublas(
  cmakeArgs: string[] = [],
  env: Record<string, string | undefined> = Deno.env.toObject(),
): Promise<CublasLocation | undefined> {
  const libGiven = cmakeDefine(cmakeArgs, "CUDA_cublas_LIBRARY");
  const incDirs: string[] = [];
  const libDirs: string[] = libGiven ? [dirname(libGiven)] : [];
  const target = Deno.build.arch === "aarch64" ? "sbsa-linux" : "x86_64-linux";
  for (const root of cudaRoots(cmakeArgs, env)) {
    incDirs.push(join(root, "include"), join(root, "targets", target, "include"));
    libDirs.push(
      join(root, "lib64"),
      join(root, "lib"),
      join(root, "targets", target, "lib"),
      join(root, "lib", "stubs"),
    );
  }
  for (const v of [env.CPATH, env.CPLUS_INCLUDE_PATH]) if (v) incDirs.push(...v.split(":").filter(Boolean));
  for (const d of ["/usr/include", "/usr/include/x86_64-linux-gnu"]) incDirs.push(d);
  for (const d of ["/usr/lib/x86_64-linux-gnu", "/usr/lib64"]) libDirs.push(d);
  let includeDir: string | undefined;
  for (const d of incDirs) {
    if (!includeDir && await exists(join(d, "cublas_v2.h"))) includeDir = d;
  }
  let libDir: string | undefined;
  for (const d of libDirs) {
    if (!libDir && await libFile(d, "libcublas")) libDir = d;
  }
  if (includeDir && libDir) return { includeDir, libDir };
  // PyPI's nvidia-cublas (CUDA 13: nvidia/cu13/) or nvidia-cublas-cu12 (nvidia/cublas/) keep headers and
  // library side by side.
  const wheelDirs = libGiven ? [dirname(dirname(libGiven))] : [];
  for (const sp of await sitePackages(env)) {
    wheelDirs.push(join(sp, "nvidia", "cu13"), join(sp, "nvidia", "cublas"));
  }
  for (const w of wheelDirs) {
    if (await exists(join(w, "include", "cublas_v2.h")) && await libFile(join(w, "lib"), "libcublas")) {
      return { includeDir: join(w, "include"), libDir: join(w, "lib"), wheel: true };
    }
  }
  return undefined;
}

/**
 * The cmake arguments that make FindCUDAToolkit use cuBLAS from a wheel (the library files by path, the
 * headers on nvcc's include path); none for a cuBLAS inside the toolkit. The user's own `-D`s are kept.
 *
 * @example
 * ```ts ignore
 * const loc = await findCublas();
 * if (loc) console.log(await cublasCmakeArgs(loc, []));
 * ```
 */
export async function cublasCmakeArgs(loc: CublasLocation, userArgs: string[] = []): Promise<string[]> {
  if (!loc.wheel) return [];
  const out: string[] = [];
  for (
    const [name, stem] of [["CUDA_cublas_LIBRARY", "libcublas"], ["CUDA_cublasLt_LIBRARY", "libcublasLt"]]
  ) {
    const file = await libFile(loc.libDir, stem);
    if (file && cmakeDefine(userArgs, name) === undefined) out.push(`-D${name}=${join(loc.libDir, file)}`);
  }
  const flags = cmakeDefine(userArgs, "CMAKE_CUDA_FLAGS");
  out.push(`-DCMAKE_CUDA_FLAGS=-I${loc.includeDir}${flags ? ` ${flags}` : ""}`);
  return out;
}

/**
 * Finds the CUDA driver library that cmake's `CUDA::cuda_driver` links: the driver's `libcuda.so`, or the
 * toolkit's stub in `lib64/stubs`.
 *
 * @example
 * ```ts ignore
 * if (!(await findCudaDriverLib())) console.log("no libcuda.so: build with -DGGML_CUDA_NO_VMM=ON");
 * ```
 */
export async function findCudaDriverLib(
  cmakeArgs: string[] = [],
  env: Record<string, string | undefined> = Deno.env.toObject(),
): Promise<string | undefined> {
  const target = Deno.build.arch === "aarch64" ? "sbsa-linux" : "x86_64-linux";
  const dirs = cudaRoots(cmakeArgs, env).flatMap((r) => [
    join(r, "lib64", "stubs"),
    join(r, "lib", "stubs"),
    join(r, "targets", target, "lib", "stubs"),
  ]);
  dirs.push("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib/wsl/lib");
  for (const d of dirs) {
    if (await exists(join(d, "libcuda.so"))) return join(d, "libcuda.so");
  }
  return undefined;
}

/**
 * Ways to get cuBLAS, for messages.
 *
 * @example
 * ```ts
 * console.log(`no cuBLAS: ${CUBLAS_HINT}`);
 * ```
 */
export const CUBLAS_HINT = [
  "install the toolkit's cuBLAS package matching your nvcc (NVIDIA's repo: `sudo apt install " +
  "libcublas-dev-13-0`, or the full `cuda-toolkit-13-0`; Debian's own nvidia-cuda-toolkit includes it)",
  "or PyPI's wheel, which carries the library and its headers: `pip install nvidia-cublas` (CUDA 13; " +
  "`nvidia-cublas-cu12` for CUDA 12), found in Python's site-packages; a wheel unpacked elsewhere is " +
  'named with --cmake-args "-DCUDA_cublas_LIBRARY=<dir>/nvidia/cu13/lib/libcublas.so.13"',
].join("; ");

/**
 * The compute capabilities an `nvcc` can compile for, from `nvcc --list-gpu-arch` (`compute_75` ... as
 * `75`).
 *
 * @example
 * ```ts
 * parseNvccArchList("compute_75\ncompute_80\ncompute_120\n"); // ["75", "80", "120"]
 * ```
 */
export function parseNvccArchList(text: string): string[] {
  return [...text.matchAll(/\bcompute_(\d+[a-z]?)\b/g)].map((m) => m[1]);
}

/**
 * Checks CUDA GPU targets before a build: each must be one this `nvcc` supports (multi-architecture lists
 * are checked one by one, and every unsupported one is named), and `native` needs a visible GPU.
 *
 * @example
 * ```ts
 * checkCudaTargets(["8.6", "8.9", "12.0"], { supported: ["75", "80", "86", "89", "90", "120"], gpus: [] });
 * // ["86", "89", "120"]
 * ```
 */
export function checkCudaTargets(
  targets: string[],
  machine: { supported?: string[]; gpus: string[]; nvccVersion?: string },
): string[] {
  const norm = targets.map(normalizeCudaArch);
  if (norm.includes("native") && machine.gpus.length === 0) {
    throw new UserError("--gpu-targets native needs a visible NVIDIA GPU, and nvidia-smi shows none", {
      hint: "name the GPUs this build is for, e.g. --gpu-targets 8.6 (RTX 30xx), 8.9 (RTX 40xx), 12.0 " +
        "(RTX 50xx), 9.0 (H100), 8.0 (A100); several are allowed: --gpu-targets 8.6,8.9,12.0",
    });
  }
  if (norm.length === 0 && machine.gpus.length === 0) {
    throw new UserError("--arch cuda without --gpu-targets builds for the GPUs it sees, and there is none", {
      hint: "name the GPUs this build is for, e.g. --gpu-targets 8.6 (RTX 30xx), 8.9 (RTX 40xx), 12.0 " +
        "(RTX 50xx); `all` builds every architecture nvcc supports (slow)",
    });
  }
  if (machine.supported?.length) {
    const base = (t: string) => t.replace(/[af]$/, "");
    const bad = norm.filter((t) =>
      !["native", "all", "all-major"].includes(t) && !machine.supported!.includes(base(t))
    );
    if (bad.length) {
      const fmt = (t: string) => `${t.slice(0, -1)}.${t.slice(-1)}`;
      throw new UserError(
        `this nvcc${machine.nvccVersion ? ` (${machine.nvccVersion})` : ""} cannot compile for ` +
          `${bad.map((t) => `${fmt(base(t))} (sm_${t})`).join(", ")}`,
        {
          hint: `it supports ${machine.supported.map((t) => fmt(t)).join(", ")}; drop the others from ` +
            `--gpu-targets, or use a CUDA toolkit that still supports them (CUDA 12 for 5.x-7.x)`,
        },
      );
    }
  }
  return norm;
}

async function nvccFacts(): Promise<{ nvcc?: string; supported?: string[]; version?: string }> {
  const nvcc = which("nvcc") ?? which("/usr/local/cuda/bin/nvcc");
  if (!nvcc) return {};
  const list = await run([nvcc, "--list-gpu-arch"], { check: false, timeoutMs: 20_000 }).catch(() =>
    undefined
  );
  const ver = await run([nvcc, "--version"], { check: false, timeoutMs: 20_000 }).catch(() => undefined);
  return {
    nvcc,
    supported: list?.code === 0 ? parseNvccArchList(list.stdout) : undefined,
    version: ver?.stdout.match(/release (\d+\.\d+)/)?.[0],
  };
}

async function visibleGpus(): Promise<string[]> {
  if (!which("nvidia-smi")) return [];
  const r = await run(["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"], {
    check: false,
    timeoutMs: 15_000,
  }).catch(() => undefined);
  return r?.code === 0 ? r.stdout.split("\n").map((l) => l.trim()).filter((l) => /^\d+\.\d+$/.test(l)) : [];
}

// ------------------------------------------------------------------------------------------- preflight

/**
 * Checks, before the source is fetched, what the backend's build needs from this machine; throws a
 * {@linkcode UserError} naming every missing piece and how to get it. Returns cmake arguments the build
 * needs to find what was found outside the usual places (cuBLAS from a PyPI wheel). Vulkan and CUDA have
 * checks; other backends pass.
 *
 * @example
 * ```ts ignore
 * const extra = await preflightMachine({ arch: "cuda", gpuTargets: ["8.6"] });
 * ```
 */
export async function preflightMachine(options: {
  arch: Arch;
  cmakeArgs?: string[];
  gpuTargets?: string[];
  onInfo?: (text: string) => void;
}): Promise<string[]> {
  const cmakeArgs = options.cmakeArgs ?? [];
  if (options.arch === "vulkan") {
    // The shader extensions are checked against the source once it is checked out.
    const reqs = await vulkanRequirements({ cmakeArgs, needs: [] });
    const missing = reqs.filter((r) => !r.ok);
    if (missing.length) {
      const lines = missing.map((r) => `  ${r.pkg}: ${r.what}\n    fix: ${r.install.debian}`);
      throw new UserError(`this Vulkan build cannot work yet:\n${lines.join("\n")}`, {
        hint: "`llama-mgr doctor --arch vulkan` lists what is missing; nothing was built",
      });
    }
  }
  if (options.arch === "cuda") {
    const facts = await nvccFacts();
    const gpus = await visibleGpus();
    checkCudaTargets(options.gpuTargets ?? [], {
      supported: facts.supported,
      gpus,
      nvccVersion: facts.version,
    });
    const problems: string[] = [];
    if (!facts.nvcc && !cmakeDefine(cmakeArgs, "CMAKE_CUDA_COMPILER")) {
      problems.push("nvcc (the CUDA compiler) is not on PATH");
    }
    const cublas = await findCublas(cmakeArgs);
    if (!cublas) {
      problems.push(
        "cuBLAS is missing: ggml-cuda links CUDA::cublas, and no cublas_v2.h with libcublas was found " +
          `under ${
            cudaRoots(cmakeArgs).join(", ")
          } nor in Python's site-packages (nvidia/cu13, nvidia/cublas)`,
      );
    }
    if (problems.length) {
      throw new UserError(`this CUDA build cannot work yet: ${problems.join("; ")}`, {
        hint: `${CUBLAS_HINT}. \`llama-mgr doctor --arch cuda\` checks again; nothing was built`,
      });
    }
    const extra = await cublasCmakeArgs(cublas!, cmakeArgs);
    if (cmakeDefine(cmakeArgs, "GGML_CUDA_NO_VMM") === undefined && !(await findCudaDriverLib(cmakeArgs))) {
      // ggml-cuda links libcuda.so for its virtual-memory pool unless told not to; a build machine with
      // neither the driver nor the toolkit's stub can still build, with the pool that needs no driver call.
      options.onInfo?.(
        "no libcuda.so (the driver, or the toolkit's stubs/libcuda.so) found: building with " +
          "GGML_CUDA_NO_VMM=ON (the CUDA backend's plain memory pool); install cuda-driver-dev-13-0 for the " +
          "stub to keep the virtual-memory pool",
      );
      extra.push("-DGGML_CUDA_NO_VMM=ON");
    }
    return extra;
  }
  return [];
}

/**
 * Checks a checked-out source against the toolchain: for Vulkan, every shader extension the source compiles
 * without asking the shader compiler first. Throws a {@linkcode UserError} with the ways out.
 *
 * @example
 * ```ts ignore
 * await preflightSource({ arch: "vulkan", srcDir: "/data/instances/vulkan/src" });
 * ```
 */
export async function preflightSource(options: {
  arch: Arch;
  srcDir: string;
  cmakeArgs?: string[];
  onInfo?: (text: string) => void;
}): Promise<void> {
  if (options.arch !== "vulkan") return;
  const needs = await sourceShaderNeeds(options.srcDir);
  const cpp = await Deno.readTextFile(join(options.srcDir, "ggml", "src", "ggml-vulkan", "ggml-vulkan.cpp"))
    .catch(() => "");
  const reqs = await vulkanRequirements({
    cmakeArgs: options.cmakeArgs,
    needs,
    headerNeeds: unguardedHeaderNeeds(cpp),
  });
  const missing = reqs.filter((r) => !r.ok);
  if (missing.length) {
    const lines = missing.map((r) =>
      `  ${r.pkg}: ${r.what}${r.detail ? ` (${r.detail})` : ""}\n    fix: ${r.install.debian}`
    );
    throw new UserError(`this Vulkan build cannot work with this toolchain:\n${lines.join("\n")}`, {
      hint: "`llama-mgr doctor --arch vulkan` lists what is missing; nothing was built",
    });
  }
  options.onInfo?.(`shader compiler: ${reqs.find((r) => r.pkg === "glslc")?.detail}`);
}
