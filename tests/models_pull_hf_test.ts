/**
 * `pull` from Hugging Face against a server in the test that answers as the Hub does: the revision and tree
 * APIs (paginated by `Link`), `resolve` URLs that answer 302 to a CDN-like path with `X-Linked-Size`,
 * `X-Linked-Etag`, `ETag` and `X-Repo-Commit`, Range requests, 401 for a gated repo without a token, 404 for an
 * unknown one. It serves real GGUF files: SmolLM2-135M under two quants (the file type in each header set to
 * match its name), a two-part split written by PyPI gguf, and a projector. The cache it leaves is checked file
 * by file, then by huggingface_hub's own scan_cache_dir and hf_hub_download, then by the index.
 */
import { assert, assertEquals, assertMatch, assertRejects, assertStringIncludes } from "./_assert.ts";
import { sha256Hex, smolModelPath, tempDir } from "./_fixtures.ts";
import { python, testVenv } from "./_python.ts";
import { resolvePaths } from "../lib/config/paths.ts";
import { parseConfig } from "../lib/config/load.ts";
import { resolveModel, scanModels } from "../lib/models/mod.ts";
import { ggufNameInfo, pickMmproj, pickModelFile, repoQuants, splitParts } from "../lib/models/hf_files.ts";
import { HubError, parseHfRef, pullHuggingFace, type PullProgress } from "../lib/models/pull/huggingface.ts";
import { formatError, UserError } from "../lib/util/errors.ts";

const scripts = new URL("../scripts/gguf/", import.meta.url).pathname;
const TOKEN = "hf_" + "t".repeat(34);

Deno.test("Hugging Face references: hf.co, huggingface.co, hf: and the web's URLs; nothing else", () => {
  assertEquals(parseHfRef("hf.co/bartowski/Qwen3-4B-GGUF:q4_k_m"), {
    repo: "bartowski/Qwen3-4B-GGUF",
    revision: "main",
    tag: "q4_k_m",
  });
  assertEquals(parseHfRef("huggingface.co/org/Repo"), { repo: "org/Repo", revision: "main" });
  assertEquals(parseHfRef("hf:org/Repo:Q8_0"), { repo: "org/Repo", revision: "main", tag: "Q8_0" });
  assertEquals(parseHfRef("hf.co/org/Repo:latest"), { repo: "org/Repo", revision: "main" });
  assertEquals(parseHfRef("https://huggingface.co/org/Repo"), { repo: "org/Repo", revision: "main" });
  assertEquals(parseHfRef("https://huggingface.co/org/Repo/tree/v1.0"), {
    repo: "org/Repo",
    revision: "v1.0",
  });
  assertEquals(parseHfRef("https://huggingface.co/org/Repo/blob/main/sub/m-Q8_0.gguf"), {
    repo: "org/Repo",
    revision: "main",
    file: "sub/m-Q8_0.gguf",
  });
  assertEquals(parseHfRef("https://hf.co/org/Repo/resolve/refs%2Fpr%2F2/m.gguf?download=true"), {
    repo: "org/Repo",
    revision: "refs/pr/2",
    file: "m.gguf",
  });
  assertEquals(
    parseHfRef("http://127.0.0.1:9/org/R/resolve/main/m.gguf", { endpoint: "http://127.0.0.1:9/" }),
    {
      repo: "org/R",
      revision: "main",
      file: "m.gguf",
    },
  );
  for (
    const other of [
      "qwen3:4b",
      "llama3.2",
      "registry.ollama.ai/library/llama3:8b",
      "/models/m.gguf",
      "hf.co/org",
      "hf.co/org/re--po",
      "hf.co/org/../x",
      "https://huggingface.co/datasets/org/data",
      "https://huggingface.co/org/Repo/resolve/main/../../etc/passwd",
      "https://huggingface.co/org/Repo/blob/main",
      "https://example.org/org/Repo/resolve/main/m.gguf",
    ]
  ) assertEquals(parseHfRef(other), undefined, other);
});

Deno.test("a reference given as an object is checked as a parsed one is, before any request", async () => {
  const asked: string[] = [];
  const spy: typeof fetch = (input) => (asked.push(String(input)), Promise.reject(new TypeError("no")));
  for (
    const bad of [
      { repo: "org/Repo", revision: "../../../etc" },
      { repo: "org/../Repo", revision: "main" },
      { repo: "org/Repo", revision: "main", file: "/etc/passwd" },
    ]
  ) {
    await assertRejects(
      () => pullHuggingFace(bad, { env: {}, fetch: spy }),
      UserError,
      "not a Hugging Face reference",
    );
  }
  assertEquals(asked, []);
});

