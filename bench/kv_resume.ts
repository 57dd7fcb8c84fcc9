/**
 * What keeping KV caches across evictions buys, in one run, with the SmolLM2 fixture model and the shared test
 * build (ctx 8192):
 *
 * - **resume**: the time to first token of a ~4,000-token conversation that goes on after its model was
 *   unloaded, on a daemon that saved the slot (restored) against one that keeps no KV caches
 *   (`kv_cache_max: 0`, recomputed), in the same rounds (target: restored at least 5x faster). The model
 *   loads on the timed request; its load time (the answer's `load_duration`) is taken out so that the figure is
 *   the conversation's alone, and the time with the load included is printed next to it.
 * - **swap**: with `max_loaded_models: 1`, the time a load-only request for model B takes while model A is
 *   loaded with a saved-worthy conversation (the daemon saves A's slot, stops A, starts B), against starting
 *   B's llama-server directly with the same command line and waiting for its `/health` (target: at most
 *   1.1x). The swap with nothing to save is printed too.
 *
 * Both daemons run in this process, as tests run them; while a request is timed this process only waits on
 * sockets, so llama-server has the cores to itself (see bench/README.md for this on 2 cores).
 *
 * Run: `deno run -A bench/kv_resume.ts [--rounds N] [--tokens N] [--json]`.
 *
 * @module
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { smolModelPath, testInstance } from "../tests/_fixtures.ts";
import { resolvePaths } from "../lib/config/paths.ts";
import { parseConfig } from "../lib/config/load.ts";
import { type DaemonHandle, startDaemon } from "../lib/daemon/daemon.ts";
import { pidAlive, pidCpuMs } from "../lib/util/process.ts";

const { values: flags } = parseArgs({
  options: {
    rounds: { type: "string", default: "5" },
    tokens: { type: "string", default: "4000" },
    json: { type: "boolean", default: false },
  },
});
const ROUNDS = Number(flags.rounds);
const TARGET_TOKENS = Number(flags.tokens);
const CTX = 8192;
const OPTIONS = { temperature: 0, seed: 42, num_predict: 8, num_ctx: CTX };

const { paths: testPaths, instance } = await testInstance();
const smol = await smolModelPath();
const root = await Deno.makeTempDir({ prefix: "llama-mgr-kv-bench-" });
const modelsDir = join(root, "models");
await Deno.mkdir(modelsDir);
// Two files of the same weights: two models for the swap.
await Deno.symlink(smol, join(modelsDir, "a.gguf"));
await Deno.copyFile(smol, join(modelsDir, "b.gguf"));

const logs: string[] = [];
async function daemon(name: string, daemonConfig: Record<string, unknown>): Promise<DaemonHandle> {
  const dataDir = join(root, name);
  const paths = { ...resolvePaths({ dataDir, env: {} }), instancesDir: testPaths.instancesDir };
  const config = parseConfig({
    models: {
      dirs: [modelsDir],
      aliases: { a: join(modelsDir, "a.gguf"), b: join(modelsDir, "b.gguf") },
      sources: { huggingface: false, ollama: false, lmstudio: false, llamacpp: false },
    },
    daemon: { max_loaded_models: 1, ...daemonConfig },
  });
  return await startDaemon({
    paths,
    config,
    host: "127.0.0.1",
    port: 0,
    env: {},
    instance: instance.name,
    log: (line) => logs.push(`${name}: ${line}`),
  });
}

// A deterministic conversation of about TARGET_TOKENS tokens (SmolLM2 spends about 1.1 tokens per word here).
const WORDS = ("river stone lantern orchard copper meadow signal harbor quiet engine basket thunder pocket " +
  "silver garden ladder window candle forest market bridge winter summer paper needle mirror").split(" ");
let seed = 7;
const rand = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
const sentence = () => {
  const n = 8 + Math.floor(rand() * 8);
  const w = Array.from({ length: n }, () => WORDS[Math.floor(rand() * WORDS.length)]);
  return w.join(" ").replace(/^./, (c) => c.toUpperCase()) + ".";
};
const paragraph = (words: number) => {
  const out: string[] = [];
  let n = 0;
  while (n < words) {
    const s = sentence();
    out.push(s);
    n += s.split(" ").length;
  }
  return out.join(" ");
};
function conversation(tokens: number, tag: string) {
  const turns = 8;
  const words = Math.round(tokens / 1.1 / (turns * 2));
  const messages: { role: string; content: string }[] = [{ role: "system", content: `Session ${tag}.` }];
  for (let i = 0; i < turns; i++) {
    messages.push({ role: "user", content: `Remember this: ${paragraph(words)}` });
    messages.push({ role: "assistant", content: `Noted. ${paragraph(words)}` });
  }
  messages.push({ role: "user", content: "Which word came up most often?" });
  return messages;
}

interface Timed {
  ttftMs: number;
  loadMs: number;
  promptTokens: number;
  content: string;
}

/** This process's CPU time and wall time during the timed chats: does it compete with llama-server? */
const self = { cpuMs: 0, wallMs: 0 };

