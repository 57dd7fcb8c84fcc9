/**
 * Ollama's Modelfile: the parser (a port of ollama/ollama's `parser/parser.go` state machine, so that what
 * `ollama create` accepts, `llama-mgr create` accepts too), the `/api/create` request a Modelfile stands for,
 * and the text of a Modelfile from its commands.
 *
 * Commands are case-insensitive; a value runs to the end of its line, or across lines inside `"..."` or
 * `"""..."""`; `#` starts a comment line; `PARAMETER stop` may repeat (the values make a list).
 *
 * @module
 */
import { optionKind } from "../options.ts";

/**
 * One command of a Modelfile: its lower-case name (`model` for FROM, a parameter's own name for PARAMETER)
 * and its value (`role: content` for MESSAGE).
 *
 * @example
 * ```ts
 * const c: ModelfileCommand = { name: "temperature", args: "0.2" };
 * ```
 */
export interface ModelfileCommand {
  /** `model`, `adapter`, `template`, `system`, `license`, `message`, ..., or a parameter's name. */
  name: string;
  /** The value, unquoted. */
  args: string;
}

/**
 * A Modelfile that does not parse; `line` is the line Ollama's parser names (0 when none).
 *
 * @example
 * ```ts
 * try { parseModelfile("FROM x\nTEMPERATURE 1"); } catch (e) { if (e instanceof ModelfileError) console.log(e.line); }
 * ```
 */
export class ModelfileError extends Error {
  /** The line of the error (1-based), 0 when the error is about the whole file. */
  line: number;
  /** Builds the error; the message reads `(line N): ...` as Ollama's does. */
  constructor(line: number, message: string) {
    super(line > 0 ? `(line ${line}): ${message}` : message);
    this.name = "ModelfileError";
    this.line = line;
  }
}

const COMMANDS = [
  "from",
  "license",
  "template",
  "system",
  "adapter",
  "draft",
  "renderer",
  "parser",
  "parameter",
  "message",
  "requires",
];
const INVALID_COMMAND =
  'command must be one of "from", "license", "template", "system", "adapter", "draft", ' +
  '"renderer", "parser", "parameter", "message", or "requires"';
const INVALID_ROLE = 'message role must be one of "system", "user", or "assistant"';

type State = "nil" | "name" | "value" | "parameter" | "message" | "comment";

const isAlpha = (c: string) => /^[A-Za-z]$/.test(c);
const isSpace = (c: string) => c === " " || c === "\t";
const isNewline = (c: string) => c === "\r" || c === "\n";
// Go's strconv.IsPrint: letters, marks, numbers, punctuation, symbols and the ASCII space.
const isPrint = (c: string) => c === " " || /^[\p{L}\p{M}\p{N}\p{P}\p{S}]$/u.test(c);

/** Ollama's unquote: `"""x"""` and `"x"` lose their quotes; an unterminated quote is not a value yet. */
function unquote(s: string): string | undefined {
  if (s.startsWith('"""')) return s.length >= 6 && s.endsWith('"""') ? s.slice(3, -3) : undefined;
  if (s.startsWith('"')) return s.length >= 2 && s.endsWith('"') ? s.slice(1, -1) : undefined;
  return s;
}

/** The next state for a character, the character to keep ("" for none), or an error. */
function step(c: string, state: State): [State, string] | Error | "eof" {
  switch (state) {
    case "nil":
      if (c === "#") return ["comment", ""];
      if (isSpace(c) || isNewline(c)) return ["nil", ""];
      return ["name", c];
    case "name":
      if (isAlpha(c)) return ["name", c];
      if (isSpace(c)) return ["value", ""];
      return new Error(INVALID_COMMAND);
    case "value":
      if (isNewline(c) || isSpace(c)) return ["nil", c];
      return ["value", c];
    case "parameter":
      if (isAlpha(c) || /^[0-9_]$/.test(c)) return ["parameter", c];
      if (isSpace(c)) return ["value", ""];
      return "eof";
    case "message":
      if (isAlpha(c)) return ["message", c];
      if (isSpace(c)) return ["value", ""];
      return "eof";
    case "comment":
      return isNewline(c) ? ["nil", ""] : ["comment", ""];
  }
}

