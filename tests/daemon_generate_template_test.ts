/**
 * `/api/generate` with the request's own `template` (an Ollama Go template), through the npm `ollama` client,
 * against a real llama-server and SmolLM2: the template, not the model's chat template, makes the prompt;
 * a template that cannot be used is a 400 naming the construct; `raw` with a template is refused as Ollama
 * refuses it; a thinking model's answer is split into `thinking` and `response` at the tags of its template
 * (streamed, whole, and going on from a `context`), and not with `think: false`; images go to llama-server in
 * its prompt object, and a llama-server without a vision projector refuses them with a message for the user.
 */
import { Ollama } from "ollama";
import { assert, assertEquals, assertRejects, assertStringIncludes } from "./_assert.ts";
import { post, runnerFetch, withDaemon } from "./_daemon.ts";
import { HttpError } from "../lib/daemon/http.ts";
import { postJson } from "../lib/daemon/upstream/client.ts";
import { imagesError, imagesPrompt, imageTagged, mediaMarker } from "../lib/daemon/ollama/images.ts";
import { splitByHand } from "./_thinking.ts";

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

/** A model template in Ollama's form whose assistant turns carry thinking between `<think>` and `</think>`. */
const THINKING_MODEL = '{{- range .Messages }}{{ if eq .Role "user" }}Q: {{ .Content }}\n' +
  '{{ else if eq .Role "assistant" }}{{ if .Thinking }}<think>{{ .Thinking }}</think>\n{{ end }}A: {{ .Content }}\n' +
  "{{ end }}{{ end }}";
/** The request's template: examples as the system prompt, the question, and `<think>` when thinking is on. */
const ASK = "{{ if .System }}{{ .System }}\n{{ end }}Q: {{ .Prompt }}\n{{ if .Think }}<think>{{ end }}";
const EXAMPLES = "Q: What is 1+1?\n<think>One plus one is two.</think>\nA: 2\n" +
  "Q: What is 3+3?\n<think>Three plus three is six.</think>\nA: 6";
const think = { temperature: 0, top_k: 1, seed: 42, num_predict: 30 };

/** An answer that starts inside the thinking, split by hand as Ollama's parser splits it. */
function byHand(raw: string | undefined = ""): { thinking: string; response: string } {
  const { thinking, after } = splitByHand(raw);
  return { thinking, response: after };
}

