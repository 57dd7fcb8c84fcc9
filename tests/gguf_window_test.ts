/**
 * The file reader slides a window over headers larger than its first read (SmolLM2's is 1.8 MB, read 512 KB at
 * a time), with a fast path for token lists that stops at the window's end. Whatever a file holds, reading it
 * from disk must give exactly what parsing the same bytes in memory gives: the same header, or the same error
 * kind at the same byte. Hundreds of mutants of a real model's header, truncated and with flipped bytes (many at
 * string lengths, so strings straddle window edges), are read both ways, facts-only and in full.
 */
import { assert, assertEquals } from "./_assert.ts";
import { smolModelPath, tempDir } from "./_fixtures.ts";
import { python, testVenv } from "./_python.ts";
import {
  GgufError,
  type GgufHeader,
  parseGgufHeader,
  readGgufHeader,
  type ReadOptions,
} from "../lib/gguf/reader.ts";
import { rng } from "./_rng.ts";

type Outcome = { header: GgufHeader } | { kind: string; offset: number; message: string };

function outcome(fn: () => GgufHeader): Outcome {
  try {
    return { header: fn() };
  } catch (err) {
    if (!(err instanceof GgufError)) throw err;
    return { kind: err.kind, offset: err.offset, message: err.message };
  }
}

async function outcomeAsync(fn: () => Promise<GgufHeader>): Promise<Outcome> {
  try {
    return { header: await fn() };
  } catch (err) {
    if (!(err instanceof GgufError)) throw err;
    return { kind: err.kind, offset: err.offset, message: err.message };
  }
}

/** Offsets of the 8-byte string lengths in the token and merge lists (where a flip moves every later string). */
function stringLengthOffsets(bytes: Uint8Array, max: number): number[] {
  const out: number[] = [];
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // Walk every length-prefixed printable run: good enough to find many of the token list's lengths.
  for (let p = 0; p + 8 < bytes.length && out.length < max; p++) {
    const n = dv.getUint32(p, true);
    if (n > 0 && n < 64 && dv.getUint32(p + 4, true) === 0 && p + 8 + n + 8 <= bytes.length) {
      const nextLen = dv.getUint32(p + 8 + n, true);
      if (nextLen > 0 && nextLen < 64 && dv.getUint32(p + 12 + n, true) === 0) {
        out.push(p);
        p += 7 + n;
      }
    }
  }
  return out;
}

Deno.test({
  name: "reading a file through the sliding window gives what parsing its bytes in memory gives",
  sanitizeResources: false,
  async fn(t) {
    const tmp = await tempDir();
    try {
      const model = await smolModelPath();
      const original = (await readGgufHeader(model, { skipArraysOver: 256 })).headerBytes;
      assert(original > 3 * 512 * 1024, `SmolLM2's header (${original} bytes) spans several windows`);
      const sample = (await Deno.readFile(model)).slice(0, original + 4096);
      const lengths = stringLengthOffsets(sample, 400_000);
      assert(lengths.length > 50_000, `found ${lengths.length} string lengths`);
      const rand = rng(4242);
      const path = `${tmp.path}/mutant.gguf`;
      let same = 0;
      let parsed = 0;
      const kinds = new Map<string, number>();
      const compare = async (bytes: Uint8Array, label: string) => {
        await Deno.writeFile(path, bytes);
        for (const options of [{ skipArraysOver: 256 }, {}] as ReadOptions[]) {
          const fromFile = await outcomeAsync(() => readGgufHeader(path, options));
          const inMemory = outcome(() => parseGgufHeader(bytes, path, options));
          if ("header" in fromFile && "header" in inMemory) {
            assertEquals(fromFile.header, inMemory.header, `${label} ${JSON.stringify(options)}`);
            parsed++;
          } else {
            assertEquals(fromFile, inMemory, `${label} ${JSON.stringify(options)}`);
            const kind = (fromFile as { kind: string }).kind;
            kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
          }
          same++;
        }
      };

      await t.step("the unchanged header, and truncations anywhere in it", async () => {
        await compare(sample, "original");
        for (let i = 0; i < 60; i++) {
          const cut = Math.floor(rand() * sample.length);
          await compare(sample.subarray(0, cut), `cut at ${cut}`);
        }
        // Right at and around the window edges.
        for (const edge of [512 * 1024, 1024 * 1024, 1536 * 1024]) {
          for (const d of [-9, -8, -1, 0, 1, 7, 8]) {
            await compare(sample.subarray(0, edge + d), `cut at ${edge + d}`);
          }
        }
      });

      await t.step("string lengths changed, so strings and lengths straddle the window edges", async () => {
        for (let i = 0; i < 160; i++) {
          const m = sample.slice();
          const at = lengths[Math.floor(rand() * lengths.length)];
          const dv = new DataView(m.buffer);
          const r = rand();
          if (r < 0.4) dv.setUint32(at, dv.getUint32(at, true) + 1 + Math.floor(rand() * 70_000), true);
          else if (r < 0.6) dv.setUint32(at, 0, true);
          else if (r < 0.8) dv.setUint32(at + 4, 1 + Math.floor(rand() * 255), true); // a length over 4 GiB
          else dv.setUint32(at, 512 * 1024 + Math.floor(rand() * 1024), true); // about one window long
          await compare(m, `length at ${at}`);
        }
      });

      await t.step("random flipped bytes anywhere in the header", async () => {
        for (let i = 0; i < 120; i++) {
          const m = sample.slice();
          for (let f = 0, n = 1 + Math.floor(rand() * 3); f < n; f++) {
            m[Math.floor(rand() * original)] = Math.floor(rand() * 256);
          }
          await compare(m, `flip ${i}`);
        }
      });
      console.log(
        `${same} reads agreed: ${parsed} parses, errors ${JSON.stringify(Object.fromEntries(kinds))}`,
      );
      assert(
        parsed > 20 && [...kinds.values()].reduce((a, b) => a + b, 0) > 100,
        "both outcomes are exercised",
      );
    } finally {
      await tmp.cleanup();
    }
  },
});

