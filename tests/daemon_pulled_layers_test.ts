/**
 * A model in an Ollama store served with its manifest's layers, as Ollama serves it, against a real daemon and
 * llama-server (SmolLM2): the store is llama-mgr's own pulled store (`<data>/ollama`), written here as `pull`
 * leaves it, with the real GGUF as the model layer and template, params, system, messages and license layers.
 * `/api/show` reports them; a chat uses the template, the system prompt and the default options; a request's
 * own system message and options win; a template without a translation leaves the GGUF's own in charge.
 */
import { join } from "node:path";
import { assert, assertEquals, assertStringIncludes } from "./_assert.ts";
import { sha256File, sha256Hex, smolModelPath } from "./_fixtures.ts";
import { post, runnerFetch, withDaemon } from "./_daemon.ts";
import { listServers } from "../lib/server/mod.ts";
import { resolvePaths } from "../lib/config/paths.ts";

const MT = "application/vnd.ollama.image.";
const TEMPLATE = await Deno.readTextFile(new URL("./templates/chatml.gotmpl", import.meta.url));
const SYSTEM = "You are a pirate who answers every question about the sea in two short sentences.";
const LICENSE = "Apache License 2.0";
const SEEDED = [{ role: "user", content: "Ahoy!" }, { role: "assistant", content: "Ahoy, matey!" }];
const te = new TextEncoder();

interface Layer {
  mediaType: string;
  digest: string;
  size: number;
}

/** Writes `<data>/ollama` as `pull` leaves it: blobs by digest, a manifest per tag of `library/smolpull`. */
async function writeStore(dataDir: string) {
  const store = join(dataDir, "ollama");
  await Deno.mkdir(join(store, "blobs"), { recursive: true });
  const text = async (kind: string, s: string): Promise<Layer> => {
    const bytes = te.encode(s);
    const digest = await sha256Hex(bytes);
    await Deno.writeFile(join(store, "blobs", `sha256-${digest}`), bytes);
    return { mediaType: MT + kind, digest: `sha256:${digest}`, size: bytes.length };
  };
  const smol = await smolModelPath();
  const digest = await sha256File(smol);
  await Deno.symlink(smol, join(store, "blobs", `sha256-${digest}`));
  const model: Layer = {
    mediaType: `${MT}model`,
    digest: `sha256:${digest}`,
    size: (await Deno.stat(smol)).size,
  };
  const tag = async (name: string, layers: Layer[]) => {
    const dir = join(store, "manifests", "registry.ollama.ai", "library", "smolpull");
    await Deno.mkdir(dir, { recursive: true });
    await Deno.writeTextFile(
      join(dir, name),
      JSON.stringify({ schemaVersion: 2, config: { digest: model.digest, size: 1 }, layers }),
    );
  };
  const template = await text("template", TEMPLATE);
  const system = await text("system", SYSTEM);
  const license = await text("license", LICENSE);
  const params = (p: Record<string, unknown>) => text("params", JSON.stringify(p));
  const defaults = { temperature: 0, seed: 42, num_predict: 4 };
  await tag("latest", [model, template, system, await params(defaults), license]);
  await tag("seeded", [
    model,
    template,
    system,
    await params(defaults),
    await text("messages", JSON.stringify(SEEDED)),
  ]);
  // The Go template's own `template` action has no Jinja translation.
  await tag("badtpl", [
    model,
    await text("template", '{{ template "chat" . }}'),
    system,
    await params(defaults),
  ]);
  return {
    /** A tag with the same template and system prompt whose params stop at `word`. */
    stopTag: async (word: string) =>
      await tag("stop", [
        model,
        template,
        system,
        await params({ ...defaults, num_predict: 12, stop: [word] }),
      ]),
  };
}

const QUESTION = [{ role: "user", content: "What is the sea made of?" }];

