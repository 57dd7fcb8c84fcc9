/**
 * The daemon's pure rules: keep_alive parsing, model names and digests, options splitting, Host and Origin
 * checks, OLLAMA_HOST parsing, request conversion.
 */
import { assert, assertEquals, assertThrows } from "./_assert.ts";
import { defaultKeepAlive, parseGoDuration, parseKeepAlive } from "../lib/daemon/keep_alive.ts";
import { digestFileName, isValidModelName, normalizeName, parseModelName } from "../lib/models/names.ts";
import { loadFlags, parseOptions } from "../lib/daemon/options.ts";
import { allowedOrigins, checkAccess, hostAllowed, originAllowed } from "../lib/daemon/security.ts";
import { parseOllamaHost } from "../lib/daemon/settings.ts";
import { responseFormat, thinkFields, toOpenAIMessages } from "../lib/daemon/ollama/to_llama.ts";
import { formatParameterCount } from "../lib/daemon/ollama/details.ts";
import { UserError } from "../lib/util/errors.ts";

Deno.test("keep_alive is read as Ollama reads it", async (t) => {
  const def = 300_000;
  await t.step("a number is seconds, fractions allowed, negative is forever", () => {
    assertEquals(parseKeepAlive(10, def), 10_000);
    assertEquals(parseKeepAlive(1.5, def), 1500);
    assertEquals(parseKeepAlive(0, def), 0);
    assertEquals(parseKeepAlive(-1, def), Infinity);
  });
  await t.step("a string is a Go duration", () => {
    assertEquals(parseKeepAlive("5m", def), 300_000);
    assertEquals(parseKeepAlive("1h30m", def), 5_400_000);
    assertEquals(parseKeepAlive("1.5s", def), 1500);
    assertEquals(parseKeepAlive("0", def), 0);
    assertEquals(parseKeepAlive("-1s", def), Infinity);
    assertEquals(parseGoDuration("250ms"), 250);
  });
  await t.step("null and absent mean the default", () => {
    assertEquals(parseKeepAlive(null, def), def);
    assertEquals(parseKeepAlive(undefined, def), def);
  });
  await t.step("a bare number in a string, or another type, is an error", () => {
    assertThrows(() => parseKeepAlive("300", def), UserError, 'invalid duration "300"');
    assertThrows(() => parseKeepAlive("5 minutes", def), UserError);
    assertThrows(() => parseKeepAlive(true, def), UserError, "unsupported type 'boolean'");
    assertThrows(() => parseKeepAlive([1], def), UserError, "unsupported type 'array'");
  });
  await t.step("the default (OLLAMA_KEEP_ALIVE) also takes bare seconds", () => {
    assertEquals(defaultKeepAlive("300"), 300_000);
    assertEquals(defaultKeepAlive("10m"), 600_000);
    assertEquals(defaultKeepAlive("-1"), Infinity);
    assertEquals(defaultKeepAlive(undefined), 300_000);
    assertEquals(defaultKeepAlive("garbage"), 300_000);
  });
});

