/**
 * Thinking split out of a plain completion, as Ollama splits it when it runs a Go template itself: the tags
 * that surround thinking, inferred from a template (Ollama's `thinking.InferTags`), a parser that takes the
 * answer piece by piece and tells thinking from the response (`thinking.Parser`), and the same parser over a
 * stream of llama-server events.
 *
 * @module
 */
import { type Expr, type Node, parseGoTemplate } from "./template.ts";
import { EXECUTED_FUNCS } from "./template_exec.ts";
import type { EventParser, GenEvent } from "./events.ts";
import { postJson } from "../upstream/client.ts";

/** The tags around thinking (`<think>` and `</think>`). */
export interface ThinkingTags {
  /** The opening tag. */
  open: string;
  /** The closing tag. */
  close: string;
}

/** A top-level field reference (`.Name`, a Go FieldNode); `$.Name` and `$m.Name` are variables in Go. */
function fieldNamed(e: Expr, name: string): boolean {
  if (e.k === "field") return e.base === "." && e.path[0] === name;
  return e.k === "call" && e.args.some((a) => fieldNamed(a, name));
}

/**
 * The thinking tags of an Ollama Go template, found as Ollama's `thinking.InferTags` finds them: at each
 * `.Thinking` inside a `range` over `.Messages`, the first and the last text of the nearest enclosing list
 * (trimmed), the last such place winning. Undefined when either tag is not found or the template does not
 * parse.
 *
 * @example
 * ```ts
 * inferThinkingTags(
 *   "{{ range .Messages }}{{ if .Thinking }}<think>{{ .Thinking }}</think>{{ end }}{{ .Content }}{{ end }}",
 * ); // { open: "<think>", close: "</think>" }
 * ```
 */
export function inferThinkingTags(template: string | null | undefined): ThinkingTags | undefined {
  if (!template) return undefined;
  // `/api/tags` asks this of every model: a template is read once.
  if (inferred.has(template)) return inferred.get(template);
  const tags = inferTags(template);
  if (inferred.size >= 256) inferred.delete(inferred.keys().next().value!);
  inferred.set(template, tags);
  return tags;
}

const inferred = new Map<string, ThinkingTags | undefined>();

/**
 * The thinking tags of a model's own Go template when that template is the one llama-server runs (translated
 * to Jinja): a pulled model whose GGUF template can do more is served that one, whose thinking llama-server
 * parses itself (as Ollama, which then uses the GGUF's template).
 *
 * @example
 * ```ts ignore
 * const tags = servedThinkingTags(model.settings); // { open: "<think>", close: "</think>" }
 * ```
 */
export function servedThinkingTags(
  settings: { template?: string; chatTemplateFile?: string } | undefined,
): ThinkingTags | undefined {
  return settings?.chatTemplateFile ? inferThinkingTags(settings.template) : undefined;
}

function inferTags(template: string): ThinkingTags | undefined {
  let nodes: Node[];
  try {
    nodes = parseGoTemplate(template, [...EXECUTED_FUNCS]);
  } catch {
    return undefined;
  }
  let open = "";
  let close = "";
  const text = (n: Node | undefined) => n?.k === "text" ? n.text.trim() : undefined;
  // An expression met inside `list` (the nearest enclosing list of nodes), under the range `over` (if any).
  const expr = (e: Expr, list: Node[], over: Expr | undefined) => {
    if (!fieldNamed(e, "Thinking") || !over || !fieldNamed(over, "Messages")) return;
    open = text(list[0]) ?? open;
    close = text(list[list.length - 1]) ?? close;
  };
  const walk = (list: Node[], over: Expr | undefined): void => {
    for (const n of list) {
      switch (n.k) {
        case "print":
        case "set":
          expr(n.e, list, over);
          break;
        case "if":
          n.branches.forEach((b, i) => {
            // In Go an `else if` is an `if` alone in the else list: its condition's nearest list is that one.
            expr(b.cond, i === 0 ? list : [n], over);
            walk(b.body, over);
          });
          if (n.else) walk(n.else, over);
          break;
        case "range":
          expr(n.over, list, n.over);
          walk(n.body, n.over);
          if (n.else) walk(n.else, n.over);
          break;
      }
    }
  };
  walk(nodes, undefined);
  return open && close ? { open, close } : undefined;
}