Deno.test("files are picked as llama.cpp's -hf picks them", async (t) => {
  const f = (...paths: string[]) => paths.map((path) => ({ path }));
  await t.step("without a quant: Q4_K_M, else Q8_0, else the first model file", () => {
    assertEquals(pickModelFile(f("m-Q8_0.gguf", "m-Q4_K_M.gguf"))?.path, "m-Q4_K_M.gguf");
    assertEquals(pickModelFile(f("m-Q2_K.gguf", "m-Q8_0.gguf"))?.path, "m-Q8_0.gguf");
    assertEquals(pickModelFile(f("mmproj-F16.gguf", "m-Q5_K_S.gguf", "m-Q2_K.gguf"))?.path, "m-Q5_K_S.gguf");
    assertEquals(pickModelFile(f("README.md", "mmproj-F16.gguf", "imatrix.gguf")), undefined);
  });
  await t.step("a quant in any case; a split model by its first part; nothing for a missing quant", () => {
    assertEquals(pickModelFile(f("m-Q4_K_M.gguf", "m.IQ4_XS.gguf"), "iq4_xs")?.path, "m.IQ4_XS.gguf");
    const split = f("Q4_K_M/m-Q4_K_M-00002-of-00002.gguf", "Q4_K_M/m-Q4_K_M-00001-of-00002.gguf");
    const first = pickModelFile(split, "Q4_K_M")!;
    assertEquals(first.path, "Q4_K_M/m-Q4_K_M-00001-of-00002.gguf");
    assertEquals(splitParts(split, first).map((x) => x.path), [split[1].path, split[0].path]);
    assertEquals(pickModelFile(f("m-Q4_K_M.gguf"), "Q4_K"), undefined);
    assertEquals(repoQuants(f("m-Q4_K_M.gguf", "mmproj-F16.gguf", "m-UD-Q2_K_XL-00001-of-00002.gguf")), [
      "Q4_K_M",
      "Q2_K_XL",
    ]);
    assertEquals(ggufNameInfo("a/M-Q4_K_M-00002-of-00003.gguf"), {
      prefix: "a/M-Q4_K_M",
      tag: "Q4_K_M",
      index: 2,
      count: 3,
    });
  });
  await t.step("the projector: the model's folder or one above, then the closest quant", () => {
    const files = f("mmproj-F16.gguf", "mmproj-Q8_0.gguf", "other/mmproj-Q4_K_M.gguf", "x/m-Q4_K_M.gguf");
    assertEquals(pickMmproj(files, "m-Q4_K_M.gguf")?.path, "mmproj-Q8_0.gguf");
    assertEquals(pickMmproj(files, "m-BF16.gguf")?.path, "mmproj-F16.gguf");
    assertEquals(
      pickMmproj(f("mmproj-F16.gguf", "x/mmproj-F16.gguf"), "x/m-Q4_K_M.gguf")?.path,
      "x/mmproj-F16.gguf",
    );
    assertEquals(pickMmproj(f("other/mmproj-F16.gguf"), "m-Q4_K_M.gguf"), undefined);
  });
});

/** A GGUF (v3) holding only these string metadata keys and no tensors. */
function tinyGguf(kv: Record<string, string>): Uint8Array<ArrayBuffer> {
  const enc = new TextEncoder();
  const out: number[] = [];
  const u32 = (v: number) => out.push(v & 255, (v >> 8) & 255, (v >> 16) & 255, (v >>> 24) & 255);
  const str = (s: string) => {
    const b = enc.encode(s);
    u32(b.length);
    u32(0);
    out.push(...b);
  };
  out.push(...enc.encode("GGUF"));
  u32(3);
  u32(0), u32(0); // tensors
  u32(Object.keys(kv).length), u32(0);
  for (const [k, v] of Object.entries(kv)) (str(k), u32(8), str(v));
  return new Uint8Array(out);
}

/** A copy of a GGUF with `general.file_type` (a uint32) set to `type`. */
function withFileType(gguf: Uint8Array<ArrayBuffer>, type: number): Uint8Array<ArrayBuffer> {
  const key = new TextEncoder().encode("general.file_type");
  const head = gguf.subarray(0, 1 << 20);
  let at = -1;
  for (let i = 0; i < head.length - key.length && at < 0; i++) {
    if (key.every((b, j) => head[i + j] === b)) at = i + key.length;
  }
  assert(at > 0, "general.file_type not found");
  const copy = gguf.slice();
  const view = new DataView(copy.buffer);
  assertEquals(view.getUint32(at, true), 4, "general.file_type is a uint32");
  view.setUint32(at + 4, type, true);
  return copy;
}

