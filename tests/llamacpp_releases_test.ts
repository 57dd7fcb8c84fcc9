/**
 * Versions side by side: a real install of llama-server alone (other tools come on first use), an update that
 * keeps the release it replaces, `install --rollback` with no build, a daemon that finishes a running answer
 * on the old binaries and starts the next load from the new ones, and a kept release that stays on disk while
 * a llama-server runs from it. Builds go into a temp data dir from a clone of the bundled release; the shared
 * build warms ccache, so they are mostly cache hits and links.
 */
import { join } from "node:path";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./_assert.ts";
import { bundlePath, cli, smolModelPath, tempDir, testInstance } from "./_fixtures.ts";
import { exists } from "../lib/util/fs.ts";
import type { InstanceRecord, ReleaseRecord } from "../lib/llamacpp/instances.ts";
import { resolvePaths } from "../lib/config/paths.ts";
import { parseConfig } from "../lib/config/load.ts";
import { startDaemon } from "../lib/daemon/daemon.ts";

async function git(cwd: string, ...args: string[]): Promise<string> {
  const out = await new Deno.Command("git", {
    args: ["-c", "user.name=t", "-c", "user.email=t@example.com", ...args],
    cwd,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (out.code !== 0) throw new Error(`git ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  return new TextDecoder().decode(out.stdout).trim();
}

/** Pids of llama-server processes whose executable is under `dir`, read from /proc. */
async function serversUnder(dir: string): Promise<number[]> {
  const out: number[] = [];
  for await (const e of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    const exe = await Deno.readLink(`/proc/${e.name}/exe`).catch(() => "");
    if (exe.startsWith(`${dir}/`) && exe.includes("llama-server")) out.push(Number(e.name));
  }
  return out;
}

type Shown = InstanceRecord & { releases: (ReleaseRecord & { current: boolean })[]; binaries: string[] };

Deno.test({
  name: "an instance keeps its previous release; --rollback switches back with no build, and a daemon " +
    "finishes on the old binaries and loads the new ones next",
  ignore: Deno.build.os !== "linux",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    await testInstance();
    const bundle = await bundlePath();
    const tmp = await tempDir();
    const data = join(tmp.path, "data");
    const repo = join(tmp.path, "llama.cpp");
    const configFile = join(tmp.path, "config.yaml");
    const modelsDir = join(tmp.path, "models");
    const base = ["-d", data, "--config", configFile];
    const show = async (): Promise<Shown> => {
      const r = await cli([...base, "instances", "show", "cpu", "--json"]);
      assertEquals(r.code, 0, r.stderr);
      return JSON.parse(r.stdout);
    };
    try {
      await Deno.mkdir(modelsDir);
      await Deno.symlink(await smolModelPath(), join(modelsDir, "smol.gguf"));
      await git(tmp.path, "clone", "--quiet", bundle, repo);
      const first = await git(repo, "rev-parse", "HEAD");
      const profile = "  profiles:\n    cpu:\n      cmake_args: [-DLLAMA_MGR_PROFILE_TEST=ON]\n";
      // unity: false, file by file like the shared build, so ccache answers (unity batches name their sources
      // by absolute path and miss in every new data dir).
      await Deno.writeTextFile(configFile, `build:\n  keep_releases: 1\n  unity: false\n${profile}`);

      await t.step(
        "a new instance builds llama-server alone, with its backend profile's cmake args",
        async () => {
          const t0 = performance.now();
          const r = await cli([
            ...base,
            "install",
            "-i",
            "cpu",
            "--arch",
            "cpu",
            "--repo-url",
            repo,
            "--ignore-python",
          ]);
          console.log(
            `install of llama-server alone, ccache warm: ${((performance.now() - t0) / 1000).toFixed(1)}s`,
          );
          assertEquals(r.code, 0, r.stderr);
          // The profile reached cmake (which says it did not use this made-up variable).
          assertStringIncludes(r.stderr, "cmake did not use LLAMA_MGR_PROFILE_TEST");
          const s = await show();
          assert(s.cmakeCommand.includes("-DLLAMA_MGR_PROFILE_TEST=ON"), s.cmakeCommand.join(" "));
          assertEquals(s.cmakeArgs, ["-DLLAMA_MGR_PROFILE_TEST=ON"]);
          assertEquals(s.targets, ["llama-server"]);
          assertEquals(s.binaries, ["llama-server"]);
          assertEquals(s.releases.length, 1);
        },
      );

      let second = "";
      await t.step(
        "an update keeps the release it replaces; instances show lists both",
        async () => {
          const before = await show();
          await Deno.writeTextFile(`${repo}/LLAMA_MGR_TEST.txt`, "second\n");
          await git(repo, "add", "LLAMA_MGR_TEST.txt");
          await git(repo, "commit", "--quiet", "-m", "test commit 2");
          second = await git(repo, "rev-parse", "HEAD");
          const r = await cli([...base, "install", "--update-only"]);
          assertEquals(r.code, 0, r.stderr);
          const s = await show();
          assertEquals(s.commit, second);
          assertEquals(s.releases.map((x) => [x.current, x.commit]), [[true, second], [false, first]]);
          assertEquals(s.releases[1].binDir, before.binDir);
          assert(await exists(join(before.binDir, "llama-server")), "the kept release is on disk");
          for (const x of s.releases) {
            assertMatch(x.version, /build \d+, commit [0-9a-f]{7}/);
            assertEquals(x.arch, "cpu");
            assert(!Number.isNaN(Date.parse(x.builtAt)));
          }
          const table = await cli([...base, "instances", "show", "cpu"]);
          assertMatch(
            table.stdout,
            new RegExp(`^\\*\\s+${second.slice(0, 10)}\\s+.*build \\d+.*\\s+cpu\\s`, "m"),
          );
          assertMatch(table.stdout, new RegExp(`^\\s+${first.slice(0, 10)}\\s`, "m"));
          assertStringIncludes(table.stdout, "--rollback");
        },
      );

      await t.step(
        "the daemon finishes an answer on the old binaries and loads the new ones next",
        async () => {
          const now = await show();
          const newDir = join(now.binDir, "..");
          const oldDir = join(now.releases[1].binDir, "..");
          const paths = resolvePaths({ dataDir: data, env: {} });
          const config = parseConfig({
            models: {
              dirs: [modelsDir],
              aliases: { smol: join(modelsDir, "smol.gguf") },
              sources: { huggingface: false, ollama: false, lmstudio: false, llamacpp: false },
            },
          });
          const daemon = await startDaemon({
            paths,
            config,
            host: "127.0.0.1",
            port: 0,
            env: {},
            instance: "cpu",
            log: () => {},
          });
          try {
            const ask = (extra: Record<string, unknown> = {}) =>
              fetch(`${daemon.url}/api/generate`, {
                method: "POST",
                body: JSON.stringify({
                  model: "smol",
                  prompt: "Count from one to forty in words.",
                  options: { temperature: 0, num_predict: 96 },
                  ...extra,
                }),
              });
            const res = await ask();
            assertEquals(res.status, 200);
            const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
            let text = (await reader.read()).value ?? "";
            // An answer is streaming from a llama-server of the release in use.
            const running = await serversUnder(newDir);
            assertEquals(running.length, 1, `servers under ${newDir}: ${running}`);

            const rb = await cli([...base, "install", "-i", "cpu", "--rollback", "--json"]);
            assertEquals(rb.code, 0, rb.stderr);
            const rolled = JSON.parse(rb.stdout);
            console.log(`rollback: ${rolled.seconds.toFixed(3)}s`);
            assert(rolled.seconds < 1, `rollback took ${rolled.seconds}s`);
            assertEquals(rolled.to.commit, first);
            assert(!/build: \[/.test(rb.stderr), "rollback built something");

            for (let c = await reader.read(); !c.done; c = await reader.read()) text += c.value;
            const lines = text.trim().split("\n").map((l) => JSON.parse(l));
            const last = lines.at(-1);
            assertEquals(last.done, true, text.slice(-300));
            assert(last.eval_count > 1, JSON.stringify(last));
            assertEquals(
              await serversUnder(newDir),
              running,
              "the answer's server kept running from its release",
            );

            // The next load (after an unload) starts from the release now in use.
            const unload = await ask({ prompt: "", keep_alive: 0 });
            assertEquals((await unload.json()).done_reason, "unload");
            const again = await ask({ stream: false, options: { num_predict: 4 } });
            assertEquals(again.status, 200, await again.clone().text());
            await again.json();
            assertEquals((await serversUnder(oldDir)).length, 1, "the new load runs the rolled-back release");
            assertEquals(await serversUnder(newDir), []);
            const v = await cli([...base, "exec", "llama-server", "--version"]);
            assertStringIncludes(v.stdout + v.stderr, `commit ${first.slice(0, 7)}`);

            // Back to the newer release with no build (it is kept); the one left stays while a server runs from it.
            await Deno.writeTextFile(configFile, `build:\n  keep_releases: 0\n${profile}`);
            const t0 = performance.now();
            const up = await cli([...base, "install", "--update-only"]);
            console.log(`update to a kept release: ${((performance.now() - t0) / 1000).toFixed(1)}s`);
            assertEquals(up.code, 0, up.stderr);
            assertStringIncludes(up.stderr, "switching to it without a build");
            assert(!/build: \[/.test(up.stderr), "the update built something");
            assertMatch(up.stderr, /stays on disk while pid \d+ runs from it/);
            const s = await show();
            assertEquals(s.commit, second);
            assertEquals(s.releases.length, 1, "keep_releases: 0 keeps none");
            assert(await exists(join(oldDir, "bin", "llama-server")), "a release in use was removed");
            const rb2 = await cli([...base, "install", "-i", "cpu", "--rollback"]);
            assertEquals(rb2.code, 1);
            assertStringIncludes(rb2.stderr, "keeps no earlier release");
          } finally {
            await daemon.close();
          }
        },
      );

      await t.step("a tool the release lacks is built on first use, into the release in use", async () => {
        const before = await show();
        const r = await cli([...base, "quantize", "--list"]);
        assertEquals(r.code, 0, r.stderr);
        assertStringIncludes(r.stderr, "llama-quantize is not built yet in instance 'cpu'");
        assertMatch(r.stderr, /build: \[\d+\/\d+\]/);
        assertMatch(r.stdout, /^Q4_K_M\s/m);
        const s = await show();
        assertEquals(s.binDir, before.binDir);
        assertEquals(s.binaries, ["llama-quantize", "llama-server"]);
        assertEquals(s.targets, ["llama-server", "llama-quantize"]);
        const again = await cli([...base, "quantize", "--list"]);
        assertEquals(again.code, 0, again.stderr);
        assert(!again.stderr.includes("not built yet"), again.stderr);
        // With on-demand builds off, a missing tool is an error that says how to build it.
        await Deno.writeTextFile(join(tmp.path, "off.yaml"), "build:\n  on_demand: false\n");
        const off = await cli(["-d", data, "--config", join(tmp.path, "off.yaml"), "bench", "--help"]);
        assertEquals(off.code, 1);
        assertStringIncludes(off.stderr, "instance 'cpu' has no llama-bench");
        assertStringIncludes(off.stderr, "--targets llama-server,llama-quantize,llama-bench");
      });
    } finally {
      await tmp.cleanup();
    }
  },
});
