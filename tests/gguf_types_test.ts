/**
 * The tables that size tensors and name quantizations, against llama.cpp's own: the ggml types (elements
 * and bytes per block) and file types of the gguf-py package that ships with the built instance. A type
 * missing here sizes its tensors at 0 bytes, and the memory estimate would leave those weights out.
 */
import { assertEquals } from "./_assert.ts";
import { testInstance } from "./_fixtures.ts";
import { python, testVenv } from "./_python.ts";
import { FILE_TYPES, GGML_TYPES, tensorBytes } from "../lib/gguf/types.ts";

Deno.test({
  name: "every ggml type and file type of the instance's gguf-py is known, with the same block sizes",
  sanitizeResources: false,
  async fn() {
    const { instance } = await testInstance();
    const src = `${instance.pythonDir}/gguf-py`;
    const py = await testVenv("gguf", ["gguf==0.19.0", "numpy"]);
    const tmp = await Deno.makeTempFile({ suffix: ".py" });
    try {
      // The instance's gguf-py first on the path: llama.cpp's table, not the PyPI release's.
      await Deno.writeTextFile(
        tmp,
        [
          "import json, sys",
          `sys.path.insert(0, ${JSON.stringify(src)})`,
          "import gguf",
          "assert gguf.__file__.startswith(sys.path[0]), gguf.__file__",
          "print(json.dumps({",
          "  'types': {int(t): [t.name, b, s] for t, (b, s) in gguf.GGML_QUANT_SIZES.items()},",
          "  'ftypes': {int(f): f.name.removeprefix('MOSTLY_').removeprefix('ALL_') for f in gguf.LlamaFileType if f.name != 'GUESSED'},",
          "}))",
        ].join("\n"),
      );
      const theirs = JSON.parse(await python(py, tmp)) as {
        types: Record<string, [string, number, number]>;
        ftypes: Record<string, string>;
      };
      const ours = Object.fromEntries(
        Object.entries(GGML_TYPES).map(([k, t]) => [k, [t.name, t.blockSize, t.typeSize]]),
      );
      assertEquals(ours, theirs.types);
      assertEquals(FILE_TYPES, theirs.ftypes);
      // A 4096 x 4096 NVFP4 tensor: 64 elements per 36-byte block.
      assertEquals(tensorBytes([4096, 4096], 40), 4096 * 4096 / 64 * 36);
    } finally {
      await Deno.remove(tmp);
    }
  },
});
