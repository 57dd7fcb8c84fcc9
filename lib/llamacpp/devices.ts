/**
 * The devices an instance's llama-server can use and the memory each has, from llama.cpp itself:
 * `llama-server --list-devices` names the GPUs (CUDA, ROCm, Vulkan, Metal, SYCL builds alike) with their total
 * and free memory, and system RAM (`MemAvailable` of `/proc/meminfo`) is the CPU device. The daemon's scheduler
 * packs models into the budgets made from them ({@linkcode deviceBudgets}).
 *
 * @module
 */
import type { InstanceRecord } from "./instances.ts";
import { binaryPath } from "./instances.ts";
import { run } from "../util/run.ts";
import { parseByteSize } from "../util/bytes.ts";
import { UserError } from "../util/errors.ts";
import { formatBytes } from "../util/fs.ts";

/**
 * One device and its memory.
 *
 * @example
 * ```ts
 * const gpu: Device = {
 *   name: "Vulkan0",
 *   description: "AMD Radeon RX 7900 XTX (RADV NAVI31)",
 *   kind: "gpu",
 *   totalBytes: 24 * 2 ** 30,
 *   freeBytes: 23 * 2 ** 30,
 * };
 * ```
 */
export interface Device {
  /** llama.cpp's name for it (`CUDA0`, `ROCm0`, `Vulkan0`, `Metal`, `MTL0`...), or `CPU` for system RAM. */
  name: string;
  /** What it is, as the driver says. */
  description: string;
  /** `gpu` for what llama.cpp offloads layers to, `cpu` for system RAM. */
  kind: "gpu" | "cpu";
  /** Memory, in bytes. */
  totalBytes: number;
  /** Memory free when it was listed, in bytes. */
  freeBytes: number;
}

const MiB = 2 ** 20;

/**
 * Reads what `llama-server --list-devices` prints (`common_print_available_devices` in llama.cpp's
 * `common/arg.cpp`): after `Available devices:`, one line per GPU, `  NAME: DESCRIPTION (TOTAL MiB, FREE MiB
 * free)`, or `  (none)` for a CPU-only build. Backend log lines around it (`ggml_cuda_init: ...`) are ignored.
 * Throws when the header is missing (not a llama-server, or one too old to list devices).
 *
 * @example
 * ```ts
 * const devices = parseListDevices(
 *   "Available devices:\n  CUDA0: NVIDIA GeForce RTX 4090 (24080 MiB, 23664 MiB free)\n",
 * );
 * devices[0].freeBytes; // 23664 * 2 ** 20
 * ```
 */
export function parseListDevices(output: string): Device[] {
  const lines = output.split(/\r?\n/);
  const start = lines.findIndex((l) => l.trim() === "Available devices:");
  if (start < 0) throw new Error("no 'Available devices:' in the output of --list-devices");
  const devices: Device[] = [];
  for (const line of lines.slice(start + 1)) {
    // The description may hold parentheses of its own: the sizes are the last ones on the line.
    const m = /^\s+([^\s:]+): (.*) \((\d+) MiB, (\d+) MiB free\)\s*$/.exec(line);
    if (!m) continue;
    devices.push({
      name: m[1],
      description: m[2],
      kind: "gpu",
      totalBytes: Number(m[3]) * MiB,
      freeBytes: Number(m[4]) * MiB,
    });
  }
  return devices;
}

/**
 * System RAM as the CPU device, from the text of `/proc/meminfo`: `MemAvailable` is what can be used without
 * swapping (page cache included), `MemTotal` the total. Undefined when either is missing.
 *
 * @example
 * ```ts
 * parseMeminfo("MemTotal: 16384 kB\nMemFree: 1024 kB\nMemAvailable: 8192 kB\n")?.freeBytes; // 8388608
 * ```
 */
export function parseMeminfo(text: string): Device | undefined {
  const kb = (key: string) => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(text);
    return m ? Number(m[1]) * 1024 : undefined;
  };
  const total = kb("MemTotal");
  const available = kb("MemAvailable");
  if (total === undefined || available === undefined) return undefined;
  return { name: "CPU", description: "system memory", kind: "cpu", totalBytes: total, freeBytes: available };
}

/**
 * System RAM now, as the CPU device: `/proc/meminfo` on Linux, Deno's view of memory elsewhere.
 *
 * @example
 * ```ts
 * const cpu = await systemMemory();
 * console.log(`${cpu.freeBytes} of ${cpu.totalBytes} bytes available`);
 * ```
 */
export async function systemMemory(): Promise<Device> {
  try {
    const parsed = parseMeminfo(await Deno.readTextFile("/proc/meminfo"));
    if (parsed) return parsed;
  } catch {
    // not Linux: below
  }
  const m = Deno.systemMemoryInfo();
  return {
    name: "CPU",
    description: "system memory",
    kind: "cpu",
    totalBytes: m.total,
    freeBytes: m.available,
  };
}

const cache = new Map<string, Promise<Device[]>>();
// System RAM is one device for every instance: read once, so that a later listing (another instance's, after
// models were loaded) does not see the daemon's own models as memory someone else took.
let ram: Promise<Device> | undefined;

