/**
 * `llama-mgr run MODEL [PROMPT]`: chat with a model through the daemon, as `ollama run` does. With a prompt (or
 * piped input) it answers once; otherwise an interactive session with history, `"""` multi-line input, `/set`,
 * `/show`, `/load`, `/save`, `/clear` and `/bye`. Ctrl-C stops an answer and keeps the session, Ctrl-D leaves.
 * A model the daemon does not have is pulled first.
 *
 * @module
 */
import { join } from "node:path";
import type { Command, Context } from "./command.ts";
import { bool, type ParsedArgs, str } from "./args.ts";
import { connect } from "./connect.ts";
import { createLineEditor } from "./line_editor.ts";
import { showSummary } from "./ollama_verbs.ts";
import { pullDisplay } from "./pull.ts";
import type { PullEvent } from "../lib/models/pull/mod.ts";
import { DaemonApiError, type DaemonClient } from "../lib/daemon/client.ts";
import { UserError } from "../lib/util/errors.ts";

const enc = new TextEncoder();
const out = (s: string) => Deno.stdout.writeSync(enc.encode(s));
const IMAGE = /\.(png|jpe?g|webp|gif|bmp)$/i;

interface ChatLine {
  message?: { content?: string; thinking?: string };
  done?: boolean;
  total_duration?: number;
  load_duration?: number;
  prompt_eval_count?: number;
  prompt_eval_duration?: number;
  eval_count?: number;
  eval_duration?: number;
}

interface Message {
  role: string;
  content: string;
  images?: string[];
}

/** What a session has set. */
interface Session {
  model: string;
  system?: string;
  parameters: Record<string, unknown>;
  messages: Message[];
  format?: string;
  think?: boolean;
  verbose: boolean;
  keepAlive?: string;
  capabilities: string[];
}

/** A duration in ns as Ollama's `--verbose` prints it. */
function seconds(ns = 0): string {
  const ms = ns / 1e6;
  return ms >= 1000 ? `${(ms / 1000).toFixed(3)}s` : `${ms.toFixed(3)}ms`;
}

function stats(l: ChatLine): string {
  const rate = (n = 0, ns = 0) => (ns > 0 ? (n / (ns / 1e9)).toFixed(2) : "0.00");
  return [
    `total duration:       ${seconds(l.total_duration)}`,
    `load duration:        ${seconds(l.load_duration)}`,
    `prompt eval count:    ${l.prompt_eval_count ?? 0} token(s)`,
    `prompt eval duration: ${seconds(l.prompt_eval_duration)}`,
    `prompt eval rate:     ${rate(l.prompt_eval_count, l.prompt_eval_duration)} tokens/s`,
    `eval count:           ${l.eval_count ?? 0} token(s)`,
    `eval duration:        ${seconds(l.eval_duration)}`,
    `eval rate:            ${rate(l.eval_count, l.eval_duration)} tokens/s`,
  ].join("\n") + "\n";
}

/** Makes sure the daemon has the model, pulling it when it does not; returns its capabilities. */
async function ensureModel(
  ctx: Context,
  client: DaemonClient,
  model: string,
  insecure = false,
): Promise<string[]> {
  try {
    return (await client.json<{ capabilities?: string[] }>("POST", "/api/show", { model })).capabilities ??
      [];
  } catch (err) {
    if (!(err instanceof DaemonApiError) || err.status !== 404) throw err;
  }
  ctx.info(`pulling ${model}`);
  const tty = Deno.stderr.isTerminal();
  const show = ctx.quiet
    ? undefined
    : pullDisplay({ tty, write: (s) => Deno.stderr.writeSync(enc.encode(s)) });
  for await (const l of client.lines<PullEvent>("/api/pull", { model, ...(insecure ? { insecure } : {}) })) {
    show?.(l);
  }
  if (show && tty) Deno.stderr.writeSync(enc.encode("\n"));
  return (await client.json<{ capabilities?: string[] }>("POST", "/api/show", { model })).capabilities ?? [];
}

/**
 * Sends the conversation and prints the answer as it streams. Returns the answer's text, or undefined when it
 * was stopped (Ctrl-C).
 */
