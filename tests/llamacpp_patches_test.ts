/**
 * Source patches recorded with a release are applied again by every build of it: a tool built on first use
 * after `install --rollback` (the tree then at a newer commit, unpatched) compiles the release's own commit
 * with its patches. The patched files are llama.cpp's own (read from the shared CPU build's checkout); the
 * project around them is a small CMake project whose `llama-quantize` says whether the source it was
 * configured from carried the patch, so no llama.cpp build is needed.
 */
import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { join } from "node:path";
import { tempDir, testInstance } from "./_fixtures.ts";
import { resolvePaths } from "../lib/config/paths.ts";
import { type InstanceRecord, instanceSourceDir, writeInstance } from "../lib/llamacpp/instances.ts";
import { checkoutPatched, patchedFiles } from "../lib/llamacpp/patches.ts";
import { ensureTool } from "../lib/llamacpp/tools.ts";
import { configureCommand } from "../lib/llamacpp/cmake.ts";
import { run } from "../lib/util/run.ts";

const PATCHES = ["vulkan-no-coopmat", "vulkan-old-headers"];
const git = async (cwd: string, ...args: string[]) =>
  (await run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", ...args], { cwd })).stdout.trim();

const CMAKE = `cmake_minimum_required(VERSION 3.13)
project(toy C)
set(CMAKE_RUNTIME_OUTPUT_DIRECTORY \${CMAKE_BINARY_DIR}/bin)
file(READ \${CMAKE_SOURCE_DIR}/ggml/src/ggml-vulkan/ggml-vulkan.cpp vk)
string(FIND "\${vk}" "#if defined(VK_EXT_layer_settings)" at)
if(at EQUAL -1)
  set(PATCHED 0)
else()
  set(PATCHED 1)
endif()
add_executable(llama-quantize quantize.c)
target_compile_definitions(llama-quantize PRIVATE PATCHED=\${PATCHED})
`;
const MAIN = `#include <stdio.h>
int main(void) { printf("patched=%d\\n", PATCHED); return 0; }
`;

Deno.test("patches recorded with a release are applied again by every build of it", async (t) => {
  const { paths: shared, instance: cpu } = await testInstance();
  const d = await tempDir();
  try {
    // A repository with llama.cpp's files that the patches change, at two commits: A (the release that was
    // patched) and B (a later one).
    const repo = join(d.path, "repo");
    await Deno.mkdir(repo);
    await git(repo, "init", "--quiet");
    const sharedSrc = instanceSourceDir(shared, "cpu");
    for (const f of patchedFiles(PATCHES)) {
      await Deno.mkdir(join(repo, f, ".."), { recursive: true });
      await Deno.writeTextFile(join(repo, f), await git(sharedSrc, "show", `${cpu.commit}:${f}`) + "\n");
    }
    await Deno.writeTextFile(join(repo, "CMakeLists.txt"), CMAKE);
    await Deno.writeTextFile(join(repo, "quantize.c"), MAIN);
    await git(repo, "add", ".");
    await git(repo, "commit", "--quiet", "-m", "A");
    const a = await git(repo, "rev-parse", "HEAD");
    await Deno.writeTextFile(join(repo, "NEWS"), "later\n");
    await git(repo, "add", ".");
    await git(repo, "commit", "--quiet", "-m", "B");
    const b = await git(repo, "rev-parse", "HEAD");
    const vkFile = join(repo, "ggml/src/ggml-vulkan/ggml-vulkan.cpp");
    const changed = async () => (await git(repo, "diff", "--name-only")).split("\n").filter(Boolean).sort();

    await t.step(
      "checkoutPatched: the commit with exactly its patches, unchanged files keep their time",
      async () => {
        await checkoutPatched(repo, a, PATCHES);
        assertEquals(await git(repo, "rev-parse", "HEAD"), a);
        assertEquals(await changed(), patchedFiles(PATCHES).sort());
        const patchedAt = (await Deno.stat(vkFile)).mtime!.getTime();
        await new Promise((r) => setTimeout(r, 20));
        await checkoutPatched(repo, a, PATCHES);
        assertEquals(
          (await Deno.stat(vkFile)).mtime!.getTime(),
          patchedAt,
          "the same text: ninja sees no change",
        );
        await checkoutPatched(repo, b, []);
        assertEquals(
          [await git(repo, "rev-parse", "HEAD"), await changed()],
          [b, []],
          "a release without them",
        );
      },
    );

    await t.step(
      "a tool built on first use after a rollback compiles the release's commit, patched",
      async () => {
        // The instance after `install --rollback`: its record is release A (built with the patches), its source
        // tree is still at B, unpatched, as the newer release's install left it.
        const data = join(d.path, "data");
        const paths = resolvePaths({ dataDir: data, env: {} });
        const src = instanceSourceDir(paths, "t");
        await Deno.mkdir(join(src, ".."), { recursive: true });
        await git(d.path, "clone", "--quiet", repo, src);
        await git(src, "checkout", "--quiet", b);
        const binDir = join(data, "instances", "t", "releases", "a", "bin");
        await Deno.mkdir(binDir, { recursive: true });
        const rec: InstanceRecord = {
          name: "t",
          repoUrl: repo,
          ref: "HEAD",
          commit: a,
          version: "test",
          arch: "cpu",
          gpuTargets: [],
          cmakeArgs: [],
          patches: PATCHES,
          // As the install configured it, with an argument it found on the machine (cuBLAS from a wheel...).
          cmakeCommand: [
            ...configureCommand(src, join(data, "instances", "t", "build"), { arch: "cpu", cmakeArgs: [] }),
            "-DLLAMA_MGR_FOUND=/opt/found",
          ],
          targets: ["llama-server"],
          builtAt: new Date().toISOString(),
          buildSeconds: 0,
          binDir,
        };
        await writeInstance(paths, rec);
        const info: string[] = [];
        const r = await ensureTool(paths, rec, "llama-quantize", {
          ccache: false,
          parallel: 1,
          onInfo: (l) => info.push(l),
        });
        assert(r.built, "built on first use");
        assertEquals(r.path, join(binDir, "llama-quantize"));
        assertEquals((await run([r.path])).stdout.trim(), "patched=1", "configured from the patched source");
        assertEquals(await git(src, "rev-parse", "HEAD"), a);
        assertMatch(info.join("\n"), /patched: vulkan-no-coopmat, vulkan-old-headers/);
        assertEquals(r.instance.patches, PATCHES, "the record keeps them for the next build");
        const stamp = await Deno.readTextFile(join(data, "instances", "t", "build", ".llama-mgr-configure"));
        assert(stamp.includes("-DLLAMA_MGR_FOUND=/opt/found"), `configured as the release was: ${stamp}`);
      },
    );
  } finally {
    await d.cleanup();
  }
});
