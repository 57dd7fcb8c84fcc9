/** Shell completion: the bash script loaded in bash completes commands, subcommands, flags and names. */
import { assertEquals, assertStringIncludes } from "./_assert.ts";
import { cli, tempDir } from "./_fixtures.ts";
import { which } from "../lib/util/run.ts";

/** Runs the completion function for each line (the cursor at its end) and returns COMPREPLY, sorted. */
async function complete(script: string, lines: string[], path: string): Promise<string[][]> {
  const calls = lines.map((l) =>
    `COMP_LINE=${JSON.stringify(l)}; COMP_POINT=\${#COMP_LINE}; COMPREPLY=(); _llama_mgr; ` +
    `printf '%s\\n' "$(printf '%s\\n' "\${COMPREPLY[@]}" | sort | tr '\\n' ' ')"`
  );
  const out = await new Deno.Command("bash", {
    args: ["--norc", "--noprofile", "-c", `source /dev/stdin <<'EOS'\n${script}\nEOS\n${calls.join("\n")}`],
    env: { PATH: path },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  assertEquals(out.code, 0, dec.decode(out.stderr));
  return dec.decode(out.stdout).trimEnd().split("\n").map((l) => l.trim() ? l.trim().split(" ") : []);
}

Deno.test({
  name: "the bash script completes commands, subcommands, flags and names",
  ignore: !which("bash"),
  async fn() {
    const d = await tempDir();
    try {
      const r = await cli(["completion", "bash"]);
      assertEquals(r.code, 0, r.stderr);
      // A stand-in llama-mgr for the names, so the script's own logic is what is tested here.
      const bin = `${d.path}/bin`;
      await Deno.mkdir(bin);
      await Deno.writeTextFile(
        `${bin}/llama-mgr`,
        '#!/bin/sh\ncase "$*" in\n  *"__complete models") printf "qwen3:4b\\nqwen3:8b\\nsmollm2:135m\\n" ;;\n' +
          '  *"__complete instances") printf "cpu\\nrocm\\n" ;;\nesac\n',
        { mode: 0o755 },
      );
      const got = await complete(r.stdout, [
        "llama-mgr ser",
        "llama-mgr server st",
        "llama-mgr run --fo",
        "llama-mgr -d /tmp/x server st",
        "llama-mgr run qw",
        "llama-mgr run qwen3:",
        "llama-mgr -i ",
        "llama-mgr instances default r",
        "llama-mgr completion ",
      ], `${bin}:/usr/bin:/bin`);
      assertEquals(got, [
        ["server"],
        ["start", "status", "stop"],
        ["--format"],
        ["start", "status", "stop"],
        ["qwen3:4b", "qwen3:8b"],
        // bash splits words at ':' (COMP_WORDBREAKS), so the part before it is left out of the candidates.
        ["4b", "8b"],
        ["cpu", "rocm"],
        ["rocm"],
        ["bash", "fish", "zsh"],
      ]);
    } finally {
      await d.cleanup();
    }
  },
});

Deno.test("__complete lists instance folders; zsh and fish scripts are generated from the same table", async () => {
  const d = await tempDir();
  try {
    await Deno.mkdir(`${d.path}/instances/cpu`, { recursive: true });
    await Deno.mkdir(`${d.path}/instances/vulkan`);
    const r = await cli(["-d", d.path, "__complete", "instances"]);
    assertEquals(r.code, 0, r.stderr);
    assertEquals(r.stdout.trim().split("\n"), ["cpu", "vulkan"]);
    const z = await cli(["completion", "zsh"]);
    assertStringIncludes(z.stdout, "bashcompinit");
    assertStringIncludes(z.stdout, "complete -F _llama_mgr llama-mgr");
    const f = await cli(["completion", "fish"]);
    assertStringIncludes(f.stdout, "complete -c llama-mgr -n '__fish_use_subcommand' -a server");
    assertStringIncludes(f.stdout, "-l format -r");
    for (const shell of ["zsh", "fish"]) {
      if (!which(shell)) console.log(`${shell} not found: its script was NOT syntax-checked`);
    }
    const bad = await cli(["completion", "tcsh"]);
    assertEquals(bad.code, 2);
    assertStringIncludes(bad.stderr, "unknown shell 'tcsh'");
  } finally {
    await d.cleanup();
  }
});
