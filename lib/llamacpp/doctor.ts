/**
 * What a build needs and whether this machine has it: each tool with its version, whether it is required
 * for the chosen backend, and how to install it on Debian/Ubuntu, Fedora, Arch and macOS.
 *
 * @module
 */
import type { Arch } from "./instances.ts";
import { run, which } from "../util/run.ts";
import { CUBLAS_HINT, cudaRoots, findCublas, vulkanRequirements } from "./toolchain.ts";

/**
 * How to install a tool on each platform.
 *
 * @example
 * ```ts
 * const cmake: InstallHints = {
 *   debian: "sudo apt install cmake",
 *   fedora: "sudo dnf install cmake",
 *   arch: "sudo pacman -S cmake",
 *   macos: "brew install cmake",
 * };
 * ```
 */
export interface InstallHints {
  /** Debian and Ubuntu. */
  debian: string;
  /** Fedora. */
  fedora: string;
  /** Arch Linux. */
  arch: string;
  /** macOS (Homebrew). */
  macos: string;
}

/**
 * One checked tool.
 *
 * @example
 * ```ts ignore
 * for (const c of await runDoctor("cpu")) {
 *   console.log(c.ok ? "ok  " : "MISS", c.name, c.version ?? platformHint(c.install).command);
 * }
 * ```
 */
export interface Check {
  /** Short name, e.g. `cmake`. */
  name: string;
  /** What it is for. */
  purpose: string;
  /** Found on this machine. */
  ok: boolean;
  /** Missing means the build (or the named part) cannot work. */
  required: boolean;
  /** Its path, when found. */
  path?: string;
  /** Its version line, when found. */
  version?: string;
  /** How to install it. */
  install: InstallHints;
}

interface ToolSpec {
  name: string;
  candidates: string[];
  versionArgs: string[];
  purpose: string;
  install: InstallHints;
  /** Which backends need it; `all` for every one, `optional` for none. */
  needs: Arch[] | "all" | "optional";
  /** A minimum version, checked against the first x.y(.z) in the version line. */
  min?: [number, number];
}

