/**
 * `/api/generate` with the request's own `template` (an Ollama Go template), through the npm `ollama` client,
 * against a real llama-server and SmolLM2: the template, not the model's chat template, makes the prompt;
 * a template that cannot be used is a 400 naming the construct; `raw` with a template is refused as Ollama
 * refuses it.
 */
import { Ollama } from "ollama";
import { assert, assertEquals, assertRejects, assertStringIncludes } from "./_assert.ts";
import { runnerFetch, withDaemon } from "./_daemon.ts";

const greedy = { temperature: 0, top_k: 1, seed: 42, num_predict: 12 };
const TEMPLATE = "{{ if .System }}### System: {{ .System }}\n{{ end }}### Question: {{ .Prompt }}\n" +
  "### Answer:{{ .Response }}";
/** What Go's text/template makes of TEMPLATE with system "Be brief." and prompt "What is 2+2?". */
const RENDERED = "### System: Be brief.\n### Question: What is 2+2?\n### Answer:";

Deno.test("daemon: /api/generate renders the request's own Go template", async (t) => {
  await withDaemon({}, async ({ url, daemon }) => {
    const ollama = new Ollama({ host: url });

    await t.step("the answer is the answer to the text the template makes, sent as written", async () => {
      const templated = await ollama.generate({
        model: "smol",
        prompt: "What is 2+2?",
        system: "Be brief.",
        template: TEMPLATE,
        options: greedy,
      });
      const raw = await ollama.generate({ model: "smol", prompt: RENDERED, raw: true, options: greedy });
      assert((templated.response ?? "").length > 0);
      assertEquals(templated.response, raw.response);
      // The context is the rendered prompt and the answer; the model's ChatML template played no part.
      const server = daemon.ctx.scheduler.list().find((r) => !r.embedding)!;
      const text = (await (await runnerFetch(server.url!, "/detokenize", { tokens: templated.context }))
        .json()).content as string;
      assertStringIncludes(text, RENDERED + templated.response);
      assert(!text.includes("<|im_start|>"), text);
    });

    await t.step("given back, the context comes before the next rendered turn", async () => {
      const first = await ollama.generate({
        model: "smol",
        prompt: "My name is Ada.",
        template: TEMPLATE,
        options: greedy,
      });
      const next = await ollama.generate({
        model: "smol",
        prompt: "What is my name?",
        template: TEMPLATE,
        context: first.context,
        options: greedy,
      });
      const server = daemon.ctx.scheduler.list().find((r) => !r.embedding)!;
      const text = (await (await runnerFetch(server.url!, "/detokenize", { tokens: next.context })).json())
        .content as string;
      assertStringIncludes(
        text,
        `### Question: My name is Ada.\n### Answer:${first.response}### Question: What is my name?\n### Answer:`,
      );
    });

    await t.step("a .Messages template gets the system prompt and the prompt as messages", async () => {
      const messages = "{{ range .Messages }}[{{ .Role }}] {{ .Content }}\n{{ end }}[assistant]";
      const templated = await ollama.generate({
        model: "smol",
        prompt: "Name a colour.",
        system: "One word.",
        template: messages,
        options: greedy,
      });
      const raw = await ollama.generate({
        model: "smol",
        prompt: "[system] One word.\n[user] Name a colour.\n[assistant]",
        raw: true,
        options: greedy,
      });
      assertEquals(templated.response, raw.response);
    });

    await t.step("a template that cannot be used is a 400 naming the construct", async () => {
      const err = await assertRejects(() =>
        ollama.generate({ model: "smol", prompt: "hi", template: '{{ template "x" . }}{{ .Prompt }}' })
      ) as { status_code?: number; error?: string };
      assertEquals(err.status_code, 400);
      assertStringIncludes(err.error ?? "", "{{ template }} is not supported");
      const err2 = await assertRejects(() =>
        ollama.generate({ model: "smol", prompt: "hi", template: "{{ .Prompt | html }}" })
      ) as { status_code?: number; error?: string };
      assertEquals(err2.status_code, 400);
      assertStringIncludes(err2.error ?? "", 'the function "html"');
    });

    await t.step("raw with a template is refused as Ollama refuses it", async () => {
      const err = await assertRejects(() =>
        ollama.generate({ model: "smol", prompt: "hi", raw: true, template: TEMPLATE })
      ) as { status_code?: number; error?: string };
      assertEquals(err.status_code, 400);
      assertEquals(err.error, "raw mode does not support template, system, or context");
    });
  });
});
