/**
 * The memory estimate against what a real llama-server allocates, on models whose KV cache is not the plain
 * one: a sliding-window model (gemma3: 7 of 8 layers keep only `window × 4 + ubatch` cells), a mixture of
 * experts (qwen3moe), both with grouped-query attention, a DeepSeek-style model with multi-head latent
 * attention (one compressed K row per token, no V) and shared experts, a BERT encoder (no KV cache), and a
 * Qwen3.5-style hybrid (linear-attention layers keep a fixed recurrent state instead of a KV cache). The models are tiny but real (written by PyPI
 * gguf's GGUFWriter with random weights and SmolLM2's tokenizer) so llama-server loads them and prints its
 * buffers; the estimate must agree on weights and KV cache to the byte's percent and on compute within 10%.
 */
import { assert, assertEquals } from "./_assert.ts";
import { smolModelPath, tempDir, testInstance } from "./_fixtures.ts";
import { python, testVenv } from "./_python.ts";
import { binaryPath } from "../lib/llamacpp/instances.ts";
import { findFreePort } from "../lib/server/mod.ts";
import { describeModel, estimateMemory, readGgufHeader } from "../lib/gguf/mod.ts";

const scripts = new URL("../scripts/gguf/", import.meta.url).pathname;

/** What llama-server printed about its buffers. */
interface Buffers {
  weights: number;
  kv: number;
  /** Recurrent state (hybrid and SSM models). */
  rs: number;
  compute: number;
  swaCells?: number;
  fullCells?: number;
  log: string;
}

