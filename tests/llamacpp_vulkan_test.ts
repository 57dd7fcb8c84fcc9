/**
 * A real Vulkan build beside the CPU one, run on Mesa's software Vulkan device (lavapipe): the device with its
 * memory, the same model served through both with greedy decoding, and the daemon running one model on each
 * instance at once. The Vulkan instance is built once into the shared fixtures (instance `vulkan`, like the
 * CPU fixture `cpu`) and reused. Opt-in (LLAMA_MGR_SLOW=1): the build takes 18 to 45 minutes on this
 * machine, and a run about 7 (lavapipe compiles its pipelines on the CPU when a model loads).
 *
 * @module
 */
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./_assert.ts";
import { join } from "node:path";
import { bundlePath, cli, smolModelPath, tempDir, testInstance, testPaths } from "./_fixtures.ts";
import { post, withDaemon } from "./_daemon.ts";
import { installInstance } from "../lib/llamacpp/install.ts";
import { type InstanceRecord, readInstance } from "../lib/llamacpp/instances.ts";
import {
  findGlslc,
  glslcSupports,
  listDeviceLines,
  VK_VISIBLE,
  vulkanRequirements,
} from "../lib/llamacpp/toolchain.ts";
import { resolvePaths } from "../lib/config/paths.ts";
import { startServer, stopServer } from "../lib/server/supervisor.ts";
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
      ? "it takes about 7 minutes here (lavapipe compiles its pipelines on the CPU): LLAMA_MGR_SLOW=1 runs it"
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
      "the daemon serves one model on the CPU instance and one on the Vulkan instance at once",
      async () => {
        const config = {
          presets: { smolvk: { model: "smolvk", instance: "vulkan", ngl: 99, env: LAVAPIPE } },
        };
        await withDaemon({
          models: { "smol.gguf": model, "smolvk.gguf": model },
          config,
          env: { OLLAMA_MAX_LOADED_MODELS: "2" },
        }, async ({ url, daemon }) => {
          const ask = (name: string) =>
            post(`${url}/api/generate`, {
              model: name,
              prompt: "Name a colour.",
              stream: false,
              options: { temperature: 0, num_predict: 8 },
            }).then(async (r) => ({ status: r.status, body: await r.json() }));
          const [c, v] = await Promise.all([ask("smol"), ask("smolvk")]);
          assertEquals(c.status, 200, JSON.stringify(c.body));
          assertEquals(v.status, 200, JSON.stringify(v.body));
          assert(c.body.response.length > 0 && v.body.response.length > 0);
          const ps = await (await fetch(`${url}/api/ps`)).json();
          const byName = Object.fromEntries(ps.models.map((m: any) => [m.name.replace(/:latest$/, ""), m]));
          assert(byName.smol && byName.smolvk, JSON.stringify(ps));
          assertEquals(byName.smol.size_vram, 0);
          assert(byName.smolvk.size_vram > 0, JSON.stringify(byName.smolvk));
          // Each runner is the llama-server of its own instance.
          const exes: Record<string, string> = {};
          for (const r of daemon.ctx.scheduler.list()) {
            exes[r.name.replace(/:latest$/, "")] = await Deno.readLink(`/proc/${r.pid}/exe`);
          }
          assertStringIncludes(exes.smol, cpu.binDir);
          assertStringIncludes(exes.smolvk, vk.binDir);
        });
      },
    );
  },
});