Deno.test("model names and digests are validated so no request reaches a path", async (t) => {
  await t.step("valid names split into host, namespace, model and tag", () => {
    assertEquals(parseModelName("qwen3:4b"), { host: "", namespace: "", model: "qwen3", tag: "4b" });
    assertEquals(parseModelName("llama3"), { host: "", namespace: "", model: "llama3", tag: "latest" });
    assertEquals(parseModelName("registry.ollama.ai/library/llama3.2:3b-instruct-q4_K_M")?.model, "llama3.2");
    assert(isValidModelName("hf.co/bartowski/Qwen2.5-7B-Instruct-GGUF:Q4_K_M"));
  });
  await t.step("names with traversal, empty parts or bad characters are refused", () => {
    for (
      const bad of [
        "../../etc/passwd",
        "/etc/passwd",
        "a/../b",
        "a//b",
        ":tag",
        "a:",
        "-a",
        "a b",
        "a/b/c/d",
        "ns.x/m",
      ]
    ) {
      assert(!isValidModelName(bad), bad);
    }
    assert(!isValidModelName("x".repeat(81)));
  });
  await t.step("lookups ignore case and the default tag and registry", () => {
    assertEquals(normalizeName("Llama3"), "llama3:latest");
    assertEquals(normalizeName("registry.ollama.ai/library/llama3:8b"), "llama3:8b");
  });
  await t.step("only sha256 digests of 64 hex digits become file names", () => {
    const hex = "ab".repeat(32);
    assertEquals(digestFileName(`sha256:${hex}`), `sha256-${hex}`);
    assertEquals(digestFileName(`sha256-${hex.toUpperCase()}`), `sha256-${hex}`);
    assertEquals(digestFileName(`sha256:../../${hex}`), undefined);
    assertEquals(digestFileName(`sha256:${hex}/x`), undefined);
    assertEquals(digestFileName(`md5:${hex}`), undefined);
  });
});

Deno.test("options split into load-time flags and per-request sampling", async (t) => {
  await t.step("load-time options become llama-server flags", () => {
    const { load, sampling } = parseOptions({
      num_ctx: 8192,
      num_gpu: 20,
      num_thread: 4,
      num_batch: 256,
      use_mmap: false,
    });
    assertEquals(load, { ctx: 8192, ngl: 20, threads: 4, batch: 256, mmap: false });
    assertEquals(sampling, {});
    assertEquals(loadFlags(load), ["-t", "4", "-b", "256", "--no-mmap"]);
  });
  await t.step("sampling options go per request under llama-server's names", () => {
    const { sampling } = parseOptions({
      temperature: 0,
      top_k: 10,
      top_p: 0.5,
      min_p: 0.1,
      typical_p: 0.9,
      seed: 7,
      stop: ["\n"],
      num_predict: 32,
      repeat_penalty: 1.2,
      repeat_last_n: 32,
      presence_penalty: 0.1,
      frequency_penalty: 0.2,
      num_keep: 5,
    });
    assertEquals(sampling, {
      temperature: 0,
      top_k: 10,
      top_p: 0.5,
      min_p: 0.1,
      typical_p: 0.9,
      seed: 7,
      stop: ["\n"],
      n_predict: 32,
      repeat_penalty: 1.2,
      repeat_last_n: 32,
      presence_penalty: 0.1,
      frequency_penalty: 0.2,
      n_keep: 5,
    });
  });
  await t.step("unknown keys are ignored, wrong types are errors that name the option", () => {
    assertEquals(parseOptions({ not_an_option: 1 }), { load: {}, sampling: {} });
    assertThrows(() => parseOptions({ top_k: "10" }), UserError, 'option "top_k" must be of type integer');
    assertThrows(
      () => parseOptions({ temperature: "hot" }),
      UserError,
      'option "temperature" must be of type float32',
    );
    assertThrows(() => parseOptions({ use_mmap: 1 }), UserError, 'option "use_mmap" must be of type boolean');
    assertThrows(
      () => parseOptions({ stop: [1] }),
      UserError,
      'option "stop" must be of an array of strings',
    );
  });
});

