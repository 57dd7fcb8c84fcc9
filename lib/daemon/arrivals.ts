/**
 * Simultaneous generation requests reach llama-server together, as they would straight from the clients.
 *
 * The daemon prepares requests one at a time on its one JavaScript thread (read and validate the body, find
 * the model, take a runner: a fraction of a millisecond each), so requests that arrive at once would be sent
 * apart. llama-server starts decoding the first one the moment it arrives, and the others then wait a whole
 * decode step (several milliseconds on a CPU) for the next batch. So a prepared request
 * whose companions are still being prepared is held until they are ready too (at most `maxHoldMs`), and they
 * are all sent in the same turn. A request that arrives alone is never held.
 *
 * @module
 */

/**
 * Requests being prepared, and prepared requests waiting for them.
 *
 * @example
 * ```ts ignore
 * const arrivals = new Arrivals();
 * arrivals.arrive(req); // when a generation request comes in
 * // ... validate it, find the model, take a runner ...
 * await arrivals.ready(req); // just before sending it to llama-server
 * ```
 */
export class Arrivals {
  #preparing = new Set<Request>();
  #held: (() => void)[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  readonly #maxHoldMs: number;

  /** `maxHoldMs`: the longest a prepared request waits for the others (default 5). */
  constructor(maxHoldMs = 5) {
    this.#maxHoldMs = maxHoldMs;
  }

  /** Requests being prepared now. */
  get preparing(): number {
    return this.#preparing.size;
  }

  /** A generation request has arrived; it is prepared until {@linkcode ready} or {@linkcode done}. */
  arrive(req: Request): void {
    this.#preparing.add(req);
  }

  /**
   * `req` is prepared and about to be sent: resolves at once when no other request is being prepared,
   * otherwise when the last of them is ready (or done), or after `maxHoldMs`.
   */
  ready(req: Request): Promise<void> {
    if (!this.#preparing.delete(req)) return Promise.resolve(); // not announced by arrive()
    if (this.#preparing.size === 0) {
      this.#release();
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      this.#held.push(resolve);
      this.#timer ??= setTimeout(() => this.#release(), this.#maxHoldMs);
    });
  }

  /** `req` has its answer (or failed) without being sent; nobody waits for it any longer. */
  done(req: Request): void {
    if (this.#preparing.delete(req) && this.#preparing.size === 0) this.#release();
  }

  #release(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    const held = this.#held;
    this.#held = [];
    for (const resolve of held) resolve();
  }
}

/** The daemon paths whose requests are generation requests sent to llama-server. */
const GENERATION_PATHS = new Set(["/api/chat", "/api/generate", "/v1/chat/completions", "/v1/completions"]);

/** Whether `req` is a generation request (its URL is parsed only for a POST). */
export function isGeneration(req: Request): boolean {
  return req.method === "POST" && GENERATION_PATHS.has(new URL(req.url).pathname);
}
