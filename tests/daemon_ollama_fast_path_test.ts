/**
 * The streaming fast path: llama-server's plain text events are recognised whole and their text is written into
 * Ollama's lines as llama-server escaped it. Whatever the text and however the bytes are cut, the events and
 * the lines must be exactly those of the full parser; anything the pattern does not know goes the full way.
 */
import { assert, assertEquals } from "./_assert.ts";
import { rng } from "./_rng.ts";
import {
  CHAT_TEXT_DELTA,
  chatEvents,
  COMPLETION_TEXT,
  completionEvents,
  type GenEvent,
  UndecodedText,
} from "../lib/daemon/ollama/events.ts";
import { lineShape } from "../lib/daemon/ollama/answer.ts";
import { nowRfc3339 } from "../lib/daemon/http.ts";
import { SseSplitter } from "../lib/daemon/upstream/sse.ts";

const enc = new TextEncoder();

/** Texts a model can produce, with everything JSON has to escape, and escapes llama-server may choose. */
const TEXTS = [
  "Hello",
  " world",
  'say "hi"',
  "back\\slash",
  "line\nbreak\ttab\r",
  "</script> & <b>",
  "é ü ß 中文 🦙",
  "\u0001\u001f control",
  "\u2028\u2029",
  '{"content":"x"}',
  "data: [DONE]",
  " ",
];

/** A chat text event written the way llama-server writes it (same fields, same order). */
function chatDelta(text: string, model = "smol:latest"): string {
  return JSON.stringify({
    choices: [{ finish_reason: null, index: 0, delta: { content: text } }],
    created: 1796026152,
    id: "chatcmpl-j7hLxlR1RnA8K2MPqelm86W6QbE4cnA2",
    model,
    system_fingerprint: "b1-de3ff81",
    object: "chat.completion.chunk",
  });
}

function chatFinal(reason: string): string {
  return JSON.stringify({
    choices: [{ finish_reason: reason, index: 0, delta: {} }],
    created: 1796026152,
    id: "chatcmpl-x",
    model: "smol:latest",
    system_fingerprint: "b1-de3ff81",
    object: "chat.completion.chunk",
    timings: { cache_n: 3, prompt_n: 5, prompt_ms: 7.5, predicted_n: 9, predicted_ms: 80.25 },
  });
}

function completionText(text: string, n: number): string {
  return JSON.stringify({
    index: 0,
    content: text,
    tokens: [29, 1717],
    stop: false,
    id_slot: -1,
    tokens_predicted: n,
    tokens_evaluated: 1,
  });
}

/** `data:` events as SSE bytes, cut into pieces at random places (also inside multi-byte characters). */
function* cut(events: string[], random: () => number): Generator<Uint8Array> {
  const bytes = enc.encode(events.map((e) => `data: ${e}\n\n`).join("") + "data: [DONE]\n\n");
  let off = 0;
  while (off < bytes.length) {
    const n = 1 + Math.floor(random() * (random() < 0.3 ? 8 : 400));
    yield bytes.slice(off, off + n);
    off += n;
  }
}

async function collect(gen: AsyncGenerator<GenEvent>): Promise<GenEvent[]> {
  const out: GenEvent[] = [];
  for await (const ev of gen) out.push(ev);
  return out;
}

async function* source(chunks: Iterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  for (const c of chunks) yield c;
}

Deno.test("fast path: llama-server's plain text events match, anything more does not", () => {
  for (const text of TEXTS) {
    const m = CHAT_TEXT_DELTA.exec(chatDelta(text));
    assert(m, `no match for ${JSON.stringify(text)}`);
    assertEquals(JSON.parse(m[1]), text);
    const c = COMPLETION_TEXT.exec(completionText(text, 3));
    assert(c, `no completion match for ${JSON.stringify(text)}`);
    assertEquals(JSON.parse(c[1]), text);
  }
  // A model name with quotes is still one field.
  assert(CHAT_TEXT_DELTA.exec(chatDelta("x", 'we"ird')));
  const notPlain = [
    chatFinal("stop"),
    JSON.stringify({
      choices: [{ finish_reason: null, index: 0, delta: { reasoning_content: "hmm" } }],
      created: 1,
      id: "c",
      model: "m",
      system_fingerprint: "f",
      object: "chat.completion.chunk",
    }),
    // Extra fields after the known ones (timings per token, usage) or before them.
    chatDelta("x").replace(/\}$/, ',"timings":{"predicted_n":1}}'),
    chatDelta("x").replace('"delta":{"content":"x"}', '"delta":{"content":"x","tool_calls":[]}'),
    chatDelta("x").replace('{"choices"', '{"usage":{},"choices"'),
    // A raw control character is not JSON, so it is not taken as written.
    chatDelta("x").replace('"content":"x"', '"content":"a\u0001b"'),
    JSON.stringify({ index: 0, content: "", tokens: [], stop: true, tokens_predicted: 3 }),
    completionText("x", 1).replace(/\}$/, ',"completion_probabilities":[]}'),
  ];
  for (const e of notPlain) {
    assert(!CHAT_TEXT_DELTA.exec(e) && !COMPLETION_TEXT.exec(e), `matched: ${e}`);
  }
});

