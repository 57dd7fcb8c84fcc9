/**
 * Loading and validating the YAML config file.
 *
 * @module
 */
import { parseYaml } from "../deps.ts";
import { type Config, ConfigSchema } from "./schema.ts";
import { UserError } from "../util/errors.ts";

/**
 * Validates a parsed config value; errors name the file, the key path and what was expected.
 *
 * @example
 * ```ts
 * const config = parseConfig({ daemon: { port: 11435 } }, "config.yaml");
 * ```
 */
export function parseConfig(value: unknown, file = "<config>"): Config {
  const result = ConfigSchema.safeParse(value ?? {});
  if (result.success) return result.data;
  const lines = result.error.issues.map((issue) => {
    const path = issue.path.length ? issue.path.join(".") : "(top level)";
    if (issue.code === "unrecognized_keys") {
      const keys = issue.keys.map((k) => [...issue.path, k].join(".")).join(", ");
      return `  ${keys}: unknown key`;
    }
    return `  ${path}: ${issue.message}`;
  });
  throw new UserError(`invalid config file ${file}:\n${lines.join("\n")}`, {
    hint: "fix the file; the README's Configuration section lists every key",
  });
}

/**
 * Reads and validates the config file; a missing file gives the defaults.
 *
 * @example
 * ```ts ignore
 * import { resolvePaths } from "./paths.ts";
 * const config = await loadConfig(resolvePaths().configFile);
 * console.log(config.daemon.port); // 11434 unless the file says otherwise
 * ```
 */
export async function loadConfig(file: string): Promise<Config> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return parseConfig({}, file);
    throw err;
  }
  let value: unknown;
  try {
    value = parseYaml(text);
  } catch (err) {
    throw new UserError(`config file ${file} is not valid YAML: ${(err as Error).message}`);
  }
  return parseConfig(value, file);
}
