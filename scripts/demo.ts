/**
 * `deno task demo`: llama-mgr's main job on defaults, from nothing: build a CPU instance of llama.cpp from
 * the release bundled in npm `node-llama-cpp@3.22.1`, and show it. The data dir is the default one
 * (`$LLAMA_MGR_DATA_DIR` or `~/.local/share/llama-mgr`); run it again and it is already up to date.
 *
 * @module
 */
import { main } from "../cli/main.ts";
import { bundlePath } from "./fixtures.ts";
import { readInstance } from "../lib/llamacpp/instances.ts";
import { resolvePaths } from "../lib/config/paths.ts";

async function step(title: string, argv: string[]): Promise<void> {
  console.error(`\n== ${title}\n$ llama-mgr ${argv.join(" ")}`);
  const code = await main(argv);
  if (code !== 0) {
    console.error(`demo: step "${title}" failed with exit code ${code}`);
    Deno.exit(code);
  }
}

const paths = resolvePaths();
const bundle = await bundlePath();
const installed = await readInstance(paths, "cpu");
await step(
  installed ? "update the CPU instance (nothing to do when the source did not move)" : "build a CPU instance",
  [
    "install",
    "-i",
    "cpu",
    "--arch",
    "cpu",
    "--repo-url",
    bundle,
    ...(installed ? ["--update-only"] : ["--ignore-python"]),
  ],
);
await step("the instances", ["instances"]);
await step("the build runs", ["exec", "llama-server", "--version"]);