Deno.test("daemon: /api/generate with a template splits a thinking model's answer at its tags", async (t) => {
  await withDaemon({}, async ({ url, daemon }) => {
    const ollama = new Ollama({ host: url });
    const made = await post(`${url}/api/create`, {
      model: "smol-think",
      from: "smol",
      template: THINKING_MODEL,
    });
    assertEquals(made.status, 200, await made.text());
    const rendered = `${EXAMPLES}\nQ: What is 2+2?\n<think>`;
    const raw = (await ollama.generate({
      model: "smol-think",
      prompt: rendered,
      raw: true,
      think: false,
      options: think,
    })).response;
    const expected = byHand(raw);
    let whole: Awaited<ReturnType<typeof ollama.generate>>;
    const detokenize = async (tokens: number[]) => {
      const server = daemon.ctx.scheduler.list().find((r) => !r.embedding)!;
      return (await (await runnerFetch(server.url!, "/detokenize", { tokens })).json()).content as string;
    };

    await t.step(
      "think on: the thinking and the response, split where the model closed its thinking",
      async () => {
        whole = await ollama.generate({
          model: "smol-think",
          prompt: "What is 2+2?",
          system: EXAMPLES,
          template: ASK,
          think: true,
          options: think,
        });
        assertEquals({ thinking: whole.thinking, response: whole.response }, expected);
        // The context is the conversation as the model wrote it: the thinking and its tags are in it.
        assertStringIncludes(await detokenize(whole.context), rendered + raw);
      },
    );

    await t.step(
      "streamed (a thinking model thinks unless told not to): the same split, in order",
      async () => {
        const lines = [];
        for await (
          const part of await ollama.generate({
            model: "smol-think",
            prompt: "What is 2+2?",
            system: EXAMPLES,
            template: ASK,
            options: think,
            stream: true,
          })
        ) lines.push(part);
        const thinking = lines.map((l) => l.thinking ?? "").join("");
        const response = lines.map((l) => l.response).join("");
        assertEquals({ thinking, response }, expected);
        const lastThinking = lines.findLastIndex((l) => l.thinking);
        const firstResponse = lines.findIndex((l) => l.response);
        assert(lastThinking < firstResponse, "a response line came before the thinking was over");
        assertEquals(lines[lines.length - 1].context, whole.context);
      },
    );

    await t.step("think off: no <think> in the prompt and the whole answer is the response", async () => {
      const off = await ollama.generate({
        model: "smol-think",
        prompt: "What is 2+2?",
        system: EXAMPLES,
        template: ASK,
        think: false,
        options: think,
      });
      const plain = await ollama.generate({
        model: "smol-think",
        prompt: `${EXAMPLES}\nQ: What is 2+2?\n`,
        raw: true,
        think: false,
        options: think,
      });
      assertEquals(off.thinking, undefined);
      assertEquals(off.response, plain.response);
    });

    await t.step("going on from the context: the next answer is split the same way", async () => {
      const next = await ollama.generate({
        model: "smol-think",
        prompt: "What is 4+4?",
        template: ASK,
        context: whole.context,
        think: true,
        options: think,
      });
      const prior = await detokenize(whole.context);
      const rawNext = (await ollama.generate({
        model: "smol-think",
        prompt: `${prior}Q: What is 4+4?\n<think>`,
        raw: true,
        think: false,
        options: think,
      })).response;
      assertEquals({ thinking: next.thinking, response: next.response }, byHand(rawNext));
    });
  });
});

/** A 1x1 PNG. */
const PNG =
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4z8DwHwAFAAH/iZk9HQAAAABJRU5ErkJggg==";

Deno.test("daemon: /api/generate with a template and images, against a llama-server without a projector", async (t) => {
  console.log("no vision model (mmproj) here: an image actually read through a template is not tested");
  await withDaemon({}, async ({ url, daemon }) => {
    const ollama = new Ollama({ host: url });

    await t.step("a model without a projector: a 400 saying so, before any work", async () => {
      const err = await assertRejects(() =>
        ollama.generate({ model: "smol", prompt: "What is this?", template: TEMPLATE, images: [PNG] })
      ) as { status_code?: number; error?: string };
      assertEquals(err.status_code, 400);
      assertEquals(err.error, '"smol" does not support images (no vision projector found next to the model)');
    });

    await t.step(
      "llama-server takes the prompt object and refuses the images; the user is told why",
      async () => {
        await ollama.generate({ model: "smol", prompt: "hi", options: { num_predict: 1 } });
        const server = daemon.ctx.scheduler.list().find((r) => !r.embedding)!;
        // This llama.cpp picks a random marker per process: the one read must be the server's own.
        const props = await (await runnerFetch(server.url!, "/props")).json();
        const marker = await mediaMarker(server.url!);
        assertEquals(marker, props.media_marker);
        assert(marker.startsWith("<__media_") && marker !== "<__media__>", marker);
        const prompt = await imagesPrompt(server.url!, "", `Q: ${imageTagged("What is this?", 1)}\nA:`, [
          PNG,
        ]);
        assertEquals(prompt, { prompt_string: `Q: ${marker}What is this?\nA:`, multimodal_data: [PNG] });
        const body = { prompt, n_predict: 1 };
        const err = await assertRejects(() => postJson(server.url!, "/completion", body), HttpError);
        // llama-server read the object (a malformed one is refused with another message) and has no projector.
        assertStringIncludes(
          err.message,
          "Multimodal data provided, but model does not support multimodal requests",
        );
        const told = imagesError(err, "smol") as HttpError;
        assertEquals(told.status, 400);
        assertStringIncludes(
          told.message,
          '"smol" cannot read images: its llama-server runs without a vision projector',
        );
      },
    );
  });
});
