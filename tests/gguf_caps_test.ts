/**
 * Capabilities from the header, decided as Ollama decides them: a pooling type (or an encoder architecture)
 * makes an embedding model even when it carries a chat template; a template that takes `tools` can call tools;
 * one with thinking tags can think; FIM tokens allow insert; a projector sees.
 */
import { assertEquals } from "./_assert.ts";
import { describeModel, parseGgufHeader } from "../lib/gguf/mod.ts";

type Kv = [string, "str" | "u32" | "f32", string | number];

/** A little-endian GGUF v3 header with these keys and no tensors. */
function header(kvs: Kv[]): Uint8Array {
  const out: number[] = [0x47, 0x47, 0x55, 0x46];
  const u32 = (v: number) => out.push(v & 255, (v >>> 8) & 255, (v >>> 16) & 255, (v >>> 24) & 255);
  const u64 = (v: number) => (u32(v % 4294967296), u32(Math.floor(v / 4294967296)));
  const str = (s: string) => {
    const b = new TextEncoder().encode(s);
    u64(b.length);
    out.push(...b);
  };
  u32(3);
  u64(0);
  u64(kvs.length);
  for (const [k, type, v] of kvs) {
    str(k);
    if (type === "str") (u32(8), str(v as string));
    else if (type === "u32") (u32(4), u32(v as number));
    else {
      u32(6);
      const b = new Uint8Array(4);
      new DataView(b.buffer).setFloat32(0, v as number, true);
      out.push(...b);
    }
  }
  return new Uint8Array(out);
}

const caps = (kvs: Kv[]) => describeModel(parseGgufHeader(header(kvs), "caps.gguf")).capabilities;

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
