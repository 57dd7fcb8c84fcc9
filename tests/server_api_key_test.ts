/**
 * A standalone server's API key (`server start --api-key K`, `-- --api-key K`, or a preset's) reaches
 * llama-server through its environment: not on the command line `ps` shows, not in the record; a restart
 * keeps it.
 */
import { assert, assertEquals } from "./_assert.ts";
import { cli, smolModelPath, tempDir, testInstance } from "./_fixtures.ts";
import { resolvePaths } from "../lib/config/paths.ts";
import { restartServer, serverStatus, startServer, stopAllServers } from "../lib/server/mod.ts";

async function status(url: string, key?: string): Promise<number> {
  const r = await fetch(`${url}/completion`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(key ? { authorization: `Bearer ${key}` } : {}) },
    body: JSON.stringify({ prompt: "hi", n_predict: 1 }),
  });
  await r.body?.cancel();
  return r.status;
}

/** Every file under `dir` whose text holds `needle`. */
async function filesWith(dir: string, needle: string): Promise<string[]> {
  const found: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory) found.push(...await filesWith(p, needle));
    else if (e.isFile && (await Deno.readTextFile(p).catch(() => "")).includes(needle)) found.push(p);
  }
  return found;
}

Deno.test({
  name: "a standalone server's API key stays out of its command line and its record",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const { instance, paths: shared } = await testInstance();
    const model = await smolModelPath();
    const tmp = await tempDir();
    const paths = resolvePaths({ dataDir: tmp.path, env: {} });
    await Deno.mkdir(paths.instancesDir, { recursive: true });
    await Deno.symlink(`${shared.instancesDir}/cpu`, `${paths.instancesDir}/cpu`);
    const key = "k-" + crypto.randomUUID();
    try {
      await t.step("--api-key among the passed-through flags is required, and hidden", async () => {
        const s = await startServer(paths, {
          name: "keyed",
          modelPath: model,
          instance,
          ctx: 256,
          args: ["--api-key", key],
        });
        assertEquals(await status(s.url), 401);
        assertEquals(await status(s.url, key), 200);
        const cmdline = await Deno.readTextFile(`/proc/${s.pid}/cmdline`);
        assert(!cmdline.includes(key) && !cmdline.includes("--api-key"), cmdline);
        assertEquals(await filesWith(tmp.path, key), []);
        assertEquals((await serverStatus(paths, "keyed")).spec.keyed, true);
      });

      await t.step("a restart keeps the key of the running process", async () => {
        const s = await restartServer(paths, "keyed");
        assertEquals(await status(s.url), 401);
        assertEquals(await status(s.url, key), 200);
        assertEquals(await filesWith(tmp.path, key), []);
      });

      await t.step("a preset's LLAMA_API_KEY is not recorded either", async () => {
        const s = await startServer(paths, {
          name: "preset",
          modelPath: model,
          instance,
          ctx: 256,
          env: { LLAMA_API_KEY: key },
        });
        assertEquals(await status(s.url), 401);
        assertEquals(await status(s.url, key), 200);
        assertEquals(await filesWith(tmp.path, key), []);
      });

      await t.step("llama-mgr server start --api-key K and restart --api-key K", async () => {
        const r = await cli([
          "-d",
          tmp.path,
          "server",
          "start",
          model,
          "--name",
          "cli",
          "--ctx",
          "256",
          "--api-key",
          key,
        ]);
        assertEquals(r.code, 0, r.stderr);
        const s = await serverStatus(paths, "cli");
        assertEquals(await status(s.url), 401);
        assertEquals(await status(s.url, key), 200);
        assert(!(await Deno.readTextFile(`/proc/${s.pid}/cmdline`)).includes(key));
        const other = key + "-2";
        const again = await cli(["-d", tmp.path, "server", "restart", "cli", "--api-key", other]);
        assertEquals(again.code, 0, again.stderr);
        const url = (await serverStatus(paths, "cli")).url;
        assertEquals(await status(url, key), 401);
        assertEquals(await status(url, other), 200);
        assertEquals(await filesWith(tmp.path, key), []);
      });
    } finally {
      await stopAllServers(paths);
      await tmp.cleanup?.();
    }
  },
});
