/**
 * A small levelled logger: `debug`, `info`, `warn`, `error`, each a message and optional fields, written as
 * one line of text (`time LEVEL message key=value ...`, like Go's slog text handler) or one JSON object per
 * line. Lines below the level cost a comparison and nothing else.
 *
 * @module
 */
import { UserError } from "./errors.ts";

/** A log level. */
export type LogLevel = "debug" | "info" | "warn" | "error";
/** The levels, least severe first. */
export const LOG_LEVELS: readonly LogLevel[] = ["debug", "info", "warn", "error"];
/** A line format: `text` (readable) or `json` (one object per line). */
export type LogFormat = "text" | "json";
/** The line formats. */
export const LOG_FORMATS: readonly LogFormat[] = ["text", "json"];
/** Fields of a line; undefined ones are left out. */
export type LogFields = Record<string, string | number | boolean | undefined>;

/**
 * Writes log lines at or above its level.
 *
 * @example
 * ```ts
 * const log: Logger = createLogger({ level: "info" });
 * log.info("loading smol", { ctx: 4096 });
 * ```
 */
export interface Logger {
  /** The lowest level written. */
  readonly level: LogLevel;
  /** Whether a line at `level` would be written. */
  enabled(level: LogLevel): boolean;
  /** Details for finding faults. */
  debug(msg: string, fields?: LogFields): void;
  /** What happened. */
  info(msg: string, fields?: LogFields): void;
  /** Something was changed or may be wrong, and the work goes on. */
  warn(msg: string, fields?: LogFields): void;
  /** Something failed. */
  error(msg: string, fields?: LogFields): void;
}

/** Options for {@linkcode createLogger}. */
export interface LoggerOptions {
  /** The lowest level written (default info). */
  level?: LogLevel;
  /** The line format (default text). */
  format?: LogFormat;
  /** Where lines go, without their newline (default: stderr). */
  write?: (line: string) => void;
  /** The clock (default: now). */
  now?: () => Date;
}

const RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };
const enc = new TextEncoder();

/** A text field's value: bare when it has no space, quote or `=`, else JSON-quoted (as slog quotes). */
function textValue(v: string | number | boolean): string {
  if (typeof v !== "string") return String(v);
  return v === "" || /[\s"=\\]/.test(v) ? JSON.stringify(v) : v;
}

/**
 * Makes a logger.
 *
 * @example
 * ```ts
 * const lines: string[] = [];
 * const log = createLogger({ format: "json", write: (l) => lines.push(l) });
 * log.info("request", { method: "GET", path: "/api/tags", status: 200 });
 * JSON.parse(lines[0]).status; // 200
 * ```
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? "info";
  const min = RANK[level];
  const write = options.write ?? ((line: string) => Deno.stderr.writeSync(enc.encode(line + "\n")));
  const now = options.now ?? (() => new Date());
  const json = options.format === "json";
  const emit = (lvl: LogLevel, msg: string, fields?: LogFields): void => {
    if (RANK[lvl] < min) return;
    const time = now().toISOString();
    if (json) {
      write(JSON.stringify({ time, level: lvl, msg, ...fields }));
      return;
    }
    let line = `${time} ${lvl.toUpperCase().padEnd(5)} ${msg}`;
    if (fields) {
      for (const k in fields) {
        const v = fields[k];
        if (v !== undefined) line += ` ${k}=${textValue(v)}`;
      }
    }
    write(line);
  };
  return {
    level,
    enabled: (lvl) => RANK[lvl] >= min,
    debug: (msg, fields) => emit("debug", msg, fields),
    info: (msg, fields) => emit("info", msg, fields),
    warn: (msg, fields) => emit("warn", msg, fields),
    error: (msg, fields) => emit("error", msg, fields),
  };
}

/**
 * Reads a log level (any case); `from` names where it came from, for the error.
 *
 * @example
 * ```ts
 * parseLogLevel("DEBUG", "--log-level"); // "debug"
 * ```
 */
export function parseLogLevel(value: string, from: string): LogLevel {
  const v = value.trim().toLowerCase();
  const level = v === "warning" ? "warn" : v;
  if ((LOG_LEVELS as readonly string[]).includes(level)) return level as LogLevel;
  throw new UserError(`${from} '${value}' is not a log level`, {
    hint: `use one of ${LOG_LEVELS.join(", ")}`,
  });
}

/**
 * Reads a log format (any case); `from` names where it came from, for the error.
 *
 * @example
 * ```ts
 * parseLogFormat("json", "--log-format"); // "json"
 * ```
 */
export function parseLogFormat(value: string, from: string): LogFormat {
  const v = value.trim().toLowerCase();
  if ((LOG_FORMATS as readonly string[]).includes(v)) return v as LogFormat;
  throw new UserError(`${from} '${value}' is not a log format`, { hint: `use ${LOG_FORMATS.join(" or ")}` });
}