Deno.test("fast path: events are those of the full parser however the bytes are cut", async () => {
  const random = rng(1234);
  for (let round = 0; round < 50; round++) {
    const texts = Array.from(
      { length: 1 + Math.floor(random() * 20) },
      () => TEXTS[Math.floor(random() * TEXTS.length)],
    );
    const events = [
      JSON.stringify({
        choices: [{ finish_reason: null, index: 0, delta: { role: "assistant", content: null } }],
        created: 1,
        id: "c",
        model: "smol:latest",
        system_fingerprint: "f",
        object: "chat.completion.chunk",
      }),
      ...texts.map((t) => chatDelta(t)),
      chatFinal(round % 2 ? "length" : "stop"),
    ];
    const got = await collect(chatEvents(source(cut(events, random))));
    const textEvents = got.filter((e) => e.kind === "text");
    assertEquals(textEvents.map((e) => e.kind === "text" && e.text), texts);
    // Every text event came a fast way, with the literal llama-server wrote (found in the text, or on the bytes
    // when a piece held whole events).
    for (const e of textEvents) {
      assert(e.kind === "text");
      const literal = e.raw && new TextDecoder().decode(e.raw);
      assert(literal !== undefined, "a text event took the full parser");
      assertEquals(JSON.parse(literal), e.text);
    }
    const done = got.at(-1)!;
    assert(done.kind === "done");
    assertEquals(done.reason, round % 2 ? "length" : "stop");
    assertEquals(done.metrics.eval_count, 9);
    assertEquals(done.metrics.prompt_eval_count, 8);
    assertEquals(done.metrics.eval_duration, 80_250_000);

    const comp = [
      ...texts.map((t, i) => completionText(t, i + 1)),
      JSON.stringify({ index: 0, content: "", stop: true, stop_type: "limit", timings: { predicted_n: 4 } }),
    ];
    const cgot = await collect(completionEvents(source(cut(comp, random))));
    assertEquals(cgot.filter((e) => e.kind === "text").map((e) => e.kind === "text" && e.text), texts);
    const cdone = cgot.at(-1)!;
    assert(cdone.kind === "done" && cdone.reason === "length" && cdone.metrics.eval_count === 4);
  }
});

Deno.test("fast path: a text line is byte for byte the line the full path writes", () => {
  const chat = lineShape("smol", (p) => ({
    message: { role: "assistant", content: p.text, ...(p.thinking ? { thinking: p.thinking } : {}) },
  }));
  const generate = lineShape('we"ird:1b', (p) => ({ response: p.text }));
  for (const shape of [chat, generate]) {
    assert(shape.textLine, "no text line template");
    for (const text of TEXTS) {
      const fast = new TextDecoder().decode(shape.textLine(enc.encode(JSON.stringify(text))));
      const full = JSON.stringify(shape.partial({ text })) + "\n";
      const time = /"created_at":"([^"]+)"/;
      // The two lines were written a moment apart: compare them with the same time.
      assertEquals(fast.replace(time, '"created_at":"T"'), full.replace(time, '"created_at":"T"'));
      assert(time.test(fast) && !Number.isNaN(Date.parse(JSON.parse(fast).created_at)));
    }
  }
  // A shape whose text does not appear once as a plain field has no template (and falls back to objects).
  assertEquals(lineShape("m", (p) => ({ a: p.text, b: p.text })).textLine, undefined);
  assertEquals(lineShape("m", () => ({ response: "fixed" })).textLine, undefined);
});

Deno.test("SSE splitter: CRLF lines, comments, [DONE] and error events", () => {
  const sse = new SseSplitter();
  assertEquals(sse.push(enc.encode(': comment\r\ndata: {"a":1}\r\n\r\nda')), ['{"a":1}']);
  assertEquals(sse.push(enc.encode('ta:{"b":2}\n\n')), ['{"b":2}']);
  assertEquals(sse.push(enc.encode("data: [DONE]\n\ndata: {}\n\n")), []);
  assert(sse.done);
  const bad = new SseSplitter();
  let message = "";
  try {
    bad.push(enc.encode('error: {"error":{"message":"the context is full"}}\n\n'));
  } catch (err) {
    message = (err as Error).message;
  }
  assertEquals(message, "the context is full");
});

