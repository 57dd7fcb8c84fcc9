/**
 * `deno task compile`: a self-contained `llama-mgr` binary in `dist/` (needs Deno's runtime download for the
 * target, so it runs where dl.deno.land is reachable). `--target` cross-compiles, e.g.
 * `deno task compile --target aarch64-apple-darwin`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { run } from "../lib/util/run.ts";
import { DAEMON_V8_FLAGS } from "../lib/version.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { target: { type: "string" }, output: { type: "string" } },
});
const root = new URL("..", import.meta.url).pathname;
const output = values.output ?? `${root}dist/llama-mgr${values.target ? `-${values.target}` : ""}`;
const cmd = [
  Deno.execPath(),
  "compile",
  "-A",
  `--v8-flags=${DAEMON_V8_FLAGS.join(",")}`,
  "--config",
  `${root}deno.json`,
  "--output",
  output,
  ...(values.target ? ["--target", values.target] : []),
  `${root}cli/main.ts`,
];
console.error(`$ ${cmd.join(" ")}`);
await run(cmd, { onLine: (l) => console.error(l) });
console.error(`built ${output}`);
