/**
 * `llama-mgr models` (placeholder until its issue lands).
 *
 * @module
 */
import type { Command } from "./command.ts";
import { UserError } from "../lib/util/errors.ts";

/** The `models` command. */
export const modelsCommand: Command = {
  name: "models",
  summary: "(not yet available)",
  usage: ["models"],
  examples: ["llama-mgr models --help"],
  flags: {},
  run() {
    return Promise.reject(new UserError("'models' is not implemented yet"));
  },
};
