/**
 * The supervisor's truth about processes it no longer watches: a pid that now belongs to another program, a
 * dead pid, a record from before a reboot; and its logs: rotation (by rename and in place), tails across the
 * rotated file, and llama-server's reason picked out of a log.
 */
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./_assert.ts";
import { tempDir } from "./_fixtures.ts";
import { resolvePaths } from "../lib/config/paths.ts";
import {
  bootId,
  failureReason,
  followFile,
  listServers,
  rotateLog,
  serverArgv,
  serverLogPath,
  type ServerRecord,
  type ServerSpec,
  serverStatus,
  START_MARKER,
  stopServer,
  tailLog,
  writeRecord,
} from "../lib/server/mod.ts";
import { pidAlive, pidStartTicks } from "../lib/util/process.ts";

function record(name: string, logFile: string, changes: Partial<ServerRecord>): ServerRecord {
  return {
    name,
    state: "ready",
    binary: "/opt/llama/bin/llama-server",
    argv: ["/opt/llama/bin/llama-server", "-m", "/m/x.gguf", "--port", "18081"],
    host: "127.0.0.1",
    port: 18081,
    logFile,
    startedAt: new Date(Date.now() - 60_000).toISOString(),
    spec: {
      name,
      modelPath: "/m/x.gguf",
      instance: "cpu",
      host: "127.0.0.1",
      port: 18081,
      args: [],
      env: {},
    },
    ...changes,
  };
}

Deno.test({
  name: "a recorded server is only running while its own llama-server process is",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const tmp = await tempDir();
    const paths = resolvePaths({ dataDir: tmp.path, env: {} });
    const log = serverLogPath(paths, "x");
    await Deno.mkdir(paths.logsDir, { recursive: true });
    await Deno.writeTextFile(
      log,
      `${START_MARKER} 2026-01-01T00:00:00Z: llama-server ...\n0.01.000.000 I srv  update_slots: all slots are idle\n`,
    );
    // A live process that is not llama-server, standing in for a pid the OS gave to another program.
    const other = new Deno.Command("sleep", { args: ["60"], stdout: "null", stderr: "null" }).spawn();
    try {
      await t.step(
        "a pid that now belongs to another program shows crashed, and stop leaves it alone",
        async () => {
          await writeRecord(
            paths,
            record("reused", log, { pid: other.pid, startTicks: pidStartTicks(other.pid), bootId: bootId() }),
          );
          const s = await serverStatus(paths, "reused");
          assertEquals(s.state, "crashed");
          assertEquals(s.pid, undefined);
          assertStringIncludes(s.exitReason ?? "", "belongs to another program");
          const stopped = await stopServer(paths, "reused");
          assertEquals(stopped.state, "stopped");
          assert(pidAlive(other.pid), "stop must never signal a process that is not ours");
        },
      );

      await t.step("a dead pid shows crashed with how its log ends", async () => {
        const gone = new Deno.Command("true").spawn();
        await gone.status;
        await writeRecord(paths, record("dead", log, { pid: gone.pid, bootId: bootId() }));
        const s = await serverStatus(paths, "dead");
        assertEquals(s.state, "crashed");
        assertMatch(s.exitReason ?? "", /process is gone \(killed or crashed\) \(pid \d+\)/);
        assertStringIncludes(s.exitReason ?? "", "all slots are idle");
      });

      await t.step("a record from before a reboot shows stopped, saying the machine restarted", async () => {
        await writeRecord(
          paths,
          record("boot", log, {
            pid: other.pid,
            startTicks: pidStartTicks(other.pid),
            bootId: "not-this-boot",
          }),
        );
        const s = await serverStatus(paths, "boot");
        assertEquals(s.state, "stopped");
        assertStringIncludes(s.exitReason ?? "", "the machine restarted");
      });

      await t.step("a server being stopped whose process is gone is stopped, not crashed", async () => {
        const gone = new Deno.Command("true").spawn();
        await gone.status;
        await writeRecord(
          paths,
          record("stopping", log, { state: "stopping", pid: gone.pid, bootId: bootId() }),
        );
        assertEquals((await serverStatus(paths, "stopping")).state, "stopped");
      });

      await t.step("list never shows any of them running", async () => {
        const all = await listServers(paths);
        assertEquals(all.map((s) => s.name), ["boot", "dead", "reused", "stopping"]);
        assert(all.every((s) => !["starting", "ready", "stopping"].includes(s.state)));
      });
    } finally {
      other.kill("SIGKILL");
      await other.status;
      await tmp.cleanup();
    }
  },
});

