/**
 * The devices an instance's llama-server can use and the memory each has, from llama.cpp itself:
 * `llama-server --list-devices` names the GPUs (CUDA, ROCm, Vulkan, Metal, SYCL builds alike) with their total
 * and free memory, and system RAM (`MemAvailable` of `/proc/meminfo`) is the CPU device. The daemon's scheduler
 * packs models into the budgets made from them ({@linkcode deviceBudgets}).
 *
 * @module
 */
import { join } from "node:path";
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

/** The variable that makes llama.cpp's Vulkan backend use the devices it names, CPU-type ones included. */
export const VK_VISIBLE = "GGML_VK_VISIBLE_DEVICES";

/**
 * What one `llama-server --list-devices` run said.
 *
 * @example
 * ```ts
 * const listing: DeviceListing = { lines: [], devices: [], hidden: ["Vulkan0: llvmpipe (2048 MiB, 2048 MiB free)"] };
 * ```
 */
export interface DeviceListing {
  /** The device lines as llama-server printed them. */
  lines: string[];
  /** The GPUs read from them. */
  devices: Device[];
  /** For a Vulkan build that lists nothing: the CPU-type devices it hides, as listed when asked for. */
  hidden?: string[];
  /** Why there is no listing (it would not run, or printed no `Available devices:`). */
  error?: string;
}

/** Runs `llama-server --list-devices` once, with `env` over the process's environment. */
async function runListDevices(
  bin: string,
  env: Record<string, string> | undefined,
  timeoutMs: number,
): Promise<DeviceListing> {
  try {
    const r = await run([bin, "--list-devices"], { check: false, env, timeoutMs });
    if (r.code !== 0) {
      return { lines: [], devices: [], error: `exit code ${r.code}: ${r.tail.slice(-2).join(" ").trim()}` };
    }
    const text = `${r.stdout}\n${r.stderr}`;
    const lines = text.split("\n").map((l) => l.trim()).filter((l) =>
      /^[A-Za-z][\w-]*:\s/.test(l) && /\(\d+ MiB, \d+ MiB free\)$/.test(l)
    );
    return { lines, devices: parseListDevices(text) };
  } catch (err) {
    return { lines: [], devices: [], error: (err as Error).message };
  }
}

/**
 * The one way llama-mgr runs `llama-server --list-devices`: the device lines of a build (one per device, with
 * its memory) and the devices read from them, or the reason there are none. `env` is the environment the
 * server would run with (a preset's and its instance's, {@linkcode serverEnv}): it decides what llama.cpp
 * sees. llama.cpp's Vulkan backend hides CPU-type devices (Mesa's lavapipe) unless
 * `GGML_VK_VISIBLE_DEVICES` names them: with `arch: "vulkan"`, a build that lists nothing is asked again
 * with them named, and those come back apart, as `hidden`.
 *
 * @example
 * ```ts ignore
 * const d = await listDeviceLines("/data/instances/vulkan/releases/x/bin", { arch: "vulkan" });
 * // { lines: [], devices: [], hidden: ["Vulkan0: llvmpipe (LLVM 15.0.6, 256 bits) (2048 MiB, 2048 MiB free)"] }
 * ```
 */
export async function listDeviceLines(
  binDir: string,
  options: { env?: Record<string, string>; timeoutMs?: number; arch?: string } = {},
): Promise<DeviceListing> {
  const bin = join(binDir, "llama-server");
  const timeoutMs = options.timeoutMs ?? 60_000;
  const d = await runListDevices(bin, options.env, timeoutMs);
  if (d.error || d.lines.length || options.arch !== "vulkan" || options.env?.[VK_VISIBLE] !== undefined) {
    return d;
  }
  const all = await runListDevices(bin, { ...options.env, [VK_VISIBLE]: "0" }, timeoutMs);
  return all.lines.length ? { ...d, hidden: all.lines } : d;
}

/**
 * One line per device for `doctor` and `instances show`: llama-server's own words, hidden software devices
 * marked with how to use them.
 *
 * @example
 * ```ts
 * describeDevices({ lines: [], devices: [], hidden: ["Vulkan0: llvmpipe (2048 MiB, 2048 MiB free)"] });
 * // ["Vulkan0: llvmpipe (2048 MiB, 2048 MiB free) [CPU-type: used only with GGML_VK_VISIBLE_DEVICES=0]"]
 * ```
 */
