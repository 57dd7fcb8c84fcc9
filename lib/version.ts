/** llama-mgr's version, kept equal to deno.json's. */
export const VERSION = "0.1.0";

/**
 * V8 flags the `llama-mgr` entry points (the `llama-mgr` task, `deno install`, `deno compile`) run with: a 1 MB
 * young generation keeps the long-running daemon's memory small (measured in bench/daemon_overhead.ts).
 */
export const DAEMON_V8_FLAGS: readonly string[] = ["--max-semi-space-size=1"];
