/** llama-mgr's version, kept equal to deno.json's. */
export const VERSION = "0.1.0";

/**
 * The Ollama version whose API the daemon follows, which `/api/version` reports (`daemon.ollama_version`
 * changes it): clients check it before using the server (VS Code's Copilot wants at least 0.6.4 and reads
 * each part as a number), so it must be a plain version as Ollama writes its own; llama-mgr's own version
 * goes in the `x-llama-mgr-version` header.
 */
export const OLLAMA_API_VERSION = "0.33.0";

/**
 * V8 flags the `llama-mgr` entry points (the `llama-mgr` task, `deno install`, `deno compile`) run with: a 1 MB
 * young generation keeps the long-running daemon's memory small (measured in bench/daemon_overhead.ts).
 */
export const DAEMON_V8_FLAGS: readonly string[] = ["--max-semi-space-size=1"];
