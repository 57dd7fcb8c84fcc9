/**
 * Unity builds against the real release: cmake configures the bundled llama.cpp with llama-mgr's include, and
 * the generated build compiles the chosen libraries and llama's core in batches while ggml-rpc and ggml stay
 * file by file. Configure only: the compile itself is measured in bench/README.md ("Build times").
 */
import { assert, assertEquals, assertStringIncludes } from "./_assert.ts";
import { bundlePath, tempDir } from "./_fixtures.ts";
import { configureCommand, unityIncludePath } from "../lib/llamacpp/cmake.ts";
import { writeUnityInclude } from "../lib/llamacpp/build.ts";
import { run, which } from "../lib/util/run.ts";

const tools = ["git", "cmake", "ninja"].every((t) => which(t));

Deno.test({
  name: "unity build: the bundled release configures with batches for the server's libraries" +
    (tools ? "" : " (skipped: needs git, cmake and ninja)"),
  ignore: !tools,
  async fn() {
    const tmp = await tempDir();
    try {
      const src = `${tmp.path}/src`;
      await run(["git", "clone", "--quiet", await bundlePath(), src]);
      const spec = { arch: "cpu" as const, unity: true };
      const build = `${tmp.path}/build`;
      await writeUnityInclude(build, spec);
      const written = await Deno.readTextFile(unityIncludePath(build));
      const r = await run(configureCommand(src, build, spec), { timeoutMs: 600_000 });
      const out = r.stdout + r.stderr;
      for (const t of ["llama-common", "mtmd", "server-context", "llama-server-impl"]) {
        assertStringIncludes(out, `llama-mgr: unity build of ${t}\n`);
      }
      // Once, though ggml's own project() call includes the file again.
      assertEquals(out.split("llama-mgr: unity build of llama-common").length, 2);
      const ninja = await Deno.readTextFile(`${build}/build.ninja`);
      assert(ninja.includes("common/CMakeFiles/llama-common.dir/Unity/unity_0_cxx.cxx.o"));
      assert(ninja.includes("tools/server/CMakeFiles/server-context.dir/Unity/unity_0_cxx.cxx.o"));
      assert(!ninja.includes("common/CMakeFiles/llama-common.dir/arg.cpp.o"), "arg.cpp is in a batch");
      // The sources that clash in a batch compile alone.
      assert(ninja.includes("common/CMakeFiles/llama-common.dir/json.cpp.o"));
      assert(ninja.includes("tools/mtmd/CMakeFiles/mtmd.dir/mtmd-helper.cpp.o"));
      assert(!out.includes("unity build of ggml"), "ggml's kernels stay file by file");
      assert(ninja.includes("ggml/src/CMakeFiles/ggml-cpu.dir/ggml-cpu/ops.cpp.o"));
      // ggml-rpc would not compile in a batch.
      assert(ninja.includes("ggml/src/ggml-rpc/CMakeFiles/ggml-rpc.dir/transport.cpp.o"));
      // llama's core joins the batches of its model graphs: no source of it compiles alone.
      assertStringIncludes(out, "llama-mgr: unity build of llama's core\n");
      assert(!ninja.includes("src/CMakeFiles/llama.dir/llama-model.cpp.o"), "llama-model.cpp is in a batch");
      assert(!/src\/CMakeFiles\/llama\.dir\/[^ :]*\.cpp\.o/.test(ninja), "a source of llama compiles alone");
      // A second write with nothing changed leaves the file (and so cmake's inputs) alone.
      const before = (await Deno.stat(unityIncludePath(build))).mtime;
      await writeUnityInclude(build, spec);
      assertEquals((await Deno.stat(unityIncludePath(build))).mtime, before);
      assertEquals(await Deno.readTextFile(unityIncludePath(build)), written);
      const steps = await run(["ninja", "-C", build, "-n", "llama-server"]);
      const count = steps.stdout.split("\n").filter((l) => /^\[\d+\/\d+\]/.test(l)).length;
      console.log(`ninja steps for llama-server with unity batches: ${count} (207 file by file)`);
      assert(count < 120, `${count} steps`);
    } finally {
      await tmp.cleanup();
    }
  },
});
