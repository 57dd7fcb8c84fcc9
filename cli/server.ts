/**
 * `llama-mgr server` (placeholder until its issue lands).
 *
 * @module
 */
import type { Command } from "./command.ts";
import { UserError } from "../lib/util/errors.ts";

/** The `server` command. */
export const serverCommand: Command = {
  name: "server",
  summary: "(not yet available)",
  usage: ["server"],
  examples: ["llama-mgr server --help"],
  flags: {},
  run() {
    return Promise.reject(new UserError("'server' is not implemented yet"));
  },
};
