/**
 * `llama-mgr quantize` (placeholder until its issue lands).
 *
 * @module
 */
import type { Command } from "./command.ts";
import { UserError } from "../lib/util/errors.ts";

/** The `quantize` command. */
export const quantizeCommand: Command = {
  name: "quantize",
  summary: "(not yet available)",
  usage: ["quantize"],
  examples: ["llama-mgr quantize --help"],
  flags: {},
  run() {
    return Promise.reject(new UserError("'quantize' is not implemented yet"));
  },
};
