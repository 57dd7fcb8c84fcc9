/**
 * How this program is run, so it can start itself (a background daemon, a service): the compiled binary, the
 * command `deno install` made, or `deno run -A ... cli/main.ts`.
 *
 * @module
 */
import { basename } from "node:path";
import { fileURLToPath } from "node:url";
import { DAEMON_V8_FLAGS } from "../lib/version.ts";
import { which } from "../lib/util/run.ts";

/**
 * The command line that runs this program, without arguments. With `installed`, a `llama-mgr` on PATH that
 * `deno install` made for this same main.ts is preferred (a service file then survives a Deno upgrade's move).
 *
 * @example
 * ```ts ignore
 * const argv = [...selfCommand(), "daemon"];
 * ```
 */
export function selfCommand(options: { installed?: boolean; path?: string } = {}): string[] {
  const exe = Deno.execPath();
  // A compiled binary runs itself.
  if (!/^deno(\.exe)?$/.test(basename(exe))) return [exe];
  const main = new URL("./main.ts", import.meta.url);
  if (options.installed) {
    const shim = which("llama-mgr", options.path ?? Deno.env.get("PATH") ?? "");
    if (shim && shimRuns(shim, main)) return [shim];
  }
  return [
    exe,
    "run",
    "-A",
    `--v8-flags=${DAEMON_V8_FLAGS.join(",")}`,
    main.protocol === "file:" ? fileURLToPath(main) : main.href,
  ];
}

/** `deno install` writes a small shell script naming the main module: is it ours? */
function shimRuns(shim: string, main: URL): boolean {
  try {
    const st = Deno.statSync(shim);
    if (st.size > 64 * 1024) return false;
    const text = Deno.readTextFileSync(shim);
    return text.includes(main.href) || (main.protocol === "file:" && text.includes(fileURLToPath(main)));
  } catch {
    return false;
  }
}
