/**
 * A model whose own Go template (a Modelfile TEMPLATE given to `/api/create`) has thinking tags is a thinking
 * model, as in Ollama: `/api/show` says so, and `/api/chat`, `/api/generate` (templated by the model, and
 * `raw`) split its answer into thinking and the rest at the template's tags, streamed and whole, thinking by
 * default and not with `think: false`. Tested through the npm `ollama` client against a real llama-server and
 * SmolLM2, greedy: each split is compared with a split by hand of the answer the same prompt gets as written.
 */
import { Ollama } from "ollama";
import { assert, assertEquals, assertRejects, assertStringIncludes } from "./_assert.ts";
import { post, withDaemon } from "./_daemon.ts";
import { splitByHand } from "./_thinking.ts";

/**
 * An Ollama-style template: the system prompt, questions, answers with their thinking between `<think>` and
 * `</think>`, and `<think>` at the end when thinking is on (so the answer starts inside the thinking), an empty
 * thinking when it was turned off (as Qwen3's template in Ollama's library does).
 */
const TEMPLATE = '{{- range .Messages }}{{ if eq .Role "system" }}{{ .Content }}\n' +
  '{{ else if eq .Role "user" }}Q: {{ .Content }}\n' +
  '{{ else if eq .Role "assistant" }}{{ if .Thinking }}<think>{{ .Thinking }}</think>\n{{ end }}A: {{ .Content }}\n' +
  "{{ end }}{{ end }}{{ if $.Think }}<think>{{ else if $.IsThinkSet }}<think></think>\n{{ end }}";
const EXAMPLES = "Q: What is 1+1?\n<think>One plus one is two.</think>\nA: 2\n" +
  "Q: What is 3+3?\n<think>Three plus three is six.</think>\nA: 6";
/** What Go's text/template makes of TEMPLATE for EXAMPLES as the system prompt and the question. */
const PROMPT = `${EXAMPLES}\nQ: What is 2+2?\n`;
const greedy = { temperature: 0, top_k: 1, seed: 42, num_predict: 30 };
const messages = [{ role: "system", content: EXAMPLES }, { role: "user", content: "What is 2+2?" }];

/** An answer that starts inside the thinking, split by hand as Ollama's parser splits it. */
function byHand(raw: string | undefined = ""): { thinking: string; content: string } {
  const { thinking, after } = splitByHand(raw);
  return { thinking, content: after };
}

