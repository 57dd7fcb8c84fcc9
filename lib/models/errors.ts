/**
 * The model layer's own errors. They carry what was wrong and what to do (as the CLI's `UserError`); the HTTP
 * layer maps each to its status code, the CLI prints it.
 *
 * @module
 */
import { UserError } from "../util/errors.ts";

/**
 * No model has this name. `near` holds the closest names, for a hint.
 *
 * @example
 * ```ts
 * throw new ModelNotFoundError("qwen3:4b", { near: ["qwen3:8b"] });
 * ```
 */
export class ModelNotFoundError extends UserError {
  /** The name that was asked for. */
  ref: string;
  /** The closest names known. */
  near: string[];
  /** Builds the error: `model 'ref' not found`, as Ollama words it. */
  constructor(ref: string, options: { near?: string[]; hint?: string } = {}) {
    super(`model '${ref}' not found`, { hint: options.hint });
    this.name = "ModelNotFoundError";
    this.ref = ref;
    this.near = options.near ?? [];
  }
}

/**
 * A model llama-mgr will not change: it belongs to another tool's store (Ollama's, Hugging Face's cache...).
 *
 * @example
 * ```ts
 * throw new ForeignModelError("llama3:8b", "ollama", "/usr/share/ollama/.ollama/models/blobs/sha256-...");
 * ```
 */
export class ForeignModelError extends UserError {
  /** Builds the error, naming the store and the file. */
  constructor(name: string, source: string, path: string) {
    super(
      `model '${name}' belongs to the ${source} store at ${path}; ` +
        "llama-mgr does not delete another tool's files (remove it with that tool)",
    );
    this.name = "ForeignModelError";
  }
}

/**
 * The model layer's own state could not be read or written (the names file of API-made models).
 *
 * @example
 * ```ts
 * throw new ModelStoreError("cannot read /data/daemon/names.json: permission denied");
 * ```
 */
export class ModelStoreError extends Error {
  /** Builds the error. */
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, options);
    this.name = "ModelStoreError";
  }
}
