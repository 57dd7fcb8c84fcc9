/**
 * `llama-mgr convert` (placeholder until its issue lands).
 *
 * @module
 */
import type { Command } from "./command.ts";
import { UserError } from "../lib/util/errors.ts";

/** The `convert` command. */
export const convertCommand: Command = {
  name: "convert",
  summary: "(not yet available)",
  usage: ["convert"],
  examples: ["llama-mgr convert --help"],
  flags: {},
  run() {
    return Promise.reject(new UserError("'convert' is not implemented yet"));
  },
};
