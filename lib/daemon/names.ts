/**
 * Model names and blob digests as Ollama validates them. A name is `[host/][namespace/]model[:tag]`; every
 * part starts with a letter, digit or `_` and goes on with letters, digits, `_`, `-`, `.` (no `.` in the
 * namespace, `:` only in the host for a port); parts are 1 to 80 characters (host 350). A name that passes
 * cannot hold `..`, a leading `/` or any other way out of the model stores: the daemon looks names up in its
 * catalogue and never turns request text into a path.
 *
 * @module
 */

/** A name split into its parts (missing parts are empty). */
export interface ModelName {
  /** Registry host (may hold a port). */
  host: string;
  /** Namespace (user or organisation). */
  namespace: string;
  /** Model. */
  model: string;
  /** Tag, `latest` when not given. */
  tag: string;
}

function validPart(kind: "host" | "namespace" | "model" | "tag", s: string): boolean {
  const max = kind === "host" ? 350 : 80;
  if (s.length < 1 || s.length > max) return false;
  if (!/^[A-Za-z0-9_]/.test(s)) return false;
  for (let i = 1; i < s.length; i++) {
    const c = s[i];
    if (/[A-Za-z0-9_-]/.test(c)) continue;
    if (c === "." && kind !== "namespace") continue;
    if (c === ":" && kind === "host") continue;
    return false;
  }
  return true;
}

/**
 * Splits and validates a model name; returns undefined when it is not a valid Ollama name.
 *
 * @example
 * ```ts
 * parseModelName("qwen3:4b"); // { host: "", namespace: "", model: "qwen3", tag: "4b" }
 * parseModelName("../../etc/passwd"); // undefined
 * ```
 */
export function parseModelName(name: string): ModelName | undefined {
  let s = name;
  if (s.includes("://")) s = s.slice(s.indexOf("://") + 3);
  let tag = "latest";
  if (s.lastIndexOf(":") > s.lastIndexOf("/")) {
    tag = s.slice(s.lastIndexOf(":") + 1);
    s = s.slice(0, s.lastIndexOf(":"));
    if (!validPart("tag", tag)) return undefined;
  }
  const parts = s.split("/");
  if (parts.length > 3) return undefined;
  const [host, namespace, model] = parts.length === 3
    ? parts
    : parts.length === 2
    ? ["", parts[0], parts[1]]
    : ["", "", parts[0]];
  if (!validPart("model", model)) return undefined;
  if (parts.length >= 2 && !validPart("namespace", namespace)) return undefined;
  if (parts.length === 3 && !validPart("host", host)) return undefined;
  return { host, namespace, model, tag };
}

/** True when `name` is a valid Ollama model name. */
export function isValidModelName(name: string): boolean {
  return parseModelName(name) !== undefined;
}

/**
 * The lookup key of a name: lower-cased, with `:latest` added when there is no tag, and Ollama's default
 * host and namespace (`registry.ollama.ai/library/`) removed.
 *
 * @example
 * ```ts
 * normalizeName("Llama3"); // "llama3:latest"
 * normalizeName("registry.ollama.ai/library/llama3:8b"); // "llama3:8b"
 * ```
 */
export function normalizeName(name: string): string {
  let s = name.toLowerCase();
  s = s.replace(/^https?:\/\//, "");
  s = s.replace(/^registry\.ollama\.ai\//, "");
  s = s.replace(/^library\//, "");
  if (!(s.lastIndexOf(":") > s.lastIndexOf("/"))) s += ":latest";
  return s;
}

/** A blob digest as Ollama accepts it: `sha256:` or `sha256-` and 64 hex digits, nothing else. */
export const DIGEST_RE: RegExp = /^sha256[:-][0-9a-fA-F]{64}$/;

/**
 * Validates a digest and returns its canonical file name (`sha256-<hex>`, lower case), or undefined.
 *
 * @example
 * ```ts
 * digestFileName("sha256:" + "a".repeat(64)); // "sha256-aaaa..."
 * digestFileName("sha256:../../x"); // undefined
 * ```
 */
export function digestFileName(digest: string): string | undefined {
  if (!DIGEST_RE.test(digest)) return undefined;
  return `sha256-${digest.slice(7).toLowerCase()}`;
}
