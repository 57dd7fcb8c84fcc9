/**
 * Capabilities from the header, decided as Ollama decides them: a pooling type (or an encoder architecture)
 * makes an embedding model even when it carries a chat template; a template that takes `tools` can call tools;
 * one with thinking tags can think; FIM tokens allow insert; a projector sees.
 */
import { assertEquals } from "./_assert.ts";
import { describeModel, parseGgufHeader } from "../lib/gguf/mod.ts";
import { ggufFile, type Kv } from "./_gguf.ts";

const caps = (kvs: Kv[]) => describeModel(parseGgufHeader(ggufFile(kvs), "caps.gguf")).capabilities;

// Abridged from the models' own templates.
const QWEN3_TEMPLATE = "{%- if tools %}<tools>{{ tool | tojson }}</tools>{%- endif %}" +
  "{%- if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>{%- endif %}";
const QWEN3_EMBEDDING_TEMPLATE = "{%- if tools %}{{ tools }}{%- endif %}<|im_start|>{{ message.content }}";

Deno.test("capabilities are what Ollama would list for the same header", async (t) => {
  await t.step(
    "a qwen3 embedding model with a chat template and a pooling type embeds, it does not chat",
    () => {
      assertEquals(
        caps([
          ["general.architecture", "str", "qwen3"],
          ["qwen3.pooling_type", "u32", 3],
          ["tokenizer.chat_template", "str", QWEN3_EMBEDDING_TEMPLATE],
        ]),
        ["embedding"],
      );
    },
  );
  await t.step("encoder architectures embed without a pooling key", () => {
    for (const arch of ["bert", "nomic-bert", "gemma-embedding"]) {
      assertEquals(caps([["general.architecture", "str", arch]]), ["embedding"], arch);
    }
  });
  await t.step("a chat model whose template takes tools and thinks", () => {
    assertEquals(
      caps([["general.architecture", "str", "qwen3"], ["tokenizer.chat_template", "str", QWEN3_TEMPLATE]]),
      ["completion", "tools", "thinking"],
    );
  });
  await t.step("a base model without a template only completes; FIM tokens add insert", () => {
    assertEquals(caps([["general.architecture", "str", "llama"]]), ["completion"]);
    assertEquals(
      caps([["general.architecture", "str", "qwen2"], ["tokenizer.ggml.fim_pre_token_id", "u32", 151659]]),
      ["completion", "insert"],
    );
  });
  await t.step("a projector file sees", () => {
    assertEquals(
      caps([["general.architecture", "str", "clip"], ["general.type", "str", "mmproj"]]),
      ["vision"],
    );
  });
});
