/**
 * A client of a running daemon (ours or Ollama's: the same API), for the command line's Ollama verbs: where the
 * daemon is (`OLLAMA_HOST`, as Ollama's CLI reads it), its API key, JSON and NDJSON calls whose errors carry
 * the daemon's own message, and a daemon started in the background when none answers.
 *
 * @module
 */
import { parseOllamaHost } from "./settings.ts";
import { UserError } from "../util/errors.ts";

/**
 * The daemon's base URL as a client reaches it: `OLLAMA_HOST` (a bare host gets port 11434; `0.0.0.0` and `::`
 * mean this machine), else `http://127.0.0.1:11434`.
 *
 * @example
 * ```ts
 * daemonUrl({ OLLAMA_HOST: "0.0.0.0:11500" }); // "http://127.0.0.1:11500"
 * ```
 */
export function daemonUrl(env: Record<string, string | undefined>): string {
  const raw = env.OLLAMA_HOST?.trim();
  const scheme = raw?.match(/^(https?):\/\//i)?.[1]?.toLowerCase() ?? "http";
  const { host, port } = raw ? parseOllamaHost(raw) : { host: "127.0.0.1", port: 11434 };
  const reach = host === "0.0.0.0" || host === "::" || host === "" ? "127.0.0.1" : host;
  return `${scheme}://${reach.includes(":") ? `[${reach}]` : reach}:${port}`;
}

/** An error answer of the daemon: its status and its `error` text. */
export class DaemonApiError extends UserError {
  /** HTTP status (0 when the daemon could not be reached). */
  status: number;
  /**
   * Builds the error.
   *
   * @example
   * ```ts
   * throw new DaemonApiError(404, "model 'x' not found");
   * ```
   */
  constructor(status: number, message: string, options: { hint?: string } = {}) {
    super(message, options);
    this.name = "DaemonApiError";
    this.status = status;
  }
}

/** Options for {@linkcode createDaemonClient}. */
export interface DaemonClientOptions {
  /** The daemon's base URL (see {@linkcode daemonUrl}). */
  url: string;
  /** Sent as `Authorization: Bearer ...` when set. */
  apiKey?: string;
  /** For tests. */
  fetch?: typeof fetch;
}

/** Calls to one daemon. */
export interface DaemonClient {
  /** The base URL. */
  readonly url: string;
  /** True when `GET /` answers as an Ollama API does. */
  running(): Promise<boolean>;
  /** Sends a request and parses the JSON answer (an empty body is `{}`); an error status throws DaemonApiError. */
  json<T = Record<string, unknown>>(method: string, path: string, body?: unknown): Promise<T>;
  /** Sends a request and yields each NDJSON line; a last `{"error"}` line throws DaemonApiError. */
  lines<T = Record<string, unknown>>(path: string, body: unknown, signal?: AbortSignal): AsyncGenerator<T>;
  /** Uploads a file as the blob `digest` (`POST /api/blobs/:digest`), unless the daemon has it already. */
  uploadBlob(digest: string, file: string): Promise<void>;
}

/**
 * Creates a client.
 *
 * @example
 * ```ts ignore
 * const client = createDaemonClient({ url: daemonUrl(Deno.env.toObject()) });
 * const { models } = await client.json<{ models: unknown[] }>("GET", "/api/tags");
 * ```
 */
export function createDaemonClient(options: DaemonClientOptions): DaemonClient {
  const f = options.fetch ?? fetch;
  const url = options.url.replace(/\/+$/, "");
  const headers = (body: boolean): Record<string, string> => ({
    ...(body ? { "content-type": "application/json" } : {}),
    ...(options.apiKey ? { authorization: `Bearer ${options.apiKey}` } : {}),
  });
  const send = async (method: string, path: string, body?: unknown, signal?: AbortSignal) => {
    let res: Response;
    try {
      res = await f(url + path, {
        method,
        headers: headers(body !== undefined),
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
      });
    } catch (err) {
      if (signal?.aborted) throw err;
      throw new DaemonApiError(0, `could not connect to the daemon at ${url}: ${(err as Error).message}`, {
        hint: "start it with `llama-mgr daemon`, or point OLLAMA_HOST at a running one",
      });
    }
    if (res.status >= 400) {
      const text = await res.text();
      let message = text.trim() || `HTTP ${res.status}`;
      try {
        const v = JSON.parse(text);
        if (typeof v?.error === "string") message = v.error;
      } catch { /* not JSON: the text as it is */ }
      throw new DaemonApiError(res.status, message);
    }
    return res;
  };
  return {
    url,
    async running() {
      try {
        const res = await f(url + "/", { signal: AbortSignal.timeout(2000) });
        const text = await res.text();
        return res.ok && text.includes("is running");
      } catch {
        return false;
      }
    },
    async uploadBlob(digest, file) {
      const head = await f(`${url}/api/blobs/${digest}`, { method: "HEAD", headers: headers(false) }).catch(
        () => null,
      );
      if (head?.ok) return;
      const data = await Deno.open(file);
      let res: Response;
      try {
        res = await f(`${url}/api/blobs/${digest}`, {
          method: "POST",
          headers: headers(false),
          body: data.readable,
        });
      } catch (err) {
        throw new DaemonApiError(
          0,
          `could not upload ${file} to the daemon at ${url}: ${(err as Error).message}`,
        );
      }
      const text = await res.text();
      if (res.status >= 400) {
        let message = text.trim() || `HTTP ${res.status}`;
        try {
          message = JSON.parse(text).error ?? message;
        } catch { /* not JSON */ }
        throw new DaemonApiError(res.status, message);
      }
    },
    async json<T>(method: string, path: string, body?: unknown): Promise<T> {
      const res = await send(method, path, body);
      const text = await res.text();
      return (text.trim() ? JSON.parse(text) : {}) as T;
    },
    async *lines<T>(path: string, body: unknown, signal?: AbortSignal): AsyncGenerator<T> {
      const res = await send("POST", path, body, signal);
      const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (value) buf += value;
          let nl: number;
          while ((nl = buf.indexOf("\n")) >= 0) {
            const line = buf.slice(0, nl).trim();
            buf = buf.slice(nl + 1);
            if (!line) continue;
            const v = JSON.parse(line);
            if (typeof v?.error === "string") throw new DaemonApiError(res.status, v.error);
            yield v as T;
          }
          if (done) break;
        }
        if (buf.trim()) {
          const v = JSON.parse(buf);
          if (typeof v?.error === "string") throw new DaemonApiError(res.status, v.error);
          yield v as T;
        }
      } finally {
        await reader.cancel().catch(() => {});
      }
    },
  };
}

