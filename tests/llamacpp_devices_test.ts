/**
 * Devices and budgets: `llama-server --list-devices` as CUDA, ROCm, Vulkan and Metal builds print it (the format
 * of llama.cpp's `common_print_available_devices`, with the backends' own log lines around it), system RAM from
 * `/proc/meminfo`, the budgets the config and `OLLAMA_GPU_OVERHEAD` make of them, and the real CPU build of the
 * shared fixture, which lists no GPU.
 */
import { assert, assertEquals, assertMatch, assertThrows } from "./_assert.ts";
import {
  describeDevices,
  type Device,
  deviceBudgets,
  formatDevice,
  listDeviceLines,
  listDevices,
  parseListDevices,
  parseMeminfo,
  serverEnv,
} from "../lib/llamacpp/devices.ts";
import { join } from "node:path";
import { resolvePaths } from "../lib/config/paths.ts";
import { writeInstance } from "../lib/llamacpp/instances.ts";
import { parseByteSize } from "../lib/util/bytes.ts";
import { UserError } from "../lib/util/errors.ts";
import { parseConfig } from "../lib/config/load.ts";
import { cli, tempDir, testInstance } from "./_fixtures.ts";

const MiB = 2 ** 20;
const GiB = 2 ** 30;

const CUDA = `ggml_cuda_init: GGML_CUDA_FORCE_MMQ:    no
ggml_cuda_init: GGML_CUDA_FORCE_CUBLAS: no
ggml_cuda_init: found 2 CUDA devices:
  Device 0: NVIDIA GeForce RTX 4090, compute capability 8.9, VMM: yes
  Device 1: NVIDIA GeForce RTX 3090, compute capability 8.6, VMM: yes
Available devices:
  CUDA0: NVIDIA GeForce RTX 4090 (24080 MiB, 23664 MiB free)
  CUDA1: NVIDIA GeForce RTX 3090 (24135 MiB, 23873 MiB free)
`;

const ROCM = `ggml_cuda_init: found 1 ROCm devices:
  Device 0: AMD Radeon RX 7900 XTX, gfx1100 (0x1100), VMM: no, Wave Size: 32
Available devices:
  ROCm0: AMD Radeon RX 7900 XTX (24560 MiB, 24472 MiB free)
`;

const VULKAN = `ggml_vulkan: Found 2 Vulkan devices:
ggml_vulkan: 0 = AMD Radeon RX 7900 XTX (RADV NAVI31) (radv) | uma: 0 | fp16: 1 | bf16: 0 | warp size: 64
ggml_vulkan: 1 = llvmpipe (LLVM 15.0.7, 256 bits) (llvmpipe) | uma: 1 | fp16: 1 | bf16: 0 | warp size: 8
Available devices:
  Vulkan0: AMD Radeon RX 7900 XTX (RADV NAVI31) (24560 MiB, 24232 MiB free)
  Vulkan1: llvmpipe (LLVM 15.0.7, 256 bits) (32011 MiB, 32011 MiB free)
`;

const METAL = `ggml_metal_init: found device: Apple M2 Max
Available devices:
  Metal: Apple M2 Max (98304 MiB, 98303 MiB free)
`;

const METAL_NEW = `Available devices:
  MTL0: Apple M3 Pro (27648 MiB, 27647 MiB free)
  BLAS: Accelerate (0 MiB, 0 MiB free)
`;

