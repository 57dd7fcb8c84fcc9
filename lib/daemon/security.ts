/**
 * Who may talk to the daemon, checked as Ollama checks it: the `Host` header (DNS rebinding) when listening on
 * loopback, the `Origin` header against the allowed origins (CORS, `OLLAMA_ORIGINS`), and an optional API key.
 *
 * @module
 */
import { hostname } from "node:os";
import { anthropicErrorBody } from "./anthropic/errors.ts";

/** Origins allowed by default (Ollama's list), before the user's own. */
export const DEFAULT_ORIGINS: readonly string[] = [
  ...["localhost", "127.0.0.1", "0.0.0.0"].flatMap((h) => [
    `http://${h}`,
    `https://${h}`,
    `http://${h}:*`,
    `https://${h}:*`,
  ]),
  "app://*",
  "file://*",
  "tauri://*",
  "vscode-webview://*",
  "vscode-file://*",
];

const EXTENSION_SCHEMES = [
  "chrome-extension://",
  "safari-extension://",
  "moz-extension://",
  "ms-browser-extension://",
];

/**
 * The allowed origins: the user's own (`OLLAMA_ORIGINS` split at commas, the config's list), then Ollama's
 * defaults.
 *
 * @example
 * ```ts
 * allowedOrigins(["https://myapp.example"]); // ["https://myapp.example", ...DEFAULT_ORIGINS]
 * ```
 */
export function allowedOrigins(extra: string[]): string[] {
  return [...extra.map((o) => o.trim()).filter(Boolean), ...DEFAULT_ORIGINS];
}

/**
 * True when `origin` matches one of the patterns (`*` alone allows all; `*` inside is a wildcard). Browser
 * extensions are always allowed, as Ollama allows them.
 *
 * @example
 * ```ts
 * originAllowed("http://localhost:3000", ["http://localhost:*"]); // true
 * originAllowed("https://evil.example", allowedOrigins([])); // false
 * ```
 */
export function originAllowed(origin: string, patterns: string[]): boolean {
  if (EXTENSION_SCHEMES.some((s) => origin.startsWith(s))) return true;
  for (const p of patterns) {
    if (p === "*") return true;
    const star = p.indexOf("*");
    if (star < 0) {
      if (origin === p) return true;
      continue;
    }
    const pre = p.slice(0, star);
    const post = p.slice(star + 1);
    if (origin.length >= pre.length + post.length && origin.startsWith(pre) && origin.endsWith(post)) {
      return true;
    }
  }
  return false;
}

function parseIPv4(s: string): number[] | undefined {
  const m = s.match(/^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/);
  if (!m) return undefined;
  const parts = m.slice(1).map(Number);
  return parts.every((n) => n <= 255) ? parts : undefined;
}

/** True for an IP literal that is loopback, private, unspecified or link-local (v4 or v6). */
export function isLocalIp(ip: string): boolean {
  const v4 = parseIPv4(ip);
  if (v4) {
    const [a, b] = v4;
    return a === 127 || a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168) ||
      (a === 0 && v4.every((n) => n === 0)) || (a === 169 && b === 254);
  }
  const v6 = ip.toLowerCase();
  if (!v6.includes(":") || !/^[0-9a-f:.]+$/.test(v6)) return false;
  if (v6 === "::1" || v6 === "::") return true;
  if (/^f[cd][0-9a-f]{2}:/.test(v6)) return true; // fc00::/7
  if (/^fe[89ab][0-9a-f]:/.test(v6)) return true; // fe80::/10
  const mapped = v6.match(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/);
  return mapped ? isLocalIp(mapped[1]) : false;
}

/** True when the address the daemon listens on is loopback (then Host is checked). */
export function isLoopbackAddress(addr: string): boolean {
  if (addr === "localhost") return true;
  const v4 = parseIPv4(addr);
  if (v4) return v4[0] === 127;
  return addr === "::1" || addr === "[::1]";
}

let interfaceAddrs: Set<string> | undefined;
function machineAddresses(): Set<string> {
  if (!interfaceAddrs) {
    interfaceAddrs = new Set();
    try {
      for (const i of Deno.networkInterfaces()) interfaceAddrs.add(i.address.toLowerCase());
    } catch { /* no permission: only the static rules apply */ }
  }
  return interfaceAddrs;
}

/**
 * Ollama's Host rule for a daemon listening on loopback: an IP that is loopback/private/unspecified or one of
 * the machine's own, `localhost`, the machine's hostname, or a name under `.localhost`, `.local`, `.internal`.
 *
 * @example
 * ```ts
 * hostAllowed("localhost:11434"); // true
 * hostAllowed("evil.example.com"); // false
 * ```
 */
