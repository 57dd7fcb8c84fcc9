/**
 * `llama-mgr daemon` as a process: OLLAMA_HOST is honoured, SIGTERM stops its llama-servers, and a daemon
 * killed with `kill -9` leaves no orphaned llama-server once it is started again.
 */
import { join } from "node:path";
import { assert, assertEquals } from "./_assert.ts";
import { smolModelPath, testInstance } from "./_fixtures.ts";
import { pidAlive } from "../lib/util/process.ts";
import { listServers } from "../lib/server/mod.ts";
import { resolvePaths } from "../lib/config/paths.ts";

const MAIN = new URL("../cli/main.ts", import.meta.url).pathname;

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

async function setup(): Promise<{ root: string; dataDir: string; configFile: string; instance: string }> {
  const { paths, instance } = await testInstance();
  const root = await Deno.makeTempDir({ prefix: "llama-mgr-daemon-life-" });
  const modelsDir = join(root, "models");
  await Deno.mkdir(modelsDir);
  await Deno.symlink(await smolModelPath(), join(modelsDir, "smol.gguf"));
  const dataDir = join(root, "data");
  await Deno.mkdir(dataDir);
  await Deno.symlink(paths.instancesDir, join(dataDir, "instances"));
  const configFile = join(root, "config.yaml");
  await Deno.writeTextFile(
    configFile,
    `models:\n  dirs: [${JSON.stringify(modelsDir)}]\n  aliases: { smol: ${
      JSON.stringify(join(modelsDir, "smol.gguf"))
    } }\n` +
      "  sources: { huggingface: false, ollama: false, lmstudio: false, llamacpp: false }\n",
  );
  return { root, dataDir, configFile, instance: instance.name };
}

function spawnDaemon(
  s: { dataDir: string; configFile: string; instance: string },
  args: string[],
  env: Record<string, string> = {},
): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      MAIN,
      "daemon",
      "-d",
      s.dataDir,
      "--config",
      s.configFile,
      "-i",
      s.instance,
      "-q",
      ...args,
    ],
    env: { OLLAMA_HOST: "", OLLAMA_KEEP_ALIVE: "", OLLAMA_ORIGINS: "", ...env },
    stdout: "null",
    stderr: "piped",
  }).spawn();
}

async function waitUp(url: string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    try {
      const r = await fetch(`${url}/api/version`);
      await r.body?.cancel();
      if (r.ok) return;
    } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`daemon at ${url} did not come up`);
}

async function loadAndPid(url: string, dataDir: string): Promise<number> {
  const r = await fetch(`${url}/api/generate`, { method: "POST", body: JSON.stringify({ model: "smol" }) });
  assertEquals((await r.json()).done_reason, "load");
  const servers = await listServers(resolvePaths({ dataDir, env: {} }));
  const s = servers.find((x) => x.owner?.kind === "daemon");
  assert(s?.pid, `no daemon-owned server in ${JSON.stringify(servers)}`);
  return s.pid;
}

async function waitDead(pid: number, ms = 10_000): Promise<boolean> {
  for (let i = 0; i < ms / 100; i++) {
    if (!pidAlive(pid)) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return !pidAlive(pid);
}

Deno.test("daemon process: OLLAMA_HOST, SIGTERM stops its servers, kill -9 leaves no orphan", async (t) => {
  const s = await setup();
  const children: Deno.ChildProcess[] = [];
  const pids: number[] = [];
  try {
    await t.step("OLLAMA_HOST sets the address; SIGTERM stops the daemon and its llama-server", async () => {
      const port = freePort();
      const url = `http://127.0.0.1:${port}`;
      const d = spawnDaemon(s, [], { OLLAMA_HOST: `127.0.0.1:${port}` });
      children.push(d);
      await waitUp(url);
      const pid = await loadAndPid(url, s.dataDir);
      pids.push(pid);
      assert(pidAlive(pid));
      d.kill("SIGTERM");
      const status = await d.status;
      await d.stderr.cancel();
      assertEquals(status.code, 0);
      assert(await waitDead(pid), `llama-server ${pid} survived the daemon's SIGTERM`);
    });

    await t.step("after kill -9, the next daemon start stops the orphaned llama-server", async () => {
      const port = freePort();
      const url = `http://127.0.0.1:${port}`;
      const d = spawnDaemon(s, ["--port", String(port)]);
      children.push(d);
      await waitUp(url);
      const pid = await loadAndPid(url, s.dataDir);
      pids.push(pid);
      d.kill("SIGKILL");
      await d.status;
      await d.stderr.cancel();
      assert(pidAlive(pid), "llama-server should outlive a daemon killed with -9 (it is detached)");
      const d2 = spawnDaemon(s, ["--port", String(port)]);
      children.push(d2);
      await waitUp(url);
      assert(await waitDead(pid), `orphaned llama-server ${pid} is still running after the daemon restarted`);
      d2.kill("SIGTERM");
      assertEquals((await d2.status).code, 0);
      await d2.stderr.cancel();
    });
  } finally {
    for (const c of children) {
      try {
        c.kill("SIGKILL");
      } catch { /* already gone */ }
      await c.status;
      await c.stderr.cancel().catch(() => {});
    }
    for (const pid of pids) {
      if (pidAlive(pid)) Deno.kill(pid, "SIGKILL");
    }
    await Deno.remove(s.root, { recursive: true }).catch(() => {});
  }
});
