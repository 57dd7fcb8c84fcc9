/**
 * The names the daemon manages, against a real model: `/api/copy` and `/api/delete` (never another tool's
 * files), blobs with their digest checks, and `/api/create` (a system prompt and parameters on a new name, over
 * an existing name, from an uploaded GGUF with its projector, and the refusals that leave nothing behind).
 */
import { join } from "node:path";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./_assert.ts";
import { post, readNdjson, withDaemon } from "./_daemon.ts";
import {
  ChatResponseSchema,
  GenerateResponseSchema,
  ListResponseSchema,
  ShowResponseSchema,
} from "../lib/daemon/types.ts";
import { sha256Hex, smolModelPath } from "./_fixtures.ts";

const greedy = { temperature: 0, top_k: 1, seed: 42 };

/** A GGUF (v3) holding only these metadata keys (strings and unsigned 16-bit numbers) and no tensors. */
function tinyGguf(kv: Record<string, string | number>): Uint8Array<ArrayBuffer> {
  const enc = new TextEncoder();
  const parts: number[] = [];
  const u32 = (v: number) => parts.push(v & 255, (v >> 8) & 255, (v >> 16) & 255, (v >>> 24) & 255);
  const u64 = (v: number) => (u32(v), u32(0));
  const str = (t: string) => {
    const b = enc.encode(t);
    u64(b.length);
    parts.push(...b);
  };
  parts.push(...enc.encode("GGUF"));
  u32(3);
  u64(0);
  u64(Object.keys(kv).length);
  for (const [k, v] of Object.entries(kv)) {
    str(k);
    if (typeof v === "string") (u32(8), str(v));
    else (u32(2), parts.push(v & 255, (v >> 8) & 255));
  }
  return new Uint8Array(parts);
}

