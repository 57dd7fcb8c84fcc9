/**
 * Runs an Ollama Go template here, to a prompt: what `/api/generate` does with a request's `template`
 * (Ollama's `template.Execute`), for the same forms the Jinja translation knows (`.System`, `.Prompt`,
 * `.Response`, `.Suffix`, `range .Messages` with `.Role`, `.Content`..., `if`/`else if`/`else`, variables,
 * `eq`/`ne`/`not`/`and`/`or`/`len`/`index`/`slice`/`printf`/`json`, and Ollama's `currentDate` and
 * `yesterdayDate`). Anything else is a {@linkcode TemplateError} naming the construct.
 *
 * The values are fed as Ollama feeds them: with a suffix, `.Prompt` and `.Suffix`; else, when the template
 * names `.Messages`, the messages collated (consecutive messages of a role merged, the system messages joined
 * into `.System`); else the template once per turn with `.System`, `.Prompt` and `.Response`, the last turn
 * cut after `.Response`.
 *
 * @module
 */
import {
  cutAfterResponse,
  type Expr,
  mentions,
  type Node,
  parseGoTemplate,
  TemplateError,
  TRANSLATED_FUNCS,
} from "./template.ts";

/** A message as the template sees it. */
export interface TemplateMessage {
  /** `system`, `user`, `assistant`, `tool`. */
  role: string;
  /** The text. */
  content: string;
  /** The model's thinking (assistant turns). */
  thinking?: string;
  /** The message's images (base64), for a template that tests `.Images`. */
  images?: string[];
}

/**
 * Ollama messages as a template sees them (roles in lower case, text content, thinking, images).
 *
 * @example
 * ```ts
 * templateMessages([{ role: "User", content: "hi" }]); // [{ role: "user", content: "hi" }]
 * ```
 */
export function templateMessages(
  messages: { role?: unknown; content?: unknown; thinking?: string | null; images?: string[] | null }[],
): TemplateMessage[] {
  return messages.map((m) => ({
    role: String(m.role ?? "").toLowerCase(),
    content: typeof m.content === "string" ? m.content : "",
    ...(m.thinking ? { thinking: m.thinking } : {}),
    ...(m.images?.length ? { images: m.images } : {}),
  }));
}

/** What a template is run with (Ollama's `template.Values`). */
export interface TemplateValues {
  /** The conversation: system, the model's messages, the prompt. */
  messages: TemplateMessage[];
  /** With `suffix`: the text before the gap (fill in the middle). */
  prompt?: string;
  /** The text after the gap. */
  suffix?: string;
  /** The request's `think`. */
  think?: boolean | string | null;
}

/** A Go struct (a message): a field it lacks is an error, as in Go. */
class Struct {
  constructor(readonly type: string, readonly fields: Record<string, unknown>) {}
}

/** The names Ollama gives a template; one it does not give in this mode is nil, any other an error. */
const ROOT = [
  "System",
  "Prompt",
  "Response",
  "Suffix",
  "Messages",
  "Tools",
  "Think",
  "ThinkLevel",
  "IsThinkSet",
];

/**
 * The functions a template run here may call: those the Jinja translation has, and Ollama's own that only
 * make sense when executed.
 *
 * @example
 * ```ts
 * console.log(EXECUTED_FUNCS.includes("currentDate")); // true
 * ```
 */
export const EXECUTED_FUNCS: readonly string[] = [
  ...TRANSLATED_FUNCS,
  "print",
  "println",
  "currentDate",
  "yesterdayDate",
];
const FUNCS = [...EXECUTED_FUNCS];

class Break {}
class Continue {}

/** Go's truth: false, 0, nil, and empty strings, lists and maps are false. */
function truth(v: unknown): boolean {
  if (v === null || v === undefined || v === false || v === 0 || v === "") return false;
  if (Array.isArray(v)) return v.length > 0;
  if (v instanceof Struct) return true;
  if (typeof v === "object") return Object.keys(v as object).length > 0;
  return true;
}