const TOOLS: ToolSpec[] = [
  {
    name: "git",
    candidates: ["git"],
    versionArgs: ["--version"],
    purpose: "fetch llama.cpp",
    needs: "all",
    install: {
      debian: "sudo apt install git",
      fedora: "sudo dnf install git",
      arch: "sudo pacman -S git",
      macos: "xcode-select --install",
    },
  },
  {
    name: "cmake",
    candidates: ["cmake"],
    versionArgs: ["--version"],
    purpose: "configure the build (3.14 or newer)",
    needs: "all",
    min: [3, 14],
    install: {
      debian: "sudo apt install cmake",
      fedora: "sudo dnf install cmake",
      arch: "sudo pacman -S cmake",
      macos: "brew install cmake",
    },
  },
  {
    name: "ninja",
    candidates: ["ninja", "ninja-build"],
    versionArgs: ["--version"],
    purpose: "run the build",
    needs: "all",
    install: {
      debian: "sudo apt install ninja-build",
      fedora: "sudo dnf install ninja-build",
      arch: "sudo pacman -S ninja",
      macos: "brew install ninja",
    },
  },
  {
    name: "c++",
    candidates: ["c++", "g++", "clang++"],
    versionArgs: ["--version"],
    purpose: "C/C++ compiler",
    needs: "all",
    install: {
      debian: "sudo apt install g++",
      fedora: "sudo dnf install gcc-c++",
      arch: "sudo pacman -S gcc",
      macos: "xcode-select --install",
    },
  },
  {
    name: "ccache",
    candidates: ["ccache"],
    versionArgs: ["--version"],
    purpose: "fast rebuilds (optional)",
    needs: "optional",
    install: {
      debian: "sudo apt install ccache",
      fedora: "sudo dnf install ccache",
      arch: "sudo pacman -S ccache",
      macos: "brew install ccache",
    },
  },
  {
    name: "uv",
    candidates: ["uv"],
    versionArgs: ["--version"],
    purpose: "Python environment for the conversion scripts (skip with --ignore-python)",
    needs: "optional",
    install: {
      debian: "pip install uv  (or: curl -LsSf https://astral.sh/uv/install.sh | sh)",
      fedora: "sudo dnf install uv",
      arch: "sudo pacman -S uv",
      macos: "brew install uv",
    },
  },
  {
    name: "python3",
    candidates: ["python3", "python"],
    versionArgs: ["--version"],
    purpose: "runs the conversion scripts (3.10 or newer)",
    needs: "optional",
    min: [3, 10],
    install: {
      debian: "sudo apt install python3 python3-venv",
      fedora: "sudo dnf install python3",
      arch: "sudo pacman -S python",
      macos: "brew install python",
    },
  },
  {
    name: "nvcc",
    candidates: ["nvcc", "/usr/local/cuda/bin/nvcc"],
    versionArgs: ["--version"],
    purpose: "CUDA compiler (--arch cuda)",
    needs: ["cuda"],
    install: {
      debian: "sudo apt install nvidia-cuda-toolkit  (or NVIDIA's cuda-toolkit repo)",
      fedora: "sudo dnf install cuda-toolkit  (NVIDIA's repo)",
      arch: "sudo pacman -S cuda",
      macos: "not available on macOS: use --arch metal",
    },
  },
  {
    name: "hipcc",
    candidates: ["hipcc", "/opt/rocm/bin/hipcc"],
    versionArgs: ["--version"],
    purpose: "ROCm/HIP compiler (--arch rocm)",
    needs: ["rocm"],
    install: {
      debian: "sudo apt install hipcc rocm-dev  (AMD's ROCm repo: amdgpu-install --usecase=rocm)",
      fedora: "sudo dnf install rocm-hip-devel hipblas-devel rocblas-devel",
      arch: "sudo pacman -S rocm-hip-sdk",
      macos: "not available on macOS: use --arch metal",
    },
  },
  {
    name: "glslc",
    candidates: ["glslc"],
    versionArgs: ["--version"],
    purpose: "Vulkan shader compiler, part of the Vulkan SDK (--arch vulkan)",
    needs: ["vulkan"],
    install: {
      debian: "sudo apt install glslc libvulkan-dev",
      fedora: "sudo dnf install glslc vulkan-headers vulkan-loader-devel",
      arch: "sudo pacman -S shaderc vulkan-headers vulkan-icd-loader",
      macos: "brew install vulkan-sdk  (or LunarG's Vulkan SDK)",
    },
  },
  {
    name: "xcrun",
    candidates: ["xcrun"],
    versionArgs: ["--version"],
    purpose: "Xcode command line tools (--arch metal)",
    needs: ["metal"],
    install: {
      debian: "Metal needs macOS",
      fedora: "Metal needs macOS",
      arch: "Metal needs macOS",
      macos: "xcode-select --install",
    },
  },
  {
    name: "icpx",
    candidates: ["icpx", "/opt/intel/oneapi/compiler/latest/bin/icpx"],
    versionArgs: ["--version"],
    purpose: "Intel oneAPI DPC++ compiler (--arch sycl)",
    needs: ["sycl"],
    install: {
      debian:
        "Intel oneAPI Base Toolkit (apt repo: intel-basekit), then: source /opt/intel/oneapi/setvars.sh",
      fedora: "Intel oneAPI Base Toolkit (dnf repo: intel-basekit)",
      arch: "yay -S intel-oneapi-basekit",
      macos: "not available on macOS",
    },
  },
];

/** Compares the first `x.y` in a version line with a minimum. */
export function meetsMinimum(versionLine: string, min: [number, number]): boolean {
  const m = versionLine.match(/(\d+)\.(\d+)/);
  if (!m) return true;
  const [maj, mnr] = [Number(m[1]), Number(m[2])];
  return maj > min[0] || (maj === min[0] && mnr >= min[1]);
}

/**
 * Checks every tool; those needed for `arch` are marked required.
 *
 * @example
 * ```ts
 * const checks = await runDoctor("cpu");
 * const missing = checks.filter((c) => c.required && !c.ok);
 * ```
 */
