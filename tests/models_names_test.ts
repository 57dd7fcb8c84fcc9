/**
 * Model names from the metadata real GGUF files carry (as llama.cpp's converter writes `general.basename`,
 * `general.size_label`, `general.finetune` and `general.file_type`), compared with the tags Ollama gives the
 * same models; and the closest-name suggestions a user sees after a typo.
 */
import { assertEquals } from "./_assert.ts";
import type { GgufHeader, GgufValue } from "../lib/gguf/reader.ts";
import { describeModel } from "../lib/gguf/mod.ts";
import { closestNames, modelName, normalizeName } from "../lib/models/mod.ts";

function header(metadata: Record<string, GgufValue>): GgufHeader {
  return {
    version: 3,
    littleEndian: true,
    metadata: { "general.architecture": "llama", ...metadata },
    metadataTypes: {},
    tensors: [],
    alignment: 32,
    dataOffset: 0,
    headerBytes: 0,
    fileSize: 0,
  };
}

/** general.file_type values: 15 = Q4_K_M, 7 = Q8_0, 1 = F16, 18 = Q6_K. */
const cases: { file: string; meta: Record<string, GgufValue>; name: string; why: string }[] = [
  {
    file: "Qwen3-4B-Instruct-2507-Q4_K_M.gguf",
    meta: {
      "general.basename": "Qwen3",
      "general.size_label": "4B",
      "general.finetune": "Instruct-2507",
      "general.file_type": 15,
    },
    name: "qwen3:4b-instruct-2507-q4_k_m",
    why: "Ollama: qwen3:4b-instruct-2507-q4_K_M",
  },
  {
    file: "Qwen3-4B-Thinking-2507-Q4_K_M.gguf",
    meta: {
      "general.basename": "Qwen3",
      "general.size_label": "4B",
      "general.finetune": "Thinking-2507",
      "general.file_type": 15,
    },
    name: "qwen3:4b-thinking-2507-q4_k_m",
    why: "the thinking variant must not collide with the instruct one",
  },
  {
    file: "Llama-3.2-3B-Instruct-Q8_0.gguf",
    meta: {
      "general.basename": "Llama-3.2",
      "general.size_label": "3B",
      "general.finetune": "Instruct",
      "general.file_type": 7,
    },
    name: "llama-3.2:3b-instruct-q8_0",
    why: "Ollama: llama3.2:3b-instruct-q8_0",
  },
  {
    file: "gemma-3-4b-it-Q4_K_M.gguf",
    meta: {
      "general.basename": "gemma-3",
      "general.size_label": "4B",
      "general.finetune": "it",
      "general.file_type": 15,
    },
    name: "gemma-3:4b-it-q4_k_m",
    why: "Ollama: gemma3:4b-it-q4_K_M",
  },
  {
    file: "qwen2.5-coder-7b-instruct-q6_k.gguf",
    meta: {
      "general.basename": "Qwen2.5-Coder",
      "general.size_label": "7B",
      "general.finetune": "Instruct",
      "general.file_type": 18,
    },
    name: "qwen2.5-coder:7b-instruct-q6_k",
    why: "Ollama: qwen2.5-coder:7b-instruct-q6_K",
  },
  {
    file: "SmolLM2-135M-Instruct.Q4_1.gguf",
    meta: {
      "general.name": "Smollm2 135M 8k Lc100K Mix1 Ep2",
      "general.basename": "smollm2",
      "general.finetune": "8k-lc100k-mix1-ep2",
      "general.size_label": "135M",
      "general.file_type": 3,
    },
    name: "smollm2:135m-q4_1",
    why: "its real metadata: a training run's name as fine-tune is not a tag",
  },
  {
    file: "Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf",
    meta: {
      "general.name": "Meta Llama 3.1 8B Instruct",
      "general.size_label": "8B",
      "general.file_type": 15,
    },
    name: "meta-llama-3.1:8b-q4_k_m",
    why: "no basename: general.name without its size and what follows",
  },
  {
    file: "Phi-3-mini-4k-instruct-q4.gguf",
    meta: { "general.file_type": 2 },
    name: "phi-3-mini-4k-instruct:q4_0",
    why: "no names in the metadata: the file name without its quantization",
  },
  {
    file: "Mistral-Nemo-Instruct-2407-Q4_K_M-00001-of-00002.gguf",
    meta: { "general.file_type": 15 },
    name: "mistral-nemo-instruct-2407:q4_k_m",
    why: "neither the split suffix nor the quantization stays in the base name",
  },
];

Deno.test("names follow the metadata the way Ollama's tags do", async (t) => {
  for (const c of cases) {
    await t.step(`${c.file} -> ${c.name} (${c.why})`, () => {
      assertEquals(modelName(describeModel(header(c.meta)), `/models/${c.file}`), c.name);
    });
  }
});

Deno.test("a bare name gets :latest, and a typo suggests the closest names", async (t) => {
  await t.step("normalizeName lower-cases and adds :latest only when there is no tag", () => {
    assertEquals(normalizeName("Qwen3"), "qwen3:latest");
    assertEquals(normalizeName("qwen3:4B-Q4_K_M"), "qwen3:4b-q4_k_m");
    assertEquals(normalizeName("hf.co/Org/Repo"), "hf.co/org/repo:latest");
  });
  const names = cases.map((c) => c.name);
  await t.step("a misspelt base name finds the family", () => {
    const near = closestNames("qwen:4b-q4_k_m", names);
    assertEquals(near.slice(0, 2).sort(), ["qwen3:4b-instruct-2507-q4_k_m", "qwen3:4b-thinking-2507-q4_k_m"]);
  });
  await t.step("a dropped letter still finds the model", () => {
    assertEquals(closestNames("smolm2", names)[0], "smollm2:135m-q4_1");
  });
  await t.step("nothing alike suggests nothing", () => {
    assertEquals(closestNames("zzzzzzzzzzzz", names), []);
  });
});
