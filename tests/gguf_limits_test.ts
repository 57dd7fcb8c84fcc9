/**
 * The reader's totals on the shapes a hostile file can claim cheaply besides huge arrays and strings: millions
 * of tensor infos, of metadata keys, of nested (empty) arrays, of tiny strings. Each is a sparse file of zeros
 * that takes no disk space; each must end in a typed error within a second and in little memory. And strings
 * are kept byte for byte as gguf's GGUFReader reads them, a leading byte-order mark included.
 */
import { assert, assertEquals, assertThrows } from "./_assert.ts";
import { tempDir } from "./_fixtures.ts";
import { python, testVenv } from "./_python.ts";
import {
  DEFAULT_LIMITS,
  GgufError,
  type GgufHeader,
  parseGgufHeader,
  readGgufHeader,
} from "../lib/gguf/reader.ts";
import { describeModel } from "../lib/gguf/facts.ts";
import { scanModels } from "../lib/models/index.ts";
import { resolvePaths } from "../lib/config/paths.ts";
import { parseConfig } from "../lib/config/load.ts";

/** Little-endian GGUF v3 bytes. */
class Bytes {
  out: number[] = [];
  u32(v: number): this {
    this.out.push(v & 255, (v >>> 8) & 255, (v >>> 16) & 255, (v >>> 24) & 255);
    return this;
  }
  u64(v: number): this {
    return this.u32(v % 4294967296).u32(Math.floor(v / 4294967296));
  }
  str(s: string): this {
    const b = new TextEncoder().encode(s);
    this.u64(b.length);
    this.out.push(...b);
    return this;
  }
  raw(b: number[]): this {
    this.out.push(...b);
    return this;
  }
}

/** A file of `head` followed by `tail` zero bytes left as a hole. */
async function sparse(path: string, head: Bytes, tail: number): Promise<void> {
  const f = await Deno.open(path, { write: true, create: true, truncate: true });
  try {
    await f.write(new Uint8Array(head.out));
    await f.truncate(head.out.length + tail);
  } finally {
    f.close();
  }
}

const gguf = (tensors: number, kvs: number) =>
  new Bytes().raw([0x47, 0x47, 0x55, 0x46]).u32(3).u64(tensors).u64(kvs);

/** Reads with and without skipping arrays; both must be a typed too-large error, fast and small. */
async function refused(path: string, what: RegExp): Promise<void> {
  for (const options of [{ skipArraysOver: 256 }, {}]) {
    const rss0 = Deno.memoryUsage().rss;
    const t0 = performance.now();
    let err: unknown;
    try {
      await readGgufHeader(path, options);
    } catch (e) {
      err = e;
    }
    const ms = performance.now() - t0;
    const grew = Deno.memoryUsage().rss - rss0;
    assert(err instanceof GgufError, `expected a GgufError, got ${err ?? "a parse"}`);
    assertEquals(err.kind, "too-large");
    assertEquals(err.file, path);
    assert(what.test(err.message), err.message);
    assert(ms < 1000, `${JSON.stringify(options)} took ${ms.toFixed(0)} ms`);
    assert(grew < 200 * 1048576, `${JSON.stringify(options)}: rss grew ${(grew / 1048576).toFixed(0)} MiB`);
  }
}

