/**
 * GGUF files: read a header, describe a model and estimate its memory. Pure: nothing here reads the config or
 * scans folders (the model index is `lib/models`).
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
