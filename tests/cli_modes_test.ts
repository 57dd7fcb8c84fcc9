/**
 * The compiled program, the `deno install`ed command and `deno run` from source behave the same: a
 * representative set of the CLI tests (help, errors, config, doctor, completion, colour, and the Ollama verbs
 * against a daemon the CLI starts in the background) runs again with LLAMA_MGR_CLI set to each other mode. The
 * suite runs the same files from source already. A mode that cannot run on this machine (compile without
 * Deno's runtime download) is reported skipped with the reason.
 */
import { assert, assertEquals } from "./_assert.ts";
import { type CliMode, cliRunner } from "./_fixtures.ts";

const FILES = [
  "tests/cli_test.ts",
  "tests/cli_completion_test.ts",
  "tests/cli_color_test.ts",
  "tests/cli_ollama_verbs_test.ts",
];
const ROOT = new URL("..", import.meta.url).pathname;

for (const mode of ["installed", "compiled"] as CliMode[]) {
  // Made before the tests are declared, so a mode that cannot run is declared skipped, with its reason.
  const runner = await cliRunner(mode);
  if (runner.unavailable !== undefined) console.log(`${mode} llama-mgr skipped: ${runner.unavailable}`);
  Deno.test({
    name: runner.unavailable === undefined
      ? `the CLI tests pass against the ${mode} llama-mgr`
      : `the CLI tests against the ${mode} llama-mgr (skipped: Deno's runtime for compile could not be downloaded)`,
    ignore: runner.unavailable !== undefined,
    async fn() {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["test", "-A", "--no-check=remote", ...FILES],
        cwd: ROOT,
        env: { LLAMA_MGR_CLI: mode, LLAMA_MGR_CLI_EXE: runner.argv![0], NO_COLOR: "1" },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      assertEquals(out.code, 0, text.slice(-6000));
      const summary = /(\d+) passed(?: \((\d+) steps\))? \| (\d+) failed(?: \| (\d+) ignored)?/.exec(text);
      assert(summary, text.slice(-2000));
      assertEquals(summary[3], "0");
      assert(Number(summary[1]) >= 10, `only ${summary[1]} tests ran:\n${text.slice(-2000)}`);
      console.log(`${mode}: ${summary[1]} CLI tests passed, ${summary[4] ?? 0} ignored`);
    },
  });
}
