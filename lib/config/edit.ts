/**
 * Changing the config file as a person would: the YAML document is edited in place, so the user's comments and
 * layout survive, and the result is validated before it is written (atomically).
 *
 * @module
 */
import { dirname } from "node:path";
import { parseDocument } from "../deps.ts";
import { parseConfig } from "./load.ts";
import { writeFileAtomic } from "../util/fs.ts";

/**
 * Sets the value at `path` (e.g. `["models", "aliases", "coder"]`) in the config file, creating the file and
 * the sections it needs. A change that would make the config invalid throws the validation error and writes
 * nothing.
 *
 * @example
 * ```ts ignore
 * await setConfigValue(paths.configFile, ["models", "aliases", "coder"], "qwen2.5-coder:7b-q4_k_m");
 * ```
 */
export async function setConfigValue(file: string, path: (string | number)[], value: unknown): Promise<void> {
  const text = await Deno.readTextFile(file).catch((err) => {
    if (err instanceof Deno.errors.NotFound) return "";
    throw err;
  });
  const doc = parseDocument(text);
  doc.setIn(path, value);
  parseConfig(doc.toJS(), file);
  await Deno.mkdir(dirname(file), { recursive: true });
  await writeFileAtomic(file, doc.toString());
}
