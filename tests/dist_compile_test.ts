/**
 * Releasing llama-mgr: `deno task compile` builds the executables (or, where Deno's runtime cannot be
 * downloaded, says so with the URL it needed), the permissions it builds in are enough for the CLI and the
 * daemon, `deno task release` writes SHA-256 sums `sha256sum -c` accepts, and `deno publish --dry-run` passes.
 */
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./_assert.ts";
import { cli, tempDir } from "./_fixtures.ts";
import { binaryName, COMPILE_PERMISSIONS, RUNTIME_UNAVAILABLE, TARGETS } from "../scripts/compile.ts";
import { findFreePort } from "../lib/server/ports.ts";
import { DAEMON_V8_FLAGS, VERSION } from "../lib/version.ts";
import { which } from "../lib/util/run.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const dec = new TextDecoder();

async function deno(args: string[], env: Record<string, string> = {}) {
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("deno task compile builds each target, or names the runtime URL it could not download", async () => {
  const d = await tempDir();
  try {
    const targets = [Deno.build.target, "x86_64-pc-windows-msvc"];
    const r = await deno([
      "task",
      "compile",
      ...targets.flatMap((t) => ["--target", t]),
      "--out-dir",
      d.path,
    ]);
    const built = [];
    for await (const e of Deno.readDir(d.path)) built.push(e.name);
    if (r.code === 0) {
      assertEquals(built.sort(), targets.map(binaryName).sort());
      const v = await new Deno.Command(`${d.path}/${binaryName(Deno.build.target)}`, { args: ["--version"] })
        .output();
      assertEquals(dec.decode(v.stdout).trim(), VERSION);
      return;
    }
    console.log(
      `compile could not run here: ${r.stderr.split("\n").find((l) => l.startsWith("error: llama-mgr-"))}`,
    );
    assertEquals(r.code, RUNTIME_UNAVAILABLE, r.stderr);
    for (const t of targets) {
      const url = `https://dl.deno.land/release/v${Deno.version.deno}/denort-${t}.zip`;
      assertStringIncludes(
        r.stderr,
        `error: ${binaryName(t)} was not built: deno compile needs Deno's runtime for ${t} and could not ` +
          `download it from ${url} (`,
      );
    }
    // Nothing half-written is left where the executables go.
    assertEquals(built, []);
  } finally {
    await d.cleanup();
  }
});

Deno.test("deno task compile refuses an unknown target, naming the ones it builds", async () => {
  const r = await deno(["task", "compile", "--target", "riscv64-linux", "--out-dir", "/nonexistent"]);
  assertEquals(r.code, 2);
  assertStringIncludes(r.stderr, `unknown target riscv64-linux: choose from ${TARGETS.join(", ")}`);
});

Deno.test({
  name: "the permissions compile builds in are enough: the CLI and the daemon run with exactly them",
  sanitizeResources: false,
  async fn() {
    const d = await tempDir();
    // --no-prompt: a permission missing from the list fails at once instead of waiting for an answer.
    const run = [
      "run",
      "--no-prompt",
      ...COMPILE_PERMISSIONS,
      `--v8-flags=${DAEMON_V8_FLAGS.join(",")}`,
      "--config",
      `${ROOT}deno.json`,
      `${ROOT}cli/main.ts`,
      "-d",
      d.path,
    ];
    try {
      const doctor = await deno([...run, "doctor", "--arch", "cpu", "--json"]);
      assert(doctor.code === 0 || doctor.code === 1, doctor.stderr);
      assert(JSON.parse(doctor.stdout).checks.length > 0, doctor.stdout);
      assert(!/Requires \w+ access|NotCapable/.test(doctor.stderr), doctor.stderr);
      const port = findFreePort();
      const child = new Deno.Command(Deno.execPath(), {
        args: [...run, "daemon", "--host", "127.0.0.1", "--port", String(port)],
        cwd: ROOT,
        env: { NO_COLOR: "1", OLLAMA_HOST: "" },
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).spawn();
      const errText = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
      let up = false;
      try {
        for (let i = 0; i < 300 && !up; i++) {
          up = await fetch(`http://127.0.0.1:${port}/api/version`).then(async (r) => {
            await r.body?.cancel();
            return r.ok;
          }, () => false);
          if (!up) await new Promise((r) => setTimeout(r, 100));
        }
        assert(up, "the daemon did not come up");
        const tags = await (await fetch(`http://127.0.0.1:${port}/api/tags`)).json();
        assertEquals(tags.models, []);
      } finally {
        child.kill("SIGTERM");
        const status = await child.status;
        let stderr = "";
        for (let c = await errText.read(); !c.done; c = await errText.read()) stderr += c.value;
        assert(!/Requires \w+ access|NotCapable/.test(stderr), stderr);
        assert(up || status.code !== 0, stderr);
      }
    } finally {
      await d.cleanup();
    }
  },
});

Deno.test("deno task release writes SHA256SUMS that sha256sum -c accepts, and catches a changed file", async () => {
  const d = await tempDir();
  try {
    const empty = await deno(["task", "release", "--dir", d.path]);
    assertEquals(empty.code, 1);
    assertStringIncludes(empty.stderr, "holds no files to sum: run `deno task compile` first");
    // What can be made here: the shell completions a release ships, and a binary file in a subfolder.
    for (const shell of ["bash", "zsh", "fish"]) {
      const c = await cli(["completion", shell]);
      assertEquals(c.code, 0, c.stderr);
      await Deno.writeTextFile(`${d.path}/llama-mgr.${shell}`, c.stdout);
    }
    await Deno.mkdir(`${d.path}/extra`);
    await Deno.writeFile(`${d.path}/extra/blob.bin`, crypto.getRandomValues(new Uint8Array(60_000)));
    await Deno.writeTextFile(`${d.path}/llama-mgr-x.tmp-0123abcd`, "half-written");
    const r = await deno(["task", "release", "--dir", d.path]);
    assertEquals(r.code, 0, r.stderr);
    const sums = await Deno.readTextFile(`${d.path}/SHA256SUMS`);
    const lines = sums.trimEnd().split("\n");
    assertEquals(lines.map((l) => l.slice(66)), [
      "extra/blob.bin",
      "llama-mgr.bash",
      "llama-mgr.fish",
      "llama-mgr.zsh",
    ]);
    for (const l of lines) assertMatch(l, /^[0-9a-f]{64} {2}\S+$/);
    assert(sums.endsWith("\n"));
    await Deno.remove(`${d.path}/llama-mgr-x.tmp-0123abcd`);
    if (!which("sha256sum")) {
      console.log("sha256sum not found: SHA256SUMS was NOT checked with it");
      return;
    }
    const check = async () => {
      const o = await new Deno.Command("sha256sum", {
        args: ["-c", "SHA256SUMS"],
        cwd: d.path,
        stdout: "piped",
      })
        .output();
      return { code: o.code, stdout: dec.decode(o.stdout) };
    };
    const ok = await check();
    assertEquals(ok.code, 0, ok.stdout);
    assertEquals(ok.stdout.trim().split("\n").length, 4);
    await Deno.writeTextFile(`${d.path}/llama-mgr.fish`, "# changed\n", { append: true });
    const bad = await check();
    assertEquals(bad.code, 1);
    assertStringIncludes(bad.stdout, "llama-mgr.fish: FAILED");
    // Summing again covers the new bytes and never lists the sums file itself.
    assertEquals((await deno(["task", "release", "--dir", d.path])).code, 0);
    assertEquals((await check()).code, 0);
    assert(!(await Deno.readTextFile(`${d.path}/SHA256SUMS`)).includes("SHA256SUMS"));
  } finally {
    await d.cleanup();
  }
});

Deno.test("deno publish --dry-run accepts the package: licence, slow types, only the library's files", async () => {
  // --allow-dirty: a working tree with uncommitted changes is still checked as it is.
  const r = await deno(["publish", "--dry-run", "--allow-dirty"]);
  assertEquals(r.code, 0, r.stderr + r.stdout);
  const text = r.stdout + r.stderr;
  assertStringIncludes(text, "Success Dry run complete");
  for (const f of ["mod.ts", "LICENSE", "lib/gguf/", "deno.json"]) assertStringIncludes(text, `${ROOT}${f}`);
  for (const f of ["tests/", "bench/", "scripts/", ".ci/"]) assert(!text.includes(`${ROOT}${f}`), f);
});
