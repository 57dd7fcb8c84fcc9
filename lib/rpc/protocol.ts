/**
 * A small client of llama.cpp's RPC protocol (ggml-rpc), enough to ask a worker what it has: the HELLO
 * handshake (protocol version), DEVICE_COUNT and GET_DEVICE_MEMORY. A request is `cmd (1 byte) | size (u64
 * LE) | payload`, an answer `size (u64 LE) | payload`.
 *
 * A worker serves one client at a time: while a llama-server is connected, a query waits in its accept queue
 * and times out as `busy`.
 *
 * @module
 */

const CMD_GET_DEVICE_MEMORY = 11;
const CMD_HELLO = 14;
const CMD_DEVICE_COUNT = 15;
/** HELLO's request is the client's transport capabilities: 24 bytes, all zero for plain TCP. */
const HELLO_REQUEST_BYTES = 24;

/**
 * A worker's devices and memory, from its own report.
 *
 * @example
 * ```ts ignore
 * const info: WorkerInfo = await queryWorker("127.0.0.1:50052");
 * console.log(info.protocol, info.devices.map((d) => d.freeBytes));
 * ```
 */
export interface WorkerInfo {
  /** `host:port`. */
  endpoint: string;
  /** The RPC protocol version it speaks, e.g. `7.0.0`. */
  protocol: string;
  /** Its devices (index order, as llama-server numbers them `RPC0[host:port]`, `RPC1[...]`). */
  devices: { index: number; freeBytes: number; totalBytes: number }[];
  /** Free bytes over all its devices. */
  freeBytes: number;
  /** Total bytes over all its devices. */
  totalBytes: number;
}

/**
 * Why a worker could not be asked: nothing listens (`unreachable`), it accepted but did not answer in time
 * (`busy`: serving another llama-server), or it speaks another protocol (`protocol`).
 *
 * @example
 * ```ts ignore
 * try {
 *   await queryWorker("10.0.0.2:50052");
 * } catch (e) {
 *   if (e instanceof WorkerQueryError && e.why === "unreachable") console.log(`${e.endpoint} is down`);
 * }
 * ```
 */
export class WorkerQueryError extends Error {
  /** The worker's `host:port`. */
  readonly endpoint: string;
  /** What went wrong. */
  readonly why: "unreachable" | "busy" | "protocol";
  /** Makes one. */
  constructor(endpoint: string, why: WorkerQueryError["why"], message: string) {
    super(message);
    this.name = "WorkerQueryError";
    this.endpoint = endpoint;
    this.why = why;
  }
}

/**
 * Splits `host:port` (`[v6]:port` for IPv6) into its parts; throws on anything else.
 *
 * @example
 * ```ts
 * parseEndpoint("gpu-box-1:50052"); // { host: "gpu-box-1", port: 50052 }
 * ```
 */
export function parseEndpoint(endpoint: string): { host: string; port: number } {
  const m = endpoint.match(/^(?:\[([0-9A-Fa-f:.]+)\]|([^:\s\[\]]+)):(\d{1,5})$/);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port < 1 || port > 65535) {
    throw new Error(`'${endpoint}' is not host:port (e.g. 192.168.1.20:50052)`);
  }
  return { host: m[1] ?? m[2], port };
}

function frame(cmd: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(9 + payload.length);
  out[0] = cmd;
  new DataView(out.buffer).setBigUint64(1, BigInt(payload.length), true);
  out.set(payload, 9);
  return out;
}

/**
 * Asks a worker for its protocol version, devices and their free and total memory. Throws a
 * {@linkcode WorkerQueryError} that says why it could not.
 *
 * A worker serves one client at a time, and one that answers a client which already hung up dies of SIGPIPE
 * (its sends do not ask for MSG_NOSIGNAL). So the question is only asked once the worker has shown it is free:
 * a first connection sends one byte that is not a command, which a free worker answers by closing the
 * connection without writing anything; a busy worker leaves it queued, and when it gets to it later it closes
 * it just as quietly.
 *
 * @example
 * ```ts ignore
 * const w = await queryWorker("127.0.0.1:50052", { timeoutMs: 3000 });
 * console.log(`${w.endpoint}: ${w.devices.length} device(s), ${w.freeBytes} bytes free`);
 * ```
 */
