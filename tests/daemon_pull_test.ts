/**
 * Pulling as users do it, against an Ollama registry served inside the test: the real npm `ollama` client's
 * `pull` through the daemon (Ollama's progress lines, then the model answers through the daemon), a pull of a
 * model that is here already verifying its blob for real (and finding a damaged one), an unknown tag as a last
 * `{"error"}` line, and `llama-mgr pull` on the command line.
 */
import { Ollama } from "ollama";
import { assert, assertEquals, assertStringIncludes } from "./_assert.ts";
import { smolModelPath } from "./_fixtures.ts";
import { Registry } from "./_registry.ts";
import { cliWorld, post, readNdjson, withDaemon } from "./_daemon.ts";

const te = new TextEncoder();
const MT = "application/vnd.ollama.image.";

async function registry(): Promise<Registry> {
  const r = new Registry();
  await r.publish("library/smol:latest", [
    { mediaType: `${MT}model`, bytes: await Deno.readFile(await smolModelPath()) },
    { mediaType: `${MT}system`, bytes: te.encode("You are a small, helpful assistant.") },
    // Its default options, as Ollama's library models carry them: answers stay short.
    { mediaType: `${MT}params`, bytes: te.encode(JSON.stringify({ num_predict: 48 })) },
  ]);
  return r;
}

Deno.test({
  name: "daemon: /api/pull pulls from a registry with Ollama's progress lines, then the model answers",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const reg = await registry();
    try {
      await withDaemon({}, async ({ url, dataDir }) => {
        const name = `${reg.host}/library/smol:latest`;
        await t.step("the npm ollama client's pull streams progress and ends in success", async () => {
          const client = new Ollama({ host: url });
          const statuses: string[] = [];
          let sawBytes = false;
          for await (const p of await client.pull({ model: name, insecure: true, stream: true })) {
            if (!statuses.includes(p.status)) statuses.push(p.status);
            if (p.total && p.completed) sawBytes = true;
          }
          assertEquals(statuses[0], "pulling manifest");
          assert(statuses.some((s) => /^pulling [0-9a-f]{12}$/.test(s)), statuses.join(", "));
          assertEquals(statuses.slice(-3), ["verifying sha256 digest", "writing manifest", "success"]);
          assert(sawBytes, "no progress with total and completed");
          const tags = await client.list();
          assert(tags.models.some((m) => m.name.toLowerCase() === name.toLowerCase()), JSON.stringify(tags));
          const answer = await client.generate({
            model: name,
            prompt: "Say hi",
            options: { num_predict: 4 },
          });
          assert(answer.done);
          assert((answer.response ?? "").length > 0, JSON.stringify(answer));
        });

        await t.step("pulling it again verifies what is on disk, and finds a damaged blob", async () => {
          const again = await readNdjson(await post(`${url}/api/pull`, { model: name, insecure: true }));
          assertEquals(again.map((l) => l.status), ["verifying sha256 digest", "success"]);
          // Damage the model blob in the store: the next pull says so instead of "success".
          const blobs = `${dataDir}/ollama/blobs`;
          let biggest = "";
          let size = 0;
          for await (const e of Deno.readDir(blobs)) {
            const s = (await Deno.stat(`${blobs}/${e.name}`)).size;
            if (s > size) [biggest, size] = [e.name, s];
          }
          const f = await Deno.open(`${blobs}/${biggest}`, { write: true });
          await f.seek(size - 1, Deno.SeekMode.Start);
          await f.write(new Uint8Array([0x5a]));
          f.close();
          const damaged = await readNdjson(await post(`${url}/api/pull`, { model: name, insecure: true }));
          const last = damaged[damaged.length - 1];
          assertStringIncludes(String(last.error), "is damaged");
          const whole = await post(`${url}/api/pull`, { model: name, insecure: true, stream: false });
          assertEquals(whole.status, 500);
        });

        await t.step(
          "deleting a pulled model removes its manifest and the blobs nothing else uses",
          async () => {
            const copy = await post(`${url}/api/copy`, { source: name, destination: "kept" });
            assertEquals(copy.status, 200);
            const del = await fetch(`${url}/api/delete`, {
              method: "DELETE",
              body: JSON.stringify({ model: name }),
            });
            assertEquals(del.status, 200, await del.text());
            const tags = await (await fetch(`${url}/api/tags`)).json();
            const names = tags.models.map((m: { name: string }) => m.name);
            assert(!names.includes(name.toLowerCase()), names.join(", "));
            assertEquals(await Array.fromAsync(Deno.readDir(`${dataDir}/ollama/manifests`)), []);
            // The copy stands on the model blob, which stays; the system prompt's and params' blobs go.
            const left = (await Array.fromAsync(Deno.readDir(`${dataDir}/ollama/blobs`))).map((e) => e.name);
            assertEquals(left.length, 1, left.join(", "));
            assert(names.includes("kept:latest"), names.join(", "));
            // The copy was the last user of the model blob: deleting it prunes the blob.
            const delCopy = await fetch(`${url}/api/delete`, {
              method: "DELETE",
              body: JSON.stringify({ model: "kept" }),
            });
            assertEquals(delCopy.status, 200, await delCopy.text());
            assertEquals(await Array.fromAsync(Deno.readDir(`${dataDir}/ollama/blobs`)), []);
          },
        );

        await t.step("an unknown tag ends the stream with an error line; stream false is a 404", async () => {
          const lines = await readNdjson(
            await post(`${url}/api/pull`, { model: `${reg.host}/library/smol:nope`, insecure: true }),
          );
          assertEquals(lines[0].status, "pulling manifest");
          assertStringIncludes(String(lines[lines.length - 1].error), "not found");
          const res = await post(`${url}/api/pull`, {
            model: `${reg.host}/library/smol:nope`,
            insecure: true,
            stream: false,
          });
          assertEquals(res.status, 404);
          const bad = await post(`${url}/api/pull`, { model: "../../etc/passwd" });
          assertEquals(bad.status, 400);
        });
      });
    } finally {
      await reg.close();
    }
  },
});