export function describeDevices(d: DeviceListing): string[] {
  if (d.lines.length) return d.lines;
  if (d.hidden?.length) {
    return d.hidden.map((l, i) => `${l} [CPU-type: used only with ${VK_VISIBLE}=${i}]`);
  }
  return [d.error ? `cannot list (${d.error})` : "CPU only"];
}

/**
 * The environment an instance's llama-server runs with, over the daemon's own: the instance's
 * (`build.instances.<name>.env` in the config), then the preset's. Its devices are listed with the same.
 *
 * @example
 * ```ts
 * const config = { build: { instances: { vulkan: { env: { GGML_VK_VISIBLE_DEVICES: "0" } } } } };
 * serverEnv(config, "vulkan", { LLAMA_ARG_THREADS: "2" });
 * // { GGML_VK_VISIBLE_DEVICES: "0", LLAMA_ARG_THREADS: "2" }
 * ```
 */
export function serverEnv(
  config: { build?: { instances?: Record<string, { env?: Record<string, string> }> } },
  instance: string,
  presetEnv: Record<string, string> = {},
): Record<string, string> {
  return { ...config.build?.instances?.[instance]?.env, ...presetEnv };
}

const cache = new Map<string, Promise<Device[]>>();
// System RAM is one device for every instance: read once, so that a later listing (another instance's, after
// models were loaded) does not see the daemon's own models as memory someone else took.
let ram: Promise<Device> | undefined;

/**
 * The devices of an instance as its llama-server sees them with `env` (over the process's environment; see
 * {@linkcode serverEnv}): its GPUs (`--list-devices`) then system RAM as `CPU`. The list is taken once per
 * llama-server binary and environment, and system RAM once, and kept (a daemon takes its budgets from the
 * memory free when it first needs them, before it has loaded anything); `refresh` takes both again.
 *
 * @example
 * ```ts ignore
 * for (const d of await listDevices(await getInstance(paths), { env: { GGML_VK_VISIBLE_DEVICES: "0" } })) {
 *   console.log(d.name, d.freeBytes, d.totalBytes);
 * }
 * ```
 */