export async function queryWorker(
  endpoint: string,
  options: { timeoutMs?: number } = {},
): Promise<WorkerInfo> {
  const { host, port } = parseEndpoint(endpoint);
  const timeoutMs = options.timeoutMs ?? 3000;
  const conns: Deno.TcpConn[] = [];
  let timedOut = false;
  let stage: "connect" | "free" | "ask" = "connect";
  const ac = new AbortController();
  // One deadline for the whole exchange: it aborts a connect that hangs and closes a connection nobody answers.
  const timer = setTimeout(() => {
    timedOut = true;
    ac.abort(new Error(`no connection in ${timeoutMs} ms`));
    for (const c of conns) {
      try {
        c.close();
      } catch { /* closed */ }
    }
  }, timeoutMs);
  const connect = async () => {
    const c = await Deno.connect({ hostname: host, port, signal: ac.signal });
    conns.push(c);
    if (timedOut) c.close();
    return c;
  };
  const readN = async (conn: Deno.TcpConn, n: number): Promise<Uint8Array> => {
    const out = new Uint8Array(n);
    for (let off = 0; off < n;) {
      const r = await conn.read(out.subarray(off));
      if (r === null) throw new Error("connection closed");
      off += r;
    }
    return out;
  };
  try {
    const probe = await connect();
    stage = "free";
    await probe.write(new Uint8Array([0xff]));
    const got = await probe.read(new Uint8Array(1)).catch((err) => {
      // A reset is the worker closing on us too.
      if (err instanceof Deno.errors.ConnectionReset) return null;
      throw err;
    });
    if (got !== null) throw new Error("it answered a byte that is not a command");
    probe.close();
    stage = "ask";
    const conn = await connect();
    const call = async (cmd: number, payload: Uint8Array, expect: number): Promise<DataView> => {
      await conn.write(frame(cmd, payload));
      const size = Number(new DataView((await readN(conn, 8)).buffer).getBigUint64(0, true));
      if (size !== expect) throw new Error(`unexpected answer size ${size} to command ${cmd}`);
      return new DataView((await readN(conn, size)).buffer);
    };
    // HELLO answers major, minor, patch, padding and the server's 24 capability bytes.
    const hello = await call(CMD_HELLO, new Uint8Array(HELLO_REQUEST_BYTES), 4 + HELLO_REQUEST_BYTES);
    const protocol = `${hello.getUint8(0)}.${hello.getUint8(1)}.${hello.getUint8(2)}`;
    const count = (await call(CMD_DEVICE_COUNT, new Uint8Array(0), 4)).getUint32(0, true);
    const devices: WorkerInfo["devices"] = [];
    for (let index = 0; index < count; index++) {
      const req = new Uint8Array(4);
      new DataView(req.buffer).setUint32(0, index, true);
      const mem = await call(CMD_GET_DEVICE_MEMORY, req, 16);
      devices.push({
        index,
        freeBytes: Number(mem.getBigUint64(0, true)),
        totalBytes: Number(mem.getBigUint64(8, true)),
      });
    }
    return {
      endpoint,
      protocol,
      devices,
      freeBytes: devices.reduce((n, d) => n + d.freeBytes, 0),
      totalBytes: devices.reduce((n, d) => n + d.totalBytes, 0),
    };
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    if (stage === "connect") {
      // A worker's listen queue is short: a busy one with connections waiting drops new ones like a firewall.
      const hint = timedOut
        ? `no connection in ${timeoutMs} ms: down, firewalled, or busy with queued clients`
        : why;
      throw new WorkerQueryError(endpoint, "unreachable", `RPC worker ${endpoint} is unreachable (${hint})`);
    }
    if (timedOut) {
      throw new WorkerQueryError(
        endpoint,
        "busy",
        `RPC worker ${endpoint} accepted but did not answer in ${timeoutMs} ms (it serves one llama-server at a time)`,
      );
    }
    throw new WorkerQueryError(
      endpoint,
      "protocol",
      `RPC worker ${endpoint} did not answer as llama.cpp's RPC server of this protocol version does ` +
        `(${why}); are head and worker the same llama.cpp build?`,
    );
  } finally {
    clearTimeout(timer);
    for (const c of conns) {
      try {
        c.close();
      } catch { /* closed */ }
    }
  }
}