Deno.test("parseListDevices reads CUDA, ROCm, Vulkan and Metal builds' lists, and nothing from the backends' logs", async (t) => {
  const brief = (devices: Device[]) =>
    devices.map((d) => [d.name, d.description, d.totalBytes / MiB, d.freeBytes / MiB]);
  await t.step("CUDA, two GPUs", () => {
    assertEquals(brief(parseListDevices(CUDA)), [
      ["CUDA0", "NVIDIA GeForce RTX 4090", 24080, 23664],
      ["CUDA1", "NVIDIA GeForce RTX 3090", 24135, 23873],
    ]);
    assert(parseListDevices(CUDA).every((d) => d.kind === "gpu"));
  });
  await t.step("ROCm", () => {
    assertEquals(brief(parseListDevices(ROCM)), [["ROCm0", "AMD Radeon RX 7900 XTX", 24560, 24472]]);
  });
  await t.step("Vulkan, with parentheses in the descriptions", () => {
    assertEquals(brief(parseListDevices(VULKAN)), [
      ["Vulkan0", "AMD Radeon RX 7900 XTX (RADV NAVI31)", 24560, 24232],
      ["Vulkan1", "llvmpipe (LLVM 15.0.7, 256 bits)", 32011, 32011],
    ]);
  });
  await t.step("Metal, old and new names", () => {
    assertEquals(brief(parseListDevices(METAL)), [["Metal", "Apple M2 Max", 98304, 98303]]);
    assertEquals(brief(parseListDevices(METAL_NEW)).map((d) => d[0]), ["MTL0", "BLAS"]);
  });
  await t.step("a CPU build lists none; output without the header is an error", () => {
    assertEquals(parseListDevices("Available devices:\n  (none)\n"), []);
    assertThrows(
      () => parseListDevices("error: unknown argument: --list-devices\n"),
      Error,
      "Available devices:",
    );
  });
});

Deno.test("parseMeminfo takes MemAvailable as free and MemTotal as total", () => {
  const text = "MemTotal:       24576000 kB\nMemFree:         1000000 kB\nMemAvailable:   20000000 kB\n";
  assertEquals(parseMeminfo(text), {
    name: "CPU",
    description: "system memory",
    kind: "cpu",
    totalBytes: 24576000 * 1024,
    freeBytes: 20000000 * 1024,
  });
  assertEquals(parseMeminfo("MemTotal: 100 kB\n"), undefined);
});

Deno.test("deviceBudgets: free less the reserve, a device's own budget, OLLAMA_GPU_OVERHEAD on GPUs", () => {
  const gpu = parseListDevices(VULKAN)[0]; // 24232 MiB free
  const cpu = parseMeminfo("MemTotal: 33554432 kB\nMemAvailable: 16777216 kB\n")!; // 16 GiB available
  const budgets = (memory: Parameters<typeof deviceBudgets>[1], env = {}) =>
    deviceBudgets([gpu, cpu], memory, env).map((d) => [d.name, d.budgetBytes / MiB]);
  assertEquals(budgets({}), [["Vulkan0", 24232], ["CPU", 16384]], "no config: what is free");
  assertEquals(budgets({ reserve: "2GiB" }), [["Vulkan0", 22184], ["CPU", 14336]]);
  assertEquals(budgets({ reserve: "2GiB", budgets: { CPU: "8GiB", Vulkan0: 4 * GiB } }), [["Vulkan0", 4096], [
    "CPU",
    8192,
  ]]);
  assertEquals(
    budgets({ reserve: "2GiB" }, { OLLAMA_GPU_OVERHEAD: String(512 * MiB) }),
    [["Vulkan0", 23720], ["CPU", 14336]],
    "Ollama's variable (bytes) holds back on GPUs only",
  );
  assertEquals(budgets({ reserve: "64GiB" }), [["Vulkan0", 0], ["CPU", 0]], "never below zero");
  const err = assertThrows(() => budgets({ budgets: { CPU: "lots" } }), UserError);
  assertEquals(err.message, "memory.budgets.CPU is 'lots', not a size");
  assertThrows(() => budgets({}, { OLLAMA_GPU_OVERHEAD: "-1" }), UserError, "OLLAMA_GPU_OVERHEAD");
  assertEquals(
    formatDevice(deviceBudgets([cpu], { reserve: "1GiB" })[0]),
    "CPU: system memory, 16.0 GiB free of 32.0 GiB, budget 15.0 GiB",
  );
});