Deno.test("created_at is Date's ISO string, across seconds, minutes, days and years", () => {
  const realNow = Date.now;
  const times = [
    Date.UTC(2026, 10, 30, 8, 25, 20, 123),
    Date.UTC(2026, 10, 30, 8, 25, 20, 124),
    Date.UTC(2026, 10, 30, 8, 25, 59, 999),
    Date.UTC(2026, 10, 30, 8, 26, 0, 0),
    Date.UTC(2026, 10, 30, 8, 26, 0, 7),
    Date.UTC(2026, 10, 30, 8, 26, 9, 45),
    Date.UTC(2026, 11, 31, 23, 59, 59, 999),
    Date.UTC(2027, 0, 1, 0, 0, 0, 0),
    Date.UTC(2026, 10, 30, 8, 25, 1, 5), // the clock went back
  ];
  const random = rng(7);
  for (let i = 0; i < 2000; i++) times.push(Date.UTC(2026, 0, 1) + Math.floor(random() * 400 * 86_400_000));
  try {
    for (const t of times) {
      Date.now = () => t;
      assertEquals(nowRfc3339(), new Date(t).toISOString());
    }
  } finally {
    Date.now = realNow;
  }
  const a = Date.parse(nowRfc3339());
  assert(Math.abs(a - Date.now()) < 1000);
});

/** SSE bytes of these events, one piece per event, as llama-server sends them. */
function pieces(events: string[]): Uint8Array[] {
  return [...events.map((e) => enc.encode(`data: ${e}\n\n`)), enc.encode("data: [DONE]\n\n")];
}

function concatBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

Deno.test("fast path: pieces of whole text events are read without decoding, and give the same lines", async () => {
  const random = rng(99);
  const texts = Array.from({ length: 200 }, () => TEXTS[Math.floor(random() * TEXTS.length)]);
  const chat = [...texts.map((t) => chatDelta(t)), chatFinal("stop")];
  // One event per piece; then two text events in one piece, and the last text with the final event.
  const split = pieces(chat);
  const joined = [
    split[0],
    concatBytes(split[1], split[2]),
    ...split.slice(3, -3),
    concatBytes(split.at(-3)!, split.at(-2)!),
    split.at(-1)!,
  ];
  for (const chunks of [split, joined]) {
    const got = await collect(chatEvents(source(chunks)));
    const textEvents = got.filter((e) => e.kind === "text");
    assertEquals(textEvents.map((e) => e.kind === "text" && e.text), texts);
    const raw = textEvents.filter((e) => e instanceof UndecodedText).length;
    // Only the piece that also holds the final event goes the ordinary way.
    assertEquals(raw, chunks === split ? texts.length : texts.length - 1);
    const done = got.at(-1)!;
    assert(done.kind === "done" && done.metrics.eval_count === 9);
  }
  const comp = [
    ...texts.map((t, i) => completionText(t, i + 1)),
    JSON.stringify({ index: 0, content: "", stop: true, stop_type: "eos" }),
  ];
  const cgot = await collect(completionEvents(source(pieces(comp))));
  const ctexts = cgot.filter((e) => e.kind === "text");
  assertEquals(ctexts.map((e) => e.kind === "text" && e.text), texts);
  assert(ctexts.every((e) => e instanceof UndecodedText));

  // Lines from the bytes of those events are the full path's lines.
  const shape = lineShape("smol", (p) => ({ message: { role: "assistant", content: p.text } }));
  const time = /"created_at":"([^"]+)"/;
  for (const e of onlyText(await collect(chatEvents(source(split))))) {
    const fromBytes = new TextDecoder().decode(shape.textLine!(e.raw!));
    const full = JSON.stringify(shape.partial({ text: e.text })) + "\n";
    assertEquals(fromBytes.replace(time, "T"), full.replace(time, "T"));
    assertEquals(JSON.parse(fromBytes).message.content, e.text);
  }
});

function onlyText(events: GenEvent[]): { text: string; raw?: Uint8Array }[] {
  return events.flatMap((e) => e.kind === "text" ? [e] : []);
}

Deno.test("fast path: bytes that are not exactly a plain text event go the ordinary way", async () => {
  const bad = [
    chatDelta("x").replace('"content":"x"', String.raw`"content":"a\qb"`), // an escape JSON does not have
    chatDelta("x").replace('"content":"x"', String.raw`"content":"a\u12"`), // a short \u escape
    chatDelta("x").replace('"content":"x"', '"content":"a\u0001b"'), // a raw control character
    chatDelta("x").replace(/\}$/, ',"timings":{}}'),
    chatDelta("x").replace('"created":1796026152', '"created":-1'),
  ];
  for (const e of bad) {
    const piece = enc.encode(`data: ${e}\n\n`);
    let events: GenEvent[] = [];
    let failed = false;
    try {
      events = await collect(chatEvents(source([piece, ...pieces([chatFinal("stop")])])));
    } catch {
      failed = true; // not JSON at all: the ordinary parser says so
    }
    assert(
      failed || events.every((ev) => !(ev instanceof UndecodedText)),
      `read as plain text: ${e}`,
    );
  }
  // A piece cut inside an event is held over, and the rest of it goes the ordinary way.
  const whole = enc.encode(`data: ${chatDelta("hello")}\n\n`);
  const got = await collect(
    chatEvents(source([whole.slice(0, 30), whole.slice(30), ...pieces([chatFinal("stop")])])),
  );
  const text = got.filter((e) => e.kind === "text");
  assertEquals(text.map((e) => e.kind === "text" && e.text), ["hello"]);
  assert(text.every((e) => e.kind === "text" && !(e instanceof UndecodedText)));
});
