/**
 * An Ollama manifest's layers read into a model's settings: what Ollama would not accept is left out with a
 * warning that names it, and never fails the model.
 */
import { join } from "node:path";
import { assert, assertEquals, assertStringIncludes } from "./_assert.ts";
import { tempDir } from "./_fixtures.ts";
import { ollamaLayerSettings } from "../lib/daemon/ollama/layers.ts";
import type { ModelEntry } from "../lib/models/mod.ts";

const CHATML = await Deno.readTextFile(new URL("./templates/chatml.gotmpl", import.meta.url));

Deno.test("layers: good ones become settings, bad ones are left out with a warning naming them", async () => {
  const dir = await tempDir();
  try {
    const file = async (name: string, text: string) => {
      await Deno.writeTextFile(join(dir.path, name), text);
      return join(dir.path, name);
    };
    const warnings: string[] = [];
    const settingsOf = ollamaLayerSettings({
      templatesDir: join(dir.path, "templates"),
      warn: (l) => warnings.push(l),
    });
    const entry = (name: string, layers: ModelEntry["ollamaLayers"]) =>
      ({ name, ollamaLayers: layers }) as ModelEntry;

    const good = entry("good:latest", {
      template: await file("t", CHATML),
      params: await file(
        "p",
        JSON.stringify({ temperature: 0.5, stop: ["<|im_end|>"], no_such_option: 1, num_ctx: "big" }),
      ),
      system: await file("s", "Be brief."),
      messages: await file("m", JSON.stringify([{ role: "user", content: "hi" }, "junk"])),
      license: [await file("l1", "MIT"), await file("l2", "Apache-2.0")],
    });
    const s = (await settingsOf(good))!;
    assertEquals(s.system, "Be brief.");
    assertEquals(s.parameters, { temperature: 0.5, stop: ["<|im_end|>"] });
    assertEquals(s.messages, [{ role: "user", content: "hi" }]);
    assertEquals(s.license, ["MIT", "Apache-2.0"]);
    assertEquals(s.template, CHATML);
    assertStringIncludes(await Deno.readTextFile(s.chatTemplateFile!), "<|im_start|>");
    assertEquals(warnings.length, 2, warnings.join("\n"));
    assert(
      warnings.some((w) => w.includes("good:latest") && w.includes("no_such_option")),
      warnings.join("\n"),
    );
    assert(warnings.some((w) => w.includes("num_ctx")), warnings.join("\n"));
    // Read once: the blobs are named by their content.
    assert((await settingsOf(good)) === s);

    warnings.length = 0;
    const bad = await settingsOf(entry("bad:latest", {
      template: await file("t2", '{{ template "x" . }}'),
      params: await file("p2", "not json"),
      system: join(dir.path, "missing"),
    }));
    assertEquals(bad?.template, '{{ template "x" . }}');
    assertEquals(bad?.chatTemplateFile, undefined);
    assertEquals(bad?.parameters, undefined);
    assertEquals(bad?.system, undefined);
    assertEquals(warnings.length, 3, warnings.join("\n"));
    assert(
      warnings.some((w) => w.includes("TEMPLATE is not used") && w.includes("{{ template }}")),
      warnings.join("\n"),
    );
    assert(warnings.some((w) => w.includes("not JSON")), warnings.join("\n"));
    assert(warnings.some((w) => w.includes("cannot be read")), warnings.join("\n"));
    assertEquals(await settingsOf(entry("plain:latest", undefined)), undefined);
  } finally {
    await dir.cleanup();
  }
});

Deno.test("layers: a GGUF template that can do more than the Go one is served instead, as Ollama chooses", async () => {
  const dir = await tempDir();
  try {
    const warnings: string[] = [];
    const settingsOf = ollamaLayerSettings({
      templatesDir: join(dir.path, "templates"),
      warn: (l) => warnings.push(l),
    });
    const withTemplates = async (name: string, go: string, jinja: string) => {
      await Deno.writeTextFile(join(dir.path, name), go);
      const entry = {
        name,
        ollamaLayers: { template: join(dir.path, name) },
        facts: { chatTemplate: jinja },
      };
      return (await settingsOf(entry as unknown as ModelEntry))!;
    };
    const toolsJinja =
      "{% if tools %}{{ tools | tojson }}{% endif %}{% for m in messages %}{{ m.content }}{% endfor %}";
    // More (tools) in the GGUF's: the GGUF's serves; /api/show still reports the Go template.
    const more = await withTemplates("more", CHATML, toolsJinja);
    assertEquals(more.template, CHATML);
    assertEquals(more.chatTemplateFile, undefined);
    // The same: the Go template serves.
    const same = await withTemplates("same", CHATML, "{% for m in messages %}{{ m.content }}{% endfor %}");
    assert(same.chatTemplateFile, "the translated Go template");
    // Both with tools, only the GGUF's writes tool results back: the GGUF's.
    const goTools = "{{ if .Tools }}{{ json .Tools }}{{ end }}" + CHATML;
    const roundTrip = await withTemplates(
      "roundtrip",
      goTools,
      toolsJinja +
        "{% if m.tool_calls %}{% endif %}{% if message.role == 'tool' %}<tool_response>{% endif %}",
    );
    assertEquals(roundTrip.chatTemplateFile, undefined);
    const goWins = await withTemplates("gowins", goTools, toolsJinja);
    assert(goWins.chatTemplateFile, "same capabilities, no round trip in either: the Go template");
    assertEquals(warnings, []);
  } finally {
    await dir.cleanup();
  }
});
