/**
 * Ollama's Go chat templates (a Modelfile's TEMPLATE) translated to a Jinja chat template that llama-server
 * renders (`--chat-template-file`), for the forms Ollama's library uses: `.System`, `.Prompt`, `.Response`,
 * `range .Messages` with `.Role`, `.Content`, `.ToolCalls`, `if`/`else if`/`else`, `eq`/`ne`/`not`/`and`/`or`,
 * `len`, `slice`, `index`, `printf "%s"`, `json`, variables (`$x := ...`, `$x = ...`), `break`/`continue`,
 * `.Tools`, and `{{-`/`-}}` trimming. Anything else is a {@linkcode TemplateError} naming the construct.
 *
 * The Jinja reproduces what Ollama's `template.Execute` feeds its template: with `.Messages`, the system
 * messages joined and consecutive messages of one role merged (`collate`); without, the template run once per
 * turn with `.System`, `.Prompt` and `.Response`, the last turn cut after `.Response`. Every piece of literal
 * text is written as a Jinja string (`{{ "..." }}`) so that llama-server's `trim_blocks`/`lstrip_blocks`
 * cannot change it. A value printed as JSON (`json`, a tool, tool call arguments) is written as Go's
 * `json.Marshal` writes it: no space after `:` and `,`, and `<`, `>`, `&`, U+2028, U+2029 escaped as `\u003c`...
 * Known difference: keys keep the order the request gave them, where Go writes a tool's fields in its struct
 * order (the official clients send that order).
 *
 * @module
 */

/**
 * A Go template that cannot be translated (or does not parse); the message names the construct.
 *
 * @example
 * ```ts
 * try { goTemplateToJinja("{{ template \"x\" }}"); } catch (e) { if (e instanceof TemplateError) console.log(e.message); }
 * ```
 */
export class TemplateError extends Error {
  /** Builds the error. */
  constructor(message: string) {
    super(message);
    this.name = "TemplateError";
  }
}

// ---------------------------------------------------------------------------------------------------------
// Lexing and parsing (the subset of text/template the library uses)

type Tok = { kind: "text"; text: string } | { kind: "action"; body: string };

/** Splits a template into text and actions, applying `{{-` and `-}}` to the text around them. */
function lex(src: string): Tok[] {
  const out: Tok[] = [];
  let i = 0;
  let trimNext = false;
  while (i < src.length) {
    const open = src.indexOf("{{", i);
    let text = open < 0 ? src.slice(i) : src.slice(i, open);
    if (trimNext) text = text.replace(/^[ \t\r\n]+/, "");
    if (open < 0) {
      if (text) out.push({ kind: "text", text });
      break;
    }
    let start = open + 2;
    if (src.startsWith("- ", start) || src.startsWith("-\t", start) || src.startsWith("-\n", start)) {
      text = text.replace(/[ \t\r\n]+$/, "");
      start += 1;
    }
    if (text) out.push({ kind: "text", text });
    // The action ends at the first `}}` outside a string.
    let j = start;
    let quote = "";
    for (; j < src.length; j++) {
      const c = src[j];
      if (quote) {
        if (c === "\\" && quote === '"') j++;
        else if (c === quote) quote = "";
      } else if (c === '"' || c === "`") quote = c;
      else if (src.startsWith("}}", j)) break;
    }
    if (j >= src.length) throw new TemplateError(`unclosed action: ${src.slice(open, open + 40)}`);
    let body = src.slice(start, j);
    trimNext = false;
    if (/[ \t\r\n]-$/.test(body)) {
      body = body.slice(0, -1);
      trimNext = true;
    }
    body = body.trim();
    if (!(body.startsWith("/*") && body.endsWith("*/"))) out.push({ kind: "action", body });
    i = j + 2;
  }
  return out;
}

/** An expression of a pipeline. */
export type Expr =
  | { k: "field"; base: string; path: string[] } // base: "." | "$" | "$name"
  | { k: "str"; v: string }
  | { k: "num"; v: string }
  | { k: "bool"; v: boolean }
  | { k: "call"; fn: string; args: Expr[] };