Deno.test("sizes are read as people write them, and the config refuses the others", () => {
  assertEquals(
    ["2GiB", "2 GiB", "512MiB", "1.5GB", "8g", "100", 4096].map(parseByteSize),
    [2 * GiB, 2 * GiB, 512 * MiB, 1.5e9, 8e9, 100, 4096],
  );
  assertEquals(["", "-1", "2 XB", "GiB", -5].map(parseByteSize), [
    undefined,
    undefined,
    undefined,
    undefined,
    undefined,
  ]);
  const config = parseConfig({
    memory: { reserve: "2GiB", budgets: { CPU: "8GiB" } },
    groups: { big: { members: ["llama3:70b"], exclusive: true } },
  });
  assertEquals(config.memory, { reserve: "2GiB", budgets: { CPU: "8GiB" } });
  assertEquals(config.groups, { big: { members: ["llama3:70b"], swap: false, exclusive: true } });
  assertEquals(parseConfig({}).memory, { budgets: {} });
  const bad = assertThrows(() => parseConfig({ memory: { reserve: "two gigs" } }), UserError);
  assert(bad.message.includes("memory.reserve"), bad.message);
  assertThrows(() => parseConfig({ groups: { g: { members: [], swap: true } } }), UserError);
});

Deno.test("listDevices on the shared CPU build: no GPU, system RAM as the CPU device, listed once", async () => {
  const { instance } = await testInstance();
  const devices = await listDevices(instance, { refresh: true });
  assertEquals(devices.map((d) => [d.name, d.kind]), [["CPU", "cpu"]]);
  assert(devices[0].freeBytes > 0 && devices[0].freeBytes <= devices[0].totalBytes, JSON.stringify(devices));
  assert(await listDevices(instance) === await listDevices(instance), "kept per binary");
  const broken = { ...instance, name: "broken", binDir: "/nonexistent" };
  const err = await listDevices(broken).then(() => undefined, (e) => e);
  assert(err instanceof UserError, String(err));
  assert(err.message.startsWith("cannot list the devices of instance 'broken'"), err.message);
});

Deno.test("instances show and doctor print each instance's devices with free, total and budget", async () => {
  const { paths } = await testInstance();
  const env = { LLAMA_MGR_CONFIG: "/nonexistent/config.yaml" };
  const show = await cli(["-d", paths.dataDir, "instances", "show", "cpu"], { env });
  assertEquals(show.code, 0, show.stderr);
  assertMatch(
    show.stdout,
    /\ndevices\s+CPU: system memory, [\d.]+ GiB free of [\d.]+ GiB, budget [\d.]+ GiB\n/,
  );
  const doctor = await cli(["-d", paths.dataDir, "doctor", "--arch", "cpu"], { env });
  assertMatch(
    doctor.stdout,
    /\ndevices of cpu:\n {2}CPU: system memory, [\d.]+ GiB free of [\d.]+ GiB, budget/,
  );
});

