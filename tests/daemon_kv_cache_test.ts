/**
 * KV caches kept across evictions: the store's size cap and file format alone, then a real daemon whose
 * SmolLM2 runner is unloaded mid-conversation and, loaded again, restores the saved slot and answers exactly as
 * a runner that was never unloaded.
 */
import { join } from "node:path";
import { assert, assertEquals } from "./_assert.ts";
import { smolModelPath } from "./_fixtures.ts";
import { post, readNdjson, runnerFetch, withDaemon } from "./_daemon.ts";
import { openKvCache, parseByteSize, promptTokens, readSlotTokens } from "../lib/daemon/runners/kv_cache.ts";

/** A slot file as llama-server writes it: 'ggsq', version 3, the packed token list, then `stateBytes` of state. */
function slotFile(tokens: number[], stateBytes: number, packed = true): Uint8Array {
  const words = packed ? [-1, 1, tokens.length, ...tokens, 0] : tokens;
  const out = new Uint8Array(12 + words.length * 4 + stateBytes);
  const v = new DataView(out.buffer);
  v.setUint32(0, 0x67677371, true);
  v.setUint32(4, 3, true);
  v.setUint32(8, words.length, true);
  words.forEach((w, i) => v.setInt32(12 + i * 4, w, true));
  return out;
}

Deno.test("kv cache: sizes read as bytes, bad sizes say what to write", () => {
  assertEquals(parseByteSize("2GiB"), 2 * 1024 ** 3);
  assertEquals(parseByteSize("512 MB"), 512_000_000);
  assertEquals(parseByteSize("1.5k"), 1500);
  assertEquals(parseByteSize(0), 0);
  let message = "";
  try {
    parseByteSize("lots");
  } catch (err) {
    message = `${(err as Error).message} ${(err as { hint?: string }).hint}`;
  }
  assert(message.includes('"lots"') && message.includes("2GiB"), message);
});

