/**
 * The supervisor against a real llama-server and a real model: start, status, a chat completion, logs, stop;
 * two side by side; a port conflict; an unloadable model; kill -9; and a server that outlives the CLI.
 */
import { assert, assertEquals, assertMatch, assertRejects, assertStringIncludes } from "./_assert.ts";
import { cli, smolModelPath, tempDir, testInstance } from "./_fixtures.ts";
import { resolvePaths } from "../lib/config/paths.ts";
import {
  findFreePort,
  listServers,
  readServerLog,
  restartServer,
  rotateLog,
  serverStatus,
  startServer,
  stopAllServers,
  stopServer,
} from "../lib/server/mod.ts";
import { UserError } from "../lib/util/errors.ts";
import { pidAlive } from "../lib/util/process.ts";

async function chat(url: string, content: string): Promise<string> {
  const r = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ messages: [{ role: "user", content }], max_tokens: 8, temperature: 0 }),
  });
  assertEquals(r.status, 200);
  const body = await r.json();
  return body.choices[0].message.content as string;
}

Deno.test({
  name: "the supervisor runs real llama-servers and always tells their true state",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const { instance, paths: shared } = await testInstance();
    const model = await smolModelPath();
    const tmp = await tempDir();
    const paths = resolvePaths({ dataDir: tmp.path, env: {} });
    // The shared build, seen from this test's own data dir.
    await Deno.mkdir(paths.instancesDir, { recursive: true });
    await Deno.symlink(`${shared.instancesDir}/cpu`, `${paths.instancesDir}/cpu`);
    try {
      await t.step("start waits for /health, records the state, and serves a chat completion", async () => {
        const s = await startServer(paths, { name: "chat", modelPath: model, instance, ctx: 512 });
        assertEquals(s.state, "ready");
        assert(s.pid && pidAlive(s.pid));
        assertMatch(s.url, /^http:\/\/127\.0\.0\.1:\d+$/);
        const answer = await chat(s.url, "Say hello.");
        assert(answer.length > 0);
        const st = await serverStatus(paths, "chat");
        assertEquals(st.state, "ready");
        assert((st.rssBytes ?? 0) > 10_000_000, `rss ${st.rssBytes}`);
        assert(st.argv.includes("-c") && st.argv.includes("512"));
      });

      await t.step("the same name cannot be started twice", async () => {
        await assertRejects(
          () => startServer(paths, { name: "chat", modelPath: model, instance }),
          UserError,
          "server 'chat' is already running",
        );
      });

      await t.step("two starts of one name at the same moment: one runs, the other is refused", async () => {
        const results = await Promise.allSettled(
          [1, 2].map(() => startServer(paths, { name: "race", modelPath: model, instance, ctx: 256 })),
        );
        try {
          assertEquals(results.filter((r) => r.status === "fulfilled").length, 1);
          const refused = results.find((r) => r.status === "rejected") as PromiseRejectedResult;
          assert(refused.reason instanceof UserError, String(refused.reason));
          assertStringIncludes(refused.reason.message, "server 'race' is already running");
        } finally {
          await stopServer(paths, "race");
        }
        assertEquals((await serverStatus(paths, "race")).state, "stopped");
      });

      await t.step("a port in use is refused before anything is spawned", async () => {
        const busy = (await serverStatus(paths, "chat")).port;
        const err = await assertRejects(
          () => startServer(paths, { name: "other", modelPath: model, instance, port: busy }),
          UserError,
          `port ${busy} on 127.0.0.1 is already in use by server 'chat'`,
        );
        assertStringIncludes(err.hint ?? "", "--port auto");
        assert(!(await listServers(paths)).some((s) => s.name === "other"), "nothing was recorded for it");
      });

      await t.step("two servers run side by side on their own ports", async () => {
        const port = findFreePort();
        const s2 = await startServer(paths, { name: "second", modelPath: model, instance, port, ctx: 256 });
        assertEquals(s2.port, port);
        const [a, b] = await Promise.all([
          chat((await serverStatus(paths, "chat")).url, "One"),
          chat(s2.url, "Two"),
        ]);
        assert(a.length > 0 && b.length > 0);
        assertEquals((await listServers(paths)).filter((s) => s.state === "ready").length, 2);
      });

      await t.step("logs hold llama-server's own output", async () => {
        const lines = await readServerLog(paths, "chat", { lines: 400 });
        assert(lines.some((l) => l.includes("llama-mgr: starting")));
        assert(lines.some((l) => /listening on http/i.test(l)), lines.slice(-5).join("\n"));
      });

      await t.step("a running server's log is rotated in place and it keeps logging to it", async () => {
        const s = await serverStatus(paths, "chat");
        assert(await rotateLog(s.logFile, { maxBytes: 1, copyTruncate: true }));
        assertEquals((await Deno.stat(s.logFile)).size, 0);
        await chat(s.url, "Again.");
        // llama-server logs the request's timings just after it has answered.
        let fresh = "";
        for (let i = 0; i < 100 && !/print_timing/.test(fresh); i++) {
          await new Promise((r) => setTimeout(r, 50));
          fresh = await Deno.readTextFile(s.logFile);
        }
        assertMatch(fresh, /print_timing/);
        assert(!fresh.includes("llama-mgr: starting"), "the old content moved to .1");
        assertStringIncludes(await Deno.readTextFile(`${s.logFile}.1`), "llama-mgr: starting");
        const both = await readServerLog(paths, "chat", { lines: 10_000 });
        assert(
          both.some((l) => l.includes("llama-mgr: starting")) && both.some((l) => l.includes("print_timing")),
        );
        assertEquals((await serverStatus(paths, "chat")).state, "ready");
      });

      await t.step(
        "a port held by another program is refused before spawning, naming no server",
        async () => {
          const holder = Deno.listen({ hostname: "127.0.0.1", port: 0 });
          const port = (holder.addr as Deno.NetAddr).port;
          try {
            const err = await assertRejects(
              () => startServer(paths, { name: "foreign", modelPath: model, instance, port }),
              UserError,
              `port ${port} on 127.0.0.1 is already in use`,
            );
            assert(!err.message.includes("by server"), err.message);
            await assertRejects(() => serverStatus(paths, "foreign"), UserError, "no server named 'foreign'");
          } finally {
            holder.close();
          }
        },
      );

      await t.step("a bad llama-server flag fails at once with llama-server's own message", async () => {
        const t0 = performance.now();
        const err = await assertRejects(
          () =>
            startServer(paths, {
              name: "badflag",
              modelPath: model,
              instance,
              args: ["--no-such-flag"],
              readyTimeoutMs: 60_000,
            }),
          UserError,
          "failed to start",
        );
        assert(performance.now() - t0 < 20_000, "it did not wait for the timeout");
        assertStringIncludes(err.message, "invalid argument: --no-such-flag");
        assert(!err.message.includes("not ready after"), err.message);
        const st = await serverStatus(paths, "badflag");
        assertEquals(st.state, "failed");
        assertStringIncludes(st.exitReason ?? "", "invalid argument: --no-such-flag");
      });

      await t.step("the same pid with another start time is not our llama-server", async () => {
        const rec = JSON.parse(await Deno.readTextFile(`${paths.serversDir}/chat.json`));
        await Deno.writeTextFile(
          `${paths.serversDir}/imposter.json`,
          JSON.stringify({ ...rec, name: "imposter", startTicks: rec.startTicks - 1 }),
        );
        const s = await serverStatus(paths, "imposter");
        assertEquals(s.state, "crashed");
        assertStringIncludes(s.exitReason ?? "", "belongs to another program");
        await Deno.remove(`${paths.serversDir}/imposter.json`);
        assertEquals((await serverStatus(paths, "chat")).state, "ready");
      });

      await t.step("a cancelled start stops the server it spawned", async () => {
        const ac = new AbortController();
        const started = startServer(paths, {
          name: "cancelled",
          modelPath: model,
          instance,
          signal: ac.signal,
        });
        // Cancel as soon as the process exists (what Ctrl-C in `server start` does).
        let pid: number | undefined;
        for (let i = 0; i < 200 && !pid; i++) {
          await new Promise((r) => setTimeout(r, 10));
          pid = await serverStatus(paths, "cancelled").then((s) => s.pid, () => undefined);
        }
        ac.abort();
        await assertRejects(() => started, UserError, "start of server 'cancelled' cancelled");
        const s = await serverStatus(paths, "cancelled");
        assertEquals(s.state, "stopped");
        assertEquals(s.exitReason, "start cancelled");
        assert(pid && !pidAlive(pid), "the half-started llama-server is gone");
      });

      await t.step("stop during a start stops it (even a frozen process) and the start says so", async () => {
        const started = startServer(paths, { name: "interrupted", modelPath: model, instance });
        let pid: number | undefined;
        for (let i = 0; i < 500 && !pid; i++) {
          await new Promise((r) => setTimeout(r, 10));
          pid = await serverStatus(paths, "interrupted").then((s) => s.pid, () => undefined);
        }
        assert(pid, "the server was spawned");
        Deno.kill(pid, "SIGSTOP"); // frozen while loading: it only acts on SIGTERM once continued
        const t0 = performance.now();
        const stopped = await stopServer(paths, "interrupted", { timeoutMs: 20_000 });
        assert(
          performance.now() - t0 < 10_000,
          "SIGTERM reached the stopped process without waiting for SIGKILL",
        );
        assertEquals(stopped.state, "stopped");
        assertEquals(stopped.exitReason, "stopped");
        await assertRejects(
          () => started,
          UserError,
          "server 'interrupted' was stopped while it was starting",
        );
        assert(!pidAlive(pid));
        assertEquals((await serverStatus(paths, "interrupted")).state, "stopped");
      });

      await t.step(
        "a server left 'starting' by a starter that died is seen ready once it answers",
        async () => {
          const file = `${paths.serversDir}/chat.json`;
          const rec = JSON.parse(await Deno.readTextFile(file));
          const dead = new Deno.Command("true").spawn();
          await dead.status;
          await Deno.writeTextFile(file, JSON.stringify({ ...rec, state: "starting", starterPid: dead.pid }));
          const s = await serverStatus(paths, "chat");
          assertEquals(s.state, "ready");
          assertEquals(JSON.parse(await Deno.readTextFile(file)).state, "ready");
        },
      );

      await t.step("an unloadable model fails with llama-server's reason, not a timeout", async () => {
        const bad = `${tmp.path}/broken.gguf`;
        const bytes = await Deno.readFile(model);
        await Deno.writeFile(bad, bytes.subarray(0, 4096));
        const t0 = performance.now();
        const err = await assertRejects(
          () => startServer(paths, { name: "broken", modelPath: bad, instance, readyTimeoutMs: 60_000 }),
          UserError,
          "failed to start",
        );
        assert(performance.now() - t0 < 30_000, "it did not wait for the timeout");
        assertMatch(err.message, /failed to (load|read)|error loading model/);
        const st = await serverStatus(paths, "broken");
        assertEquals(st.state, "failed");
        assertMatch(st.exitReason ?? "", /error loading model|failed to (load|read)/);
      });

      await t.step("kill -9 of a server shows it crashed, never running, and it starts again", async () => {
        const before = await serverStatus(paths, "second");
        Deno.kill(before.pid!, "SIGKILL");
        for (let i = 0; i < 50 && pidAlive(before.pid!); i++) await new Promise((r) => setTimeout(r, 50));
        const after = await serverStatus(paths, "second");
        assertEquals(after.state, "crashed");
        assertEquals(after.pid, undefined);
        // This process started it, so it saw the exit status (a CLI that has exited reads the log instead).
        for (
          let i = 0;
          i < 100 && !(await serverStatus(paths, "second")).exitReason?.includes("SIGKILL");
          i++
        ) {
          await new Promise((r) => setTimeout(r, 20));
        }
        assertStringIncludes((await serverStatus(paths, "second")).exitReason ?? "", "killed by SIGKILL");
        assertEquals((await listServers(paths)).find((s) => s.name === "second")?.state, "crashed");
        const again = await startServer(paths, {
          name: "second",
          modelPath: model,
          instance,
          port: before.port,
          ctx: 256,
        });
        assertEquals(again.state, "ready");
        assertEquals(again.port, before.port);
      });

      await t.step("a restart that cannot start again leaves the running server alone", async () => {
        const file = `${paths.serversDir}/second.json`;
        const rec = JSON.parse(await Deno.readTextFile(file));
        await Deno.writeTextFile(file, JSON.stringify({ ...rec, spec: { ...rec.spec, instance: "gone" } }));
        try {
          await assertRejects(() => restartServer(paths, "second"), UserError, "gone");
          const s = await serverStatus(paths, "second");
          assertEquals(s.state, "ready");
          assertEquals(s.pid, rec.pid);
        } finally {
          const now = JSON.parse(await Deno.readTextFile(file));
          await Deno.writeTextFile(file, JSON.stringify({ ...now, spec: rec.spec }));
        }
      });

      await t.step("restart keeps the port; stop sends SIGTERM and records stopped", async () => {
        const before = await serverStatus(paths, "second");
        const r = await restartServer(paths, "second");
        assertEquals(r.port, before.port);
        assert(r.pid !== before.pid);
        const s = await stopServer(paths, "second");
        assertEquals(s.state, "stopped");
        assert(!pidAlive(r.pid!));
      });
    } finally {
      await stopAllServers(paths);
      await tmp.cleanup();
    }
  },
});

