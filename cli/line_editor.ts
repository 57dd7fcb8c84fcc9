/**
 * A small line editor for the interactive `run`: the terminal in raw mode while a line is typed, with the keys
 * people expect (arrows, Home/End, Ctrl-A/E/U/K/W, Backspace, Delete, history with Up/Down), Ctrl-C to drop the
 * line and Ctrl-D to leave on an empty one. Without a terminal it reads plain lines.
 *
 * @module
 */

/** What reading a line gave. */
export type LineResult = { line: string } | { interrupt: true } | { eof: true };

/** Options for {@linkcode createLineEditor}. */
export interface LineEditorOptions {
  /** Earlier lines, oldest first (Up walks back through them). */
  history?: string[];
  /** Where the terminal's input comes from (default stdin). */
  input?: { read(p: Uint8Array): Promise<number | null>; setRaw?(raw: boolean): void; isTerminal(): boolean };
  /** Where the echo goes (default stdout). */
  write?: (s: string) => void;
}

/** A line editor. */
export interface LineEditor {
  /** Reads one line after printing `prompt`. */
  read(prompt: string): Promise<LineResult>;
  /** The lines entered so far (for saving). */
  history: string[];
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/**
 * Creates a line editor.
 *
 * @example
 * ```ts ignore
 * const editor = createLineEditor({ history: [] });
 * const r = await editor.read(">>> ");
 * if ("line" in r) console.log(r.line);
 * ```
 */
export function createLineEditor(options: LineEditorOptions = {}): LineEditor {
  const input = options.input ?? Deno.stdin;
  const write = options.write ?? ((s: string) => Deno.stdout.writeSync(enc.encode(s)));
  const history = options.history ?? [];
  let pending = ""; // bytes read past a line (plain mode) or a pasted tail (raw mode)

  const readChunk = async (): Promise<string | null> => {
    if (pending) {
      const p = pending;
      pending = "";
      return p;
    }
    const buf = new Uint8Array(4096);
    const n = await input.read(buf);
    if (n === null) return null;
    return dec.decode(buf.subarray(0, n), { stream: true });
  };

  const readPlain = async (prompt: string): Promise<LineResult> => {
    write(prompt);
    let text = "";
    for (;;) {
      const nl = text.indexOf("\n");
      if (nl >= 0) {
        pending = text.slice(nl + 1);
        return { line: text.slice(0, nl).replace(/\r$/, "") };
      }
      const chunk = await readChunk();
      if (chunk === null) return text ? { line: text } : { eof: true };
      text += chunk;
    }
  };

  const readRaw = async (prompt: string): Promise<LineResult> => {
    let line = "";
    let cursor = 0;
    let at = history.length; // where Up/Down is in the history
    let draft = "";
    const redraw = () => {
      write(`\r\x1b[K${prompt}${line}`);
      const back = line.length - cursor;
      if (back > 0) write(`\x1b[${back}D`);
    };
    write(prompt);
    input.setRaw?.(true);
    try {
      for (;;) {
        const chunk = await readChunk();
        if (chunk === null) return { eof: true };
        let i = 0;
        while (i < chunk.length) {
          const c = chunk[i];
          const rest = chunk.slice(i);
          // An escape sequence: ESC [ ... letter-or-tilde, or ESC O letter.
          // deno-lint-ignore no-control-regex
          const esc = rest.match(/^\x1b(\[[0-9;]*[A-Za-z~]|O[A-Za-z])/);
          if (esc) {
            const seq = esc[1];
            i += esc[0].length;
            if (seq === "[A" || seq === "OA") { // up
              if (at > 0) {
                if (at === history.length) draft = line;
                line = history[--at];
                cursor = line.length;
              }
            } else if (seq === "[B" || seq === "OB") { // down
              if (at < history.length) {
                at++;
                line = at === history.length ? draft : history[at];
                cursor = line.length;
              }
            } else if (seq === "[C" || seq === "OC") cursor = Math.min(line.length, cursor + 1);
            else if (seq === "[D" || seq === "OD") cursor = Math.max(0, cursor - 1);
            else if (seq === "[H" || seq === "OH" || seq === "[1~") cursor = 0;
            else if (seq === "[F" || seq === "OF" || seq === "[4~") cursor = line.length;
            else if (seq === "[3~") line = line.slice(0, cursor) + line.slice(cursor + 1);
            redraw();
            continue;
          }
          i++;
          if (c === "\r" || c === "\n") {
            write("\r\n");
            pending = chunk.slice(i).replace(/^\n/, "");
            return { line };
          }
          if (c === "\x03") { // Ctrl-C
            write("^C\r\n");
            return { interrupt: true };
          }
          if (c === "\x04") { // Ctrl-D
            if (line === "") {
              write("\r\n");
              return { eof: true };
            }
            line = line.slice(0, cursor) + line.slice(cursor + 1);
          } else if (c === "\x7f" || c === "\b") {
            if (cursor > 0) {
              line = line.slice(0, cursor - 1) + line.slice(cursor);
              cursor--;
            }
          } else if (c === "\x01") cursor = 0;
          else if (c === "\x05") cursor = line.length;
          else if (c === "\x15") {
            line = line.slice(cursor);
            cursor = 0;
          } else if (c === "\x0b") line = line.slice(0, cursor);
          else if (c === "\x17") {
            const start = line.slice(0, cursor).replace(/\S+\s*$/, "").length;
            line = line.slice(0, start) + line.slice(cursor);
            cursor = start;
          } else if (c === "\x0c") write("\x1b[2J\x1b[H");
          else if (c >= " " || c === "\t") {
            line = line.slice(0, cursor) + c + line.slice(cursor);
            cursor++;
          }
          redraw();
        }
      }
    } finally {
      input.setRaw?.(false);
    }
  };

  return {
    history,
    async read(prompt) {
      const r = input.isTerminal() ? await readRaw(prompt) : await readPlain(prompt);
      if ("line" in r && r.line.trim() && history[history.length - 1] !== r.line) history.push(r.line);
      return r;
    },
  };
}
