/**
 * An Ollama registry for tests, served on 127.0.0.1: manifests by tag (`MANIFEST_UNKNOWN` 404s), blobs
 * redirected (307) to a CDN-like path that serves ranges, with counters of what it served and a switch to
 * corrupt a blob's bytes. Options put the CDN on a host of its own (`localhost` on another port), serve blobs
 * straight from the registry, and put a gate (sign-in) before the registry's `/v2/` paths.
 *
 * @module
 */
import { sha256Hex } from "./_fixtures.ts";
import { MANIFEST_MEDIA_TYPE } from "../lib/models/pull/ollama.ts";

const te = new TextEncoder();

/** One layer of a manifest, with its bytes. */
export interface Layer {
  mediaType: string;
  bytes: Uint8Array<ArrayBuffer>;
}

/** One request as a server of the registry saw it. */
export interface Seen {
  /** `registry` or `cdn`. */
  server: "registry" | "cdn";
  method: string;
  /** Path and query. */
  path: string;
  authorization?: string;
}

/** Options for {@linkcode Registry}. */
export interface RegistryOptions {
  /**
   * Answers a request before the registry does (sign-in: a 401, a token service); `undefined` lets it through.
   * Called for requests to the registry's host only.
   */
  gate?: (req: Request, url: URL) => Response | undefined | Promise<Response | undefined>;
  /** `same` (default): blobs redirect to `/cdn/` on the registry's host; `other`: to `localhost` on a port
   * of its own; `none`: blobs are served at their registry path, with ranges. */
  cdn?: "same" | "other" | "none";
}

/**
 * A registry as Ollama's answers: `/v2/<ns>/<model>/manifests/<tag>`, and `/v2/<ns>/<model>/blobs/<digest>`
 * redirected (307) to `/cdn/sha256-<hex>`, which serves ranges. It counts what it served.
 */
export class Registry {
  manifests = new Map<string, Uint8Array<ArrayBuffer>>();
  blobs = new Map<string, Uint8Array<ArrayBuffer>>();
  /** Bytes of each blob (by hex) sent from the CDN path. */
  served = new Map<string, number>();
  /** Requests for each blob (by hex) that covered its first byte: one per whole download. */
  fromStart = new Map<string, number>();
  /** Serve this many more responses of a blob (by hex) with its first byte flipped. */
  corrupt = new Map<string, number>();
  /** Every request, as `METHOD path [range]`. */
  log: string[] = [];
  /** Every request with the server it reached and its Authorization header. */
  seen: Seen[] = [];
  #server: Deno.HttpServer<Deno.NetAddr>;
  #cdnServer?: Deno.HttpServer<Deno.NetAddr>;
  #options: RegistryOptions;

