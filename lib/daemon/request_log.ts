/**
 * The request log, like Ollama's server log: one info line per request with its method, path, status and
 * duration, and for a model request the model and the token counts known when it ends. A streamed answer is
 * logged when it is done, not when its headers go out: the handler that leases a runner for it hands the
 * lease to {@linkcode RequestLog.hold}, and the line is written once the response is out and the lease is
 * given back (the body itself is never wrapped or buffered).
 *
 * @module
 */
import type { LogFields, Logger } from "../util/log.ts";
import type { Lease } from "./runners/scheduler.ts";
import type { Metrics } from "./types.ts";

/** One request being answered. */
interface Entry {
  start: number;
  method: string;
  path: string;
  status: number;
  /** Leases still held; the line waits for them. */
  holds: number;
  fields?: LogFields;
}

/**
 * Collects what each request's log line says.
 *
 * @example
 * ```ts ignore
 * const requests = createRequestLog(logger);
 * const end = requests.begin(req);
 * const res = await app.fetch(req);
 * end(res.status);
 * ```
 */
export interface RequestLog {
  /** Starts a request's line; call the function returned with the status once the handler has answered. */
  begin(req: Request): (status: number) => void;
  /** Adds fields (the model, token counts) to a request's line. */
  note(req: Request, fields: LogFields): void;
  /** A lease whose release also ends the request's line, when the response is out by then. */
  hold(req: Request, lease: Lease): Lease;
}

/** The path of a request URL, without parsing it: from the first `/` after the scheme to any `?`. */
function urlPath(url: string): string {
  const start = url.indexOf("/", url.indexOf("//") + 2);
  if (start < 0) return "/";
  const q = url.indexOf("?", start);
  return q < 0 ? url.slice(start) : url.slice(start, q);
}

/**
 * Makes the request log writing to `logger` at info level.
 *
 * @example
 * ```ts
 * import { createLogger } from "../util/log.ts";
 * const requests = createRequestLog(createLogger({ format: "json" }));
 * ```
 */
export function createRequestLog(logger: Logger): RequestLog {
  const entries = new WeakMap<Request, Entry>();
  const debug = logger.enabled("debug");
  const write = (e: Entry) => {
    logger.info("request", {
      method: e.method,
      path: e.path,
      status: e.status,
      duration_ms: Math.round((performance.now() - e.start) * 100) / 100,
      ...e.fields,
    });
  };
  return {
    begin(req) {
      const e: Entry = {
        start: performance.now(),
        method: req.method,
        path: urlPath(req.url),
        status: 0,
        holds: 0,
      };
      entries.set(req, e);
      // At debug, a line when a request arrives too: a request that never ends shows up.
      if (debug) logger.debug("request started", { method: e.method, path: e.path });
      return (status) => {
        e.status = status;
        if (e.holds === 0) write(e);
      };
    },
    note(req, fields) {
      const e = entries.get(req);
      if (e) e.fields = e.fields ? Object.assign(e.fields, fields) : { ...fields };
    },
    hold(req, lease) {
      const e = entries.get(req);
      if (!e) return lease;
      e.holds++;
      let released = false;
      return {
        url: lease.url,
        loadMs: lease.loadMs,
        ctx: lease.ctx,
        release() {
          lease.release();
          if (released) return;
          released = true;
          e.holds--;
          // status 0: the handler has not answered yet, and will write the line when it does.
          if (e.holds === 0 && e.status !== 0) write(e);
        },
      };
    },
  };
}

/**
 * What a generation's final counters add to its request's line (for `runGeneration`'s `counted`); undefined
 * when requests are not logged.
 *
 * @example
 * ```ts ignore
 * await runGeneration({ ...options, counted: countsFor(ctx.requests, req) });
 * ```
 */
export function countsFor(
  requests: RequestLog | undefined,
  req: Request,
): ((m: Metrics) => void) | undefined {
  if (!requests) return undefined;
  return (m) => requests.note(req, { prompt_eval_count: m.prompt_eval_count, eval_count: m.eval_count });
}
