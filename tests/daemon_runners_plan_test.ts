/**
 * The daemon's launcher plans a model on the instance its preset names (`instance:`): a model pinned to a
 * Vulkan build is planned on that build's devices, from its `llama-server --list-devices` run with the
 * environment the server gets (a script printing a Vulkan build's listing stands in for the device, shown only
 * when GGML_VK_VISIBLE_DEVICES names it, as llama.cpp does with Mesa's lavapipe), another on the shared CPU
 * build's; with no `num_gpu` the scheduler gives the pinned model the most layers the GPU budget holds.
 */
import { assert, assertEquals } from "./_assert.ts";
import { join } from "node:path";
import { smolModelPath, tempDir, testInstance } from "./_fixtures.ts";
import { resolvePaths } from "../lib/config/paths.ts";
import { parseConfig } from "../lib/config/load.ts";
import { writeInstance } from "../lib/llamacpp/instances.ts";
import { describeModel, readGgufHeader } from "../lib/gguf/mod.ts";
import { createScheduler, type Launcher, serverLauncher } from "../lib/daemon/runners/mod.ts";
import type { CatalogModel } from "../lib/models/mod.ts";

const MiB = 2 ** 20;

Deno.test("launcher: each model is planned on its own instance's devices, and GPU layers are fitted to the budget", async () => {
  const { instance: cpu } = await testInstance();
  const d = await tempDir();
  try {
    const paths = resolvePaths({ dataDir: d.path, env: {} });
    const vkBin = join(d.path, "vulkan-bin");
    await Deno.mkdir(vkBin, { recursive: true });
    await Deno.writeTextFile(
      join(vkBin, "llama-server"),
      `#!/bin/sh
echo "Available devices:"
# As llama.cpp does with Mesa's software device: listed only when GGML_VK_VISIBLE_DEVICES names it.
if [ -n "$GGML_VK_VISIBLE_DEVICES" ]; then
  echo "ggml_vulkan: Found 1 Vulkan devices:" >&2
  echo "  Vulkan0: llvmpipe (LLVM 15.0.6, 256 bits) (2048 MiB, 2048 MiB free)"
fi
`,
      { mode: 0o755 },
    );
    await writeInstance(paths, { ...cpu, name: "cpu" });
    await writeInstance(paths, { ...cpu, name: "vulkan", arch: "vulkan", binDir: vkBin });
    const config = parseConfig({
      presets: {
        pinned: { model: "smol-vk", instance: "vulkan", env: { GGML_VK_VISIBLE_DEVICES: "0" } },
        plain: { model: "smol-nov", instance: "vulkan" },
      },
      memory: { budgets: { Vulkan0: "100MiB" } },
    });
    const path = await smolModelPath();
    const facts = describeModel(await readGgufHeader(path, { skipArraysOver: 256 }));
    // Two files (a link for the second name: one file under two names would share one runner).
    const linked = join(d.path, "smol-vk.gguf");
    await Deno.symlink(path, linked);
    const linkedNov = join(d.path, "smol-nov.gguf");
    await Deno.symlink(path, linkedNov);
    const model = (name: string): CatalogModel => {
      const file = name.startsWith("smol-vk") ? linked : name.startsWith("smol-nov") ? linkedNov : path;
      return {
        name,
        copy: false,
        entry: {
          name,
          aliases: [],
          path: file,
          files: [file],
          source: "dir",
          sizeBytes: facts.tensorBytes,
          mtimeMs: 0,
          facts,
        },
      };
    };
    const logs: string[] = [];
    const launcher = await serverLauncher({
      paths,
      config,
      instance: "cpu",
      env: {},
      log: (l) => logs.push(l),
    });
    const load = { ctx: 4096 };

    // Devices are listed with the environment the server gets: without the variable the device is hidden,
    // the model is planned on the CPU, and the log says how to use the device.
    const hidden = await launcher.plan!({ model: model("smol-nov:latest"), load, embedding: false });
    assertEquals(hidden.devices.map((x) => x.name), ["CPU"]);
    assertEquals(logs.filter((l) => l.includes("lists no Vulkan device")).length, 1, logs.join("\n"));
    assert(logs.some((l) => l.includes("GGML_VK_VISIBLE_DEVICES=0 in the preset's env")), logs.join("\n"));
    // The instance's own environment (build.instances.<name>.env) does it for every model on it.
    const withInstanceEnv = await serverLauncher({
      paths,
      config: parseConfig({
        ...config,
        build: { instances: { vulkan: { env: { GGML_VK_VISIBLE_DEVICES: "0" } } } },
      }),
      instance: "cpu",
      env: {},
    });
    const viaInstance = await withInstanceEnv.plan!({
      model: model("smol-nov:latest"),
      load,
      embedding: false,
    });
    assertEquals(viaInstance.devices.map((x) => x.name), ["Vulkan0", "CPU"]);

    const onCpu = await launcher.plan!({ model: model("smol:latest"), load, embedding: false });
    assertEquals(onCpu.devices.map((x) => x.name), ["CPU"]);
    const pinned = await launcher.plan!({ model: model("smol-vk:latest"), load, embedding: false });
    assertEquals(pinned.devices.map((x) => [x.name, x.kind, x.budgetBytes / MiB]).slice(0, 1), [[
      "Vulkan0",
      "gpu",
      100,
    ]]);
    assertEquals(pinned.devices.map((x) => x.name), ["Vulkan0", "CPU"]);
    assertEquals(pinned.need.layers, facts.blockCount);
    assert(pinned.need.totalBytes > 150 * MiB, `SmolLM2 at 4096 tokens: ${pinned.need.totalBytes / MiB} MiB`);

    // The scheduler with this planner (and a start that only records what it was asked).
    const started: { name: string; ngl?: number }[] = [];
    const recording: Launcher = {
      plan: launcher.plan,
      start: (spec) => {
        started.push({ name: spec.model.name, ngl: spec.load.ngl });
        return Promise.resolve({ url: `http://127.0.0.1:${40000 + started.length}` });
      },
      stop: () => Promise.resolve(),
      alive: () => true,
    };
    const sched = createScheduler({ launcher: recording, maxLoaded: 3 });
    (await sched.acquire({ model: model("smol-vk:latest"), load, keepAliveMs: 60_000 })).release();
    (await sched.acquire({ model: model("smol:latest"), load, keepAliveMs: 60_000 })).release();
    const ngl = started[0].ngl!;
    assert(ngl > 0 && ngl < facts.blockCount, `part of the layers on the GPU: ${ngl} of ${facts.blockCount}`);
    assertEquals(started[1], { name: "smol:latest", ngl: undefined }, "the CPU build gets no -ngl");
    const [vk, plain] = ["smol-vk:latest", "smol:latest"].map((n) => sched.list().find((r) => r.name === n)!);
    assert(vk.sizeVramBytes > 50 * MiB && vk.sizeVramBytes <= 100 * MiB, `${vk.sizeVramBytes / MiB} MiB`);
    assertEquals(Object.keys(vk.usage), ["Vulkan0", "CPU"]);
    assertEquals([plain.sizeVramBytes, Object.keys(plain.usage)], [0, ["CPU"]]);
    console.log(
      `SmolLM2 at 4096 tokens: ${
        (pinned.need.totalBytes / MiB).toFixed(0)
      } MiB; a Vulkan0 budget of 100 MiB ` +
        `takes ${ngl} of ${facts.blockCount + 1} layers (${(vk.sizeVramBytes / MiB).toFixed(0)} MiB)`,
    );
    await sched.stopAll();
  } finally {
    await d.cleanup();
  }
});