/** A node of a parsed template. */
export type Node =
  | { k: "text"; text: string }
  | { k: "print"; e: Expr }
  | { k: "set"; name: string; e: Expr }
  | { k: "if"; branches: { cond: Expr; body: Node[] }[]; else?: Node[] }
  | { k: "range"; key?: string; value?: string; over: Expr; body: Node[]; else?: Node[] }
  | { k: "break" }
  | { k: "continue" };

const FUNCS = [
  "eq",
  "ne",
  "lt",
  "le",
  "gt",
  "ge",
  "not",
  "and",
  "or",
  "len",
  "json",
  "printf",
  "slice",
  "index",
];

/** Tokens of a pipeline: words, strings, parentheses, `|`, `:=`, `=`, `,`. */
function words(s: string): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < s.length) {
    const c = s[i];
    if (/\s/.test(c)) {
      i++;
    } else if (c === '"') {
      let j = i + 1;
      while (j < s.length && s[j] !== '"') j += s[j] === "\\" ? 2 : 1;
      out.push(s.slice(i, j + 1));
      i = j + 1;
    } else if (c === "`") {
      const j = s.indexOf("`", i + 1);
      out.push(s.slice(i, j + 1));
      i = j + 1;
    } else if ("()|,".includes(c)) {
      out.push(c);
      i++;
    } else if (s.startsWith(":=", i)) {
      out.push(":=");
      i += 2;
    } else if (c === "=") {
      out.push("=");
      i++;
    } else {
      let j = i;
      while (j < s.length && !/[\s()|,=]/.test(s[j]) && !s.startsWith(":=", j)) j++;
      out.push(s.slice(i, j));
      i = j;
    }
  }
  return out;
}

/** Parses a pipeline (`cmd | cmd ...`) from tokens. */
function parsePipeline(toks: string[], whole: string, funcs: string[] = FUNCS): Expr {
  let pos = 0;
  const operand = (): Expr => {
    const t = toks[pos++];
    if (t === undefined) throw new TemplateError(`incomplete expression in {{ ${whole} }}`);
    if (t === "(") {
      const start = pos;
      let depth = 1;
      while (pos < toks.length && depth) {
        if (toks[pos] === "(") depth++;
        if (toks[pos] === ")") depth--;
        pos++;
      }
      if (depth) throw new TemplateError(`unclosed ( in {{ ${whole} }}`);
      return parsePipeline(toks.slice(start, pos - 1), whole, funcs);
    }
    if (t.startsWith('"')) return { k: "str", v: JSON.parse(t) };
    if (t.startsWith("`")) return { k: "str", v: t.slice(1, -1) };
    if (/^-?\d+(\.\d+)?$/.test(t)) return { k: "num", v: t };
    if (t === "true" || t === "false") return { k: "bool", v: t === "true" };
    if (t === ".") return { k: "field", base: ".", path: [] };
    const f = t.match(/^(\$[A-Za-z0-9_]*)?((?:\.[A-Za-z_][A-Za-z0-9_]*)*)$/);
    if (f && (f[1] || f[2])) {
      return { k: "field", base: f[1] ?? ".", path: f[2] ? f[2].slice(1).split(".") : [] };
    }
    if (/^[A-Za-z_]\w*$/.test(t)) {
      throw new TemplateError(`the function "${t}" (in {{ ${whole} }}) has no Jinja translation`);
    }
    throw new TemplateError(`cannot translate "${t}" in {{ ${whole} }}`);
  };
  const command = (): Expr => {
    const t = toks[pos];
    if (t !== undefined && /^[A-Za-z_]\w*$/.test(t) && !["true", "false"].includes(t)) {
      pos++;
      if (!funcs.includes(t)) {
        throw new TemplateError(`the function "${t}" (in {{ ${whole} }}) has no Jinja translation`);
      }
      const args: Expr[] = [];
      while (pos < toks.length && toks[pos] !== "|") args.push(operand());
      return { k: "call", fn: t, args };
    }
    const e = operand();
    if (pos < toks.length && toks[pos] !== "|") {
      throw new TemplateError(`cannot translate "${toks[pos]}" after a value in {{ ${whole} }}`);
    }
    return e;
  };
  let e = command();
  while (pos < toks.length) {
    if (toks[pos] !== "|") throw new TemplateError(`cannot translate "${toks[pos]}" in {{ ${whole} }}`);
    pos++;
    const next = command();
    if (next.k !== "call") throw new TemplateError(`a pipe into a value in {{ ${whole} }}`);
    e = { ...next, args: [...next.args, e] };
  }
  return e;
}

