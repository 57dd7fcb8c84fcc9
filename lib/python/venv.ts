/**
 * The Python environment for llama.cpp's conversion scripts (placeholder: the convert helper replaces it).
 *
 * @module
 */
import type { PythonOptions } from "../config/schema.ts";

/** Options for {@linkcode ensureVenv}. */
export interface VenvOptions {
  /** Where the virtual environment lives. */
  venvDir: string;
  /** llama.cpp's Python folder: convert_hf_to_gguf.py, gguf-py/, requirements/. */
  scriptsDir: string;
  /** Torch and index choices. */
  python: PythonOptions;
  /** Append uv's output here. */
  logFile?: string;
  /** Print nothing. */
  quiet?: boolean;
}

/** What {@linkcode ensureVenv} made. */
export interface VenvInfo {
  /** The environment's python executable. */
  python: string;
  /** The torch version installed, or undefined when skipped. */
  torch?: string;
}

/** Creates or repairs the environment (not implemented yet). */
export function ensureVenv(_options: VenvOptions): Promise<VenvInfo> {
  return Promise.reject(new Error("ensureVenv: not implemented yet"));
}
