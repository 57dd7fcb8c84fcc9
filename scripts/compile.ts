/**
 * `deno task compile`: self-contained `llama-mgr` executables in `dist/`, one per release target
 * (`dist/llama-mgr-<target>`, `.exe` for Windows). `--target T` builds one target, `--out-dir DIR` writes
 * elsewhere; `deno task release` then writes their SHA-256 sums.
 *
 * `deno compile` joins the program to Deno's runtime for the target (denort), which it downloads once per target
 * and Deno version. Where that download fails (an offline machine), the task names the URL it needed and exits
 * with {@link RUNTIME_UNAVAILABLE}; `DENORT_BIN` (read by Deno itself) points it at a runtime already on disk.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { DAEMON_V8_FLAGS } from "../lib/version.ts";

/** The targets a release is built for: Linux and macOS on x64 and arm64, Windows on x64. */
export const TARGETS: readonly string[] = [
  "x86_64-unknown-linux-gnu",
  "aarch64-unknown-linux-gnu",
  "x86_64-apple-darwin",
  "aarch64-apple-darwin",
  "x86_64-pc-windows-msvc",
];

/**
 * The permissions built into the executable, each for a reason: read/write (models, the data dir, builds), net
 * (the daemon, llama-server, pulls), env (config, `OLLAMA_*`, `HF_*`), run (git, cmake, llama-server, python),
 * sys (network interfaces for the daemon's host check, the uid for launchd) and ffi (the daemon returning memory
 * with glibc's malloc_trim). No `--allow-import`: every module, the lazily loaded commands too, is in the static
 * module graph, and the program reads no file of its own at run time, so nothing is embedded with `--include`.
 */
export const COMPILE_PERMISSIONS: readonly string[] = [
  "--allow-read",
  "--allow-write",
  "--allow-net",
  "--allow-env",
  "--allow-run",
  "--allow-sys",
  "--allow-ffi",
];

/** The exit code of the task when Deno's runtime for a target could not be downloaded. */
export const RUNTIME_UNAVAILABLE = 3;

const ROOT = fileURLToPath(new URL("..", import.meta.url));

/**
 * The executable's file name for a target.
 *
 * @example
 * ```ts
 * binaryName("x86_64-pc-windows-msvc"); // "llama-mgr-x86_64-pc-windows-msvc.exe"
 * ```
 */
export function binaryName(target: string): string {
  return `llama-mgr-${target}${target.includes("windows") ? ".exe" : ""}`;
}

/**
 * The `deno compile` arguments (after `deno`) that build `output` for `target`.
 *
 * @example
 * ```ts
 * const args = compileArgs("aarch64-apple-darwin", "dist/llama-mgr-aarch64-apple-darwin");
 * ```
 */
export function compileArgs(target: string, output: string): string[] {
  return [
    "compile",
    ...COMPILE_PERMISSIONS,
    `--v8-flags=${DAEMON_V8_FLAGS.join(",")}`,
    "--config",
    join(ROOT, "deno.json"),
    "--target",
    target,
    "--output",
    output,
    join(ROOT, "cli", "main.ts"),
  ];
}

/** What building one target gave. */
export type CompileResult =
  | { ok: true; output: string }
  | { ok: false; output: string; message: string; runtimeUrl?: string };

/**
 * `deno compile`'s failure to fetch the runtime, turned into a sentence that says what was needed and from
 * where; undefined when the failure was something else.
 *
 * @example
 * ```ts
 * runtimeDownloadFailure("0: Setting up base binary.\n1: error sending request for url (https://x/denort.zip)");
 * ```
 */
export function runtimeDownloadFailure(stderr: string): { url: string; cause: string } | undefined {
  // deno colours its messages on a terminal: the escape codes go before matching.
  // deno-lint-ignore no-control-regex
  const plain = stderr.replace(/\x1b\[[0-9;]*m/g, "");
  if (!plain.includes("Setting up base binary")) return undefined;
  // deno prints "Download <url>", then "error sending request for url (<url>)" and a numbered chain of causes.
  const url = /error sending request for url \((\S+?)\)/.exec(plain)?.[1] ??
    /Download\s+(\S+denort\S*)/.exec(plain)?.[1];
  if (!url) return undefined;
  const chain = plain.split("Caused by:")[1]?.split("Stack backtrace:")[0] ?? "";
  const causes = chain.split("\n").map((l) => l.trim()).filter((l) => /^\d+: /.test(l));
  return { url, cause: causes.at(-1)?.replace(/^\d+: /, "") ?? "download failed" };
}

/**
 * Builds one target with `deno compile`, passing its output through to stderr.
 *
 * @example
 * ```ts ignore
 * const r = await compileTarget(Deno.build.target, "dist");
 * if (!r.ok) console.error(r.message);
 * ```
 */
export async function compileTarget(target: string, outDir: string): Promise<CompileResult> {
  const output = join(outDir, binaryName(target));
  const child = new Deno.Command(Deno.execPath(), {
    args: compileArgs(target, output),
    stdin: "null",
    stdout: "inherit",
    stderr: "piped",
  }).spawn();
  let err = "";
  const dec = new TextDecoder();
  for await (const chunk of child.stderr) {
    err += dec.decode(chunk, { stream: true });
    await Deno.stderr.write(chunk);
  }
  const status = await child.status;
  if (status.success) return { ok: true, output };
  const runtime = runtimeDownloadFailure(err);
  if (runtime) {
    return {
      ok: false,
      output,
      runtimeUrl: runtime.url,
      message: `${binaryName(target)} was not built: deno compile needs Deno's runtime for ${target} ` +
        `and could not download it from ${runtime.url} (${runtime.cause}). Run \`deno task compile\` ` +
        "where that address is reachable (Deno keeps the download for later builds), or set DENORT_BIN to " +
        "that runtime's executable, unzipped.",
    };
  }
  return {
    ok: false,
    output,
    message: `${binaryName(target)} was not built: deno compile failed (see above)`,
  };
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { target: { type: "string", multiple: true }, "out-dir": { type: "string" } },
  });
  const targets = values.target?.length ? values.target : [...TARGETS];
  const unknown = targets.filter((t) => !TARGETS.includes(t));
  if (unknown.length) {
    console.error(`unknown target ${unknown.join(", ")}: choose from ${TARGETS.join(", ")}`);
    Deno.exit(2);
  }
  const outDir = values["out-dir"] ?? join(ROOT, "dist");
  await Deno.mkdir(outDir, { recursive: true });
  let code = 0;
  for (const target of targets) {
    console.error(`$ deno ${compileArgs(target, join(outDir, binaryName(target))).join(" ")}`);
    const r = await compileTarget(target, outDir);
    if (r.ok) {
      console.error(`built ${r.output}`);
      continue;
    }
    console.error(`error: ${r.message}`);
    code = r.runtimeUrl && code !== 1 ? RUNTIME_UNAVAILABLE : 1;
  }
  Deno.exit(code);
}
