/**
 * A release whose sources clash in a unity batch still installs: the batch fails to compile, the install says
 * so and builds file by file, and the instance records that it was built without batches. The project is a
 * small CMake one (a `llama-common` of two files that each define the same static helper, and a
 * `llama-server` that prints a version), so no llama.cpp build is needed.
 */
import { assert, assertEquals, assertStringIncludes } from "./_assert.ts";
import { join } from "node:path";
import { tempDir } from "./_fixtures.ts";
import { resolvePaths } from "../lib/config/paths.ts";
import { installInstance } from "../lib/llamacpp/install.ts";
import { run, which } from "../lib/util/run.ts";

const tools = ["git", "cmake", "ninja", "c++"].every((t) => which(t));

const CMAKE = `cmake_minimum_required(VERSION 3.16)
project(toy CXX)
set(CMAKE_RUNTIME_OUTPUT_DIRECTORY \${CMAKE_BINARY_DIR}/bin)
add_library(llama-common STATIC a.cpp b.cpp)
add_executable(llama-server main.cpp)
target_link_libraries(llama-server PRIVATE llama-common)
`;
const MAIN = `#include <cstdio>
int a(); int b();
int main() { std::printf("version: %d (toy)\\n", a() + b()); return 0; }
`;

async function toyRepo(dir: string, clash: boolean): Promise<string> {
  const repo = join(dir, clash ? "clash" : "fine");
  await Deno.mkdir(repo, { recursive: true });
  const git = (...args: string[]) =>
    run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", ...args], { cwd: repo });
  await git("init", "--quiet");
  await Deno.writeTextFile(join(repo, "CMakeLists.txt"), CMAKE);
  await Deno.writeTextFile(join(repo, "main.cpp"), MAIN);
  // In one batch, two definitions of `helper` are a compile error; file by file they are two private helpers.
  const helper = (n: number) =>
    clash ? `static int helper() { return ${n}; }` : `static int helper${n}() { return ${n}; }`;
  await Deno.writeTextFile(
    join(repo, "a.cpp"),
    `${helper(1)}\nint a() { return helper${clash ? "" : 1}(); }\n`,
  );
  await Deno.writeTextFile(
    join(repo, "b.cpp"),
    `${helper(2)}\nint b() { return helper${clash ? "" : 2}(); }\n`,
  );
  await git("add", ".");
  await git("commit", "--quiet", "-m", "toy");
  return repo;
}

Deno.test({
  name: "unity build: a release whose sources clash in a batch builds file by file" +
    (tools ? "" : " (skipped: needs git, cmake, ninja and c++)"),
  ignore: !tools,
  async fn(t) {
    const d = await tempDir();
    try {
      const paths = resolvePaths({ dataDir: join(d.path, "data"), env: {} });
      for (const clash of [true, false]) {
        await t.step(
          clash ? "clashing sources: told, then file by file" : "sources that batch: kept",
          async () => {
            const said: string[] = [];
            const r = await installInstance(paths, {
              name: clash ? "clash" : "fine",
              arch: "cpu",
              repoUrl: await toyRepo(d.path, clash),
              targets: ["llama-server"],
              unity: true,
              ccache: false,
              ignorePython: true,
              wait: true,
              quiet: true,
              onInfo: (l) => said.push(l),
            });
            const rec = r.record!;
            assertEquals(rec.version, "3 (toy)");
            assertEquals(rec.unity, !clash);
            const fellBack = said.find((l) => l.includes("failed to compile"));
            if (clash) {
              assert(fellBack, `no word of the fallback in: ${said.join(" | ")}`);
              assertStringIncludes(fellBack, "building file by file instead");
            } else assertEquals(fellBack, undefined);
            const out = await run([join(rec.binDir, "llama-server"), "--version"]);
            assertStringIncludes(out.stdout, "version: 3 (toy)");
          },
        );
      }
    } finally {
      await d.cleanup();
    }
  },
});