/** Starts llama-server on a model, waits for its buffer report, always stops it. */
async function serverBuffers(server: string, model: string, args: string[]): Promise<Buffers> {
  const child = new Deno.Command(server, {
    args: ["-m", model, "--host", "127.0.0.1", "--port", String(findFreePort()), "-lv", "4", ...args],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let log = "";
  const dec = new TextDecoder();
  const drain = (s: ReadableStream<Uint8Array>) =>
    (async () => {
      for await (const c of s) log += dec.decode(c, { stream: true });
    })().catch(() => {});
  const readers = [drain(child.stdout), drain(child.stderr)];
  try {
    const deadline = Date.now() + 60_000;
    while (!/compute buffer size/.test(log) && Date.now() < deadline) {
      if (/exiting due to|failed to load model/.test(log)) break;
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
    await child.status;
    await Promise.all(readers);
  }
  assert(/compute buffer size/.test(log), `llama-server printed no buffer sizes:\n${log.slice(-2000)}`);
  const mib = (re: RegExp) => Number(log.match(re)?.[1] ?? NaN) * 1048576;
  const sumMib = (re: RegExp) => [...log.matchAll(re)].reduce((a, m) => a + Number(m[1]) * 1048576, 0);
  const cells = (re: RegExp) => {
    const m = log.match(re);
    return m ? Number(m[1]) : undefined;
  };
  return {
    weights: mib(/model buffer size =\s+([\d.]+) MiB/),
    kv: sumMib(/KV buffer size =\s+([\d.]+) MiB/g),
    rs: sumMib(/RS buffer size =\s+([\d.]+) MiB/g),
    compute: mib(/compute buffer size =\s+([\d.]+) MiB/),
    swaCells: cells(/creating\s+SWA KV cache, size = (\d+) cells/),
    fullCells: cells(/creating non-SWA KV cache, size = (\d+) cells/),
    log,
  };
}

/** |a - b| within `tol` of b, or within `slack` bytes (llama-server prints MiB with two decimals). */
function close(a: number, b: number, tol: number, slack = 0.006 * 1048576): boolean {
  return Math.abs(a - b) <= Math.max(tol * b, slack);
}

Deno.test({
  name:
    "the memory estimate follows llama-server on sliding-window, mixture-of-experts, MLA and encoder models",
  sanitizeResources: false,
  async fn(t) {
    const { instance } = await testInstance();
    const server = binaryPath(instance, "llama-server");
    const py = await testVenv("gguf", ["gguf==0.19.0", "numpy"]);
    const tmp = await tempDir();
    try {
      await python(py, `${scripts}make_arch_models.py`, [tmp.path, await smolModelPath()]);

      await t.step("gemma3 facts: 8 layers, 1 KV head, window 256, every 6th layer global", async () => {
        const f = describeModel(
          await readGgufHeader(`${tmp.path}/tiny-gemma3-swa.gguf`, { skipArraysOver: 256 }),
        );
        assertEquals(f.architecture, "gemma3");
        assertEquals([f.blockCount, f.headCount, f.headCountKv, f.keyLength], [8, 4, 1, 64]);
        assertEquals(f.slidingWindow, 256);
        assertEquals(f.slidingLayers, [true, true, true, true, true, false, true, true]);
      });

      await t.step("qwen3moe facts: 8 experts, 2 used, expert width 64", async () => {
        const f = describeModel(
          await readGgufHeader(`${tmp.path}/tiny-qwen3moe.gguf`, { skipArraysOver: 256 }),
        );
        assertEquals(f.architecture, "qwen3moe");
        assertEquals([f.expertCount, f.expertUsedCount, f.expertFeedForwardLength], [8, 2, 64]);
        assertEquals([f.headCount, f.headCountKv], [4, 2]);
      });

      const cases: { model: string; ctx: number; cache: "f16" | "q8_0" | "q4_0"; extra?: string[] }[] = [
        { model: "tiny-gemma3-swa", ctx: 4096, cache: "f16" },
        { model: "tiny-gemma3-swa", ctx: 1024, cache: "f16" },
        { model: "tiny-gemma3-swa", ctx: 8192, cache: "q8_0" },
        { model: "tiny-gemma3-swa", ctx: 4096, cache: "f16", extra: ["-np", "1"] },
        { model: "tiny-gemma3-swa", ctx: 4096, cache: "f16", extra: ["--swa-full"] },
        { model: "tiny-qwen3moe", ctx: 4096, cache: "f16" },
        { model: "tiny-qwen3moe", ctx: 2048, cache: "q4_0" },
        { model: "tiny-deepseek2-mla", ctx: 4096, cache: "f16" },
        { model: "tiny-deepseek2-mla", ctx: 8192, cache: "q8_0" },
        { model: "tiny-qwen35-hybrid", ctx: 4096, cache: "f16" },
        { model: "tiny-qwen35-hybrid", ctx: 16384, cache: "q8_0" },
      ];
      for (const c of cases) {
        const label = `${c.model} at ${c.ctx} tokens, ${c.cache} cache${
          c.extra ? ` (${c.extra.join(" ")})` : ""
        }`;
        await t.step(`${label}: weights and KV cache exact, compute within 10%`, async () => {
          const path = `${tmp.path}/${c.model}.gguf`;
          const facts = describeModel(await readGgufHeader(path, { skipArraysOver: 256 }));
          const args = ["-c", String(c.ctx), "-ctk", c.cache, "-ctv", c.cache, ...(c.extra ?? [])];
          const real = await serverBuffers(server, path, args);
          const est = estimateMemory(facts, {
            ctx: c.ctx,
            cacheType: c.cache,
            // `-np 1` without --kv-unified: one sequence per cache.
            parallel: c.extra?.includes("-np") ? 1 : 4,
            swaFull: c.extra?.includes("--swa-full"),
          });
          const detail = `estimate ${JSON.stringify(est)} vs server ${
            JSON.stringify({ ...real, log: undefined })
          }`;
          assert(close(est.weightsBytes, real.weights, 0.01), `weights: ${detail}`);
          assert(close(est.kvBytes, real.kv, 0.01), `kv: ${detail}`);
          assert(close(est.recurrentBytes, real.rs, 0.01), `recurrent state: ${detail}`);
          assert(close(est.computeBytes, real.compute, 0.10), `compute: ${detail}`);
          assert(
            close(est.totalBytes, real.weights + real.kv + real.rs + real.compute, 0.03),
            `total: ${detail}`,
          );
        });
      }

      await t.step("qwen35 facts: 3 of 4 layers recurrent, only the 4th keeps a KV cache", async () => {
        const f = describeModel(
          await readGgufHeader(`${tmp.path}/tiny-qwen35-hybrid.gguf`, { skipArraysOver: 256 }),
        );
        assertEquals(f.recurrentLayers, [true, true, true, false]);
        // conv state (4 - 1) × (64 + 2 × 2 × 16) + SSM state 16 × 64 floats per layer and sequence.
        assertEquals(f.recurrentStatePerLayer, 3 * 128 + 1024);
        const est = estimateMemory(f, { ctx: 4096, cacheType: "f16" });
        assertEquals(est.kvBytes, 4096 * 1 * 2 * (32 + 32) * 2);
        assertEquals(est.recurrentBytes, 3 * (3 * 128 + 1024) * 4 * 4);
      });

      await t.step("deepseek2 facts: MLA head sizes, 4 experts with a shared one", async () => {
        const f = describeModel(
          await readGgufHeader(`${tmp.path}/tiny-deepseek2-mla.gguf`, { skipArraysOver: 256 }),
        );
        assertEquals([f.keyLength, f.valueLength, f.keyLengthMla, f.valueLengthMla], [96, 64, 64, 32]);
        assertEquals([f.expertCount, f.expertUsedCount, f.headCountKv], [4, 2, 1]);
        // 3 layers × 96 K elements × 2 bytes per token, no V.
        assertEquals(estimateMemory(f, { ctx: 4096, cacheType: "f16" }).kvBytes, 4096 * 3 * 96 * 2);
      });

      await t.step(
        "a BERT encoder has no KV cache: the estimate says 0, llama-server allocates none",
        async () => {
          const path = `${tmp.path}/tiny-bert-embed.gguf`;
          const f = describeModel(await readGgufHeader(path, { skipArraysOver: 256 }));
          assertEquals(f.capabilities, ["embedding"]);
          assertEquals(f.hasKvCache, false);
          const real = await serverBuffers(server, path, ["--embeddings", "-c", "512"]);
          assertEquals(real.kv, 0, "llama-server printed a KV buffer");
          const est = estimateMemory(f, { ctx: 512, cacheType: "f16" });
          assertEquals(est.kvBytes, 0);
          assert(
            close(est.weightsBytes, real.weights, 0.01),
            `weights ${est.weightsBytes} vs ${real.weights}`,
          );
          // An allowance on the safe side: never below what the server takes, at most 1.7x of it.
          assert(
            est.computeBytes >= real.compute && est.computeBytes <= 1.7 * real.compute,
            `compute ${est.computeBytes} vs ${real.compute}`,
          );
        },
      );

      await t.step(
        "the sliding window really shrinks the cache: it is far below a full-context one",
        async () => {
          const facts = describeModel(
            await readGgufHeader(`${tmp.path}/tiny-gemma3-swa.gguf`, { skipArraysOver: 256 }),
          );
          const swa = estimateMemory(facts, { ctx: 8192, cacheType: "f16" });
          const full = estimateMemory(facts, { ctx: 8192, cacheType: "f16", swaFull: true });
          // 1 global layer × 8192 cells + 7 window layers × pad256(256·4 + 512) = 1536 cells.
          assertEquals(swa.kvBytes, (8192 + 7 * 1536) * 1 * (64 + 64) * 2);
          assertEquals(full.kvBytes, 8 * 8192 * 1 * (64 + 64) * 2);
        },
      );
    } finally {
      await tmp.cleanup();
    }
  },
});
