/**
 * What the daemon costs on top of llama-server. The same model, prompt and greedy settings go through the
 * daemon's `/api/chat` and straight to the daemon's own llama-server `/v1/chat/completions`, in one run, at 1,
 * 4 and 8 concurrent streams:
 *
 * - generation tokens/s, daemon over direct (target >= 0.98), from long streams in alternating rounds; each
 *   round also runs the direct path a second time, and the ratio of the two direct runs (A/A) shows how far
 *   this machine's own noise moves a ratio. Two measures: as the client sees it (tokens over each round's wall
 *   time, prompt and first token included) and as llama-server timed the generation itself (the eval rate,
 *   Ollama's `eval_count / eval_duration`), which leaves out prompt processing and the client's timing;
 * - the time to first token the daemon adds (target p50 < 2 ms, p99 < 10 ms), from many short requests;
 * - the daemon's CPU per streamed token;
 * - the daemon's resident memory idle and after 1,000 requests (target < 80 MB, no growth), with the part that
 *   is its own (anonymous) and the part that is the deno binary's shared code pages.
 *
 * The daemon runs as users run it (`llama-mgr daemon` as its own process, with the V8 flags the `llama-mgr`
 * task and `deno install` give it), with a temp data dir, the SmolLM2 fixture model and the shared test build.
 * llama-server gets `--parallel` slots (default 8) so that 8 streams measure the daemon, not queueing.
 *
 * Run: `deno run -A bench/daemon_overhead.ts [--rounds N] [--tokens N] [--ttft N] [--requests N] [--parallel N]
 * [--threads N] [--server-args "..."] [--v8 FLAGS] [--streams 1,4,8] [--api ollama|openai] [--json]`
 * (`--threads` gives llama-server that many threads, e.g. to leave the daemon a core; `--server-args` adds
 * llama-server flags to both paths; `--v8` replaces the daemon's V8 flags, `--v8=` runs it without any;
 * `--api openai` measures the daemon's `/v1/chat/completions` instead of `/api/chat`, asking for the model by a
 * name other than the one llama-server reports, so that every event's `model` is rewritten; `--v1-model
 * smol:latest` asks by the name llama-server reports, so that nothing is).
 *
 * @module
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { smolModelPath, testInstance } from "../tests/_fixtures.ts";
import { pidCpuMs, pidRss, pidStatusBytes } from "../lib/util/process.ts";
import { DAEMON_V8_FLAGS } from "../lib/version.ts";
import { OLLAMA_SAMPLING_DEFAULTS } from "../lib/daemon/options.ts";

const { values: flags } = parseArgs({
  options: {
    rounds: { type: "string", default: "12" },
    tokens: { type: "string", default: "64" },
    ttft: { type: "string", default: "200" },
    requests: { type: "string", default: "1000" },
    parallel: { type: "string", default: "8" },
    json: { type: "boolean", default: false },
    threads: { type: "string" },
    "server-args": { type: "string" },
    v8: { type: "string" },
    streams: { type: "string", default: "1,4,8" },
    api: { type: "string", default: "ollama" },
    "v1-model": { type: "string", default: "smol" },
  },
});
const ROUNDS = Number(flags.rounds);
const TOKENS = Number(flags.tokens);
const TTFT_SAMPLES = Number(flags.ttft);
const REQUESTS = Number(flags.requests);
const V8 = flags.v8 ?? DAEMON_V8_FLAGS.join(" ");
// The daemon's path measured: Ollama's /api/chat, or OpenAI's /v1/chat/completions (passed through, the model
// renamed in every event to the name asked, which differs from the one llama-server reports).
const API = flags.api === "openai" ? "openai" : "ollama";
if (flags.api !== API) throw new Error(`--api must be ollama or openai, not ${flags.api}`);
const V1_MODEL = flags["v1-model"]!;
const PROMPT = "Write a short story about a robot who learns to paint.";
// What the daemon sends llama-server for these Ollama options (lib/daemon/ollama/convert.ts): Ollama's defaults,
// then the request's.
const SAMPLING = { ...OLLAMA_SAMPLING_DEFAULTS, temperature: 0, top_k: 1, seed: 42 };

interface StreamResult {
  ttftMs: number;
  tokens: number;
  /** Generation time as llama-server measured it (Ollama's eval_duration), ms. */
  evalMs: number;
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Reads a streamed body line by line, calling `onLine` for each complete line. */
async function readLines(res: Response, onLine: (line: string) => void): Promise<void> {
  const reader = res.body!.getReader();
  const dec = new TextDecoder();
  let buf = "";
  while (true) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let nl;
    while ((nl = buf.indexOf("\n")) >= 0) {
      onLine(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
  }
}

async function ollamaStream(url: string, tokens: number): Promise<StreamResult> {
  const t0 = performance.now();
  const res = await fetch(`${url}/api/chat`, {
    method: "POST",
    body: JSON.stringify({
      model: "smol",
      messages: [{ role: "user", content: PROMPT }],
      keep_alive: -1,
      options: { temperature: 0, top_k: 1, seed: 42, num_predict: tokens },
    }),
  });
  let ttft = -1;
  let n = 0;
  let evalMs = 0;
  await readLines(res, (text) => {
    const line = JSON.parse(text);
    if (line.error) throw new Error(line.error);
    if (!line.done && line.message?.content && ttft < 0) ttft = performance.now() - t0;
    if (line.done) {
      n = line.eval_count;
      evalMs = line.eval_duration / 1e6;
    }
  });
  return { ttftMs: ttft, tokens: n, evalMs };
}

/** The daemon's own llama-server: its address and the key the daemon gave it. */
interface Direct {
  url: string;
  key: string;
}

function daemonStream(url: string, tokens: number): Promise<StreamResult> {
  return API === "openai" ? v1Stream(url, {}, tokens, V1_MODEL) : ollamaStream(url, tokens);
}

function directStream(direct: Direct, tokens: number): Promise<StreamResult> {
  return v1Stream(direct.url, { authorization: `Bearer ${direct.key}` }, tokens);
}

async function v1Stream(
  url: string,
  headers: Record<string, string>,
  tokens: number,
  model?: string,
): Promise<StreamResult> {
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify({
      model,
      messages: [{ role: "user", content: PROMPT }],
      stream: true,
      ...SAMPLING,
      // After SAMPLING: its n_predict (Ollama's default, -1) would win over max_tokens in llama-server.
      max_tokens: tokens,
      n_predict: tokens,
    }),
  });
  if (!res.ok) throw new Error(`${url}: ${res.status} ${await res.text()}`);
  let ttft = -1;
  let n = 0;
  let evalMs = 0;
  await readLines(res, (text) => {
    const line = text.trim();
    if (!line.startsWith("data: ") || line === "data: [DONE]") return;
    const ev = JSON.parse(line.slice(6));
    if (ev.choices?.[0]?.delta?.content && ttft < 0) ttft = performance.now() - t0;
    if (ev.timings) {
      n = ev.timings.predicted_n;
      evalMs = ev.timings.predicted_ms;
    }
  });
  return { ttftMs: ttft, tokens: n, evalMs };
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