/** Options for {@linkcode ensureDaemon}. */
export interface EnsureDaemonOptions {
  /** The command line that runs a daemon (it listens where the client looks: pass the same OLLAMA_HOST). */
  argv: string[];
  /** Its environment (default: this process's). */
  env?: Record<string, string>;
  /** Where its output goes. */
  logFile: string;
  /** How long to wait for it to answer (default 30 s). */
  timeoutMs?: number;
  /** Called once when a daemon is being started. */
  onStart?: () => void;
}

/**
 * Makes sure a daemon answers at the client's URL: when none does, one is started in the background (in a
 * session of its own, so it outlives this process and a Ctrl-C in this terminal), and this waits until it
 * answers. Returns true when it started one.
 *
 * @example
 * ```ts ignore
 * await ensureDaemon(client, { argv: ["llama-mgr", "daemon"], logFile: "/tmp/daemon.log" });
 * ```
 */
export async function ensureDaemon(client: DaemonClient, options: EnsureDaemonOptions): Promise<boolean> {
  if (await client.running()) return false;
  options.onStart?.();
  // The shell sends the daemon's output to the log file for as long as it runs; setsid puts it in a session of
  // its own, so the terminal's signals (Ctrl-C) do not reach it and it outlives this process.
  const shell = ["sh", "-c", 'exec "$@" >>"$0" 2>&1', options.logFile, ...options.argv];
  const argv = await hasSetsid() ? ["setsid", "-w", ...shell] : shell;
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    env: options.env,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  child.unref();
  let exited = false;
  child.status.then(() => exited = true, () => exited = true);
  const deadline = Date.now() + (options.timeoutMs ?? 30_000);
  while (Date.now() < deadline && !exited) {
    if (await client.running()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  if (await client.running()) return true;
  throw new DaemonApiError(
    0,
    `the daemon started for ${client.url} ${exited ? "exited" : "did not answer"}`,
    {
      hint: `see its log, ${options.logFile}; or start it yourself with \`llama-mgr daemon\``,
    },
  );
}

let setsidFound: Promise<boolean> | undefined;
function hasSetsid(): Promise<boolean> {
  return setsidFound ??= new Deno.Command("setsid", { args: ["--version"], stdout: "null", stderr: "null" })
    .output().then((o) => o.success, () => false);
}
