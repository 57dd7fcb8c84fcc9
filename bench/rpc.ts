/**
 * The cost of the RPC hop: the same model (the SmolLM2 fixture), prompt and greedy settings run by a local
 * llama-server and by a llama-server whose layers live on two RPC workers on this machine (loopback), in one
 * run, alternating. For each it measures:
 *
 * - load time: from spawning llama-server to `/health` answering 200 (for the cluster this includes sending
 *   the weights to the workers);
 * - generation tokens/s and prompt tokens/s as llama-server timed them (`timings.predicted_per_second`,
 *   `timings.prompt_per_second`), median over the requests;
 * - what crossed the wire (network namespaces only): bytes over the workers' veth pairs, TCP/IP headers
 *   included, during the load and per generated token.
 *
 * Workers run with every CPU (`-t` = CPU count) and llama-server with its default threads, so each side has
 * the whole machine; on one machine the hop costs serialisation and copies, not a real network's latency.
 * Running as root with `ip`, each worker is its own "host" (a network namespace joined by a veth pair, as in
 * tests/rpc_test.ts) and the veth counters give the bytes on the wire; otherwise both run on loopback and the
 * wire figures are left out.
 *
 * Run: `deno run -A bench/rpc.ts [--loads N] [--requests N] [--tokens N] [--json]`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { smolModelPath, tempDir, testInstance } from "../tests/_fixtures.ts";
import { resolvePaths } from "../lib/config/paths.ts";
import { findFreePort } from "../lib/server/ports.ts";
import { startServer, stopServer } from "../lib/server/mod.ts";
import { listWorkers, stopWorker } from "../lib/rpc/mod.ts";
import { queryWorker } from "../lib/rpc/protocol.ts";
import { canUseNetns, type Host, linkBytes, makeHosts } from "../tests/_netns.ts";

const { values: flags } = parseArgs({
  options: {
    loads: { type: "string", default: "2" },
    requests: { type: "string", default: "2" },
    tokens: { type: "string", default: "32" },
    json: { type: "boolean", default: false },
  },
});
const LOADS = Number(flags.loads);
const REQUESTS = Number(flags.requests);
const TOKENS = Number(flags.tokens);
const PROMPT = "Write a short story about a robot who learns to paint. Once upon a time,";

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

interface Sample {
  loadMs: number;
  genTps: number[];
  promptTps: number[];
  tokens: string[];
  loadBytes?: number;
  bytesPerToken?: number[];
}

const { paths: shared, instance } = await testInstance();
const model = await smolModelPath();
const tmp = await tempDir("llama-mgr-bench-rpc-");
await Deno.mkdir(`${tmp.path}/instances`, { recursive: true });
await Deno.symlink(`${shared.instancesDir}/${instance.name}`, `${tmp.path}/instances/${instance.name}`);
const paths = resolvePaths({ dataDir: tmp.path, env: {} });
const netns = await canUseNetns();
const net = netns ? await makeHosts(`b${Deno.pid % 10000}`) : undefined;
const hosts: Host[] = net?.hosts ?? [{ addr: "127.0.0.1", exec: [] }, { addr: "127.0.0.1", exec: [] }];
const workers: { name: string; endpoint: string }[] = [];
const wire = () => hosts.reduce((n, h) => n + linkBytes(h), 0);
const results: Record<"local" | "rpc", Sample[]> = { local: [], rpc: [] };

async function generate(url: string): Promise<{ gen: number; prompt: number; text: string; n: number }> {
  const r = await fetch(`${url}/completion`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      prompt: PROMPT,
      n_predict: TOKENS,
      temperature: 0,
      top_k: 1,
      seed: 42,
      ignore_eos: true,
      cache_prompt: false,
    }),
  });
  const j = await r.json();
  return {
    gen: j.timings.predicted_per_second,
    prompt: j.timings.prompt_per_second,
    text: j.content,
    n: j.timings.predicted_n,
  };
}

async function once(kind: "local" | "rpc"): Promise<Sample> {
  const wireBefore = wire();
  const t0 = performance.now();
  const s = await startServer(paths, {
    name: `bench-${kind}`,
    modelPath: model,
    instance,
    port: "auto",
    ctx: 1024,
    args: ["--parallel", "1", ...(kind === "rpc" ? ["--rpc", workers.map((w) => w.endpoint).join(",")] : [])],
  });
  const loadMs = performance.now() - t0;
  const wireLoaded = wire();
  const sample: Sample = { loadMs, genTps: [], promptTps: [], tokens: [] };
  if (kind === "rpc") {
    sample.loadBytes = wireLoaded - wireBefore;
    sample.bytesPerToken = [];
  }
  try {
    for (let i = 0; i < REQUESTS; i++) {
      const before = wire();
      const g = await generate(s.url);
      const after = wire();
      sample.genTps.push(g.gen);
      sample.promptTps.push(g.prompt);
      sample.tokens.push(g.text);
      sample.bytesPerToken?.push((after - before) / g.n);
    }
  } finally {
    await stopServer(paths, s.name);
  }
  return sample;
}

try {
  for (const [i, h] of hosts.entries()) {
    // Started as a user starts one, inside its host: `llama-mgr rpc serve`.
    const port = netns ? 50052 : findFreePort();
    const name = `bench-worker-${i}`;
    const cmd = [
      ...h.exec,
      Deno.execPath(),
      "run",
      "-A",
      new URL("../cli/main.ts", import.meta.url).pathname,
      "-d",
      tmp.path,
      "-q",
      "rpc",
      "serve",
      "--name",
      name,
      "--host",
      h.addr,
      "--port",
      String(port),
      ...(netns ? ["--allow-remote"] : []),
    ];
    const r = await new Deno.Command(cmd[0], { args: cmd.slice(1), stdout: "null", stderr: "piped" })
      .output();
    if (!r.success) throw new Error(`rpc serve failed: ${new TextDecoder().decode(r.stderr)}`);
    workers.push({ name, endpoint: `${h.addr}:${port}` });
  }
  const reported = await Promise.all(workers.map((w) => queryWorker(w.endpoint)));
  for (let i = 0; i < LOADS; i++) {
    // Alternate the order so that neither side always runs on a warmer machine.
    const order: ("local" | "rpc")[] = i % 2 ? ["rpc", "local"] : ["local", "rpc"];
    for (const kind of order) results[kind].push(await once(kind));
  }
  const sum = (kind: "local" | "rpc") => {
    const s = results[kind];
    return {
      loadMs: median(s.map((x) => x.loadMs)),
      genTps: median(s.flatMap((x) => x.genTps)),
      promptTps: median(s.flatMap((x) => x.promptTps)),
    };
  };
  const local = sum("local");
  const rpc = sum("rpc");
  const same = results.rpc.flatMap((s) => s.tokens).every((t) => t === results.local[0].tokens[0]);
  const loadMiB = netns ? median(results.rpc.map((s) => s.loadBytes!)) / 2 ** 20 : undefined;
  const perToken = netns ? median(results.rpc.flatMap((s) => s.bytesPerToken!)) / 1024 : undefined;
  const out = {
    machine: { cpus: navigator.hardwareConcurrency, loadavg: Deno.loadavg(), netns },
    settings: { loads: LOADS, requests: REQUESTS, tokens: TOKENS },
    workers: reported.map((w) => ({ endpoint: w.endpoint, protocol: w.protocol, freeBytes: w.freeBytes })),
    local,
    rpc,
    ratios: {
      load: rpc.loadMs / local.loadMs,
      genTps: rpc.genTps / local.genTps,
      promptTps: rpc.promptTps / local.promptTps,
    },
    wire: { loadMiB, kibPerToken: perToken },
    sameGreedyText: same,
  };
  if (flags.json) console.log(JSON.stringify(out, null, 2));
  else {
    const f = (n: number, d = 1) => n.toFixed(d);
    console.log(
      `RPC hop, SmolLM2-135M Q4_1, 2 workers (${
        netns ? "network namespaces" : "loopback"
      }), ${LOADS} loads x ${REQUESTS} x ${TOKENS} tokens`,
    );
    console.log(`                 local      2 workers   ratio`);
    console.log(
      `load time        ${f(local.loadMs / 1000, 2)} s     ${f(rpc.loadMs / 1000, 2)} s      ${
        f(out.ratios.load, 2)
      }x`,
    );
    console.log(
      `generation       ${f(local.genTps)} t/s   ${f(rpc.genTps)} t/s    ${f(out.ratios.genTps, 3)}`,
    );
    console.log(
      `prompt           ${f(local.promptTps)} t/s   ${f(rpc.promptTps)} t/s    ${f(out.ratios.promptTps, 3)}`,
    );
    console.log(
      loadMiB === undefined || perToken === undefined
        ? "over the wire: not measured (workers on loopback: run as root with `ip` for network namespaces)"
        : `over the wire: ${f(loadMiB)} MiB at load, ${f(perToken)} KiB per generated token`,
    );
    console.log(
      `same greedy text: ${same}; load average ${Deno.loadavg().map((x) => x.toFixed(1)).join(" ")}`,
    );
  }
} finally {
  for (const w of await listWorkers(paths).catch(() => [])) await stopWorker(paths, w.name).catch(() => {});
  await net?.cleanup();
  await tmp.cleanup();
}
