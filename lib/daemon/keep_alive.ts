/**
 * `keep_alive` as Ollama reads it: a JSON number is seconds (fractions allowed), a string is a Go duration
 * (`"5m"`, `"1h30m"`, `"-1s"`, `"0"`), a negative value means forever, `null` or absent means the default.
 * A bare number in a string (`"300"`) is an error, as in Go's `time.ParseDuration`; the default
 * (`OLLAMA_KEEP_ALIVE`, the config's `daemon.keep_alive`) also accepts a bare number of seconds.
 *
 * @module
 */
import { UserError } from "../util/errors.ts";

/**
 * Milliseconds, or `Infinity` for "keep loaded forever".
 *
 * @example
 * ```ts
 * const forever: KeepAliveMs = parseKeepAlive("-1s", 300_000); // Infinity
 * ```
 */
export type KeepAliveMs = number;

const UNITS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  "µs": 1e-3,
  "μs": 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/**
 * Parses a Go duration string (`"1h30m"`, `"1.5s"`, `"-1s"`, `"0"`) into milliseconds.
 *
 * @example
 * ```ts
 * parseGoDuration("1h30m"); // 5400000
 * ```
 */
export function parseGoDuration(text: string): number {
  const s = text.trim();
  const bad = () =>
    new UserError(`time: invalid duration "${text}"`, {
      hint: 'use a number of seconds or a duration such as "5m", "1h30m" or "-1s"',
    });
  if (s === "0" || s === "+0" || s === "-0") return 0;
  let rest = s;
  let sign = 1;
  if (rest.startsWith("-") || rest.startsWith("+")) {
    if (rest[0] === "-") sign = -1;
    rest = rest.slice(1);
  }
  if (!rest) throw bad();
  let total = 0;
  const re = /^(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)/;
  while (rest.length) {
    const m = rest.match(re);
    if (!m) throw bad();
    total += Number(m[1]) * UNITS[m[2]];
    rest = rest.slice(m[0].length);
  }
  return sign * total;
}

/**
 * Reads a request's `keep_alive` value; `undefined` and `null` give `fallback`. Throws a {@linkcode UserError}
 * (a 400 for the daemon) for anything Ollama rejects.
 *
 * @example
 * ```ts
 * parseKeepAlive(-1, 300_000); // Infinity
 * parseKeepAlive("10m", 300_000); // 600000
 * ```
 */
export function parseKeepAlive(value: unknown, fallback: KeepAliveMs): KeepAliveMs {
  if (value === undefined || value === null) return fallback;
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new UserError(`keep_alive: ${value} is not a number of seconds`);
    return value < 0 ? Infinity : value * 1000;
  }
  const how = 'use a number of seconds or a duration string such as "5m", "1h30m" or "-1s"';
  if (typeof value === "string") {
    let ms: number;
    try {
      ms = parseGoDuration(value);
    } catch {
      throw new UserError(`keep_alive: time: invalid duration "${value}" (${how})`);
    }
    return ms < 0 ? Infinity : ms;
  }
  const type = Array.isArray(value) ? "array" : typeof value;
  throw new UserError(`keep_alive: unsupported type '${type}' (${how})`);
}

/**
 * Reads the default keep-alive (`OLLAMA_KEEP_ALIVE` or the config): a duration, or a bare number of seconds.
 * An unreadable value falls back to 5 minutes as Ollama does.
 *
 * @example
 * ```ts
 * defaultKeepAlive("300"); // 300000
 * ```
 */
export function defaultKeepAlive(value: string | number | undefined): KeepAliveMs {
  const fiveMinutes = 5 * 60_000;
  if (value === undefined || value === "") return fiveMinutes;
  if (typeof value === "number") return value < 0 ? Infinity : value * 1000;
  try {
    const ms = parseGoDuration(value);
    return ms < 0 ? Infinity : ms;
  } catch {
    const n = Number(value.trim());
    if (Number.isInteger(n)) return n < 0 ? Infinity : n * 1000;
    return fiveMinutes;
  }
}
