/**
 * Progress display for long steps (clone, configure, build `[n/N]`, Python environment) on stderr: a redrawn
 * bar on a terminal, a line every 10% otherwise, nothing when quiet.
 *
 * @module
 */

/**
 * A running progress display.
 *
 * @example
 * ```ts
 * const silent: Progress = { update: () => {}, done: () => {} };
 * silent.update(3, 10, "ggml.c");
 * silent.done("built");
 * ```
 */
export interface Progress {
  /** Report progress: `n` of `total` (total may be unknown), with a short status text. */
  update(n: number, total?: number, text?: string): void;
  /** Finish the display with a final message. */
  done(message?: string): void;
}

/** Options for {@linkcode createProgress}. */
export interface ProgressOptions {
  /** Print nothing at all. */
  quiet?: boolean;
  /** Where to write (default stderr). */
  write?: (s: string) => void;
  /** Force terminal mode on or off (default: stderr is a terminal). */
  tty?: boolean;
}

const enc = new TextEncoder();

/**
 * Creates a progress display for one step.
 *
 * @example
 * ```ts
 * const p = createProgress("build", { quiet: true });
 * p.update(3, 10, "ggml.c");
 * p.done("built");
 * ```
 */
export function createProgress(label: string, options: ProgressOptions = {}): Progress {
  const write = options.write ?? ((s: string) => Deno.stderr.writeSync(enc.encode(s)));
  const tty = options.tty ?? Deno.stderr.isTerminal();
  const started = Date.now();
  let lastDecile = -1;
  let lastLen = 0;
  const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1)}s`;
  return {
    update(n, total, text = "") {
      if (options.quiet) return;
      if (tty) {
        const cols = 24;
        const bar = total
          ? "[" + "#".repeat(Math.round((n / total) * cols)).padEnd(cols, ".") + `] ${n}/${total}`
          : `${n}`;
        const line = `${label} ${bar} ${text}`.slice(0, 110);
        write("\r" + line.padEnd(lastLen, " "));
        lastLen = line.length;
      } else if (total) {
        const decile = Math.floor((n / total) * 10);
        if (decile > lastDecile) {
          lastDecile = decile;
          write(`${label}: [${n}/${total}] ${elapsed()}\n`);
        }
      }
    },
    done(message) {
      if (options.quiet) return;
      if (tty && lastLen) write("\r" + " ".repeat(lastLen) + "\r");
      write(`${label}: ${message ?? "done"} (${elapsed()})\n`);
    },
  };
}
