/**
 * The download engine of `llama-mgr pull` against `curl -o`, on a local server serving a 1 GiB file:
 *
 * - wall time of `download()` (sha256 verified) against `curl -o` of the same file, alternating, 5 runs each:
 *   medians and their ratio (target: pull <= 1.1x curl);
 * - peak resident memory (VmHWM) of the pulling process, a child Deno process run with the CLI's V8 flags
 *   (target < 100 MB);
 * - a `kill -9` of the puller once the server has sent half the file, then a resume: the bytes sent twice,
 *   as the server counts them, over the file's size (target <= 5 %).
 *
 * The server sends the file from a temp dir (made once per run, never held in memory) with `sendfile(2)`, as
 * nginx or a CDN's edge does, from a small Python program (`--server sendfile`, the default when python3 is
 * on PATH), or as a child Deno process that reads and writes it (`--server deno`, which costs a core's worth
 * of CPU that the puller and curl then lack); both with Range, ETag and a byte counter. Server, puller and
 * curl share this machine's cores.
 *
 * Run: `deno run -A bench/pull.ts [--size-mib 1024] [--runs 5] [--parallel N] [--server sendfile|deno]
 * [--json]` (the same file also runs as the Deno server, `--serve FILE`, and as the puller,
 * `--pull URL DEST SHA256`).
 *
 * @module
 */
import { createHash } from "node:crypto";
import { parseArgs } from "node:util";
import { download } from "../lib/models/pull/download.ts";
import { pidStatusBytes } from "../lib/util/process.ts";
import { DAEMON_V8_FLAGS } from "../lib/version.ts";
import { rng } from "../tests/_rng.ts";

const MiB = 1024 * 1024;
const { values: flags, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    "size-mib": { type: "string", default: "1024" },
    runs: { type: "string", default: "5" },
    server: { type: "string" },
    parallel: { type: "string" },
    json: { type: "boolean", default: false },
    serve: { type: "boolean", default: false },
    pull: { type: "boolean", default: false },
  },
});
const self = new URL(import.meta.url).pathname;

/**
 * The sendfile server: the same routes as `serve`, the body sent by the kernel from the page cache
 * (`os.sendfile`), bytes counted as the kernel takes them.
 */
const SENDFILE_SERVER = `
import http.server, json, os, sys, threading
path = sys.argv[1]
size = os.path.getsize(path)
lock = threading.Lock()
served = 0
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
    def small(self, obj):
        body = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        global served
        if self.path == "/stats":
            return self.small({"served": served})
        if self.path == "/reset":
            with lock:
                served = 0
            return self.small({"served": 0})
        start, end, status = 0, size - 1, 200
        r = self.headers.get("range", "")
        if r.startswith("bytes="):
            a, b = r[6:].split("-", 1)
            start, end, status = int(a), min(size - 1, int(b)) if b else size - 1, 206
        self.send_response(status)
        self.send_header("content-length", str(end - start + 1))
        self.send_header("accept-ranges", "bytes")
        self.send_header("etag", '"bench-%d"' % size)
        if status == 206:
            self.send_header("content-range", "bytes %d-%d/%d" % (start, end, size))
        self.end_headers()
        self.wfile.flush()
        with open(path, "rb") as f:
            offset, left = start, end - start + 1
            try:
                while left:
                    n = os.sendfile(self.connection.fileno(), f.fileno(), offset, min(left, 1 << 20))
                    if n == 0:
                        break
                    with lock:
                        served += n
                    offset += n
                    left -= n
            except OSError:
                self.close_connection = True
class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    def handle_error(self, request, client_address):
        pass
server = Server(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
`;

if (flags.serve) await serve(positionals[0]);
else if (flags.pull) await pull(positionals[0], positionals[1], positionals[2]);
else await main();

