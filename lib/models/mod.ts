/**
 * The model layer: every GGUF model on the machine, indexed and named; names as Ollama validates and
 * normalises them; the one `resolve` for the CLI and the daemon; presets; capabilities; and the daemon's
 * catalogue (the index plus names made through its API).
 *
 * @example
 * ```ts ignore
 * import { resolveModel } from "./mod.ts";
 * const model = await resolveModel(paths, config, "qwen3:4b");
 * console.log(model.path, model.facts.contextLength);
 * ```
 *
 * @module
 */
export * from "./index.ts";
export * from "./sources.ts";
export * from "./names.ts";
export * from "./resolve.ts";
export * from "./presets.ts";
export * from "./capabilities.ts";
export * from "./errors.ts";
export * from "./catalog.ts";