Deno.test("server logs rotate, keep three old files, and tails reach into the rotated one", async (t) => {
  const tmp = await tempDir();
  const log = `${tmp.path}/server-x.log`;
  try {
    await t.step("a small log is left alone", async () => {
      await Deno.writeTextFile(log, "one\n");
      assertEquals(await rotateLog(log, { maxBytes: 100 }), false);
      assertEquals(await Deno.readTextFile(log), "one\n");
    });

    await t.step("a large log moves to .1, older ones up, the oldest beyond three dropped", async () => {
      for (const n of ["a", "b", "c", "d", "e"]) {
        await Deno.writeTextFile(log, `${n}\n`.repeat(20));
        assert(await rotateLog(log, { maxBytes: 10 }));
      }
      assertEquals((await Deno.readTextFile(`${log}.1`)).slice(0, 2), "e\n");
      assertEquals((await Deno.readTextFile(`${log}.3`)).slice(0, 2), "c\n");
      assert(!(await Deno.stat(`${log}.4`).then(() => true).catch(() => false)));
      assert(!(await Deno.stat(log).then(() => true).catch(() => false)));
    });

    await t.step(
      "in place (copy and truncate), a writer holding the file keeps appending to it",
      async () => {
        const f = await Deno.open(log, { append: true, create: true });
        await f.write(new TextEncoder().encode("before\n".repeat(10)));
        assert(await rotateLog(log, { maxBytes: 10, copyTruncate: true }));
        await f.write(new TextEncoder().encode("after\n"));
        f.close();
        assertEquals(await Deno.readTextFile(log), "after\n");
        assertEquals(await Deno.readTextFile(`${log}.1`), "before\n".repeat(10));
      },
    );

    await t.step("follow keeps up across an in-place truncation and a rotation by rename", async () => {
      const f = `${tmp.path}/follow.log`;
      await Deno.writeTextFile(f, "old line\n");
      const ac = new AbortController();
      let seen = "";
      const following = followFile(f, (text) => seen += text, ac.signal);
      const until = async (part: string) => {
        for (let i = 0; i < 100 && !seen.includes(part); i++) await new Promise((r) => setTimeout(r, 20));
        assertStringIncludes(seen, part);
      };
      try {
        await Deno.writeTextFile(f, "first new line\n", { append: true });
        await until("first new line");
        assert(!seen.includes("old line"), "follow starts at the end");
        await rotateLog(f, { maxBytes: 1, copyTruncate: true });
        await Deno.writeTextFile(f, "after truncation\n", { append: true });
        await until("after truncation");
        await rotateLog(f, { maxBytes: 1 });
        // The new file is longer than where the old one ended: only its identity says it is new.
        await Deno.writeTextFile(f, "a new file after a rotation by rename, longer than before\n");
        await until("a new file after a rotation by rename");
      } finally {
        ac.abort();
        await following;
      }
    });

    await t.step("a tail longer than the current file continues in the rotated one", async () => {
      assertEquals(await tailLog(log, 3), ["before", "before", "after"]);
      assertEquals(await tailLog(log, 1), ["after"]);
    });
  } finally {
    await tmp.cleanup();
  }
});

Deno.test("llama-server's own reason is picked from its latest run", () => {
  const lines = [
    `${START_MARKER} 2026-01-01T00:00:00Z: llama-server -m old.gguf`,
    "0.00.000.001 E old error from an earlier run",
    `${START_MARKER} 2026-01-02T00:00:00Z: llama-server -m broken.gguf`,
    "0.00.000.100 I main: n_ctx = 4096",
    "0.00.000.200 E gguf_init_from_file_impl: failed to read tensor info",
    "0.00.000.300 E llama_model_load: error loading model: llama_model_loader: failed to load model from broken.gguf",
    "0.00.000.400 I srv    load_model: exiting",
  ];
  const why = failureReason(lines);
  assertStringIncludes(why, "error loading model");
  assertStringIncludes(why, "failed to read tensor info");
  assert(!why.includes("old error"), why);
  assert(!why.includes("n_ctx"), why);
  assertEquals(
    failureReason([`${START_MARKER} x`, "error: invalid argument: --bogus"]),
    "error: invalid argument: --bogus",
  );
  assertEquals(failureReason([`${START_MARKER} x`]), "(no output)");
});

Deno.test("the llama-server command line carries the model, address, context, layers, projector and flags", () => {
  const argv = serverArgv("/i/bin/llama-server", {
    name: "v",
    modelPath: "/m/vision.gguf",
    mmproj: "/m/mmproj-vision-f16.gguf",
    instance: {} as ServerSpec["instance"],
    ctx: 8192,
    ngl: 99,
    alias: "gemma3:4b",
    args: ["--jinja"],
  }, 8081);
  assertEquals(argv, [
    "/i/bin/llama-server",
    "-m",
    "/m/vision.gguf",
    "--host",
    "127.0.0.1",
    "--port",
    "8081",
    "-c",
    "8192",
    "-ngl",
    "99",
    "--mmproj",
    "/m/mmproj-vision-f16.gguf",
    "--alias",
    "gemma3:4b",
    "--jinja",
  ]);
});
