/**
 * `llama-mgr daemon`: serve the Ollama API (and OpenAI's) on top of llama-server until SIGINT/SIGTERM, then stop
 * every llama-server it started.
 *
 * @module
 */
import type { Command } from "./command.ts";
import { int, str } from "./args.ts";
import { startDaemon } from "../lib/daemon/daemon.ts";

/** The `daemon` command. */
export const daemonCommand: Command = {
  name: "daemon",
  summary: "serve the Ollama API (and OpenAI's /v1) on top of llama-server",
  usage: ["daemon [--host ADDR] [--port N]"],
  examples: [
    "llama-mgr daemon",
    "llama-mgr daemon --port 11500",
    "OLLAMA_HOST=0.0.0.0:11434 llama-mgr daemon",
    'curl localhost:11434/api/chat -d \'{"model":"qwen3:4b","messages":[{"role":"user","content":"hi"}]}\'',
  ],
  details: [
    "Models are the ones `llama-mgr models` lists; the first request for a model starts its llama-server",
    "(with the instance and preset configured for it) and keep_alive unloads it (default 5m).",
    "",
    "Environment: OLLAMA_HOST (listen address), OLLAMA_KEEP_ALIVE (default keep_alive), OLLAMA_ORIGINS",
    "(extra allowed browser origins), LLAMA_MGR_API_KEY (require `Authorization: Bearer <key>`).",
    "Config: the `daemon` section (host, port, keep_alive, origins, api_key, max_loaded_models).",
  ].join("\n"),
  flags: {
    host: { type: "string", value: "ADDR", description: "address to listen on (default 127.0.0.1)" },
    port: { type: "string", short: "p", value: "N", description: "port (default 11434)" },
  },
  async run(ctx, args) {
    const config = await ctx.config();
    const daemon = await startDaemon({
      paths: ctx.paths,
      config,
      host: str(args, "host"),
      port: int(args, "port", "daemon"),
      instance: ctx.instance,
      log: (line) => ctx.info(`[daemon] ${line}`),
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
