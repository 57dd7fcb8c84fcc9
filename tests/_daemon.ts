/**
 * The daemon for tests: a real daemon on 127.0.0.1 on a free port, its data dir in a temp dir, models
 * in a temp folder (links to the real fixture files, each with a config alias named after its file, e.g.
 * `smol`), llama-servers from the shared test build; always closed
 * with its servers. Also the Python client environment (uv venv with PyPI `ollama`, `openai` and `anthropic`
 * under the fixtures cache), and `cliWorld`: a data dir for CLI tests whose commands start a daemon.
 *
 * @module
 */
import { join } from "node:path";
import { cli, fixturesDir, smolModelPath, testInstance } from "./_fixtures.ts";
import { findFreePort } from "../lib/server/ports.ts";
import { pidAlive } from "../lib/util/process.ts";
import { resolvePaths } from "../lib/config/paths.ts";
import { parseConfig } from "../lib/config/load.ts";
import { type DaemonHandle, startDaemon } from "../lib/daemon/daemon.ts";
import { run } from "../lib/util/run.ts";
import type { LogFormat, LogLevel } from "../lib/util/log.ts";
import { upstreamAuth } from "../lib/daemon/upstream/client.ts";

/** The template file that gives SmolLM2 a tool-call format llama-server parses (Qwen 2.5's). */
export const TOOLS_TEMPLATE: string = new URL("./clients/qwen2.5-tools.jinja", import.meta.url).pathname;

/** Options for {@linkcode withDaemon}. */
export interface HarnessOptions {
  /** Model files to expose: file name in the models folder -> source path (default: smol.gguf -> SmolLM2). */
  models?: Record<string, string>;
  /** Extra config (merged over the defaults). */
  config?: Record<string, unknown>;
  /** Environment the daemon reads (default: none of the user's OLLAMA_* variables). */
  env?: Record<string, string>;
  /** Collect the daemon's log lines here, formatted (text: `time LEVEL message key=value ...`). */
  logs?: string[];
  /** The daemon's log level (default info). */
  logLevel?: LogLevel;
  /** The daemon's log format (default text). */
  logFormat?: LogFormat;
  /** Log rotation settings passed to the daemon. */
  logRotation?: { everyMs: number; maxBytes: number };
}

/** What a test gets. */
export interface Harness {
  /** The daemon. */
  daemon: DaemonHandle;
  /** Its base URL. */
  url: string;
  /** The data dir. */
  dataDir: string;
  /** The models folder. */
  modelsDir: string;
}

/**
 * Runs `fn` with a fresh daemon, then closes it (and its llama-servers) and removes its data.
 *
 * @example
 * ```ts
 * await withDaemon({}, async ({ url }) => { await fetch(url + "/api/tags"); });
 * ```
 */
export async function withDaemon<T>(options: HarnessOptions, fn: (h: Harness) => Promise<T>): Promise<T> {
  const { paths: testPaths, instance } = await testInstance();
  const root = await Deno.makeTempDir({ prefix: "llama-mgr-daemon-" });
  const modelsDir = join(root, "models");
  await Deno.mkdir(modelsDir, { recursive: true });
  const models = options.models ?? { "smol.gguf": await smolModelPath() };
  const aliases: Record<string, string> = {};
  const linked = new Set<string>();
  for (const [name, src] of Object.entries(models)) {
    const dest = join(modelsDir, name);
    // The index treats two links to one file as one model: a second use of a file gets its own copy.
    if (linked.has(src)) await Deno.copyFile(src, dest);
    else await Deno.symlink(src, dest);
    linked.add(src);
    aliases[name.replace(/\.gguf$/, "")] = dest;
  }
  const dataDir = join(root, "data");
  const paths = { ...resolvePaths({ dataDir, env: {} }), instancesDir: testPaths.instancesDir };
  const config = parseConfig({
    models: {
      dirs: [modelsDir],
      aliases,
      sources: { huggingface: false, ollama: false, lmstudio: false, llamacpp: false },
    },
    ...options.config,
  });
  const daemon = await startDaemon({
    paths,
    config,
    host: "127.0.0.1",
    port: 0,
    env: options.env ?? {},
    instance: instance.name,
    log: (line) => options.logs?.push(line),
    logLevel: options.logLevel,
    logFormat: options.logFormat,
    logRotateMs: options.logRotation?.everyMs,
    logMaxBytes: options.logRotation?.maxBytes,
  });
  try {
    return await fn({ daemon, url: daemon.url, dataDir, modelsDir });
  } finally {
    await daemon.close();
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
}

/** Reads an NDJSON body into objects, checking there is no blank line. */
export async function readNdjson(res: Response): Promise<Record<string, any>[]> {
  const text = await res.text();
  if (!text.endsWith("\n")) {
    throw new Error(`NDJSON body does not end with a newline: ${JSON.stringify(text)}`);
  }
  const lines = text.slice(0, -1).split("\n");
  for (const l of lines) if (l.trim() === "") throw new Error("NDJSON body has a blank line");
  return lines.map((l) => JSON.parse(l));
}

/**
 * A request straight to one of the daemon's llama-servers (`base` from `daemon.ctx.scheduler.list()`), with the
 * API key the daemon gave it; a body other than a string is sent as JSON with POST.
 *
 * @example
 * ```ts
 * const props = await (await runnerFetch(runner.url!, "/props")).json();
 * ```
 */
export function runnerFetch(base: string, path: string, body?: unknown): Promise<Response> {
  const headers: Record<string, string> = { ...upstreamAuth(base) };
  if (body === undefined) return fetch(base + path, { headers });
  headers["content-type"] = "application/json";
  const text = typeof body === "string" ? body : JSON.stringify(body);
  return fetch(base + path, { method: "POST", headers, body: text });
}

/** POSTs JSON and returns the response. */
export function post(url: string, body: unknown, init: RequestInit = {}): Promise<Response> {
  return fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
    ...init,
  });
}

