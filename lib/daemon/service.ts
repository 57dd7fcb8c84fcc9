/**
 * The daemon as a system service: the text of a systemd unit (Linux) or a launchd property list (macOS) that
 * runs a given command line with given environment variables, and where each goes. Pure functions: the CLI
 * writes the files and talks to systemctl or launchctl.
 *
 * @module
 */
import { join } from "node:path";

/** What the service runs. */
export interface ServiceSpec {
  /** The whole command line, program first (ending in `daemon` and its flags). */
  argv: string[];
  /** Environment variables written into the service (OLLAMA_* and the like). */
  env: Record<string, string>;
  /** A user service (`systemctl --user`, a LaunchAgent) rather than a system one. */
  user: boolean;
  /** For a system service: the account the daemon runs as (its data dir is that user's). */
  runAs?: string;
  /** launchd has no journal: where the daemon's output goes. */
  logFile?: string;
}

/** The systemd unit's name (also the stem of the launchd label). */
export const SERVICE_NAME = "llama-mgr";

/** The launchd label. */
export const LAUNCHD_LABEL = "com.llama-mgr.daemon";

/** Quotes one ExecStart= word as systemd reads it: `%` and `$` doubled, double quotes around anything else odd. */
function systemdWord(word: string): string {
  const s = word.replaceAll("%", "%%").replaceAll("$", "$$$$");
  if (/^[\w@+=:,./%$-]+$/.test(s)) return s;
  return `"${s.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`;
}

/**
 * The text of a systemd unit that runs the daemon, restarted when it fails, its output in the journal.
 *
 * @example
 * ```ts
 * const unit = systemdUnit({ argv: ["/usr/local/bin/llama-mgr", "daemon"], env: {}, user: true });
 * unit.includes("ExecStart=/usr/local/bin/llama-mgr daemon"); // true
 * ```
 */
export function systemdUnit(spec: ServiceSpec): string {
  const lines = [
    "[Unit]",
    "Description=llama-mgr daemon (Ollama API on llama-server)",
    // The user manager has no network-online.target; a system service waits for it to listen on 0.0.0.0.
    ...(spec.user ? [] : ["After=network-online.target", "Wants=network-online.target"]),
    "",
    "[Service]",
    "Type=simple",
    `ExecStart=${spec.argv.map(systemdWord).join(" ")}`,
  ];
  for (const [k, v] of Object.entries(spec.env).sort(([a], [b]) => a.localeCompare(b))) {
    lines.push(`Environment=${systemdWord(`${k}=${v}`)}`);
  }
  if (!spec.user && spec.runAs) lines.push(`User=${spec.runAs}`);
  lines.push(
    "Restart=on-failure",
    "RestartSec=3",
    // SIGTERM stops the llama-servers too; give them time to exit.
    "TimeoutStopSec=30",
    "StandardOutput=journal",
    "StandardError=journal",
    "",
    "[Install]",
    `WantedBy=${spec.user ? "default.target" : "multi-user.target"}`,
    "",
  );
  return lines.join("\n");
}

function xml(s: string): string {
  return s.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll('"', "&quot;");
}

/**
 * The text of a launchd property list that runs the daemon at login (or boot), restarted when it fails.
 *
 * @example
 * ```ts
 * const plist = launchdPlist({ argv: ["/usr/local/bin/llama-mgr", "daemon"], env: {}, user: true });
 * plist.includes("<string>daemon</string>"); // true
 * ```
 */
export function launchdPlist(spec: ServiceSpec): string {
  const lines = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">',
    '<plist version="1.0">',
    "<dict>",
    "  <key>Label</key>",
    `  <string>${LAUNCHD_LABEL}</string>`,
    "  <key>ProgramArguments</key>",
    "  <array>",
    ...spec.argv.map((a) => `    <string>${xml(a)}</string>`),
    "  </array>",
  ];
  const env = Object.entries(spec.env).sort(([a], [b]) => a.localeCompare(b));
  if (env.length) {
    lines.push("  <key>EnvironmentVariables</key>", "  <dict>");
    for (const [k, v] of env) lines.push(`    <key>${xml(k)}</key>`, `    <string>${xml(v)}</string>`);
    lines.push("  </dict>");
  }
  if (!spec.user && spec.runAs) lines.push("  <key>UserName</key>", `  <string>${xml(spec.runAs)}</string>`);
  lines.push(
    "  <key>RunAtLoad</key>",
    "  <true/>",
    // Restarted when it exits with an error, as systemd's Restart=on-failure.
    "  <key>KeepAlive</key>",
    "  <dict>",
    "    <key>SuccessfulExit</key>",
    "    <false/>",
    "  </dict>",
  );
  if (spec.logFile) {
    lines.push(
      "  <key>StandardOutPath</key>",
      `  <string>${xml(spec.logFile)}</string>`,
      "  <key>StandardErrorPath</key>",
      `  <string>${xml(spec.logFile)}</string>`,
    );
  }
  lines.push("</dict>", "</plist>", "");
  return lines.join("\n");
}

/** Where the service file goes. */
export interface ServiceLocation {
  /** `systemd` on Linux, `launchd` on macOS. */
  kind: "systemd" | "launchd";
  /** The file. */
  path: string;
}

/**
 * Where the service file of this OS goes: `~/.config/systemd/user/` (or `$XDG_CONFIG_HOME/systemd/user/`) and
 * `/etc/systemd/system/`, `~/Library/LaunchAgents/` and `/Library/LaunchDaemons/`.
 *
 * @example
 * ```ts
 * serviceLocation({ os: "linux", user: true, env: { HOME: "/home/me" } }).path;
 * // "/home/me/.config/systemd/user/llama-mgr.service"
 * ```
 */
export function serviceLocation(
  options: { os: string; user: boolean; env: Record<string, string | undefined> },
): ServiceLocation {
  const home = options.env.HOME ?? "/";
  if (options.os === "darwin") {
    const dir = options.user ? join(home, "Library", "LaunchAgents") : "/Library/LaunchDaemons";
    return { kind: "launchd", path: join(dir, `${LAUNCHD_LABEL}.plist`) };
  }
  const dir = options.user
    ? join(options.env.XDG_CONFIG_HOME || join(home, ".config"), "systemd", "user")
    : "/etc/systemd/system";
  return { kind: "systemd", path: join(dir, `${SERVICE_NAME}.service`) };
}

/**
 * The environment variables a service keeps from the current one: the daemon's `OLLAMA_*` settings.
 *
 * @example
 * ```ts
 * serviceEnv({ OLLAMA_HOST: "0.0.0.0", PATH: "/bin" }); // { OLLAMA_HOST: "0.0.0.0" }
 * ```
 */
export function serviceEnv(env: Record<string, string | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) {
    if (k.startsWith("OLLAMA_") && v !== undefined) out[k] = v;
  }
  return out;
}
