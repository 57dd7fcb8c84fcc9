/**
 * `deno task release`: writes `SHA256SUMS` beside what `dist/` holds (the executables `deno task compile`
 * built, and anything else put there), in the format `sha256sum` writes and `sha256sum -c SHA256SUMS` checks:
 * one `<hex>  <path>` line per file, paths relative to the folder, sorted. `--dir DIR` sums another folder.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { sha256File, writeFileAtomic } from "../lib/util/fs.ts";

/** The sums file's name. */
export const SUMS_FILE = "SHA256SUMS";

/** Every regular file under `dir` (not the sums file itself), as paths relative to it, sorted. */
async function filesUnder(dir: string, sub = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(join(dir, sub))) {
    const rel = sub ? `${sub}/${e.name}` : e.name;
    if (e.isDirectory) out.push(...await filesUnder(dir, rel));
    // Temporary files deno compile or an atomic write use while writing are not release files.
    else if (e.isFile && rel !== SUMS_FILE && !/\.tmp(-[0-9a-f]+)?$/.test(rel)) out.push(rel);
  }
  return out.sort();
}

/**
 * Writes `<dir>/SHA256SUMS` for the files in `dir` and returns its text; an empty folder is an error (there is
 * nothing to release).
 *
 * @example
 * ```ts ignore
 * await writeSums("dist");
 * ```
 */
export async function writeSums(dir: string): Promise<string> {
  let files: string[];
  try {
    files = await filesUnder(dir);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new Error(`${dir} does not exist: run \`deno task compile\` first`);
    }
    throw err;
  }
  if (!files.length) throw new Error(`${dir} holds no files to sum: run \`deno task compile\` first`);
  const lines = [];
  for (const f of files) lines.push(`${await sha256File(join(dir, f))}  ${f}\n`);
  const text = lines.join("");
  await writeFileAtomic(join(dir, SUMS_FILE), text);
  return text;
}

if (import.meta.main) {
  const { values } = parseArgs({ args: Deno.args, options: { dir: { type: "string" } } });
  const dir = values.dir ?? fileURLToPath(new URL("../dist", import.meta.url));
  try {
    const text = await writeSums(dir);
    console.log(text.trimEnd());
    console.error(`wrote ${relative(Deno.cwd(), join(dir, SUMS_FILE)) || SUMS_FILE}`);
  } catch (err) {
    console.error(`error: ${(err as Error).message}`);
    Deno.exit(1);
  }
}