/** Streams a chat and times its first line (the prompt has been processed and a token sampled). */
async function chat(url: string, model: string, messages: unknown[]): Promise<Timed> {
  const cpu0 = pidCpuMs(Deno.pid) ?? 0;
  const t0 = performance.now();
  try {
    return await timedChat(url, model, messages, t0);
  } finally {
    self.cpuMs += (pidCpuMs(Deno.pid) ?? 0) - cpu0;
    self.wallMs += performance.now() - t0;
  }
}

async function timedChat(url: string, model: string, messages: unknown[], t0: number): Promise<Timed> {
  const res = await fetch(`${url}/api/chat`, {
    method: "POST",
    body: JSON.stringify({ model, messages, options: OPTIONS, stream: true }),
  });
  if (!res.ok) throw new Error(`${model}: ${res.status} ${await res.text()}`);
  const reader = res.body!.getReader();
  const dec = new TextDecoder();
  let buf = "";
  let ttftMs = 0;
  let content = "";
  let final: Record<string, number> = {};
  while (true) {
    const { value, done } = await reader.read();
    if (done) break;
    if (!ttftMs) ttftMs = performance.now() - t0;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      const line = JSON.parse(buf.slice(0, i));
      buf = buf.slice(i + 1);
      content += line.message?.content ?? "";
      if (line.done) final = line;
    }
  }
  return {
    ttftMs,
    loadMs: (final.load_duration ?? 0) / 1e6,
    promptTokens: final.prompt_eval_count ?? 0,
    content,
  };
}

async function post(url: string, path: string, body: unknown): Promise<number> {
  const t0 = performance.now();
  const res = await fetch(`${url}${path}`, { method: "POST", body: JSON.stringify(body) });
  const text = await res.text();
  if (!res.ok) throw new Error(`${path}: ${res.status} ${text}`);
  return performance.now() - t0;
}
const load = (url: string, model: string) =>
  post(url, "/api/chat", { model, messages: [], options: { num_ctx: CTX } });
const unload = (url: string, model: string) => post(url, "/api/chat", { model, messages: [], keep_alive: 0 });

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const ms = (x: number) => `${x.toFixed(0)} ms`;

const kv = await daemon("kv", {});
const plain = await daemon("plain", { kv_cache_max: 0 });
const results = {
  restored: [] as number[],
  recomputed: [] as number[],
  restoredWithLoad: [] as number[],
  recomputedWithLoad: [] as number[],
  promptTokens: 0,
  sameAnswer: true,
  swap: [] as number[],
  swapEmpty: [] as number[],
  direct: [] as number[],
};

try {
  let argv: string[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const messages = conversation(TARGET_TOKENS, `r${round}`);
    // The conversation so far, computed once, then the eviction (the kv daemon saves the slot).
    const first = await chat(kv.url, "a", messages.slice(0, -2));
    await unload(kv.url, "a");
    const more = [...messages.slice(0, -2), { role: "assistant", content: first.content }, messages.at(-1)!];
    // The model loads on the timed request: its load time, which the answer reports, is taken out.
    const restored = await chat(kv.url, "a", more);
    results.restored.push(restored.ttftMs - restored.loadMs);
    results.restoredWithLoad.push(restored.ttftMs);
    results.promptTokens = restored.promptTokens;

    // A now holds the whole conversation in a slot: loading B saves it, stops A, starts B.
    results.swap.push(await load(kv.url, "b"));
    if (!argv.length) {
      const pid = kv.ctx.scheduler.list().find((r) => r.name.startsWith("b"))?.pid;
      argv = (await Deno.readTextFile(`/proc/${pid}/cmdline`)).split("\0").filter(Boolean);
    }
    await unload(kv.url, "b");

    // The daemon that keeps no KV caches: the model loads and computes the whole conversation again.
    const recomputed = await chat(plain.url, "a", more);
    results.recomputed.push(recomputed.ttftMs - recomputed.loadMs);
    results.recomputedWithLoad.push(recomputed.ttftMs);
    if (recomputed.content !== restored.content) results.sameAnswer = false;
    await unload(plain.url, "a");

    // A swap with nothing to save (A loaded, never asked), and B's llama-server started by hand.
    await load(kv.url, "a");
    results.swapEmpty.push(await load(kv.url, "b"));
    await unload(kv.url, "b");
    results.direct.push(await direct(argv));
    if (!flags.json) {
      console.log(
        `round ${round + 1}: first token restored ${ms(results.restored.at(-1)!)}, recomputed ${
          ms(results.recomputed.at(-1)!)
        } (${results.promptTokens} prompt tokens); swap ${ms(results.swap.at(-1)!)} (nothing saved ${
          ms(results.swapEmpty.at(-1)!)
        }), direct start ${ms(results.direct.at(-1)!)}`,
      );
    }
  }
} finally {
  await kv.close();
  await plain.close();
  await Deno.remove(root, { recursive: true }).catch(() => {});
}

