/**
 * The models the daemon serves come from the model index (`lib/gguf`).
 *
 * @module
 */
import type { Paths } from "../config/paths.ts";
import type { Config } from "../config/schema.ts";
import { listModels } from "../gguf/mod.ts";
import type { CatalogSourceEntry } from "./catalog.ts";

/**
 * The indexed models, as the catalogue reads them.
 *
 * @example
 * ```ts
 * const models = await indexedModels(paths, config);
 * ```
 */
export async function indexedModels(paths: Paths, config: Config): Promise<CatalogSourceEntry[]> {
  return (await listModels(paths, config)) as unknown as CatalogSourceEntry[];
}
