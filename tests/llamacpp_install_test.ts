/**
 * End to end: install real llama.cpp instances from the bundled release (and a local clone of it with a
 * branch and a tag), update, fail safely, lock, and uninstall, all through the CLI as a user runs it.
 */
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./_assert.ts";
import { bundlePath, cli, tempDir, TEST_TARGETS, testInstance } from "./_fixtures.ts";
import { exists } from "../lib/util/fs.ts";
import type { InstanceRecord } from "../lib/llamacpp/instances.ts";

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

async function instances(
  data: string,
): Promise<(InstanceRecord & { default: boolean; sizeBytes: number })[]> {
  const r = await cli(["-d", data, "instances", "--json"]);
  assertEquals(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

Deno.test({
  name:
    "install builds llama.cpp side by side, updates only when the source moves, and never breaks a working build",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    // The shared build warms ccache, so the builds below are incremental.
    await testInstance();
    const bundle = await bundlePath();
    const tmp = await tempDir();
    const data = `${tmp.path}/data`;
    const repo = `${tmp.path}/llama.cpp`;
    const base = ["-d", data];
    // File by file like the shared build, so ccache answers: unity batches name their sources by absolute
    // path and miss in every new data dir.
    const targets = ["--targets", TEST_TARGETS.join(","), "--ignore-python", "--no-unity"];
    try {
      await git(tmp.path, "clone", "--quiet", bundle, repo);
      await git(repo, "checkout", "--quiet", "-b", "feature");
      await Deno.writeTextFile(`${repo}/LLAMA_MGR_TEST.txt`, "first\n");
      await git(repo, "add", "LLAMA_MGR_TEST.txt");
      await git(repo, "commit", "--quiet", "-m", "test commit 1");
      await git(repo, "tag", "v-test");
      const first = await git(repo, "rev-parse", "HEAD");

      await t.step(
        "install from a local clone at a branch builds, verifies and records the instance",
        async () => {
          const r = await cli([
            ...base,
            "install",
            "-i",
            "cpu",
            "--arch",
            "cpu",
            "--repo-url",
            repo,
            "--branch",
            "feature",
            ...targets,
          ]);
          assertEquals(r.code, 0, r.stderr);
          assertStringIncludes(r.stdout, "installed instance 'cpu'");
          assertMatch(r.stderr, /build: \[\d+\/\d+\]/); // ninja progress was shown
        },
      );

      await t.step(
        "instances --json shows name, arch, commit, version, build time, size and default",
        async () => {
          const [inst, ...others] = await instances(data);
          assertEquals(others.length, 0);
          assertEquals(inst.name, "cpu");
          assertEquals(inst.arch, "cpu");
          assertEquals(inst.ref, "feature");
          assertEquals(inst.commit, first);
          assertEquals(inst.default, true);
          assertMatch(inst.version, /build \d+, commit [0-9a-f]{7}/);
          assert(inst.sizeBytes > 10_000_000, `size ${inst.sizeBytes}`);
          assert(!Number.isNaN(Date.parse(inst.builtAt)));
          assert(inst.cmakeCommand.includes("-DGGML_RPC=ON"));
          const table = await cli([...base, "instances"]);
          assertMatch(table.stdout, /^cpu\s+cpu\s+-\s+[0-9a-f]{10}\s/m);
        },
      );

      await t.step(
        "exec runs the instance's llama-server and passes its output and exit code through",
        async () => {
          const r = await cli([...base, "exec", "llama-server", "--version"]);
          assertEquals(r.code, 0, r.stderr);
          assertStringIncludes(r.stdout + r.stderr, `commit ${first.slice(0, 7)}`);
          const bad = await cli([...base, "exec", "llama-server", "--no-such-flag"]);
          assert(bad.code !== 0);
          // With tools built on demand switched off, a missing one is an error that says how to build it.
          await Deno.writeTextFile(`${tmp.path}/off.yaml`, "build:\n  on_demand: false\n");
          const missing = await cli([
            "-d",
            data,
            "--config",
            `${tmp.path}/off.yaml`,
            "bench",
            "-m",
            "x.gguf",
          ]);
          assertEquals(missing.code, 1);
          assertStringIncludes(missing.stderr, "has no llama-bench");
          assertStringIncludes(missing.stderr, "--targets");
        },
      );

      await t.step("--update-only with nothing new does nothing: no build, the same binaries", async () => {
        const before = (await instances(data))[0];
        const server = `${before.binDir}/llama-server`;
        const built = (await Deno.stat(server)).mtime?.getTime();
        const t0 = performance.now();
        const r = await cli([...base, "install", "--update-only"]);
        console.log(`--update-only with nothing new: ${((performance.now() - t0) / 1000).toFixed(1)}s`);
        assertEquals(r.code, 0, r.stderr);
        assertStringIncludes(r.stdout, "already up to date");
        assert(!/build: \[\d+\/\d+\]/.test(r.stderr), `it built:\n${r.stderr}`);
        const after = (await instances(data))[0];
        assertEquals(after.builtAt, before.builtAt, "the instance was rebuilt");
        assertEquals(after.binDir, before.binDir);
        assertEquals((await Deno.stat(server)).mtime?.getTime(), built, "llama-server was rebuilt");
      });

      await t.step(
        "a second install of the same instance is refused while one runs, naming its pid",
        async () => {
          const holder = new Deno.Command("sleep", { args: ["30"] }).spawn();
          try {
            await Deno.mkdir(`${data}/locks`, { recursive: true });
            await Deno.writeTextFile(
              `${data}/locks/instance-cpu.lock`,
              JSON.stringify({ pid: holder.pid, what: "install of 'cpu'", since: new Date().toISOString() }),
            );
            const r = await cli([...base, "install", "--update-only"]);
            assertEquals(r.code, 1);
            assertStringIncludes(r.stderr, `install of 'cpu' is running (pid ${holder.pid}`);
          } finally {
            holder.kill();
            await holder.status;
          }
          // The holder is gone: its stale lock no longer blocks.
          const r2 = await cli([...base, "install", "--update-only"]);
          assertEquals(r2.code, 0, r2.stderr);
        },
      );

      await t.step(
        "a broken --cmake-args fails with the step and log, and the earlier build keeps working",
        async () => {
          const before = (await instances(data))[0];
          const r = await cli([...base, "install", "--cmake-args=-DCMAKE_C_COMPILER=/nonexistent/cc"]);
          assertEquals(r.code, 1);
          assertStringIncludes(r.stderr, "configure step failed");
          assertStringIncludes(r.stderr, "full log is");
          assertStringIncludes(r.stderr, "previous build");
          const after = (await instances(data))[0];
          assertEquals(after.commit, before.commit);
          assertEquals(after.binDir, before.binDir);
          const v = await cli([...base, "exec", "llama-server", "--version"]);
          assertEquals(v.code, 0, v.stderr);
        },
      );

      await t.step("an update that moves the branch rebuilds and switches to the new commit", async () => {
        const oldBin = (await instances(data))[0].binDir;
        await Deno.writeTextFile(`${repo}/LLAMA_MGR_TEST.txt`, "second\n");
        await git(repo, "commit", "--quiet", "-am", "test commit 2");
        const second = await git(repo, "rev-parse", "HEAD");
        const r = await cli([...base, "install", "--update-only"]);
        assertEquals(r.code, 0, r.stderr);
        assertStringIncludes(r.stdout, "updated instance 'cpu'");
        const inst = (await instances(data))[0];
        assertEquals(inst.commit, second);
        assertEquals(inst.previous?.[0]?.binDir, oldBin, "the replaced build is kept for --rollback");
        assert(await exists(oldBin));
        const v = await cli([...base, "exec", "llama-server", "--version"]);
        assertStringIncludes(v.stdout + v.stderr, `commit ${second.slice(0, 7)}`);
      });

      await t.step(
        "--branch takes a tag, and an unknown ref is refused with the refs there are",
        async () => {
          const r = await cli([...base, "install", "--branch", "v-test"]);
          assertEquals(r.code, 0, r.stderr);
          assertEquals((await instances(data))[0].commit, first);
          // The tag is the commit of the kept release: no build.
          assertStringIncludes(r.stderr, "switching to it without a build");
          const bad = await cli([...base, "install", "--branch", "no-such-branch"]);
          assertEquals(bad.code, 1);
          assertStringIncludes(bad.stderr, "'no-such-branch' is not a branch, tag or commit");
          assertStringIncludes(bad.stderr, "feature");
          assertEquals((await instances(data))[0].commit, first);
        },
      );

      await t.step(
        "a second instance installs beside the first; --pull-only fetches without building",
        async () => {
          const pulled = await cli([
            ...base,
            "install",
            "-i",
            "other",
            "--arch",
            "cpu",
            "--repo-url",
            bundle,
            "--pull-only",
          ]);
          assertEquals(pulled.code, 0, pulled.stderr);
          assertStringIncludes(pulled.stdout, "not built");
          assertEquals((await instances(data)).map((i) => i.name), ["cpu"]);
          const r = await cli([
            ...base,
            "install",
            "-i",
            "other",
            "--arch",
            "cpu",
            "--repo-url",
            bundle,
            ...targets,
          ]);
          assertEquals(r.code, 0, r.stderr);
          assertEquals((await instances(data)).map((i) => i.name), ["cpu", "other"]);
          const d = await cli([...base, "instances", "default", "other"]);
          assertEquals(d.code, 0, d.stderr);
          assertEquals((await instances(data)).find((i) => i.default)?.name, "other");
        },
      );

      await t.step(
        "uninstall asks for confirmation and removes one instance without touching the other",
        async () => {
          const refused = await cli([...base, "uninstall", "-i", "cpu"]);
          assertEquals(refused.code, 1);
          assertStringIncludes(refused.stderr, "--yes");
          const r = await cli([...base, "uninstall", "-i", "cpu", "--yes"]);
          assertEquals(r.code, 0, r.stderr);
          assertEquals(await exists(`${data}/instances/cpu`), false);
          assertEquals((await instances(data)).map((i) => i.name), ["other"]);
          const v = await cli([...base, "-i", "other", "exec", "llama-server", "--version"]);
          assertEquals(v.code, 0, v.stderr);
          const gone = await cli([...base, "-i", "cpu", "exec", "llama-server", "--version"]);
          assertEquals(gone.code, 1);
          assertStringIncludes(gone.stderr, "instance 'cpu' is not installed");
        },
      );
    } finally {
      await tmp.cleanup();
    }
  },
});