/** The server role: `/file` with Range and an ETag, `/stats` (bytes sent), `/reset`. */
async function serve(path: string): Promise<void> {
  const size = (await Deno.stat(path)).size;
  let served = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const url = new URL(req.url);
    if (url.pathname === "/stats") return Response.json({ served });
    if (url.pathname === "/reset") {
      served = 0;
      return Response.json({ served });
    }
    let start = 0;
    let end = size - 1;
    let status = 200;
    const m = req.headers.get("range")?.match(/^bytes=(\d+)-(\d*)$/);
    if (m) {
      start = Number(m[1]);
      end = m[2] ? Math.min(size - 1, Number(m[2])) : size - 1;
      status = 206;
    }
    const file = await Deno.open(path, { read: true });
    await file.seek(start, Deno.SeekMode.Start);
    let left = end - start + 1;
    const body = new ReadableStream<Uint8Array>({
      async pull(c) {
        const buf = new Uint8Array(Math.min(left, 256 * 1024));
        const n = await file.read(buf);
        if (!n) {
          file.close();
          c.close();
          return;
        }
        left -= n;
        served += n;
        c.enqueue(n === buf.length ? buf : buf.subarray(0, n));
        if (left === 0) {
          file.close();
          c.close();
        }
      },
      cancel() {
        file.close();
      },
    });
    const headers: Record<string, string> = {
      "content-length": String(end - start + 1),
      "accept-ranges": "bytes",
      etag: `"bench-${size}"`,
    };
    if (status === 206) headers["content-range"] = `bytes ${start}-${end}/${size}`;
    return new Response(body, { status, headers });
  });
  console.log(server.addr.port);
  await server.finished;
}

/** CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat. */
function cpuSeconds(pid: number | "self"): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}

/**
 * CPU seconds of this process's threads by role: the main thread (receiving, hashing), the Worker threads
 * (writing), the rest (Deno's and V8's helpers), from /proc/self/task. A thread that has ended is counted in
 * none (only `cpu`).
 */
function threadCpu(): { main: number; workers: number; other: number } {
  const out = { main: 0, workers: 0, other: 0 };
  for (const t of Deno.readDirSync("/proc/self/task")) {
    let comm: string;
    let s: number;
    try {
      comm = Deno.readTextFileSync(`/proc/self/task/${t.name}/comm`).trim();
      const stat = Deno.readTextFileSync(`/proc/self/task/${t.name}/stat`);
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      s = (Number(f[11]) + Number(f[12])) / 100;
    } catch {
      continue; // ended meanwhile
    }
    if (Number(t.name) === Deno.pid) out.main += s;
    else if (comm.startsWith("worker")) out.workers += s;
    else out.other += s;
  }
  return out;
}