/** The daemon's private (anonymous) resident memory: RSS without the shared pages of the deno binary. */
function anonRss(pid: number): number {
  return pidStatusBytes(pid, "RssAnon") ?? 0;
}

interface RoundResult {
  seconds: number;
  tokens: number;
  /** Sum of the streams' generation times as llama-server measured them, ms. */
  evalMs: number;
  ttfts: number[];
  /** CPU the daemon process used during the round, ms. */
  daemonCpuMs: number;
}

async function round(fn: () => Promise<StreamResult>, c: number, daemonPid: number): Promise<RoundResult> {
  const cpu0 = pidCpuMs(daemonPid) ?? 0;
  const t0 = performance.now();
  const results = await Promise.all(Array.from({ length: c }, fn));
  return {
    seconds: (performance.now() - t0) / 1000,
    tokens: results.reduce((a, r) => a + r.tokens, 0),
    evalMs: results.reduce((a, r) => a + r.evalMs, 0),
    ttfts: results.map((r) => r.ttftMs),
    daemonCpuMs: (pidCpuMs(daemonPid) ?? 0) - cpu0,
  };
}

/** Every ordering of three paths, cycled so each path runs first, second and third equally often. */
const ORDERS = [[0, 1, 2], [1, 2, 0], [2, 0, 1], [0, 2, 1], [2, 1, 0], [1, 0, 2]];