  constructor(options: RegistryOptions = {}) {
    this.#options = options;
    this.#server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      (req) => this.#front(req, "registry"),
    );
    if (options.cdn === "other") {
      this.#cdnServer = Deno.serve(
        { hostname: "127.0.0.1", port: 0, onListen: () => {} },
        (req) => this.#front(req, "cdn"),
      );
    }
  }

  get host(): string {
    return `127.0.0.1:${this.#server.addr.port}`;
  }

  /** The CDN's origin when it has a host of its own (`http://localhost:<port>`). */
  get cdnOrigin(): string | undefined {
    return this.#cdnServer && `http://localhost:${this.#cdnServer.addr.port}`;
  }

  async #front(req: Request, server: Seen["server"]): Promise<Response> {
    const url = new URL(req.url);
    this.seen.push({
      server,
      method: req.method,
      path: url.pathname + url.search,
      authorization: req.headers.get("authorization") ?? undefined,
    });
    if (server === "registry" && this.#options.gate) {
      const r = await this.#options.gate(req, url);
      if (r) return r;
    }
    if (server === "cdn" && !url.pathname.startsWith("/cdn/")) {
      return new Response("not found", { status: 404 });
    }
    return this.#answer(req);
  }

  /** Publishes `ns/model:tag` with these layers and a config blob; returns the layers' digests. */
  async publish(repo: string, layers: Layer[]): Promise<{ manifest: Uint8Array; digests: string[] }> {
    const entry = async (l: Layer) => {
      const hex = await sha256Hex(l.bytes);
      this.blobs.set(hex, l.bytes);
      return { mediaType: l.mediaType, digest: `sha256:${hex}`, size: l.bytes.length };
    };
    const config = await entry({
      mediaType: "application/vnd.docker.container.image.v1+json",
      bytes: te.encode(JSON.stringify({ model_format: "gguf", model_family: "llama", file_type: "Q4_1" })),
    });
    const entries = [];
    for (const l of layers) entries.push(await entry(l));
    const manifest = te.encode(JSON.stringify({
      schemaVersion: 2,
      mediaType: MANIFEST_MEDIA_TYPE,
      config,
      layers: entries,
    }));
    this.manifests.set(repo, manifest);
    return { manifest, digests: [...entries.map((e) => e.digest), config.digest] };
  }

  #answer(req: Request): Response {
    const url = new URL(req.url);
    const range = req.headers.get("range");
    this.log.push(`${req.method} ${url.pathname}${range ? ` ${range}` : ""}`);
    const manifest = url.pathname.match(/^\/v2\/([^/]+\/[^/]+)\/manifests\/([^/]+)$/);
    if (manifest) {
      const body = this.manifests.get(`${manifest[1]}:${manifest[2]}`);
      if (!body) {
        return Response.json({
          errors: [{ code: "MANIFEST_UNKNOWN", message: "manifest unknown", detail: { Tag: manifest[2] } }],
        }, { status: 404 });
      }
      return new Response(body, { headers: { "content-type": MANIFEST_MEDIA_TYPE } });
    }
    const blob = url.pathname.match(/^\/v2\/[^/]+\/[^/]+\/blobs\/sha256:([0-9a-f]{64})$/);
    if (blob) {
      if (!this.blobs.has(blob[1])) {
        return Response.json({ errors: [{ code: "BLOB_UNKNOWN", message: "blob unknown" }] }, {
          status: 404,
        });
      }
      // The real registry sends blobs to its CDN with a signed URL.
      if (this.#options.cdn !== "none") {
        const location = `${this.cdnOrigin ?? ""}/cdn/sha256-${blob[1]}?sig=abc`;
        return new Response(null, { status: 307, headers: { location } });
      }
    }
    const cdn = url.pathname.match(/^\/cdn\/sha256-([0-9a-f]{64})$/) ?? blob;
    const bytes = cdn && this.blobs.get(cdn[1]);
    if (!cdn || !bytes) return new Response("not found", { status: 404 });
    const hex = cdn[1];
    const m = range?.match(/^bytes=(\d+)-(\d*)$/);
    const from = m ? Number(m[1]) : 0;
    const to = m && m[2] ? Math.min(Number(m[2]), bytes.length - 1) : bytes.length - 1;
    let body = bytes.slice(from, to + 1);
    // A one-byte request at the start is a download engine's probe for the size and validator, not a download.
    const probe = m !== null && m !== undefined && from === 0 && to === 0;
    if (from === 0 && req.method === "GET" && !probe) {
      this.fromStart.set(hex, (this.fromStart.get(hex) ?? 0) + 1);
      const bad = this.corrupt.get(hex) ?? 0;
      if (bad > 0) {
        this.corrupt.set(hex, bad - 1);
        body[0] ^= 0xff;
      }
    }
    if (req.method === "HEAD") body = new Uint8Array(0);
    this.served.set(hex, (this.served.get(hex) ?? 0) + body.length);
    const headers: Record<string, string> = {
      "accept-ranges": "bytes",
      "content-length": String(m ? to - from + 1 : bytes.length),
    };
    if (!m) return new Response(req.method === "HEAD" ? null : body, { headers });
    headers["content-range"] = `bytes ${from}-${to}/${bytes.length}`;
    return new Response(req.method === "HEAD" ? null : body, { status: 206, headers });
  }

  async close(): Promise<void> {
    await this.#server.shutdown();
    await this.#cdnServer?.shutdown();
  }
}