/**
 * Whether a `think` value turns thinking on (Ollama's `ThinkValue.Bool`).
 *
 * @example
 * ```ts
 * thinkingOn("low"); // true
 * thinkingOn(false); // false
 * ```
 */
export function thinkingOn(think: unknown): boolean {
  return think === true || ["low", "medium", "high", "max"].includes(String(think));
}

/** Go's `unicode.IsSpace` at the start of a string. */
const LEADING_SPACE = /^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/;
const trimLeft = (s: string) => s.replace(LEADING_SPACE, "");

type State = "opening" | "startedEatingSpace" | "thinking" | "doneEatingSpace" | "done";

/**
 * Tells thinking from the response in an answer given piece by piece, as Ollama's `thinking.Parser` does: an
 * answer that starts (after white space) with the opening tag thinks until the closing tag; white space after
 * either tag is dropped; an answer that starts with anything else is all response. A piece that may be the
 * start of a tag is held until the next one shows what it is (and dropped when none comes, as Ollama drops it).
 *
 * @example
 * ```ts
 * const p = new ThinkingParser({ open: "<think>", close: "</think>" });
 * p.add("<think>hm</th"); // { thinking: "hm", response: "" }
 * p.add("ink> Yes."); // { thinking: "", response: "Yes." }
 * ```
 */
export class ThinkingParser {
  #tags: ThinkingTags;
  #state: State = "opening";
  #acc = "";

  /** A parser for one answer. */
  constructor(tags: ThinkingTags) {
    this.#tags = tags;
  }

  /** True once the thinking is over: what comes next is response, as it is. */
  get done(): boolean {
    return this.#state === "done";
  }

  /** The thinking and the response that the next piece makes certain. */
  add(content: string): { thinking: string; response: string } {
    this.#acc += content;
    let thinking = "";
    let response = "";
    for (;;) {
      const r = this.#eat();
      thinking += r.thinking;
      response += r.response;
      if (!r.more) return { thinking, response };
    }
  }