/**
 * Parses a Modelfile as Ollama does. Errors name the line; a file without FROM is an error.
 *
 * @example
 * ```ts
 * const commands = parseModelfile('FROM smollm2\nPARAMETER temperature 0.2\nSYSTEM """Be brief."""\n');
 * // [{ name: "model", args: "smollm2" }, { name: "temperature", args: "0.2" }, { name: "system", args: "Be brief." }]
 * ```
 */
export function parseModelfile(text: string): ModelfileCommand[] {
  const out: ModelfileCommand[] = [];
  let cmd: ModelfileCommand = { name: "", args: "" };
  let state: State = "nil";
  let line = 1;
  let buf = "";
  let role = "";
  for (const ch of text.replace(/^\uFEFF/, "")) {
    if (isNewline(ch) && ch === "\n") line++;
    const r = step(ch, state);
    if (r === "eof") throw new ModelfileError(0, `unexpected EOF: ${buf}`);
    if (r instanceof Error) throw new ModelfileError(line, r.message);
    let [next, keep] = r;
    if (next !== state) {
      if (state === "name") {
        if (!COMMANDS.includes(buf.toLowerCase())) throw new ModelfileError(line, INVALID_COMMAND);
        const s = buf.toLowerCase();
        if (s === "from") cmd = { name: "model", args: "" };
        else if (s === "parameter") next = "parameter";
        else {
          if (s === "message") next = "message";
          cmd = { name: s, args: "" };
        }
      } else if (state === "parameter") {
        cmd = { name: buf, args: "" };
      } else if (state === "message") {
        if (!["system", "user", "assistant"].includes(buf)) throw new ModelfileError(line, INVALID_ROLE);
        role = buf;
      } else if (state === "value") {
        let s = unquote(buf.trim());
        if (s === undefined || isSpace(ch)) {
          buf += ch;
          continue;
        }
        if (role) {
          s = `${role}: ${s}`;
          role = "";
        }
        out.push({ ...cmd, args: s });
      }
      buf = "";
      state = next;
    }
    if (keep !== "" && isPrint(keep)) buf += keep;
    keep = "";
  }
  if (state === "value") {
    let s = unquote(buf.trim());
    if (s === undefined) throw new ModelfileError(0, `unexpected EOF: ${buf}`);
    if (role) s = `${role}: ${s}`;
    out.push({ ...cmd, args: s });
  } else if (state !== "nil" && state !== "comment") {
    throw new ModelfileError(0, `unexpected EOF: ${buf}`);
  }
  if (!out.some((c) => c.name === "model")) throw new ModelfileError(0, "no FROM line");
  return out;
}

/**
 * What a Modelfile asks `/api/create` for, before its local files are uploaded: FROM and ADAPTER as written
 * (the caller decides whether FROM is a file or a model name), and the rest as the request's fields.
 *
 * @example
 * ```ts
 * const req: ModelfileRequest = { from: "./smol.gguf", adapters: [], parameters: { stop: ["<|im_end|>"] } };
 * ```
 */
export interface ModelfileRequest {
  /** FROM: a model name or a path (the last FROM wins, as in Ollama's CLI for a name). */
  from: string;
  /** ADAPTER paths. */
  adapters: string[];
  /** TEMPLATE. */
  template?: string;
  /** SYSTEM. */
  system?: string;
  /** LICENSE texts. */
  license?: string[];
  /** PARAMETER values, typed as Ollama types them (`stop` a list). */
  parameters?: Record<string, unknown>;
  /** MESSAGE lines. */
  messages?: { role: string; content: string }[];
}

/** Ollama's deprecated parameters: accepted by the parser, left out of the request (Ollama warns). */
const DEPRECATED = [
  "penalize_newline",
  "low_vram",
  "f16_kv",
  "logits_all",
  "vocab_only",
  "use_mlock",
  "mirostat",
  "mirostat_tau",
  "mirostat_eta",
];

/**
 * The request a parsed Modelfile stands for (Ollama's `Modelfile.CreateRequest`): PARAMETER values typed as
 * Ollama's options are (`invalid float value`, `unknown parameter` errors as Ollama words them), repeated
 * parameters collected into a list. `warn` hears about deprecated parameters, which are left out.
 *
 * @example
 * ```ts
 * const req = modelfileRequest(parseModelfile("FROM smol\nPARAMETER stop a\nPARAMETER stop b\n"));
 * // { from: "smol", adapters: [], parameters: { stop: ["a", "b"] } }
 * ```
 */
