/**
 * Loading and unloading against a real llama-server: a load without a prompt, keep_alive (0, a duration,
 * forever), concurrent requests starting a model once, a reload for another num_ctx, max_loaded_models
 * evicting the least recently used model, and closing the daemon stopping its llama-servers.
 */
import { assert, assertEquals } from "./_assert.ts";
import { post, withDaemon } from "./_daemon.ts";
import { ProcessResponseSchema } from "../lib/daemon/types.ts";
import { pidAlive } from "../lib/util/process.ts";
import { smolModelPath } from "./_fixtures.ts";

const greedy = { temperature: 0, top_k: 1, seed: 42 };

async function ps(url: string) {
  return ProcessResponseSchema.parse(await (await fetch(`${url}/api/ps`)).json()).models;
}

Deno.test("daemon: loading and unloading a model", async (t) => {
  const logs: string[] = [];
  await withDaemon({ logs }, async ({ url, daemon }) => {
    await t.step("empty messages load the model; keep_alive 0 unloads it", async () => {
      await post(`${url}/api/generate`, { model: "smol", keep_alive: 0 }).then((r) => r.json());
      assertEquals((await ps(url)).length, 0);
      const load = await (await post(`${url}/api/chat`, { model: "smol", messages: [] })).json();
      assertEquals(load.done, true);
      assertEquals(load.done_reason, "load");
      const loaded = await ps(url);
      assertEquals(loaded.length, 1);
      assertEquals(loaded[0].name, "smol:latest");
      assert(loaded[0].context_length > 0);
      assert(loaded[0].size > 0);
      const exp = Date.parse(loaded[0].expires_at) - Date.now();
      assert(exp > 4 * 60_000 && exp <= 5 * 60_000 + 1000, `expires in ${exp} ms, not about 5m`);
      const unload = await (await post(`${url}/api/chat`, { model: "smol", messages: [], keep_alive: 0 }))
        .json();
      assertEquals(unload.done_reason, "unload");
      assertEquals((await ps(url)).length, 0);
    });

    await t.step("keep_alive '2s' unloads after about two seconds; -1 keeps it forever", async () => {
      const sent = Date.now();
      await (await post(`${url}/api/generate`, { model: "smol", keep_alive: "2s" })).json();
      const p = await ps(url);
      assertEquals(p.length, 1);
      const expires = Date.parse(p[0].expires_at);
      assert(expires - Date.now() <= 2100);
      assert(expires - sent >= 2000, `expires ${expires - sent} ms after the request, not 2 s`);
      // Watched until it goes, not looked at once after a fixed wait: a busy machine may unload it late (the
      // bound is generous), but never before it expires.
      let gone: number | undefined;
      while (gone === undefined && Date.now() < expires + 10_000) {
        if ((await ps(url)).length === 0) gone = Date.now();
        else await new Promise((r) => setTimeout(r, 100));
      }
      assert(gone !== undefined, "still loaded 10 s after it expired");
      assert(gone >= expires - 50, `unloaded ${expires - gone} ms before it expired`);
      await (await post(`${url}/api/generate`, { model: "smol", keep_alive: -1 })).json();
      const forever = await ps(url);
      assert(Date.parse(forever[0].expires_at) > Date.now() + 100 * 365 * 24 * 3600_000);
    });

    await t.step("concurrent requests for an unloaded model start it once", async () => {
      await (await post(`${url}/api/generate`, { model: "smol", keep_alive: 0 })).json();
      const before = logs.filter((l) => l.includes(" loading smol")).length;
      const answers = await Promise.all(
        [1, 2, 3, 4].map((i) =>
          post(`${url}/api/chat`, {
            model: "smol",
            messages: [{ role: "user", content: `Say the number ${i}.` }],
            stream: false,
            options: { ...greedy, num_predict: 4 },
          }).then((r) => r.json())
        ),
      );
      assert(answers.every((a) => a.done === true), JSON.stringify(answers));
      assertEquals(logs.filter((l) => l.includes(" loading smol")).length - before, 1);
      assertEquals(daemon.ctx.scheduler.list().length, 1);
    });

    await t.step("a different num_ctx reloads the model with that context", async () => {
      await (await post(`${url}/api/generate`, { model: "smol", options: { num_ctx: 1024 } })).json();
      const p = await ps(url);
      assertEquals(p.length, 1);
      assertEquals(p[0].context_length, 1024);
    });

    // Last: it closes the daemon.
    await t.step("closing the daemon stops its llama-servers", async () => {
      await (await post(`${url}/api/generate`, { model: "smol" })).json();
      const pids = daemon.ctx.scheduler.list().map((r) => r.pid!);
      assert(pids.length === 1 && pidAlive(pids[0]));
      await daemon.close();
      assert(!pidAlive(pids[0]), "llama-server still running after close");
    });
  });
});

Deno.test("daemon: max_loaded_models evicts the least recently used model", async () => {
  const smol = await smolModelPath();
  await withDaemon({
    models: { "a.gguf": smol, "b.gguf": smol },
    config: { daemon: { max_loaded_models: 1 } },
  }, async ({ url }) => {
    await (await post(`${url}/api/generate`, { model: "a" })).json();
    assertEquals((await ps(url)).map((m) => m.name), ["a:latest"]);
    await (await post(`${url}/api/generate`, { model: "b" })).json();
    assertEquals((await ps(url)).map((m) => m.name), ["b:latest"]);
  });
});