  #eat(): { thinking: string; response: string; more: boolean } {
    const { open, close } = this.#tags;
    const none = { thinking: "", response: "", more: false };
    switch (this.#state) {
      case "opening": {
        const trimmed = trimLeft(this.#acc);
        if (trimmed.startsWith(open)) {
          const after = trimLeft(trimmed.slice(open.length));
          this.#acc = after;
          this.#state = after === "" ? "startedEatingSpace" : "thinking";
          return { ...none, more: true };
        }
        if (open.startsWith(trimmed)) return none; // nothing but white space, or a partial tag, so far
        // No opening tag: no thinking; the white space is the response's own.
        this.#state = "done";
        const all = this.#acc;
        this.#acc = "";
        return { ...none, response: all };
      }
      case "startedEatingSpace": {
        const trimmed = trimLeft(this.#acc);
        this.#acc = "";
        if (trimmed === "") return none;
        this.#state = "thinking";
        this.#acc = trimmed;
        return { ...none, more: true };
      }
      case "thinking": {
        const acc = this.#acc;
        const at = acc.indexOf(close);
        if (at >= 0) {
          const rest = trimLeft(acc.slice(at + close.length));
          this.#acc = "";
          this.#state = rest === "" ? "doneEatingSpace" : "done";
          return { ...none, thinking: acc.slice(0, at), response: rest };
        }
        const held = overlap(acc, close);
        this.#acc = acc.slice(acc.length - held);
        return { ...none, thinking: acc.slice(0, acc.length - held) };
      }
      case "doneEatingSpace": {
        const trimmed = trimLeft(this.#acc);
        this.#acc = "";
        if (trimmed !== "") this.#state = "done";
        return { ...none, response: trimmed };
      }
      case "done": {
        const acc = this.#acc;
        this.#acc = "";
        return { ...none, response: acc };
      }
    }
  }
}

/** The longest end of `s` that is a start of `tag`. */
function overlap(s: string, tag: string): number {
  for (let i = Math.min(tag.length, s.length); i > 0; i--) {
    if (s.endsWith(tag.slice(0, i))) return i;
  }
  return 0;
}

/**
 * A parser of llama-server events whose text goes through a {@linkcode ThinkingParser}: text events become
 * thinking and text events. `raw` keeps the answer as the model wrote it (Ollama's `context` is made from it).
 * With `startsInside`, the prompt ended with the opening tag, so the answer starts inside the thinking (as
 * Ollama feeds the parser the tag first).
 *
 * @example
 * ```ts
 * const p = new ThinkingEventParser(new CompletionEventParser(), { open: "<think>", close: "</think>" }, true);
 * const events = [...p.push(bytes), ...p.end()];
 * ```
 */
export class ThinkingEventParser implements EventParser {
  /** The answer as the model wrote it, tags and all. */
  raw = "";
  #inner: EventParser;
  #parser: ThinkingParser;

  /** Wraps `inner`. */
  constructor(inner: EventParser, tags: ThinkingTags, startsInside: boolean) {
    this.#inner = inner;
    this.#parser = new ThinkingParser(tags);
    if (startsInside) this.#parser.add(tags.open);
  }

  /** The events the next bytes complete. */
  push(bytes: Uint8Array): GenEvent[] {
    return this.#split(this.#inner.push(bytes));
  }

  /**
   * The last events. What the parser still holds at the end (white space or part of a tag, such as a closing
   * tag cut off by the length limit) is dropped, as Ollama drops it; `raw` keeps it.
   */
  end(): GenEvent[] {
    return this.#split(this.#inner.end());
  }

  #split(events: GenEvent[]): GenEvent[] {
    const out: GenEvent[] = [];
    for (const ev of events) {
      if (ev.kind !== "text") {
        out.push(ev);
        continue;
      }
      this.raw += ev.text;
      // Once the thinking is over the text passes as it came (keeping the fast path's bytes).
      if (this.#parser.done) {
        out.push(ev);
        continue;
      }
      const { thinking, response } = this.#parser.add(ev.text);
      const from = out.length;
      if (thinking) out.push({ kind: "thinking", text: thinking });
      if (response) out.push({ kind: "text", text: response });
      if (ev.logprobs) {
        if (out.length > from) {
          (out[out.length - 1] as { logprobs?: typeof ev.logprobs }).logprobs = ev.logprobs;
        } else out.push({ kind: "text", text: "", logprobs: ev.logprobs });
      }
    }
    return out;
  }
}

/**
 * Whether the answer to a chat request starts inside the thinking: its prompt ends with the opening tag (as
 * Ollama checks the prompt it rendered). The prompt is the model's Go template run here (`render`, free beside
 * llama-server's work); when the template cannot be run here, it is llama-server's own rendering of `chat`
 * (`/apply-template`); when neither can be had, the answer does not start inside.
 *
 * @example
 * ```ts ignore
 * const inside = await startsInside(tags, () => renderGoTemplate(template, values), lease.url, upstream);
 * ```
 */
export async function startsInside(
  tags: ThinkingTags,
  render: () => string,
  url: string,
  chat: Record<string, unknown>,
): Promise<boolean> {
  let prompt: string;
  try {
    prompt = render();
  } catch {
    try {
      prompt = String((await postJson(url, "/apply-template", chat)).prompt ?? "");
    } catch {
      prompt = "";
    }
  }
  return prompt.trimEnd().endsWith(tags.open);
}
