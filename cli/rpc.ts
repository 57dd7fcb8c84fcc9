/**
 * `llama-mgr rpc`: run llama.cpp RPC workers on this machine (supervised, detached) and check a configured
 * cluster's workers from the head.
 *
 * @module
 */
import { type Command, table } from "./command.ts";
import { bool, int, str } from "./args.ts";
import { getInstance } from "../lib/llamacpp/instances.ts";
import { ensureTool } from "../lib/llamacpp/tools.ts";
import { createProgress } from "../lib/util/progress.ts";
import {
  checkCluster,
  DEFAULT_RPC_PORT,
  isLoopback,
  listWorkers,
  queryWorker,
  remoteBindWarning,
  startWorker,
  stopWorker,
  WorkerQueryError,
} from "../lib/rpc/mod.ts";
import { formatBytes } from "../lib/util/fs.ts";
import { UserError } from "../lib/util/errors.ts";

/** The `rpc` command. */
export const rpcCommand: Command = {
  name: "rpc",
  summary: "run llama.cpp RPC workers here and check a cluster of them (models across machines)",
  usage: [
    "rpc serve [--host 127.0.0.1] [--port 50052] [--threads N] [--device D,..] [--cache] [--mem MiB] [--allow-remote] [-i INSTANCE]",
    "rpc list [--json]",
    "rpc stop NAME | --all",
    "rpc check CLUSTER [--json]",
  ],
  details: [
    "`serve` starts the instance's ggml-rpc-server (a build with GGML_RPC=ON, the default) detached and",
    "supervised like `server`: state, log <data>/logs/server-rpc-PORT.log, the truth after a crash.",
    "The RPC protocol has no authentication: the worker binds 127.0.0.1 unless --host names another address",
    "AND --allow-remote is given; reach it through an SSH tunnel or keep it on a private network.",
    "On the head, `clusters: { lab: { workers: [host:port, ...] } }` and a preset's `cluster: lab` make",
    "`server start` and the daemon run that model with `--rpc` over the workers, after checking each one.",
    "`check` asks each worker of a cluster for its devices and free memory.",
  ].join("\n"),
  examples: [
    "llama-mgr rpc serve",
    "llama-mgr rpc serve --host 192.168.1.20 --allow-remote -i cuda",
    "llama-mgr rpc list",
    "llama-mgr rpc check lab",
    "llama-mgr rpc stop rpc-50052",
  ],
  flags: {
    host: { type: "string", value: "ADDR", description: "serve: bind address (default 127.0.0.1)" },
    port: {
      type: "string",
      short: "p",
      value: "N",
      description: `serve: port (default ${DEFAULT_RPC_PORT})`,
    },
    name: { type: "string", value: "NAME", description: "serve: worker name (default rpc-PORT)" },
    threads: {
      type: "string",
      short: "t",
      value: "N",
      description: "serve: CPU threads (default: all CPUs)",
    },
    device: {
      type: "string",
      short: "d",
      value: "D,..",
      description: "serve: devices to lend (default all)",
    },
    cache: { type: "boolean", description: "serve: cache received tensors on disk (faster reloads)" },
    mem: { type: "string", value: "MiB", description: "serve: memory to advertise (older RPC servers only)" },
    "allow-remote": {
      type: "boolean",
      description: "serve: allow a non-loopback --host (no authentication: private networks only)",
    },
    all: { type: "boolean", description: "stop: every running worker" },
  },
  async run(ctx, args) {
    const [sub, name] = args.positionals;
    switch (sub) {
      case "serve": {
        const config = await ctx.config();
        // A new instance builds llama-server only: the RPC server is built on first use, as other tools are.
        const { instance } = await ensureTool(
          ctx.paths,
          await getInstance(ctx.paths, ctx.instance, config.default_instance),
          "ggml-rpc-server",
          {
            build: config.build.on_demand,
            parallel: config.build.parallel,
            ccache: config.build.ccache,
            onInfo: ctx.info,
            progress: (step) => createProgress(step, { quiet: ctx.quiet }),
          },
        );
        const host = str(args, "host") ?? "127.0.0.1";
        const port = int(args, "port", "rpc serve") ?? DEFAULT_RPC_PORT;
        const allowRemote = bool(args, "allow-remote");
        if (!isLoopback(host) && allowRemote) ctx.warn(remoteBindWarning(host, port));
        const s = await startWorker(ctx.paths, {
          instance,
          host,
          port,
          name: str(args, "name"),
          threads: int(args, "threads", "rpc serve"),
          devices: str(args, "device")?.split(",").map((d) => d.trim()).filter(Boolean),
          cache: bool(args, "cache"),
          memMiB: int(args, "mem", "rpc serve"),
          allowRemote,
        });
        if (ctx.json) ctx.print(JSON.stringify(s, null, 2));
        else {ctx.print(
            `RPC worker '${s.name}' listens on ${s.endpoint} (pid ${s.pid}, instance ${s.instance})`,
          );}
        return 0;
      }
      case "list":
      case "ls": {
        const all = await listWorkers(ctx.paths);
        if (ctx.json) return void ctx.print(JSON.stringify(all, null, 2));
        if (!all.length) return void ctx.print("no RPC workers; start one with `llama-mgr rpc serve`");
        // The worker's own report; a worker lending itself to a llama-server answers nobody else meanwhile.
        const free = await Promise.all(
          all.map((s) =>
            s.state !== "ready" ? "-" : queryWorker(s.endpoint, { timeoutMs: 1000 }).then(
              (w) => `${formatBytes(w.freeBytes)} of ${formatBytes(w.totalBytes)}`,
              (e) =>
                e instanceof WorkerQueryError && e.why === "busy" ? "busy (serving a llama-server)" : "?",
            )
          ),
        );
        ctx.print(table(
          ["NAME", "ENDPOINT", "INSTANCE", "PID", "STATE", "FREE MEMORY"],
          all.map((s, i) => [s.name, s.endpoint, s.instance, s.pid?.toString() ?? "-", s.state, free[i]]),
        ));
        for (const s of all) {
          if ((s.state === "failed" || s.state === "crashed") && s.exitReason) {
            ctx.print(`${s.name} ${s.state}: ${s.exitReason.split("\n")[0]}`);
          }
        }
        return 0;
      }
      case "stop": {
        if (bool(args, "all")) {
          const running = (await listWorkers(ctx.paths)).filter((s) =>
            s.state === "ready" || s.state === "starting" || s.state === "stopping"
          );
          for (const s of running) await stopWorker(ctx.paths, s.name);
          ctx.print(
            running.length ? `stopped ${running.map((s) => s.name).join(", ")}` : "no worker was running",
          );
          return 0;
        }
        if (!name) throw new UserError("rpc stop needs a name, or --all", { hint: "llama-mgr rpc list" });
        const s = await stopWorker(ctx.paths, name);
        ctx.print(`stopped '${s.name}'`);
        return 0;
      }
      case "check": {
        if (!name) throw new UserError("rpc check needs a cluster name", { hint: "llama-mgr rpc check lab" });
        const c = await checkCluster(await ctx.config(), name);
        if (ctx.json) return void ctx.print(JSON.stringify(c, null, 2));
        ctx.print(table(
          ["WORKER", "PROTOCOL", "DEVICES", "FREE", "TOTAL"],
          c.workers.map((w) => [
            w.endpoint,
            w.protocol,
            String(w.devices.length),
            formatBytes(w.freeBytes),
            formatBytes(w.totalBytes),
          ]),
        ));
        ctx.print(`cluster '${c.name}': ${formatBytes(c.freeBytes)} free of ${formatBytes(c.totalBytes)}`);
        return 0;
      }
      case undefined:
        throw new UserError("rpc needs a sub-command", { hint: "serve, list, stop or check" });
      default:
        throw new UserError(`rpc: unknown sub-command '${sub}'`, { hint: "use serve, list, stop or check" });
    }
  },
};
