/**
 * Converting Hugging Face models to GGUF and quantizing GGUF models, writing only complete files.
 *
 * @module
 */
export * from "./convert.ts";
export * from "./quantize.ts";
export * from "./output.ts";
export * from "./imatrix.ts";