Deno.test("daemon: copy, delete, blobs and create", async (t) => {
  await withDaemon({}, async ({ url, dataDir }) => {
    await t.step("/api/copy makes a name, /api/delete removes it; bad names 400, unknown 404", async () => {
      const c = await post(`${url}/api/copy`, { source: "smol", destination: "mine:v1" });
      assertEquals(c.status, 200);
      assertEquals(await c.text(), "");
      const tags = ListResponseSchema.parse(await (await fetch(`${url}/api/tags`)).json());
      assert(tags.models.some((m) => m.name === "mine:v1"));
      assertEquals((await post(`${url}/api/copy`, { source: "smol", destination: "bad name!" })).status, 400);
      assertEquals((await post(`${url}/api/copy`, { source: "nope", destination: "x" })).status, 404);
      const d = await fetch(`${url}/api/delete`, {
        method: "DELETE",
        body: JSON.stringify({ model: "mine:v1" }),
      });
      assertEquals(d.status, 200);
      await d.body?.cancel();
      const again = await fetch(`${url}/api/delete`, {
        method: "DELETE",
        body: JSON.stringify({ name: "mine:v1" }),
      });
      assertEquals(again.status, 404);
      await again.body?.cancel();
      const foreign = await fetch(`${url}/api/delete`, {
        method: "DELETE",
        body: JSON.stringify({ model: "smol" }),
      });
      assertEquals(foreign.status, 403);
      assertStringIncludes((await foreign.json()).error, "does not delete another tool's files");
      assert(await Deno.stat(await smolModelPath()).then(() => true));
    });

    await t.step(
      "blobs: malformed digest 400, absent 404, mismatch 400, upload 201, then present",
      async () => {
        const data = new TextEncoder().encode("llama-mgr blob test");
        const hex = await sha256Hex(data);
        const digest = `sha256:${hex}`;
        const head = (d: string) => fetch(`${url}/api/blobs/${d}`, { method: "HEAD" }).then((r) => r.status);
        assertEquals(await head("sha256:..%2F..%2Fetc%2Fpasswd"), 400);
        assertEquals(await head(digest), 404);
        const bad = await fetch(`${url}/api/blobs/${digest}`, { method: "POST", body: "something else" });
        assertEquals(bad.status, 400);
        assertStringIncludes((await bad.json()).error, "digest mismatch");
        assertEquals(await head(digest), 404);
        const ok = await fetch(`${url}/api/blobs/${digest}`, { method: "POST", body: data });
        assertEquals(ok.status, 201);
        await ok.body?.cancel();
        assertEquals(await head(digest), 200);
        const twice = await fetch(`${url}/api/blobs/${digest}`, { method: "POST", body: data });
        assertEquals(twice.status, 200);
        await twice.body?.cancel();
      },
    );

    await t.step(
      "/api/create: a system prompt and parameters on a new name, from a model or from an uploaded GGUF",
      async () => {
        const chat = async (model: string, messages: unknown[], options?: unknown) =>
          ChatResponseSchema.parse(
            await (await post(`${url}/api/chat`, { model, messages, stream: false, options })).json(),
          );
        const system = "You are a pirate. Answer like a pirate.";
        const question = { role: "user", content: "Who are you?" };
        const made = await post(`${url}/api/create`, {
          model: "pirate",
          from: "smol",
          system,
          parameters: { ...greedy, num_predict: 6 },
        });
        assertEquals(made.status, 200);
        assertEquals((await readNdjson(made)).at(-1), { status: "success" });

        // The name answers as the model does with that system prompt and those options given by the request.
        const pirate = await chat("pirate", [question]);
        const same = await chat("smol", [{ role: "system", content: system }, question], {
          ...greedy,
          num_predict: 6,
        });
        assertEquals(pirate.message.content, same.message.content);
        assertEquals(pirate.eval_count, 6);
        const plain = await chat("smol", [question], { ...greedy, num_predict: 6 });
        assert(plain.message.content !== pirate.message.content, "the system prompt made no difference");
        // A request's own system message and options win.
        const own = [{ role: "system", content: "You are a cat." }, question];
        assertEquals(
          (await chat("pirate", own, { num_predict: 3 })).message.content,
          (await chat("smol", own, { ...greedy, num_predict: 3 })).message.content,
        );
        // generate and the OpenAI endpoint use them too.
        const gen = async (model: string, extra: Record<string, unknown>) =>
          GenerateResponseSchema.parse(
            await (await post(`${url}/api/generate`, {
              model,
              prompt: "Who are you?",
              stream: false,
              ...extra,
            }))
              .json(),
          ).response;
        assertEquals(
          await gen("pirate", {}),
          await gen("smol", { system, options: { ...greedy, num_predict: 6 } }),
        );
        const v1 = await (await post(`${url}/v1/chat/completions`, { model: "pirate", messages: [question] }))
          .json();
        assertEquals(v1.choices[0].message.content, pirate.message.content);

        const show = ShowResponseSchema.parse(
          await (await post(`${url}/api/show`, { model: "pirate" })).json(),
        );
        assertEquals(show.system, system);
        assertMatch(show.parameters ?? "", /^num_predict {20}6$/m); // Ollama's layout: the key padded to 30
        assertStringIncludes(show.modelfile ?? "", `SYSTEM """${system}"""`);

        // Built on it: the system prompt carries over, parameters merge; a copy keeps them.
        await (await post(`${url}/api/create`, {
          model: "pirate2",
          from: "pirate",
          parameters: { num_predict: 3 },
        }))
          .body?.cancel();
        const p2 = await chat("pirate2", [question]);
        assertEquals(p2.eval_count, 3);
        assert(
          pirate.message.content.startsWith(p2.message.content),
          `${p2.message.content} / ${pirate.message.content}`,
        );
        await (await post(`${url}/api/copy`, { source: "pirate", destination: "pirate-copy" })).body
          ?.cancel();
        assertEquals((await chat("pirate-copy", [question])).message.content, pirate.message.content);

        // Made over an existing name, the name is the created model's until it is deleted.
        await (await post(`${url}/api/create`, { model: "smol", from: "smol", system })).body?.cancel();
        const smolTags = async () =>
          ListResponseSchema.parse(await (await fetch(`${url}/api/tags`)).json()).models.filter((m) =>
            m.name === "smol:latest"
          ).length;
        assertEquals(await smolTags(), 1);
        assertEquals(
          (await chat("smol", [question], { ...greedy, num_predict: 6 })).message.content,
          pirate.message.content,
        );
        const unmade = await fetch(`${url}/api/delete`, {
          method: "DELETE",
          body: JSON.stringify({ model: "smol" }),
        });
        assertEquals(unmade.status, 200);
        await unmade.body?.cancel();
        assertEquals(await smolTags(), 1);
        assertEquals(
          (await chat("smol", [question], { ...greedy, num_predict: 6 })).message.content,
          plain.message.content,
        );
        assert(await Deno.stat(await smolModelPath()).then(() => true), "the model file was deleted");

        // From an uploaded GGUF, as `ollama create` sends `FROM ./model.gguf`: the blob, then files.
        const bytes = await Deno.readFile(await smolModelPath());
        const hex = await sha256Hex(bytes);
        const digest = `sha256:${hex}`;
        assertEquals(
          (await fetch(`${url}/api/blobs/${digest}`, { method: "POST", body: bytes })).status,
          201,
        );
        const up = await post(`${url}/api/create`, {
          model: "team/uploaded:v1",
          files: { "smol.gguf": digest },
          messages: [{ role: "user", content: "Remember: the password is swordfish." }, {
            role: "assistant",
            content: "Understood.",
          }],
          stream: false,
        });
        assertEquals(up.status, 200, await up.clone().text());
        assertEquals(await up.json(), { status: "success" });
        const tags = ListResponseSchema.parse(await (await fetch(`${url}/api/tags`)).json());
        const listed = tags.models.find((m) => m.name === "team/uploaded:v1");
        assertEquals(listed?.size, bytes.length);
        const withHistory = await chat("team/uploaded:v1", [question], { ...greedy, num_predict: 5 });
        const history = [
          { role: "user", content: "Remember: the password is swordfish." },
          { role: "assistant", content: "Understood." },
          question,
        ];
        assertEquals(
          withHistory.message.content,
          (await chat("smol", history, { ...greedy, num_predict: 5 })).message.content,
        );
        const upShow = await (await post(`${url}/api/show`, { model: "team/uploaded:v1" })).json();
        assertEquals(upShow.messages.length, 2);
        // A model and its vision projector, uploaded together: show gives the projector's metadata.
        const projector = tinyGguf({ "general.architecture": "clip", "general.type": "mmproj" });
        const projectorHex = await sha256Hex(projector);
        await (await fetch(`${url}/api/blobs/sha256:${projectorHex}`, { method: "POST", body: projector }))
          .body
          ?.cancel();
        const seeing = await post(`${url}/api/create`, {
          model: "team/seeing",
          files: { "model.gguf": digest, "mmproj.gguf": `sha256:${projectorHex}` },
          stream: false,
        });
        assertEquals(seeing.status, 200, await seeing.clone().text());
        await seeing.body?.cancel();
        const seeingShow = ShowResponseSchema.parse(
          await (await post(`${url}/api/show`, { model: "team/seeing" })).json(),
        );
        assertEquals(seeingShow.projector_info?.["general.architecture"], "clip");
        assert(seeingShow.capabilities?.includes("vision"), JSON.stringify(seeingShow.capabilities));
        // A blob goes with the last name that uses it.
        const blob = join(dataDir, "daemon", "blobs", `sha256-${hex}`);
        const projectorBlob = join(dataDir, "daemon", "blobs", `sha256-${projectorHex}`);
        const present = (path: string) => Deno.stat(path).then(() => true, () => false);
        const remove = async (model: string) => {
          const r = await fetch(`${url}/api/delete`, { method: "DELETE", body: JSON.stringify({ model }) });
          assertEquals(r.status, 200);
          await r.body?.cancel();
        };
        await remove("team/uploaded:v1");
        assertEquals([await present(blob), await present(projectorBlob)], [true, true]);
        await remove("team/seeing");
        assertEquals([await present(blob), await present(projectorBlob)], [false, false]);
        assertEquals(
          (await post(`${url}/api/chat`, { model: "team/uploaded:v1", messages: [question] })).status,
          404,
        );

        // Refusals that say what was wrong, leaving nothing behind.
        const text = new TextEncoder().encode("not a model");
        const textHex = await sha256Hex(text);
        await (await fetch(`${url}/api/blobs/sha256:${textHex}`, { method: "POST", body: text })).body
          ?.cancel();
        // One part of a split model (a GGUF header with split.count 2): its parts cannot sit in the blob store.
        const part = tinyGguf({ "general.architecture": "llama", "split.count": 2 });
        const partHex = await sha256Hex(part);
        await (await fetch(`${url}/api/blobs/sha256:${partHex}`, { method: "POST", body: part })).body
          ?.cancel();
        const cases: [unknown, string][] = [
          [
            { model: "x", files: { "m-00001-of-00002.gguf": `sha256:${partHex}` } },
            "one part of a model split in 2",
          ],
          [{ model: "x" }, "neither 'from' or 'files' was specified"],
          [{ model: "x", from: "smol", parameters: { temprature: 1 } }, 'unknown parameter "temprature"'],
          [
            { model: "x", from: "smol", parameters: { top_k: 1.5 } },
            'parameter "top_k" must be of type integer',
          ],
          [{ model: "x", from: "smol", template: "{{ with .System }}{{ . }}{{ end }}" }, "{{ with }}"],
          [
            { model: "x", from: "smol", quantize: "q4_K_M" },
            "quantization is only supported for F16, BF16 and F32 models",
          ],
          [{ model: "x", files: { "a.gguf": `sha256:${"a".repeat(64)}` } }, "upload it first"],
          [{ model: "x", files: { "../a.gguf": digest } }, "file path must be relative"],
          [{ model: "x", files: { "a.gguf": `sha256:${textHex}` } }, "not in GGUF format"],
          [{ model: "bad name!", from: "smol" }, "invalid model name"],
        ];
        for (const [body, message] of cases) {
          const r = await post(`${url}/api/create`, body);
          assertEquals(r.status, 400, JSON.stringify(body));
          assertStringIncludes((await r.json()).error, message);
        }
        assertEquals((await post(`${url}/api/create`, { model: "x", from: "nope" })).status, 404);
        const names = JSON.parse(await Deno.readTextFile(join(dataDir, "daemon", "names.json"))).names;
        assertEquals(Object.keys(names).sort(), ["pirate-copy:latest", "pirate2:latest", "pirate:latest"]);
        for (const n of ["pirate", "pirate2", "pirate-copy"]) {
          await (await fetch(`${url}/api/delete`, { method: "DELETE", body: JSON.stringify({ model: n }) }))
            .body
            ?.cancel();
        }
      },
    );
  });
});