const KEYWORDS = ["if", "else", "end", "range", "with", "define", "template", "block", "break", "continue"];

/** Parses the token list into a tree. */
function parseNodes(toks: Tok[], funcs: string[] = FUNCS): Node[] {
  const parsePipe = (ws: string[], whole: string) => parsePipeline(ws, whole, funcs);
  let pos = 0;
  // Parses nodes until one of the stop words; returns them and the action that stopped them.
  const list = (stops: string[]): { nodes: Node[]; stop?: string } => {
    const nodes: Node[] = [];
    while (pos < toks.length) {
      const t = toks[pos++];
      if (t.kind === "text") {
        nodes.push({ k: "text", text: t.text });
        continue;
      }
      const body = t.body;
      const word = body.match(/^[a-z]+/)?.[0] ?? "";
      if (stops.some((s) => body === s || body.startsWith(s + " "))) return { nodes, stop: body };
      if (word === "end" || word === "else") throw new TemplateError(`unexpected {{ ${body} }}`);
      if (body === "break") nodes.push({ k: "break" });
      else if (body === "continue") nodes.push({ k: "continue" });
      else if (word === "if") nodes.push(parseIf(body.slice(2).trim()));
      else if (word === "range") nodes.push(parseRange(body.slice(5).trim()));
      else if (KEYWORDS.includes(word) && (body === word || body[word.length] === " ")) {
        throw new TemplateError(`{{ ${word} }} has no Jinja translation (in {{ ${body} }})`);
      } else {
        const ws = words(body);
        const decl = ws.length > 2 && ws[0].startsWith("$") && (ws[1] === ":=" || ws[1] === "=");
        if (decl) nodes.push({ k: "set", name: ws[0], e: parsePipe(ws.slice(2), body) });
        else nodes.push({ k: "print", e: parsePipe(ws, body) });
      }
    }
    return { nodes };
  };
  const parseIf = (cond: string): Node => {
    const node: Extract<Node, { k: "if" }> = { k: "if", branches: [] };
    let c = cond;
    for (;;) {
      const { nodes, stop } = list(["else", "end"]);
      node.branches.push({ cond: parsePipe(words(c), `if ${c}`), body: nodes });
      if (stop === undefined) throw new TemplateError(`{{ if ${cond} }} has no {{ end }}`);
      if (stop === "end") return node;
      if (stop.startsWith("else if ")) {
        c = stop.slice(8).trim();
        continue;
      }
      if (stop !== "else") throw new TemplateError(`{{ ${stop} }} has no Jinja translation`);
      const rest = list(["end"]);
      if (rest.stop === undefined) throw new TemplateError(`{{ if ${cond} }} has no {{ end }}`);
      node.else = rest.nodes;
      return node;
    }
  };
  const parseRange = (spec: string): Node => {
    const ws = words(spec);
    let key: string | undefined;
    let value: string | undefined;
    let rest = ws;
    const at = ws.indexOf(":=");
    if (at >= 0) {
      const vars = ws.slice(0, at).filter((w) => w !== ",");
      if (vars.length === 2) [key, value] = vars;
      else value = vars[0];
      rest = ws.slice(at + 1);
    }
    const over = parsePipe(rest, `range ${spec}`);
    const { nodes, stop } = list(["else", "end"]);
    if (stop === undefined) throw new TemplateError(`{{ range ${spec} }} has no {{ end }}`);
    const node: Node = { k: "range", key, value, over, body: nodes };
    if (stop === "else") {
      const e = list(["end"]);
      if (e.stop === undefined) throw new TemplateError(`{{ range ${spec} }} has no {{ end }}`);
      node.else = e.nodes;
    }
    return node;
  };
  const { nodes, stop } = list([]);
  if (stop) throw new TemplateError(`unexpected {{ ${stop} }}`);
  return nodes;
}

