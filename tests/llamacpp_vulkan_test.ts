/**
 * A real Vulkan build beside the CPU one, run on Mesa's software Vulkan device (lavapipe): the device with its
 * memory, the same model served through both with greedy decoding, and the daemon running one model on each
 * instance at once, the Vulkan one with its GPU layers fitted to a device budget. The Vulkan instance is built
 * once into the shared fixtures (instance `vulkan`, like the CPU fixture `cpu`) and reused. Opt-in
 * (LLAMA_MGR_SLOW=1): the build takes 18 to 45 minutes on this machine, and a run 5 to 7 (lavapipe compiles
 * its pipelines on the CPU when a model loads).
 *
 * @module
 */
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./_assert.ts";
import { join } from "node:path";
import { bundlePath, cli, smolModelPath, tempDir, testInstance, testPaths } from "./_fixtures.ts";
import { post, withDaemon } from "./_daemon.ts";
import { installInstance } from "../lib/llamacpp/install.ts";
import { type InstanceRecord, readInstance } from "../lib/llamacpp/instances.ts";
import { findGlslc, glslcSupports, vulkanRequirements } from "../lib/llamacpp/toolchain.ts";
import { listDeviceLines, VK_VISIBLE } from "../lib/llamacpp/devices.ts";
import { resolvePaths } from "../lib/config/paths.ts";
import { startServer, stopServer } from "../lib/server/supervisor.ts";
import { serverLogPath } from "../lib/server/logs.ts";
import { exists } from "../lib/util/fs.ts";
import { createProgress } from "../lib/util/progress.ts";

const SLOW = Deno.env.get("LLAMA_MGR_SLOW") === "1";
/** What makes llama.cpp use Mesa's CPU-type Vulkan device. */
const LAVAPIPE = { [VK_VISIBLE]: "0" };

async function whyNot(): Promise<string | undefined> {
  const missing = (await vulkanRequirements({ needs: [] })).filter((r) => !r.ok).map((r) => r.pkg);
  if (missing.length) {
    return `the Vulkan build needs ${missing.join(", ")} (apt install ${missing.join(" ")})`;
  }
  const icd = await exists("/usr/share/vulkan/icd.d/lvp_icd.x86_64.json") ||
    await exists("/usr/share/vulkan/icd.d/lvp_icd.aarch64.json");
  if (!icd) return "no Mesa lavapipe driver (apt install mesa-vulkan-drivers)";
  if (!SLOW) {
    const built = await readInstance(testPaths(), "vulkan");
    return built && await exists(join(built.binDir, "llama-server"))
      ? "it takes 5 to 7 minutes here (lavapipe compiles its pipelines on the CPU): LLAMA_MGR_SLOW=1 runs it"
      : "the Vulkan instance is not built yet (18 to 45 minutes on 2 busy cores): LLAMA_MGR_SLOW=1 builds it";
  }
  return undefined;
}

const skip = await whyNot();
if (skip) console.log(`llamacpp_vulkan_test skipped: ${skip}`);

/** The shared Vulkan build: the bundled release, llama-server only, patched when this glslc needs it. */
async function vulkanInstance(): Promise<InstanceRecord> {
  const paths = testPaths();
  const existing = await readInstance(paths, "vulkan");
  if (existing && await exists(join(existing.binDir, "llama-server"))) return existing;
  const glslc = findGlslc()!;
  const coopmat = (await glslcSupports(glslc, "GL_KHR_cooperative_matrix")).ok;
  const headers = (await vulkanRequirements({ headerNeeds: ["VK_EXT_layer_settings"] }))
    .every((r) => r.ok || !r.pkg.startsWith("libvulkan-dev with"));
  const started = performance.now();
  const r = await installInstance(paths, {
    name: "vulkan",
    arch: "vulkan",
    repoUrl: await bundlePath(),
    targets: ["llama-server"],
    patches: [...(coopmat ? [] : ["vulkan-no-coopmat"]), ...(headers ? [] : ["vulkan-old-headers"])],
    ignorePython: true,
    wait: true,
    onInfo: (t) => console.error(t),
    progress: (step) => createProgress(step, { quiet: true }),
  });
  console.log(`built the Vulkan instance in ${((performance.now() - started) / 1000).toFixed(0)}s`);
  return r.record!;
}

interface Greedy {
  tokens: number[];
  text: string;
  probs: { token: number; top: { id: number; prob: number }[] }[];
}

async function greedy(url: string, prompt: string, n: number): Promise<Greedy> {
  const res = await post(`${url}/completion`, {
    prompt,
    n_predict: n,
    temperature: 0,
    top_k: 1,
    seed: 1,
    n_probs: 2,
    post_sampling_probs: false,
    return_tokens: true,
    cache_prompt: false,
  });
  assertEquals(res.status, 200);
  const body = await res.json();
  return {
    tokens: body.tokens,
    text: body.content,
    probs: (body.completion_probabilities ?? []).map((p: any) => ({
      token: p.id,
      top: (p.top_logprobs ?? []).map((t: any) => ({ id: t.id, prob: Math.exp(t.logprob) })),
    })),
  };
}

