/**
 * One typed way to run an external command (git, cmake, ninja, uv, llama-*): output streamed line by line to
 * a log file and a callback, and a {@linkcode CommandError} carrying the command line, exit code and the last
 * lines of output when it fails.
 *
 * @module
 */
import { UserError } from "./errors.ts";

/** Options for {@linkcode run}. */
export interface RunOptions {
  /** Working directory. */
  cwd?: string;
  /** Extra environment variables (merged over the current environment). */
  env?: Record<string, string>;
  /** Append all output to this file. */
  logFile?: string;
  /** Called with each output line (stdout and stderr). */
  onLine?: (line: string, stream: "stdout" | "stderr") => void;
  /** Throw a {@linkcode CommandError} on a non-zero exit (default true). */
  check?: boolean;
  /** How many trailing output lines to keep for the error message (default 30). */
  tailLines?: number;
  /** Kill the command after this many milliseconds. */
  timeoutMs?: number;
  /** Text written to the command's stdin. */
  stdin?: string;
  /** Abort signal that kills the command. */
  signal?: AbortSignal;
}

/** What a finished command returned. */
export interface RunResult {
  /** Exit code (-1 when killed by a signal). */
  code: number;
  /** The whole standard output. */
  stdout: string;
  /** The whole standard error. */
  stderr: string;
  /** The last lines of combined output. */
  tail: string[];
}

/**
 * A command that could not start or exited non-zero.
 *
 * @example
 * ```ts ignore
 * try {
 *   await quantizeModel(options);
 * } catch (err) {
 *   if (err instanceof CommandError) console.error(err.command, err.code, err.logFile);
 * }
 * ```
 */
export class CommandError extends Error {
  /** The command line as a shell would show it. */
  command: string;
  /** Exit code, or -1 when it could not run or was killed. */
  code: number;
  /** The last lines of its output. */
  tail: string[];
  /** The log file holding the full output, if any. */
  logFile?: string;

  /** Builds the error from the parts of a failed run. */
  constructor(command: string, code: number, tail: string[], logFile?: string, reason?: string) {
    const head = reason ?? `\`${command}\` exited with code ${code}`;
    const body = tail.length ? `\n--- last ${tail.length} lines ---\n${tail.join("\n")}` : "";
    const log = logFile ? `\nfull log: ${logFile}` : "";
    super(head + body + log);
    this.name = "CommandError";
    this.command = command;
    this.code = code;
    this.tail = tail;
    this.logFile = logFile;
  }
}

/**
 * A tool's failure as the user should read it: `<tool> failed (exit code N):` with the lines that say why
 * (`reason`; when none matched, the last 8 of `tail`), and `hint` or else where the full log is.
 *
 * @example
 * ```ts
 * throw toolFailure("llama-quantize", err, { reason: err.tail.filter((l) => /error/i.test(l)) });
 * ```
 */
export function toolFailure(
  tool: string,
  err: CommandError,
  options: { reason: string[]; tail?: string[]; hint?: string },
): UserError {
  const lines = options.reason.length ? options.reason : (options.tail ?? err.tail).slice(-8);
  return new UserError(`${tool} failed (exit code ${err.code}):\n${lines.join("\n")}`, {
    hint: options.hint ?? (err.logFile ? `full log: ${err.logFile}` : undefined),
    cause: err,
  });
}

/** Quotes a command line for display. */
export function shellQuote(cmd: string[]): string {
  return cmd.map((a) => /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", `'\\''`)}'`).join(" ");
}

/**
 * Runs a command to completion.
 *
 * @example
 * ```ts
 * import { run } from "./run.ts";
 * const { stdout } = await run(["git", "--version"]);
 * ```
 */
export async function run(cmd: string[], options: RunOptions = {}): Promise<RunResult> {
  const { check = true, tailLines = 30 } = options;
  const display = shellQuote(cmd);
  const log = options.logFile
    ? await Deno.open(options.logFile, { append: true, create: true, write: true })
    : undefined;
  const enc = new TextEncoder();
  try {
    if (log) await log.write(enc.encode(`$ ${display}\n`));
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(cmd[0], {
        args: cmd.slice(1),
        cwd: options.cwd,
        env: options.env,
        stdin: options.stdin !== undefined ? "piped" : "null",
        stdout: "piped",
        stderr: "piped",
        signal: options.signal,
      }).spawn();
    } catch (err) {
      const what = err instanceof Deno.errors.NotFound ? `\`${cmd[0]}\` was not found on PATH` : String(err);
      throw new CommandError(display, -1, [], options.logFile, `cannot run \`${display}\`: ${what}`);
    }
    if (options.stdin !== undefined) {
      const w = child.stdin.getWriter();
      await w.write(enc.encode(options.stdin));
      await w.close();
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    let timedOut = false;
    if (options.timeoutMs) {
      timer = setTimeout(() => {
        timedOut = true;
        try {
          child.kill("SIGKILL");
        } catch { /* already gone */ }
      }, options.timeoutMs);
    }
    const tail: string[] = [];
    const pump = async (stream: ReadableStream<Uint8Array>, name: "stdout" | "stderr") => {
      let all = "";
      let buf = "";
      const dec = new TextDecoder();
      for await (const chunk of stream) {
        if (log) await log.write(chunk);
        const text = dec.decode(chunk, { stream: true });
        all += text;
        buf += text;
        const parts = buf.split(/\r?\n|\r/);
        buf = parts.pop() ?? "";
        for (const line of parts) {
          tail.push(line);
          if (tail.length > tailLines) tail.shift();
          options.onLine?.(line, name);
        }
      }
      if (buf) {
        tail.push(buf);
        if (tail.length > tailLines) tail.shift();
        options.onLine?.(buf, name);
      }
      return all;
    };
    const [stdout, stderr, status] = await Promise.all([
      pump(child.stdout, "stdout"),
      pump(child.stderr, "stderr"),
      child.status,
    ]);
    if (timer !== undefined) clearTimeout(timer);
    const code = status.signal ? -1 : status.code;
    if (timedOut) {
      throw new CommandError(display, -1, tail, options.logFile, `\`${display}\` timed out`);
    }
    if (check && code !== 0) throw new CommandError(display, code, tail, options.logFile);
    return { code, stdout, stderr, tail };
  } finally {
    log?.close();
  }
}

/** Finds an executable on PATH; returns its full path or undefined. */
export function which(name: string, pathEnv = Deno.env.get("PATH") ?? ""): string | undefined {
  if (name.includes("/")) return isExecutable(name) ? name : undefined;
  for (const dir of pathEnv.split(":")) {
    if (!dir) continue;
    const candidate = `${dir}/${name}`;
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

function isExecutable(path: string): boolean {
  try {
    const st = Deno.statSync(path);
    return st.isFile && ((st.mode ?? 0o111) & 0o111) !== 0;
  } catch {
    return false;
  }
}