/** The puller role: one download, then its time, CPU and peak memory as JSON on stdout. */
async function pull(url: string, dest: string, sha256: string): Promise<void> {
  const t0 = performance.now();
  let threads = threadCpu();
  // The Worker ends with the download: its CPU is read while it runs.
  const sampler = setInterval(() => {
    threads = threadCpu();
  }, 100);
  const r = await download({
    url,
    dest,
    sha256,
    parallel: flags.parallel ? Number(flags.parallel) : undefined,
  });
  const ms = performance.now() - t0;
  clearInterval(sampler);
  const main = threadCpu().main;
  console.log(
    JSON.stringify({
      ms,
      cpu: cpuSeconds("self"),
      mainCpu: main,
      workerCpu: threads.workers,
      hwm: pidStatusBytes(Deno.pid, "VmHWM"),
      fetched: r.fetchedBytes,
      resumed: r.resumed,
      connections: r.connections,
    }),
  );
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

async function sync(): Promise<void> {
  await new Deno.Command("sync").output();
}

function pullCommand(url: string, dest: string, sha: string): Deno.Command {
  const args = ["run", "-A", `--v8-flags=${DAEMON_V8_FLAGS.join(",")}`, self, "--pull", url, dest, sha];
  if (flags.parallel) args.push("--parallel", flags.parallel);
  return new Deno.Command(Deno.execPath(), { args, stdout: "piped", stderr: "inherit" });
}

interface PullRun {
  ms: number;
  cpu: number;
  hwm: number;
  fetched: number;
  resumed: boolean;
  connections: number;
  mainCpu: number;
  workerCpu: number;
  wall: number;
}

async function runPull(url: string, dest: string, sha: string): Promise<PullRun> {
  const t0 = performance.now();
  const out = await pullCommand(url, dest, sha).output();
  const wall = performance.now() - t0;
  if (!out.success) throw new Error(`the puller failed (${out.code})`);
  return { ...JSON.parse(new TextDecoder().decode(out.stdout)), wall };
}

/** A command's wall time and CPU seconds (through /usr/bin/time when there is one). */
async function timed(cmd: string[]): Promise<{ ms: number; cpu?: number; stdout: string }> {
  const hasTime = await Deno.stat("/usr/bin/time").then(() => true, () => false);
  const argv = hasTime ? ["/usr/bin/time", "-f", "%U %S", ...cmd] : cmd;
  const t0 = performance.now();
  const out = await new Deno.Command(argv[0], { args: argv.slice(1) }).output();
  const ms = performance.now() - t0;
  const stderr = new TextDecoder().decode(out.stderr);
  if (!out.success) throw new Error(`${cmd.join(" ")} failed: ${stderr}`);
  const m = stderr.trim().split("\n").pop()?.match(/^([\d.]+) ([\d.]+)$/);
  return {
    ms,
    cpu: m ? Number(m[1]) + Number(m[2]) : undefined,
    stdout: new TextDecoder().decode(out.stdout),
  };
}

async function main(): Promise<void> {
  const size = Number(flags["size-mib"]) * MiB;
  const runs = Number(flags.runs);
  const dir = await Deno.makeTempDir({ prefix: "llama-mgr-bench-pull-" });
  const source = `${dir}/served.bin`;
  const dest = `${dir}/out/model.gguf`;
  let server: Deno.ChildProcess | undefined;
  try {
    // A seeded 1 MiB block, each copy stamped with its index: no two blocks alike, nothing compressible.
    const next = rng(1);
    const block = new Uint8Array(MiB);
    const words = new Uint32Array(block.buffer);
    for (let i = 0; i < words.length; i++) words[i] = (next() * 4294967296) >>> 0;
    const hash = createHash("sha256");
    {
      using f = await Deno.open(source, { write: true, create: true, truncate: true });
      for (let i = 0; i < size / MiB; i++) {
        words[0] = i;
        hash.update(block);
        for (let off = 0; off < block.length;) off += await f.write(block.subarray(off));
      }
    }
    const sha = hash.digest("hex");
    await Deno.mkdir(`${dir}/out`);

    const python = await new Deno.Command("python3", { args: ["--version"], stdout: "null", stderr: "null" })
      .output().then((o) => o.success, () => false);
    const kind = flags.server ?? (python ? "sendfile" : "deno");
    if (kind !== "sendfile" && kind !== "deno") throw new Error(`--server: sendfile or deno, not ${kind}`);
    if (kind === "sendfile" && !python) throw new Error("--server sendfile needs python3 on PATH");
    await Deno.writeTextFile(`${dir}/server.py`, SENDFILE_SERVER);
    server = new Deno.Command(kind === "sendfile" ? "python3" : Deno.execPath(), {
      args: kind === "sendfile" ? [`${dir}/server.py`, source] : ["run", "-A", self, "--serve", source],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const reader = server.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let first = "";
    while (!first.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) throw new Error("the server did not start");
      first += value;
    }
    reader.releaseLock();
    server.stdout.cancel().catch(() => {});
    const base = `http://127.0.0.1:${first.trim()}`;
    const url = `${base}/file`;
    const served = async () => (await (await fetch(`${base}/stats`)).json()).served as number;
    const reset = async () => void await (await fetch(`${base}/reset`)).body?.cancel();

    const cores = navigator.hardwareConcurrency;
    const shared = (cores <= 2
      ? `the server and the puller (or curl) share the ${cores} cores`
      : `${cores} cores: the server and the puller (or curl) can each have one`) +
      `; server: ${kind === "sendfile" ? "sendfile(2) from python3" : "a Deno process reading the file"}`;
    const loadBefore = Deno.loadavg()[0];
    console.error(`${shared}; load average ${loadBefore.toFixed(1)} before the runs`);
    // Warm: the served file's pages in the cache for every run.
    await timed(["curl", "-sS", "-o", dest, url]);
    await Deno.remove(dest);

    // The floor the hash sets: node:crypto over the same number of bytes, in this process.
    const floor = createHash("sha256");
    const h0 = performance.now();
    for (let i = 0; i < size / MiB; i++) {
      floor.update(block);
    }
    floor.digest();
    const hashMs = performance.now() - h0;
    console.error(`sha256 of ${size / MiB} MiB in memory: ${(hashMs / 1000).toFixed(2)} s`);

    const curl: { ms: number; cpu?: number }[] = [];
    const verified: number[] = [];
    const pulls: PullRun[] = [];
    const serverCpu: { curl: number[]; pull: number[] } = { curl: [], pull: [] };
    for (let i = 0; i < runs; i++) {
      for (const which of i % 2 ? ["pull", "curl", "verified"] : ["curl", "pull", "verified"]) {
        await sync();
        const c0 = cpuSeconds(server.pid);
        if (which === "curl") {
          const r = await timed(["curl", "-sS", "-o", dest, url]);
          curl.push(r);
          console.error(`curl -o          ${(r.ms / 1000).toFixed(2)} s, CPU ${r.cpu?.toFixed(2) ?? "?"} s`);
        } else if (which === "verified") {
          // What verifying costs a curl user: the digest of the file just written (openssl, SHA-NI).
          const t0 = performance.now();
          await timed(["curl", "-sS", "-o", dest, url]);
          const dgst = await timed(["openssl", "dgst", "-sha256", dest]);
          verified.push(performance.now() - t0);
          if (!dgst.stdout.includes(sha)) {
            throw new Error("curl's file has another sha256");
          }
          console.error(`curl -o + openssl ${(verified.at(-1)! / 1000).toFixed(2)} s`);
        } else {
          const r = await runPull(url, dest, sha);
          pulls.push(r);
          console.error(
            `pull             ${(r.ms / 1000).toFixed(2)} s (process ${(r.wall / 1000).toFixed(2)} s), CPU ${
              r.cpu.toFixed(2)
            } s (main thread: receive + sha256 ${r.mainCpu.toFixed(2)}, writer worker ${
              r.workerCpu.toFixed(2)
            }), VmHWM ${(r.hwm / MiB).toFixed(1)} MiB, ${r.connections} connection(s)`,
          );
        }
        if (which !== "verified") {
          serverCpu[which as "curl" | "pull"].push(cpuSeconds(server.pid) - c0);
        }
        await Deno.remove(dest);
      }
    }

    // kill -9 once the server has sent half the file, then resume.
    await sync();
    await reset();
    const child = pullCommand(url, dest, sha).spawn();
    while (await served() < size / 2) {
      await new Promise((r) =>
        setTimeout(r, 10)
      );
    }
    child.kill("SIGKILL");
    await child.output();
    const before = await served();
    const destAfterKill = await Deno.stat(dest).then(() => true, () => false);
    const resumed = await runPull(url, dest, sha);
    const total = await served();
    const refetch = (total - size - 2) / size; // less the two probes' bytes
    console.error(
      `kill -9 after ${(before / MiB).toFixed(0)} MiB sent; the resume fetched ${
        (resumed.fetched / MiB).toFixed(1)
      } MiB`,
    );
    const loadAfter = Deno.loadavg()[0];

    const curlMed = median(curl.map((r) => r.ms));
    const pullMed = median(pulls.map((r) => r.ms));
    const result = {
      sizeBytes: size,
      parallel: flags.parallel ? Number(flags.parallel) : "default",
      cores,
      loadAverage: [loadBefore, loadAfter],
      curlMs: curl.map((r) => r.ms),
      curlCpuSeconds: curl.map((r) => r.cpu),
      curlVerifiedMs: verified,
      pullMs: pulls.map((r) => r.ms),
      pullProcessMs: pulls.map((r) => r.wall),
      pullCpuSeconds: pulls.map((r) => r.cpu),
      pullMainThreadCpuSeconds: pulls.map((r) => r.mainCpu),
      pullWorkerCpuSeconds: pulls.map((r) => r.workerCpu),
      pullConnections: pulls.map((r) => r.connections),
      serverCpuSeconds: serverCpu,
      sha256InMemoryMs: hashMs,
      ratio: pullMed / curlMed,
      processRatio: median(pulls.map((r) => r.wall)) / curlMed,
      verifiedRatio: pullMed / median(verified),
      peakRssBytes: Math.max(...pulls.map((r) => r.hwm)),
      killResume: {
        sentBeforeKill: before,
        destAfterKill,
        refetchFraction: refetch,
        resumed: resumed.resumed,
      },
    };
    if (flags.json) {
      console.log(JSON.stringify(result, null, 2));
      return;
    }
    const ok = (b: boolean) => (b ? "met" : "NOT met");
    const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
    const cpu = (xs: (number | undefined)[]) => {
      const known = xs.filter((x): x is number => x !== undefined);
      return known.length ? `${median(known).toFixed(2)} s` : "?";
    };
    console.log(
      `file: ${size / MiB} MiB, parallel ${result.parallel} (connections used: ${
        result.pullConnections.join(", ")
      }); ${shared}; load average ${loadBefore.toFixed(1)} ` +
        `before, ${loadAfter.toFixed(1)} after`,
    );
    console.log(
      `wall time, median of ${runs}: pull ${s(pullMed)} (sha256 verified; CPU ${
        cpu(result.pullCpuSeconds)
      }), ` +
        `curl -o ${s(curlMed)} (CPU ${cpu(result.curlCpuSeconds)}): ${result.ratio.toFixed(3)}x ` +
        `(target <= 1.1x: ${ok(result.ratio <= 1.1)}); with Deno's start-up ${
          result.processRatio.toFixed(3)
        }x; ` +
        `against curl -o then openssl dgst (${s(median(verified))}): ${result.verifiedRatio.toFixed(3)}x`,
    );
    console.log(
      `the pull's CPU by thread (medians): main ${
        median(result.pullMainThreadCpuSeconds).toFixed(2)
      } s (receive + sha256), writer worker ${
        median(result.pullWorkerCpuSeconds).toFixed(2)
      } s; the server's CPU per run: ${median(serverCpu.curl).toFixed(2)} s for curl, ${
        median(serverCpu.pull).toFixed(2)
      } s for pull; sha256 of ${size / MiB} MiB in memory alone: ${s(hashMs)}`,
    );
    console.log(
      `peak resident memory of the puller: ${(result.peakRssBytes / 1e6).toFixed(1)} MB (target < 100 MB: ${
        ok(result.peakRssBytes < 100e6)
      })`,
    );
    console.log(
      `kill -9 at half way, then resume: ${(refetch * 100).toFixed(2)} % sent twice (target <= 5 %: ${
        ok(refetch <= 0.05)
      }); file at dest after the kill: ${destAfterKill ? "yes (wrong)" : "no"}`,
    );
  } finally {
    if (server) {
      server.kill("SIGTERM");
      await server.status;
    }
    await Deno.remove(dir, { recursive: true });
  }
}