/** Starts llama-server with `argv` on another port, times it until `/health` answers 200, and stops it. */
async function direct(argv: string[]): Promise<number> {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  const args = argv.slice(1);
  const i = args.indexOf("--port");
  if (i >= 0) args[i + 1] = String(port);
  else args.push("--port", String(port));
  const t0 = performance.now();
  const child = new Deno.Command(argv[0], { args, stdout: "null", stderr: "null" }).spawn();
  try {
    while (true) {
      const ok = await fetch(`http://127.0.0.1:${port}/health`).then((r) => {
        r.body?.cancel();
        return r.status === 200;
      }, () => false);
      if (ok) return performance.now() - t0;
      if (!pidAlive(child.pid)) throw new Error("llama-server exited");
      await new Promise((r) => setTimeout(r, 10));
    }
  } finally {
    child.kill("SIGTERM");
    await child.status;
  }
}

const restored = median(results.restored);
const recomputed = median(results.recomputed);
const speedup = recomputed / restored;
const swap = median(results.swap);
const directMs = median(results.direct);
const summary = {
  rounds: ROUNDS,
  promptTokens: results.promptTokens,
  ttftRestoredMs: restored,
  ttftRecomputedMs: recomputed,
  speedup,
  ttftRestoredWithLoadMs: median(results.restoredWithLoad),
  ttftRecomputedWithLoadMs: median(results.recomputedWithLoad),
  sameAnswer: results.sameAnswer,
  swapMs: swap,
  swapNothingSavedMs: median(results.swapEmpty),
  directStartMs: directMs,
  swapRatio: swap / directMs,
  swapNothingSavedRatio: median(results.swapEmpty) / directMs,
  benchCpuShare: self.cpuMs / self.wallMs,
  savedLines: logs.filter((l) => l.includes("kv cache: saved")).slice(-2),
  restoredLines: logs.filter((l) => l.includes("kv cache: restored")).slice(-2),
};
if (flags.json) console.log(JSON.stringify(summary, null, 2));
else {
  console.log(`\nresumed conversation of ${summary.promptTokens} tokens, medians of ${ROUNDS} rounds:`);
  console.log(
    `  time to first token, restored ${ms(restored)} vs recomputed ${ms(recomputed)}: ${
      speedup.toFixed(1)
    }x (target >= 5x) ${speedup >= 5 ? "MET" : "NOT MET"}; same greedy answer: ${summary.sameAnswer}`,
  );
  console.log(
    `  with the model's load included: ${ms(summary.ttftRestoredWithLoadMs)} vs ${
      ms(summary.ttftRecomputedWithLoadMs)
    }`,
  );
  console.log(
    `model swap (save A's slot, stop A, start B) ${ms(swap)} vs starting llama-server directly ${
      ms(directMs)
    }: ${summary.swapRatio.toFixed(2)}x (target <= 1.1x) ${
      summary.swapRatio <= 1.1 ? "MET" : "NOT MET"
    }; with nothing to save ${ms(summary.swapNothingSavedMs)} (${summary.swapNothingSavedRatio.toFixed(2)}x)`,
  );
  console.log(
    `this process (client and both daemons) used ${(summary.benchCpuShare * 100).toFixed(2)}% of one core ` +
      `during the chats`,
  );
  for (const l of [...summary.savedLines, ...summary.restoredLines]) console.log(`  ${l}`);
}