Deno.test({
  name: "a Vulkan instance serves on Mesa's software device beside the CPU instance",
  ignore: skip !== undefined,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const vk = await vulkanInstance();
    const { instance: cpu } = await testInstance();
    const model = await smolModelPath();

    await t.step(
      "--list-devices shows lavapipe with its memory once GGML_VK_VISIBLE_DEVICES names it",
      async () => {
        // llama.cpp hides CPU-type Vulkan devices by default; the listing says so rather than "no device".
        const hidden = await listDeviceLines(vk.binDir, { arch: "vulkan" });
        assertEquals(hidden.lines, []);
        assertEquals(hidden.hidden?.length, 1);
        const d = await listDeviceLines(vk.binDir, { env: LAVAPIPE });
        assertEquals(d.error, undefined);
        assertEquals(d.lines.length, 1, d.lines.join("\n"));
        assertMatch(d.lines[0], /^Vulkan0: llvmpipe .*\((\d+) MiB, (\d+) MiB free\)$/);
        const mib = Number(d.lines[0].match(/\((\d+) MiB/)![1]);
        assert(mib >= 512, d.lines[0]);
        console.log(`  ${d.lines[0]}`);
      },
    );

    await t.step("instances show and doctor print the device", async () => {
      const data = testPaths().dataDir;
      const show = await cli(["-d", data, "instances", "show", "vulkan"]);
      assertEquals(show.code, 0, show.stderr);
      assertMatch(
        show.stdout,
        /^\s+Vulkan0: llvmpipe .* MiB free\) \[CPU-type: used only with GGML_VK_VISIBLE_DEVICES=0\]$/m,
      );
      if (vk.patches?.length) {
        assertMatch(show.stdout, new RegExp(`^patches\\s+${vk.patches.join(" ")}$`, "m"));
      }
      const doctor = await cli(["-d", data, "doctor", "--arch", "vulkan"]);
      assertMatch(
        doctor.stdout,
        /devices of vulkan:\n( {2}.*\n)* {2}Vulkan0: llvmpipe .* MiB free\) \[CPU-type/,
      );
      assertMatch(doctor.stdout, /devices of cpu:\n {2}CPU: /);
      // A preset that runs on the instance with the variable set: the device as the daemon will use it, with
      // the budget the config gives it.
      const tmp = await tempDir();
      try {
        const configFile = join(tmp.path, "config.yaml");
        await Deno.writeTextFile(
          configFile,
          `presets:\n  smolvk:\n    model: smolvk\n    instance: vulkan\n    env: { ${VK_VISIBLE}: "0" }\n` +
            `memory:\n  budgets: { Vulkan0: 100MiB }\n`,
        );
        const env = { LLAMA_MGR_CONFIG: configFile };
        const withPreset = await cli(["-d", data, "instances", "show", "vulkan"], { env });
        assertEquals(withPreset.code, 0, withPreset.stderr);
        assertMatch(
          withPreset.stdout,
          /^ +with the env of preset smolvk:\n +Vulkan0: llvmpipe .*, [\d.]+ GiB free of 2\.0 GiB, budget 100 MiB$/m,
        );
        const doctorPreset = await cli(["-d", data, "doctor", "--arch", "vulkan"], { env });
        assertMatch(
          doctorPreset.stdout,
          /devices of vulkan:\n( {2}.*\n)* {2}with the env of preset smolvk:\n {4}Vulkan0: llvmpipe .*budget 100 MiB\n/,
        );
        console.log(
          withPreset.stdout.split("\n").filter((l) => /devices|Vulkan0|preset|CPU:/.test(l)).join("\n"),
        );
      } finally {
        await tmp.cleanup();
      }
    });

    await t.step(
      "the same model gives the same greedy tokens on both, or says where and why not",
      async () => {
        const tmp = await tempDir();
        const paths = resolvePaths({ dataDir: tmp.path, env: {} });
        const prompt = "The capital of France is Paris. The capital of Germany is";
        const n = 24;
        const answers: Record<string, Greedy> = {};
        try {
          for (const [name, instance] of [["cpu", cpu], ["vulkan", vk]] as const) {
            const env = name === "vulkan" ? LAVAPIPE : undefined;
            // lavapipe compiles every pipeline on the CPU at load: minutes on a busy 2-core machine.
            const s = await startServer(paths, {
              name,
              modelPath: model,
              instance,
              ctx: 512,
              ngl: 99,
              env,
              readyTimeoutMs: 600_000,
            });
            try {
              answers[name] = await greedy(s.url, prompt, n);
            } finally {
              await stopServer(paths, name);
            }
          }
        } finally {
          await tmp.cleanup();
        }
        const a = answers.cpu;
        const b = answers.vulkan;
        assertEquals(a.tokens.length, n);
        assertEquals(b.tokens.length, n);
        const at = a.tokens.findIndex((tok, i) => tok !== b.tokens[i]);
        console.log(`  cpu:    ${JSON.stringify(a.text)}`);
        console.log(`  vulkan: ${JSON.stringify(b.text)}`);
        if (at < 0) {
          console.log(`  all ${n} greedy tokens are the same`);
        } else {
          // Where they part, the two best candidates were close: the backends round differently (the CPU
          // quantises activations to q8_0 for its dot products, the Vulkan shaders keep them in f16/f32), so a
          // near tie can fall either way; after that the texts go their own ways.
          const top = a.probs[at]?.top ?? [];
          const margin = top.length > 1 ? top[0].prob - top[1].prob : 1;
          console.log(
            `  first difference at token ${at} of ${n}; the CPU's top two there: ` +
              `${top.map((x) => `${x.id} p=${x.prob.toFixed(3)}`).join(", ")} (margin ${margin.toFixed(3)})`,
          );
          assert(at >= 4, `the answers part at token ${at}: more than rounding`);
          assert(margin < 0.2, `they part at token ${at} where the CPU was sure (margin ${margin})`);
        }
      },
    );

    await t.step(
      "the daemon serves a model on each instance at once, the Vulkan one's GPU layers fitted to its budget",
      async () => {
        // lavapipe offers 2 GiB; a 100 MiB budget holds only part of SmolLM2 at 4096 tokens (about 190 MiB), so
        // the scheduler must pick -ngl itself, with the device it sees through the preset's environment.
        const budget = 100 * 2 ** 20;
        const config = {
          // At -lv 4 llama-server logs the layers it offloaded and each buffer it allocated.
          presets: { smolvk: { model: "smolvk", instance: "vulkan", env: LAVAPIPE, args: ["-lv", "4"] } },
          memory: { budgets: { Vulkan0: budget } },
        };
        await withDaemon({
          models: { "smol.gguf": model, "smolvk.gguf": model },
          config,
          env: { OLLAMA_MAX_LOADED_MODELS: "2" },
        }, async ({ url, daemon, dataDir }) => {
          const ask = (name: string) =>
            post(`${url}/api/generate`, {
              model: name,
              prompt: "Name a colour.",
              stream: false,
              options: { temperature: 0, num_predict: 8, num_ctx: 4096 },
            }).then(async (r) => ({ status: r.status, body: await r.json() }));
          const [c, v] = await Promise.all([ask("smol"), ask("smolvk")]);
          assertEquals(c.status, 200, JSON.stringify(c.body));
          assertEquals(v.status, 200, JSON.stringify(v.body));
          assert(c.body.response.length > 0 && v.body.response.length > 0);
          const ps = await (await fetch(`${url}/api/ps`)).json();
          const byName = Object.fromEntries(ps.models.map((m: any) => [m.name.replace(/:latest$/, ""), m]));
          assert(byName.smol && byName.smolvk, JSON.stringify(ps));
          assertEquals(byName.smol.size_vram, 0);
          const vram = byName.smolvk.size_vram;
          assert(vram > 0 && vram < byName.smolvk.size, `part on the GPU: ${JSON.stringify(byName.smolvk)}`);
          assert(vram <= budget, `${vram} bytes planned on Vulkan0, over its ${budget} budget`);
          // Each runner is the llama-server of its own instance.
          const runners = Object.fromEntries(
            daemon.ctx.scheduler.list().map((r) => [r.name.replace(/:latest$/, ""), r]),
          );
          assertStringIncludes(await Deno.readLink(`/proc/${runners.smol.pid}/exe`), cpu.binDir);
          assertStringIncludes(await Deno.readLink(`/proc/${runners.smolvk.pid}/exe`), vk.binDir);
          // What llama-server was told and what it did: its command line (the log's first line) and its own
          // report of the layers it offloaded and the buffers it put on the device.
          const log = await Deno.readTextFile(
            serverLogPath(resolvePaths({ dataDir, env: {} }), runners.smolvk.serverName),
          );
          const ngl = Number(log.split("\n")[0].match(/ -ngl (\d+)/)?.[1]);
          const offloaded = log.match(/offloaded (\d+)\/(\d+) layers to GPU/);
          assert(offloaded, "llama-server's log says how many layers it offloaded");
          assertEquals(Number(offloaded[1]), ngl, "the layers offloaded are the -ngl the scheduler chose");
          assert(ngl > 0 && ngl < Number(offloaded[2]), `some layers on the GPU, not all: ${offloaded[0]}`);
          const onDevice = [...log.matchAll(/Vulkan0 (?:model|KV|compute) buffer size = +([\d.]+) MiB/g)]
            .reduce((n, m) => n + Number(m[1]) * 2 ** 20, 0);
          assert(onDevice > 0, "llama-server reports its Vulkan0 buffers");
          assert(
            onDevice <= budget,
            `llama-server put ${onDevice} bytes on Vulkan0, over the ${budget} budget`,
          );
          console.log(
            `  smolvk: -ngl ${ngl} (${offloaded[0]}); size ${byName.smolvk.size}, size_vram ${vram}; ` +
              `llama-server's Vulkan0 buffers ${(onDevice / 2 ** 20).toFixed(1)} MiB of a 100 MiB budget`,
          );
        });
      },
    );
  },
});