/** Go's `json.Marshal`: compact, `<`, `>`, `&`, U+2028 and U+2029 escaped. */
function goJson(v: unknown): string {
  const plain = (x: unknown): unknown =>
    x instanceof Struct
      ? Object.fromEntries(Object.entries(x.fields).map(([k, f]) => [k, plain(f)]))
      : Array.isArray(x)
      ? x.map(plain)
      : x;
  return (JSON.stringify(plain(v)) ?? "null").replace(
    /[<>&\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/** A value as text/template prints it (fmt's `%v`). */
function show(v: unknown): string {
  if (v === null || v === undefined) return "<no value>";
  if (typeof v === "string") return v;
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  if (Array.isArray(v)) return `[${v.map(show).join(" ")}]`;
  // Ollama's map types (tool call arguments, properties) print as JSON through their String methods.
  if (!(v instanceof Struct)) return goJson(v);
  throw new TemplateError(`printing a ${v.type} has no text form; print one of its fields`);
}

function sprintf(format: string, args: unknown[]): string {
  let n = 0;
  return format.replace(/%([-+# 0]*\d*(?:\.\d+)?)([a-zA-Z%])/g, (all, flags: string, verb: string) => {
    if (verb === "%") return "%";
    if (flags) throw new TemplateError(`printf "${all}" is not supported (only %s, %v, %d, %q)`);
    if (n >= args.length) return `%!${verb}(MISSING)`;
    const a = args[n++];
    switch (verb) {
      case "s":
      case "v":
        return show(a);
      case "d":
        return typeof a === "number" ? String(Math.trunc(a)) : `%!d(${show(a)})`;
      case "q":
        return typeof a === "string" ? JSON.stringify(a) : `%!q(${show(a)})`;
      default:
        throw new TemplateError(`printf "%${verb}" is not supported (only %s, %v, %d, %q)`);
    }
  });
}

function date(daysBack: number): string {
  const d = new Date(Date.now() - daysBack * 86_400_000);
  const p = (x: number) => String(x).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
}

function compare(fn: string, a: unknown, b: unknown): boolean {
  const ok = (typeof a === "number" && typeof b === "number") ||
    (typeof a === "string" && typeof b === "string");
  if (!ok) throw new TemplateError(`${fn} of ${show(a)} and ${show(b)}: incompatible types for comparison`);
  const [x, y] = [a as number | string, b as number | string];
  return fn === "lt" ? x < y : fn === "le" ? x <= y : fn === "gt" ? x > y : x >= y;
}

/** Variables in nested scopes: `$x :=` declares in the innermost, `$x =` sets the nearest. */
type Frames = Map<string, unknown>[];

interface Env {
  root: Record<string, unknown>;
  dot: unknown;
  frames: Frames;
}

function lookup(env: Env, name: string): unknown {
  if (name === "$") return env.root;
  for (let i = env.frames.length - 1; i >= 0; i--) {
    if (env.frames[i].has(name)) return env.frames[i].get(name);
  }
  throw new TemplateError(`undefined variable "${name}"`);
}

function fieldOf(v: unknown, name: string, isRoot: boolean): unknown {
  if (isRoot) {
    if (!ROOT.includes(name)) throw new TemplateError(`.${name} is not a value Ollama gives a template`);
    return (v as Record<string, unknown>)[name] ?? null;
  }
  if (v instanceof Struct) {
    if (!(name in v.fields)) throw new TemplateError(`can't evaluate field ${name} in type ${v.type}`);
    return v.fields[name];
  }
  if (v !== null && typeof v === "object" && !Array.isArray(v)) {
    return (v as Record<string, unknown>)[name] ?? null;
  }
  throw new TemplateError(`can't evaluate field ${name} of ${v === null ? "nil" : show(v)}`);
}

function evaluate(e: Expr, env: Env): unknown {
  switch (e.k) {
    case "str":
      return e.v;
    case "num":
      return Number(e.v);
    case "bool":
      return e.v;
    case "field": {
      let v: unknown;
      let isRoot: boolean;
      if (e.base === ".") {
        v = env.dot;
        isRoot = env.dot === env.root;
      } else {
        v = lookup(env, e.base);
        isRoot = v === env.root;
      }
      for (const p of e.path) {
        v = fieldOf(v, p, isRoot);
        isRoot = false;
      }
      return v;
    }
    case "call":
      return call(e.fn, e.args, env);
  }
}

function call(fn: string, argExprs: Expr[], env: Env): unknown {
  // and/or stop at the first argument that decides, as Go's do.
  if (fn === "and" || fn === "or") {
    let v: unknown;
    for (const a of argExprs) {
      v = evaluate(a, env);
      if (fn === "and" ? !truth(v) : truth(v)) return v;
    }
    return v;
  }
  const a = argExprs.map((x) => evaluate(x, env));
  const need = (n: number) => {
    if (a.length < n) throw new TemplateError(`${fn} needs ${n} argument(s)`);
  };
  switch (fn) {
    case "eq":
      need(2);
      return a.slice(1).some((b) => b === a[0]);
    case "ne":
      need(2);
      return a[0] !== a[1];
    case "lt":
    case "le":
    case "gt":
    case "ge":
      need(2);
      return compare(fn, a[0], a[1]);
    case "not":
      need(1);
      return !truth(a[0]);
    case "len": {
      need(1);
      const v = a[0];
      if (typeof v === "string") return new TextEncoder().encode(v).length;
      if (Array.isArray(v)) return v.length;
      if (v && typeof v === "object" && !(v instanceof Struct)) return Object.keys(v).length;
      throw new TemplateError(`len of ${v === null ? "nil" : show(v)}`);
    }
    case "index": {
      need(2);
      let v = a[0];
      for (const i of a.slice(1)) {
        if (Array.isArray(v) && typeof i === "number") {
          if (i < 0 || i >= v.length) throw new TemplateError(`index out of range: ${i}`);
          v = v[i];
        } else if (v && typeof v === "object" && !(v instanceof Struct) && typeof i === "string") {
          v = (v as Record<string, unknown>)[i] ?? null;
        } else throw new TemplateError(`can't index ${show(v)} with ${show(i)}`);
      }
      return v;
    }
    case "slice": {
      need(1);
      const v = a[0];
      if (a.length > 3) throw new TemplateError("slice with 3 indexes is not supported");
      if (!Array.isArray(v) && typeof v !== "string") throw new TemplateError(`can't slice ${show(v)}`);
      const from = (a[1] as number | undefined) ?? 0;
      const to = (a[2] as number | undefined) ?? v.length;
      if (from < 0 || to > v.length || from > to) throw new TemplateError(`slice indexes out of range`);
      return v.slice(from, to);
    }
    case "printf":
      need(1);
      if (typeof a[0] !== "string") throw new TemplateError("printf needs a format string");
      return sprintf(a[0], a.slice(1));
    case "print":
    case "println": {
      // fmt.Sprint puts a space between operands when neither is a string; Sprintln always, and a newline.
      if (fn === "println") return a.map(show).join(" ") + "\n";
      let out = "";
      a.forEach((v, i) => {
        if (i > 0 && typeof v !== "string" && typeof a[i - 1] !== "string") out += " ";
        out += show(v);
      });
      return out;
    }
    case "json":
      need(1);
      return goJson(a[0]);
    case "currentDate":
      return date(0);
    case "yesterdayDate":
      return date(1);
  }
  throw new TemplateError(`the function "${fn}" is not supported`);
}

function set(env: Env, name: string, v: unknown): void {
  for (let i = env.frames.length - 1; i >= 0; i--) {
    if (env.frames[i].has(name)) {
      env.frames[i].set(name, v);
      return;
    }
  }
  env.frames[env.frames.length - 1].set(name, v);
}

function run(nodes: Node[], env: Env, out: string[]): void {
  for (const n of nodes) {
    switch (n.k) {
      case "text":
        out.push(n.text);
        break;
      case "print":
        out.push(show(evaluate(n.e, env)));
        break;
      case "set":
        set(env, n.name, evaluate(n.e, env));
        break;
      case "if": {
        const branch = n.branches.find((b) => truth(evaluate(b.cond, env)));
        const body = branch ? branch.body : n.else;
        if (body) run(body, { ...env, frames: [...env.frames, new Map()] }, out);
        break;
      }
      case "range": {
        const over = evaluate(n.over, env);
        let items: [unknown, unknown][];
        if (Array.isArray(over)) items = over.map((v, i) => [i, v]);
        else if (typeof over === "number") {
          items = Array.from({ length: Math.max(0, over) }, (_, i) => [i, i]);
        } else if (over === null || over === undefined) items = [];
        else if (typeof over === "object" && !(over instanceof Struct)) {
          items = Object.keys(over).sort().map((k) => [k, (over as Record<string, unknown>)[k]]);
        } else throw new TemplateError(`range can't iterate over ${show(over)}`);
        if (!items.length) {
          if (n.else) run(n.else, { ...env, frames: [...env.frames, new Map()] }, out);
          break;
        }
        for (const [k, v] of items) {
          const frame = new Map<string, unknown>();
          if (n.key) frame.set(n.key, k);
          if (n.value) frame.set(n.value, v);
          try {
            run(n.body, { ...env, dot: v, frames: [...env.frames, frame] }, out);
          } catch (err) {
            if (err instanceof Break) break;
            if (!(err instanceof Continue)) throw err;
          }
        }
        break;
      }
      case "break":
        throw new Break();
      case "continue":
        throw new Continue();
    }
  }
}

function execute(nodes: Node[], root: Record<string, unknown>): string {
  const out: string[] = [];
  run(nodes, { root, dot: root, frames: [new Map()] }, out);
  return out.join("");
}

/** Ollama's collate: the system messages joined by a blank line; consecutive messages of a role merged. */
function collate(messages: TemplateMessage[]): { system: string; merged: TemplateMessage[] } {
  const system: string[] = [];
  const merged: TemplateMessage[] = [];
  for (const m of messages) {
    if (m.role === "system") system.push(m.content);
    const last = merged[merged.length - 1];
    if (last && last.role === m.role && m.role !== "tool") last.content += "\n\n" + m.content;
    else merged.push({ ...m });
  }
  return { system: system.join("\n\n"), merged };
}

/**
 * Renders an Ollama Go template to a prompt, as Ollama's `template.Execute` does (see the module doc). A
 * construct that is not supported, or a template that does not parse, is a {@linkcode TemplateError}.
 *
 * @example
 * ```ts
 * renderGoTemplate("{{ if .System }}[{{ .System }}] {{ end }}{{ .Prompt }} =>", {
 *   messages: [{ role: "system", content: "terse" }, { role: "user", content: "hi" }],
 * }); // "[terse] hi =>"
 * ```
 */
export function renderGoTemplate(template: string, values: TemplateValues): string {
  let nodes: Node[];
  try {
    nodes = parseGoTemplate(template, FUNCS);
  } catch (err) {
    if (err instanceof TemplateError) {
      throw new TemplateError(
        err.message.replace(/has no Jinja translation/g, "is not supported")
          .replace(/cannot translate/g, "cannot use"),
      );
    }
    throw err;
  }
  const think = values.think;
  const thinkFields = {
    Think: think === true || ["low", "medium", "high", "max"].includes(String(think)),
    ThinkLevel: typeof think === "string" ? think : think === true ? "medium" : "",
    IsThinkSet: think !== undefined && think !== null,
  };
  if (values.prompt && values.suffix) {
    return execute(nodes, { Prompt: values.prompt, Suffix: values.suffix, Response: "", ...thinkFields });
  }
  const { system, merged } = collate(values.messages);
  if (mentions(nodes, "messages")) {
    const messages = merged.map((m) =>
      new Struct("*template.templateMessage", {
        Role: m.role,
        Content: m.content,
        Thinking: m.thinking ?? "",
        Images: m.images ?? [],
        ToolCalls: [],
        ToolName: "",
        ToolCallID: "",
      })
    );
    return execute(nodes, { System: system, Messages: messages, Tools: null, Response: "", ...thinkFields });
  }
  // Once per turn, the last one cut after `.Response`.
  let out = "";
  let sys = "", prompt = "", response = "";
  const turn = () => {
    out += execute(nodes, { System: sys, Prompt: prompt, Response: response, ...thinkFields });
    sys = prompt = response = "";
  };
  for (const m of merged) {
    if (m.role === "system") {
      if (prompt !== "" || response !== "") turn();
      sys = m.content;
    } else if (m.role === "user") {
      if (response !== "") turn();
      prompt = m.content;
    } else if (m.role === "assistant") response = m.content;
  }
  return out +
    execute(cutAfterResponse(nodes), { System: sys, Prompt: prompt, Response: response, ...thinkFields });
}
