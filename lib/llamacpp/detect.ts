/**
 * What GPU backend and targets this machine can tell us about: `nvidia-smi` for CUDA compute capabilities,
 * `amdgpu-arch` or `rocminfo` for ROCm gfx targets, Apple silicon for Metal, `vulkaninfo` for Vulkan.
 *
 * @module
 */
import type { Arch } from "./instances.ts";
import { run, which } from "../util/run.ts";

/**
 * The detected backend and targets, with how they were found.
 *
 * @example
 * ```ts ignore
 * const d: Detected = await detectGpu();
 * console.log(d.arch, d.gpuTargets, d.reason); // cuda [ "8.6" ] nvidia-smi: 8.6
 * ```
 */
export interface Detected {
  /** Best backend for this machine. */
  arch: Arch;
  /** GPU targets found for it. */
  gpuTargets: string[];
  /** How it was found, e.g. `nvidia-smi: 8.6`. */
  reason: string;
}

async function output(cmd: string[]): Promise<string | undefined> {
  if (!which(cmd[0])) return undefined;
  try {
    const r = await run(cmd, { check: false, timeoutMs: 15_000 });
    return r.code === 0 ? r.stdout : undefined;
  } catch {
    return undefined;
  }
}

/** Parses `nvidia-smi --query-gpu=compute_cap --format=csv,noheader` output into unique capabilities. */
export function parseComputeCaps(text: string): string[] {
  return [...new Set(text.split(/\r?\n/).map((l) => l.trim()).filter((l) => /^\d+\.\d+$/.test(l)))];
}

/** Parses gfx targets out of `amdgpu-arch` or `rocminfo` output (skipping the CPU agent). */
export function parseGfxTargets(text: string): string[] {
  return [
    ...new Set([...text.matchAll(/\b(gfx[0-9a-f]{3,4})\b/g)].map((m) => m[1]).filter((t) => t !== "gfx000")),
  ];
}

/**
 * Detects the best backend for this machine.
 *
 * @example
 * ```ts
 * const d = await detectGpu();
 * console.log(d.arch, d.gpuTargets);
 * ```
 */
export async function detectGpu(): Promise<Detected> {
  const nv = await output(["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"]);
  if (nv) {
    const caps = parseComputeCaps(nv);
    if (caps.length) return { arch: "cuda", gpuTargets: caps, reason: `nvidia-smi: ${caps.join(", ")}` };
  }
  const amd = (await output(["amdgpu-arch"])) ?? (await output(["rocminfo"]));
  if (amd) {
    const gfx = parseGfxTargets(amd);
    if (gfx.length) return { arch: "rocm", gpuTargets: gfx, reason: `ROCm: ${gfx.join(", ")}` };
  }
  if (Deno.build.os === "darwin" && Deno.build.arch === "aarch64") {
    return { arch: "metal", gpuTargets: [], reason: "Apple silicon" };
  }
  const vk = await output(["vulkaninfo", "--summary"]);
  if (vk && /deviceType\s*=\s*PHYSICAL_DEVICE_TYPE_(DISCRETE|INTEGRATED)_GPU/.test(vk)) {
    return { arch: "vulkan", gpuTargets: [], reason: "vulkaninfo: a GPU" };
  }
  return {
    arch: "cpu",
    gpuTargets: [],
    reason: "no GPU found (nvidia-smi, amdgpu-arch, rocminfo, vulkaninfo)",
  };
}