Deno.test({
  name: "a big-endian header of several windows reads as GGUFReader reads it, from disk as from memory",
  sanitizeResources: false,
  async fn(t) {
    const py = await testVenv("gguf", ["gguf==0.19.0", "numpy"]);
    const tmp = await tempDir();
    try {
      const path = `${tmp.path}/be-vocab.gguf`;
      const script = new URL("../scripts/gguf/make_big_endian.py", import.meta.url).pathname;
      const ref = JSON.parse(await python(py, script, [path]));
      assertEquals(ref.byteorder, "S", "GGUFReader sees a byte-swapped file");
      const full = await readGgufHeader(path);
      await t.step("every key, the token and merge lists and the tensor agree with GGUFReader", () => {
        assertEquals(full.littleEndian, false);
        assert(full.headerBytes > 3 * 512 * 1024, `${full.headerBytes} bytes of header`);
        assertEquals(Object.keys(full.metadata).sort(), ref.keys);
        const tokens = full.metadata["tokenizer.ggml.tokens"] as string[];
        assertEquals([tokens.length, tokens[0], tokens.at(-1)], [ref.tokens, ref.first, ref.last]);
        assertEquals((full.metadata["tokenizer.ggml.merges"] as string[]).length, ref.merges);
        assertEquals(
          full.tensors.map((x) => ({ name: x.name, dims: x.dims, absOffset: full.dataOffset + x.offset })),
          ref.tensors,
        );
      });
      await t.step(
        "facts-only and full reads, unchanged and mutated, agree with in-memory parsing",
        async () => {
          const bytes = (await Deno.readFile(path)).slice(0, full.headerBytes + 1024);
          const rand = rng(777);
          const file = `${tmp.path}/mutant.gguf`;
          for (let i = 0; i < 80; i++) {
            const m = bytes.slice();
            if (i > 0) {
              for (let f = 0, n = 1 + Math.floor(rand() * 3); f < n; f++) {
                m[Math.floor(rand() * full.headerBytes)] = Math.floor(rand() * 256);
              }
            }
            const cut = i % 4 === 3 ? m.subarray(0, Math.floor(rand() * m.length)) : m;
            await Deno.writeFile(file, cut);
            for (const options of [{ skipArraysOver: 256 }, {}] as ReadOptions[]) {
              const fromFile = await outcomeAsync(() => readGgufHeader(file, options));
              const inMemory = outcome(() => parseGgufHeader(cut, file, options));
              assertEquals(fromFile, inMemory, `mutant ${i} ${JSON.stringify(options)}`);
            }
          }
        },
      );
    } finally {
      await tmp.cleanup();
    }
  },
});
