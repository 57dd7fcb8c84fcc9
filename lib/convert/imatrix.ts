/**
 * Importance matrices with `llama-imatrix` and good defaults: the model given by name or path, the output in
 * `<data>/imatrix/<model>.imatrix.gguf` (not in the models folder, where the index would take it for a
 * model), 512-token chunks, every layer offloaded on a GPU instance, progress from the periodic saves, and
 * the file written to a temporary path and renamed only when llama-imatrix succeeded.
 *
 * @module
 */
import { basename, join, resolve } from "node:path";
import type { Paths } from "../config/paths.ts";
import { binaryPath, type InstanceRecord } from "../llamacpp/instances.ts";
import { exists, expandHome } from "../util/fs.ts";
import { UserError } from "../util/errors.ts";
import { CommandError, run, toolFailure } from "../util/run.ts";
import { writeThroughTemp } from "./output.ts";

/**
 * Options for {@linkcode computeImatrix}.
 *
 * @example
 * ```ts ignore
 * const options: ImatrixOptions = {
 *   instance: await getInstance(paths),
 *   paths,
 *   model: "/models/Qwen3-4B-F16.gguf",
 *   data: "calibration.txt",
 *   chunks: 100,
 * };
 * ```
 */
export interface ImatrixOptions {
  /** The instance whose `llama-imatrix` runs. */
  instance: InstanceRecord;
  /** Data locations (the default output folder is `<data>/imatrix`). */
  paths: Paths;
  /** The model GGUF (f16/bf16/f32 gives the best matrix). */
  model: string;
  /** Calibration text file. */
  data: string;
  /** Output file (default `<data>/imatrix/<model>.imatrix.gguf`). */
  output?: string;
  /** Context size of a chunk (default 512, as llama.cpp's published matrices use). */
  ctx?: number;
  /** Process at most this many chunks (default: the whole file). */
  chunks?: number;
  /** GPU layers (default: all on a GPU instance, none on CPU). */
  ngl?: number;
  /** Threads (default: llama-imatrix's). */
  threads?: number;
  /** Replace an existing output. */
  force?: boolean;
  /** Extra llama-imatrix flags. */
  extraArgs?: string[];
  /** Status lines. */
  onInfo?: (line: string) => void;
  /** Progress: chunks done of total. */
  onProgress?: (done: number, total: number) => void;
  /** Full output appended here. */
  logFile?: string;
}

/** The default output of an importance matrix for a model file: `<data>/imatrix/<stem>.imatrix.gguf`. */
export function imatrixPath(paths: Paths, model: string): string {
  const stem = basename(model).replace(/\.gguf$/i, "").replace(/-\d{5}-of-\d{5}$/, "");
  return join(paths.dataDir, "imatrix", `${stem}.imatrix.gguf`);
}

/**
 * Computes an importance matrix for `quantize --imatrix`.
 *
 * @example
 * ```ts ignore
 * const r = await computeImatrix({ instance, paths, model: "/models/Qwen3-4B-F16.gguf", data: "calib.txt" });
 * console.log(r.output); // <data>/imatrix/Qwen3-4B-F16.imatrix.gguf
 * ```
 */
