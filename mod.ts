/**
 * llama-mgr as a library: build llama.cpp instances, read GGUF files, index models, supervise llama-server and
 * serve the Ollama API, each usable without the CLI.
 *
 * @example
 * ```ts
 * import { getInstance, resolvePaths } from "./mod.ts";
 * const inst = await getInstance(resolvePaths());
 * console.log(inst.binDir);
 * ```
 *
 * @module
 */
export * from "./lib/config/paths.ts";
export * from "./lib/config/schema.ts";
export * from "./lib/config/load.ts";
export * from "./lib/util/errors.ts";
export * from "./lib/util/run.ts";
export * from "./lib/llamacpp/instances.ts";
export * from "./lib/llamacpp/install.ts";
export * from "./lib/llamacpp/build.ts";
export * from "./lib/llamacpp/cmake.ts";
export * from "./lib/llamacpp/source.ts";
export * from "./lib/llamacpp/detect.ts";
export * from "./lib/llamacpp/doctor.ts";
export * from "./lib/util/fs.ts";
export * from "./lib/util/lock.ts";
export * from "./lib/util/process.ts";
export * from "./lib/util/progress.ts";
export * from "./lib/python/venv.ts";
export * from "./lib/convert/mod.ts";
export * from "./lib/server/mod.ts";
export * from "./lib/gguf/mod.ts";
export * from "./lib/models/mod.ts";
export * from "./lib/daemon/mod.ts";
