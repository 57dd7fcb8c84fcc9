/**
 * Ports for llama-server: pick a free one, or check that a chosen one is free before spawning.
 *
 * @module
 */

/**
 * A port that is free on `host` right now (the OS picks it).
 *
 * @example
 * ```ts
 * const port = findFreePort("127.0.0.1");
 * ```
 */
export function findFreePort(host = "127.0.0.1"): number {
  const l = Deno.listen({ hostname: host, port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** True when something listens on `host:port` or the port cannot be bound there. */
export async function portInUse(host: string, port: number): Promise<boolean> {
  try {
    const conn = await Deno.connect({ hostname: host === "0.0.0.0" ? "127.0.0.1" : host, port });
    conn.close();
    return true;
  } catch { /* nobody answers: try to bind */ }
  try {
    const l = Deno.listen({ hostname: host, port });
    l.close();
    return false;
  } catch {
    return true;
  }
}
