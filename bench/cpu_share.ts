/**
 * Two models generating at once on the CPU: together they must get at least 0.8x the tokens/s of one alone.
 *
 * llama.cpp's threads busy-wait (at OpenMP barriers, and between tokens), so two llama-servers with a thread per
 * core each, generating at the same time, take each other's cores and collapse. The daemon makes runners on
 * the CPU take turns (lib/daemon/runners/cpu_turns.ts). In one run, with two copies of the SmolLM2 fixture (`a`
 * and `b`) and the shared test build:
 *
 * - **turns**: one daemon as it starts (turns on); `a` alone, `b` alone, then both at once;
 * - **turns, two daemons**: the same with `a` in one daemon and `b` in another (the turn is a file lock);
 * - **sleeping**: turns off, waiting threads that sleep (`OMP_WAIT_POLICY=passive`, `--poll 0` in presets);
 * - **spinning** (the peer): turns off, llama.cpp's defaults, as llama-servers started by hand run.
 *
 * Each stream generates `--tokens` tokens (greedy, EOS ignored); a stream still going after `--cap` seconds is
 * cut there and counted as far as it got (a collapsed pair would take minutes). Tokens/s of a pair is both
 * streams' tokens over the pair's wall time; of one alone, the mean of `a` and `b` alone. Rounds alternate.
 *
 * Run: `deno run -A bench/cpu_share.ts [--rounds N] [--tokens N] [--cap SECONDS] [--json]`
 *
 * @module
 */
import { parseArgs } from "node:util";
import { post, withDaemon } from "../tests/_daemon.ts";
import { smolModelPath } from "../tests/_fixtures.ts";

const { values: flags } = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    tokens: { type: "string", default: "128" },
    cap: { type: "string", default: "30" },
    json: { type: "boolean", default: false },
  },
});
const ROUNDS = Number(flags.rounds);
const TOKENS = Number(flags.tokens);
const CAP_MS = Number(flags.cap) * 1000;
const say = (line: string) => {
  if (!flags.json) console.log(line);
};

/** One stream: tokens generated and wall time (cut at the cap). */
async function stream(url: string, model: string): Promise<{ tokens: number; ms: number }> {
  const stop = AbortSignal.timeout(CAP_MS);
  const t0 = performance.now();
  let tokens = 0;
  try {
    const r = await post(`${url}/api/generate`, {
      model,
      prompt: "Write a long story about a lighthouse keeper.",
      options: { temperature: 0, top_k: 1, seed: 42, num_predict: TOKENS, ignore_eos: true },
    }, { signal: stop });
    if (r.status !== 200) throw new Error(`${model}: ${r.status} ${await r.text()}`);
    const dec = new TextDecoder();
    let buf = "";
    for await (const chunk of r.body!) {
      buf += dec.decode(chunk, { stream: true });
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = JSON.parse(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        if (line.error) throw new Error(`${model}: ${line.error}`);
        if (!line.done && line.response !== undefined) tokens++;
      }
    }
  } catch (err) {
    if (!stop.aborted) throw err;
  }
  return { tokens, ms: performance.now() - t0 };
}

interface Figures {
  alone: number[];
  both: number[];
}

/** Rounds of `a` alone, `b` alone, then both at once. */
async function measure(name: string, urlA: string, urlB: string): Promise<Figures> {
  await stream(urlA, "a");
  await stream(urlB, "b"); // both loaded and warm
  const f: Figures = { alone: [], both: [] };
  for (let i = 0; i < ROUNDS; i++) {
    const a = await stream(urlA, "a");
    const b = await stream(urlB, "b");
    f.alone.push((a.tokens / a.ms + b.tokens / b.ms) * 500);
    const t0 = performance.now();
    const [x, y] = await Promise.all([stream(urlA, "a"), stream(urlB, "b")]);
    f.both.push((x.tokens + y.tokens) / (performance.now() - t0) * 1000);
    say(
      `${name} round ${i + 1}: alone ${f.alone[i].toFixed(1)} tok/s, both at once ${
        f.both[i].toFixed(1)
      } tok/s (${x.tokens} + ${y.tokens} tokens), ratio ${(f.both[i] / f.alone[i]).toFixed(2)}`,
    );
  }
  return f;
}

const median = (xs: number[]) => [...xs].sort((p, q) => p - q)[Math.floor(xs.length / 2)];
const smol = await smolModelPath();
const models = { "a.gguf": smol, "b.gguf": smol };
const off = { LLAMA_MGR_CPU_TURNS: "0" };
const sleeping = { env: { OMP_WAIT_POLICY: "passive" }, args: ["--poll", "0"] };
const results: Record<string, Figures> = {};

results.turns = await withDaemon({ models }, ({ url }) => measure("turns", url, url));
results["turns, two daemons"] = await withDaemon(
  { models },
  ({ url: one }) => withDaemon({ models }, ({ url: two }) => measure("turns, two daemons", one, two)),
);
results.sleeping = await withDaemon({
  models,
  env: off,
  config: { presets: { a: { model: "a", ...sleeping }, b: { model: "b", ...sleeping } } },
}, ({ url }) => measure("sleeping", url, url));
results.spinning = await withDaemon({ models, env: off }, ({ url }) => measure("spinning", url, url));

const load = (await Deno.readTextFile("/proc/loadavg").catch(() => "?")).split(" ").slice(0, 3).join(" ");
const rows = Object.entries(results).map(([name, f]) => ({
  name,
  alone: median(f.alone),
  both: median(f.both),
  ratio: median(f.both.map((b, i) => b / f.alone[i])),
}));
if (flags.json) {
  console.log(JSON.stringify({ tokens: TOKENS, rounds: ROUNDS, load, rows }));
} else {
  console.log(`\n${TOKENS} tokens a stream, ${ROUNDS} rounds, medians; load average ${load}`);
  console.log("| runners | one alone tok/s | two at once tok/s | together / alone (target >= 0.8) |");
  console.log("| ------- | --------------- | ----------------- | -------------------------------- |");
  for (const r of rows) {
    console.log(`| ${r.name} | ${r.alone.toFixed(1)} | ${r.both.toFixed(1)} | ${r.ratio.toFixed(2)} |`);
  }
  const turns = rows[0], spinning = rows[3];
  console.log(
    `\nturns together / alone: ${turns.ratio.toFixed(2)} (${turns.ratio >= 0.8 ? "met" : "NOT met"}); ` +
      `two daemons: ${rows[1].ratio.toFixed(2)}; sleeping: ${rows[2].ratio.toFixed(2)}; ` +
      `spinning: ${spinning.ratio.toFixed(2)}; one model alone, turns / spinning: ${
        (turns.alone / spinning.alone).toFixed(2)
      }`,
  );
}