Deno.test("daemon: a model whose Go template has thinking tags thinks, split as Ollama splits it", async (t) => {
  await withDaemon({}, async ({ url }) => {
    const ollama = new Ollama({ host: url });
    const made = await post(`${url}/api/create`, { model: "smol-think", from: "smol", template: TEMPLATE });
    assertEquals(made.status, 200, await made.text());
    // The answers to the prompts as written (raw, nothing split), to split by hand.
    const asWritten = async (prompt: string, options = greedy) =>
      (await ollama.generate({ model: "smol-think", prompt, raw: true, think: false, options })).response ??
        "";
    const raw = await asWritten(`${PROMPT}<think>`);
    const expected = byHand(raw);

    await t.step("/api/show lists thinking for it, not for the model it was made from", async () => {
      assert((await ollama.show({ model: "smol-think" })).capabilities.includes("thinking"));
      assert(!(await ollama.show({ model: "smol" })).capabilities.includes("thinking"));
      const err = await assertRejects(() => ollama.chat({ model: "smol", messages, think: true })) as {
        status_code?: number;
        error?: string;
      };
      assertEquals(err.status_code, 400);
      assertEquals(err.error, '"smol" does not support thinking');
    });

    await t.step("/api/chat with think: the thinking in message.thinking, the rest in content", async () => {
      const r = await ollama.chat({ model: "smol-think", messages, think: true, options: greedy });
      assertEquals({ thinking: r.message.thinking, content: r.message.content }, expected);
    });

    await t.step("streamed, thinking by default: the same split, the thinking first", async () => {
      const lines = [];
      for await (
        const part of await ollama.chat({ model: "smol-think", messages, options: greedy, stream: true })
      ) {
        lines.push(part);
      }
      const thinking = lines.map((l) => l.message.thinking ?? "").join("");
      const content = lines.map((l) => l.message.content).join("");
      assertEquals({ thinking, content }, expected);
      assert(
        lines.filter((l) => l.message.thinking).length > 1,
        "the thinking did not come as it was written",
      );
      assert(
        lines.findLastIndex((l) => l.message.thinking) < lines.findIndex((l) => l.message.content),
        "content came before the thinking was over",
      );
      assert(lines[lines.length - 1].done);
    });

    await t.step("think: false: an empty thinking in the prompt, and the answer is all content", async () => {
      const r = await ollama.chat({ model: "smol-think", messages, think: false, options: greedy });
      const off = await asWritten(`${PROMPT}<think></think>\n`);
      assert(
        off !== await asWritten(PROMPT),
        "the empty thinking makes no difference here: nothing is tested",
      );
      assertEquals(r.message.thinking, undefined);
      assertEquals(r.message.content, off);
    });

    await t.step("with a format (a grammar from the first token) it is asked not to think", async () => {
      const r = await ollama.chat({ model: "smol-think", messages, format: "json", options: greedy });
      // The JSON is the answer, not thinking (the prompt does not end inside the thinking).
      assertEquals(r.message.thinking, undefined);
      assert(r.message.content.trimStart().startsWith("{"), r.message.content);
      const off = await ollama.chat({
        model: "smol-think",
        messages,
        format: "json",
        think: false,
        options: greedy,
      });
      assertEquals(r.message.content, off.message.content);
    });

    await t.step("earlier thinking goes back to the model through the template", async () => {
      const next = [
        { role: "system", content: EXAMPLES },
        { role: "user", content: "What is 2+2?" },
        { role: "assistant", content: "4", thinking: "Two plus two is four." },
        { role: "user", content: "What is 5+5?" },
      ];
      const r = await ollama.chat({ model: "smol-think", messages: next, think: true, options: greedy });
      const rawNext = await asWritten(
        `${PROMPT}<think>Two plus two is four.</think>\nA: 4\nQ: What is 5+5?\n<think>`,
      );
      assertEquals({ thinking: r.message.thinking, content: r.message.content }, byHand(rawNext));
    });

    await t.step("/api/generate through the model's template: the same split", async () => {
      const r = await ollama.generate({
        model: "smol-think",
        prompt: "What is 2+2?",
        system: EXAMPLES,
        options: greedy,
      });
      assertEquals({ thinking: r.thinking, content: r.response }, expected);
      // Going on from its context: the context is the conversation as written, thinking and tags included, and
      // the next answer is split the same way.
      const next = await ollama.generate({
        model: "smol-think",
        prompt: "What is 4+4?",
        context: r.context,
        options: greedy,
      });
      assertEquals(
        { thinking: next.thinking, content: next.response },
        byHand(await asWritten(`${PROMPT}<think>${raw}Q: What is 4+4?\n<think>`)),
      );
    });

    await t.step("/api/generate raw: split as Ollama splits it, unless think is false", async () => {
      const r = await ollama.generate({
        model: "smol-think",
        prompt: `${PROMPT}<think>`,
        raw: true,
        options: greedy,
      });
      assertEquals({ thinking: r.thinking, content: r.response }, expected);
      const streamed = [];
      for await (
        const part of await ollama.generate({
          model: "smol-think",
          prompt: `${PROMPT}<think>`,
          raw: true,
          think: true,
          options: greedy,
          stream: true,
        })
      ) streamed.push(part);
      assertEquals({
        thinking: streamed.map((l) => l.thinking ?? "").join(""),
        content: streamed.map((l) => l.response).join(""),
      }, expected);
      // The answer as written (what the hand split above was made from) keeps its tags.
      assertStringIncludes(raw, "</think>");
    });

    await t.step("an answer cut off inside the closing tag: the part of the tag is dropped", async () => {
      // As many tokens as it takes to end in the middle of `</think>`.
      let cut = "";
      let n = 1;
      for (; n <= 12; n++) {
        cut = await asWritten(`${PROMPT}<think>`, { ...greedy, num_predict: n });
        const partTag = [2, 3, 4, 5, 6, 7].some((k) => cut.endsWith("</think>".slice(0, k)));
        if (partTag && !cut.includes("</think>")) break;
      }
      assert(n <= 12, `no answer ended inside the closing tag: ${JSON.stringify(cut)}`);
      const r = await ollama.chat({ model: "smol-think", messages, options: { ...greedy, num_predict: n } });
      assertEquals(r.message.thinking, cut.slice(0, cut.lastIndexOf("</")).trimStart());
      assertEquals(r.message.content, "");
      assertEquals(r.done_reason, "length");
    });
  });
});
