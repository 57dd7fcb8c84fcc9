/**
 * The scheduler's own errors. The HTTP layer maps them to status codes: a full queue is a 503 (as Ollama's
 * `ErrMaxQueue`), a model that could not be loaded or can never fit its memory budget a 500 with the reason.
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

/**
 * A model needs more memory on a device than the device's whole budget: it could not load even with every
 * other model unloaded. Ollama answers this case with a 500 and `model requires more system memory (X GiB)
 * than is available (Y GiB)`; the message here starts the same way and names the device and how to change
 * its budget.
 *
 * @example
 * ```ts
 * const err = new CannotFitError("big:latest", "CPU", 12 * 2 ** 30, 8 * 2 ** 30);
 * err.message; // "model requires more system memory (12.0 GiB) than is available (8.0 GiB) ..."
 * ```
 */
export class CannotFitError extends Error {
  /** The model. */
  model: string;
  /** The device it does not fit on (`CPU`, `CUDA0`...). */
  device: string;
  /** Bytes it needs there. */
  needBytes: number;
  /** The device's budget, in bytes. */
  budgetBytes: number;
  /** Builds the error. */
  constructor(model: string, device: string, needBytes: number, budgetBytes: number) {
    const gib = (n: number) => `${(n / 2 ** 30).toFixed(1)} GiB`;
    const what = device === "CPU" ? "system memory" : `memory on ${device}`;
    super(
      `model requires more ${what} (${gib(needBytes)}) than is available (${gib(budgetBytes)}): ` +
        `${model} does not fit the ${device} budget even with every other model unloaded; use a smaller ` +
        `num_ctx${
          device === "CPU" ? "" : " or fewer GPU layers (num_gpu)"
        }, or raise memory.budgets.${device} ` +
        `(or lower memory.reserve) in the config`,
    );
    this.name = "CannotFitError";
    this.model = model;
    this.device = device;
    this.needBytes = needBytes;
    this.budgetBytes = budgetBytes;
  }
}