Deno.test({
  name: "a pulled model is served with its template, params, system, messages and license layers",
  sanitizeResources: false,
  async fn(t) {
    const logs: string[] = [];
    await withDaemon({ logs }, async ({ url, dataDir }) => {
      const store = await writeStore(dataDir);
      const chat = async (model: string, extra: Record<string, unknown> = {}) => {
        const res = await post(`${url}/api/chat`, { model, messages: QUESTION, stream: false, ...extra });
        const body = await res.json();
        assertEquals(res.status, 200, JSON.stringify(body));
        return body;
      };

      await t.step("/api/show reports the layers, the parameters in Ollama's text form", async () => {
        const show = await (await post(`${url}/api/show`, { model: "smolpull" })).json();
        assertEquals(show.template, TEMPLATE);
        assertEquals(show.system, SYSTEM);
        assertEquals(show.license, LICENSE);
        const params = show.parameters.split("\n");
        for (const line of [`${"temperature".padEnd(30)} 0`, `${"num_predict".padEnd(30)} 4`]) {
          assert(params.includes(line), show.parameters);
        }
        assertStringIncludes(show.modelfile, `SYSTEM """${SYSTEM}"""`);
        assertStringIncludes(show.modelfile, `PARAMETER ${"seed".padEnd(30)} 42`);
        // Another tag of the same weights with other layers is a model of its own.
        assertEquals(show.messages, undefined);
        const seeded = await (await post(`${url}/api/show`, { model: "smolpull:seeded" })).json();
        assertEquals(seeded.messages, SEEDED);
        assertEquals(seeded.license, undefined);
      });

      let plain: Record<string, any>;
      await t.step(
        "a chat runs on the translated template with the model's system prompt and options",
        async () => {
          plain = await chat("smolpull");
          assertEquals(plain.done_reason, "length", "num_predict 4 from the params");
          assertEquals(plain.eval_count, 4);
          // The same chat with the model's system prompt given by the request: the same prompt (so the model's was
          // put first, and a request's own system message replaces it), the same answer.
          const own = await chat("smolpull", {
            messages: [{ role: "system", content: SYSTEM }, ...QUESTION],
          });
          assertEquals(own.prompt_eval_count, plain.prompt_eval_count);
          assertEquals(own.message.content, plain.message.content);
          // The seeded messages go before the chat's own.
          const seeded = await chat("smolpull:seeded", { options: { num_predict: 1 } });
          assert(seeded.prompt_eval_count > plain.prompt_eval_count + 8, `${seeded.prompt_eval_count}`);
          const server = (await listServers(resolvePaths({ dataDir, env: {} }))).find((s) =>
            s.state === "ready"
          );
          assert(server, "a llama-server runs");
          const props = await (await runnerFetch(server.url!, "/props")).json();
          assertStringIncludes(props.chat_template, '{{- "<|im_start|>" -}}', "the translated Go template");
        },
      );

      let longer: Record<string, any>;
      await t.step("a request's options win over the params; generate and /v1 take them too", async () => {
        longer = await chat("smolpull", { options: { num_predict: 12 } });
        assert(longer.eval_count > 4, JSON.stringify(longer));
        assert(longer.message.content.startsWith(plain.message.content), longer.message.content);
        // /api/generate builds the same prompt from the model's system prompt and takes the same defaults.
        const gen = await (await post(`${url}/api/generate`, {
          model: "smolpull",
          prompt: QUESTION[0].content,
          stream: false,
        })).json();
        assertEquals(gen.prompt_eval_count, plain.prompt_eval_count);
        assertEquals([gen.eval_count, gen.response], [4, plain.message.content]);
        // OpenAI's endpoint takes the same defaults.
        const v1 = await (await post(`${url}/v1/chat/completions`, { model: "smolpull", messages: QUESTION }))
          .json();
        assertEquals(v1.choices[0].finish_reason, "length");
        assertEquals(v1.usage.completion_tokens, 4);
      });

      await t.step("a stop in the params ends the answer there", async () => {
        const text = longer.message.content as string;
        const words = text.slice(plain.message.content.length).split(/\s+/).filter((w) => w.length >= 3);
        const word = words.find((w) => text.indexOf(w) >= plain.message.content.length);
        assert(word, `no word to stop at in ${JSON.stringify(text)}`);
        await store.stopTag(word);
        const stopped = await chat("smolpull:stop");
        assertEquals(stopped.done_reason, "stop", JSON.stringify(stopped));
        assertEquals(stopped.message.content, text.slice(0, text.indexOf(word)));
      });

      await t.step(
        "a template without a translation: the GGUF's own template serves, and the log says why",
        async () => {
          const show = await (await post(`${url}/api/show`, { model: "smolpull:badtpl" })).json();
          assertEquals(show.template, '{{ template "chat" . }}');
          const answer = await chat("smolpull:badtpl");
          assertEquals(answer.eval_count, 4);
          const line = logs.find((l) => l.includes("smolpull:badtpl") && l.includes("TEMPLATE is not used"));
          assert(line, logs.join("\n"));
          assertStringIncludes(line, "{{ template }}");
        },
      );
    });
  },
});
