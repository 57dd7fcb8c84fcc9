/**
 * Ollama's command-line verbs as a user runs them (the CLI in a subprocess, OLLAMA_HOST set, a real
 * llama-server and model): the first verb starts a daemon in the background, then list, show (and its parts),
 * cp, ps, stop, rm, with tables by default, JSON with --json, and a hint naming the closest model on a miss.
 */
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./_assert.ts";
import { cliWorld } from "./_daemon.ts";
import { pidAlive } from "../lib/util/process.ts";

const MODEL = "smollm2:135m-q4_1";

Deno.test({
  name: "list, show, cp, ps, stop and rm work against a daemon started in the background",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const w = await cliWorld({ smol: true });
    const { url } = w;
    const run = (...args: string[]) => w.run(args);
    let daemonPid: number | undefined;
    try {
      // Nothing runs yet: ps shows an empty table without starting a daemon; stop says nothing runs.
      const ps0 = await run("ps");
      assertEquals(ps0.code, 0, ps0.stderr);
      assertEquals(ps0.stdout.trim().split("\n").length, 1, ps0.stdout);
      assert(!(await fetch(url).then(() => true, () => false)), "ps started a daemon");
      const stop0 = await run("stop", MODEL);
      assertEquals(stop0.code, 1);
      assertStringIncludes(stop0.stderr, `couldn't find model "${MODEL}" to stop`);

      const list = await run("list");
      assertEquals(list.code, 0, list.stderr);
      assertStringIncludes(list.stderr, `starting a daemon at ${url}`);
      assertMatch(list.stdout, /^NAME\s+ID\s+SIZE\s+MODIFIED\n/);
      assertMatch(list.stdout, new RegExp(`\\n${MODEL}\\s+([0-9a-f]{12}\\s+)?\\d+ MB\\s+\\S`));
      // The ID is the content's digest, hashed in the background once the daemon sees the file: it shows soon.
      let listed = list.stdout;
      for (let i = 0; i < 100 && !new RegExp(`\\n${MODEL}\\s+[0-9a-f]{12}\\s`).test(listed); i++) {
        await new Promise((r) => setTimeout(r, 200));
        listed = (await run("list")).stdout;
      }
      assertMatch(listed, new RegExp(`\\n${MODEL}\\s+[0-9a-f]{12}\\s+\\d+ MB\\s+\\S`));
      assertEquals(await (await fetch(url)).text(), "Ollama is running");
      const running = await (await fetch(`${url}/api/version`)).json();
      assert(running.version, "the daemon does not answer /api/version");

      const json = JSON.parse((await run("list", "--json")).stdout);
      assertEquals(json.map((m: { name: string }) => m.name), [MODEL]);

      const show = await run("show", MODEL);
      assertEquals(show.code, 0, show.stderr);
      assertMatch(show.stdout, /architecture\s+llama/);
      assertMatch(show.stdout, /parameters\s+135M/);
      assertMatch(show.stdout, /context length\s+8192/);
      assertMatch(show.stdout, /quantization\s+Q4_1/);
      assertStringIncludes(show.stdout, "Capabilities");
      const modelfile = await run("show", MODEL, "--modelfile");
      assertStringIncludes(modelfile.stdout, "FROM ");
      const template = await run("show", MODEL, "--template");
      assertStringIncludes(template.stdout, "im_start");

      const miss = await run("show", "smollm2");
      assertEquals(miss.code, 1);
      assertStringIncludes(miss.stderr, "model 'smollm2' not found");
      assertStringIncludes(miss.stderr, `did you mean '${MODEL}'`);

      const cp = await run("cp", MODEL, "mine");
      assertEquals(cp.code, 0, cp.stderr);
      assertEquals(cp.stdout.trim(), `copied '${MODEL}' to 'mine'`);
      assertStringIncludes((await run("list")).stdout, "mine:latest");

      // Load the copy, then ps lists it and stop unloads it.
      const gen = await fetch(`${url}/api/generate`, {
        method: "POST",
        body: JSON.stringify({ model: "mine", prompt: "Hi", stream: false, options: { num_predict: 2 } }),
      });
      assertEquals(gen.status, 200);
      await gen.body?.cancel();
      const ps = await run("ps");
      assertMatch(ps.stdout, /^NAME\s+ID\s+SIZE\s+PROCESSOR\s+DEVICE\s+SLOTS\s+CONTEXT\s+UNTIL\n/);
      assertMatch(
        ps.stdout,
        /\nmine:latest\s+[0-9a-f]{12}\s+\d+ MB\s+100% CPU\s+CPU\s+0\/4\s+4096\s+4 minutes from now/,
      );
      // The device budgets and the queue, under the table.
      assertMatch(ps.stdout, /\nqueue: 0 waiting; memory: CPU \d+ MB of \d+(\.\d)? GB\n/);
      const stop = await run("stop", "mine");
      assertEquals(stop.code, 0, stop.stderr);
      const after = await (await fetch(`${url}/api/ps`)).json();
      assertEquals(after.models, []);

      const rm = await run("rm", "mine");
      assertEquals(rm.code, 0, rm.stderr);
      assertEquals(rm.stdout.trim(), "deleted 'mine'");
      const rmAgain = await run("rm", "mine");
      assertEquals(rmAgain.code, 1);
      assertStringIncludes(rmAgain.stderr, "model 'mine' not found");
      // The index's own model belongs to a folder of the user's: rm refuses it, naming the store.
      const rmFile = await run("rm", MODEL);
      assertEquals(rmFile.code, 1);
      assertStringIncludes(rmFile.stderr, "does not delete another tool's files");

      const usage = await run("cp", MODEL);
      assertEquals(usage.code, 1);
      assertStringIncludes(usage.stderr, "cp needs a source and a destination");

      // The daemon was started in a session of its own and outlives the commands; find it to stop it.
      const pids = await w.daemonPids();
      daemonPid = pids[0];
      assert(pids.length === 1 && pidAlive(daemonPid), `not one daemon process (${pids.join(",")})`);
    } finally {
      if (daemonPid) {
        Deno.kill(daemonPid, "SIGTERM");
        for (let i = 0; i < 100 && pidAlive(daemonPid); i++) await new Promise((r) => setTimeout(r, 100));
      }
      await w.close();
    }
    assert(!daemonPid || !pidAlive(daemonPid), "the daemon did not stop on SIGTERM");
  },
});