async function answer(client: DaemonClient, s: Session, messages: Message[]): Promise<string | undefined> {
  const abort = new AbortController();
  const stop = () => abort.abort();
  Deno.addSignalListener("SIGINT", stop);
  let text = "";
  let thinking = false;
  try {
    const body: Record<string, unknown> = {
      model: s.model,
      messages: s.system ? [{ role: "system", content: s.system }, ...messages] : messages,
      stream: true,
      ...(Object.keys(s.parameters).length ? { options: s.parameters } : {}),
      ...(s.format ? { format: s.format } : {}),
      ...(s.think !== undefined ? { think: s.think } : {}),
      ...(s.keepAlive ? { keep_alive: s.keepAlive } : {}),
    };
    for await (const l of client.lines<ChatLine>("/api/chat", body, abort.signal)) {
      const t = l.message?.thinking ?? "";
      if (t) {
        if (!thinking) out("Thinking...\n");
        thinking = true;
        out(t);
      }
      const c = l.message?.content ?? "";
      if (c) {
        if (thinking) {
          out("\n...done thinking.\n\n");
          thinking = false;
        }
        out(c);
        text += c;
      }
      if (l.done) {
        out(text.endsWith("\n") ? "\n" : "\n\n");
        if (s.verbose) Deno.stderr.writeSync(enc.encode(stats(l)));
      }
    }
    return text;
  } catch (err) {
    if (abort.signal.aborted) {
      out("\n");
      return undefined;
    }
    throw err;
  } finally {
    Deno.removeSignalListener("SIGINT", stop);
  }
}

