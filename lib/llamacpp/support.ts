/**
 * What an instance's llama.cpp can load, read from its own source checkout: the model architectures of the
 * `LLM_ARCH_NAMES` table (`src/llama-arch.cpp`; `src/llama.cpp` or `llama.cpp` in older trees) and the tensor
 * types of ggml's `enum ggml_type` (`ggml/include/ggml.h`, `ggml.h` in older trees). A model whose header names
 * an architecture or a tensor type the build lacks fails at load; checking the header first saves pulling
 * gigabytes that cannot run.
 *
 * @module
 */
import { join } from "node:path";
import type { GgufHeader } from "../gguf/reader.ts";
import { ggmlTypeName, tensorBytes } from "../gguf/types.ts";
import { run } from "../util/run.ts";

/** What a llama.cpp source tree supports. */
export interface LlamaSupport {
  /** Architecture names (`general.architecture` values) llama.cpp knows; undefined when no table was found. */
  architectures?: Set<string>;
  /** ggml tensor type ids it can read; undefined when the enum was not found. */
  tensorTypes?: Set<number>;
}

/** The instance a model is checked against, for the checks and their messages. */
export interface InstanceSource {
  /** The instance's name (`cpu`). */
  name: string;
  /** Its source checkout (`<data>/instances/<name>/src`). */
  sourceDir: string;
  /** llama.cpp's version as the instance records it (`6000 (abc1234)`). */
  version?: string;
  /** The commit it was built from: the checkout may have moved since (`install --pull-only`). */
  commit?: string;
}

async function firstText(
  dir: string,
  rels: string[],
  marker: string,
  commit?: string,
): Promise<string | undefined> {
  for (const rel of rels) {
    let text: string | undefined;
    if (commit) {
      const r = await run(["git", "-C", dir, "show", `${commit}:${rel}`], { check: false, tailLines: 0 })
        .catch(() => undefined);
      if (r?.code === 0) text = r.stdout;
    }
    if (text === undefined) {
      try {
        text = await Deno.readTextFile(join(dir, rel));
      } catch { /* not in this tree */ }
    }
    if (text?.includes(marker)) return text;
  }
  return undefined;
}

/**
 * Reads what the llama.cpp source tree at `sourceDir` supports, as of `commit` when given (read with `git
 * show`, else from the working tree). A part it cannot find is left undefined (and not checked), so a tree
 * laid out differently is never taken to support nothing.
 *
 * @example
 * ```ts ignore
 * const s = await readLlamaSupport("/data/instances/cpu/src");
 * s.architectures?.has("qwen3"); // true
 * ```
 */
export async function readLlamaSupport(sourceDir: string, commit?: string): Promise<LlamaSupport> {
  const out: LlamaSupport = {};
  const arch = await firstText(
    sourceDir,
    ["src/llama-arch.cpp", "src/llama.cpp", "llama.cpp"],
    "LLM_ARCH_NAMES",
    commit,
  );
  if (arch) {
    const start = arch.indexOf("{", arch.indexOf("LLM_ARCH_NAMES"));
    const table = arch.slice(start, arch.indexOf("};", start));
    const names = [...table.matchAll(/\{\s*LLM_ARCH_\w+\s*,\s*"([^"]+)"\s*\}/g)].map((m) => m[1]);
    const known = names.filter((n) => n !== "(unknown)");
    if (known.length) out.architectures = new Set(known);
  }
  const ggml = await firstText(sourceDir, ["ggml/include/ggml.h", "ggml.h"], "enum ggml_type", commit);
  if (ggml) {
    const start = ggml.indexOf("enum ggml_type");
    const body = ggml.slice(start, ggml.indexOf("};", start));
    // Commented-out entries are types whose support was removed: a file that uses them does not load.
    const ids = body.split("\n").map((l) => l.replace(/\/\/.*$/, "").match(/GGML_TYPE_(\w+)\s*=\s*(\d+)/))
      .filter((m): m is RegExpMatchArray => !!m && m[1] !== "COUNT").map((m) => Number(m[2]));
    if (ids.length) out.tensorTypes = new Set(ids);
  }
  return out;
}

/** llama.cpp's version as people name it: `b6000` for a build number, else the recorded text. */
export function llamaVersionLabel(version: string | undefined): string {
  const m = version?.match(/^(\d+)\s*\(/);
  return m ? `b${m[1]}` : version ? `version ${version}` : "(version unknown)";
}

/**
 * What in a model's header the instance cannot load: an unknown architecture, tensor types the build lacks,
 * tensors whose data would end past the file. Empty when it looks loadable.
 *
 * @example
 * ```ts ignore
 * const problems = checkHeaderSupport(header, support, { name: "cpu", sourceDir, version: "6000 (abc)" });
 * ```
 */
export function checkHeaderSupport(
  header: GgufHeader,
  support: LlamaSupport,
  instance: InstanceSource,
): string[] {
  const where = `llama.cpp ${llamaVersionLabel(instance.version)} of instance '${instance.name}'`;
  const problems: string[] = [];
  const arch = header.metadata["general.architecture"];
  if (typeof arch !== "string") problems.push("the model has no general.architecture");
  else if (support.architectures && !support.architectures.has(arch)) {
    problems.push(`architecture '${arch}' is not supported by ${where}`);
  }
  if (support.tensorTypes) {
    const bad = new Map<number, string>();
    for (const t of header.tensors) if (!support.tensorTypes.has(t.type)) bad.set(t.type, t.name);
    for (const [type, tensor] of bad) {
      problems.push(
        `tensor type ${ggmlTypeName(type)} (of '${tensor}' and maybe others) is not supported by ${where}`,
      );
    }
  }
  // A type of unknown size counts 0 bytes here: the type check above speaks for it.
  let end = 0;
  for (const t of header.tensors) end = Math.max(end, t.offset + tensorBytes(t.dims, t.type));
  if (header.dataOffset + end > header.fileSize) {
    problems.push(
      `its tensors end at byte ${header.dataOffset + end}, past the end of the ${header.fileSize}-byte file`,
    );
  }
  return problems;
}
