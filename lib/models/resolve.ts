/**
 * The one way a name becomes a model, for the CLI and the daemon alike: names and aliases compared through
 * {@linkcode normalizeName} (case-insensitive, `:latest` implied, Ollama's default registry and namespace
 * dropped). The CLI also takes a file's name, a tagless name that only one model has, a config alias and a
 * path; the daemon takes names only, as Ollama does, and never turns request text into a path.
 *
 * @module
 */
import { basename } from "node:path";
import type { Paths } from "../config/paths.ts";
import type { Config } from "../config/schema.ts";
import { exists, expandHome } from "../util/fs.ts";
import { UserError } from "../util/errors.ts";
import { closestNames, normalizeName } from "./names.ts";
import { ModelNotFoundError } from "./errors.ts";
import { listModels, type ModelEntry, modelFromFile, type ScanOptions } from "./index.ts";

/** The names a model answers to. */
export interface NamedModel {
  /** Its name. */
  name: string;
  /** Other names that find it. */
  aliases?: string[];
  /** Its files (matched by file name with `partial`). */
  files?: string[];
}

/** Options for {@linkcode findByName} and {@linkcode resolveByName}. */
export interface NameLookupOptions {
  /** Also match a file's name (`Qwen3-4B-Q4_K_M.gguf`) and a tagless name only one model has (the CLI's way). */
  partial?: boolean;
}

/**
 * Finds a model by name, then by alias; undefined when none matches. With `partial`, a file name or a unique
 * base name; a base name that several models share throws, naming them.
 *
 * @example
 * ```ts
 * findByName([{ name: "qwen3:4b" }], "Qwen3:4B"); // { name: "qwen3:4b" }
 * ```
 */
export function findByName<T extends NamedModel>(
  models: readonly T[],
  ref: string,
  options: NameLookupOptions = {},
): T | undefined {
  const key = normalizeName(ref.trim());
  const found = models.find((m) => normalizeName(m.name) === key) ??
    models.find((m) => (m.aliases ?? []).some((a) => normalizeName(a) === key));
  if (found || !options.partial) return found;
  const r = ref.trim().toLowerCase();
  const byFile = models.find((m) => (m.files ?? []).some((f) => basename(f).toLowerCase() === r));
  if (byFile || r.includes(":")) return byFile;
  const byBase = models.filter((m) => m.name.split(":")[0] === r);
  if (byBase.length > 1) {
    throw new UserError(`'${ref}' names ${byBase.length} models`, {
      hint: `say which: ${byBase.slice(0, 8).map((m) => m.name).join(", ")}${
        byBase.length > 8 ? `, and ${byBase.length - 8} more (\`llama-mgr models\` lists them)` : ""
      }`,
    });
  }
  return byBase[0];
}

/**
 * {@linkcode findByName}, or a {@linkcode ModelNotFoundError} that names the closest names.
 *
 * @example
 * ```ts
 * resolveByName([{ name: "smollm2:135m" }], "smolm2"); // throws: model 'smolm2' not found (near: smollm2:135m)
 * ```
 */
export function resolveByName<T extends NamedModel>(
  models: readonly T[],
  ref: string,
  options: NameLookupOptions & { hint?: (near: string[]) => string | undefined } = {},
): T {
  const found = findByName(models, ref, options);
  if (found) return found;
  const near = closestNames(ref.trim().toLowerCase(), models.flatMap((m) => [m.name, ...(m.aliases ?? [])]));
  throw new ModelNotFoundError(ref, { near, hint: options.hint?.(near) });
}

/** Follows config aliases (one may name another) to what they finally name; a loop is the user's to fix. */
export function followAliases(config: Config, ref: string): string {
  const aliases = config.models.aliases;
  const chain = [ref];
  for (;;) {
    const last = chain[chain.length - 1];
    const next = aliases[last] ?? aliases[last.toLowerCase()];
    if (next === undefined || next === last) return last;
    if (chain.includes(next)) {
      throw new UserError(
        `the aliases ${[...chain, next].map((a) => `'${a}'`).join(" -> ")} go round in a loop`,
        {
          hint:
            `point one of them at a model in models.aliases of the config (\`llama-mgr models alias NAME MODEL\`)`,
        },
      );
    }
    chain.push(next);
  }
}

/**
 * Finds a model as the CLI takes one: a name, `name:tag` (`:latest` may be left out), an alias, a file's name
 * or a path. A miss suggests the closest names.
 *
 * @example
 * ```ts ignore
 * const m = await resolveModel(paths, config, "qwen3:4b");
 * console.log(m.path);
 * ```
 */
export async function resolveModel(
  paths: Paths,
  config: Config,
  ref: string,
  options: ScanOptions = {},
): Promise<ModelEntry> {
  ref = followAliases(config, ref);
  const asPath = expandHome(ref);
  if ((ref.includes("/") || ref.toLowerCase().endsWith(".gguf")) && await exists(asPath)) {
    const models = await listModels(paths, config, options);
    const real = await Deno.realPath(asPath).catch(() => asPath);
    for (const m of models) {
      if (m.path === asPath || m.files.includes(asPath)) return m;
      if (await Deno.realPath(m.path).catch(() => m.path) === real) return m;
    }
    return await modelFromFile(asPath);
  }
  const models = await listModels(paths, config, options);
  return resolveByName(models, ref, {
    partial: true,
    hint: (near) =>
      near.length
        ? `did you mean ${near.map((n) => `'${n}'`).join(", ")}? (\`llama-mgr models\` lists them all)`
        : models.length
        ? "`llama-mgr models` lists the models; `llama-mgr models scan --dir DIR` adds a folder"
        : "no models found: add folders under models.dirs in the config, or run `llama-mgr models scan --dir DIR`",
  });
}