Deno.test("devices are listed with the environment the server gets, kept per instance and environment", async (t) => {
  const { instance: cpu } = await testInstance();
  const d = await tempDir();
  try {
    // A Vulkan build's listing as llama.cpp prints it on Mesa's software device: shown only when
    // GGML_VK_VISIBLE_DEVICES names it. Each run is counted.
    const bin = join(d.path, "bin");
    await Deno.mkdir(bin);
    const calls = join(d.path, "calls");
    await Deno.writeTextFile(
      join(bin, "llama-server"),
      `#!/bin/sh
echo run >> "${calls}"
echo "Available devices:"
[ -n "$GGML_VK_VISIBLE_DEVICES" ] && echo "  Vulkan0: llvmpipe (LLVM 15.0.6, 256 bits) (2048 MiB, 2048 MiB free)"
exit 0
`,
      { mode: 0o755 },
    );
    const runs = async () => (await Deno.readTextFile(calls).catch(() => "")).split("\n").length - 1;
    const vk = { ...cpu, name: "vk", arch: "vulkan" as const, binDir: bin };
    const lavapipe = { GGML_VK_VISIBLE_DEVICES: "0" };

    await t.step(
      "listDevices: without the variable no GPU, with it the device; each listed once",
      async () => {
        assertEquals((await listDevices(vk)).map((x) => x.name), ["CPU"]);
        const seen = await listDevices(vk, { env: lavapipe });
        assertEquals(seen.map((x) => [x.name, x.kind, x.totalBytes / MiB]).slice(0, 1), [[
          "Vulkan0",
          "gpu",
          2048,
        ]]);
        assert(await listDevices(vk, { env: { ...lavapipe } }) === await listDevices(vk, { env: lavapipe }));
        assertEquals(await runs(), 2, "one run per environment");
      },
    );

    await t.step("listDeviceLines: a Vulkan build that lists nothing names the hidden device", async () => {
      const listing = await listDeviceLines(bin, { arch: "vulkan" });
      assertEquals([listing.lines, listing.error], [[], undefined]);
      assertEquals(describeDevices(listing), [
        "Vulkan0: llvmpipe (LLVM 15.0.6, 256 bits) (2048 MiB, 2048 MiB free) " +
        "[CPU-type: used only with GGML_VK_VISIBLE_DEVICES=0]",
      ]);
      const shown = await listDeviceLines(bin, { arch: "vulkan", env: lavapipe });
      assertEquals([shown.lines.length, shown.hidden, shown.devices[0].name], [1, undefined, "Vulkan0"]);
    });

    await t.step("serverEnv: the preset's variables over the instance's", () => {
      const config = parseConfig({ build: { instances: { vk: { env: { A: "1", B: "1" } } } } });
      assertEquals(serverEnv(config, "vk", { B: "2" }), { A: "1", B: "2" });
      assertEquals(serverEnv(config, "other"), {});
      const bad = assertThrows(
        () => parseConfig({ build: { instances: { vk: { env: { "NOT A NAME": "1" } } } } }),
        UserError,
      );
      assert(bad.message.includes("build.instances.vk.env"), bad.message);
    });

    await t.step("instances show and doctor print the device a preset's environment shows", async () => {
      const data = join(d.path, "data");
      const paths = resolvePaths({ dataDir: data, env: {} });
      await writeInstance(paths, vk);
      const configFile = join(d.path, "config.yaml");
      await Deno.writeTextFile(
        configFile,
        "presets:\n  onvk: { model: smol, instance: vk, env: { GGML_VK_VISIBLE_DEVICES: '0' } }\n" +
          "  same: { model: other, instance: vk }\nmemory: { budgets: { Vulkan0: 1GiB } }\n",
      );
      const env = { LLAMA_MGR_CONFIG: configFile };
      const show = await cli(["-d", data, "instances", "show", "vk"], { env });
      assertEquals(show.code, 0, show.stderr);
      assertMatch(
        show.stdout,
        new RegExp(
          "\\ndevices +CPU: system memory, .*\\n +Vulkan0: llvmpipe .*\\[CPU-type: used only with " +
            "GGML_VK_VISIBLE_DEVICES=0\\]\\n +with the env of preset onvk:\\n +Vulkan0: llvmpipe \\(LLVM " +
            "15\\.0\\.6, 256 bits\\), 2\\.0 GiB free of 2\\.0 GiB, budget 1\\.0 GiB\\n +CPU: ",
        ),
      );
      assert(!show.stdout.includes("preset same"), "a preset with the instance's environment adds nothing");
      const doctor = await cli(["-d", data, "doctor", "--arch", "cpu"], { env });
      assertMatch(
        doctor.stdout,
        /devices of vk:\n {2}CPU: .*\n {2}Vulkan0: .*\[CPU-type.*\n {2}with the env of preset onvk:\n {4}Vulkan0: llvmpipe .*budget 1\.0 GiB\n/,
      );
    });
  } finally {
    await d.cleanup();
  }
});
