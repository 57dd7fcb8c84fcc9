/**
 * `llama-mgr daemon install-service` and `uninstall-service`: write or remove the systemd unit (or launchd
 * plist) that lib/daemon/service.ts generates, and tell systemctl (or launchctl) when it is there and works;
 * when not, say what to run.
 *
 * @module
 */
import { basename, dirname, join } from "node:path";
import type { Context } from "./command.ts";
import { bool, int, type ParsedArgs, str } from "./args.ts";
import { selfCommand } from "./self.ts";
import {
  LAUNCHD_LABEL,
  launchdPlist,
  SERVICE_NAME,
  serviceEnv,
  type ServiceLocation,
  serviceLocation,
  type ServiceSpec,
  systemdUnit,
} from "../lib/daemon/service.ts";
import { exists, writeFileAtomic } from "../lib/util/fs.ts";
import { run, shellQuote, which } from "../lib/util/run.ts";
import { UserError } from "../lib/util/errors.ts";

function where(args: ParsedArgs): { user: boolean; loc: ServiceLocation; env: Record<string, string> } {
  const env = Deno.env.toObject();
  const user = bool(args, "user");
  return { user, env, loc: serviceLocation({ os: Deno.build.os, user, env }) };
}

/** The service manager's commands for this location, and whether the manager answers. */
function manager(loc: ServiceLocation, user: boolean) {
  const tool = loc.kind === "systemd" ? "systemctl" : "launchctl";
  const sc = user ? ["systemctl", "--user"] : ["systemctl"];
  const domain = user ? `gui/${Deno.uid() ?? 0}` : "system";
  const unit = `${SERVICE_NAME}.service`;
  return {
    tool,
    start: loc.kind === "systemd"
      ? [[...sc, "daemon-reload"], [...sc, "enable", "--now", unit]]
      : [["launchctl", "bootstrap", domain, loc.path]],
    stop: loc.kind === "systemd"
      ? [[...sc, "disable", "--now", unit]]
      : [["launchctl", "bootout", `${domain}/${LAUNCHD_LABEL}`]],
    halt: loc.kind === "systemd"
      ? [[...sc, "stop", unit]]
      : [["launchctl", "bootout", `${domain}/${LAUNCHD_LABEL}`]],
    reload: loc.kind === "systemd" ? [[...sc, "daemon-reload"]] : [],
    /** Undefined when it works, else why not. */
    async unusable(): Promise<string | undefined> {
      if (!which(tool)) return `${tool} is not on PATH`;
      const probe = loc.kind === "systemd" ? [...sc, "show-environment"] : ["launchctl", "print", domain];
      const r = await run(probe, { check: false, timeoutMs: 10_000 }).catch((e) => ({
        code: -1,
        stdout: "",
        stderr: (e as Error).message,
      }));
      if (r.code === 0) return undefined;
      const why = (r.stderr || r.stdout).trim().split("\n").pop() || `exit code ${r.code}`;
      return `\`${shellQuote(probe)}\` failed: ${why}`;
    },
  };
}

const said = (cmds: string[][]) => cmds.map(shellQuote).join(" && ");

/** `daemon install-service`: writes (or with --print shows) the service file, then enables and starts it. */
export async function installService(ctx: Context, args: ParsedArgs): Promise<number> {
  const { user, env, loc } = where(args);
  const host = str(args, "host");
  const port = int(args, "port", "daemon install-service");
  const argv = [
    ...selfCommand({ installed: true }),
    "-d",
    ctx.paths.dataDir,
    "--config",
    ctx.paths.configFile,
  ];
  if (ctx.instance) argv.push("-i", ctx.instance);
  argv.push("daemon");
  if (host) argv.push("--host", host);
  if (port !== undefined) argv.push("--port", String(port));
  const runAs = env.SUDO_USER || env.USER;
  const serviceVars = serviceEnv(env);
  // The `deno install` shim runs `deno` from PATH, which a service's PATH may not hold.
  if (argv[0] !== Deno.execPath() && /^deno(\.exe)?$/.test(basename(Deno.execPath()))) {
    serviceVars.PATH = `${dirname(Deno.execPath())}:/usr/local/bin:/usr/bin:/bin`;
  }
  const spec: ServiceSpec = {
    argv,
    env: serviceVars,
    user,
    runAs: runAs && runAs !== "root" ? runAs : undefined,
    logFile: join(ctx.paths.logsDir, "daemon.log"),
  };
  const text = loc.kind === "systemd" ? systemdUnit(spec) : launchdPlist(spec);
  if (argv[0].includes("/_npx/")) {
    ctx.warn(`the service runs Deno from npx's cache (${argv[0]}), which npx may clear; installing deno, or a
  compiled llama-mgr (\`deno task compile\`), gives it a lasting path`);
  }
  if (bool(args, "print")) {
    ctx.print(text.trimEnd());
    return 0;
  }
  try {
    await Deno.mkdir(dirname(loc.path), { recursive: true });
    if (loc.kind === "launchd") await Deno.mkdir(ctx.paths.logsDir, { recursive: true });
    await writeFileAtomic(loc.path, text);
  } catch (err) {
    throw new UserError(`cannot write ${loc.path}: ${(err as Error).message}`, {
      hint: user ? undefined : "a system service needs root (sudo), or use --user",
      cause: err,
    });
  }
  ctx.info(`wrote ${loc.path}`);
  const m = manager(loc, user);
  const why = await m.unusable();
  if (why) {
    ctx.info(`not started: ${why}`);
    ctx.info(`to enable and start it, run: ${said(m.start)}`);
    return 0;
  }
  for (const cmd of m.start) await run(cmd, { timeoutMs: 60_000 });
  ctx.info(`enabled and started (${said(m.start)})`);
  ctx.info(
    loc.kind === "systemd"
      ? `logs: journalctl ${user ? "--user " : ""}-u ${SERVICE_NAME} -f`
      : `logs: ${spec.logFile}`,
  );
  return 0;
}

/** `daemon uninstall-service`: stops, disables and removes the service file. */
export async function uninstallService(ctx: Context, args: ParsedArgs): Promise<number> {
  const { user, loc } = where(args);
  if (!(await exists(loc.path))) {
    ctx.info(`no service installed (${loc.path} does not exist)`);
    return 0;
  }
  const m = manager(loc, user);
  const why = await m.unusable();
  if (!why) {
    for (const cmd of m.stop) {
      const r = await run(cmd, { check: false, timeoutMs: 60_000 });
      if (r.code !== 0) ctx.warn(`${shellQuote(cmd)}: ${(r.stderr || r.stdout).trim()}`);
    }
  }
  await Deno.remove(loc.path);
  if (loc.kind === "systemd") {
    // What `systemctl disable` removes, removed here too when systemctl cannot.
    for (const target of ["default.target.wants", "multi-user.target.wants"]) {
      await Deno.remove(join(dirname(loc.path), target, `${SERVICE_NAME}.service`)).catch(() => {});
    }
  }
  ctx.info(`removed ${loc.path}`);
  if (why) {
    ctx.info(`not stopped: ${why}`);
    ctx.info(`if it is running, run: ${said([...m.halt, ...m.reload])}`);
    return 0;
  }
  for (const cmd of m.reload) await run(cmd, { check: false, timeoutMs: 60_000 });
  ctx.info("stopped and disabled");
  return 0;
}
