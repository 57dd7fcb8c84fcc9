/**
 * KV caches kept across evictions: the store's size cap and file format alone, then a real daemon whose
 * SmolLM2 runner is unloaded mid-conversation and, loaded again, restores the saved slot and answers exactly as
 * a runner that was never unloaded.
 */
import { join } from "node:path";
import { assert, assertEquals } from "./_assert.ts";
import { smolModelPath } from "./_fixtures.ts";
import { post, readNdjson, withDaemon } from "./_daemon.ts";
import { openKvCache, parseByteSize, readSlotTokens } from "../lib/daemon/runners/kv_cache.ts";

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
