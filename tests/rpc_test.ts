/**
 * A model spread over llama.cpp RPC workers, end to end: two workers started with `llama-mgr rpc serve` as
 * separate hosts (network namespaces joined to this one by veth pairs when the test runs as root with `ip`;
 * loopback otherwise), `server start` of a preset bound to their cluster giving the same greedy tokens as the
 * model run locally, a worker that is not there named in the error, and through the daemon a worker killed
 * mid-answer giving the client an error and the next request recovering once the worker is back.
 */
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./_assert.ts";
import { smolModelPath, tempDir, testInstance } from "./_fixtures.ts";
import { post, withDaemon } from "./_daemon.ts";
import { resolvePaths } from "../lib/config/paths.ts";
import { findFreePort } from "../lib/server/ports.ts";
import { listServers, stopAllServers } from "../lib/server/mod.ts";
import { listWorkers, stopWorker } from "../lib/rpc/mod.ts";
import { canUseNetns, type Host, makeHosts } from "./_netns.ts";

const MAIN = new URL("../cli/main.ts", import.meta.url).pathname;
const MODEL = "smollm2:135m-q4_1";
const greedy = { temperature: 0, top_k: 1, seed: 42 };

Deno.test({
  name: "rpc: a model across two workers, a missing worker named, a killed worker and its recovery",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const { paths: shared } = await testInstance();
    const model = await smolModelPath();
    const tmp = await tempDir();
    const data = `${tmp.path}/data`;
    await Deno.mkdir(`${data}/instances`, { recursive: true });
    await Deno.symlink(`${shared.instancesDir}/cpu`, `${data}/instances/cpu`);
    await Deno.mkdir(`${tmp.path}/models`);
    await Deno.symlink(model, `${tmp.path}/models/SmolLM2-135M-Instruct.Q4_1.gguf`);
    const paths = resolvePaths({ dataDir: data, env: {} });

    const netns = await canUseNetns();
    const net = netns ? await makeHosts(String(Deno.pid % 100000)) : undefined;
    if (!netns) {
      console.log(
        "no network namespaces (not root, no `ip`, or LLAMA_MGR_TEST_LOOPBACK=1): the workers run on loopback",
      );
    }
    const hosts: Host[] = net?.hosts ?? [{ addr: "127.0.0.1", exec: [] }, { addr: "127.0.0.1", exec: [] }];
    const ports = netns ? [50052, 50052] : [findFreePort(), findFreePort()];
    const endpoints = hosts.map((h, i) => `${h.addr}:${ports[i]}`);
    // Nothing listens there: a port of worker a's host that no worker took.
    const absent = `${hosts[0].addr}:${netns ? 50053 : findFreePort()}`;

    const config = `${tmp.path}/config.yaml`;
    await Deno.writeTextFile(
      config,
      [
        "models:",
        `  dirs: [${tmp.path}/models]`,
        "clusters:",
        `  lab: { workers: [${endpoints.map((e) => `"${e}"`).join(", ")}] }`,
        `  ghost: { workers: ["${endpoints[0]}", "${absent}"] }`,
        "presets:",
        `  big: { model: ${MODEL}, ctx: 512, args: [--parallel, '1'], cluster: lab }`,
        `  haunted: { model: ${MODEL}, ctx: 512, cluster: ghost }`,
      ].join("\n") + "\n",
    );
    const llamaMgr = async (args: string[], host?: Host) => {
      const out = await new Deno.Command(host?.exec.length ? host.exec[0] : Deno.execPath(), {
        args: [
          ...(host?.exec.slice(1) ?? []),
          ...(host?.exec.length ? [Deno.execPath()] : []),
          "run",
          "-A",
          MAIN,
          "-d",
          data,
          "--config",
          config,
          ...args,
        ],
        env: { NO_COLOR: "1", DENO_DIR: Deno.env.get("DENO_DIR") ?? `${Deno.env.get("HOME")}/.cache/deno` },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const dec = new TextDecoder();
      return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
    };
    const serve = (i: number) => {
      const remote = hosts[i].addr !== "127.0.0.1";
      return llamaMgr([
        "rpc",
        "serve",
        "--name",
        `worker-${"ab"[i]}`,
        "--host",
        hosts[i].addr,
        "--port",
        String(ports[i]),
        "--threads",
        "1",
        ...(remote ? ["--allow-remote"] : []),
      ], hosts[i]);
    };
    const completion = async (url: string) => {
      const r = await fetch(`${url}/completion`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          prompt: "The capital of France is",
          n_predict: 12,
          ...greedy,
          return_tokens: true,
        }),
      });
      assertEquals(r.status, 200);
      const j = await r.json();
      return { content: j.content as string, tokens: j.tokens as number[] };
    };

    try {
      await t.step(
        "rpc serve starts each worker supervised; beyond loopback only with a warning",
        async () => {
          if (netns) {
            const refused = await llamaMgr(
              ["rpc", "serve", "--host", hosts[0].addr, "--port", "50060"],
              hosts[0],
            );
            assertEquals(refused.code, 1);
            assertStringIncludes(refused.stderr, "no authentication");
            assertStringIncludes(refused.stderr, "--allow-remote");
          }
          for (const i of [0, 1]) {
            const r = await serve(i);
            assertEquals(r.code, 0, r.stderr);
            assertStringIncludes(r.stdout, `listens on ${endpoints[i]}`);
            if (netns) assertMatch(r.stderr, /warning: .*without any authentication.*SSH tunnel/s);
          }
          const list = JSON.parse((await llamaMgr(["rpc", "list", "--json"])).stdout);
          assertEquals(list.map((w: { name: string; state: string }) => `${w.name} ${w.state}`), [
            "worker-a ready",
            "worker-b ready",
          ]);
          const check = await llamaMgr(["rpc", "check", "lab", "--json"]);
          assertEquals(check.code, 0, check.stderr);
          const lab = JSON.parse(check.stdout);
          assertEquals(lab.workers.map((w: { endpoint: string }) => w.endpoint), endpoints);
          assert(
            lab.workers.every((w: { freeBytes: number }) => w.freeBytes > 0),
            "workers report free memory",
          );
        },
      );

      await t.step(
        "a preset bound to the cluster gives the same greedy tokens as the model run locally",
        async () => {
          const local = await llamaMgr([
            "server",
            "start",
            MODEL,
            "--name",
            "local",
            "--ctx",
            "512",
            "--",
            "--parallel",
            "1",
          ]);
          assertEquals(local.code, 0, local.stderr);
          const servers = await listServers(paths);
          const want = await completion(servers.find((s) => s.name === "local")!.url);
          assertEquals((await llamaMgr(["server", "stop", "local"])).code, 0);

          const big = await llamaMgr(["server", "start", "big"]);
          assertEquals(big.code, 0, big.stderr);
          const s = (await listServers(paths)).find((s) => s.name === "big")!;
          assertEquals(s.argv[s.argv.indexOf("--rpc") + 1], endpoints.join(","));
          const got = await completion(s.url);
          assertEquals(got.tokens.length, 12);
          assertEquals(got, want);
          // The weights live on the workers: llama-server itself holds less than the model file.
          const fileBytes = (await Deno.stat(model)).size;
          assert((s.rssBytes ?? 0) < fileBytes, `head rss ${s.rssBytes} >= model ${fileBytes}`);
          // A worker serves one llama-server at a time: while `big` holds them, a check says they are busy.
          const busy = await llamaMgr(["rpc", "check", "lab"]);
          assertEquals(busy.code, 1);
          assertStringIncludes(busy.stderr, `RPC worker ${endpoints[0]} accepted but did not answer`);
          // A restart checks the workers too (busy with it, they still accept) and keeps the cluster.
          const restarted = await llamaMgr(["server", "restart", "big"]);
          assertEquals(restarted.code, 0, restarted.stderr);
          assertEquals(await completion((await listServers(paths)).find((s) => s.name === "big")!.url), want);
          assertEquals((await llamaMgr(["server", "stop", "big"])).code, 0);
          // The check left nothing a worker would answer into a closed socket (SIGPIPE): both still run.
          await new Promise((r) => setTimeout(r, 500));
          const after = JSON.parse((await llamaMgr(["rpc", "list", "--json"])).stdout);
          assertEquals(after.map((w: { state: string }) => w.state), ["ready", "ready"]);
        },
      );

      await t.step("a worker that is not there is named in the error, before anything starts", async () => {
        const r = await llamaMgr(["server", "start", "haunted"]);
        assertEquals(r.code, 1);
        assertStringIncludes(r.stderr, `RPC worker ${absent} is unreachable`);
        assertStringIncludes(r.stderr, "cluster 'ghost'");
        assert(!(await listServers(paths)).some((s) => s.name === "haunted"), "no server was started");
      });

      await t.step("through the daemon: a worker killed mid-answer, then back", async () => {
        await withDaemon({
          config: {
            clusters: { lab: { workers: endpoints } },
            presets: { big: { model: "smol", ctx: 512, args: ["--parallel", "1"], cluster: "lab" } },
          },
        }, async ({ url, daemon }) => {
          const r = await post(`${url}/api/generate`, {
            model: "smol",
            prompt: "1, 2, 3, 4, 5,",
            raw: true,
            options: { ...greedy, num_predict: 400 },
          });
          assertEquals(r.status, 200, r.status === 200 ? "" : await r.text());
          // On the cluster's workers (the placement also counts the copy of a tied output layer that llama.cpp
          // puts beside the layers, so the whole size can be above the launcher's estimate for the workers).
          const loaded = daemon.ctx.scheduler.list()[0];
          assertEquals(loaded.devices?.map((d) => d.id), ["rpc:lab"], JSON.stringify(loaded.devices));
          const onWorkers = loaded.devices![0].bytes;
          assert(onWorkers > 0.7 * loaded.sizeBytes && onWorkers <= loaded.sizeBytes, JSON.stringify(loaded));
          // The scheduler packs it into the cluster's memory: its layers are counted on the workers' budget.
          const onCluster = daemon.ctx.scheduler.list()[0].usage["rpc:lab"] ?? 0;
          assert(onCluster > 0, JSON.stringify(daemon.ctx.scheduler.list()[0].usage));
          const lab = daemon.ctx.scheduler.devices().find((d) => d.name === "rpc:lab");
          assert(lab && lab.usedBytes === onCluster && lab.budgetBytes > onCluster, JSON.stringify(lab));
          const reader = r.body!.getReader();
          await reader.read(); // it is generating
          const b = (await listWorkers(paths)).find((w) => w.name === "worker-b")!;
          Deno.kill(b.pid!, "SIGKILL");
          let rest = "";
          const dec = new TextDecoder();
          while (true) {
            const { value, done } = await reader.read();
            if (done) break;
            rest += dec.decode(value);
          }
          const lines = rest.trim().split("\n");
          const last = JSON.parse(lines[lines.length - 1]);
          console.log(`the client's last line: ${lines[lines.length - 1]}`);
          assertStringIncludes(
            String(last.error),
            `RPC worker ${endpoints[1]} of cluster 'lab' is unreachable`,
          );

          const down = await post(`${url}/api/generate`, {
            model: "smol",
            prompt: "Hi",
            stream: false,
            options: { ...greedy, num_predict: 2 },
          });
          assert(down.status >= 500, `status ${down.status}`);
          assertStringIncludes((await down.json()).error, `RPC worker ${endpoints[1]} is unreachable`);

          // The supervisor tells the truth about the killed worker.
          const killed = JSON.parse((await llamaMgr(["rpc", "list", "--json"])).stdout);
          assertEquals(killed.map((w: { state: string }) => w.state), ["ready", "crashed"]);
          // Restarting the CLI's server on the cluster names the missing worker and starts nothing.
          const restart = await llamaMgr(["server", "restart", "big"]);
          assertEquals(restart.code, 1);
          assertStringIncludes(restart.stderr, `RPC worker ${endpoints[1]} of server 'big' is unreachable`);
          const again = await serve(1);
          assertEquals(again.code, 0, again.stderr);
          const back = await post(`${url}/api/generate`, {
            model: "smol",
            prompt: "The capital of France is",
            raw: true,
            stream: false,
            options: { ...greedy, num_predict: 4 },
          });
          assertEquals(back.status, 200);
          assert(((await back.json()).response as string).length > 0);
        });
      });
    } finally {
      await stopAllServers(paths).catch(() => {});
      for (const w of await listWorkers(paths).catch(() => [])) {
        await stopWorker(paths, w.name).catch(() => {});
      }
      await net?.cleanup();
      await tmp.cleanup();
    }
  },
});

Deno.test("rpc: a cluster's workers must be host:port, and a preset's cluster must exist", async () => {
  const { parseConfig } = await import("../lib/config/load.ts");
  const { clusterWorkers } = await import("../lib/rpc/cluster.ts");
  const { parseEndpoint } = await import("../lib/rpc/protocol.ts");
  let message = "";
  try {
    parseConfig({ clusters: { lab: { workers: ["gpu-box-1"] } } });
  } catch (e) {
    message = String(e);
  }
  assertMatch(message, /clusters\.lab\.workers\.0.*host:port/s);
  const config = parseConfig({ clusters: { lab: { workers: ["gpu-box-1:50052", "[fd00::2]:50052"] } } });
  assertEquals(clusterWorkers(config, "lab"), ["gpu-box-1:50052", "[fd00::2]:50052"]);
  assertEquals(parseEndpoint("[fd00::2]:50052"), { host: "fd00::2", port: 50052 });
  let missing = "";
  try {
    clusterWorkers(config, "farm");
  } catch (e) {
    missing = String(e);
  }
  assertStringIncludes(missing, "no cluster named 'farm'");
});