/** Whether a tree uses a top-level field (as Ollama's `Vars` finds identifiers anywhere). */
export function mentions(nodes: Node[], field: string): boolean {
  const inExpr = (e: Expr): boolean =>
    e.k === "field" ? e.path.some((p) => p.toLowerCase() === field) : e.k === "call" && e.args.some(inExpr);
  return nodes.some((n) => {
    switch (n.k) {
      case "print":
      case "set":
        return inExpr(n.e);
      case "if":
        return n.branches.some((b) => inExpr(b.cond) || mentions(b.body, field)) ||
          mentions(n.else ?? [], field);
      case "range":
        return inExpr(n.over) || mentions(n.body, field) || mentions(n.else ?? [], field);
      default:
        return false;
    }
  });
}

/** The tree cut after the first `{{ .Response }}` (Ollama's last turn: nothing after the response). */
export function cutAfterResponse(nodes: Node[]): Node[] {
  let cut = false;
  const walk = (list: Node[]): Node[] => {
    const out: Node[] = [];
    for (const n of list) {
      if (cut) break;
      if (n.k === "print" && n.e.k === "field" && n.e.path.includes("Response")) {
        out.push(n);
        cut = true;
      } else if (n.k === "if") {
        out.push({
          ...n,
          branches: n.branches.map((b) => ({ cond: b.cond, body: cut ? [] : walk(b.body) })),
          ...(n.else ? { else: cut ? [] : walk(n.else) } : {}),
        });
      } else if (n.k === "range") {
        out.push({ ...n, body: walk(n.body), ...(n.else ? { else: cut ? [] : walk(n.else) } : {}) });
      } else {
        out.push(n);
      }
    }
    return out;
  };
  return walk(nodes);
}

/**
 * Parses a Go template into nodes (the subset above), with Ollama's `{{ .Response }}` appended to a template
 * that uses neither `.Messages` nor `.Response` (as its `template.Parse` does). `funcs`: the functions
 * allowed (default: those with a Jinja translation).
 *
 * @example
 * ```ts
 * const nodes = parseGoTemplate("{{ .System }} {{ .Prompt }}");
 * ```
 */
export function parseGoTemplate(template: string, funcs: string[] = FUNCS): Node[] {
  const nodes = parseNodes(lex(template), funcs);
  if (!mentions(nodes, "messages") && !mentions(nodes, "response")) {
    return [...nodes, { k: "print", e: { k: "field", base: ".", path: ["Response"] } }];
  }
  return nodes;
}

/** The functions of Ollama's Go templates that have a Jinja translation. */
export const TRANSLATED_FUNCS: readonly string[] = FUNCS;

// ---------------------------------------------------------------------------------------------------------
// Emitting Jinja

/** What a Go value is in Jinja: its expression and what kind of thing it is (for printing and ranging). */
interface Val {
  js: string;
  type: "string" | "message" | "messages" | "tool" | "tools" | "toolcall" | "toolcalls" | "object" | "any";
}

interface Scope {
  /** `.` */
  dot: Val;
  /** Top-level fields. */
  root: Record<string, Val>;
  /** Range variables bound to Jinja names. */
  vars: Record<string, Val>;
}

/**
 * A value as JSON the way Go's `json.Marshal` writes it (what Ollama's `json` function and its tool types' String
 * methods print): compact, and HTML-escaped. `<`, `>`, `&` and the two line separators only ever appear inside
 * JSON strings, so escaping them in the whole text is what Go does to each string.
 */
const goJson = (js: string) =>
  `(${js}|tojson(separators=(",", ":"))|replace("<", "\\\\u003c")|replace(">", "\\\\u003e")|replace("&", "\\\\u0026")` +
  `|replace("\u2028", "\\\\u2028")|replace("\u2029", "\\\\u2029"))`;

const snake = (s: string) => s.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toLowerCase();
const lit = (s: string) => JSON.stringify(s);
const str = (js: string) => `(${js} if ${js} is string else "")`;