async function gitBlobId(bytes: Uint8Array): Promise<string> {
  const head = new TextEncoder().encode(`blob ${bytes.length}\0`);
  const all = new Uint8Array(head.length + bytes.length);
  all.set(head);
  all.set(bytes, head.length);
  return [...new Uint8Array(await crypto.subtle.digest("SHA-1", all))]
    .map((b) => b.toString(16).padStart(2, "0")).join("");
}

interface HubFile {
  path: string;
  bytes: Uint8Array<ArrayBuffer>;
  /** Stored with git LFS (every GGUF on the real Hub is; a small file may not be). */
  lfs: boolean;
  oid: string;
  sha256: string;
}

interface HubRepo {
  id: string;
  commit: string;
  files: HubFile[];
  gated?: boolean;
  private?: boolean;
}

async function hubFile(path: string, bytes: Uint8Array<ArrayBuffer>, lfs = true): Promise<HubFile> {
  const sha256 = await sha256Hex(bytes);
  // An LFS file's git blob is its pointer file.
  const pointer = `version https://git-lfs.github.com/spec/v1\noid sha256:${sha256}\nsize ${bytes.length}\n`;
  const oid = await gitBlobId(lfs ? new TextEncoder().encode(pointer) : bytes);
  return { path, bytes, lfs, oid, sha256 };
}

function commitOf(seed: string): string {
  return [...seed.padEnd(40, "0")].map((c) => (c.charCodeAt(0) % 16).toString(16)).join("").slice(0, 40);
}

/** A server that answers as huggingface.co does, for these repos. */
function startHub(repos: HubRepo[]) {
  const log: string[] = [];
  let cdnBytes = 0;
  const error = (status: number, code: string, message: string) =>
    Response.json({ error: message }, {
      status,
      headers: { "X-Error-Code": code, "X-Error-Message": message },
    });
  const bytes = (
    req: Request,
    data: Uint8Array<ArrayBuffer>,
    headers: Record<string, string>,
    cdn: boolean,
  ) => {
    const range = req.headers.get("range")?.match(/^bytes=(\d+)-(\d*)$/);
    const start = range ? Number(range[1]) : 0;
    const end = range?.[2] ? Math.min(Number(range[2]), data.length - 1) : data.length - 1;
    if (start > end && data.length) return new Response(null, { status: 416 });
    const body = data.subarray(start, end + 1);
    // The download engine's first request asks for one byte (`bytes=0-0`) to learn the size and validator; the
    // count is of the file's content fetched, so that probe is left out.
    const probe = range?.[1] === "0" && range?.[2] === "0";
    if (req.method === "GET" && cdn && !probe) cdnBytes += body.length;
    return new Response(req.method === "HEAD" ? null : body, {
      status: range ? 206 : 200,
      headers: {
        ...headers,
        "Accept-Ranges": "bytes",
        "Content-Length": String(body.length),
        ...(range ? { "Content-Range": `bytes ${start}-${end}/${data.length}` } : {}),
      },
    });
  };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const url = new URL(req.url);
    log.push(`${req.method} ${url.pathname}${url.search}`);
    const seg = url.pathname.split("/").slice(1).map(decodeURIComponent);
    const auth = req.headers.get("authorization");
    const authorized = auth === `Bearer ${TOKEN}`;
    if (seg[0] === "cdn") {
      const f = repos.flatMap((r) => r.files).find((x) => x.sha256 === seg[1]);
      return f ? bytes(req, f.bytes, { ETag: `"${f.sha256}"` }, true) : new Response("no", { status: 404 });
    }
    const api = seg[0] === "api" && seg[1] === "models";
    const [org, name, kind, rev, ...rest] = api ? seg.slice(2) : seg;
    const repo = repos.find((r) => r.id === `${org}/${name}`);
    if (!repo || (repo.private && auth && !authorized)) {
      return error(404, "RepoNotFound", "Repository not found");
    }
    if (repo.private && !authorized) return error(401, "RepoNotFound", "Invalid username or password.");
    if (rev !== "main" && rev !== repo.commit) {
      return error(404, "RevisionNotFound", "Invalid rev id: " + rev);
    }
    if (api && kind === "revision") {
      return Response.json({
        id: repo.id,
        sha: repo.commit,
        private: !!repo.private,
        gated: repo.gated ? "manual" : false,
        siblings: repo.files.map((f) => ({ rfilename: f.path })),
      });
    }
    if (api && kind === "tree" && url.searchParams.get("recursive") === "true") {
      const dirs = [
        ...new Set(repo.files.flatMap((f) => f.path.includes("/") ? [f.path.split("/")[0]] : [])),
      ];
      const entries = [
        ...dirs.map((d) => ({ type: "directory", oid: "0".repeat(40), size: 0, path: d })),
        ...repo.files.map((f) => ({
          type: "file",
          oid: f.oid,
          size: f.bytes.length,
          path: f.path,
          ...(f.lfs ? { lfs: { oid: f.sha256, size: f.bytes.length, pointerSize: 134 } } : {}),
        })),
      ];
      // Two entries a page, the next page in a Link header (as the Hub pages long listings).
      const cursor = Number(url.searchParams.get("cursor") ?? 0);
      const next = cursor + 2 < entries.length
        ? { Link: `<${url.origin}${url.pathname}?recursive=true&cursor=${cursor + 2}>; rel="next"` }
        : undefined;
      return Response.json(entries.slice(cursor, cursor + 2), { headers: next });
    }
    if (!api && kind === "resolve") {
      const f = repo.files.find((x) => x.path === rest.join("/"));
      if (!f) return error(404, "EntryNotFound", "Entry not found");
      if (repo.gated && !authorized) {
        return auth
          ? error(
            403,
            "GatedRepo",
            `Access to model ${repo.id} is restricted and you are not in the authorized list.`,
          )
          : error(
            401,
            "GatedRepo",
            `Access to model ${repo.id} is restricted. You must have access to it and be authenticated to access it. Please log in.`,
          );
      }
      const common = { "X-Repo-Commit": repo.commit, ETag: `"${f.oid}"` };
      if (!f.lfs) return bytes(req, f.bytes, common, false);
      return new Response(null, {
        status: 302,
        headers: {
          ...common,
          Location: `${url.origin}/cdn/${f.sha256}?X-Amz-Signature=test`,
          "X-Linked-Size": String(f.bytes.length),
          "X-Linked-Etag": `"${f.sha256}"`,
        },
      });
    }
    return new Response("not found", { status: 404 });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    log,
    cdnBytes: () => cdnBytes,
    reset: () => {
      log.length = 0;
      cdnBytes = 0;
    },
    close: () => server.shutdown(),
  };
}