/**
 * The devices of an instance: its llama-server's GPUs (`--list-devices`) then system RAM as `CPU`. The list is
 * taken once per llama-server binary, and system RAM once, and kept (a daemon takes its budgets from the memory
 * free when it first needs them, before it has loaded anything); `refresh` takes both again.
 *
 * @example
 * ```ts ignore
 * for (const d of await listDevices(await getInstance(paths))) console.log(d.name, d.freeBytes, d.totalBytes);
 * ```
 */
export function listDevices(
  instance: InstanceRecord,
  options: { refresh?: boolean } = {},
): Promise<Device[]> {
  const bin = binaryPath(instance, "llama-server");
  const cached = cache.get(bin);
  if (cached && !options.refresh) return cached;
  if (options.refresh || !ram) {
    ram = systemMemory();
    ram.catch(() => ram = undefined);
  }
  const memory = ram;
  const listed = (async () => {
    let gpus: Device[];
    try {
      const { stdout, stderr, code } = await run([bin, "--list-devices"], {
        check: false,
        timeoutMs: 60_000,
      });
      if (code !== 0) throw new Error(`exit code ${code}`);
      gpus = parseListDevices(stdout + "\n" + stderr);
    } catch (err) {
      throw new UserError(
        `cannot list the devices of instance '${instance.name}': ${(err as Error).message}`,
        { hint: `run \`${bin} --list-devices\` to see why, or rebuild it with \`llama-mgr update\`` },
      );
    }
    return [...gpus, await memory];
  })();
  cache.set(bin, listed);
  listed.catch(() => cache.delete(bin));
  return listed;
}

/**
 * The memory section of the config: what to hold back on every device, and budgets by device name.
 *
 * @example
 * ```ts
 * const memory: MemoryBudgetConfig = { reserve: "1GiB", budgets: { CPU: "8GiB", Vulkan0: "4GiB" } };
 * ```
 */
export interface MemoryBudgetConfig {
  /** Held back on every device (bytes, or a size such as `2GiB`). */
  reserve?: string | number;
  /** A device's budget (bytes or a size), instead of its free memory less the reserve. */
  budgets?: Record<string, string | number>;
}

/**
 * A device with the bytes models may use on it.
 *
 * @example
 * ```ts
 * const budget: DeviceBudget = {
 *   name: "CPU",
 *   description: "system memory",
 *   kind: "cpu",
 *   totalBytes: 16 * 2 ** 30,
 *   freeBytes: 12 * 2 ** 30,
 *   budgetBytes: 10 * 2 ** 30,
 * };
 * ```
 */
export interface DeviceBudget extends Device {
  /** What models may use on it, in bytes. */
  budgetBytes: number;
}

/**
 * The budget of each device: the config's `budgets[name]` when set, else its free memory less the reserve
 * (`memory.reserve` on every device; on GPUs `OLLAMA_GPU_OVERHEAD` instead, as Ollama holds it back per GPU).
 * Throws a {@linkcode UserError} for a size that cannot be read.
 *
 * @example
 * ```ts
 * const cpu = { name: "CPU", description: "RAM", kind: "cpu" as const, totalBytes: 16e9, freeBytes: 12e9 };
 * deviceBudgets([cpu], { reserve: "2GB" })[0].budgetBytes; // 10e9
 * ```
 */
export function deviceBudgets(
  devices: Device[],
  memory: MemoryBudgetConfig = {},
  env: Record<string, string | undefined> = {},
): DeviceBudget[] {
  const size = (value: string | number, where: string) => {
    const n = parseByteSize(value);
    if (n === undefined) {
      throw new UserError(`${where} is '${value}', not a size`, {
        hint: "write bytes or a size with a unit, e.g. 2GiB, 512MiB, 4GB",
      });
    }
    return n;
  };
  const reserve = memory.reserve === undefined ? 0 : size(memory.reserve, "memory.reserve");
  const overheadVar = env.OLLAMA_GPU_OVERHEAD?.trim();
  const gpuReserve = overheadVar ? size(overheadVar, "OLLAMA_GPU_OVERHEAD") : reserve;
  return devices.map((d) => {
    const set = memory.budgets?.[d.name];
    const budget = set !== undefined
      ? size(set, `memory.budgets.${d.name}`)
      : d.freeBytes - (d.kind === "gpu" ? gpuReserve : reserve);
    return { ...d, budgetBytes: Math.max(0, budget) };
  });
}

/**
 * One line about a device for people: name, what it is, free and total memory, and the budget when known.
 *
 * @example
 * ```ts
 * const cpu = { name: "CPU", description: "system memory", kind: "cpu" as const, totalBytes: 2 ** 34, freeBytes: 2 ** 33 };
 * formatDevice(cpu); // "CPU: system memory, 8.0 GiB free of 16.0 GiB"
 * ```
 */
export function formatDevice(device: Device | DeviceBudget): string {
  const budget = "budgetBytes" in device ? `, budget ${formatBytes(device.budgetBytes)}` : "";
  return `${device.name}: ${device.description}, ${formatBytes(device.freeBytes)} free of ${
    formatBytes(device.totalBytes)
  }${budget}`;
}
