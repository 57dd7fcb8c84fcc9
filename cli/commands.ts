/**
 * The command table: every command file, in the order `llama-mgr --help` lists them.
 *
 * @module
 */
import type { Command } from "./command.ts";
import { doctorCommand } from "./doctor.ts";
import { installCommand } from "./install.ts";
import { uninstallCommand } from "./uninstall.ts";
import { instancesCommand } from "./instances.ts";
import { execCommand, TOOL_ALIASES } from "./exec.ts";
import { modelsCommand } from "./models.ts";
import { serverCommand } from "./server.ts";
import { daemonCommand } from "./daemon.ts";
import { convertCommand } from "./convert.ts";
import { quantizeCommand } from "./quantize.ts";
import { imatrixCommand } from "./imatrix.ts";

/** Every command. */
export const COMMANDS: Command[] = [
  doctorCommand,
  installCommand,
  uninstallCommand,
  instancesCommand,
  execCommand,
  ...TOOL_ALIASES,
  modelsCommand,
  serverCommand,
  daemonCommand,
  convertCommand,
  quantizeCommand,
  imatrixCommand,
];
