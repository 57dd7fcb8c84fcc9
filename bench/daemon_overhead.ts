/**
 * What the daemon costs on top of llama-server. The same model, prompt and greedy settings go through the
 * daemon's `/api/chat` and straight to the daemon's own llama-server `/v1/chat/completions`, alternating, in one
 * run, at 1, 4 and 8 concurrent streams. Prints the generation tokens/s ratio (target >= 0.98), the time to
 * first token the daemon adds (target p50 < 2 ms, p99 < 10 ms), and the daemon's resident memory idle and after
 * 1,000 requests (target < 80 MB, no growth).
 *
 * The daemon runs as users run it (`llama-mgr daemon`, a separate process), with a temp data dir, the SmolLM2
 * fixture model and the shared test build.
 *
 * Run: `deno run -A bench/daemon_overhead.ts [--rounds N] [--tokens N] [--requests N] [--threads N] [--v8 F] [--streams 1,4,8] [--json]`
 * (`--threads` gives llama-server that many threads through a preset, e.g. to leave the daemon a core; `--v8`
 * passes V8 flags to the daemon process, e.g. `--max-semi-space-size=1` for a smaller young generation).
 *
 * @module
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { smolModelPath, testInstance } from "../tests/_fixtures.ts";
import { pidRss } from "../lib/util/process.ts";

const { values: flags } = parseArgs({
  options: {
    rounds: { type: "string", default: "12" },
    tokens: { type: "string", default: "64" },
    requests: { type: "string", default: "1000" },
    json: { type: "boolean", default: false },
    threads: { type: "string" },
    v8: { type: "string" },
    streams: { type: "string", default: "1,4,8" },
  },
});
const ROUNDS = Number(flags.rounds);
const TOKENS = Number(flags.tokens);
const REQUESTS = Number(flags.requests);
const PROMPT = "Write a short story about a robot who learns to paint.";
const SAMPLING = {
  temperature: 0,
  top_k: 1,
  seed: 42,
  top_p: 0.9,
  min_p: 0,
  typical_p: 1,
  repeat_last_n: 64,
  repeat_penalty: 1,
  n_keep: 4,
};

interface StreamResult {
  ttftMs: number;
  tokens: number;
  endMs: number;
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

async function daemonStream(url: string): Promise<StreamResult> {
  const t0 = performance.now();
  const res = await fetch(`${url}/api/chat`, {
    method: "POST",
    body: JSON.stringify({
      model: "smol",
      messages: [{ role: "user", content: PROMPT }],
      keep_alive: -1,
      options: { temperature: 0, top_k: 1, seed: 42, num_predict: TOKENS },
    }),
  });
  const reader = res.body!.getReader();
  const dec = new TextDecoder();
  let buf = "";
  let ttft = -1;
  let tokens = 0;
  while (true) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let nl;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = JSON.parse(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
      if (line.error) throw new Error(line.error);
      if (!line.done && line.message?.content) {
        if (ttft < 0) ttft = performance.now() - t0;
      }
      if (line.done) tokens = line.eval_count;
    }
  }
  return { ttftMs: ttft, tokens, endMs: performance.now() - t0 };
}

async function directStream(url: string): Promise<StreamResult> {
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      messages: [{ role: "user", content: PROMPT }],
      stream: true,
      max_tokens: TOKENS,
      n_predict: TOKENS,
      ...SAMPLING,
    }),
  });
  const reader = res.body!.getReader();
  const dec = new TextDecoder();
  let buf = "";
  let ttft = -1;
  let tokens = 0;
  while (true) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let nl;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
      const ev = JSON.parse(line.slice(6));
      if (ev.choices?.[0]?.delta?.content && ttft < 0) ttft = performance.now() - t0;
      if (ev.timings) tokens = ev.timings.predicted_n;
    }
  }
  return { ttftMs: ttft, tokens, endMs: performance.now() - t0 };
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

async function round(fn: () => Promise<StreamResult>, c: number): Promise<{ tps: number; ttfts: number[] }> {
  const t0 = performance.now();
  const results = await Promise.all(Array.from({ length: c }, fn));
  const wall = performance.now() - t0;
  const tokens = results.reduce((a, r) => a + r.tokens, 0);
  return { tps: tokens / (wall / 1000), ttfts: results.map((r) => r.ttftMs) };
}

async function main(): Promise<void> {
  const { paths: testPaths, instance } = await testInstance();
  const root = await Deno.makeTempDir({ prefix: "llama-mgr-bench-" });
  const modelsDir = join(root, "models");
  await Deno.mkdir(modelsDir);
  await Deno.symlink(await smolModelPath(), join(modelsDir, "smol.gguf"));
  const configFile = join(root, "config.yaml");
  await Deno.writeTextFile(
    configFile,
    [
      "models:",
      `  dirs: [${JSON.stringify(modelsDir)}]`,
      `  aliases: { smol: ${JSON.stringify(join(modelsDir, "smol.gguf"))} }`,
      "  sources: { huggingface: false, ollama: false, lmstudio: false, llamacpp: false }",
      ...(flags.threads
        ? ["presets:", "  smol:", "    model: smol", `    args: ["-t", "${flags.threads}"]`]
        : []),
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
      ...(flags.v8 ? [`--v8-flags=${flags.v8}`] : []),
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
  try {
    for (let i = 0; i < 300; i++) {
      try {
        const r = await fetch(url + "/api/version");
        await r.body?.cancel();
        if (r.ok) break;
      } catch { /* not yet */ }
      await new Promise((r) => setTimeout(r, 100));
    }
    const rssStart = pidRss(daemon.pid) ?? 0;
    // Load the model (kept forever) and find the daemon's own llama-server.
    await (await fetch(`${url}/api/chat`, {
      method: "POST",
      body: JSON.stringify({ model: "smol", messages: [], keep_alive: -1 }),
    })).json();
    const direct = await findServerUrl(url, dataDir);
    // Warm both paths (prompt cache, JIT).
    for (let i = 0; i < 3; i++) {
      await daemonStream(url);
      await directStream(direct);
    }
    const rssIdle = pidRss(daemon.pid) ?? 0;

    const rows: Record<string, unknown>[] = [];
    for (const c of flags.streams!.split(",").filter(Boolean).map(Number)) {
      const d = { tps: [] as number[], ttft: [] as number[] };
      const s = { tps: [] as number[], ttft: [] as number[] };
      const rounds = c === 1 ? ROUNDS * 2 : ROUNDS;
      for (let i = 0; i < rounds; i++) {
        const first = i % 2 === 0;
        const a = await round(() => (first ? daemonStream(url) : directStream(direct)), c);
        const b = await round(() => (first ? directStream(direct) : daemonStream(url)), c);
        const [dr, sr] = first ? [a, b] : [b, a];
        d.tps.push(dr.tps);
        d.ttft.push(...dr.ttfts);
        s.tps.push(sr.tps);
        s.ttft.push(...sr.ttfts);
      }
      const sum = (xs: number[]) => xs.reduce((x, y) => x + y, 0);
      const row = {
        streams: c,
        daemon_tps: +(sum(d.tps) / d.tps.length).toFixed(1),
        direct_tps: +(sum(s.tps) / s.tps.length).toFixed(1),
        ratio: +(sum(d.tps) / sum(s.tps)).toFixed(3),
        added_ttft_p50_ms: +(pct(d.ttft, 50) - pct(s.ttft, 50)).toFixed(2),
        added_ttft_p99_ms: +(pct(d.ttft, 99) - pct(s.ttft, 99)).toFixed(2),
        ttft_p50_ms: { daemon: +pct(d.ttft, 50).toFixed(2), direct: +pct(s.ttft, 50).toFixed(2) },
      };
      rows.push(row);
      if (!flags.json) {
        console.log(
          `${c} stream(s): tokens/s daemon ${row.daemon_tps} vs direct ${row.direct_tps} = ratio ${row.ratio}; ` +
            `added TTFT p50 ${row.added_ttft_p50_ms} ms, p99 ${row.added_ttft_p99_ms} ms ` +
            `(TTFT p50 daemon ${row.ttft_p50_ms.daemon} ms, direct ${row.ttft_p50_ms.direct} ms)`,
        );
      }
    }

    // Memory: 1,000 small requests of every kind clients send most.
    const rssAt: number[] = [];
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
      if ((i + 1) % (REQUESTS / 4) === 0) rssAt.push(pidRss(daemon.pid) ?? 0);
    }
    const mb = (b: number) => +(b / 1024 / 1024).toFixed(1);
    const memory = {
      rss_start_mb: mb(rssStart),
      rss_idle_mb: mb(rssIdle),
      rss_after_requests_mb: rssAt.map(mb),
      requests: REQUESTS,
    };
    if (flags.json) console.log(JSON.stringify({ tokens: TOKENS, rounds: ROUNDS, rows, memory }, null, 2));
    else {
      console.log(
        `daemon RSS: ${memory.rss_idle_mb} MB idle (model loaded, after warm-up), ` +
          `${memory.rss_after_requests_mb.join(" / ")} MB after each quarter of ${REQUESTS} requests`,
      );
    }
  } finally {
    try {
      daemon.kill("SIGTERM");
    } catch { /* gone */ }
    await daemon.status;
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
}

async function findServerUrl(url: string, dataDir: string): Promise<string> {
  // The daemon's llama-server records its URL with the supervisor; read it back through lib/server.
  const { listServers } = await import("../lib/server/mod.ts");
  const { resolvePaths } = await import("../lib/config/paths.ts");
  const servers = await listServers(resolvePaths({ dataDir, env: {} }));
  const s = servers.find((x: { owner?: { kind: string } }) => x.owner?.kind === "daemon");
  if (!s) throw new Error(`no daemon-owned llama-server found (daemon at ${url})`);
  return s.url;
}

if (import.meta.main) await main();
