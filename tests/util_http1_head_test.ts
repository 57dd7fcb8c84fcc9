/**
 * The HTTP/1.1 head shared by the download client and the daemon's client to llama-server: where a response
 * head ends however its bytes arrive, what its status line and header lines say, the errors for a head that
 * cannot be read, and the request head written.
 */
import { assertEquals, assertThrows } from "./_assert.ts";
import {
  findHeadEnd,
  MalformedHead,
  MAX_HEAD_BYTES,
  parseResponseHead,
  requestHead,
} from "../lib/util/http1_head.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Reads `wire` in pieces of `step` bytes as the clients do; the head's end and the reads it took. */
function readInPieces(wire: Uint8Array, step: number, max = MAX_HEAD_BYTES): { end: number; reads: number } {
  let filled = 0;
  let reads = 0;
  while (filled < wire.length) {
    const searched = filled;
    filled = Math.min(wire.length, filled + step);
    reads++;
    const end = findHeadEnd(wire, searched, filled, max);
    if (end >= 0) return { end, reads };
  }
  return { end: -1, reads };
}

Deno.test("the head's end is found just past its blank line, and not before it has all come", () => {
  const head = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
  const wire = enc.encode(`${head}hello`);
  assertEquals(findHeadEnd(wire, 0, wire.length), head.length);
  assertEquals(dec.decode(wire.subarray(head.length)), "hello");
  // Everything but the last byte of the blank line: not yet.
  assertEquals(findHeadEnd(wire, 0, head.length - 1), -1);
});

Deno.test("a head split across reads is found at the same place whatever the size of the reads", () => {
  const head = "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-3/10\r\nContent-Length: 4\r\n\r\n";
  const wire = enc.encode(`${head}abcd`);
  for (let step = 1; step <= wire.length; step++) {
    assertEquals(readInPieces(wire, step).end, head.length, `reads of ${step} bytes`);
  }
  // The blank line cut after each of its first three bytes.
  for (const cut of [1, 2, 3]) {
    const at = head.length - 4 + cut;
    assertEquals(findHeadEnd(wire, 0, at), -1);
    assertEquals(findHeadEnd(wire, at, wire.length), head.length, `cut ${cut} bytes into the blank line`);
  }
});

Deno.test("a head that does not end within the size allowed is a MalformedHead that says how much came", () => {
  const long = enc.encode(`HTTP/1.1 200 OK\r\nX-Big: ${"a".repeat(200)}\r\n\r\n`);
  const err = assertThrows(() => readInPieces(long, 7, 100), MalformedHead);
  assertEquals(err.message, "the response head does not end within its first 100 bytes");
  // One that ends on the very last byte allowed is read.
  assertEquals(readInPieces(long, 7, long.length).end, long.length);
  // Bytes read past the limit do not count: the blank line must lie within it.
  assertThrows(() => findHeadEnd(long, 0, long.length, long.length - 1), MalformedHead);
  // The default: 16 KiB.
  const huge = enc.encode(`HTTP/1.1 200 OK\r\nX-Big: ${"a".repeat(MAX_HEAD_BYTES)}\r\n\r\n`);
  assertEquals(MAX_HEAD_BYTES, 16 * 1024);
  assertThrows(() => readInPieces(huge, 4096), MalformedHead, `first ${16 * 1024} bytes`);
});

Deno.test("the status line gives version, status and reason; the reason may be empty or absent", () => {
  const read = (line: string) => {
    const h = parseResponseHead(enc.encode(`${line}\r\n\r\n`));
    return [h.version, h.status, h.statusText];
  };
  assertEquals(read("HTTP/1.1 200 OK"), ["1.1", 200, "OK"]);
  assertEquals(read("HTTP/1.1 416 Range Not Satisfiable"), ["1.1", 416, "Range Not Satisfiable"]);
  assertEquals(read("HTTP/1.0 503 Service Unavailable"), ["1.0", 503, "Service Unavailable"]);
  assertEquals(read("HTTP/1.1 204"), ["1.1", 204, ""]);
  assertEquals(read("HTTP/1.1 204 "), ["1.1", 204, ""]);
});

Deno.test("a malformed status line is a MalformedHead that quotes it", () => {
  for (
    const line of [
      "HTTP/2 200 OK",
      "HTTP/1.1 20 OK",
      "HTTP/1.1 2000 OK",
      "HTTP/1.1 200OK",
      "http/1.1 200 OK",
      "ICY 200 OK",
      "HTTP/1.1  200 OK",
      "",
      '{"error":"not http"}',
    ]
  ) {
    const err = assertThrows(() => parseResponseHead(enc.encode(`${line}\r\nA: b\r\n\r\n`)), MalformedHead);
    assertEquals(err.message, `the status line is not HTTP/1.x: ${JSON.stringify(line)}`);
  }
  // A long one is cut in the message.
  const err = assertThrows(() => parseResponseHead(enc.encode("x".repeat(5000))), MalformedHead);
  assertEquals(err.message.length < 260, true);
});

Deno.test("header names are lower-cased, names and values trimmed, repeats kept in order", () => {
  const h = parseResponseHead(enc.encode(
    "HTTP/1.1 200 OK\r\nContent-Type: Application/JSON\r\nSET-COOKIE: a=1\r\nset-cookie:b=2\r\n" +
      "Location:   http://127.0.0.1:8080/x?y=z:1  \r\nX-Empty:\r\n\r\n",
  ));
  assertEquals(h.fields, [
    ["content-type", "Application/JSON"],
    ["set-cookie", "a=1"],
    ["set-cookie", "b=2"],
    ["location", "http://127.0.0.1:8080/x?y=z:1"],
    ["x-empty", ""],
  ]);
});

Deno.test("obs-fold and other lines that are not 'name: value' are passed over, as both clients did", () => {
  const h = parseResponseHead(enc.encode(
    "HTTP/1.1 200 OK\r\nX-A: one\r\n  folded on\r\n\tx-folded: two\r\nno colon here\r\n: no name\r\nX-B: three\r\n\r\n",
  ));
  // A continuation line with no colon is dropped (its words are not added to X-A); one with a colon reads as a
  // field of its own, its name trimmed.
  assertEquals(h.fields, [["x-a", "one"], ["x-folded", "two"], ["x-b", "three"]]);
});

Deno.test("header bytes are read as Latin-1, byte for byte, as fetch reads them", () => {
  const bytes = new Uint8Array([
    ...enc.encode("HTTP/1.1 200 OK\r\nX-Name: caf"),
    0xe9,
    ...enc.encode("\r\n\r\n"),
  ]);
  assertEquals(parseResponseHead(bytes).fields, [["x-name", "caf\u00e9"]]);
});

Deno.test("a request head keeps the fields' order and spelling, and refuses a line break or a spaced target", () => {
  const head = requestHead("POST", "/completion?x=1", [["Host", "127.0.0.1:8080"], ["Content-Length", "2"]]);
  assertEquals(
    dec.decode(head),
    "POST /completion?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Length: 2\r\n\r\n",
  );
  assertThrows(
    () => requestHead("GET", "/", [["x-a", "b\r\nx-injected: 1"]]),
    TypeError,
    "a header with a line break: x-a",
  );
  assertThrows(() => requestHead("GET", "/", [["x-a\n", "b"]]), TypeError, "line break");
  assertThrows(() => requestHead("GET", "/a b", []), TypeError, "white space");
});