export function listDevices(
  instance: InstanceRecord,
  options: { refresh?: boolean; env?: Record<string, string> } = {},
): Promise<Device[]> {
  const bin = binaryPath(instance, "llama-server");
  const env = options.env && Object.keys(options.env).length ? options.env : undefined;
  const key = `${bin}\0${JSON.stringify(Object.entries(env ?? {}).sort(([a], [b]) => a.localeCompare(b)))}`;
  const cached = cache.get(key);
  if (cached && !options.refresh) return cached;
  if (options.refresh || !ram) {
    ram = systemMemory();
    ram.catch(() => ram = undefined);
  }
  const memory = ram;
  const listed = (async () => {
    const d = await runListDevices(bin, env, 60_000);
    if (d.error) {
      // The variables' names only: a preset's environment may hold secrets.
      const withEnv = env ? ` with ${Object.keys(env).join(", ")} set as for the server` : "";
      throw new UserError(`cannot list the devices of instance '${instance.name}': ${d.error}`, {
        hint: `run \`${bin} --list-devices\`${withEnv} to see why, or rebuild it with \`llama-mgr update\``,
      });
    }
    return [...d.devices, await memory];
  })();
  cache.set(key, listed);
  listed.catch(() => cache.delete(key));
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

/**
 * An instance's devices with the budgets the daemon packs models into, as seen with one environment: the
 * instance's own (`presets` empty), or that of the presets that run on it with an `env` that changes what
 * llama-server lists.
 *
 * @example
 * ```ts ignore
 * for (const v of await instanceDeviceViews(instance, config)) console.log(v.presets, v.devices?.length);
 * ```
 */
export interface DeviceView {
  /** The presets whose environment this is; empty for the instance's own. */
  presets: string[];
  /** The devices and budgets, unless they could not be listed. */
  devices?: DeviceBudget[];
  /** Why they could not be listed. */
  error?: string;
  /** Vulkan devices hidden with this environment, each with how to use it ({@linkcode describeDevices}). */
  hidden: string[];
}

/**
 * The devices `doctor` and `instances show` print for an instance: those its llama-server lists with the
 * instance's environment ({@linkcode serverEnv}), then, for presets on it whose `env` makes llama-server list
 * other devices (`GGML_VK_VISIBLE_DEVICES`, `CUDA_VISIBLE_DEVICES`...), those too, as the daemon will see
 * them. Presets without `instance:` count for the default instance (`isDefault`).
 *
 * @example
 * ```ts ignore
 * const views = await instanceDeviceViews(instance, config, { isDefault: true });
 * for (const v of views) for (const d of v.devices ?? []) console.log(v.presets.join(","), formatDevice(d));
 * ```
 */
export async function instanceDeviceViews(
  instance: InstanceRecord,
  config: {
    memory?: MemoryBudgetConfig;
    presets?: Record<string, { instance?: string; env?: Record<string, string> }>;
    build?: { instances?: Record<string, { env?: Record<string, string> }> };
  },
  options: { isDefault?: boolean; env?: Record<string, string | undefined> } = {},
): Promise<DeviceView[]> {
  const processEnv = options.env ?? Deno.env.toObject();
  const keyOf = (env: Record<string, string>) =>
    JSON.stringify(Object.entries(env).sort(([a], [b]) => a.localeCompare(b)));
  const view = async (env: Record<string, string>, presets: string[]): Promise<DeviceView> => {
    const out: DeviceView = { presets, hidden: [] };
    try {
      out.devices = deviceBudgets(await listDevices(instance, { env }), config.memory, processEnv);
    } catch (err) {
      out.error = (err as Error).message;
    }
    if (instance.arch === "vulkan" && out.devices && !out.devices.some((d) => d.kind === "gpu")) {
      const d = await listDeviceLines(instance.binDir, { env, arch: instance.arch, timeoutMs: 30_000 });
      if (d.hidden?.length) out.hidden = describeDevices(d);
    }
    return out;
  };
  const own = serverEnv(config, instance.name);
  const views = [await view(own, [])];
  const groups = new Map<string, { env: Record<string, string>; presets: string[] }>();
  for (const [name, preset] of Object.entries(config.presets ?? {})) {
    if (!(preset.instance === instance.name || (!preset.instance && options.isDefault))) continue;
    const env = serverEnv(config, instance.name, preset.env);
    const key = keyOf(env);
    if (key === keyOf(own)) continue;
    const group = groups.get(key) ?? { env, presets: [] };
    group.presets.push(name);
    groups.set(key, group);
  }
  // Free memory moves between two listings: which devices there are is what an environment changes.
  const gpus = (v: DeviceView) =>
    v.error ?? v.devices?.filter((d) => d.kind === "gpu").map((d) => `${d.name} ${d.description}`).join("\n");
  for (const g of groups.values()) {
    const v = await view(g.env, g.presets);
    if (gpus(v) !== gpus(views[0])) views.push(v);
  }
  return views;
}

/**
 * An instance's devices for people ({@linkcode instanceDeviceViews}): those of its own environment, then
 * those that presets' environments show, indented under the presets' names.
 *
 * @example
 * ```ts
 * const cpu = { name: "CPU", description: "system memory", kind: "cpu" as const, totalBytes: 2 ** 34, freeBytes: 2 ** 33, budgetBytes: 2 ** 33 };
 * formatDeviceViews([{ presets: [], devices: [cpu], hidden: [] }]);
 * // ["CPU: system memory, 8.0 GiB free of 16.0 GiB, budget 8.0 GiB"]
 * ```
 */
export function formatDeviceViews(views: DeviceView[]): string[] {
  const lines = (
    v: DeviceView,
  ) => [...(v.error ? [v.error] : (v.devices ?? []).map(formatDevice)), ...v.hidden];
  const out = views.length ? lines(views[0]) : [];
  for (const v of views.slice(1)) {
    out.push(`with the env of preset${v.presets.length > 1 ? "s" : ""} ${v.presets.join(", ")}:`);
    out.push(...lines(v).map((l) => `  ${l}`));
  }
  return out;
}