Deno.test("Host and Origin rules match Ollama's", async (t) => {
  await t.step("local hosts pass, others do not", () => {
    for (
      const h of [
        "localhost",
        "localhost:11434",
        "127.0.0.1:11434",
        "[::1]:11434",
        "10.0.0.2",
        "a.localhost",
        "x.local",
        "y.internal",
        "",
      ]
    ) {
      assert(hostAllowed(h), h);
    }
    for (const h of ["evil.com", "evil.com:11434", "8.8.8.8", "localhost.evil.com"]) {
      assert(!hostAllowed(h), h);
    }
  });
  await t.step("default origins allow local pages, apps and editors; OLLAMA_ORIGINS adds more", () => {
    const o = allowedOrigins(["https://app.example.com"]);
    for (
      const ok of [
        "http://localhost",
        "http://localhost:3000",
        "https://127.0.0.1:8443",
        "app://x",
        "vscode-webview://abc",
        "chrome-extension://id",
        "https://app.example.com",
      ]
    ) {
      assert(originAllowed(ok, o), ok);
    }
    for (const bad of ["https://evil.com", "http://localhost.evil.com", "null"]) {
      assert(!originAllowed(bad, o), bad);
    }
    assert(originAllowed("https://anything", allowedOrigins(["*"])));
  });
  await t.step("checkAccess refuses a foreign Host on loopback but not on 0.0.0.0", () => {
    const req = new Request("http://evil.com/api/tags");
    assert(checkAccess(req, { listenHost: "127.0.0.1", origins: allowedOrigins([]) }) instanceof Response);
    assert(!(checkAccess(req, { listenHost: "0.0.0.0", origins: allowedOrigins([]) }) instanceof Response));
  });
  await t.step("a same-origin request is not checked against the list", () => {
    const req = new Request("http://localhost:11434/api/tags", {
      headers: { origin: "http://localhost:11434" },
    });
    assertEquals(checkAccess(req, { listenHost: "127.0.0.1", origins: [] }), {});
  });
});

Deno.test("OLLAMA_HOST is parsed as Ollama parses it", () => {
  assertEquals(parseOllamaHost("0.0.0.0"), { host: "0.0.0.0", port: 11434 });
  assertEquals(parseOllamaHost("127.0.0.1:8080"), { host: "127.0.0.1", port: 8080 });
  assertEquals(parseOllamaHost("http://example"), { host: "example", port: 80 });
  assertEquals(parseOllamaHost("https://example:9000/"), { host: "example", port: 9000 });
  assertEquals(parseOllamaHost(":11500"), { host: "127.0.0.1", port: 11500 });
  assertEquals(parseOllamaHost("[::1]:11434"), { host: "::1", port: 11434 });
  assertThrows(() => parseOllamaHost("localhost:99999"), UserError, "invalid port");
});

Deno.test("Ollama requests become llama-server's", async (t) => {
  await t.step("images become image_url parts and tool results find their call id by name", () => {
    const msgs = toOpenAIMessages([
      { role: "user", content: "what is this", images: ["iVBORw0KGgo="] },
      { role: "assistant", content: "", tool_calls: [{ function: { name: "f", arguments: { a: 1 } } }] },
      { role: "tool", content: "42", tool_name: "f" },
    ]);
    assertEquals(msgs[0].content, [
      { type: "text", text: "what is this" },
      { type: "image_url", image_url: { url: "data:image/png;base64,iVBORw0KGgo=" } },
    ]);
    const call = (msgs[1].tool_calls as { id: string; function: { arguments: string } }[])[0];
    assertEquals(call.function.arguments, '{"a":1}');
    assertEquals(msgs[2].tool_call_id, call.id);
  });
  await t.step("format and think map to response_format and template switches", () => {
    assertEquals(responseFormat("json"), { type: "json_object" });
    assertEquals(responseFormat(""), undefined);
    assertEquals((responseFormat({ type: "object" }) as { type: string }).type, "json_schema");
    assertThrows(() => responseFormat("yaml"), Error, "invalid format");
    assertEquals(thinkFields(false), {
      chat_template_kwargs: { enable_thinking: false, ollama_is_think_set: true, ollama_think_level: "" },
      reasoning_effort: "none",
    });
    assertEquals(thinkFields("high").reasoning_effort, "high");
  });
  await t.step("parameter counts print as Ollama prints them", () => {
    assertEquals(formatParameterCount(134_515_008), "135M");
    assertEquals(formatParameterCount(7_615_616_512), "7.62B");
    assertEquals(formatParameterCount(70_553_706_496), "70.6B");
  });
});
