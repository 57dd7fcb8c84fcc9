/**
 * Where a model's bytes go: how many layers a GPU takes (the rest stays on the CPU) and what that costs each
 * device. The scheduler sets the result against the device budgets it packs models into.
 *
 * @module
 */
import type { DeviceBudget } from "../../llamacpp/devices.ts";

/**
 * What a model needs at its context, cache type and slots (from lib/gguf's estimate).
 *
 * @example
 * ```ts
 * const need: ModelNeed = { totalBytes: 5e9, weightsBytes: 4e9, kvBytes: 0.8e9, computeBytes: 0.2e9, layers: 32 };
 * ```
 */
export interface ModelNeed {
  /** Everything: weights, KV cache, recurrent state, compute buffers. */
  totalBytes: number;
  /** Tensor data. */
  weightsBytes: number;
  /** KV cache and recurrent state. */
  kvBytes: number;
  /** Compute buffers (needed on every device that runs layers). */
  computeBytes: number;
  /** Repeating layers (`blockCount`). */
  layers: number;
  /**
   * The weights by layer ((`layerBytes` of the model's facts)): the input layer's stay on the CPU, the output
   * layer's go to the GPU first. Without them the weights are spread evenly over `layers + 1`.
   */
  layerBytes?: { input: number; output: number; repeating: number };
}

/**
 * A model placed on devices.
 *
 * @example
 * ```ts
 * const p: Placement = { ngl: 20, usage: { CUDA0: 3e9, CPU: 2.2e9 }, sizeBytes: 5.2e9, sizeVramBytes: 3e9 };
 * ```
 */
export interface Placement {
  /** Layers offloaded (`-ngl`): the request's or preset's, else the fitted count; undefined on a CPU build. */
  ngl?: number;
  /** Bytes on each device, by name. */
  usage: Record<string, number>;
  /** All bytes (what `/api/ps` calls `size`). */
  sizeBytes: number;
  /** Bytes on GPUs (`size_vram`). */
  sizeVramBytes: number;
}

/**
 * Places a model: on a build without GPUs (or with `ngl` 0) everything is on the CPU; else the GPUs take `ngl`
 * layers when given (-1: all), or the most layers that fit their budgets, as Ollama fits `num_gpu`. The output
 * layer counts as one layer more (`ngl = layers + 1` offloads everything) and is offloaded first, at its own
 * size when the need has `layerBytes` (the token embedding then stays on the CPU), else weights and KV cache
 * are spread evenly over the layers; each side that runs layers has the compute buffers. Several GPUs share the
 * layers in proportion to their budgets, as llama.cpp's default split does by free memory.
 *
 * @example
 * ```ts
 * const gpu = { name: "CUDA0", description: "", kind: "gpu" as const, totalBytes: 8e9, freeBytes: 8e9, budgetBytes: 3.2e9 };
 * const cpu = { name: "CPU", description: "", kind: "cpu" as const, totalBytes: 32e9, freeBytes: 30e9, budgetBytes: 30e9 };
 * const need = { totalBytes: 6.6e9, weightsBytes: 5.4e9, kvBytes: 1e9, computeBytes: 0.2e9, layers: 31 };
 * placeModel(need, [gpu, cpu]).ngl; // 15: 0.2e9 + 15 × 0.2e9 fit 3.2e9
 * ```
 */
export function placeModel(need: ModelNeed, devices: DeviceBudget[], ngl?: number): Placement {
  const gpus = devices.filter((d) => d.kind === "gpu");
  const cpu = devices.find((d) => d.kind === "cpu")?.name ?? "CPU";
  const units = need.layers + 1;
  if (!gpus.length || ngl === 0 || need.layers <= 0) {
    return { ngl, usage: { [cpu]: need.totalBytes }, sizeBytes: need.totalBytes, sizeVramBytes: 0 };
  }
  const rest = Math.max(0, need.totalBytes - need.weightsBytes - need.kvBytes - need.computeBytes);
  const gpuBudget = gpus.reduce((n, d) => n + d.budgetBytes, 0);
  // llama.cpp offloads the output layer first, then repeating layers from the last; the KV cache of a layer
  // goes with it, and the input layer (token embedding) stays on the CPU. A model that ties its output to the
  // token embedding gets a copy of it on the GPU, so its output layer costs as much again.
  const l = need.layerBytes;
  const perLayer = l
    ? (l.repeating + need.kvBytes) / need.layers
    : (need.weightsBytes + need.kvBytes) / units;
  const output = l ? l.output : perLayer;
  const fixedOnCpu = l ? l.input : 0;
  const onGpu = (n: number) => n === 0 ? 0 : need.computeBytes + rest + output + (n - 1) * perLayer;
  let n: number;
  if (ngl !== undefined) n = ngl < 0 || ngl > units ? units : ngl;
  else {
    const fit = gpuBudget - need.computeBytes - rest - output;
    n = fit < 0 ? 0 : Math.min(units, 1 + Math.floor(fit / perLayer));
  }
  if (n === 0) {
    return { ngl: 0, usage: { [cpu]: need.totalBytes }, sizeBytes: need.totalBytes, sizeVramBytes: 0 };
  }
  const vram = Math.round(onGpu(n));
  const onCpu = Math.round(fixedOnCpu + (units - n) * perLayer + (n < units ? need.computeBytes : 0));
  const usage: Record<string, number> = {};
  for (const g of gpus) {
    usage[g.name] = gpuBudget > 0
      ? Math.round(vram * g.budgetBytes / gpuBudget)
      : Math.round(vram / gpus.length);
  }
  if (onCpu > 0) usage[cpu] = onCpu;
  return { ngl: n, usage, sizeBytes: vram + onCpu, sizeVramBytes: vram };
}
