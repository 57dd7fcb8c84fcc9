/**
 * Reading pip requirement files as llama.cpp writes them (`-r` includes, `--extra-index-url` lines, version
 * pins), so that the environment can be installed with the user's torch choice instead of the pins as written.
 *
 * @module
 */
import { dirname, isAbsolute, join } from "node:path";

/** One requirement line, with the package name it names. */
export interface Requirement {
  /** The normalised distribution name (`sentencepiece`, `torch`). */
  name: string;
  /** The line as written, without comments (`torch==2.11.0`). */
  spec: string;
}

/** What a requirements file (and the files it includes) asks for. */
export interface RequirementSet {
  /** Package requirements in order, first occurrence of each name kept. */
  requirements: Requirement[];
  /** Index options found (`--extra-index-url URL`, `--find-links DIR`), in order. */
  indexOptions: string[];
  /** Every file read, the given one first. */
  files: string[];
  /** The contents of every file read, in the same order (for fingerprints). */
  contents: string[];
}

/** Normalises a distribution name as PEP 503 does (`Sentence_Piece` -> `sentence-piece`). */
export function normalizeName(name: string): string {
  return name.toLowerCase().replace(/[-_.]+/g, "-");
}

const INDEX_OPTION = /^(--extra-index-url|--index-url|-i|--find-links|-f|--trusted-host)(?:\s+|=)(\S+)/;
const INCLUDE = /^(-r|--requirement|-c|--constraint)(?:\s+|=)(\S+)/;

/**
 * Reads a requirements file, following `-r`/`-c` includes relative to the including file.
 *
 * @example
 * ```ts ignore
 * const set = await readRequirements("llama.cpp/requirements/requirements-convert_hf_to_gguf.txt");
 * set.requirements.map((r) => r.spec); // ["torch==2.11.0", "numpy~=2.2.6", ...]
 * ```
 */
export async function readRequirements(file: string): Promise<RequirementSet> {
  const out: RequirementSet = { requirements: [], indexOptions: [], files: [], contents: [] };
  const seen = new Set<string>();
  const visit = async (path: string): Promise<void> => {
    if (out.files.includes(path)) return;
    const text = await Deno.readTextFile(path);
    out.files.push(path);
    out.contents.push(text);
    for (const raw of text.split("\n")) {
      const line = raw.replace(/(^|\s)#.*$/, "").trim();
      if (!line) continue;
      const inc = line.match(INCLUDE);
      if (inc) {
        await visit(isAbsolute(inc[2]) ? inc[2] : join(dirname(path), inc[2]));
        continue;
      }
      const idx = line.match(INDEX_OPTION);
      if (idx) {
        out.indexOptions.push(`${idx[1]} ${idx[2]}`);
        continue;
      }
      if (line.startsWith("-")) continue; // other pip options (--pre, -e ...) do not concern us
      const name = line.match(/^([A-Za-z0-9][A-Za-z0-9._-]*)/)?.[1];
      if (!name) continue;
      const n = normalizeName(name);
      if (seen.has(n)) continue;
      seen.add(n);
      out.requirements.push({ name: n, spec: line });
    }
  };
  await visit(file);
  return out;
}

/** The exact version a `name==X` requirement pins, if it pins one. */
export function pinnedVersion(spec: string): string | undefined {
  return spec.match(/==\s*([^\s,;]+)/)?.[1];
}