/** Image paths in a prompt (for a model that sees images): read, taken out of the text. */
async function takeImages(text: string): Promise<{ text: string; images: string[]; added: string[] }> {
  const images: string[] = [];
  const added: string[] = [];
  const words = text.match(/'[^']+'|"[^"]+"|\S+/g) ?? [];
  let rest = text;
  for (const w of words) {
    const path = w.replace(/^['"]|['"]$/g, "").replace(/^~(?=\/)/, Deno.env.get("HOME") ?? "~");
    if (!IMAGE.test(path)) continue;
    try {
      const bytes = await Deno.readFile(path);
      images.push(btoa(Array.from(bytes, (b) => String.fromCharCode(b)).join("")));
      added.push(path);
      rest = rest.replace(w, "");
    } catch { /* not a file: part of the text */ }
  }
  return { text: rest.trim(), images, added };
}

/** A parameter value as `/set parameter` takes it: a number or boolean when it reads as one. */
function paramValue(v: string): unknown {
  if (/^-?\d+(\.\d+)?$/.test(v)) return Number(v);
  if (v === "true" || v === "false") return v === "true";
  return v.replace(/^"(.*)"$/, "$1");
}

const HELP = `Available Commands:
  /set            Set session variables
  /show           Show model information
  /load <model>   Load a session or model
  /save <model>   Save your current session
  /clear          Clear session context
  /bye            Exit
  /?, /help       Help for a command

Use """ to begin a multi-line message.
`;

const SET_HELP = `Available Commands:
  /set parameter <name> <value>  Set a parameter (e.g. temperature 0.2, num_ctx 8192, stop "<end>")
  /set system <string>           Set the system message
  /set format json               Answer in JSON
  /set noformat                  Answer in free text
  /set think | nothink           Turn thinking on or off
  /set verbose | quiet           Show or hide timings
`;

const SHOW_HELP = `Available Commands:
  /show info         Details about this model
  /show license      The model's license
  /show modelfile    The Modelfile of this model
  /show parameters   Parameters of this model
  /show system       The system message
  /show template     The prompt template
`;

/** Runs one slash command; returns false to leave. */
async function command(ctx: Context, client: DaemonClient, s: Session, line: string): Promise<boolean> {
  const [cmd, ...rest] = line.trim().split(/\s+/);
  const arg = line.trim().slice(cmd.length).trim();
  switch (cmd) {
    case "/bye":
    case "/exit":
      return false;
    case "/?":
    case "/help":
      out(rest[0] === "set" ? SET_HELP : rest[0] === "show" ? SHOW_HELP : HELP);
      return true;
    case "/clear":
      s.messages = [];
      out("Cleared session context\n");
      return true;
    case "/set": {
      const [what, name, ...value] = rest;
      if (what === "parameter" && name && value.length) {
        const v = value.join(" ");
        s.parameters[name] = name === "stop"
          ? [...((s.parameters.stop as string[] | undefined) ?? []), String(paramValue(v))]
          : paramValue(v);
        out(`Set parameter '${name}' to '${v}'\n`);
      } else if (what === "system" && arg.length > "system".length) {
        s.system = arg.slice("system".length).trim().replace(/^"""|"""$/g, "").replace(/^"(.*)"$/, "$1");
        out("Set system message.\n");
      } else if (what === "format" && name) {
        s.format = name;
        out(`Set format to '${name}' mode.\n`);
      } else if (what === "noformat") {
        s.format = undefined;
        out("Disabled format.\n");
      } else if (what === "think" || what === "nothink") {
        s.think = what === "think";
        out(`Set '${what === "think" ? "think" : "nothink"}' mode.\n`);
      } else if (what === "verbose" || what === "quiet") {
        s.verbose = what === "verbose";
        out(`Set '${what}' mode.\n`);
      } else out(SET_HELP);
      return true;
    }
    case "/show": {
      const shown = await client.json<Record<string, unknown>>("POST", "/api/show", { model: s.model });
      const license = Array.isArray(shown.license) ? shown.license.join("\n") : String(shown.license ?? "");
      switch (rest[0]) {
        case "info":
          out(showSummary(shown, license));
          break;
        case "license":
          out((license || "No license was specified for this model.") + "\n");
          break;
        case "modelfile":
          out(String(shown.modelfile ?? "") + "\n");
          break;
        case "parameters": {
          const own = Object.entries(s.parameters).map(([k, v]) => `${k.padEnd(30)}${JSON.stringify(v)}`);
          out(
            [String(shown.parameters ?? "").trim(), ...own].filter(Boolean).join("\n") ||
              "No parameters were specified for this model.",
          );
          out("\n");
          break;
        }
        case "system":
          out((s.system ?? String(shown.system ?? "")) || "No system message was specified for this model.");
          out("\n");
          break;
        case "template":
          out(String(shown.template ?? "") + "\n");
          break;
        default:
          out(SHOW_HELP);
      }
      return true;
    }
    case "/load": {
      if (!rest[0]) {
        out("Usage:\n  /load <modelname>\n");
        return true;
      }
      out(`Loading model '${rest[0]}'\n`);
      s.capabilities = await ensureModel(ctx, client, rest[0]);
      s.model = rest[0];
      s.messages = [];
      await client.json("POST", "/api/chat", { model: s.model, messages: [] });
      return true;
    }
    case "/save": {
      if (!rest[0]) {
        out("Usage:\n  /save <modelname>\n");
        return true;
      }
      await client.json("POST", "/api/create", {
        model: rest[0],
        from: s.model,
        stream: false,
        ...(s.system ? { system: s.system } : {}),
        ...(Object.keys(s.parameters).length ? { parameters: s.parameters } : {}),
        ...(s.messages.length
          ? { messages: s.messages.map(({ role, content }) => ({ role, content })) }
          : {}),
      });
      out(`Created new model '${rest[0]}'\n`);
      return true;
    }
    default:
      out(`Unknown command '${cmd}'. Type /? for help\n`);
      return true;
  }
}

async function interactive(ctx: Context, client: DaemonClient, s: Session): Promise<void> {
  const historyFile = join(ctx.paths.dataDir, "run_history");
  const history = (await Deno.readTextFile(historyFile).catch(() => "")).split("\n").filter(Boolean).slice(
    -500,
  );
  const editor = createLineEditor({ history });
  const seen = history.length;
  // A Ctrl-C that lands between an answer and the next prompt (the terminal not yet in raw mode) would end the
  // session; with a listener of the session's own it does nothing, and during an answer, answer()'s stops it.
  const ignore = () => {};
  Deno.addSignalListener("SIGINT", ignore);
  try {
    for (;;) {
      const r = await editor.read(">>> ");
      if ("eof" in r) break;
      if ("interrupt" in r) {
        out("Use Ctrl + d or /bye to exit.\n");
        continue;
      }
      let text = r.line;
      if (text.trimStart().startsWith('"""')) {
        // Multi-line: until a line that ends with """.
        text = text.trimStart().slice(3);
        while (!text.trimEnd().endsWith('"""')) {
          const more = await editor.read("... ");
          if ("eof" in more || "interrupt" in more) {
            text = "";
            break;
          }
          text += "\n" + more.line;
        }
        text = text.trimEnd().replace(/"""$/, "");
        if (!text.trim()) continue;
      } else if (text.trim().startsWith("/")) {
        if (!await command(ctx, client, s, text)) break;
        continue;
      }
      if (!text.trim()) continue;
      const msg: Message = { role: "user", content: text };
      if (s.capabilities.includes("vision")) {
        const found = await takeImages(text);
        for (const p of found.added) out(`Added image '${p}'\n`);
        if (found.images.length) Object.assign(msg, { content: found.text, images: found.images });
      }
      const reply = await answer(client, s, [...s.messages, msg]);
      if (reply !== undefined) s.messages.push(msg, { role: "assistant", content: reply });
    }
  } finally {
    Deno.removeSignalListener("SIGINT", ignore);
    const added = editor.history.slice(seen);
    if (added.length) {
      await Deno.mkdir(ctx.paths.dataDir, { recursive: true });
      await Deno.writeTextFile(historyFile, added.join("\n") + "\n", { append: true }).catch(() => {});
    }
  }
}

/** The `run` command. */
export const runCommand: Command = {
  name: "run",
  summary: "chat with a model (pulled first when missing), or answer one prompt (as `ollama run`)",
  usage: [
    "run MODEL [PROMPT...] [--format json] [--think|--nothink] [--verbose] [--keepalive 5m] [--insecure]",
  ],
  examples: [
    "llama-mgr run qwen3:4b",
    'llama-mgr run qwen3:4b "Why is the sky blue?"',
    "cat notes.txt | llama-mgr run qwen3:4b 'summarize this'",
    "llama-mgr run qwen3:4b --format json 'three colours as a JSON list'",
  ],
  details: [
    'In a session: """ starts a multi-line message; /set parameter NAME VALUE, /set system TEXT,',
    "/set format json, /set think, /set verbose; /show info|parameters|system|template|license|modelfile;",
    "/load MODEL; /save NAME (a model of this session's system, parameters and messages); /clear; /bye.",
    "Ctrl-C stops an answer (the session stays), Ctrl-D leaves. For a model that sees images, paths of image",
    "files in a message are sent as images.",
  ].join("\n"),
  flags: {
    format: { type: "string", value: "FORMAT", description: "answer format: json" },
    think: { type: "boolean", description: "let a thinking model think (and show it)" },
    nothink: { type: "boolean", description: "ask a thinking model not to think" },
    verbose: { type: "boolean", description: "print timings after each answer" },
    keepalive: {
      type: "string",
      value: "DURATION",
      description: "how long the model stays loaded (e.g. 5m)",
    },
    insecure: {
      type: "boolean",
      description: "pull over plain HTTP from a registry (when the model is missing)",
    },
  },
  async run(ctx: Context, args: ParsedArgs) {
    const [model, ...words] = args.positionals;
    if (!model) throw new UserError("run needs a model", { hint: "llama-mgr run qwen3:4b" });
    const client = await connect(ctx, { start: true });
    const s: Session = {
      model,
      parameters: {},
      messages: [],
      format: str(args, "format"),
      think: bool(args, "think") ? true : bool(args, "nothink") ? false : undefined,
      verbose: bool(args, "verbose"),
      keepAlive: str(args, "keepalive"),
      capabilities: await ensureModel(ctx, client, model, bool(args, "insecure")),
    };
    const piped = !Deno.stdin.isTerminal();
    if (words.length || piped) {
      const input = piped ? (await new Response(Deno.stdin.readable).text()).trim() : "";
      const prompt = [input, words.join(" ")].filter(Boolean).join(" ");
      if (!prompt) throw new UserError("nothing to ask", { hint: `llama-mgr run ${model} "your question"` });
      const msg: Message = { role: "user", content: prompt };
      if (s.capabilities.includes("vision")) {
        const found = await takeImages(prompt);
        if (found.images.length) Object.assign(msg, { content: found.text, images: found.images });
      }
      return (await answer(client, s, [msg])) === undefined ? 130 : 0;
    }
    // Load it before the first prompt, as `ollama run` does.
    await client.json("POST", "/api/chat", { model, messages: [] });
    await interactive(ctx, client, s);
    return 0;
  },
};