/** A field of a value. */
function field(v: Val, name: string): Val {
  switch (v.type) {
    case "message":
      if (name === "Role") return { js: `${v.js}.role`, type: "string" };
      if (name === "Content") return { js: str(`${v.js}.content`), type: "string" };
      if (name === "ToolCalls") return { js: `(${v.js}.tool_calls or [])`, type: "toolcalls" };
      if (name === "Thinking") return { js: str(`${v.js}.reasoning_content`), type: "string" };
      if (name === "ToolName") return { js: str(`${v.js}.name`), type: "string" };
      if (name === "ToolCallID") return { js: str(`${v.js}.tool_call_id`), type: "string" };
      throw new TemplateError(`.${name} of a message has no Jinja translation`);
    case "toolcall":
      if (name === "Function") return { js: `${v.js}.function`, type: "object" };
      if (name === "ID") return { js: str(`${v.js}.id`), type: "string" };
      throw new TemplateError(`.${name} of a tool call has no Jinja translation`);
    case "string":
    case "messages":
    case "tools":
    case "toolcalls":
      throw new TemplateError(
        `.${name} of a ${v.type === "string" ? "string" : "list"} has no Jinja translation`,
      );
    default:
      return { js: `${v.js}.${snake(name)}`, type: name === "Arguments" ? "object" : "any" };
  }
}

/** Translates an expression. */
function expr(e: Expr, s: Scope): Val {
  switch (e.k) {
    case "str":
      return { js: lit(e.v), type: "string" };
    case "num":
      return { js: e.v, type: "any" };
    case "bool":
      return { js: e.v ? "true" : "false", type: "any" };
    case "field": {
      let v: Val;
      let path = e.path;
      if (e.base === "$") {
        if (!path.length) throw new TemplateError("{{ $ }} on its own has no Jinja translation");
        v = rootField(s, path[0]);
        path = path.slice(1);
      } else if (e.base === ".") {
        if (s.dot.type === "object" && s.dot.js === "$root" && path.length) {
          v = rootField(s, path[0]);
          path = path.slice(1);
        } else if (s.dot.js === "$root") {
          throw new TemplateError("{{ . }} at the top of a template has no Jinja translation");
        } else v = s.dot;
      } else {
        const bound = s.vars[e.base];
        v = bound ?? { js: `ns.${varName(e.base)}`, type: "any" };
      }
      for (const p of path) v = field(v, p);
      return v;
    }
    case "call": {
      const a = e.args.map((x) => expr(x, s));
      const need = (n: number) => {
        if (a.length < n) throw new TemplateError(`${e.fn} needs ${n} argument(s)`);
      };
      switch (e.fn) {
        case "eq":
          need(2);
          return { js: `(${a.slice(1).map((b) => `${a[0].js} == ${b.js}`).join(" or ")})`, type: "any" };
        case "ne":
          need(2);
          return { js: `(${a[0].js} != ${a[1].js})`, type: "any" };
        case "lt":
        case "le":
        case "gt":
        case "ge": {
          need(2);
          const op = { lt: "<", le: "<=", gt: ">", ge: ">=" }[e.fn];
          return { js: `(${a[0].js} ${op} ${a[1].js})`, type: "any" };
        }
        case "not":
          need(1);
          return { js: `(not ${a[0].js})`, type: "any" };
        case "and":
        case "or":
          need(2);
          return { js: `(${a.map((x) => x.js).join(` ${e.fn} `)})`, type: "any" };
        case "len":
          need(1);
          return { js: `(${a[0].js}|length)`, type: "any" };
        case "json":
          need(1);
          return { js: goJson(a[0].js), type: "string" };
        case "index":
          need(2);
          return { js: `${a[0].js}[${a[1].js}]`, type: elementType(a[0]) };
        case "slice":
          need(1);
          if (a.length > 3) {
            throw new TemplateError("slice with more than 2 indexes has no Jinja translation");
          }
          return {
            js: `${a[0].js}[${a[1]?.js ?? ""}:${a[2]?.js ?? ""}]`,
            type: a[0].type,
          };
        case "printf": {
          need(1);
          if (e.args[0].k !== "str") {
            throw new TemplateError("printf with a format that is not a string literal");
          }
          const parts = e.args[0].v.split(/(%[svd%])/);
          let n = 1;
          const out: string[] = [];
          for (const p of parts) {
            if (p === "%%") out.push(lit("%"));
            else if (/^%[svd]$/.test(p)) {
              const v = a[n++];
              if (!v) throw new TemplateError("printf has fewer arguments than its format");
              out.push(printed(v));
            } else if (p.includes("%")) {
              throw new TemplateError(
                `printf format "${e.args[0].v}" has no Jinja translation (only %s, %v, %d)`,
              );
            } else if (p) out.push(lit(p));
          }
          return { js: `(${out.join(" ~ ") || '""'})`, type: "string" };
        }
      }
      throw new TemplateError(`the function "${e.fn}" has no Jinja translation`);
    }
  }
}

