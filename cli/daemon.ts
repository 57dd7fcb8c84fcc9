/**
 * `llama-mgr daemon` (placeholder until its issue lands).
 *
 * @module
 */
import type { Command } from "./command.ts";
import { UserError } from "../lib/util/errors.ts";

/** The `daemon` command. */
export const daemonCommand: Command = {
  name: "daemon",
  summary: "(not yet available)",
  usage: ["daemon"],
  examples: ["llama-mgr daemon --help"],
  flags: {},
  run() {
    return Promise.reject(new UserError("'daemon' is not implemented yet"));
  },
};
