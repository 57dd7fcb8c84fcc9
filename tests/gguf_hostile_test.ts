/**
 * Hostile files that are cheap to make and expensive to read: sparse files whose header claims enormous
 * arrays or strings. On disk they take no space; read naively, each array element becomes a value of many
 * bytes. The reader must refuse them with a typed error in little time and memory, and a facts-only read
 * (what the index does) must skip them without materialising anything.
 */
import { assert, assertEquals, assertRejects } from "./_assert.ts";
import { tempDir } from "./_fixtures.ts";
import { GgufError, readGgufHeader } from "../lib/gguf/reader.ts";

/**
 * A GGUF v3 file with one entry per key/value: its header bytes (written by `kv`), then `gap` bytes left as a
 * hole (the value's body, zeros that take no disk space).
 */
async function writeSparse(path: string, kvs: { kv: (out: number[]) => void; gap: number }[]): Promise<void> {
  const head: number[] = [0x47, 0x47, 0x55, 0x46];
  u32le(head, 3);
  u64le(head, 0); // tensors
  u64le(head, kvs.length);
  const f = await Deno.open(path, { write: true, create: true, truncate: true });
  try {
    let size = 0;
    const write = async (bytes: number[]) => {
      await f.seek(size, Deno.SeekMode.Start);
      await f.write(new Uint8Array(bytes));
      size += bytes.length;
    };
    await write(head);
    for (const { kv, gap } of kvs) {
      const out: number[] = [];
      kv(out);
      await write(out);
      size += gap;
    }
    await f.truncate(size);
  } finally {
    f.close();
  }
}

function key(out: number[], name: string): void {
  const b = new TextEncoder().encode(name);
  const dv = new DataView(new ArrayBuffer(8));
  dv.setBigUint64(0, BigInt(b.length), true);
  out.push(...new Uint8Array(dv.buffer), ...b);
}

function u32le(out: number[], v: number): void {
  out.push(v & 255, (v >>> 8) & 255, (v >>> 16) & 255, (v >>> 24) & 255);
}

function u64le(out: number[], v: number): void {
  u32le(out, v % 4294967296);
  u32le(out, Math.floor(v / 4294967296));
}

/** `name`: an array of `n` elements of scalar type `itemType` (its bytes come from the sparse tail). */
const bigArray = (name: string, itemType: number, n: number) => (out: number[]) => {
  key(out, name);
  u32le(out, 9);
  u32le(out, itemType);
  u64le(out, n);
};

/** Measures a call's wall time and RSS growth. */
async function measure<T>(
  fn: () => Promise<T>,
): Promise<{ result?: T; error?: unknown; ms: number; rss: number }> {
  const rss0 = Deno.memoryUsage().rss;
  const t0 = performance.now();
  try {
    const result = await fn();
    return { result, ms: performance.now() - t0, rss: Deno.memoryUsage().rss - rss0 };
  } catch (error) {
    return { error, ms: performance.now() - t0, rss: Deno.memoryUsage().rss - rss0 };
  }
}

Deno.test({
  name: "sparse files claiming huge arrays and strings are refused fast, in little memory",
  sanitizeResources: false,
  async fn(t) {
    const tmp = await tempDir();
    try {
      await t.step(
        "a 100-million-element array (under the per-array cap) is a typed error, not gigabytes of values",
        async () => {
          const path = `${tmp.path}/huge-array.gguf`;
          await writeSparse(path, [{ kv: bigArray("evil.bytes", 0, 100_000_000), gap: 100_000_000 }]);
          const m = await measure(() => readGgufHeader(path));
          assert(m.error instanceof GgufError, `expected a GgufError, got ${m.error ?? "a parse"}`);
          assertEquals(m.error.kind, "too-large");
          assertEquals(m.error.file, path);
          assert(m.ms < 1000, `took ${m.ms} ms`);
          assert(m.rss < 200 * 1048576, `rss grew ${m.rss} bytes`);
        },
      );

      await t.step("many large arrays that each pass the per-array cap still hit the total cap", async () => {
        const path = `${tmp.path}/many-arrays.gguf`;
        // 40 arrays of 1,000,000 u32 each: 4 MB apiece of (sparse) bytes, 40 M values in all.
        const kvs = Array.from(
          { length: 40 },
          (_, i) => ({ kv: bigArray(`evil.a${i}`, 4, 1_000_000), gap: 4_000_000 }),
        );
        await writeSparse(path, kvs);
        const m = await measure(() => readGgufHeader(path));
        assert(m.error instanceof GgufError, `expected a GgufError, got ${m.error ?? "a parse"}`);
        assertEquals(m.error.kind, "too-large");
        assert(m.ms < 5000, `took ${m.ms} ms`);
      });

      await t.step("strings adding up to gigabytes are refused before they are decoded", async () => {
        const path = `${tmp.path}/huge-strings.gguf`;
        const len = 60 * 1024 * 1024;
        const kvs = Array.from({ length: 8 }, (_, i) => ({
          kv: (out: number[]) => {
            key(out, `evil.s${i}`);
            u32le(out, 8);
            u64le(out, len);
          },
          gap: len,
        }));
        await writeSparse(path, kvs);
        const m = await measure(() => readGgufHeader(path));
        assert(m.error instanceof GgufError, `expected a GgufError, got ${m.error ?? "a parse"}`);
        assertEquals(m.error.kind, "too-large");
        assert(m.error.message.includes("strings"), m.error.message);
        assert(m.rss < 600 * 1048576, `rss grew ${m.rss} bytes`);
      });

      await t.step("a facts-only read skips the huge array without materialising it", async () => {
        const path = `${tmp.path}/huge-array.gguf`;
        const m = await measure(() => readGgufHeader(path, { skipArraysOver: 256 }));
        assert(!m.error, String(m.error));
        assertEquals(m.result!.metadata["evil.bytes"], {
          skipped: true,
          itemType: "UINT8",
          length: 100_000_000,
        });
        assert(m.rss < 100 * 1048576, `rss grew ${m.rss} bytes`);
      });

      await t.step("the caps can be raised by a caller who means it", async () => {
        const path = `${tmp.path}/mid-array.gguf`;
        await writeSparse(path, [{ kv: bigArray("big.bytes", 0, 3_000_000), gap: 3_000_000 }]);
        const err = await assertRejects(
          () => readGgufHeader(path, { limits: { maxValues: 1_000_000 } }),
          GgufError,
        );
        assertEquals(err.kind, "too-large");
        const h = await readGgufHeader(path, { limits: { maxValues: 4_000_000 } });
        assertEquals((h.metadata["big.bytes"] as number[]).length, 3_000_000);
      });
    } finally {
      await tmp.cleanup();
    }
  },
});
