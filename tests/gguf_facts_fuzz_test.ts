/**
 * The facts and the memory estimate on hostile metadata: a header that parses can still say anything (a NaN
 * embedding width, a negative KV head count, a billion layers, an array where a number belongs). Thousands of
 * variants of a real model's header, each with one to three values replaced, must give facts and estimates
 * that are finite, non-negative numbers (a scheduler comparing NaN with its budget would think the model
 * fits), or the one typed refusal of an impossible layer count; never another exception, never slowly.
 */
import { assert } from "./_assert.ts";
import { smolModelPath } from "./_fixtures.ts";
import { describeModel, estimateMemory, type GgufValue, readGgufHeader } from "../lib/gguf/mod.ts";
import { rng } from "./_rng.ts";

Deno.test("hostile metadata values never give NaN, infinite or negative estimates, nor crash", async () => {
  const base = await readGgufHeader(await smolModelPath(), { skipArraysOver: 256 });
  const arch = "llama";
  // The model's own keys and the ones other architectures use (windows, experts, SSM, MLA, pooling).
  const keys = [
    ...Object.keys(base.metadata),
    ...[
      "attention.sliding_window",
      "attention.sliding_window_pattern",
      "attention.key_length",
      "attention.value_length",
      "attention.key_length_mla",
      "attention.value_length_mla",
      "expert_count",
      "expert_used_count",
      "expert_feed_forward_length",
      "expert_shared_feed_forward_length",
      "ssm.inner_size",
      "ssm.state_size",
      "ssm.conv_kernel",
      "ssm.group_count",
      "full_attention_interval",
      "pooling_type",
    ].map((k) => `${arch}.${k}`),
  ];
  const rand = rng(99);
  const values: (() => GgufValue)[] = [
    () => 0,
    () => -1,
    () => 2 ** 31,
    () => 2 ** 32 - 1,
    () => 2 ** 53 - 1,
    () => 100_000_000,
    () => NaN,
    () => Infinity,
    () => -Infinity,
    () => 1.5,
    () => "x",
    () => true,
    () => 2n ** 63n,
    () => -(2n ** 63n),
    () => Array.from({ length: Math.floor(rand() * 600) }, () => Math.floor(rand() * 1e6) - 1000),
    () => [NaN, -1, Infinity],
    () => [[1, 2], [3]],
    () => ({ skipped: true, itemType: "INT32", length: 1_000_000 }),
  ];
  let refused = 0;
  let slowest = 0;
  const trials = 5000;
  for (let i = 0; i < trials; i++) {
    const metadata = { ...base.metadata };
    const changed: string[] = [];
    for (let j = 0, n = 1 + Math.floor(rand() * 3); j < n; j++) {
      const k = keys[Math.floor(rand() * keys.length)];
      metadata[k] = values[Math.floor(rand() * values.length)]();
      changed.push(k);
    }
    const t0 = performance.now();
    try {
      const facts = describeModel({ ...base, metadata });
      for (
        const o of [{ ctx: 4096 }, { ctx: 131072, cacheType: "q4_0" }, { ctx: 512, flashAttention: false }]
      ) {
        const est = estimateMemory(facts, o);
        for (const [k, v] of Object.entries(est)) {
          assert(
            typeof v === "number" && Number.isFinite(v) && v >= 0,
            `${k} = ${v} with ${changed.map((c) => `${c}=${String(metadata[c]).slice(0, 40)}`).join(", ")}`,
          );
        }
      }
      for (
        const k of ["parameterCount", "contextLength", "blockCount", "headCount", "headCountKv", "vocabSize"]
      ) {
        const v = facts[k as keyof typeof facts];
        assert(typeof v === "number" && Number.isFinite(v) && v >= 0, `${k} = ${v}`);
      }
    } catch (err) {
      assert(
        err instanceof RangeError && /block_count/.test(err.message),
        `${err} with ${changed.join(", ")}`,
      );
      refused++;
    }
    slowest = Math.max(slowest, performance.now() - t0);
  }
  console.log(
    `${trials} variants: ${refused} refused for their layer count, slowest ${slowest.toFixed(1)} ms`,
  );
  assert(refused > 0 && refused < trials / 4, `${refused} refused`);
  assert(slowest < 500, `a variant took ${slowest} ms`);
});
