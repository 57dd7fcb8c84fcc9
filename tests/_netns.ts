/**
 * Separate "hosts" on this machine for tests and benchmarks: network namespaces, each joined to this one by its
 * own veth pair on its own /30, for a process that runs as root with `ip`.
 *
 * @module
 */
/**
 * Whether this process may create network namespaces (root, and `ip` on the PATH). `LLAMA_MGR_TEST_LOOPBACK=1`
 * says no, to run the loopback fallback where namespaces would work.
 */
export async function canUseNetns(): Promise<boolean> {
  if (Deno.uid() !== 0 || Deno.env.get("LLAMA_MGR_TEST_LOOPBACK") === "1") return false;
  const r = await new Deno.Command("ip", { args: ["netns", "list"], stdout: "null", stderr: "null" }).output()
    .catch(() => undefined);
  return r?.success === true;
}

async function sh(args: string[]): Promise<void> {
  const r = await new Deno.Command(args[0], { args: args.slice(1), stdout: "piped", stderr: "piped" })
    .output();
  if (!r.success) throw new Error(`${args.join(" ")} failed: ${new TextDecoder().decode(r.stderr)}`);
}

/** A worker "host": a network namespace with the address a worker binds, reachable from here. */
export interface Host {
  /** Address the worker binds and the head connects to. */
  addr: string;
  /** Command prefix that runs a program inside it (empty on loopback). */
  exec: string[];
  /** This side's end of its veth pair, whose counters are the host's traffic (none on loopback). */
  link?: string;
}

/** Two namespaces, each joined to this one by its own veth pair on its own /30; `cleanup` deletes them. */
export async function makeHosts(tag: string): Promise<{ hosts: Host[]; cleanup: () => Promise<void> }> {
  const made: string[] = [];
  const cleanup = async () => {
    // Deleting a namespace deletes the veth end inside it, and with it the pair.
    for (const ns of made) await sh(["ip", "netns", "del", ns]).catch(() => {});
  };
  const hosts: Host[] = [];
  const octet = 16 + (Deno.pid % 200);
  try {
    for (const [i, side] of ["a", "b"].entries()) {
      const ns = `lmrpc-${tag}-${side}`;
      const outer = `lr${tag}${side}0`.slice(0, 15);
      const inner = `lr${tag}${side}1`.slice(0, 15);
      const net = `10.${213 + i}.${octet}`;
      await sh(["ip", "netns", "add", ns]);
      made.push(ns);
      await sh(["ip", "link", "add", outer, "type", "veth", "peer", "name", inner]);
      await sh(["ip", "link", "set", inner, "netns", ns]);
      await sh(["ip", "addr", "add", `${net}.1/30`, "dev", outer]);
      await sh(["ip", "link", "set", outer, "up"]);
      const inNs = ["ip", "netns", "exec", ns];
      await sh([...inNs, "ip", "addr", "add", `${net}.2/30`, "dev", inner]);
      await sh([...inNs, "ip", "link", "set", inner, "up"]);
      await sh([...inNs, "ip", "link", "set", "lo", "up"]);
      hosts.push({ addr: `${net}.2`, exec: inNs, link: outer });
    }
  } catch (err) {
    await cleanup();
    throw err;
  }
  return { hosts, cleanup };
}

/** Bytes this side sent to and received from a host over its veth pair (0 on loopback). */
export function linkBytes(host: Host): number {
  if (!host.link) return 0;
  const read = (k: string) => Number(Deno.readTextFileSync(`/sys/class/net/${host.link}/statistics/${k}`));
  return read("rx_bytes") + read("tx_bytes");
}
