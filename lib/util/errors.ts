/**
 * Errors that the CLI prints as a message and a hint instead of a stack trace.
 *
 * @module
 */

/**
 * An error caused by the user's input or machine state: what was wrong and what to do. Every error of the
 * library that the user can fix is one (model not found, instance not installed, invalid config...).
 *
 * @example
 * ```ts ignore
 * try {
 *   await getInstance(paths, "rocm");
 * } catch (err) {
 *   if (err instanceof UserError) console.error(err.message, err.hint);
 *   else throw err;
 * }
 * ```
 */
export class UserError extends Error {
  /** What the user can do about it. */
  hint?: string;
  /** The process exit code the CLI uses for this error. */
  exitCode: number;

  /**
   * An error with `message`, an optional `hint` (what to do) and the CLI's exit code (default 1).
   *
   * @example
   * ```ts
   * throw new UserError("instance 'rocm' is not installed", { hint: "run `llama-mgr instances` to list them" });
   * ```
   */
  constructor(message: string, options: { hint?: string; exitCode?: number; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.name = "UserError";
    this.hint = options.hint;
    this.exitCode = options.exitCode ?? 1;
  }
}

/** Formats any thrown value as the text the CLI shows. */
export function formatError(err: unknown): string {
  if (err instanceof UserError) {
    return `error: ${err.message}` + (err.hint ? `\nhint: ${err.hint}` : "");
  }
  if (err instanceof Error) return `error: ${err.message}`;
  return `error: ${String(err)}`;
}
