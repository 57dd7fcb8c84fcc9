/**
 * llama-server's `/health`, asked over a plain TCP connection rather than `fetch`: `fetch` refuses ports on
 * the Fetch standard's blocked list (1, 25, 6000, 10080, …) and follows `HTTP_PROXY`, and neither may make a
 * running server look dead.
 *
 * @module
 */

/**
 * The HTTP status of `GET /health` at `url` (200 ready, 503 loading), or undefined when nothing answers.
 *
 * @example
 * ```ts ignore
 * if (await probeHealth("http://127.0.0.1:8081") === 200) console.log("ready");
 * ```
 */
export async function probeHealth(url: string, timeoutMs = 2000): Promise<number | undefined> {
  const u = new URL(url);
  const hostname = u.hostname.replace(/^\[(.*)\]$/, "$1");
  const port = Number(u.port || 80);
  let conn: Deno.TcpConn | undefined;
  const timer = setTimeout(() => {
    try {
      conn?.close();
    } catch { /* closed */ }
    conn = undefined;
  }, timeoutMs);
  try {
    conn = await Deno.connect({ hostname, port });
    const req =
      `GET /health HTTP/1.1\r\nHost: ${u.host}\r\nAccept: application/json\r\nConnection: close\r\n\r\n`;
    await conn.write(new TextEncoder().encode(req));
    const buf = new Uint8Array(1024);
    let text = "";
    while (!text.includes("\r\n")) {
      const n = await conn.read(buf);
      if (n === null) break;
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
    const m = text.match(/^HTTP\/1\.[01] (\d{3})/);
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  } finally {
    clearTimeout(timer);
    try {
      conn?.close();
    } catch { /* closed */ }
  }
}

/**
 * Whether something accepts a TCP connection at `host:port` within `timeoutMs`: the readiness of a server that
 * speaks no HTTP (llama.cpp's RPC worker).
 *
 * @example
 * ```ts ignore
 * if (await probeTcp("127.0.0.1", 50052)) console.log("the worker listens");
 * ```
 */
export async function probeTcp(host: string, port: number, timeoutMs = 2000): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const connecting = Deno.connect({ hostname: host, port });
  try {
    const conn = await Promise.race([
      connecting,
      new Promise<undefined>((r) => timer = setTimeout(() => r(undefined), timeoutMs)),
    ]);
    if (!conn) {
      connecting.then((c) => c.close()).catch(() => {});
      return false;
    }
    conn.close();
    return true;
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}
