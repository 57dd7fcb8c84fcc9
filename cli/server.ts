/**
 * `llama-mgr server`: start, list, inspect, follow, restart and stop supervised llama-server processes.
 *
 * @module
 */
import { type Command, type Context, table } from "./command.ts";
import { bool, int, type ParsedArgs, str } from "./args.ts";
import {
  followServerLog,
  listServers,
  probeHealth,
  readServerLog,
  removeServer,
  restartServer,
  serverNameFor,
  type ServerStatus,
  serverStatus,
  startServer,
  stopAllServers,
  stopServer,
} from "../lib/server/mod.ts";
import { getInstance } from "../lib/llamacpp/instances.ts";
import { serverEnv } from "../lib/llamacpp/devices.ts";
import { basename } from "node:path";
import { findPreset, type ModelEntry, resolveModel } from "../lib/models/mod.ts";
import { expandHome, formatBytes } from "../lib/util/fs.ts";
import { UserError } from "../lib/util/errors.ts";
import { checkCluster, rpcFlags } from "../lib/rpc/cluster.ts";
import type { Config, Preset } from "../lib/config/schema.ts";

function uptime(s?: number): string {
  if (s === undefined) return "-";
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60}s`;
  return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
}

function parsePort(v: string | undefined): number | "auto" | undefined {
  if (v === undefined || v === "auto") return v;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 65535) {
    throw new UserError(`--port '${v}' is not a port`, { hint: "use a number from 1 to 65535, or auto" });
  }
  return n;
}

async function start(ctx: Context, args: ParsedArgs): Promise<number> {
  const ref = args.positionals[1];
  if (!ref) {
    throw new UserError("server start needs a model or a preset", {
      hint: "llama-mgr server start qwen3:4b --port auto",
    });
  }
  const config = await ctx.config();
  const named = findPreset(config, { preset: ref });
  const modelRef = named?.preset.model ?? ref;
  const entry = await modelEntry(ctx, config, modelRef);
  const modelPath = entry?.path ?? expandHome(modelRef);
  // A model started by its own name runs with its preset, as the daemon runs it.
  const preset: Preset | undefined = named?.preset ??
    (entry ? findPreset(config, { model: { ...entry, entryName: entry.name } })?.preset : undefined);
  const name = str(args, "name") ??
    (named ? ref : serverNameFor(entry?.name ?? basename(modelPath).replace(/\.gguf$/i, "")));
  const instance = await getInstance(ctx.paths, ctx.instance ?? preset?.instance, config.default_instance);
  const t0 = performance.now();
  const timeout = int(args, "timeout", "server start");
  // A model bound to a cluster is spread over its RPC workers, each checked first so a missing one is named.
  const rpc: string[] = [];
  if (preset?.cluster) {
    const lab = await checkCluster(config, preset.cluster);
    ctx.info(
      `cluster '${lab.name}': ${
        lab.workers.map((w) => `${w.endpoint} (${formatBytes(w.freeBytes)} free)`).join(", ")
      }`,
    );
    rpc.push(...rpcFlags(lab));
  }
  // Ctrl-C while it loads stops the half-started server instead of leaving it behind.
  const ac = new AbortController();
  const cancel = () => ac.abort();
  Deno.addSignalListener("SIGINT", cancel);
  Deno.addSignalListener("SIGTERM", cancel);
  let status: ServerStatus;
  try {
    status = await startServer(ctx.paths, {
      name,
      modelPath,
      modelName: entry?.name,
      mmproj: entry?.mmproj,
      instance,
      host: str(args, "host"),
      port: parsePort(str(args, "port")) ?? preset?.port ?? "auto",
      ctx: int(args, "ctx", "server start") ?? preset?.ctx,
      ngl: int(args, "ngl", "server start") ?? preset?.ngl,
      args: [...(preset?.args ?? []), ...rpc, ...args.rest],
      env: serverEnv(config, instance.name, preset?.env),
      apiKey: str(args, "api-key"),
      alias: entry?.name,
      readyTimeoutMs: timeout !== undefined ? timeout * 1000 : undefined,
      signal: ac.signal,
    });
  } finally {
    Deno.removeSignalListener("SIGINT", cancel);
    Deno.removeSignalListener("SIGTERM", cancel);
  }
  if (ctx.json) ctx.print(JSON.stringify(status, null, 2));
  else {
    ctx.print(
      `started '${status.name}' (${
        status.modelName ?? modelPath
      }, instance ${status.instance}) at ${status.url} ` +
        `(pid ${status.pid}) in ${((performance.now() - t0) / 1000).toFixed(1)}s`,
    );
  }
  return 0;
}

/**
 * The index entry for a model reference. A file path that the index cannot read (not a GGUF, truncated) is
 * still handed to llama-server, so the user sees llama-server's own reason.
 */
async function modelEntry(ctx: Context, config: Config, ref: string): Promise<ModelEntry | undefined> {
  const asPath = expandHome(ref);
  const isFile = await Deno.stat(asPath).then((s) => s.isFile).catch(() => false);
  try {
    return await resolveModel(ctx.paths, config, ref);
  } catch (err) {
    if (isFile) {
      ctx.warn(
        `${asPath} is not in the model index (${
          err instanceof Error ? err.message : err
        }); starting it anyway`,
      );
      return undefined;
    }
    throw err;
  }
}

function printStatus(ctx: Context, s: ServerStatus, health?: string): void {
  const rows: [string, string | undefined][] = [
    ["name", s.name],
    ["state", s.state],
    ["health", health],
    ["url", s.url],
    ["pid", s.pid?.toString()],
    ["model", s.modelName ? `${s.modelName} (${s.modelPath})` : s.modelPath],
    ["instance", s.instance],
    ["started", s.startedAt],
    ["uptime", s.uptimeSeconds !== undefined ? uptime(s.uptimeSeconds) : undefined],
    ["memory", s.rssBytes !== undefined ? formatBytes(s.rssBytes) : undefined],
    ["owner", s.owner ? `${s.owner.kind} (pid ${s.owner.pid})` : undefined],
    ["reason", s.exitReason],
    ["log", s.logFile],
    ["command", s.argv.join(" ")],
  ];
  for (const [k, v] of rows) {
    if (v !== undefined) ctx.print(`${k.padEnd(9)} ${v.replaceAll("\n", "\n          ")}`);
  }
}

/** The `server` command. */
export const serverCommand: Command = {
  name: "server",
  summary: "start, list, inspect and stop supervised llama-server processes",
  usage: [
    "server start MODEL|PRESET [--name N] [--port auto|N] [--ctx N] [--ngl N] [--api-key KEY] [-i INSTANCE] [-- LLAMA-SERVER FLAGS]",
    "server list [--json]",
    "server status NAME [--json]",
    "server logs NAME [-f] [-n LINES]",
    "server restart NAME [--api-key KEY]",
    "server stop NAME | --all",
    "server rm NAME",
  ],
  details: [
    "Servers run detached (they outlive the terminal), log to <data>/logs/server-NAME.log, and are checked",
    "against their process: a dead or reused pid shows as stopped or crashed, never as running.",
    "`start` returns once /health answers; if llama-server cannot start it prints llama-server's own reason.",
    "Ctrl-C during `start` stops the half-started server. `status` exits 3 when the server is not ready.",
    "A PRESET is a name under `presets:` in the config file (model, instance, ctx, ngl, port, args, env,",
    "cluster). A preset with `cluster: NAME` runs across that cluster's RPC workers (`llama-mgr rpc`).",
  ].join("\n"),
  examples: [
    "llama-mgr server start qwen3:4b --port auto --ctx 16384 --ngl 99",
    "llama-mgr server start ~/models/smol.gguf --name chat -- --jinja --temp 0.7",
    "llama-mgr server start chat",
    "llama-mgr server list",
    "llama-mgr server logs chat -f",
    "llama-mgr server stop --all",
  ],
  flags: {
    name: { type: "string", value: "NAME", description: "server name (default: from the model or preset)" },
    port: { type: "string", short: "p", value: "auto|N", description: "port (default auto: a free one)" },
    host: { type: "string", value: "ADDR", description: "bind address (default 127.0.0.1)" },
    ctx: { type: "string", short: "c", value: "N", description: "context size" },
    ngl: { type: "string", value: "N", description: "layers to offload to the GPU" },
    timeout: {
      type: "string",
      value: "SECONDS",
      description: "how long to wait for readiness (default 120)",
    },
    follow: { type: "boolean", short: "f", description: "logs: keep printing new lines" },
    lines: { type: "string", short: "n", value: "N", description: "logs: how many lines (default 100)" },
    all: { type: "boolean", description: "stop: every running server" },
    "api-key": {
      type: "string",
      value: "KEY",
      description:
        "start, restart: require this key (given through LLAMA_API_KEY, never on the command line)",
    },
  },
  async run(ctx, args) {
    const [sub, name] = args.positionals;
    switch (sub) {
      case "start":
        return await start(ctx, args);
      case "list":
      case "ls": {
        const all = await listServers(ctx.paths);
        if (ctx.json) return void ctx.print(JSON.stringify(all, null, 2));
        if (!all.length) return void ctx.print("no servers; start one with `llama-mgr server start MODEL`");
        ctx.print(table(
          ["NAME", "MODEL", "INSTANCE", "PID", "PORT", "STATE", "UPTIME", "MEMORY"],
          all.map((s) => [
            s.name,
            s.modelName ?? s.modelPath.split("/").pop() ?? "",
            s.instance,
            s.pid?.toString() ?? "-",
            String(s.port),
            s.state,
            uptime(s.uptimeSeconds),
            s.rssBytes !== undefined ? formatBytes(s.rssBytes) : "-",
          ]),
        ));
        for (const s of all) {
          if ((s.state === "failed" || s.state === "crashed") && s.exitReason) {
            ctx.print(`${s.name} ${s.state}: ${s.exitReason.split("\n")[0]}`);
          }
        }
        return 0;
      }
      case "status": {
        if (!name) throw new UserError("server status needs a name", { hint: "llama-mgr server list" });
        const s = await serverStatus(ctx.paths, name);
        let health: string | undefined;
        if (s.state === "ready" || s.state === "starting") {
          const code = await probeHealth(s.url);
          health = code === 200 ? "ok" : code === 503 ? "loading" : code ? `HTTP ${code}` : "unreachable";
        }
        if (ctx.json) ctx.print(JSON.stringify({ ...s, health }, null, 2));
        else printStatus(ctx, s, health);
        return s.state === "ready" ? 0 : 3;
      }
      case "logs": {
        if (!name) throw new UserError("server logs needs a name", { hint: "llama-mgr server logs chat -f" });
        const lines = await readServerLog(ctx.paths, name, {
          lines: int(args, "lines", "server logs") ?? 100,
        });
        for (const l of lines) ctx.print(l);
        if (bool(args, "follow")) {
          const ac = new AbortController();
          const stop = () => ac.abort();
          Deno.addSignalListener("SIGINT", stop);
          try {
            await followServerLog(
              ctx.paths,
              name,
              (t) => Deno.stdout.writeSync(new TextEncoder().encode(t)),
              ac.signal,
            );
          } finally {
            Deno.removeSignalListener("SIGINT", stop);
          }
        }
        return 0;
      }
      case "restart": {
        if (!name) throw new UserError("server restart needs a name");
        const s = await restartServer(ctx.paths, name, { apiKey: str(args, "api-key") });
        ctx.print(`restarted '${s.name}' at ${s.url} (pid ${s.pid})`);
        return 0;
      }
      case "stop": {
        if (bool(args, "all")) {
          const names = await stopAllServers(ctx.paths);
          ctx.print(names.length ? `stopped ${names.join(", ")}` : "no server was running");
          return 0;
        }
        if (!name) throw new UserError("server stop needs a name, or --all");
        const s = await stopServer(ctx.paths, name);
        ctx.print(`stopped '${s.name}'`);
        return 0;
      }
      case "rm": {
        if (!name) throw new UserError("server rm needs a name", { hint: "llama-mgr server list" });
        const s = await serverStatus(ctx.paths, name);
        await removeServer(ctx.paths, name);
        ctx.print(`removed '${name}' from the server list (its log stays at ${s.logFile})`);
        return 0;
      }
      case undefined:
        throw new UserError("server needs a sub-command", {
          hint: "start, list, status, logs, restart, stop or rm",
        });
      default:
        throw new UserError(`server: unknown sub-command '${sub}'`, {
          hint: "use start, list, status, logs, restart, stop or rm",
        });
    }
  },
};
