/**
 * A long-running daemon keeps its llama-servers' logs bounded: a log that grows past the limit is copied to
 * `.1` and emptied in place while the server runs, and the server goes on logging into the same file.
 */
import { assert, assertEquals } from "./_assert.ts";
import { post, withDaemon } from "./_daemon.ts";
import { serverLogPath } from "../lib/server/logs.ts";
import { resolvePaths } from "../lib/config/paths.ts";

const size = (path: string) => Deno.stat(path).then((s) => s.size, () => -1);

Deno.test({
  name: "daemon: a running llama-server's log is rotated in place as it grows",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await withDaemon({ logRotation: { everyMs: 100, maxBytes: 1000 } }, async ({ url, daemon, dataDir }) => {
      const gen = async (prompt: string) => {
        const res = await post(url + "/api/generate", {
          model: "smol",
          prompt,
          stream: false,
          options: { num_predict: 4 },
        });
        const body = await res.json();
        assertEquals(res.status, 200, JSON.stringify(body));
        return body;
      };
      await gen("Hello");
      const runner = daemon.ctx.scheduler.list()[0];
      const log = serverLogPath(resolvePaths({ dataDir, env: {} }), runner.serverName);
      // llama-server's start-up lines and one request are over 1,000 bytes.
      for (let i = 0; i < 50 && await size(`${log}.1`) < 0; i++) await new Promise((r) => setTimeout(r, 100));
      const rotated = await size(`${log}.1`);
      assert(rotated > 1000, `no rotated log (${log}.1: ${rotated})`);
      assert(await size(log) < rotated, "the live log was not emptied");
      // The server keeps running and keeps writing to the same (emptied) file.
      const before = await size(log);
      const answer = await gen("Write one word");
      assertEquals(answer.done, true);
      for (let i = 0; i < 20 && await size(log) <= before; i++) await new Promise((r) => setTimeout(r, 50));
      assert(await size(log) > before, "llama-server stopped logging into the live file");
      assert(!(await Deno.readTextFile(log)).startsWith("\0"), "the live log starts with a hole of zeros");
    });
  },
});