Deno.test("kv cache: slot files give their tokens, packed or plain", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(join(dir, "a.bin"), slotFile([5, 6, 7], 100));
    await Deno.writeFile(join(dir, "b.bin"), slotFile([8, 9], 10, false));
    await Deno.writeFile(join(dir, "c.bin"), new TextEncoder().encode("not a slot file"));
    assertEquals([...(await readSlotTokens(join(dir, "a.bin")))!], [5, 6, 7]);
    assertEquals([...(await readSlotTokens(join(dir, "b.bin")))!], [8, 9]);
    assertEquals(await readSlotTokens(join(dir, "c.bin")), undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("kv cache: over its cap, the least recently used files go first and the index says so", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const entries = [];
    for (const [i, lastUsed] of [[0, 3000], [1, 1000], [2, 2000]]) {
      const file = `kv-${i}${i}${i}.bin`;
      const bytes = slotFile(Array.from({ length: 40 }, (_, k) => k + i), 1000);
      await Deno.writeFile(join(dir, file), bytes);
      entries.push({ file, model: "m", tokens: 40, bytes: bytes.length, lastUsed });
    }
    // Left by a save that died long ago, and one under way now (another daemon's).
    await Deno.writeFile(join(dir, "pending-old.bin"), new Uint8Array(10));
    await Deno.utime(join(dir, "pending-old.bin"), 0, 0);
    await Deno.writeFile(join(dir, "pending-new.bin"), new Uint8Array(10));
    await Deno.writeTextFile(join(dir, "index.json"), JSON.stringify({ version: 1, entries }));
    const size = entries[0].bytes;
    const cache = await openKvCache({ dir, maxBytes: size * 2 + 10 });
    assertEquals(cache.entries().map((e) => e.file), ["kv-000.bin", "kv-222.bin"]);
    const files = [...Deno.readDirSync(dir)].map((f) => f.name).sort();
    assertEquals(files, ["index.json", "kv-000.bin", "kv-222.bin", "pending-new.bin"]);
    const index = JSON.parse(await Deno.readTextFile(join(dir, "index.json")));
    assertEquals(index.entries.map((e: { file: string }) => e.file), ["kv-000.bin", "kv-222.bin"]);
    // A smaller cap on the next start keeps only the most recent.
    const smaller = await openKvCache({ dir, maxBytes: size });
    assertEquals(smaller.entries().map((e) => e.file), ["kv-000.bin"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

const OPTIONS = { temperature: 0, seed: 42, num_predict: 24 };
const SYSTEM = "You are a patient teacher. " +
  "Answer in full sentences and give one example for every idea you explain. ".repeat(6);
const TURN1 = "Explain what a hash table is, in a few sentences.";
const TURN2 = "Now explain how collisions are handled.";

async function chat(url: string, model: string, messages: unknown[]): Promise<string> {
  const res = await post(`${url}/api/chat`, { model, messages, options: OPTIONS, stream: false });
  const body = await res.json();
  assertEquals(res.status, 200, JSON.stringify(body));
  return body.message.content;
}

Deno.test("kv cache: a conversation goes on after its model was unloaded, restored, with the same answer", async () => {
  const smol = await smolModelPath();
  const logs: string[] = [];
  // `ref` is the same weights in a file of its own: a runner of its own that is never unloaded.
  await withDaemon({ models: { "smol.gguf": smol, "ref.gguf": smol }, logs }, async ({ url, dataDir }) => {
    const first = [{ role: "system", content: SYSTEM }, { role: "user", content: TURN1 }];
    const a1 = await chat(url, "smol", first);
    const r1 = await chat(url, "ref", first);
    assertEquals(a1, r1);

    const unload = await post(`${url}/api/chat`, { model: "smol", messages: [], keep_alive: 0 });
    assertEquals((await unload.json()).done_reason, "unload");
    const ps = await (await fetch(`${url}/api/ps`)).json();
    assertEquals(ps.models.map((m: { name: string }) => m.name), ["ref:latest"]);
    const slots = join(dataDir, "daemon", "slots");
    const index = JSON.parse(await Deno.readTextFile(join(slots, "index.json")));
    assertEquals(index.entries.length, 1, JSON.stringify(index));
    assert(index.entries[0].tokens > 100, JSON.stringify(index));
    assert(logs.some((l) => l.includes("kv cache: saved slot")), logs.join("\n"));

    const second = [...first, { role: "assistant", content: a1 }, { role: "user", content: TURN2 }];
    const res = await post(`${url}/api/chat`, { model: "smol", messages: second, options: OPTIONS });
    const lines = await readNdjson(res);
    const a2 = lines.map((l) => l.message.content).join("");
    const restored = logs.find((l) => l.includes("kv cache: restored"));
    assert(restored, logs.join("\n"));
    assert(a2.length > 0);
    assertEquals(a2, await chat(url, "ref", second));
  });
});

Deno.test("kv cache: Anthropic and Responses conversations are restored after an unload too", async (t) => {
  const smol = await smolModelPath();
  const logs: string[] = [];
  await withDaemon({ models: { "smol.gguf": smol, "ref.gguf": smol }, logs }, async ({ url, daemon }) => {
    const apis = {
      "/v1/messages": {
        turn: (model: string, history: { role: string; content: string }[]) => ({
          model,
          system: SYSTEM,
          messages: history,
          max_tokens: 24,
          temperature: 0,
        }),
        text: (body: { content: { type: string; text: string }[] }) =>
          body.content.filter((c) => c.type === "text").map((c) => c.text).join(""),
        cached: (body: { usage: { cache_read_input_tokens?: number } }) => body.usage.cache_read_input_tokens,
      },
      "/v1/responses": {
        turn: (model: string, history: { role: string; content: string }[]) => ({
          model,
          instructions: SYSTEM,
          input: history.map((m) =>
            m.role === "assistant"
              ? { type: "message", role: "assistant", content: [{ type: "output_text", text: m.content }] }
              : m
          ),
          max_output_tokens: 24,
          temperature: 0,
        }),
        text: (body: { output: { type: string; content?: { type: string; text: string }[] }[] }) =>
          body.output.filter((o) => o.type === "message").flatMap((o) => o.content ?? []).map((c) => c.text)
            .join(""),
        cached: (body: { usage: { input_tokens_details?: { cached_tokens?: number } } }) =>
          body.usage.input_tokens_details?.cached_tokens,
      },
    };
    await t.step("the prompt of each body is as long as llama-server's own count of it", async () => {
      await (await post(`${url}/api/generate`, { model: "ref" })).json();
      const runner = daemon.ctx.scheduler.list().find((r) => r.name === "ref:latest")!;
      const tools = [{ name: "weather", description: "Weather in a city", input_schema: { type: "object" } }];
      const messages = {
        model: "ref",
        max_tokens: 8,
        system: [{ type: "text", text: SYSTEM }],
        tools,
        messages: [
          { role: "user", content: [{ type: "text", text: "Weather in Paris?" }] },
          {
            role: "assistant",
            content: [{ type: "tool_use", id: "t1", name: "weather", input: { city: "Paris" } }],
          },
          {
            role: "user",
            content: [{ type: "tool_result", tool_use_id: "t1", content: [{ type: "text", text: "sunny" }] }],
          },
        ],
      };
      const responses = {
        model: "ref",
        instructions: SYSTEM,
        input: [
          { role: "user", content: "Weather in Paris?" },
          { type: "function_call", call_id: "t1", name: "weather", arguments: '{"city":"Paris"}' },
          { type: "function_call_output", call_id: "t1", output: "sunny" },
          { type: "message", role: "assistant", content: [{ type: "output_text", text: "It is sunny." }] },
          { role: "user", content: [{ type: "input_text", text: "And tomorrow?" }] },
        ],
        tools: [{ type: "function", name: "weather", parameters: { type: "object" } }],
      };
      for (
        const [path, count, body] of [
          ["/v1/messages", "/v1/messages/count_tokens", messages],
          ["/v1/responses", "/v1/responses/input_tokens", responses],
        ] as const
      ) {
        const theirs = await (await runnerFetch(runner.url!, count, body)).json();
        const ours = await promptTokens(runner.url!, path, body);
        assert(ours && ours.length > 100, `${path}: ${ours?.length}`);
        assertEquals(ours.length, theirs.input_tokens, `${path}: ${JSON.stringify(theirs)}`);
      }
    });
    for (const [path, api] of Object.entries(apis)) {
      await t.step(`${path}: the second turn after an unload restores the first`, async () => {
        const ask = async (model: string, history: { role: string; content: string }[]) => {
          const res = await post(`${url}${path}`, api.turn(model, history));
          const body = await res.json();
          assertEquals(res.status, 200, JSON.stringify(body));
          return { text: api.text(body), cached: api.cached(body) ?? 0, body };
        };
        const first = [{ role: "user", content: TURN1 }];
        const a1 = (await ask("smol", first)).text;
        assertEquals(a1, (await ask("ref", first)).text);
        await (await post(`${url}/api/generate`, { model: "smol", keep_alive: 0 })).json();
        assert(logs.some((l) => l.includes("kv cache: saved slot")), logs.join("\n"));
        const restoredBefore = logs.filter((l) => l.includes("kv cache: restored")).length;
        const second = [...first, { role: "assistant", content: a1 }, { role: "user", content: TURN2 }];
        const a2 = await ask("smol", second);
        assertEquals(
          logs.filter((l) => l.includes("kv cache: restored")).length,
          restoredBefore + 1,
          `not restored:\n${logs.slice(-20).join("\n")}`,
        );
        // llama-server took the restored tokens instead of computing them (the system prompt alone is ~100).
        assert(a2.cached > 100, `cached tokens: ${JSON.stringify(a2.body)}`);
        assert(a2.text.length > 0);
        assertEquals(a2.text, (await ask("ref", second)).text);
      });
    }
  });
});