function elementType(v: Val): Val["type"] {
  return ({ messages: "message", tools: "tool", toolcalls: "toolcall" } as const)[v.type as string] ?? "any";
}

function rootField(s: Scope, name: string): Val {
  const v = s.root[name];
  if (!v) throw new TemplateError(`.${name} has no Jinja translation`);
  return v;
}

const varName = (v: string) => `v_${v.slice(1) || "root"}`;

/** A value as Go prints it: objects and lists (tools, arguments) as JSON. */
function printed(v: Val): string {
  if (v.type === "string") return v.js;
  if (["tool", "tools", "toolcall", "toolcalls", "object"].includes(v.type)) return goJson(v.js);
  return `(${v.js} if ${v.js} is string else (${
    goJson(v.js)
  } if ${v.js} is mapping or ${v.js} is iterable else ${v.js}))`;
}

/** Emits nodes as Jinja. */
function emit(nodes: Node[], s: Scope, depth: number): string {
  let out = "";
  for (const n of nodes) {
    switch (n.k) {
      case "text":
        out += `{{- ${lit(n.text)} -}}`;
        break;
      case "print": {
        out += `{{- ${printed(expr(n.e, s))} -}}`;
        break;
      }
      case "set":
        delete s.vars[n.name];
        out += `{%- set ns.${varName(n.name)} = ${expr(n.e, s).js} -%}`;
        break;
      case "if":
        n.branches.forEach((b, i) => {
          out += `{%- ${i ? "elif" : "if"} ${expr(b.cond, s).js} -%}` + emit(b.body, s, depth);
        });
        if (n.else) out += "{%- else -%}" + emit(n.else, s, depth);
        out += "{%- endif -%}";
        break;
      case "range": {
        const over = expr(n.over, s);
        const item = `x${depth}`;
        const inner: Scope = { ...s, vars: { ...s.vars } };
        let head: string;
        if (over.type === "object" || over.type === "any" && n.key) {
          // A map (tool parameters' properties): key and value.
          head = `{%- for k${depth}, ${item} in ${over.js}.items() -%}`;
          if (n.key) inner.vars[n.key] = { js: `k${depth}`, type: "string" };
        } else {
          head = `{%- for ${item} in ${over.js} -%}`;
          if (n.key) inner.vars[n.key] = { js: "loop.index0", type: "any" };
        }
        const el: Val = {
          js: item,
          type: elementType(over) === "any" && over.type === "object" ? "any" : elementType(over),
        };
        if (n.value && n.value !== "$_") inner.vars[n.value] = el;
        inner.dot = el;
        // A range variable used inside a nested range would see the inner loop: keep the index in the namespace.
        if (n.key && inner.vars[n.key].js === "loop.index0") {
          head += `{%- set ns.${varName(n.key)} = loop.index0 -%}`;
          inner.vars[n.key] = { js: `ns.${varName(n.key)}`, type: "any" };
        }
        out += head + emit(n.body, inner, depth + 1);
        if (n.else) out += "{%- else -%}" + emit(n.else, s, depth);
        out += "{%- endfor -%}";
        break;
      }
      case "break":
        out += "{%- break -%}";
        break;
      case "continue":
        out += "{%- continue -%}";
        break;
    }
  }
  return out;
}

/** Variables the template declares, each a namespace attribute so that assignments in loops stick (Go's do). */
function declared(nodes: Node[], out = new Set<string>()): Set<string> {
  for (const n of nodes) {
    if (n.k === "set") out.add(varName(n.name));
    if (n.k === "if") {
      n.branches.forEach((b) => declared(b.body, out));
      declared(n.else ?? [], out);
    }
    if (n.k === "range") {
      if (n.key) out.add(varName(n.key));
      declared(n.body, out);
      declared(n.else ?? [], out);
    }
  }
  return out;
}

