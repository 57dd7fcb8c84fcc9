/**
 * `llama-mgr daemon`: serve the Ollama API (and OpenAI's) on top of llama-server until SIGINT/SIGTERM, then stop
 * every llama-server it started. `daemon install-service` and `uninstall-service` make it a systemd or launchd
 * service.
 *
 * @module
 */
import type { Command } from "./command.ts";
import { int, str } from "./args.ts";
import { startDaemon } from "../lib/daemon/daemon.ts";
import { UserError } from "../lib/util/errors.ts";
import type { LogFormat, LogLevel } from "../lib/util/log.ts";
import { installService, uninstallService } from "./service.ts";

/** The `daemon` command. */
export const daemonCommand: Command = {
  name: "daemon",
  summary: "serve the Ollama API (and OpenAI's /v1) on top of llama-server",
  usage: [
    "daemon [--host ADDR] [--port N] [--log-level LEVEL] [--log-format text|json]",
    "daemon install-service [--user] [--print] [--host ADDR] [--port N]",
    "daemon uninstall-service [--user]",
  ],
  examples: [
    "llama-mgr daemon",
    "llama-mgr daemon --port 11500",
    "OLLAMA_HOST=0.0.0.0:11434 llama-mgr daemon",
    "llama-mgr daemon install-service --user",
    "llama-mgr daemon install-service --print",
    'curl localhost:11434/api/chat -d \'{"model":"qwen3:4b","messages":[{"role":"user","content":"hi"}]}\'',
  ],
  details: [
    "Models are the ones `llama-mgr models` lists; the first request for a model starts its llama-server",
    "(with the instance and preset configured for it) and keep_alive unloads it (default 5m).",
    "",
    "Environment: OLLAMA_HOST (listen address), OLLAMA_KEEP_ALIVE (default keep_alive), OLLAMA_ORIGINS",
    "(extra allowed browser origins), LLAMA_MGR_API_KEY (require `Authorization: Bearer <key>`),",
    "LLAMA_MGR_LOG_LEVEL and LLAMA_MGR_LOG_FORMAT (as --log-level and --log-format).",
    "Config: the `daemon` section (host, port, keep_alive, origins, api_key, max_loaded_models).",
    "",
    "install-service writes a systemd unit (~/.config/systemd/user/llama-mgr.service with --user, else",
    "/etc/systemd/system/llama-mgr.service) or on macOS a launchd plist, running this same program with",
    "the data dir, config, host, port and the OLLAMA_* variables set now; then enables and starts it when",
    "systemctl works, or says what to run. uninstall-service stops, disables and removes it.",
  ].join("\n"),
  flags: {
    host: { type: "string", value: "ADDR", description: "address to listen on (default 127.0.0.1)" },
    port: { type: "string", short: "p", value: "N", description: "port (default 11434)" },
    user: { type: "boolean", description: "install-service: a user service instead of a system one" },
    print: { type: "boolean", description: "install-service: print the service file instead of writing it" },
    "log-level": {
      type: "string",
      value: "LEVEL",
      description: "debug, info (default: a line per request), warn or error",
    },
    "log-format": {
      type: "string",
      value: "FORMAT",
      description: "text (default) or json: an object per line",
    },
  },
  async run(ctx, args) {
    const [sub, ...extra] = args.positionals;
    if (sub !== undefined) {
      if (extra.length) throw new UserError(`daemon ${sub}: unexpected argument '${extra[0]}'`);
      if (sub === "install-service") return await installService(ctx, args);
      if (sub === "uninstall-service") return await uninstallService(ctx, args);
      throw new UserError(`daemon: unknown subcommand '${sub}'`, {
        hint: "use `llama-mgr daemon`, `daemon install-service` or `daemon uninstall-service`",
        exitCode: 2,
      });
    }
    const config = await ctx.config();
    const daemon = await startDaemon({
      paths: ctx.paths,
      config,
      host: str(args, "host"),
      port: int(args, "port", "daemon"),
      instance: ctx.instance,
      // --quiet keeps warnings and errors only, unless a level is asked for.
      logLevel: str(args, "log-level") as LogLevel | undefined ?? (ctx.quiet ? "warn" : undefined),
      logFormat: str(args, "log-format") as LogFormat | undefined,
    });
    ctx.info(`llama-mgr daemon listening on ${daemon.url} (Ollama API, OpenAI API at ${daemon.url}/v1)`);
    if (ctx.json) ctx.print(JSON.stringify({ url: daemon.url, host: daemon.host, port: daemon.port }));
    const stop = () => {
      ctx.info("stopping the daemon and its llama-servers");
      void daemon.close();
    };
    Deno.addSignalListener("SIGINT", stop);
    Deno.addSignalListener("SIGTERM", stop);
    try {
      await daemon.finished;
    } finally {
      Deno.removeSignalListener("SIGINT", stop);
      Deno.removeSignalListener("SIGTERM", stop);
    }
    return 0;
  },
};