Deno.test({
  name: "llama-mgr pull gets a model from a registry; without --insecure an http registry is refused",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const reg = await registry();
    const w = await cliWorld();
    try {
      const run = (...args: string[]) => w.run(args);
      const name = `${reg.host}/library/smol:latest`;
      const refused = await run("pull", name);
      assertEquals(refused.code, 1);
      assertStringIncludes(refused.stderr, "--insecure");
      const pulled = await run("pull", "--insecure", name);
      assertEquals(pulled.code, 0, pulled.stderr);
      assertStringIncludes(pulled.stdout, `pulled ${name.toLowerCase()}`);
      assertStringIncludes(pulled.stderr, "pulling manifest");
      assertStringIncludes(pulled.stderr, "success");
      const again = await run("pull", "--insecure", name);
      assertStringIncludes(again.stdout, "up to date");
      const models = await run("models", "--json");
      assertEquals(models.code, 0, models.stderr);
      assertStringIncludes(models.stdout, name.toLowerCase());
    } finally {
      await w.close();
      await reg.close();
    }
  },
});

Deno.test({
  name: "llama-mgr run of a model the daemon lacks pulls it through the daemon, then answers",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const reg = await registry();
    const w = await cliWorld();
    try {
      const name = `${reg.host}/library/smol:latest`;
      const r = await w.run(["run", "--insecure", name, "Say hi"]);
      assertEquals(r.code, 0, r.stderr);
      assertStringIncludes(r.stderr, `pulling ${name}`);
      assertStringIncludes(r.stderr, "success");
      assert(r.stdout.trim().length > 0, "no answer");
      const tags = await (await fetch(`${w.url}/api/tags`)).json();
      assert(tags.models.some((m: { name: string }) => m.name === name.toLowerCase()), JSON.stringify(tags));
    } finally {
      await w.close();
      await reg.close();
    }
  },
});
