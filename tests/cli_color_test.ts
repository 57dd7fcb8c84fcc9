/** Terminal manners: colour only on a terminal and never with NO_COLOR; `--version -v` names each instance. */
import { assert, assertEquals, assertStringIncludes } from "./_assert.ts";
import { cli, cliArgv, cliEnv, tempDir } from "./_fixtures.ts";
import { table, useColor } from "../cli/command.ts";
import { which } from "../lib/util/run.ts";

const ESC = "\x1b[";

/** A data dir holding one instance record (no build: only what listing reads). */
async function withInstance(dir: string): Promise<void> {
  await Deno.mkdir(`${dir}/instances/cpu`, { recursive: true });
  await Deno.writeTextFile(
    `${dir}/instances/cpu/instance.json`,
    JSON.stringify({
      name: "cpu",
      repoUrl: "bundle",
      ref: "HEAD",
      commit: "0123456789abcdef",
      version: "6500 (01234567)",
      arch: "cpu",
      gpuTargets: [],
      cmakeArgs: [],
      cmakeCommand: [],
      targets: [],
      builtAt: "2026-01-01T00:00:00.000Z",
      buildSeconds: 1,
      binDir: `${dir}/instances/cpu/build/bin`,
    }),
  );
}

Deno.test("colour is used only on a terminal, and never with NO_COLOR or TERM=dumb", () => {
  assertEquals(useColor("stdout", { env: {}, isTerminal: true }), true);
  assertEquals(useColor("stdout", { env: {}, isTerminal: false }), false);
  assertEquals(useColor("stdout", { env: { NO_COLOR: "1" }, isTerminal: true }), false);
  assertEquals(useColor("stderr", { env: { TERM: "dumb" }, isTerminal: true }), false);
  // An empty NO_COLOR does not count (no-color.org).
  assertEquals(useColor("stderr", { env: { NO_COLOR: "" }, isTerminal: true }), true);
  assertEquals(table(["A", "BB"], [["x", "y"]], { color: true }), `${ESC}1mA  BB${ESC}22m\nx  y`);
  assertEquals(table(["A", "BB"], [["x", "y"]], { color: false }), "A  BB\nx  y");
});

Deno.test("piped output has no escape codes", async () => {
  const d = await tempDir();
  try {
    await withInstance(d.path);
    const r = await cli(["-d", d.path, "instances"], { env: { NO_COLOR: "" } });
    assertEquals(r.code, 0, r.stderr);
    assert(!r.stdout.includes(ESC) && !r.stderr.includes(ESC), JSON.stringify(r));
    assert(r.stdout.startsWith("NAME  "));
  } finally {
    await d.cleanup();
  }
});

Deno.test({
  name: "on a terminal the table header is bold, and NO_COLOR turns it off",
  ignore: !which("script"),
  async fn() {
    const d = await tempDir();
    try {
      await withInstance(d.path);
      const argv = await cliArgv();
      const onTty = async (env: Record<string, string>) => {
        // util-linux `script` gives the command a pseudo-terminal.
        const cmd = [...argv, "-d", d.path, "instances"].map((a) => `'${a}'`).join(" ");
        const out = await new Deno.Command("script", {
          args: ["-qec", cmd, "/dev/null"],
          env: cliEnv({ TERM: "xterm", ...env }),
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
        }).output();
        return new TextDecoder().decode(out.stdout);
      };
      const env = { NO_COLOR: "" };
      assertStringIncludes(await onTty(env), `${ESC}1mNAME`);
      const plain = await onTty({ ...env, NO_COLOR: "1" });
      assertStringIncludes(plain, "NAME");
      assert(!plain.includes(ESC), JSON.stringify(plain));
    } finally {
      await d.cleanup();
    }
  },
});

Deno.test("--version -v prints llama-mgr's version and each instance's llama.cpp version and backend", async () => {
  const d = await tempDir();
  try {
    const none = await cli(["-d", d.path, "--version", "-v"]);
    assertEquals(none.code, 0, none.stderr);
    assertStringIncludes(none.stdout, "no llama.cpp instances installed");
    await withInstance(d.path);
    const r = await cli(["-d", d.path, "--version", "-v"]);
    assertEquals(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split("\n");
    assertEquals(lines[0].startsWith("llama-mgr "), true);
    assertEquals(lines[1], "cpu: llama.cpp 6500 (01234567), backend cpu");
    const j = await cli(["-d", d.path, "--version", "-v", "--json"]);
    assertEquals(JSON.parse(j.stdout).instances[0].backend, "cpu");
  } finally {
    await d.cleanup();
  }
});
