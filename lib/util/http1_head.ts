/**
 * The head of an HTTP/1.1 message, for the two hand-written clients (downloads' ranged GETs, the daemon's
 * requests to llama-server): a request head to write, and the response head read back: where it ends in the
 * bytes read so far, its status line and its header lines. Each client decides itself what the head means for
 * the body (one refuses a chunked body, the other decodes it). Everything here runs once per head, never on
 * body bytes.
 *
 * @module
 */

/**
 * The most bytes a response head may take (status line, header lines and the blank line after them), unless a
 * caller of {@linkcode findHeadEnd} says otherwise.
 *
 * @example
 * ```ts
 * const buf = new Uint8Array(MAX_HEAD_BYTES); // room for any head a client accepts
 * ```
 */
export const MAX_HEAD_BYTES = 16 * 1024;

/**
 * A response head that cannot be read: a malformed status line, or no end within the size allowed.
 *
 * @example
 * ```ts
 * try {
 *   parseResponseHead(new TextEncoder().encode("SSH-2.0-OpenSSH_9.6\r\n\r\n"));
 * } catch (err) {
 *   if (err instanceof MalformedHead) console.log(err.message); // the status line is not HTTP/1.x: "SSH-2.0-OpenSSH_9.6"
 * }
 * ```
 */
export class MalformedHead extends Error {
  /** The error's name, as stack traces show it. */
  override name = "MalformedHead";
}

/** A response's status line and header lines. */
export interface ResponseHead {
  /** The protocol version of the status line. */
  version: "1.0" | "1.1";
  /** The three-digit status code. */
  status: number;
  /** The reason phrase (may be empty). */
  statusText: string;
  /**
   * The header lines in order, as `[name, value]`: names lower-cased, both trimmed, repeats kept. A line
   * without a `:` after its first character is skipped; an obs-fold continuation that holds a `:` is read as
   * a field of its own (neither client's servers fold lines).
   */
  fields: [string, string][];
}

const CR = 13;
const LF = 10;

/**
 * Where the response head in `buf[0, to)` ends: the index just past its blank line, or -1 when it has not all
 * arrived yet. `searched` is how many bytes an earlier call looked at (0 at first), so that a head read in
 * pieces is scanned once; a blank line split between reads is still found.
 *
 * @throws {MalformedHead} when `max` bytes have come without the head ending.
 * @example
 * ```ts
 * const buf = new TextEncoder().encode("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi");
 * findHeadEnd(buf, 0, buf.length); // 38: the body starts there
 * ```
 */
export function findHeadEnd(
  buf: Uint8Array,
  searched: number,
  to: number,
  max: number = MAX_HEAD_BYTES,
): number {
  const end = Math.min(to, max);
  for (let i = Math.max(0, searched - 3); i + 3 < end; i++) {
    if (buf[i] === CR && buf[i + 1] === LF && buf[i + 2] === CR && buf[i + 3] === LF) return i + 4;
  }
  if (to >= max) {
    throw new MalformedHead(`the response head does not end within its first ${max} bytes`);
  }
  return -1;
}

/**
 * Reads a response head: `head` runs from the status line to the blank line (as far as
 * {@linkcode findHeadEnd} says), decoded byte for byte as Latin-1, as `fetch` reads header bytes.
 *
 * @throws {MalformedHead} when the status line is not `HTTP/1.x` and a three-digit status.
 * @example
 * ```ts
 * const head = parseResponseHead(new TextEncoder().encode("HTTP/1.1 206 Partial Content\r\nETag: x\r\n\r\n"));
 * head.status; // 206
 * head.fields; // [["etag", "x"]]
 * ```
 */
export function parseResponseHead(head: Uint8Array): ResponseHead {
  const lines = latin1(head).split("\r\n");
  const m = /^HTTP\/(1\.[01]) (\d{3})(?: (.*))?$/.exec(lines[0]);
  if (!m) {
    throw new MalformedHead(`the status line is not HTTP/1.x: ${JSON.stringify(lines[0].slice(0, 200))}`);
  }
  const fields: [string, string][] = [];
  for (let n = 1; n < lines.length; n++) {
    const line = lines[n];
    const i = line.indexOf(":");
    if (i > 0) fields.push([line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim()]);
  }
  return { version: m[1] as "1.0" | "1.1", status: Number(m[2]), statusText: m[3] ?? "", fields };
}

/**
 * A request head, ready to write (UTF-8), with the header lines in the order given and names as given. A
 * field with a line break in it, or a target with white space, is refused: it would end the head early.
 *
 * @throws {TypeError} for a line break in a field, or white space in the target.
 * @example
 * ```ts
 * const bytes = requestHead("GET", "/file", [["host", "127.0.0.1:8080"], ["range", "bytes=0-9"]]);
 * new TextDecoder().decode(bytes); // "GET /file HTTP/1.1\r\nhost: 127.0.0.1:8080\r\nrange: bytes=0-9\r\n\r\n"
 * ```
 */
export function requestHead(
  method: string,
  target: string,
  fields: readonly (readonly [string, string])[],
): Uint8Array {
  if (/\s/.test(target)) throw new TypeError(`a request target with white space: ${JSON.stringify(target)}`);
  let text = `${method} ${target} HTTP/1.1\r\n`;
  for (let i = 0; i < fields.length; i++) {
    const [k, v] = fields[i];
    if (LINE_BREAK.test(k) || LINE_BREAK.test(v)) throw new TypeError(`a header with a line break: ${k}`);
    text += `${k}: ${v}\r\n`;
  }
  return encoder.encode(`${text}\r\n`);
}

const LINE_BREAK = /[\r\n]/;
const encoder = new TextEncoder();
const utf8 = new TextDecoder();

function latin1(b: Uint8Array): string {
  // Heads are ASCII nearly always, and the decoder is many times faster than building the string by code.
  let ascii = true;
  for (let i = 0; i < b.length && ascii; i++) ascii = b[i] < 0x80;
  if (ascii) return utf8.decode(b);
  let s = "";
  for (let i = 0; i < b.length; i += 4096) {
    s += String.fromCharCode(...b.subarray(i, Math.min(b.length, i + 4096)));
  }
  return s;
}