Deno.test({
  name: "server start from the CLI leaves a server that outlives the CLI, and list/logs/stop --all manage it",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const { paths: shared } = await testInstance();
    const model = await smolModelPath();
    const tmp = await tempDir();
    // The instance lives in the shared test data dir; this test's servers in its own.
    const data = tmp.path;
    await Deno.mkdir(`${data}/instances`, { recursive: true });
    await Deno.symlink(`${shared.instancesDir}/cpu`, `${data}/instances/cpu`);
    const base = ["-d", data];
    try {
      const r = await cli([
        ...base,
        "server",
        "start",
        model,
        "--name",
        "cli-chat",
        "--ctx",
        "256",
        "--",
        "--threads",
        "1",
      ]);
      assertEquals(r.code, 0, r.stderr);
      assertMatch(r.stdout, /started 'cli-chat' .* at http:\/\/127\.0\.0\.1:\d+ \(pid \d+\)/);
      // The CLI process has exited; the server is still there.
      const list = await cli([...base, "server", "list", "--json"]);
      const [s] = JSON.parse(list.stdout);
      assertEquals(s.state, "ready");
      assert(pidAlive(s.pid));
      assert(s.argv.includes("--threads"));
      assertEquals(await chat(s.url, "Hi").then((x) => x.length > 0), true);
      const table = await cli([...base, "server", "list"]);
      assertMatch(table.stdout, /^cli-chat\s+.*\s+cpu\s+\d+\s+\d+\s+ready\s/m);
      const logs = await cli([...base, "server", "logs", "cli-chat", "-n", "5"]);
      assertEquals(logs.code, 0);
      assertEquals(logs.stdout.trim().split("\n").length, 5);
      const status = await cli([...base, "server", "status", "cli-chat"]);
      assertEquals(status.code, 0);
      assertMatch(status.stdout, /health\s+ok/);
      const dup = await cli([...base, "server", "start", model, "--name", "cli-chat"]);
      assertEquals(dup.code, 1);
      assertStringIncludes(dup.stderr, "already running");
      const stop = await cli([...base, "server", "stop", "--all"]);
      assertEquals(stop.code, 0, stop.stderr);
      assertStringIncludes(stop.stdout, "cli-chat");
      assert(!pidAlive(s.pid));
      const after = await cli([...base, "server", "status", "cli-chat"]);
      assertEquals(after.code, 3);
      assertMatch(after.stdout, /state\s+stopped/);
      const unknown = await cli([...base, "server", "stop", "nope"]);
      assertStringIncludes(unknown.stderr, "no server named 'nope'");
    } finally {
      await stopAllServers(resolvePaths({ dataDir: data, env: {} }));
      await tmp.cleanup();
    }
  },
});
