/**
 * LangChain against the daemon, as a LangChain application uses it: PyPI `langchain-ollama` (ChatOllama,
 * OllamaLLM, OllamaEmbeddings; `format: "json"`, structured output, tools on a model without them) and
 * `langchain-openai` (ChatOpenAI on `/v1`), with SmolLM2. One daemon, one Python run.
 */
import { join } from "node:path";
import { assert, assertEquals, assertStringIncludes } from "./_assert.ts";
import { withDaemon } from "./_daemon.ts";
import { testVenv } from "./_python.ts";
import { run } from "../lib/util/run.ts";

Deno.test({
  name: "daemon: PyPI langchain-ollama and langchain-openai clients",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const python = await testVenv("langchain", ["langchain-ollama==1.1.0", "langchain-openai==1.7.4"]);
    const script = join(new URL(".", import.meta.url).pathname, "clients", "langchain_client.py");
    await withDaemon({}, async ({ url }) => {
      const r = await run([python, script, url], { check: false, timeoutMs: 600_000 });
      if (r.code !== 0) throw new Error(`langchain_client.py failed (${r.code}):\n${r.stderr}\n${r.stdout}`);
      const out = JSON.parse(r.stdout.trim().split("\n").pop()!);

      assert(out.invoke.text.length > 0, JSON.stringify(out.invoke));
      assertEquals(out.invoke.model, "smol");
      assertEquals(out.invoke.done_reason, "length");
      assertEquals(out.invoke.usage.output_tokens, 8);
      assert(out.invoke.usage.input_tokens > 0);
      assertEquals(out.stream_text, out.invoke.text);
      assert(out.llm_text.length > 0);

      // format "json": an answer that is JSON and that ends (the suite's failures never ended).
      assertEquals(out.json.done_reason, "stop", JSON.stringify(out.json));
      JSON.parse(out.json.text);
      assert(out.structured.ok || out.structured.error, JSON.stringify(out.structured));

      // Tools on a model whose template has none: Ollama's 400, raised as the client's ResponseError.
      assertEquals(out.tools.status, 400, JSON.stringify(out.tools));
      assertStringIncludes(out.tools.error, "does not support tools");

      assert(out.embed.dim > 0);
      assertEquals(out.embed.docs, 2);
      assertEquals(out.embed.same, true);
      assertEquals(out.unknown, { status: 404 });

      // Through /v1: the name as asked, OpenAI's fields.
      assertEquals(out.openai.model, "smol");
      assertEquals(out.openai.finish_reason, "length");
      assertEquals(out.openai.output_tokens, 8);
      assertEquals(out.openai_stream_text, out.openai.text);
    });
  },
});
