/**
 * Talking to one llama-server: JSON posts whose errors keep llama-server's status and message, and a
 * server-sent-events reader that yields each `data:` object as soon as its line arrives.
 *
 * @module
 */
import { HttpError } from "./http.ts";

/**
 * POSTs JSON to llama-server and returns the response; a non-2xx answer throws an {@linkcode HttpError} with
 * llama-server's status and message.
 *
 * @example
 * ```ts
 * const res = await postUpstream("http://127.0.0.1:8080", "/tokenize", { content: "hi" });
 * ```
 */
export async function postUpstream(
  base: string,
  path: string,
  body: unknown,
  signal?: AbortSignal,
): Promise<Response> {
  let res: Response;
  try {
    res = await fetch(base + path, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      signal,
    });
  } catch (err) {
    if (signal?.aborted) throw err;
    throw new HttpError(500, `llama-server at ${base} did not answer: ${(err as Error).message}`);
  }
  if (!res.ok) {
    const text = await res.text();
    throw new HttpError(res.status >= 400 && res.status < 600 ? res.status : 500, upstreamMessage(text));
  }
  return res;
}

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
 * Reads a server-sent-events body (a Response or raw chunks) and yields each `data:` JSON object; stops at `data: [DONE]`. An `error:`
 * event from llama-server is thrown as an Error with its message.
 *
 * @example
 * ```ts
 * for await (const ev of sseEvents(res)) console.log(ev);
 * ```
 */
export async function* sseEvents(source: Response | AsyncIterable<Uint8Array>): AsyncGenerator<any> {
  const chunks: AsyncIterable<Uint8Array> | null = source instanceof Response ? source.body : source;
  if (!chunks) return;
  const dec = new TextDecoder();
  let buf = "";
  let finished = false;
  for await (const value of chunks) {
    // After [DONE] the body is read to its end, so a kept-alive connection can be reused.
    if (finished) continue;
    buf += dec.decode(value, { stream: true });
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, nl).trimEnd();
      buf = buf.slice(nl + 1);
      if (line.startsWith("data:")) {
        const data = line.slice(line[5] === " " ? 6 : 5);
        if (data === "[DONE]") {
          finished = true;
          break;
        }
        const obj = JSON.parse(data);
        if (obj && typeof obj === "object" && "error" in obj && !("choices" in obj) && !("content" in obj)) {
          throw new Error(upstreamMessage(data));
        }
        yield obj;
      } else if (line.startsWith("error:")) {
        throw new Error(upstreamMessage(line.slice(6).trim()));
      }
    }
  }
}