export async function runDoctor(arch: Arch): Promise<Check[]> {
  const tools = await Promise.all(TOOLS.map(async (t): Promise<Check> => {
    const required = t.needs === "all" || (Array.isArray(t.needs) && t.needs.includes(arch));
    const path = t.candidates.map((c) => which(c)).find((p) => p !== undefined);
    let version: string | undefined;
    let ok = !!path;
    if (path) {
      const r = await run([path, ...t.versionArgs], { check: false, timeoutMs: 10_000 }).catch(() =>
        undefined
      );
      version = (r?.stdout || r?.stderr || "").split("\n").map((l) => l.trim()).find((l) =>
        /\d+\.\d+/.test(l)
      );
      if (t.min && version && !meetsMinimum(version, t.min)) ok = false;
    }
    return { name: t.name, purpose: t.purpose, ok, required, path, version, install: t.install };
  }));
  return [...tools, ...await backendChecks(arch)];
}

/** Libraries and shader-compiler features a backend's build needs beyond its compiler. */
async function backendChecks(arch: Arch): Promise<Check[]> {
  if (arch === "vulkan") {
    // Without a source at hand, what current releases need: cooperative matrices in glslc, layer settings in
    // the headers.
    const reqs = await vulkanRequirements({ headerNeeds: ["VK_EXT_layer_settings"] });
    const out: Check[] = reqs.filter((r) => r.pkg !== "glslc").map((r) => ({
      name: r.pkg,
      purpose: `${r.what} (--arch vulkan)`,
      ok: r.ok,
      // What a --patch works around (see patches.ts) is reported, not required.
      required: !r.pkg.includes(" with "),
      path: r.ok ? r.detail : undefined,
      version: r.detail,
      install: r.install,
    }));
    const icds = ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d", "/usr/local/share/vulkan/icd.d"];
    let icd: string | undefined;
    for (const d of icds) {
      try {
        for await (const e of Deno.readDir(d)) if (!icd && e.name.endsWith(".json")) icd = `${d}/${e.name}`;
      } catch { /* absent */ }
    }
    out.push({
      name: "vulkan driver",
      purpose: "a Vulkan device to run on, e.g. Mesa's (lavapipe is a CPU one) (--arch vulkan)",
      ok: !!icd,
      required: false,
      path: icd,
      install: {
        debian: "sudo apt install mesa-vulkan-drivers  (NVIDIA: the proprietary driver)",
        fedora: "sudo dnf install mesa-vulkan-drivers",
        arch: "sudo pacman -S vulkan-radeon vulkan-intel  (or nvidia-utils)",
        macos: "MoltenVK comes with the Vulkan SDK",
      },
    });
    return out;
  }
  if (arch === "cuda") {
    const found = await findCublas();
    return [{
      name: "cuBLAS",
      purpose: "CUDA BLAS library and headers, linked by ggml-cuda (--arch cuda)",
      ok: !!found,
      required: true,
      path: found ? `${found.includeDir}, ${found.libDir}` : undefined,
      version: found ? undefined : `not under ${cudaRoots().join(", ")}`,
      install: {
        debian: CUBLAS_HINT,
        fedora: "sudo dnf install libcublas-devel-13-0  (NVIDIA's repo); or pip install nvidia-cublas",
        arch: "sudo pacman -S cuda  (includes cuBLAS)",
        macos: "not available on macOS: use --arch metal",
      },
    }];
  }
  return [];
}

/**
 * The install line for this machine's platform (Debian-like when unknown).
 *
 * @example
 * ```ts ignore
 * const missing = (await runDoctor("vulkan")).filter((c) => c.required && !c.ok);
 * for (const c of missing) console.log(platformHint(c.install).command);
 * ```
 */
export function platformHint(hints: InstallHints): { platform: string; command: string } {
  if (Deno.build.os === "darwin") return { platform: "macOS", command: hints.macos };
  let osRelease = "";
  try {
    osRelease = Deno.readTextFileSync("/etc/os-release");
  } catch { /* unknown */ }
  if (/fedora|rhel|centos/i.test(osRelease)) return { platform: "Fedora", command: hints.fedora };
  if (/^ID(_LIKE)?=.*arch/im.test(osRelease)) return { platform: "Arch", command: hints.arch };
  return { platform: "Debian/Ubuntu", command: hints.debian };
}
