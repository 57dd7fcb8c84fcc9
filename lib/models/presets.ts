/**
 * Presets (`presets:` in the config): how a model is started. One lookup for every caller: `llama-mgr server
 * start` takes a preset by its own name, and a model (from the CLI or the daemon) runs with the preset whose
 * `model` names it.
 *
 * @module
 */
import type { Config, Preset } from "../config/schema.ts";
import { normalizeName } from "./names.ts";
import type { CatalogModel } from "./catalog.ts";

/**
 * The names a model goes by, for matching a preset's `model`.
 *
 * @example
 * ```ts ignore
 * const m = await resolveModel(paths, config, "qwen3:4b");
 * const target: PresetTarget = { name: m.name, path: m.path, aliases: m.aliases };
 * const found = findPreset(config, { model: target });
 * ```
 */
export interface PresetTarget {
  /** The name it was asked for by (a copy or a created name, for the daemon). */
  name: string;
  /** Its file. */
  path: string;
  /** The index's name for it, when another name was asked for. */
  entryName?: string;
  /** Its other names. */
  aliases?: string[];
  /** For a name made through the daemon's API, the model's own name it was first made from. */
  from?: string;
}

/**
 * The preset to start with: the one called `query.preset`, else the one whose `model` is the model's name, one
 * of its aliases or its path (a name made through the API runs with the preset of the model it was made from).
 *
 * @example
 * ```ts ignore
 * findPreset(config, { preset: "chat" });                                        // by the preset's name
 * findPreset(config, { model: { name: "qwen3:4b", path: "/m/qwen3-4b.gguf" } }); // by its model
 * ```
 */
export function findPreset(
  config: Pick<Config, "presets">,
  query: { preset?: string; model?: PresetTarget },
): { name: string; preset: Preset } | undefined {
  if (query.preset !== undefined) {
    const preset = config.presets[query.preset];
    if (preset) return { name: query.preset, preset };
  }
  const m = query.model;
  if (!m) return undefined;
  const names = [m.name, m.entryName, ...(m.aliases ?? []), m.from]
    .filter((n): n is string => !!n)
    .map(normalizeName);
  const found = Object.entries(config.presets).find(([, p]) =>
    p.model === m.path || names.includes(normalizeName(p.model))
  );
  return found && { name: found[0], preset: found[1] };
}

/**
 * The preset a model of the catalogue runs with: by the name it was asked for, the index's own name and
 * aliases, its file, or (for a name made through the daemon's API) the model it was made from.
 *
 * @example
 * ```ts ignore
 * presetForModel(config, await catalog.get("chat-copy"))?.ctx;
 * ```
 */
export function presetForModel(config: Pick<Config, "presets">, model: CatalogModel): Preset | undefined {
  const target: PresetTarget = {
    name: model.name,
    path: model.entry.path,
    entryName: model.entry.name,
    aliases: model.entry.aliases,
    from: model.from,
  };
  return findPreset(config, { model: target })?.preset;
}