/** Ollama's collate: the system messages joined by a blank line, consecutive messages of a role merged. */
const COLLATE = [
  "{%- for m in messages -%}",
  '{%- set c = m.content if m.content is string else "" -%}',
  '{%- if m.role == "system" -%}',
  '{%- set ns.system = ns.system ~ ("\\n\\n" if ns.nsys > 0 else "") ~ c -%}{%- set ns.nsys = ns.nsys + 1 -%}',
  "{%- endif -%}",
  '{%- if ns.msgs and ns.msgs[-1].role == m.role and m.role != "tool" -%}',
  '{%- set ns.msgs = ns.msgs[:-1] + [{"role": m.role, "content": ns.msgs[-1].content ~ "\\n\\n" ~ c}] -%}',
  "{%- else -%}",
  '{%- set ns.msgs = ns.msgs + [{"role": m.role, "content": c, "tool_calls": m.tool_calls or [], ' +
  '"reasoning_content": m.reasoning_content or "", "name": m.name or m.tool_name or "", ' +
  '"tool_call_id": m.tool_call_id or ""}] -%}',
  "{%- endif -%}",
  "{%- endfor -%}",
].join("");

/**
 * Translates an Ollama Go chat template to a Jinja chat template for llama-server; a construct without a
 * translation is a {@linkcode TemplateError} that names it.
 *
 * @example
 * ```ts
 * const jinja = goTemplateToJinja(
 *   "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n",
 * );
 * ```
 */
export function goTemplateToJinja(template: string): string {
  const nodes = parseGoTemplate(template);
  const withMessages = mentions(nodes, "messages");
  const vars = [...declared(nodes)].map((v) => `, ${v}=""`).join("");
  const head = `{%- set ns = namespace(system="", nsys=0, msgs=[], prompt="", response=""${vars}) -%}` +
    COLLATE;
  const tools: Val = { js: "(tools or [])", type: "tools" };
  const think: Val = { js: "(enable_thinking if enable_thinking is defined else false)", type: "any" };
  const top = (system: string, prompt: string, response: string): Scope => ({
    dot: { js: "$root", type: "object" },
    root: {
      System: { js: system, type: "string" },
      Prompt: { js: prompt, type: "string" },
      Response: { js: response, type: "string" },
      Messages: { js: "ns.msgs", type: "messages" },
      Tools: tools,
      Think: think,
      // Set by the daemon's Ollama routes (thinkFields); a plain OpenAI request leaves them unset, as Ollama would.
      ThinkLevel: { js: str("ollama_think_level"), type: "string" },
      IsThinkSet: { js: "(ollama_is_think_set if ollama_is_think_set is defined else false)", type: "any" },
    },
    vars: {},
  });
  if (withMessages) return head + emit(nodes, top("ns.system", '""', '""'), 0) + "\n";
  // Without .Messages: the template once per turn, as Ollama's Execute runs it.
  const turn = emit(nodes, top("ns.system", "ns.prompt", "ns.response"), 0);
  const last = emit(cutAfterResponse(nodes), top("ns.system", "ns.prompt", "ns.response"), 0);
  const reset = '{%- set ns.system = "" -%}{%- set ns.prompt = "" -%}{%- set ns.response = "" -%}';
  return head + '{%- set ns.system = "" -%}' +
    "{%- for m in ns.msgs -%}" +
    '{%- if m.role == "system" -%}' +
    '{%- if ns.prompt != "" or ns.response != "" -%}' + turn + reset + "{%- endif -%}" +
    "{%- set ns.system = m.content -%}" +
    '{%- elif m.role == "user" -%}' +
    '{%- if ns.response != "" -%}' + turn + reset + "{%- endif -%}" +
    "{%- set ns.prompt = m.content -%}" +
    '{%- elif m.role == "assistant" -%}{%- set ns.response = m.content -%}' +
    "{%- endif -%}" +
    "{%- endfor -%}" + last + "\n";
}
