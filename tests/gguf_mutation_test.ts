/**
 * A hostile-file test: thousands of truncations and flipped bytes of real GGUF headers. Every one must give
 * a valid parse or a GgufError, never a crash, a hang or an unbounded allocation.
 */
import { assert } from "./_assert.ts";
import { smolModelPath, tempDir } from "./_fixtures.ts";
import { python, testVenv } from "./_python.ts";
import { GgufError, parseGgufHeader } from "../lib/gguf/reader.ts";
import { rng } from "./_rng.ts";

Deno.test({
  name: "thousands of truncated and corrupted headers never crash, hang or exhaust memory",
  sanitizeResources: false,
  async fn() {
    const py = await testVenv("gguf", ["gguf==0.19.0", "numpy"]);
    const tmp = await tempDir();
    try {
      await python(py, new URL("../scripts/gguf/make_fixtures.py", import.meta.url).pathname, [tmp.path]);
      const samples = [
        await Deno.readFile(`${tmp.path}/types-le.gguf`),
        await Deno.readFile(`${tmp.path}/types-be.gguf`),
        (await Deno.readFile(await smolModelPath())).slice(0, 1_800_000),
      ];
      const rand = rng(12345);
      const rssBefore = Deno.memoryUsage().rss;
      let parsed = 0;
      let errors = 0;
      let slowest = 0;
      const kinds = new Map<string, number>();
      const check = (bytes: Uint8Array) => {
        const t0 = performance.now();
        try {
          parseGgufHeader(bytes, "mutant.gguf");
          parsed++;
        } catch (err) {
          if (!(err instanceof GgufError)) throw new Error(`not a GgufError: ${err}`);
          assert(
            err.offset >= 0 && err.offset <= bytes.length + 8,
            `offset ${err.offset} of ${bytes.length}`,
          );
          kinds.set(err.kind, (kinds.get(err.kind) ?? 0) + 1);
          errors++;
        }
        slowest = Math.max(slowest, performance.now() - t0);
      };
      for (const [i, sample] of samples.entries()) {
        const rounds = i === 2 ? 300 : 1500;
        for (let r = 0; r < rounds; r++) {
          // A truncation anywhere in the header.
          check(sample.subarray(0, Math.floor(rand() * sample.length)));
          // One to four flipped bytes, biased to the counts and lengths at the start.
          const m = sample.slice();
          const flips = 1 + Math.floor(rand() * 4);
          for (let f = 0; f < flips; f++) {
            const at = rand() < 0.3 ? Math.floor(rand() * 64) : Math.floor(rand() * m.length);
            m[at] = Math.floor(rand() * 256);
          }
          check(m);
          // A length or count set to something enormous.
          const big = sample.slice();
          const at = 8 + Math.floor(rand() * Math.min(4096, big.length - 16));
          new DataView(big.buffer).setBigUint64(at, 0xffffffffffffn << BigInt(Math.floor(rand() * 16)), true);
          check(big);
        }
      }
      const grew = Deno.memoryUsage().rss - rssBefore;
      console.log(
        `${parsed} parsed, ${errors} typed errors ${JSON.stringify(Object.fromEntries(kinds))}, slowest ${
          slowest.toFixed(1)
        } ms, rss +${(grew / 1048576).toFixed(0)} MiB`,
      );
      assert(parsed + errors === (1500 * 2 + 300) * 3);
      assert(errors > 1000, "most mutants are errors");
      assert(slowest < 2000, `a mutant took ${slowest} ms`);
      assert(grew < 400 * 1048576, `memory grew by ${grew} bytes`);
    } finally {
      await tmp.cleanup();
    }
  },
});