export function hostAllowed(hostHeader: string): boolean {
  let host = hostHeader.trim().toLowerCase();
  if (host.startsWith("[")) host = host.slice(1, host.indexOf("]") > 0 ? host.indexOf("]") : undefined);
  else if (host.split(":").length === 2) host = host.split(":")[0];
  if (host === "" || host === "localhost") return true;
  if (isLocalIp(host) || machineAddresses().has(host)) return true;
  try {
    if (host === hostname().toLowerCase()) return true;
  } catch { /* ignore */ }
  return [".localhost", ".local", ".internal"].some((tld) => host.endsWith(tld));
}

/** Headers a browser may send (Ollama's list, with the OpenAI and Anthropic SDKs'). */
export const CORS_ALLOW_HEADERS = [
  "Authorization",
  "x-api-key",
  "anthropic-version",
  "anthropic-beta",
  "anthropic-dangerous-direct-browser-access",
  "Content-Type",
  "User-Agent",
  "Accept",
  "X-Requested-With",
  "OpenAI-Beta",
  "x-stainless-arch",
  "x-stainless-async",
  "x-stainless-custom-poll-interval",
  "x-stainless-helper-method",
  "x-stainless-lang",
  "x-stainless-os",
  "x-stainless-package-version",
  "x-stainless-poll-helper",
  "x-stainless-retry-count",
  "x-stainless-runtime",
  "x-stainless-runtime-version",
  "x-stainless-timeout",
].join(", ");

/**
 * Options for {@linkcode checkAccess}.
 *
 * @example
 * ```ts
 * const access: AccessOptions = { listenHost: "0.0.0.0", origins: allowedOrigins([]), apiKey: "s3cret" };
 * ```
 */
export interface AccessOptions {
  /** The address the daemon listens on. */
  listenHost: string;
  /** Allowed origin patterns. */
  origins: string[];
  /** Required key, if any (sent as `Authorization: Bearer <key>` or `x-api-key: <key>`). */
  apiKey?: string;
}

/**
 * Checks one request. Returns a response to send instead (403, 401 or a CORS preflight 204), or the headers to
 * add to the normal response.
 *
 * @example
 * ```ts
 * const req = new Request("http://127.0.0.1:11434/api/tags", { headers: { host: "rebind.example" } });
 * const r = checkAccess(req, { listenHost: "127.0.0.1", origins: allowedOrigins([]) });
 * if (r instanceof Response) console.log(r.status); // 403: a foreign Host on loopback
 * ```
 */
export function checkAccess(req: Request, options: AccessOptions): Response | Record<string, string> {
  const url = new URL(req.url);
  const hostHeader = req.headers.get("host") ?? url.host;
  if (isLoopbackAddress(options.listenHost) && !hostAllowed(hostHeader)) {
    return new Response(null, { status: 403 });
  }
  const extra: Record<string, string> = {};
  const origin = req.headers.get("origin");
  if (origin !== null) {
    const sameOrigin = origin === `http://${hostHeader}` || origin === `https://${hostHeader}`;
    if (!sameOrigin) {
      if (!originAllowed(origin, options.origins)) return new Response(null, { status: 403 });
      extra["access-control-allow-origin"] = origin;
      extra["vary"] = "Origin";
      if (req.method === "OPTIONS" && req.headers.has("access-control-request-method")) {
        return new Response(null, {
          status: 204,
          headers: {
            ...extra,
            "access-control-allow-methods": "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS",
            "access-control-allow-headers": CORS_ALLOW_HEADERS,
            "access-control-max-age": "43200",
          },
        });
      }
    }
  }
  const exempt = url.pathname === "/" && (req.method === "GET" || req.method === "HEAD");
  if (options.apiKey && !exempt) {
    // `Authorization: Bearer` as Ollama's and OpenAI's clients send it, `x-api-key` as Anthropic's do.
    const bearer = (req.headers.get("authorization") ?? "").match(/^Bearer\s+(.+)$/i)?.[1].trim();
    const given = [bearer, req.headers.get("x-api-key")?.trim()];
    if (!given.some((k) => k && timingSafeEqual(k, options.apiKey!))) {
      const message = "invalid or missing API key";
      const body = url.pathname.startsWith("/v1/messages")
        ? anthropicErrorBody(401, message)
        : url.pathname.startsWith("/v1/")
        ? JSON.stringify({
          error: { message, type: "invalid_request_error", param: null, code: "invalid_api_key" },
        })
        : JSON.stringify({
          error:
            "unauthorized: send the daemon's API key as `Authorization: Bearer <key>` or `x-api-key: <key>`",
        });
      return new Response(body, {
        status: 401,
        headers: { ...extra, "content-type": "application/json", "www-authenticate": "Bearer" },
      });
    }
  }
  return extra;
}

function timingSafeEqual(a: string, b: string): boolean {
  const ea = new TextEncoder().encode(a);
  const eb = new TextEncoder().encode(b);
  let diff = ea.length ^ eb.length;
  for (let i = 0; i < Math.max(ea.length, eb.length); i++) diff |= (ea[i] ?? 0) ^ (eb[i] ?? 0);
  return diff === 0;
}
