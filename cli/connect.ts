/**
 * How the command line's Ollama verbs reach the daemon: the address from `OLLAMA_HOST`, the key, and a daemon
 * started in the background (this same program, `llama-mgr daemon`, with the same data dir and config) when
 * none answers, as Ollama's CLI does.
 *
 * @module
 */
import { join } from "node:path";
import type { Context } from "./command.ts";
import { createDaemonClient, type DaemonClient, daemonUrl, ensureDaemon } from "../lib/daemon/client.ts";
import { selfCommand } from "./self.ts";

/** The command line that runs this program's daemon: `deno run ... cli/main.ts daemon`, or the compiled binary. */
function daemonArgv(ctx: Context): string[] {
  const globals = ["-d", ctx.paths.dataDir, "--config", ctx.paths.configFile];
  if (ctx.instance) globals.push("-i", ctx.instance);
  return [...selfCommand(), ...globals, "daemon"];
}

/**
 * A client of the daemon at `OLLAMA_HOST`; with `start`, one is started in the background when none answers.
 *
 * @example
 * ```ts ignore
 * const client = await connect(ctx, { start: true });
 * ```
 */
export async function connect(ctx: Context, options: { start?: boolean } = {}): Promise<DaemonClient> {
  const env = Deno.env.toObject();
  const config = await ctx.config();
  const client = createDaemonClient({
    url: daemonUrl(env),
    apiKey: env.OLLAMA_API_KEY || env.LLAMA_MGR_API_KEY || config.daemon.api_key,
  });
  if (options.start) {
    await Deno.mkdir(ctx.paths.logsDir, { recursive: true });
    await ensureDaemon(client, {
      argv: daemonArgv(ctx),
      logFile: join(ctx.paths.logsDir, "daemon.log"),
      onStart: () =>
        ctx.info(`starting a daemon at ${client.url} (log: ${join(ctx.paths.logsDir, "daemon.log")})`),
    });
  }
  return client;
}