Deno.test({
  name: "counts a sparse file can claim for free are capped by what real models need",
  sanitizeResources: false,
  async fn(t) {
    const tmp = await tempDir();
    try {
      await t.step(
        "4 million tensor infos (a 100 MB hole) are refused at the count, not parsed",
        async () => {
          const path = `${tmp.path}/tensors.gguf`;
          const n = 4 * 1024 * 1024;
          await sparse(path, gguf(n, 0), n * 24 + 64);
          await refused(path, /tensor count 4194304 is over the limit/);
        },
      );

      await t.step("a million metadata keys are refused at the count", async () => {
        const path = `${tmp.path}/keys.gguf`;
        const n = 1024 * 1024;
        await sparse(path, gguf(0, n), n * 13);
        await refused(path, /metadata count 1048576 is over the limit/);
      });

      await t.step("as many tensors as the cap allows still parse", async () => {
        const path = `${tmp.path}/many-tensors.gguf`;
        const n = DEFAULT_LIMITS.maxTensors;
        await sparse(path, gguf(n, 0), n * 24 + 64);
        const t0 = performance.now();
        const h = await readGgufHeader(path, { skipArraysOver: 256 });
        assertEquals(h.tensors.length, n);
        assertEquals(h.tensors[n - 1], { name: "", dims: [], type: 0, offset: 0 });
        // How fast is bench/gguf_index.ts's to measure; printed here for the record.
        console.log(`${n} tensors parsed in ${Math.round(performance.now() - t0)} ms`);
      });

      await t.step("16 million empty inner arrays end at the values cap, skipped or not", async () => {
        const path = `${tmp.path}/nested.gguf`;
        const n = 16_000_000; // under the per-array cap and the values cap on its own
        // Each inner array is 12 zero bytes: element type UINT8, length 0.
        await sparse(path, gguf(0, 1).str("evil.nested").u32(9).u32(9).u64(n), n * 12 + 64);
        await refused(path, /arrays in the header add up to over/);
      });

      await t.step("10 million one-letter strings end at the string cap", async () => {
        const path = `${tmp.path}/letters.gguf`;
        const n = 10_000_000;
        const head = gguf(0, 1).str("evil.letters").u32(9).u32(8).u64(n);
        // Strings of length 1 whose letter is a zero byte: length (8 bytes) + 1 byte each.
        const f = await Deno.open(path, { write: true, create: true, truncate: true });
        try {
          await f.write(new Uint8Array(head.out));
          const one = new Uint8Array(9 * 1_000_000);
          for (let i = 0; i < one.length; i += 9) one[i] = 1;
          for (let k = 0; k < n / 1_000_000; k++) {
            let off = 0;
            while (off < one.length) off += await f.write(one.subarray(off));
          }
        } finally {
          f.close();
        }
        // A facts-only read skips the list without decoding it; a full read stops at the string cap.
        const skipped = await readGgufHeader(path, { skipArraysOver: 256 });
        assertEquals(skipped.metadata["evil.letters"], { skipped: true, itemType: "STRING", length: n });
        const rss0 = Deno.memoryUsage().rss;
        const t0 = performance.now();
        let err: unknown;
        try {
          await readGgufHeader(path);
        } catch (e) {
          err = e;
        }
        const ms = performance.now() - t0;
        assert(err instanceof GgufError && err.kind === "too-large", String(err));
        assert(/strings in the header/.test(err.message), err.message);
        const grew = Deno.memoryUsage().rss - rss0;
        console.log(`full read refused after ${ms.toFixed(0)} ms, rss +${(grew / 1048576).toFixed(0)} MiB`);
        assert(ms < 5000, `took ${ms.toFixed(0)} ms`);
        assert(grew < 200 * 1048576, `rss grew ${(grew / 1048576).toFixed(0)} MiB`);
      });
    } finally {
      await tmp.cleanup();
    }
  },
});

Deno.test({
  name: "strings are read byte for byte as GGUFReader reads them: a byte-order mark, NUL, emoji",
  sanitizeResources: false,
  async fn() {
    const py = await testVenv("gguf", ["gguf==0.19.0", "numpy"]);
    const tmp = await tempDir();
    try {
      const path = `${tmp.path}/strings.gguf`;
      const values = ["\ufeffstarts with a BOM", "a\u0000b", "🦙 llama ✓", "\ufeff", ""];
      const head = gguf(0, values.length + 1);
      values.forEach((v, i) => head.str(`s.${i}`).u32(8).str(v));
      head.str("s.list").u32(9).u32(8).u64(values.length);
      for (const v of values) head.str(v);
      await sparse(path, head, 0);
      const ref =
        JSON.parse(await python(py, new URL("../scripts/gguf/dump.py", import.meta.url).pathname, [path]))[
          path
        ];
      const ours: GgufHeader = await readGgufHeader(path);
      values.forEach((v, i) => {
        assertEquals(ours.metadata[`s.${i}`], v, `s.${i}`);
        assertEquals(ref.kv[`s.${i}`].value, v, `GGUFReader's s.${i}`);
      });
      assertEquals(ours.metadata["s.list"], values);
      assertEquals(ref.kv["s.list"].value, values);
    } finally {
      await tmp.cleanup();
    }
  },
});

Deno.test({
  name: "a header claiming 100 million layers is refused in milliseconds, and a scan lists it as unreadable",
  sanitizeResources: false,
  async fn() {
    const tmp = await tempDir();
    try {
      const head = gguf(0, 4)
        .str("general.architecture").u32(8).str("gemma3")
        .str("gemma3.block_count").u32(4).u32(100_000_000)
        .str("gemma3.attention.head_count").u32(4).u32(8)
        .str("gemma3.attention.sliding_window").u32(4).u32(512);
      const bytes = new Uint8Array(head.out);
      const t0 = performance.now();
      const rss0 = Deno.memoryUsage().rss;
      assertThrows(
        () => describeModel(parseGgufHeader(bytes, "layers.gguf")),
        RangeError,
        "block_count 100000000",
      );
      assert(performance.now() - t0 < 100, `took ${performance.now() - t0} ms`);
      assert(Deno.memoryUsage().rss - rss0 < 50 * 1048576, "no per-layer arrays were built");

      await Deno.mkdir(`${tmp.path}/mine`);
      await Deno.writeFile(`${tmp.path}/mine/layers.gguf`, bytes);
      const paths = resolvePaths({ dataDir: `${tmp.path}/data`, env: {} });
      const config = parseConfig({
        models: {
          dirs: [`${tmp.path}/mine`],
          sources: { huggingface: false, ollama: false, lmstudio: false, llamacpp: false },
        },
      });
      const r = await scanModels(paths, config, { env: {} });
      assertEquals(r.models, []);
      assertEquals(r.unreadable.map((u) => u.path), [`${tmp.path}/mine/layers.gguf`]);
      assert(r.unreadable[0].error.includes("not a layer count llama.cpp loads"), r.unreadable[0].error);
    } finally {
      await tmp.cleanup();
    }
  },
});
