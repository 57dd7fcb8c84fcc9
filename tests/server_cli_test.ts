/**
 * `llama-mgr server` as a user runs it (the CLI in a subprocess, a real llama-server, a real model): a model
 * by its index name, a preset with its flags and environment, `logs -f`, `list` after a `kill -9`,
 * restart on the same port, Ctrl-C during a start, and flags the supervisor owns refused.
 */
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./_assert.ts";
import { cli, smolModelPath, tempDir, testInstance } from "./_fixtures.ts";
import { resolvePaths } from "../lib/config/paths.ts";
import { stopAllServers } from "../lib/server/mod.ts";
import { pidAlive } from "../lib/util/process.ts";

const MODEL = "smollm2:135m-q4_1";
const MAIN = new URL("../cli/main.ts", import.meta.url).pathname;

async function chat(url: string, content: string): Promise<string> {
  const r = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ messages: [{ role: "user", content }], max_tokens: 4, temperature: 0 }),
  });
  assertEquals(r.status, 200);
  return (await r.json()).choices[0].message.content;
}

/** A GGUF file with string metadata and no tensors. */
function tinyGguf(kv: Record<string, string>): Uint8Array {
  const out: number[] = [];
  const num = (n: number, bytes: 4 | 8) => {
    const b = new Uint8Array(bytes);
    const v = new DataView(b.buffer);
    if (bytes === 4) v.setUint32(0, n, true);
    else v.setBigUint64(0, BigInt(n), true);
    out.push(...b);
  };
  const str = (s: string) => {
    const e = new TextEncoder().encode(s);
    num(e.length, 8);
    out.push(...e);
  };
  num(0x46554747, 4); // "GGUF"
  num(3, 4); // version
  num(0, 8); // tensors
  num(Object.keys(kv).length, 8);
  for (const [k, v] of Object.entries(kv)) {
    str(k);
    num(8, 4); // string
    str(v);
  }
  return new Uint8Array(out);
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const v = await probe();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

Deno.test({
  name: "server start by model name or preset, logs -f, list after kill -9, restart, Ctrl-C, owned flags",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const { paths: shared } = await testInstance();
    const model = await smolModelPath();
    const tmp = await tempDir();
    const data = `${tmp.path}/data`;
    await Deno.mkdir(`${data}/instances`, { recursive: true });
    await Deno.symlink(`${shared.instancesDir}/cpu`, `${data}/instances/cpu`);
    await Deno.mkdir(`${tmp.path}/models`);
    await Deno.symlink(model, `${tmp.path}/models/SmolLM2-135M-Instruct.Q4_1.gguf`);
    const config = `${tmp.path}/config.yaml`;
    await Deno.writeTextFile(
      config,
      [
        "models:",
        `  dirs: [${tmp.path}/models]`,
        "presets:",
        "  chat:",
        `    model: ${MODEL}`,
        "    ctx: 256",
        "    args: [--threads, '1', --parallel, '1']",
        "    env:",
        "      CUDA_VISIBLE_DEVICES: '1'",
        "      LLAMA_MGR_TEST_MARK: preset-chat",
      ].join("\n") + "\n",
    );
    const base = ["-d", data, "--config", config];
    const json = async (...args: string[]) => {
      const r = await cli([...base, ...args, "--json"]);
      assertEquals(r.code, 0, r.stderr);
      return JSON.parse(r.stdout);
    };
    try {
      await t.step(
        "a model started by its index name is named after it and served under that name",
        async () => {
          const r = await cli([...base, "server", "start", MODEL, "--ctx", "256"]);
          assertEquals(r.code, 0, r.stderr);
          assertMatch(r.stdout, /started 'smollm2-135m-q4_1' \(smollm2:135m-q4_1, instance cpu\) at http:/);
          const s = await json("server", "status", "smollm2-135m-q4_1");
          assertEquals(s.state, "ready");
          assertEquals(s.modelName, MODEL);
          const models = await (await fetch(`${s.url}/v1/models`)).json();
          assertEquals(models.data[0].id, MODEL);
          const again = await cli([...base, "server", "start", "smollm2"]);
          assertEquals(again.code, 1);
          assertStringIncludes(again.stderr, "server 'smollm2-135m-q4_1' is already running");
        },
      );

      await t.step("a preset brings its model, context, flags and environment", async () => {
        const r = await cli([...base, "server", "start", "chat"]);
        assertEquals(r.code, 0, r.stderr);
        const s = await json("server", "status", "chat");
        assertEquals(s.state, "ready");
        assertEquals(s.modelName, MODEL);
        const argv: string[] = s.argv;
        assertEquals(argv[argv.indexOf("-c") + 1], "256");
        assertEquals(argv.slice(-4), ["--threads", "1", "--parallel", "1"]);
        const environ = (await Deno.readTextFile(`/proc/${s.pid}/environ`)).split("\0");
        assert(environ.includes("CUDA_VISIBLE_DEVICES=1"), "the preset's environment reaches llama-server");
        assert(environ.includes("LLAMA_MGR_TEST_MARK=preset-chat"));
        assert((await chat(s.url, "Hi")).length > 0);
      });

      await t.step("logs -f prints new lines as llama-server writes them", async () => {
        const s = await json("server", "status", "chat");
        const follower = new Deno.Command(Deno.execPath(), {
          args: ["run", "-A", MAIN, ...base, "server", "logs", "chat", "-f", "-n", "1"],
          env: { NO_COLOR: "1" },
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        let seen = "";
        const reader = follower.stdout.pipeThrough(new TextDecoderStream()).getReader();
        const read = (async () => {
          for (;;) {
            const { value, done } = await reader.read();
            if (done) return;
            seen += value;
          }
        })();
        try {
          await waitFor("the last line", () => Promise.resolve(seen.length > 0 ? true : undefined));
          const before = seen;
          await chat(s.url, "Tell me more.");
          await waitFor(
            "new log lines",
            () => Promise.resolve(seen.includes("print_timing", before.length) ? true : undefined),
          );
        } finally {
          follower.kill("SIGINT");
          await read;
          const st = await follower.status;
          await follower.stderr.cancel();
          assertEquals(st.code, 0, "Ctrl-C ends `logs -f` cleanly");
        }
      });

      await t.step("after kill -9, list shows the server crashed with why, never running", async () => {
        const s = await json("server", "status", "chat");
        Deno.kill(s.pid, "SIGKILL");
        await waitFor("the process to die", () => Promise.resolve(pidAlive(s.pid) ? undefined : true));
        const list = await cli([...base, "server", "list"]);
        assertMatch(list.stdout, /^chat\s+smollm2:135m-q4_1\s+cpu\s+-\s+\d+\s+crashed\s/m);
        assertMatch(list.stdout, /^chat crashed: its process is gone \(killed or crashed\)/m);
        const st = await cli([...base, "server", "status", "chat"]);
        assertEquals(st.code, 3);
        assertMatch(st.stdout, /state\s+crashed/);
      });

      await t.step("the preset starts again, and restart keeps its port", async () => {
        const r = await cli([...base, "server", "start", "chat"]);
        assertEquals(r.code, 0, r.stderr);
        const s = await json("server", "status", "chat");
        const re = await cli([...base, "server", "restart", "chat"]);
        assertEquals(re.code, 0, re.stderr);
        const after = await json("server", "status", "chat");
        assertEquals(after.port, s.port);
        assert(after.pid !== s.pid && !pidAlive(s.pid));
        assert((await chat(after.url, "Hi")).length > 0);
      });

      await t.step("Ctrl-C while a server loads stops it instead of leaving it behind", async () => {
        const starter = new Deno.Command(Deno.execPath(), {
          args: ["run", "-A", MAIN, ...base, "server", "start", MODEL, "--name", "interrupted"],
          env: { NO_COLOR: "1" },
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        // Freeze llama-server as soon as it exists so it cannot become ready before the Ctrl-C.
        const pid = await waitFor("the spawned llama-server", async () => {
          const rec = await Deno.readTextFile(`${data}/servers/interrupted.json`).then(
            JSON.parse,
            () => undefined,
          );
          return rec?.pid as number | undefined;
        });
        Deno.kill(pid, "SIGSTOP");
        starter.kill("SIGINT");
        const out = await starter.output();
        const stderr = new TextDecoder().decode(out.stderr);
        assertEquals(out.code, 1, stderr);
        assertStringIncludes(stderr, "start of server 'interrupted' cancelled; it was stopped");
        assert(!pidAlive(pid), "the half-started llama-server is gone");
        const st = await cli([...base, "server", "status", "interrupted", "--json"]);
        assertEquals(st.code, 3);
        assertEquals(JSON.parse(st.stdout).state, "stopped");
        assertEquals(JSON.parse(st.stdout).exitReason, "start cancelled");
      });

      await t.step("flags the supervisor sets cannot be passed through", async () => {
        const r = await cli([...base, "server", "start", MODEL, "--name", "x", "--", "--port", "9"]);
        assertEquals(r.code, 1);
        assertStringIncludes(r.stderr, "'--port' cannot be passed through to llama-server");
        assertStringIncludes(r.stderr, "hint: use --port");
      });

      await t.step("readiness is seen on a port fetch refuses and with a dead HTTP proxy set", async () => {
        // 10080, 6665-6669 and 6000 are on the Fetch standard's blocked-port list; any free one will do.
        const port = [10080, 6665, 6666, 6667, 6668, 6669, 6000].find((p) => {
          try {
            Deno.listen({ hostname: "127.0.0.1", port: p }).close();
            return true;
          } catch {
            return false;
          }
        });
        assert(port, "one of the blocked ports is free");
        const proxy = { HTTP_PROXY: "http://127.0.0.1:9", http_proxy: "http://127.0.0.1:9" };
        const r = await cli(
          [...base, "server", "start", MODEL, "--name", "blocked", "--port", String(port), "--ctx", "256"],
          { env: proxy },
        );
        assertEquals(r.code, 0, r.stderr);
        const st = await cli([...base, "server", "status", "blocked"], { env: proxy });
        assertEquals(st.code, 0, st.stdout);
        assertMatch(st.stdout, /health\s+ok/);
        assertMatch(st.stdout, new RegExp(`url\\s+http://127\\.0\\.0\\.1:${port}`));
        const stop = await cli([...base, "server", "stop", "blocked"]);
        assertEquals(stop.code, 0, stop.stderr);
      });

      await t.step("a projector paired with the model in the index is passed as --mmproj", async () => {
        // A model folder with a projector next to the model; this projector is a valid GGUF header without the
        // CLIP tensors, so llama-server really opens it and says why it cannot use it.
        const vision = `${tmp.path}/vision`;
        await Deno.mkdir(`${vision}/models`, { recursive: true });
        await Deno.mkdir(`${vision}/data/instances`, { recursive: true });
        await Deno.symlink(`${shared.instancesDir}/cpu`, `${vision}/data/instances/cpu`);
        await Deno.symlink(model, `${vision}/models/SmolLM2-135M-Instruct.Q4_1.gguf`);
        const mmproj = `${vision}/models/mmproj-SmolLM2-135M-Instruct-f16.gguf`;
        await Deno.writeFile(mmproj, tinyGguf({ "general.architecture": "clip", "general.type": "mmproj" }));
        await Deno.writeTextFile(`${vision}/config.yaml`, `models:\n  dirs: [${vision}/models]\n`);
        const vbase = ["-d", `${vision}/data`, "--config", `${vision}/config.yaml`];
        const r = await cli([...vbase, "server", "start", MODEL, "--name", "vision", "--ctx", "256"]);
        assertEquals(r.code, 1, r.stdout);
        assertStringIncludes(r.stderr, `failed to load multimodal model, '${mmproj}'`);
        const st = await cli([...vbase, "server", "status", "vision", "--json"]);
        const s = JSON.parse(st.stdout);
        assertEquals(s.state, "failed");
        assertEquals(s.argv[s.argv.indexOf("--mmproj") + 1], mmproj);
      });

      await t.step("a running server cannot be removed from the list", async () => {
        const r = await cli([...base, "server", "rm", "chat"]);
        assertEquals(r.code, 1);
        assertStringIncludes(r.stderr, "server 'chat' is running");
        assertStringIncludes(r.stderr, "llama-mgr server stop chat");
      });

      await t.step("stop --all stops every running server and list says so", async () => {
        const r = await cli([...base, "server", "stop", "--all"]);
        assertEquals(r.code, 0, r.stderr);
        assertMatch(r.stdout, /stopped (chat, smollm2-135m-q4_1|smollm2-135m-q4_1, chat)/);
        const all: { state: string }[] = await json("server", "list");
        assert(all.every((s) => s.state === "stopped"), JSON.stringify(all.map((s) => s.state)));
        const rm = await cli([...base, "server", "rm", "chat"]);
        assertEquals(rm.code, 0, rm.stderr);
        const names = (await json("server", "list")).map((s: { name: string }) => s.name);
        assertEquals(names.includes("chat"), false);
        assertEquals(names.includes("smollm2-135m-q4_1"), true);
      });
    } finally {
      await stopAllServers(resolvePaths({ dataDir: data, env: {} }));
      await stopAllServers(resolvePaths({ dataDir: `${tmp.path}/vision/data`, env: {} }));
      await tmp.cleanup();
    }
  },
});