/**
 * The Python interpreter of a venv with PyPI `ollama`, `openai` and `anthropic` (2.x), made with uv under the
 * fixtures cache on first use (a venv from before `anthropic` gets it added).
 */
export async function pythonClients(): Promise<string> {
  const venv = join(fixturesDir(), "venvs", "daemon-clients");
  const python = join(venv, "bin", "python");
  try {
    await run([python, "-c", "import ollama, openai, anthropic"]);
    return python;
  } catch { /* create it */ }
  await run(["uv", "venv", "--allow-existing", venv]);
  await run(["uv", "pip", "install", "--python", python, "ollama", "openai", "anthropic>=2,<3"]);
  return python;
}

/** Runs one of the Python client scripts against a daemon; returns its JSON output. */
export async function runPythonClient(script: string, url: string, args: string[] = []): Promise<any> {
  const python = await pythonClients();
  const path = new URL(`./clients/${script}`, import.meta.url).pathname;
  const r = await run([python, path, url, ...args], {
    env: { OLLAMA_HOST: url, PYTHONUNBUFFERED: "1" },
    check: false,
    timeoutMs: 300_000,
  });
  if (r.code !== 0) throw new Error(`${script} failed (${r.code}):\n${r.stderr}\n${r.stdout}`);
  return JSON.parse(r.stdout.trim().split("\n").pop()!);
}

/** A data dir for the command line as a user has one: the shared test build as instance `cpu`, a config. */
export interface CliWorld {
  /** The data dir. */
  data: string;
  /** The config file. */
  config: string;
  /** The folder of models the config lists (holds SmolLM2 when asked for). */
  modelsDir: string;
  /** The daemon's address the commands use (OLLAMA_HOST), on a free port. */
  url: string;
  /** The environment the commands run with. */
  env: Record<string, string>;
  /** Runs `llama-mgr -d DATA --config CONFIG -i cpu ARGS...` (stdin when given). */
  run(args: string[], stdin?: string): Promise<{ code: number; stdout: string; stderr: string }>;
  /** Pids of daemons started in the background for this data dir. */
  daemonPids(): Promise<number[]>;
  /** Stops those daemons (SIGTERM, waiting for them) and removes everything. */
  close(): Promise<void>;
}

/**
 * A fresh data dir and config for CLI tests whose commands start a daemon in the background.
 *
 * @example
 * ```ts ignore
 * const w = await cliWorld({ smol: true });
 * try { await w.run(["list"]); } finally { await w.close(); }
 * ```
 */
export async function cliWorld(options: { smol?: boolean } = {}): Promise<CliWorld> {
  const { paths: shared } = await testInstance();
  const root = await Deno.makeTempDir({ prefix: "llama-mgr-cli-" });
  const data = join(root, "data");
  const modelsDir = join(root, "models");
  await Deno.mkdir(join(data, "instances"), { recursive: true });
  await Deno.symlink(join(shared.instancesDir, "cpu"), join(data, "instances", "cpu"));
  await Deno.mkdir(modelsDir);
  if (options.smol) {
    await Deno.symlink(await smolModelPath(), join(modelsDir, "SmolLM2-135M-Instruct.Q4_1.gguf"));
  }
  const config = join(root, "config.yaml");
  await Deno.writeTextFile(
    config,
    `models:\n  dirs: [${modelsDir}]\n  sources: { huggingface: false, ollama: false, lmstudio: false, llamacpp: false }\n`,
  );
  const port = findFreePort();
  const env = { OLLAMA_HOST: `127.0.0.1:${port}` };
  const daemonPids = async () => {
    const out = await new Deno.Command("pgrep", { args: ["-f", `${data} --config ${config} -i cpu daemon`] })
      .output();
    return new TextDecoder().decode(out.stdout).trim().split("\n").map(Number).filter((p) =>
      p && p !== Deno.pid
    );
  };
  return {
    data,
    config,
    modelsDir,
    url: `http://127.0.0.1:${port}`,
    env,
    run: (args, stdin) => cli(["-d", data, "--config", config, "-i", "cpu", ...args], { env, stdin }),
    daemonPids,
    async close() {
      const pids = await daemonPids();
      for (const pid of pids) Deno.kill(pid, "SIGTERM");
      for (const pid of pids) {
        for (let i = 0; i < 100 && pidAlive(pid); i++) await new Promise((r) => setTimeout(r, 100));
      }
      await Deno.remove(root, { recursive: true }).catch(() => {});
    },
  };
}