export function modelfileRequest(
  commands: ModelfileCommand[],
  options: { warn?: (message: string) => void } = {},
): ModelfileRequest {
  const req: ModelfileRequest = { from: "", adapters: [] };
  const parameters: Record<string, unknown> = {};
  const messages: { role: string; content: string }[] = [];
  const license: string[] = [];
  for (const c of commands) {
    switch (c.name) {
      case "model":
        req.from = c.args;
        break;
      case "adapter":
        req.adapters = [c.args];
        break;
      case "template":
        req.template = c.args;
        break;
      case "system":
        req.system = c.args;
        break;
      case "license":
        license.push(c.args);
        break;
      case "message": {
        const at = c.args.indexOf(": ");
        messages.push(
          at < 0
            ? { role: c.args, content: "" }
            : { role: c.args.slice(0, at), content: c.args.slice(at + 2) },
        );
        break;
      }
      case "draft":
      case "renderer":
      case "parser":
      case "requires":
        throw new ModelfileError(0, `${c.name.toUpperCase()} is not supported by llama-mgr`);
      default: {
        if (DEPRECATED.includes(c.name)) {
          options.warn?.(`warning: parameter ${c.name} is deprecated`);
          break;
        }
        const kind = optionKind(c.name);
        if (!kind) throw new ModelfileError(0, `unknown parameter '${c.name}'`);
        const v = c.args;
        if (kind === "strings") {
          parameters[c.name] = [...((parameters[c.name] as string[] | undefined) ?? []), v];
        } else if (kind === "float") {
          const n = Number(v.trim());
          if (v.trim() === "" || !Number.isFinite(n)) {
            throw new ModelfileError(0, `invalid float value [${v}]`);
          }
          parameters[c.name] = n;
        } else if (kind === "int") {
          if (!/^[+-]?\d+$/.test(v.trim())) throw new ModelfileError(0, `invalid int value [${v}]`);
          parameters[c.name] = Number(v.trim());
        } else {
          const b = parseGoBool(v);
          if (b === undefined) throw new ModelfileError(0, `invalid bool value [${v}]`);
          parameters[c.name] = b;
        }
      }
    }
  }
  if (Object.keys(parameters).length) req.parameters = parameters;
  if (messages.length) req.messages = messages;
  if (license.length) req.license = license;
  return req;
}

/** Go's strconv.ParseBool. */
function parseGoBool(s: string): boolean | undefined {
  if (["1", "t", "T", "TRUE", "true", "True"].includes(s)) return true;
  if (["0", "f", "F", "FALSE", "false", "False"].includes(s)) return false;
  return undefined;
}

/** Ollama's quote: a value with a newline or edge spaces is quoted, with `"""` when it holds a `"`. */
function quote(s: string): string {
  if (s.includes("\n") || s.startsWith(" ") || s.endsWith(" ")) {
    return s.includes('"') ? `"""${s}"""` : `"${s}"`;
  }
  return s;
}

/**
 * A Modelfile's text from its commands, a line each, as Ollama writes one (`Modelfile.String`).
 *
 * @example
 * ```ts
 * formatModelfile([{ name: "model", args: "smol" }, { name: "system", args: "Be brief." }]);
 * // "FROM smol\nSYSTEM Be brief.\n"
 * ```
 */
export function formatModelfile(commands: ModelfileCommand[]): string {
  return commands.map((c) => {
    switch (c.name) {
      case "model":
        return `FROM ${c.args}\n`;
      case "license":
      case "template":
      case "system":
      case "adapter":
      case "renderer":
      case "parser":
      case "requires":
      case "draft":
        return `${c.name.toUpperCase()} ${quote(c.args)}\n`;
      case "message": {
        const at = c.args.indexOf(": ");
        return `MESSAGE ${c.args.slice(0, at)} ${quote(c.args.slice(at + 2))}\n`;
      }
      default:
        return `PARAMETER ${c.name} ${quote(c.args)}\n`;
    }
  }).join("");
}
