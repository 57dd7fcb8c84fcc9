/**
 * The scheduler's own errors. The HTTP layer maps them to status codes: a full queue is a 503 (as Ollama's
 * `ErrMaxQueue`), a model that could not be loaded a 500 with the launcher's reason.
 *
 * @module
 */

/**
 * Ollama's answer when its queue is full (`server/sched.go`, ErrMaxQueue).
 *
 * @example
 * ```ts ignore
 * const r = await fetch("http://127.0.0.1:11434/api/chat", { method: "POST", body });
 * if (r.status === 503 && (await r.json()).error === BUSY_MESSAGE) console.log("retry later");
 * ```
 */
export const BUSY_MESSAGE = "server busy, please try again.  maximum pending requests exceeded";

/**
 * More requests are running or waiting than the queue allows (`OLLAMA_MAX_QUEUE`).
 *
 * @example
 * ```ts
 * throw new QueueFullError();
 * ```
 */
export class QueueFullError extends Error {
  /** Builds the error with Ollama's message. */
  constructor() {
    super(BUSY_MESSAGE);
    this.name = "QueueFullError";
  }
}

/**
 * A model's runner could not be started: no such instance, llama-server refused the model or did not become
 * ready in time. The message is the launcher's reason (with its hint).
 *
 * @example
 * ```ts
 * throw new LoadFailedError("smollm2:latest", "instance 'rocm' is not installed");
 * ```
 */
export class LoadFailedError extends Error {
  /** The model that failed to load. */
  model: string;
  /** Builds the error. */
  constructor(model: string, message: string, options: { cause?: unknown } = {}) {
    super(message, options);
    this.name = "LoadFailedError";
    this.model = model;
  }
}
