/**
 * mod.ts imported as users import it: by URL, from a folder with no deno.json, so no import map helps. The
 * checkout is served over http:// by a small static server, and imported by file:// as well.
 */
import { assert, assertEquals, assertStringIncludes } from "./_assert.ts";
import { smolModelPath, tempDir } from "./_fixtures.ts";
import { extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

const TYPES: Record<string, string> = {
  ".ts": "application/typescript; charset=utf-8",
  ".js": "application/javascript; charset=utf-8",
  ".json": "application/json",
};

/** Serves the repository's files read-only on 127.0.0.1, on a free port. */
function serveRepo(served: Set<string>): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const rel = normalize(decodeURIComponent(new URL(req.url).pathname)).replace(/^\/+/, "");
    if (rel.startsWith("..")) return new Response("forbidden", { status: 403 });
    try {
      const body = await Deno.readFile(join(ROOT, rel));
      served.add(rel);
      return new Response(body, {
        headers: { "content-type": TYPES[extname(rel)] ?? "application/octet-stream" },
      });
    } catch {
      return new Response("not found", { status: 404 });
    }
  });
}

const SCRIPT = (modUrl: string) => `
import { describeModel, estimateMemory, listInstances, readGgufHeader, resolvePaths } from "${modUrl}";
const [model, dataDir] = Deno.args;
const facts = describeModel(await readGgufHeader(model));
const instances = await listInstances(resolvePaths({ dataDir, env: {} }));
const memory = estimateMemory(facts, { ctx: 2048 });
console.log(JSON.stringify({ architecture: facts.architecture, instances, total: memory.totalBytes > 0 }));
`;

async function runScript(dir: string, modUrl: string, model: string): Promise<{
  code: number;
  stdout: string;
  stderr: string;
}> {
  await Deno.writeTextFile(join(dir, "use.ts"), SCRIPT(modUrl));
  const data = join(dir, "data");
  await Deno.mkdir(data, { recursive: true });
  const out = await new Deno.Command(Deno.execPath(), {
    // --no-config: no deno.json (not even one in a parent folder) and so no import map. -A includes
    // --allow-import, which an http:// module needs; --reload so a stale cached copy cannot pass for it.
    args: ["run", "-A", "--no-config", `--reload=${modUrl.replace(/mod\.ts$/, "")}`, "use.ts", model, data],
    cwd: dir,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("mod.ts works imported by URL from a folder without deno.json", async (t) => {
  const model = await smolModelPath();
  const d = await tempDir();
  const served = new Set<string>();
  const server = serveRepo(served);
  try {
    const expected = { architecture: "llama", instances: [], total: true };
    await t.step("over http://", async () => {
      const r = await runScript(d.path, `http://127.0.0.1:${server.addr.port}/mod.ts`, model);
      assertEquals(r.code, 0, r.stderr);
      assertEquals(JSON.parse(r.stdout), expected);
      assert(served.has("mod.ts") && served.has("lib/deps.ts"), [...served].join(" "));
    });
    await t.step("by file://", async () => {
      const r = await runScript(d.path, new URL("../mod.ts", import.meta.url).href, model);
      assertEquals(r.code, 0, r.stderr);
      assertEquals(JSON.parse(r.stdout), expected);
    });
    await t.step("the served module names its npm packages with versions", async () => {
      const deps = await (await fetch(`http://127.0.0.1:${server.addr.port}/lib/deps.ts`)).text();
      assertStringIncludes(deps, "npm:zod@");
    });
  } finally {
    await server.shutdown();
    await d.cleanup();
  }
});
