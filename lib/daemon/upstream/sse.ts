/**
 * Reading one llama-server's answers: its error messages, and a server-sent-events splitter that gives each
 * `data:` payload as soon as its line arrives (requests go through stream_client.ts).
 *
 * @module
 */

/** Extracts llama-server's error message from an error body (`{"error": {"message"}}` or text). */
export function upstreamMessage(text: string): string {
  try {
    const v = JSON.parse(text);
    if (typeof v?.error === "string") return v.error;
    if (typeof v?.error?.message === "string") return v.error.message;
  } catch { /* not JSON */ }
  return text.trim() || "llama-server returned an error";
}

/**
 * Splits a server-sent-events byte stream into its `data:` payloads as the bytes arrive, without parsing them:
 * the streaming parsers try their fast patterns on the raw text first. `data: [DONE]` sets {@linkcode done};
 * an `error:` event from llama-server is thrown as an Error with its message.
 *
 * @example
 * ```ts
 * const sse = new SseSplitter();
 * for (const data of sse.push(new TextEncoder().encode('data: {"content":"hi"}\n\n'))) console.log(data);
 * ```
 */
export class SseSplitter {
  /** Whether `data: [DONE]` has been seen (what follows it is ignored). */
  done = false;
  #dec = new TextDecoder();
  #buf = "";
  #endedLine = true;

  /**
   * Whether nothing is held over: the bytes so far ended with a whole line (so no partial line, nor part of a
   * character, waits for the next bytes). Then the next bytes may be read without this splitter.
   */
  get idle(): boolean {
    return this.#endedLine && this.#buf === "" && !this.done;
  }

  /** Takes the next bytes; returns the `data:` payloads they complete. */
  push(chunk: Uint8Array): string[] {
    const out: string[] = [];
    if (this.done) return out;
    if (chunk.length) this.#endedLine = chunk[chunk.length - 1] === 10;
    this.#buf += this.#dec.decode(chunk, { stream: true });
    let start = 0;
    let nl: number;
    const buf = this.#buf;
    while ((nl = buf.indexOf("\n", start)) >= 0) {
      let end = nl;
      if (end > start && buf.charCodeAt(end - 1) === 13) end--;
      if (buf.startsWith("data:", start)) {
        const data = buf.slice(start + (buf.charCodeAt(start + 5) === 32 ? 6 : 5), end);
        if (data === "[DONE]") {
          this.done = true;
          this.#buf = "";
          return out;
        }
        out.push(data);
      } else if (buf.startsWith("error:", start)) {
        throw new Error(upstreamMessage(buf.slice(start + 6, end).trim()));
      }
      start = nl + 1;
    }
    this.#buf = start === 0 ? buf : buf.slice(start);
    return out;
  }
}

/**
 * Parses one `data:` payload; an `{"error": ...}` object from llama-server is thrown as an Error with its
 * message.
 */
export function parseSseData(data: string): any {
  const obj = JSON.parse(data);
  if (obj && typeof obj === "object" && "error" in obj && !("choices" in obj) && !("content" in obj)) {
    throw new Error(upstreamMessage(data));
  }
  return obj;
}
