/**
 * The GGUF reader against PyPI gguf's own GGUFReader on the same files: every key, value and tensor info, for
 * files written by GGUFWriter (every value type, both byte orders, versions 2 and 3, a custom alignment, a
 * split model, a 151,936-token vocabulary) and a real model; plus truncated, corrupt and non-GGUF files.
 */
import { assert, assertEquals, assertRejects } from "./_assert.ts";
import { smolModelPath, tempDir } from "./_fixtures.ts";
import { python, testVenv } from "./_python.ts";
import { GgufError, type GgufValue, readGgufHeader } from "../lib/gguf/reader.ts";
import { describeModel } from "../lib/gguf/facts.ts";

const scripts = new URL("../scripts/gguf/", import.meta.url).pathname;

function flatten(v: GgufValue): unknown {
  if (Array.isArray(v)) return v.flatMap((x) => Array.isArray(x) ? flatten(x) as unknown[] : [flatten(x)]);
  if (typeof v === "bigint") return { bigint: v.toString() };
  return v;
}

Deno.test({
  name: "the reader reads exactly what gguf's GGUFReader reads, for every value type, version and byte order",
  sanitizeResources: false,
  async fn(t) {
    const py = await testVenv("gguf", ["gguf==0.19.0", "numpy"]);
    const tmp = await tempDir();
    try {
      await python(py, `${scripts}make_fixtures.py`, [tmp.path]);
      const files = [...Deno.readDirSync(tmp.path)].map((e) => `${tmp.path}/${e.name}`).sort();
      files.push(await smolModelPath());
      const theirs = JSON.parse(await python(py, `${scripts}dump.py`, files));
      for (const file of files) {
        await t.step(file.split("/").pop()!, async () => {
          const ours = await readGgufHeader(file);
          const ref = theirs[file];
          assertEquals(ours.littleEndian, ref.byteorder !== "S", "byte order");
          const keys = Object.keys(ours.metadata).filter((k) => !k.startsWith("GGUF."));
          assertEquals(keys.sort(), Object.keys(ref.kv).sort(), "keys");
          for (const k of keys) {
            assertEquals(ours.metadataTypes[k], ref.kv[k].type, `type of ${k}`);
            // gguf's reader flattens arrays of arrays; compare in that form here, nesting is checked below.
            assertEquals(flatten(ours.metadata[k]), ref.kv[k].value, `value of ${k}`);
          }
          assertEquals(ours.tensors.length, ref.tensors.length, "tensor count");
          ours.tensors.forEach((tensor, i) => {
            const r = ref.tensors[i];
            assertEquals(
              {
                name: tensor.name,
                dims: tensor.dims,
                type: tensor.type,
                abs: ours.dataOffset + tensor.offset,
              },
              { name: r.name, dims: r.dims, type: r.type, abs: r.absOffset },
            );
          });
        });
      }
      await t.step(
        "arrays of arrays keep their nesting; versions, alignment and big vocabularies are right",
        async () => {
          const le = await readGgufHeader(`${tmp.path}/types-le.gguf`);
          assertEquals(le.metadata["t.arr_nested"], [[1, 2], [3]]);
          assertEquals(le.metadata["t.arr_nested_str"], [["x", "y"], ["z"]]);
          assertEquals(le.metadata["t.u64"], 2n ** 53n + 12345n);
          assertEquals(le.version, 3);
          assertEquals((await readGgufHeader(`${tmp.path}/types-v2.gguf`)).version, 2);
          const be = await readGgufHeader(`${tmp.path}/types-be.gguf`);
          assertEquals(be.littleEndian, false);
          assertEquals(be.metadata["t.i64"], le.metadata["t.i64"]);
          const al = await readGgufHeader(`${tmp.path}/aligned-64.gguf`);
          assertEquals(al.alignment, 64);
          assertEquals(al.dataOffset % 64, 0);
          const big = await readGgufHeader(`${tmp.path}/big-vocab.gguf`, { skipArraysOver: 1000 });
          assertEquals(big.metadata["tokenizer.ggml.tokens"], {
            skipped: true,
            itemType: "STRING",
            length: 151936,
          });
          assertEquals(describeModel(big).vocabSize, 151936);
          const full = await readGgufHeader(`${tmp.path}/big-vocab.gguf`);
          assertEquals((full.metadata["tokenizer.ggml.tokens"] as string[])[151935], "tok151935");
        },
      );
    } finally {
      await tmp.cleanup();
    }
  },
});

Deno.test("bad files give a typed error naming the file and the byte offset", async (t) => {
  const tmp = await tempDir();
  try {
    const model = await Deno.readFile(await smolModelPath());
    await t.step("not a GGUF file", async () => {
      await Deno.writeTextFile(`${tmp.path}/x.gguf`, "this is not a model at all");
      const err = await assertRejects(
        () => readGgufHeader(`${tmp.path}/x.gguf`),
        GgufError,
        "not a GGUF file",
      );
      assertEquals(err.kind, "not-gguf");
      assertEquals(err.offset, 0);
      assertEquals(err.file, `${tmp.path}/x.gguf`);
    });
    await t.step("a file cut inside the header", async () => {
      await Deno.writeFile(`${tmp.path}/cut.gguf`, model.subarray(0, 100_000));
      const err = await assertRejects(() => readGgufHeader(`${tmp.path}/cut.gguf`), GgufError, "at byte");
      assertEquals(err.kind, "truncated");
      assert(err.offset > 0 && err.offset <= 100_000, String(err.offset));
    });
    await t.step("a count larger than the file is refused before allocating", async () => {
      const bad = model.slice(0, 2_000_000);
      new DataView(bad.buffer).setBigUint64(16, 2n ** 40n, true); // metadata count
      await Deno.writeFile(`${tmp.path}/huge.gguf`, bad);
      const err = await assertRejects(() => readGgufHeader(`${tmp.path}/huge.gguf`), GgufError);
      assert(err.kind === "too-large" || err.kind === "truncated", err.kind);
      assertEquals(err.offset, 16);
    });
    await t.step("an unsupported version", async () => {
      const bad = model.slice(0, 4096);
      new DataView(bad.buffer).setUint32(4, 9, true);
      await Deno.writeFile(`${tmp.path}/v9.gguf`, bad);
      const err = await assertRejects(() => readGgufHeader(`${tmp.path}/v9.gguf`), GgufError, "version 9");
      assertEquals(err.kind, "unsupported-version");
    });
  } finally {
    await tmp.cleanup();
  }
});
