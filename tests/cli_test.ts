/** The dispatcher as a user meets it: help, versions, typos and bad flags. */
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./_assert.ts";
import { cli, tempDir } from "./_fixtures.ts";
import { COMMANDS } from "../cli/commands.ts";
import { VERSION } from "../lib/version.ts";

Deno.test("every command's help shows usage, options and an example", async () => {
  for (const entry of COMMANDS) {
    const cmd = await entry.load();
    // The list names and describes each command without loading it: it must say what the command says.
    assertEquals([cmd.name, cmd.summary], [entry.name, entry.summary]);
    assert(
      cmd.examples.some((e) => e.includes(`llama-mgr ${cmd.name}`)),
      `${cmd.name} has no example of itself: ${cmd.examples.join(" | ")}`,
    );
  }
  const r = await cli(["install", "--help"]);
  assertEquals(r.code, 0);
  assertStringIncludes(r.stdout, "Usage:");
  assertStringIncludes(r.stdout, "--gpu-targets");
  assertStringIncludes(r.stdout, "Examples:");
  assertStringIncludes(r.stdout, "--data-dir");
});

Deno.test("--version prints the version and deno.json agrees", async () => {
  const r = await cli(["--version"]);
  assertEquals(r.stdout.trim(), VERSION);
  const denoJson = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
  assertEquals(denoJson.version, VERSION);
});

Deno.test("a mistyped command suggests the right one; an unknown flag points to help", async () => {
  const r = await cli(["instalL"]);
  assertEquals(r.code, 2);
  assertStringIncludes(r.stderr, "unknown command 'instalL'");
  assertStringIncludes(r.stderr, "llama-mgr install");
  const f = await cli(["instances", "--colour"]);
  assertEquals(f.code, 1);
  assertMatch(f.stderr, /instances: .*--colour/);
  assertStringIncludes(f.stderr, "llama-mgr instances --help");
});

Deno.test("an invalid config file is reported with the file and key before any work", async () => {
  const d = await tempDir();
  try {
    await Deno.writeTextFile(`${d.path}/config.yaml`, "daemon:\n  port: 99999\n");
    const r = await cli(["-d", d.path, "--config", `${d.path}/config.yaml`, "instances"]);
    assertEquals(r.code, 1);
    assertStringIncludes(r.stderr, `${d.path}/config.yaml`);
    assertStringIncludes(r.stderr, "daemon.port");
  } finally {
    await d.cleanup();
  }
});

Deno.test("commands on a machine with no instance say how to install one", async () => {
  const d = await tempDir();
  try {
    const r = await cli(["-d", d.path, "exec", "llama-server", "--version"]);
    assertEquals(r.code, 1);
    assertStringIncludes(r.stderr, "no llama.cpp instance is installed");
    assertStringIncludes(r.stderr, "llama-mgr install");
    const l = await cli(["-d", d.path, "instances"]);
    assertEquals(l.code, 0);
    assertStringIncludes(l.stdout, "no instances installed");
  } finally {
    await d.cleanup();
  }
});

Deno.test("doctor lists what is missing, with install commands for four platforms, and fails when required", async () => {
  const d = await tempDir();
  try {
    // A PATH holding git, cmake and a compiler but no ninja.
    const bin = `${d.path}/bin`;
    await Deno.mkdir(bin);
    for (const tool of ["git", "cmake", "c++", "g++", "python3"]) {
      const out = await new Deno.Command("sh", { args: ["-c", `command -v ${tool}`], stdout: "piped" })
        .output();
      const path = new TextDecoder().decode(out.stdout).trim();
      if (path) await Deno.symlink(path, `${bin}/${tool}`);
    }
    const r = await cli(["-d", d.path, "doctor", "--arch", "cpu"], { env: { PATH: bin } });
    assertEquals(r.code, 1, r.stdout + r.stderr);
    assertMatch(r.stdout, /MISSING\s+ninja/);
    assertStringIncludes(r.stdout, "sudo apt install ninja-build");
    assertStringIncludes(r.stdout, "sudo dnf install ninja-build");
    assertStringIncludes(r.stdout, "sudo pacman -S ninja");
    assertStringIncludes(r.stdout, "brew install ninja");
    assertMatch(r.stdout, /ok\s+git/);
    const rocm = await cli(["-d", d.path, "doctor", "--arch", "rocm", "--json"], { env: { PATH: bin } });
    const report = JSON.parse(rocm.stdout);
    assertEquals(report.ok, false);
    const hip = report.checks.find((c: { name: string }) => c.name === "hipcc");
    assertEquals(hip.required, true);
    assertEquals(hip.ok, false);
    const full = await cli(["-d", d.path, "doctor", "--arch", "cpu"]);
    assertEquals(full.code, 0, full.stdout);
    assertStringIncludes(full.stdout, "ready to build for cpu");
  } finally {
    await d.cleanup();
  }
});