/** Every file and link below `dir`, as `path` or `path -> target`, sorted. */
async function tree(dir: string, rel = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(`${dir}/${rel}`)) {
    const p = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory) out.push(...await tree(dir, p));
    else if (e.isSymlink) out.push(`${p} -> ${await Deno.readLink(`${dir}/${p}`)}`);
    else out.push(p);
  }
  return out.sort();
}

Deno.test({
  name: "pull from a Hub-like server: picks, stores as huggingface_hub does, resolves by the name typed",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const tmp = await tempDir();
    const hub = `${tmp.path}/hub`;
    const smol = await Deno.readFile(await smolModelPath());
    const py = await testVenv("gguf", ["gguf==0.19.0", "numpy"]);
    const gen = `${tmp.path}/gen`;
    await python(py, `${scripts}make_fixtures.py`, [gen]);
    const smolRepo: HubRepo = {
      id: "bartowski/SmolLM2-135M-Instruct-GGUF",
      commit: commitOf("smol"),
      files: [
        await hubFile("README.md", new TextEncoder().encode("# SmolLM2\n"), false),
        // Q8_0 is listed first: the default is Q4_K_M wherever it is.
        await hubFile("SmolLM2-135M-Instruct-Q8_0.gguf", withFileType(smol, 7)),
        await hubFile("SmolLM2-135M-Instruct-Q4_K_M.gguf", withFileType(smol, 15)),
        // A small file, not in LFS: its blob is named by its git blob id, as huggingface_hub names it.
        await hubFile(
          "mmproj-SmolLM2-135M-Instruct-F16.gguf",
          tinyGguf({ "general.architecture": "clip", "general.type": "mmproj" }),
          false,
        ),
      ],
    };
    const splitRepo: HubRepo = {
      id: "unsloth/Split-GGUF",
      commit: commitOf("split"),
      files: [
        await hubFile(
          "Q4_K_M/Split-Q4_K_M-00001-of-00002.gguf",
          await Deno.readFile(`${gen}/split-00001-of-00002.gguf`),
        ),
        await hubFile(
          "Q4_K_M/Split-Q4_K_M-00002-of-00002.gguf",
          await Deno.readFile(`${gen}/split-00002-of-00002.gguf`),
        ),
      ],
    };
    const gatedRepo: HubRepo = {
      id: "meta-llama/Gated-GGUF",
      commit: commitOf("gated"),
      gated: true,
      files: [await hubFile("Gated-Q4_K_M.gguf", await Deno.readFile(`${gen}/aligned-64.gguf`))],
    };
    const privateRepo: HubRepo = {
      id: "me/Private-GGUF",
      commit: commitOf("private"),
      private: true,
      files: [await hubFile("Private-Q8_0.gguf", await Deno.readFile(`${gen}/types-le.gguf`))],
    };
    const server = startHub([smolRepo, splitRepo, gatedRepo, privateRepo]);
    // No option names the Hub or the cache: HF_ENDPOINT and HF_HUB_CACHE do, as for huggingface_hub.
    const env = { HOME: `${tmp.path}/home`, HF_ENDPOINT: server.url, HF_HUB_CACHE: hub };
    const paths = resolvePaths({ dataDir: `${tmp.path}/data`, env: {} });
    const config = parseConfig({
      models: { sources: { huggingface: true, ollama: false, lmstudio: false, llamacpp: false } },
    });
    const resolve = (ref: string) => resolveModel(paths, config, ref, { env });
    const storage = `${hub}/models--bartowski--SmolLM2-135M-Instruct-GGUF`;
    const [readme, q8, q4, mmproj] = smolRepo.files;
    try {
      let first: Awaited<ReturnType<typeof pullHuggingFace>>;
      await t.step(
        "without a quant, Q4_K_M is pulled with its mmproj, as Ollama's pull reports it",
        async () => {
          const lines: PullProgress[] = [];
          first = await pullHuggingFace("hf.co/bartowski/SmolLM2-135M-Instruct-GGUF", {
            env,
            onProgress: (p) => lines.push(p),
          });
          assertEquals(first.name, "hf.co/bartowski/SmolLM2-135M-Instruct-GGUF:Q4_K_M");
          assertEquals(first.commit, smolRepo.commit);
          assertEquals(first.files, [`${storage}/snapshots/${smolRepo.commit}/${q4.path}`]);
          assertEquals(first.mmproj, `${storage}/snapshots/${smolRepo.commit}/${mmproj.path}`);
          assertEquals(first.fetchedBytes, q4.bytes.length + mmproj.bytes.length);
          assertEquals(first.fromCache, false);
          assertEquals(server.cdnBytes(), q4.bytes.length, "the LFS file came through the CDN, once");
          assert(
            !server.log.some((l) => l.includes(readme.path) || l.includes(q8.path)),
            server.log.join("\n"),
          );
          assert(server.log.some((l) => l.includes("cursor=2")), "the tree's second page was read");
          assertEquals(lines[0], { status: "pulling manifest" });
          const q4Lines = lines.filter((l) => l.digest === `sha256:${q4.sha256}`);
          assertEquals(q4Lines[0].status, `pulling ${q4.sha256.slice(0, 12)}`);
          assert(q4Lines.every((l) => l.total === q4.bytes.length), "every line has the total");
          assertEquals(q4Lines.at(-1)!.completed, q4.bytes.length);
          assertEquals(lines.slice(-3).map((l) => l.status), [
            "verifying sha256 digest",
            "writing manifest",
            "success",
          ]);
        },
      );

      await t.step("the cache is laid out exactly as huggingface_hub lays it out", async () => {
        assertEquals(await tree(storage), [
          `blobs/${mmproj.oid}`,
          `blobs/${q4.sha256}`,
          "refs/main",
          `snapshots/${smolRepo.commit}/${q4.path} -> ../../blobs/${q4.sha256}`,
          `snapshots/${smolRepo.commit}/${mmproj.path} -> ../../blobs/${mmproj.oid}`,
        ]);
        assertEquals(await Deno.readTextFile(`${storage}/refs/main`), smolRepo.commit, "no newline");
        assertEquals(await sha256Hex(await Deno.readFile(first.files[0])), q4.sha256);
        assertStringIncludes(
          await Deno.readTextFile(`${hub}/CACHEDIR.TAG`),
          "Signature: 8a477f597d28d172789f06886806bc55",
        );
        assertEquals(await tree(`${hub}/.locks`), [
          `models--bartowski--SmolLM2-135M-Instruct-GGUF/${mmproj.oid}.lock`,
          `models--bartowski--SmolLM2-135M-Instruct-GGUF/${q4.sha256}.lock`,
        ]);
      });

      await t.step("huggingface_hub's own tools see the files, and fetch nothing more", async () => {
        const hf = await testVenv("hf-hub", ["huggingface_hub==2.4.0"]);
        const script = `${tmp.path}/hf_check.py`;
        await Deno.writeTextFile(
          script,
          `import json, sys
from huggingface_hub import scan_cache_dir, try_to_load_from_cache, hf_hub_download
hub, repo, q4, mm = sys.argv[1:5]
info = scan_cache_dir(hub)
r = [x for x in info.repos if x.repo_id == repo][0]
rev = list(r.revisions)[0]
print(json.dumps({
  "warnings": [str(w) for w in info.warnings],
  "refs": sorted(r.refs),
  "commit": rev.commit_hash,
  "files": sorted(f.file_name for f in rev.files),
  "blobs": sorted(f.blob_path.name for f in rev.files),
  "cached": try_to_load_from_cache(repo, q4, cache_dir=hub),
  "downloaded": hf_hub_download(repo, mm, cache_dir=hub),
}))
`,
        );
        server.reset();
        const out = new Deno.Command(hf, {
          args: [script, hub, smolRepo.id, q4.path, mmproj.path],
          env: { HF_ENDPOINT: server.url, HF_HUB_DISABLE_TELEMETRY: "1", HOME: env.HOME },
          clearEnv: true,
          stdout: "piped",
          stderr: "piped",
        });
        const r = await out.output();
        assertEquals(r.code, 0, new TextDecoder().decode(r.stderr));
        const j = JSON.parse(new TextDecoder().decode(r.stdout));
        assertEquals(j.warnings, []);
        assertEquals(j.refs, ["main"]);
        assertEquals(j.commit, smolRepo.commit);
        assertEquals(j.files, [q4.path, mmproj.path]);
        assertEquals(j.blobs, [mmproj.oid, q4.sha256].sort());
        assertEquals(j.cached, first.files[0]);
        assertEquals(j.downloaded, first.mmproj, "hf_hub_download found our blob under the name it expects");
        assertEquals(server.cdnBytes(), 0);
        assert(!server.log.some((l) => l.startsWith("GET ")), server.log.join("\n"));
      });

      await t.step(
        "the index lists it under the name the pull printed and the name typed, seeing",
        async () => {
          const r = await scanModels(paths, config, { env });
          assertEquals(r.unreadable, []);
          assertEquals(r.models.length, 1, r.models.map((m) => m.name).join(", "));
          for (
            const name of [
              first.name,
              "hf.co/bartowski/SmolLM2-135M-Instruct-GGUF",
              "hf.co/bartowski/smollm2-135m-instruct-gguf:q4_k_m",
            ]
          ) {
            const m = await resolve(name);
            assertEquals(m.path, first.files[0], name);
            assertEquals(m.source, "huggingface");
            assertEquals(m.facts.fileType, "Q4_K_M");
            assertEquals(m.mmproj, first.mmproj);
            assert(m.facts.capabilities.includes("vision"), m.facts.capabilities.join(", "));
          }
        },
      );

      await t.step("a second pull fetches no bytes", async () => {
        server.reset();
        const lines: PullProgress[] = [];
        const again = await pullHuggingFace("hf.co/bartowski/SmolLM2-135M-Instruct-GGUF", {
          env,
          onProgress: (p) => lines.push(p),
        });
        assertEquals({ ...again, fetchedBytes: 0 }, { ...first, fetchedBytes: 0 });
        assertEquals(again.fetchedBytes, 0);
        assertEquals(server.cdnBytes(), 0);
        assert(!server.log.some((l) => l.includes("/resolve/")), server.log.join("\n"));
        const q4Line = lines.find((l) => l.digest === `sha256:${q4.sha256}`)!;
        assertEquals([q4Line.completed, q4Line.total], [q4.bytes.length, q4.bytes.length]);
      });

      await t.step("a quant in any case picks that file; a file URL picks exactly that file", async () => {
        server.reset();
        const r = await pullHuggingFace("hf:bartowski/SmolLM2-135M-Instruct-GGUF:q8_0", { env });
        assertEquals(r.name, "hf.co/bartowski/SmolLM2-135M-Instruct-GGUF:Q8_0");
        assertEquals(r.files, [`${storage}/snapshots/${smolRepo.commit}/${q8.path}`]);
        assertEquals(r.mmproj, first.mmproj);
        assertEquals(server.cdnBytes(), q8.bytes.length, "only the new file");
        const byUrl = await pullHuggingFace(
          `${server.url}/bartowski/SmolLM2-135M-Instruct-GGUF/blob/main/${q8.path}`,
          {
            env,
          },
        );
        assertEquals(byUrl.files, r.files);
        assertEquals(byUrl.fetchedBytes, 0);
        assertEquals((await resolve("hf.co/bartowski/SmolLM2-135M-Instruct-GGUF:Q8_0")).path, r.files[0]);
        assertEquals(
          (await resolve("HF.CO/bartowski/smollm2-135m-instruct-gguf:q8_0")).facts.fileType,
          "Q8_0",
        );
        // The default name still finds the default quant, as `llama-server -hf repo --offline` would load it.
        assertEquals((await resolve("hf.co/bartowski/SmolLM2-135M-Instruct-GGUF")).path, first.files[0]);
      });

      await t.step("a quant the repo lacks is an error that lists the quants it has", async () => {
        server.reset();
        const err = await assertRejects(
          () => pullHuggingFace("hf.co/bartowski/SmolLM2-135M-Instruct-GGUF:Q3_K_S", { env }),
          UserError,
        );
        assertStringIncludes(err.message, "has no Q3_K_S file; its quants: Q8_0, Q4_K_M");
        assertEquals(server.cdnBytes(), 0);
      });

      await t.step("a split model comes with all its parts and is one model in the index", async () => {
        const r = await pullHuggingFace("huggingface.co/unsloth/Split-GGUF", { env });
        const snap = `${hub}/models--unsloth--Split-GGUF/snapshots/${splitRepo.commit}`;
        assertEquals(r.files, splitRepo.files.map((f) => `${snap}/${f.path}`));
        assertEquals(r.name, "hf.co/unsloth/Split-GGUF:Q4_K_M");
        assertEquals(await Deno.readLink(r.files[1]), `../../../blobs/${splitRepo.files[1].sha256}`);
        const scan = await scanModels(paths, config, { env });
        const split = scan.models.filter((m) => m.path.startsWith(snap));
        assertEquals(split.length, 1);
        assertEquals(split[0].files, r.files);
        assertEquals((await resolve(r.name)).files, r.files);
        assertEquals((await resolve("hf.co/unsloth/split-gguf")).files, r.files);
      });

      await t.step("two pulls at once fetch each file once", async () => {
        const hub2 = `${tmp.path}/hub2`;
        server.reset();
        const [a, b] = await Promise.all([
          pullHuggingFace("hf.co/unsloth/Split-GGUF", { env, hubDir: hub2 }),
          pullHuggingFace("hf.co/unsloth/Split-GGUF", { env, hubDir: hub2 }),
        ]);
        assertEquals(a.files, b.files);
        const total = splitRepo.files.reduce((n, f) => n + f.bytes.length, 0);
        assertEquals(server.cdnBytes(), total);
        assertEquals(a.fetchedBytes + b.fetchedBytes, total);
      });

      await t.step(
        "a gated repo says to accept its licence and set HF_TOKEN; with the token it pulls",
        async () => {
          const err = await assertRejects(
            () => pullHuggingFace("hf.co/meta-llama/Gated-GGUF", { env }),
            HubError,
          );
          assertEquals(err.status, 401);
          const text = formatError(err);
          for (
            const part of [
              "meta-llama/Gated-GGUF is gated:",
              `${server.url}/meta-llama/Gated-GGUF`,
              "HF_TOKEN",
              "--token",
            ]
          ) {
            assertStringIncludes(text, part);
          }
          const wrong = await assertRejects(
            () => pullHuggingFace("hf.co/meta-llama/Gated-GGUF", { env, token: "hf_wrong" }),
            HubError,
          );
          assertEquals(wrong.status, 403);
          assertStringIncludes(formatError(wrong), "the token given was refused");
          const viaOption = await pullHuggingFace("hf.co/meta-llama/Gated-GGUF", { env, token: TOKEN });
          assertEquals(viaOption.name, "hf.co/meta-llama/Gated-GGUF:Q4_K_M");
          await Deno.remove(`${hub}/models--meta-llama--Gated-GGUF`, { recursive: true });
          const viaEnv = await pullHuggingFace("hf.co/meta-llama/Gated-GGUF", {
            env: { ...env, HF_TOKEN: TOKEN },
          });
          assertEquals(viaEnv.files, viaOption.files);
          assertEquals(viaEnv.fetchedBytes, gatedRepo.files[0].bytes.length);
          // huggingface-cli login's token file is read too.
          await Deno.remove(`${hub}/models--meta-llama--Gated-GGUF`, { recursive: true });
          await Deno.mkdir(`${tmp.path}/home/.cache/huggingface`, { recursive: true });
          await Deno.writeTextFile(`${tmp.path}/home/.cache/huggingface/token`, `${TOKEN}\n`);
          const viaFile = await pullHuggingFace("hf.co/meta-llama/Gated-GGUF", { env });
          assertEquals(viaFile.files, viaOption.files);
          await Deno.remove(`${tmp.path}/home/.cache/huggingface/token`);
        },
      );

      await t.step(
        "a private repo without a token is the same message; an unknown repo is named",
        async () => {
          const priv = await assertRejects(() => pullHuggingFace("hf.co/me/Private-GGUF", { env }), HubError);
          assertEquals(priv.status, 401);
          assertStringIncludes(formatError(priv), "me/Private-GGUF is gated or private");
          assertStringIncludes(formatError(priv), "HF_TOKEN (or --token)");
          assertEquals(
            (await pullHuggingFace("hf.co/me/Private-GGUF", { env, token: TOKEN })).name,
            "hf.co/me/Private-GGUF:Q8_0",
          );
          const missing = await assertRejects(
            () => pullHuggingFace("hf.co/nobody/No-Such-GGUF", { env }),
            HubError,
          );
          assertEquals(missing.status, 404);
          assertEquals(missing.message, `repo nobody/No-Such-GGUF not found on ${server.url}`);
        },
      );

      await t.step(
        "without HF_ENDPOINT the Hub is huggingface.co, with HF_TOKEN as a bearer token",
        async () => {
          const asked: { url: string; auth: string | null }[] = [];
          const offline: typeof fetch = (input, init) => {
            asked.push({ url: String(input), auth: new Headers(init?.headers).get("authorization") });
            return Promise.reject(new TypeError("no network in this test"));
          };
          const err = await assertRejects(
            () =>
              pullHuggingFace("hf.co/org/Elsewhere-GGUF", {
                env: { ...env, HF_ENDPOINT: "", HF_TOKEN: TOKEN },
                fetch: offline,
              }),
            HubError,
          );
          assertEquals(asked, [{
            url: "https://huggingface.co/api/models/org/Elsewhere-GGUF/revision/main",
            auth: `Bearer ${TOKEN}`,
          }]);
          assertMatch(
            err.message,
            /^cannot reach https:\/\/huggingface\.co: no network in this test, and hf\.co\/org\/Elsewhere-GGUF is not in the Hugging Face cache/,
          );
        },
      );

      await t.step(
        "offline, the cache serves what it has without a request; what it lacks is a clear error",
        async () => {
          server.reset();
          const offlineEnv = { ...env, HF_HUB_OFFLINE: "1" };
          const r = await pullHuggingFace("hf.co/bartowski/SmolLM2-135M-Instruct-GGUF", { env: offlineEnv });
          assertEquals({ ...r, fromCache: false, fetchedBytes: 1 }, { ...first, fetchedBytes: 1 });
          assertEquals(r.fromCache, true);
          const q8r = await pullHuggingFace("hf.co/bartowski/SmolLM2-135M-Instruct-GGUF:Q8_0", {
            env: offlineEnv,
          });
          assertEquals(q8r.files, [`${storage}/snapshots/${smolRepo.commit}/${q8.path}`]);
          assertEquals(server.log, []);
          const err = await assertRejects(
            () => pullHuggingFace("hf.co/bartowski/SmolLM2-135M-Instruct-GGUF:Q2_K", { env: offlineEnv }),
            HubError,
          );
          assertStringIncludes(
            err.message,
            "offline (HF_HUB_OFFLINE is set), and hf.co/bartowski/SmolLM2-135M-Instruct-GGUF:Q2_K is not in the Hugging Face cache",
          );
          assertStringIncludes(formatError(err), "unset HF_HUB_OFFLINE");
          await assertRejects(
            () => pullHuggingFace("hf.co/org/Never-GGUF", { env: offlineEnv }),
            HubError,
            "offline",
          );
          assertEquals(server.log, []);
        },
      );

      await t.step("a Hub that cannot be reached falls back to the cache", async () => {
        const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
        const port = (closed.addr as Deno.NetAddr).port;
        closed.close();
        const down = { ...env, HF_ENDPOINT: `http://127.0.0.1:${port}` };
        const r = await pullHuggingFace("hf.co/unsloth/Split-GGUF", { env: down });
        assertEquals(r.fromCache, true);
        assertEquals(r.files.length, 2);
        await assertRejects(
          () => pullHuggingFace("hf.co/org/Never-GGUF", { env: down }),
          HubError,
          "cannot reach",
        );
      });
    } finally {
      await server.close();
      await tmp.cleanup();
    }
  },
});
