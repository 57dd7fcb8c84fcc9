/**
 * Packing by bytes with real llama-servers: two names for SmolLM2 (one a copy of the file), a CPU budget of
 * 1.5 times what one needs at 4096 tokens, so both fit at 512 and one at 4096. Both stay loaded together at 512,
 * `/api/ps` shows the bytes on the CPU; reloading one at 4096 unloads the other by bytes (max_loaded_models is
 * 3), and a context no budget can hold is a 500 that names need and budget, with the loaded model left alone.
 */
import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { post, withDaemon } from "./_daemon.ts";
import { smolModelPath } from "./_fixtures.ts";
import { describeModel, estimateMemory, readGgufHeader } from "../lib/gguf/mod.ts";

Deno.test({
  name: "daemon: models are packed by bytes into the CPU budget, unloading the idle one only when needed",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const smol = await smolModelPath();
    const facts = describeModel(await readGgufHeader(smol, { skipArraysOver: 256 }));
    // What the launcher counts with the daemon's defaults (no OLLAMA_NUM_PARALLEL, f16 cache).
    const need = (ctx: number) => estimateMemory(facts, { ctx }).totalBytes;
    const budget = Math.round(need(4096) * 1.5);
    assert(2 * need(512) < budget, `two at 512 tokens fit: ${need(512)} x 2 < ${budget}`);
    const logs: string[] = [];
    await withDaemon({
      models: { "smol.gguf": smol, "smol2.gguf": smol },
      config: { memory: { budgets: { CPU: budget } } },
      logs,
    }, async ({ url, daemon }) => {
      const load = async (model: string, numCtx: number) => {
        const r = await post(`${url}/api/generate`, { model, options: { num_ctx: numCtx } });
        assertEquals(r.status, 200, await r.clone().text());
        await r.body?.cancel();
      };
      const ps = async () => (await (await fetch(`${url}/api/ps`)).json());
      const names = async () => (await ps()).models.map((m: { name: string }) => m.name).sort();
      const rss = () =>
        daemon.ctx.scheduler.list().map((r) => {
          const status = Deno.readTextFileSync(`/proc/${r.pid}/status`);
          return `${r.name} ctx ${r.ctx}: estimate ${(r.sizeBytes / 2 ** 20).toFixed(0)} MiB, RSS ${
            (Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024).toFixed(0)
          } MiB`;
        });

      await load("smol", 512);
      const first = await ps();
      assertEquals(first.models.map((m: { size: number }) => m.size), [need(512)]);
      assertEquals(first.models[0].llama_mgr.devices, { CPU: need(512) });
      assertEquals(first.llama_mgr.devices, [{ name: "CPU", budget, used: need(512) }]);

      await load("smol2", 512); // 512 + 512 fits: both stay
      assertEquals(await names(), ["smol2:latest", "smol:latest"]);
      assertEquals((await ps()).llama_mgr.devices[0].used, 2 * need(512));
      console.log(`budget ${(budget / 2 ** 20).toFixed(0)} MiB; ${rss().join("; ")}`);

      await load("smol2", 4096); // reloaded at 4096, which does not fit beside smol: smol goes
      assertEquals(await names(), ["smol2:latest"]);
      assert(
        logs.some((l) => l.includes("evicting smol:latest to make room for smol2:latest")),
        logs.join("\n"),
      );
      assertEquals((await ps()).llama_mgr.devices[0].used, need(4096));
      console.log(rss().join("; "));

      const big = await post(`${url}/api/generate`, { model: "smol2", options: { num_ctx: 131072 } });
      assertEquals(big.status, 500);
      const { error } = await big.json();
      assertMatch(
        error,
        /^model requires more system memory \(\d+\.\d GiB\) than is available \(0\.\d GiB\)/,
      );
      assert(error.includes("memory.budgets.CPU"), error);
      assertEquals(await names(), ["smol2:latest"], "nothing was unloaded for it");
    });
  },
});
