/**
 * `tools` on `/api/chat` for a model that cannot call them is Ollama's 400; an empty list is fine, and a model
 * whose preset gives it a tool-call chat template counts as one that can.
 */
import { assert, assertEquals, assertStringIncludes } from "./_assert.ts";
import { post, TOOLS_TEMPLATE, withDaemon } from "./_daemon.ts";
import { goTemplateToJinja } from "../lib/daemon/ollama/template.ts";
import { type ModelEntry, servedCapabilities, templateHasTools } from "../lib/models/mod.ts";

const tools = [{ type: "function", function: { name: "f", parameters: { type: "object" } } }];
const greedy = { temperature: 0, seed: 1, num_predict: 4 };

Deno.test("daemon: tools for a model without the tools capability", async (t) => {
  await withDaemon({}, async ({ url, daemon }) => {
    await t.step("SmolLM2's own template has no tools: /api/show says so", async () => {
      const show = await (await post(`${url}/api/show`, { model: "smol" })).json();
      assert(!show.capabilities.includes("tools"), JSON.stringify(show.capabilities));
    });

    await t.step("a non-empty tools list is a 400 before anything loads", async () => {
      for (const messages of [[{ role: "user", content: "hi" }], []]) {
        const r = await post(`${url}/api/chat`, { model: "smol", messages, tools, stream: false });
        assertEquals(r.status, 400);
        assertEquals((await r.json()).error, '"smol" does not support tools');
      }
      assertEquals(daemon.ctx.scheduler.list().length, 0);
    });

    await t.step("an empty tools list, as the Python client sends, is fine", async () => {
      const r = await post(`${url}/api/chat`, {
        model: "smol",
        messages: [{ role: "user", content: "hi" }],
        tools: [],
        stream: false,
        options: greedy,
      });
      assertEquals(r.status, 200, await r.clone().text());
      assertEquals((await r.json()).done, true);
    });
  });
});

Deno.test("daemon: a preset's tool-call chat template gives a model tools", async (t) => {
  const config = { presets: { smol: { model: "smol", args: ["--chat-template-file", TOOLS_TEMPLATE] } } };
  await withDaemon({ config }, async ({ url }) => {
    await t.step("/api/show and /api/tags list tools", async () => {
      const show = await (await post(`${url}/api/show`, { model: "smol" })).json();
      assert(show.capabilities.includes("tools"), JSON.stringify(show.capabilities));
      const tags = await (await fetch(`${url}/api/tags`)).json();
      assert(tags.models[0].capabilities.includes("tools"), JSON.stringify(tags.models[0]));
    });

    await t.step("tools with logprobs are refused for llama-server's reason, not the model's", async () => {
      const r = await post(`${url}/api/chat`, {
        model: "smol",
        messages: [{ role: "user", content: "x" }],
        logprobs: true,
        tools,
      });
      assertEquals(r.status, 400);
      assertStringIncludes((await r.json()).error, "leave out logprobs or tools");
    });

    await t.step("a chat with tools answers", async () => {
      const r = await post(`${url}/api/chat`, {
        model: "smol",
        messages: [{ role: "user", content: "hi" }],
        tools,
        stream: false,
        options: greedy,
      });
      assertEquals(r.status, 200, await r.clone().text());
      assertEquals((await r.json()).done, true);
    });
  });
});

Deno.test("servedCapabilities: the template llama-server is given decides tools", async () => {
  const entry = {
    facts: { capabilities: ["completion", "tools"] },
    mmproj: undefined,
  } as unknown as ModelEntry;
  const dir = await Deno.makeTempDir();
  try {
    const plain = `${dir}/plain.jinja`;
    await Deno.writeTextFile(plain, "{% for m in messages %}{{ m.content }}{% endfor %}");
    assertEquals(await servedCapabilities({ entry }), ["completion", "tools"]);
    // A preset's file, or a template /api/create made, replaces the file's own.
    assertEquals(await servedCapabilities({ entry }, { args: ["--chat-template-file", plain] }), [
      "completion",
    ]);
    assertEquals(await servedCapabilities({ entry, settings: { chatTemplateFile: plain } }), ["completion"]);
    // Made from a Go template: tools when it uses .Tools (as Ollama), whatever its translation holds.
    const made = `${dir}/made.jinja`;
    await Deno.writeTextFile(made, goTemplateToJinja("{{ range .Messages }}{{ .Content }}{{ end }}"));
    assert(templateHasTools(await Deno.readTextFile(made)), "the translation has a place for tool calls");
    const go = (template: string) =>
      servedCapabilities({ entry, settings: { chatTemplateFile: made, template } });
    assertEquals(await go("{{ range .Messages }}{{ .Content }}{{ end }}"), ["completion"]);
    assertEquals(await go("{{ if .Tools }}{{ json .Tools }}{{ end }}{{ .Prompt }}"), ["completion", "tools"]);
    assertEquals(
      await servedCapabilities(
        { entry, settings: { chatTemplateFile: made, template: "{{ .Prompt }}" } },
        { args: ["--chat-template-file", TOOLS_TEMPLATE] },
      ),
      ["completion", "tools"],
      "a preset's template wins",
    );
    // The preset's wins over the made one, as the launcher passes it.
    assertEquals(
      await servedCapabilities(
        { entry, settings: { chatTemplateFile: plain } },
        { args: [`--chat-template-file=${TOOLS_TEMPLATE}`] },
      ),
      ["completion", "tools"],
    );
    // A built-in template name says nothing about tools: the file's capability stays.
    assertEquals(await servedCapabilities({ entry }, { args: ["--chat-template", "chatml"] }), [
      "completion",
      "tools",
    ]);
    assert(templateHasTools("{% if tool_calls %}"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
