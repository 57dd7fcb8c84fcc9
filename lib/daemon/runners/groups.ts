/**
 * The config's groups, as the scheduler asks about them: which two models must not be loaded together. A
 * `swap` group loads one member at a time; an `exclusive` group's members run alone (no model outside the
 * group is loaded beside them). Models in no group, or in a group with neither, are packed by bytes only.
 *
 * @module
 */
import type { GroupConfig } from "../../config/schema.ts";
import type { CatalogModel } from "../../models/catalog.ts";
import { normalizeName } from "../../models/names.ts";

/**
 * The groups a model belongs to: a member names it by the name it was asked for, the index's name, an alias,
 * the model it was made from, or its file.
 *
 * @example
 * ```ts ignore
 * groupsOf({ coding: { members: ["qwen3-coder"], swap: false, exclusive: true } }, model); // ["coding"]
 * ```
 */
export function groupsOf(groups: Record<string, GroupConfig>, model: CatalogModel): string[] {
  const names = [model.name, model.entry.name, ...model.entry.aliases, model.from]
    .filter((n): n is string => !!n)
    .map(normalizeName);
  return Object.entries(groups)
    .filter(([, g]) => g.members.some((m) => m === model.entry.path || names.includes(normalizeName(m))))
    .map(([name]) => name);
}

/**
 * The scheduler's `conflicts` for the config's groups: two models conflict when they are members of one
 * `swap` group, or when one is in an `exclusive` group the other is not in.
 *
 * @example
 * ```ts ignore
 * const conflicts = groupConflicts(config.groups);
 * createScheduler({ launcher, maxLoaded: 3, conflicts });
 * ```
 */
export function groupConflicts(
  groups: Record<string, GroupConfig>,
): ((a: CatalogModel, b: CatalogModel) => boolean) | undefined {
  if (!Object.keys(groups).length) return undefined;
  return (a, b) => {
    const ga = groupsOf(groups, a);
    const gb = groupsOf(groups, b);
    if (ga.some((g) => groups[g].swap && gb.includes(g))) return true;
    const alone = (mine: string[], other: string[]) =>
      mine.some((g) => groups[g].exclusive && !other.includes(g));
    return alone(ga, gb) || alone(gb, ga);
  };
}
