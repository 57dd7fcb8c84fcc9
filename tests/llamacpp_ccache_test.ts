/**
 * What ccache saves, as `doctor` reports it: a real ccache in a temp cache dir compiles one file twice (a miss,
 * then a hit), the per-build stats log counts both, and `doctor` prints ccache's totals and an instance's last
 * build.
 */
import { join } from "node:path";
import { assertEquals, assertStringIncludes } from "./_assert.ts";
import { cli, tempDir } from "./_fixtures.ts";
import { ccacheLogCounts } from "../lib/llamacpp/build.ts";
import { run, which } from "../lib/util/run.ts";

const ccache = which("ccache");
const cc = which("cc") ?? which("gcc");

Deno.test({
  name: "doctor says how many compilations ccache answered, in all and in each instance's last build" +
    (ccache && cc ? "" : " (skipped: ccache or a C compiler is not installed)"),
  ignore: !ccache || !cc,
  async fn() {
    const tmp = await tempDir();
    try {
      const env = { CCACHE_DIR: join(tmp.path, "cache"), CCACHE_STATSLOG: join(tmp.path, "stats.log") };
      await Deno.writeTextFile(join(tmp.path, "a.c"), "int answer(void) { return 42; }\n");
      for (let i = 0; i < 2; i++) {
        await run([ccache!, cc!, "-c", join(tmp.path, "a.c"), "-o", join(tmp.path, "a.o")], { env });
      }
      assertEquals(ccacheLogCounts(await Deno.readTextFile(env.CCACHE_STATSLOG)), { hits: 1, misses: 1 });

      // An instance record whose last build counted ccache's answers (its binaries are not needed here).
      const data = join(tmp.path, "data");
      await Deno.mkdir(join(data, "instances", "cpu"), { recursive: true });
      await Deno.writeTextFile(
        join(data, "instances", "cpu", "instance.json"),
        JSON.stringify({
          name: "cpu",
          repoUrl: "https://github.com/ggml-org/llama.cpp",
          ref: "HEAD",
          arch: "cpu",
          commit: "0".repeat(40),
          version: "0.5.0-dev (build 1, commit 0000000)",
          gpuTargets: [],
          cmakeArgs: [],
          cmakeCommand: [],
          targets: ["llama-server"],
          builtAt: "2026-12-03T18:00:00.000Z",
          binDir: join(data, "instances", "cpu", "releases", "none", "bin"),
          buildSeconds: 41.5,
          ccache: { hits: 182, misses: 10 },
        }),
      );
      const r = await cli(["-d", data, "--config", join(tmp.path, "none.yaml"), "doctor", "--arch", "cpu"], {
        env: { CCACHE_DIR: env.CCACHE_DIR },
      });
      assertStringIncludes(r.stdout, "ccache: 1 of 2 compilations on this machine came from the cache (50%)");
      assertStringIncludes(
        r.stdout,
        "last build of 'cpu': 182 of 192 compilations from the cache (95%), 41.5s",
      );
      const j = await cli(["-d", data, "--config", join(tmp.path, "none.yaml"), "doctor", "--json"], {
        env: { CCACHE_DIR: env.CCACHE_DIR },
      });
      const report = JSON.parse(j.stdout).ccache;
      assertEquals([report.hits, report.misses], [1, 1]);
      assertEquals(report.builds, [{ instance: "cpu", hits: 182, misses: 10, seconds: 41.5 }]);
    } finally {
      await tmp.cleanup();
    }
  },
});