export async function computeImatrix(
  options: ImatrixOptions,
): Promise<{ output: string; chunks: number; seconds: number }> {
  const bin = binaryPath(options.instance, "llama-imatrix");
  if (!(await exists(bin))) {
    throw new UserError(`instance '${options.instance.name}' has no llama-imatrix`, {
      hint: `rebuild it with the target: llama-mgr install -i ${options.instance.name} --targets ` +
        [...new Set([...options.instance.targets, "llama-imatrix"])].join(","),
    });
  }
  const data = resolve(expandHome(options.data));
  if (!(await exists(data))) {
    throw new UserError(`calibration file not found: ${options.data}`, {
      hint: "give a text file of typical input (a few hundred KB of prose, code and chat in the model's " +
        "languages), e.g. --data calibration.txt",
    });
  }
  // llama-imatrix needs two chunks of text. A token is at least a byte (and the BOS token is added), so a file
  // this short cannot have enough: say so before loading the model. (llama-imatrix says it too, but llama.cpp
  // can lose a tool's last log lines when it exits early.)
  const ctx = options.ctx ?? 512;
  const bytes = (await Deno.stat(data)).size;
  if (bytes + 1 < 2 * ctx) {
    throw new UserError(
      `the calibration text is too short: ${options.data} has ${bytes} bytes, and llama-imatrix needs at ` +
        `least ${2 * ctx} tokens (two ${ctx}-token chunks; a token is at least one byte)`,
      { hint: "give more text (a few hundred KB of typical input for the model) or a smaller --ctx" },
    );
  }
  const model = resolve(expandHome(options.model));
  const output = options.output ? resolve(expandHome(options.output)) : imatrixPath(options.paths, model);
  if (!options.force && await exists(output)) {
    throw new UserError(`${output} exists`, { hint: "pass --force to recompute it, or -o for another file" });
  }
  const ngl = options.ngl ?? (options.instance.arch === "cpu" ? 0 : 999);
  await Deno.mkdir(join(output, ".."), { recursive: true });
  const t0 = performance.now();
  let total = options.chunks ?? 0;
  let done = 0;
  await writeThroughTemp(output, async (tmp, signal) => {
    const args = [
      bin,
      "-m",
      model,
      "-f",
      data,
      "-o",
      tmp,
      "-c",
      String(ctx),
      "-ngl",
      String(ngl),
      ...(options.chunks ? ["--chunks", String(options.chunks)] : []),
      ...(options.threads ? ["-t", String(options.threads)] : []),
      ...(options.extraArgs ?? []),
    ];
    options.onInfo?.(`computing the importance matrix of ${basename(model)} over ${basename(data)}`);
    // llama-imatrix prints per-chunk figures on one unterminated line; after the first pass it prints the
    // seconds per pass, from which a timer estimates the chunks done.
    let timer: ReturnType<typeof setInterval> | undefined;
    let perPass = 1;
    try {
      await run(args, {
        signal,
        logFile: options.logFile,
        tailLines: 30,
        onLine: (l) => {
          const c = l.match(/computing over (\d+) chunks.*n_seq=(\d+)/);
          if (c) {
            total = Number(c[1]);
            perPass = Math.max(1, Number(c[2]));
            options.onProgress?.(0, total);
          }
          const p = l.match(/([\d.]+) seconds per pass/);
          if (p && !timer && total) {
            const seconds = Math.max(0.01, Number(p[1]));
            const since = performance.now() - seconds * 1000;
            timer = setInterval(() => {
              const passes = Math.floor((performance.now() - since) / 1000 / seconds);
              const n = Math.min(total - 1, passes * perPass);
              if (n > done) {
                done = n;
                options.onProgress?.(done, total);
              }
            }, 1000);
          }
        },
      });
    } catch (err) {
      if (err instanceof CommandError) {
        // llama.cpp's error lines (level E), or the words of its older messages.
        const reason = err.tail.filter((x) =>
          /^[\d.]+ E |error|failed|cannot|not enough|too few|invalid/i.test(x)
        ).slice(-5);
        const needs =
          `llama-imatrix needs at least ${2 * ctx} tokens for ${ctx}-token chunks: give more text ` +
          "or a smaller --ctx";
        throw toolFailure("llama-imatrix", err, {
          reason,
          hint: /tokens|chunk/i.test(reason.join("\n"))
            ? `the calibration text is too short; ${needs}`
            : reason.length === 0
            // Nothing said why: llama.cpp logs through a thread whose last lines are lost when a tool exits
            // early (its logger is never flushed at exit), and a text too short is the usual early exit.
            ? "llama-imatrix gave no reason (llama.cpp can lose a tool's last log lines when it exits early); " +
              `if the calibration text is short, ${needs}` + (err.logFile ? `; full log: ${err.logFile}` : "")
            : undefined,
        });
      }
      throw err;
    } finally {
      if (timer !== undefined) clearInterval(timer);
    }
    if (total) options.onProgress?.(total, total);
    if (!(await exists(tmp))) throw new UserError("llama-imatrix finished without writing its output");
  });
  return { output, chunks: total || done, seconds: (performance.now() - t0) / 1000 };
}
