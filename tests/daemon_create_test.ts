/**
 * `/api/create` with what a Modelfile adds beyond names and settings, against a real daemon and llama-server:
 * a Go TEMPLATE served as a Jinja chat template, a LoRA ADAPTER served with `--lora`, and `quantize` through
 * llama-quantize.
 */
import { join } from "node:path";
import { assert, assertEquals, assertStringIncludes } from "./_assert.ts";
import { minilmGguf, sha256File, smolModelPath } from "./_fixtures.ts";
import { runnerFetch, withDaemon } from "./_daemon.ts";
import { testVenv } from "./_python.ts";
import { run } from "../lib/util/run.ts";
import { listServers } from "../lib/server/mod.ts";
import { resolvePaths } from "../lib/config/paths.ts";

const post = (url: string, body: unknown) => fetch(url, { method: "POST", body: JSON.stringify(body) });
const lines = async (r: Response) => (await r.text()).trim().split("\n").map((l) => JSON.parse(l));
const CHATML = await Deno.readTextFile(new URL("./templates/chatml.gotmpl", import.meta.url));

/** The running llama-servers of a daemon's data dir, by the model name they serve. */
async function servers(dataDir: string) {
  return await listServers(resolvePaths({ dataDir, env: {} }));
}

Deno.test("create: a ChatML TEMPLATE becomes llama-server's chat template and the model answers /api/chat", async () => {
  await withDaemon({}, async ({ url, dataDir }) => {
    const made = await lines(
      await post(`${url}/api/create`, { model: "smol-chatml", from: "smol", template: CHATML }),
    );
    assertEquals(made.at(-1), { status: "success" });
    const show = await (await post(`${url}/api/show`, { model: "smol-chatml" })).json();
    assertEquals(show.template, CHATML);
    const chat = await (await post(`${url}/api/chat`, {
      model: "smol-chatml",
      messages: [{ role: "user", content: "Say hi." }],
      stream: false,
      options: { num_predict: 8, temperature: 0 },
    })).json();
    assertEquals(chat.done, true);
    assert(chat.message.content.length > 0, JSON.stringify(chat));
    const server = (await servers(dataDir)).find((s) => s.state === "ready");
    assert(server, "a llama-server runs");
    const props = await (await runnerFetch(server.url!, "/props")).json();
    assertStringIncludes(props.chat_template, '{{- "<|im_start|>" -}}');
    const tpl = await (await runnerFetch(server.url!, "/apply-template", {
      messages: [{ role: "user", content: "Q" }],
    }))
      .json();
    assertEquals(tpl.prompt, "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n");
    // A template without a translation is a 400 that names it.
    const bad = await post(`${url}/api/create`, { model: "x", from: "smol", template: '{{ template "t" }}' });
    assertEquals(bad.status, 400);
    assertStringIncludes((await bad.json()).error, "{{ template }}");
  });
});

/** A LoRA adapter for SmolLM2-135M (hidden size 576) on layer 0's attn_q, written with PyPI gguf. */
async function smolLora(dir: string): Promise<string> {
  const py = await testVenv("gguf", ["gguf==0.19.0", "numpy"]);
  const out = join(dir, "smol-lora.gguf");
  const script = join(dir, "lora.py");
  await Deno.writeTextFile(
    script,
    `import sys, numpy as np, gguf
w = gguf.GGUFWriter(sys.argv[1], "llama")
w.add_string("general.type", "adapter")
w.add_string("adapter.type", "lora")
w.add_float32("adapter.lora.alpha", 8.0)
r = 8
w.add_tensor("blk.0.attn_q.weight.lora_a", np.full((r, 576), 0.001, dtype=np.float32))
w.add_tensor("blk.0.attn_q.weight.lora_b", np.full((576, r), 0.001, dtype=np.float32))
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
`,
  );
  await run([py, script, out]);
  return out;
}

Deno.test("create: an ADAPTER blob is served with --lora, and a model is refused as an adapter", async () => {
  const dir = await Deno.makeTempDir({ prefix: "llama-mgr-lora-" });
  try {
    const lora = await smolLora(dir);
    await withDaemon({}, async ({ url, dataDir }) => {
      const digest = `sha256:${await sha256File(lora)}`;
      const up = await fetch(`${url}/api/blobs/${digest}`, {
        method: "POST",
        body: await Deno.readFile(lora),
      });
      assertEquals(up.status, 201);
      const made = await lines(
        await post(`${url}/api/create`, {
          model: "smol-lora",
          from: "smol",
          adapters: { "smol-lora.gguf": digest },
        }),
      );
      assertEquals(made.at(-1), { status: "success" });
      const gen = await (await post(`${url}/api/generate`, {
        model: "smol-lora",
        prompt: "Hello",
        stream: false,
        options: { num_predict: 4 },
      })).json();
      assertEquals(gen.done, true);
      const server = (await servers(dataDir)).find((s) => s.state === "ready");
      assert(server);
      const adapters = await (await runnerFetch(server.url!, "/lora-adapters")).json();
      assertEquals(adapters.length, 1);
      assertStringIncludes(adapters[0].path, digest.replace(":", "-"));
      const model = `sha256:${await sha256File(await smolModelPath())}`;
      await (await fetch(`${url}/api/blobs/${model}`, {
        method: "POST",
        body: await Deno.readFile(await smolModelPath()),
      }))
        .body?.cancel();
      const bad = await post(`${url}/api/create`, {
        model: "x",
        from: "smol",
        adapters: { "m.gguf": model },
      });
      assertEquals(bad.status, 400);
      assertStringIncludes((await bad.json()).error, "is not a LoRA adapter");
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("create: quantize runs llama-quantize on an F16 model and streams Ollama's progress lines", async () => {
  await withDaemon({ models: { "minilm.gguf": await minilmGguf() } }, async ({ url }) => {
    const made = await lines(
      await post(`${url}/api/create`, { model: "minilm-q8", from: "minilm", quantize: "q8_0" }),
    );
    assertEquals(made.at(-1), { status: "success" });
    const progress = made.filter((l) => l.status === "quantizing F16 model to Q8_0");
    assert(progress.length >= 2, JSON.stringify(made));
    assertEquals(progress.at(-1).completed, progress.at(-1).total);
    const show = await (await post(`${url}/api/show`, { model: "minilm-q8" })).json();
    assertEquals(show.details.quantization_level, "Q8_0");
    // Already quantized: a 400 as Ollama words it.
    const again = await post(`${url}/api/create`, { model: "y", from: "minilm-q8", quantize: "q4_0" });
    assertEquals(again.status, 400);
    assertStringIncludes((await again.json()).error, "only supported for F16, BF16 and F32");
  });
});
