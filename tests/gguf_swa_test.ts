/**
 * Which layers use a sliding window (and so a small KV cache), read as llama.cpp reads it: an explicit
 * pattern array, a pattern number, each architecture's default (global layer last, or first for
 * "dense first" ones), Llama 4's chunked attention, and Phi-3's window that llama.cpp ignores. The
 * loadable-model check of the resulting cache sizes is in gguf_estimate_test.ts (gemma3).
 */
import { assertEquals } from "./_assert.ts";
import type { GgufHeader, GgufValue } from "../lib/gguf/reader.ts";
import { describeModel, estimateMemory } from "../lib/gguf/mod.ts";

function facts(arch: string, extra: Record<string, GgufValue>) {
  const header: GgufHeader = {
    version: 3,
    littleEndian: true,
    metadata: {
      "general.architecture": arch,
      [`${arch}.block_count`]: 8,
      [`${arch}.embedding_length`]: 256,
      [`${arch}.attention.head_count`]: 4,
      [`${arch}.attention.head_count_kv`]: 1,
      ...extra,
    },
    metadataTypes: {},
    tensors: [],
    alignment: 32,
    dataOffset: 0,
    headerBytes: 0,
    fileSize: 0,
  };
  return describeModel(header);
}

const T = true;
const F = false;

Deno.test("sliding-window layers follow llama.cpp's rules for each architecture", async (t) => {
  await t.step("gemma3 by default: five window layers, then a global one", () => {
    const f = facts("gemma3", { "gemma3.attention.sliding_window": 512 });
    assertEquals(f.slidingLayers, [T, T, T, T, T, F, T, T]);
  });
  await t.step("a pattern number in the file wins over the default", () => {
    const f = facts("gemma3", {
      "gemma3.attention.sliding_window": 512,
      "gemma3.attention.sliding_window_pattern": 2,
    });
    assertEquals(f.slidingLayers, [T, F, T, F, T, F, T, F]);
  });
  await t.step("a pattern array in the file is taken as it is", () => {
    const f = facts("gpt-oss", {
      "gpt-oss.attention.sliding_window": 128,
      "gpt-oss.attention.sliding_window_pattern": [F, T, F, T, F, T, F, T],
    });
    assertEquals(f.slidingLayers, [F, T, F, T, F, T, F, T]);
  });
  await t.step("dense-first architectures put the global layer first (cohere2moe)", () => {
    const f = facts("cohere2moe", { "cohere2moe.attention.sliding_window": 4096 });
    assertEquals(f.slidingLayers, [F, T, T, T, F, T, T, T]);
  });
  await t.step(
    "Llama 4: chunked attention of 8,192 tokens on 3 of 4 layers, none when the file says 0",
    () => {
      const f = facts("llama4", {});
      assertEquals(f.slidingWindow, 8192);
      assertEquals(f.slidingLayers, [T, T, T, F, T, T, T, F]);
      assertEquals(facts("llama4", { "llama4.attention.sliding_window": 0 }).slidingWindow, undefined);
    },
  );
  await t.step("Phi-3's window is ignored by llama.cpp: the estimate keeps the full cache", () => {
    const f = facts("phi3", { "phi3.attention.sliding_window": 2047 });
    assertEquals(f.slidingWindow, undefined);
    const est = estimateMemory(f, { ctx: 32768, cacheType: "f16" });
    assertEquals(est.kvBytes, 8 * 32768 * 1 * (64 + 64) * 2);
  });
});
