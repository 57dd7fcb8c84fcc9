/**
 * GGUF files and the model index: read a header, describe a model, estimate its memory, find every model
 * on the machine and resolve a name to a file.
 *
 * @example
 * ```ts ignore
 * import { describeModel, readGgufHeader } from "./mod.ts";
 * const facts = describeModel(await readGgufHeader("model.gguf", { skipArraysOver: 256 }));
 * ```
 *
 * @module
 */
export * from "./reader.ts";
export * from "./types.ts";
export * from "./facts.ts";
export * from "./names.ts";
export * from "./sources.ts";
export * from "./index.ts";