async function main(): Promise<void> {
  const { paths: testPaths, instance } = await testInstance();
  const root = await Deno.makeTempDir({ prefix: "llama-mgr-bench-" });
  const modelsDir = join(root, "models");
  await Deno.mkdir(modelsDir);
  await Deno.symlink(await smolModelPath(), join(modelsDir, "smol.gguf"));
  const configFile = join(root, "config.yaml");
  const serverArgs = [
    "-np",
    flags.parallel!,
    ...(flags.threads ? ["-t", flags.threads] : []),
    ...(flags["server-args"] ? flags["server-args"].split(/\s+/).filter(Boolean) : []),
  ];
  await Deno.writeTextFile(
    configFile,
    [
      "models:",
      `  dirs: [${JSON.stringify(modelsDir)}]`,
      `  aliases: { smol: ${JSON.stringify(join(modelsDir, "smol.gguf"))} }`,
      "  sources: { huggingface: false, ollama: false, lmstudio: false, llamacpp: false }",
      "presets:",
      "  smol:",
      "    model: smol",
      `    args: ${JSON.stringify(serverArgs)}`,
      "",
    ].join("\n"),
  );
  const dataDir = join(root, "data");
  await Deno.mkdir(dataDir);
  await Deno.symlink(testPaths.instancesDir, join(dataDir, "instances"));
  const port = freePort();
  const url = `http://127.0.0.1:${port}`;
  const main = new URL("../cli/main.ts", import.meta.url).pathname;
  const daemon = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      ...(V8 ? [`--v8-flags=${V8.split(/\s+/).join(",")}`] : []),
      main,
      "daemon",
      "--port",
      String(port),
      "-d",
      dataDir,
      "--config",
      configFile,
      "-i",
      instance.name,
      "-q",
    ],
    env: { OLLAMA_HOST: "", OLLAMA_KEEP_ALIVE: "", OLLAMA_ORIGINS: "" },
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  // Interrupted (Ctrl-C, timeout): stop the daemon, which stops its llama-server.
  const onSignal = () => {
    try {
      daemon.kill("SIGTERM");
    } catch { /* gone */ }
    daemon.status.finally(() => Deno.remove(root, { recursive: true }).catch(() => {})).finally(() =>
      Deno.exit(130)
    );
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  const out = (line: string) => {
    if (!flags.json) console.log(line);
  };
  let exited = false;
  daemon.status.then(() => exited = true);
  try {
    for (let i = 0; i < 300 && !exited; i++) {
      try {
        const r = await fetch(url + "/api/version");
        await r.body?.cancel();
        if (r.ok) break;
      } catch { /* not yet */ }
      await new Promise((r) => setTimeout(r, 100));
    }
    if (exited) throw new Error("the daemon exited before answering (see its output above)");
    // Load the model (kept forever) and find the daemon's own llama-server.
    await (await fetch(`${url}/api/chat`, {
      method: "POST",
      body: JSON.stringify({ model: "smol", messages: [], keep_alive: -1 }),
    })).json();
    const direct = await findServer(url, dataDir);
    // Warm both paths (prompt cache, JIT).
    for (let i = 0; i < 3; i++) {
      await daemonStream(url, TOKENS);
      await directStream(direct, TOKENS);
    }
    const rssIdle = pidRss(daemon.pid) ?? 0;
    const anonIdle = anonRss(daemon.pid);
    out(
      `llama-server: ${serverArgs.join(" ")}; daemon V8 flags: ${V8 || "(none)"}; ` +
        `${TOKENS} tokens per stream, ${ROUNDS} rounds (x2 at 1 stream), ${TTFT_SAMPLES} TTFT samples per path; ` +
        `daemon path ${API === "openai" ? `/v1/chat/completions (model "${V1_MODEL}")` : "/api/chat"}`,
    );

    const streams = flags.streams!.split(",").filter(Boolean).map(Number);
    const throughput: Record<string, unknown>[] = [];
    for (const c of streams) {
      // Paths: 0 the daemon, 1 direct, 2 direct again (the A/A control).
      const seconds = [0, 0, 0];
      const tokens = [0, 0, 0];
      const evalMs = [0, 0, 0];
      let cpuMs = 0;
      const rounds = c === 1 ? ROUNDS * 2 : ROUNDS;
      for (let i = 0; i < rounds; i++) {
        for (const p of ORDERS[i % ORDERS.length]) {
          const r = await round(
            () => p === 0 ? daemonStream(url, TOKENS) : directStream(direct, TOKENS),
            c,
            daemon.pid,
          );
          seconds[p] += r.seconds;
          tokens[p] += r.tokens;
          evalMs[p] += r.evalMs;
          if (p === 0) cpuMs += r.daemonCpuMs;
        }
      }
      const tps = [0, 1, 2].map((p) => tokens[p] / seconds[p]);
      // Per stream, as llama-server timed its generation (what `ollama run --verbose` shows as eval rate).
      const eps = [0, 1, 2].map((p) => (tokens[p] * 1000) / evalMs[p]);
      const row = {
        streams: c,
        daemon_tps: +tps[0].toFixed(1),
        direct_tps: +((tps[1] + tps[2]) / 2).toFixed(1),
        ratio: +(tps[0] / ((tps[1] + tps[2]) / 2)).toFixed(3),
        aa_ratio: +(tps[2] / tps[1]).toFixed(3),
        eval_rate_ratio: +(eps[0] / ((eps[1] + eps[2]) / 2)).toFixed(3),
        eval_rate_aa_ratio: +(eps[2] / eps[1]).toFixed(3),
        daemon_cpu_us_per_token: Math.round((cpuMs * 1000) / Math.max(1, tokens[0])),
      };
      throughput.push(row);
      out(
        `${c} stream(s): tokens/s daemon ${row.daemon_tps} vs direct ${row.direct_tps} = ratio ${row.ratio} ` +
          `(${row.ratio >= 0.98 ? "met" : "NOT met"}; A/A direct vs direct ${row.aa_ratio}); ` +
          `eval rate (llama-server's timing of the generation) ratio ${row.eval_rate_ratio} ` +
          `(A/A ${row.eval_rate_aa_ratio}); daemon CPU ${row.daemon_cpu_us_per_token} µs/token`,
      );
    }

    const ttft: Record<string, unknown>[] = [];
    for (const c of streams) {
      const d: number[] = [];
      const s: number[] = [];
      for (let i = 0; d.length < TTFT_SAMPLES; i++) {
        const first = i % 2 === 0;
        const a = await round(() => first ? daemonStream(url, 4) : directStream(direct, 4), c, daemon.pid);
        const b = await round(() => first ? directStream(direct, 4) : daemonStream(url, 4), c, daemon.pid);
        (first ? d : s).push(...a.ttfts);
        (first ? s : d).push(...b.ttfts);
      }
      const row = {
        streams: c,
        samples: d.length,
        added_p50_ms: +(pct(d, 50) - pct(s, 50)).toFixed(2),
        added_p99_ms: +(pct(d, 99) - pct(s, 99)).toFixed(2),
        daemon_ms: { p50: +pct(d, 50).toFixed(2), p99: +pct(d, 99).toFixed(2) },
        direct_ms: { p50: +pct(s, 50).toFixed(2), p99: +pct(s, 99).toFixed(2) },
      };
      ttft.push(row);
      const met = row.added_p50_ms < 2 && row.added_p99_ms < 10;
      out(
        `${c} stream(s): added time to first token p50 ${row.added_p50_ms} ms, p99 ${row.added_p99_ms} ms ` +
          `(${met ? "met" : "NOT met"}; daemon ${row.daemon_ms.p50} / ${row.daemon_ms.p99} ms, ` +
          `direct ${row.direct_ms.p50} / ${row.direct_ms.p99} ms; ${row.samples} samples each)`,
      );
    }

    // Memory: requests of the kinds clients send most.
    const rssAt: number[] = [];
    const anonAt: number[] = [];
    for (let i = 0; i < REQUESTS; i++) {
      const kind = i % 4;
      if (kind === 0) await (await fetch(`${url}/api/tags`)).body?.cancel();
      else if (kind === 1) await (await fetch(`${url}/api/ps`)).body?.cancel();
      else if (kind === 2) {
        await (await fetch(`${url}/api/chat`, {
          method: "POST",
          body: JSON.stringify({
            model: "smol",
            messages: [{ role: "user", content: `hi ${i}` }],
            stream: false,
            keep_alive: -1,
            options: { num_predict: 2 },
          }),
        })).body?.cancel();
      } else {
        const r = await fetch(`${url}/api/generate`, {
          method: "POST",
          body: JSON.stringify({
            model: "smol",
            prompt: `count ${i}`,
            keep_alive: -1,
            options: { num_predict: 2 },
          }),
        });
        await r.text();
      }
      if ((i + 1) % Math.max(1, Math.floor(REQUESTS / 4)) === 0) {
        rssAt.push(pidRss(daemon.pid) ?? 0);
        anonAt.push(anonRss(daemon.pid));
      }
    }
    const mb = (b: number) => +(b / 1024 / 1024).toFixed(1);
    const memory = {
      rss_idle_mb: mb(rssIdle),
      rss_after_requests_mb: rssAt.map(mb),
      anon_idle_mb: mb(anonIdle),
      anon_after_requests_mb: anonAt.map(mb),
      requests: REQUESTS,
    };
    const peak = Math.max(rssIdle, ...rssAt);
    out(
      `daemon RSS: ${memory.rss_idle_mb} MB idle (model loaded, after warm-up and the streams above), ` +
        `${memory.rss_after_requests_mb.join(" / ")} MB after each quarter of ${REQUESTS} requests ` +
        `(${
          mb(peak) < 80 ? "under" : "OVER"
        } 80 MB); its own (anonymous) part ${memory.anon_idle_mb} MB idle, ` +
        `${memory.anon_after_requests_mb.join(" / ")} MB; the rest is the deno binary's shared code pages`,
    );
    if (flags.json) {
      console.log(JSON.stringify(
        {
          tokens: TOKENS,
          rounds: ROUNDS,
          server_args: serverArgs,
          api: API,
          v8_flags: V8,
          throughput,
          ttft,
          memory,
        },
        null,
        2,
      ));
    }
  } finally {
    try {
      daemon.kill("SIGTERM");
    } catch { /* gone */ }
    await daemon.status;
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
}

async function findServer(url: string, dataDir: string): Promise<Direct> {
  // The daemon's llama-server records its URL with the supervisor; read it back through lib/server.
  const { listServers } = await import("../lib/server/mod.ts");
  const { resolvePaths } = await import("../lib/config/paths.ts");
  const servers = await listServers(resolvePaths({ dataDir, env: {} }));
  const s = servers.find((x: { owner?: { kind: string } }) => x.owner?.kind === "daemon");
  if (!s) throw new Error(`no daemon-owned llama-server found (daemon at ${url})`);
  // The daemon gives each runner a key of its own, in its environment (the bench runs as the same user).
  const environ = await Deno.readTextFile(`/proc/${s.pid}/environ`);
  const key = environ.split("\0").find((e) => e.startsWith("LLAMA_API_KEY="))?.slice("LLAMA_API_KEY=".length);
  if (!key) throw new Error(`the daemon's llama-server (pid ${s.pid}) has no LLAMA_API_KEY`);
  return { url: s.url, key };
}

if (import.meta.main) await main();
