/**
 * Signing in to a model registry as `ollama pull` does (`server/auth.go`, `auth/auth.go`,
 * `server/images.go` makeRequestWithRetry). A request is sent without credentials first; a registry that
 * answers 401 with `WWW-Authenticate: Bearer realm="...",service="...",scope="..."` is asked for a token at
 * its realm (with `service`, each `scope`, `ts` and a `nonce` added to the realm's query), and the request is
 * sent once more with `Authorization: Bearer <token>`. The token request is signed with the user's ed25519
 * key, `~/.ollama/id_ed25519` (the key `ollama signin` registers at ollama.com): its header is
 * `<public key, base64>:<signature, base64>`, the signature over `GET,<token URL>,<base64 of the hex sha256 of
 * an empty body>`.
 *
 * Where the key goes: only to a realm on the registry's own host, as Ollama (which refuses any other realm).
 * A realm on another host, as plain Docker registries use (`auth.docker.io`), is asked for a token with no
 * signature: anonymous tokens for public repositories work, and the key never leaves for another host. The
 * token goes only to the registry's own origin (scheme, host and port): a redirect of a blob to a CDN gets
 * no Authorization, as Go's client drops it for another host.
 *
 * @module
 */
import { createHash, createPrivateKey, type KeyObject, randomBytes, sign } from "node:crypto";
import { hostname } from "node:os";
import { join } from "node:path";
import { DownloadError } from "./download.ts";

/**
 * The key Ollama signs registry requests with: `$HOME/.ollama/id_ed25519` (Ollama has no setting for another
 * path; `USERPROFILE` on Windows).
 *
 * @example
 * ```ts
 * ollamaKeyPath({ HOME: "/home/me" }); // "/home/me/.ollama/id_ed25519"
 * ```
 */
export function ollamaKeyPath(env: Record<string, string | undefined>): string {
  const home = env.HOME || env.USERPROFILE || "~";
  return join(home, ".ollama", "id_ed25519");
}

/** An ed25519 key read from an OpenSSH (or PKCS #8) private key file. */
export interface SigningKey {
  /** The public key as in `id_ed25519.pub`: `ssh-ed25519 AAAA...`. */
  publicKey: string;
  /** Signs bytes (raw ed25519, 64 bytes). */
  sign(data: Uint8Array): Uint8Array;
}

/**
 * Why a key file cannot be used.
 *
 * @example
 * ```ts ignore
 * try { await readSigningKey(path); } catch (e) { if (e instanceof KeyError && e.kind === "missing") console.log(e.message); }
 * ```
 */
export class KeyError extends Error {
  /** `missing`: no file; `unusable`: unreadable, not ed25519, or protected by a passphrase. */
  kind: "missing" | "unusable";
  /** Builds the error. */
  constructor(kind: "missing" | "unusable", message: string) {
    super(message);
    this.name = "KeyError";
    this.kind = kind;
  }
}

const te = new TextEncoder();
const b64 = (b: Uint8Array) => btoa(String.fromCharCode(...b));

/** Reads SSH wire format: uint32 lengths before strings. */
function sshReader(buf: Uint8Array) {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let pos = 0;
  const u32 = () => {
    if (pos + 4 > buf.length) throw new Error("truncated");
    const v = view.getUint32(pos);
    pos += 4;
    return v;
  };
  const bytes = () => {
    const n = u32();
    if (pos + n > buf.length) throw new Error("truncated");
    const out = buf.subarray(pos, pos + n);
    pos += n;
    return out;
  };
  return { u32, bytes, text: () => new TextDecoder().decode(bytes()) };
}

function sshString(b: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + b.length);
  new DataView(out.buffer).setUint32(0, b.length);
  out.set(b, 4);
  return out;
}

function fromEd25519(key: KeyObject): SigningKey {
  if (key.asymmetricKeyType !== "ed25519") {
    throw new KeyError("unusable", `it is a ${key.asymmetricKeyType} key, not ed25519`);
  }
  const x = (key.export({ format: "jwk" }) as { x?: string }).x ?? "";
  const raw = Uint8Array.from(atob(x.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
  const blob = new Uint8Array([...sshString(te.encode("ssh-ed25519")), ...sshString(raw)]);
  return {
    publicKey: `ssh-ed25519 ${b64(blob)}`,
    sign: (data) => new Uint8Array(sign(null, data, key)),
  };
}

/**
 * Parses a private key file as Ollama's `ssh.ParsePrivateKey` does for its keys: OpenSSH's format
 * (`-----BEGIN OPENSSH PRIVATE KEY-----`, what `ollama` and `ssh-keygen -t ed25519` write) or PKCS #8 PEM.
 * Only unencrypted ed25519 keys; anything else is a {@linkcode KeyError} saying why.
 *
 * @example
 * ```ts ignore
 * const key = parseSigningKey(await Deno.readTextFile(ollamaKeyPath(Deno.env.toObject())));
 * console.log(key.publicKey);
 * ```
 */
export function parseSigningKey(pem: string): SigningKey {
  const m = pem.match(/-----BEGIN OPENSSH PRIVATE KEY-----([\s\S]*?)-----END OPENSSH PRIVATE KEY-----/);
  if (!m) {
    let key: KeyObject;
    try {
      key = createPrivateKey(pem);
    } catch {
      throw new KeyError("unusable", "it is not a private key (OpenSSH or PEM)");
    }
    return fromEd25519(key);
  }
  let buf: Uint8Array;
  try {
    buf = Uint8Array.from(atob(m[1].replace(/\s+/g, "")), (c) => c.charCodeAt(0));
  } catch {
    throw new KeyError("unusable", "its OpenSSH key block is not base64");
  }
  const magic = te.encode("openssh-key-v1\0");
  if (buf.length < magic.length || magic.some((b, i) => buf[i] !== b)) {
    throw new KeyError("unusable", "it is not an OpenSSH v1 key");
  }
  try {
    const r = sshReader(buf.subarray(magic.length));
    const cipher = r.text();
    r.text(); // kdf name
    r.bytes(); // kdf options
    if (cipher !== "none") {
      throw new KeyError(
        "unusable",
        `it is protected by a passphrase (${cipher}); Ollama's keys have none (remove it with ssh-keygen -p)`,
      );
    }
    if (r.u32() !== 1) throw new KeyError("unusable", "it holds more than one key");
    r.bytes(); // public key
    const priv = sshReader(r.bytes());
    if (priv.u32() !== priv.u32()) throw new KeyError("unusable", "its check bytes differ (damaged)");
    const type = priv.text();
    if (type !== "ssh-ed25519") throw new KeyError("unusable", `it is a ${type} key, not ssh-ed25519`);
    const pub = priv.bytes();
    const secret = priv.bytes();
    if (pub.length !== 32 || secret.length !== 64) {
      throw new KeyError("unusable", "its ed25519 key is damaged");
    }
    // PKCS #8 for an ed25519 seed: a fixed prefix and the 32 bytes.
    const der = new Uint8Array([
      ...[0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20],
      ...secret.subarray(0, 32),
    ]);
    return fromEd25519(createPrivateKey({ key: der as unknown as string, format: "der", type: "pkcs8" }));
  } catch (err) {
    if (err instanceof KeyError) throw err;
    throw new KeyError("unusable", "its OpenSSH key data is damaged");
  }
}

/**
 * Reads the key at `path`; a missing or unusable file is a {@linkcode KeyError}.
 *
 * @example
 * ```ts ignore
 * const key = await readSigningKey(ollamaKeyPath(Deno.env.toObject()));
 * ```
 */
export async function readSigningKey(path: string): Promise<SigningKey> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) throw new KeyError("missing", `there is no key at ${path}`);
    throw new KeyError("unusable", `cannot read ${path}: ${(err as Error).message}`);
  }
  try {
    return parseSigningKey(text);
  } catch (err) {
    throw new KeyError("unusable", `the key at ${path} cannot be used: ${(err as Error).message}`);
  }
}

/** A registry's `WWW-Authenticate: Bearer` challenge. */
export interface Challenge {
  /** `Bearer`, `Basic`... */
  scheme: string;
  /** The token service's URL. */
  realm: string;
  /** `service=`. */
  service: string;
  /** `scope=` (space-separated scopes). */
  scope: string;
}

/**
 * Parses `WWW-Authenticate` (`Bearer realm="...",service="...",scope="..."`); quoted or bare values.
 *
 * @example
 * ```ts
 * parseChallenge('Bearer realm="https://r.example/token",service="r",scope="repository:a/b:pull"').realm;
 * // "https://r.example/token"
 * ```
 */
export function parseChallenge(header: string): Challenge {
  const scheme = header.trim().match(/^([A-Za-z][\w-]*)/)?.[1] ?? "";
  const params: Record<string, string> = {};
  const re = /([A-Za-z][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))/g;
  for (const p of header.slice(scheme.length).matchAll(re)) {
    params[p[1].toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, "$1") : p[3];
  }
  return { scheme, realm: params.realm ?? "", service: params.service ?? "", scope: params.scope ?? "" };
}

/** Go's `url.QueryEscape`: everything but letters, digits and `-_.~` escaped, a space as `+`. */
function goQueryEscape(s: string): string {
  let out = "";
  for (const b of te.encode(s)) {
    const c = String.fromCharCode(b);
    if (/[A-Za-z0-9\-_.~]/.test(c)) out += c;
    else if (c === " ") out += "+";
    else out += "%" + b.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}

/**
 * The token URL Ollama asks (`registryChallenge.URL`): the realm with `service`, each scope, `ts` (Unix
 * seconds) and a random `nonce` added, the query written as Go's `url.Values.Encode` writes it (keys sorted),
 * since the signature covers the URL as text.
 *
 * @example
 * ```ts
 * tokenUrl({ scheme: "Bearer", realm: "https://r.example/token", service: "r", scope: "repository:a/b:pull" });
 * ```
 */
export function tokenUrl(c: Challenge, now = Date.now()): string {
  const realm = new URL(c.realm);
  const values = new Map<string, string[]>();
  const add = (k: string, v: string) => values.set(k, [...(values.get(k) ?? []), v]);
  for (const [k, v] of realm.searchParams) add(k, v);
  add("service", c.service);
  for (const s of c.scope.split(" ")) add("scope", s);
  add("ts", String(Math.floor(now / 1000)));
  add(
    "nonce",
    btoa(String.fromCharCode(...randomBytes(16))).replace(/\+/g, "-").replace(/\//g, "_")
      .replace(/=+$/, ""),
  );
  const query = [...values.keys()].sort().flatMap((k) =>
    values.get(k)!.map((v) => `${goQueryEscape(k)}=${goQueryEscape(v)}`)
  ).join("&");
  // The realm as the registry wrote it (Go re-serialises a parsed URL to the same text), then the new query.
  return `${c.realm.split("#")[0].split("?")[0]}?${query}`;
}

/** The sha256 of an empty body, as hex, then base64: the last part of what Ollama signs for a GET. */
const EMPTY_BODY = btoa(createHash("sha256").update(new Uint8Array()).digest("hex"));

/**
 * The Authorization header value Ollama sends to a token realm: `<public key>:<signature>` (both base64; the
 * public key in SSH wire format, as in the `.pub` file), the signature over `GET,<url>,<empty body hash>`.
 *
 * @example
 * ```ts ignore
 * const header = signTokenRequest(key, tokenUrl(challenge));
 * ```
 */
export function signTokenRequest(key: SigningKey, url: string, method = "GET"): string {
  const sig = key.sign(te.encode(`${method},${url},${EMPTY_BODY}`));
  return `${key.publicKey.split(" ")[1]}:${b64(sig)}`;
}

/**
 * The link that adds this key to an ollama.com account (what `ollama signin` opens):
 * `https://ollama.com/connect?name=<host name>&key=<public key, base64url>`.
 *
 * @example
 * ```ts ignore
 * console.log(connectUrl(await readSigningKey(path)));
 * ```
 */
export function connectUrl(key: SigningKey): string {
  const enc = btoa(key.publicKey).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  return `https://ollama.com/connect?name=${encodeURIComponent(hostname())}&key=${enc}`;
}

/**
 * A registry refused access (401 or 403, after signing in where it asked for it): what it said and what to
 * do. A {@linkcode DownloadError} with the status, so the download engine does not retry it.
 *
 * @example
 * ```ts ignore
 * try { await pullOllama("me/private", { storeDir }); } catch (e) { if (e instanceof RegistryAuthError) console.log(e.hint); }
 * ```
 */
export class RegistryAuthError extends DownloadError {
  /** Builds the error. */
  constructor(message: string, options: { status: number; hint: string; url?: string }) {
    super(message, options);
    this.name = "RegistryAuthError";
  }
}

/** Options for {@linkcode registryFetch}. */
export interface RegistryFetchOptions {
  /** The registry's origin (`https://registry.ollama.ai`): the only one that gets the token. */
  origin: string;
  /** The model's display name, for messages. */
  name: string;
  /** The signing key's path (default {@linkcode ollamaKeyPath} of the process environment). */
  keyPath?: string;
  /** The fetch underneath. */
  fetch?: typeof fetch;
  /** Cancels token requests. */
  signal?: AbortSignal;
}

const REDIRECT = [301, 302, 303, 307, 308];

/** The registry's own words for an error (`{"errors":[{"code","message"}]}`), else the body's text. */
async function wordsOf(res: Response): Promise<string> {
  const text = (await res.text().catch(() => "")).slice(0, 500);
  try {
    const e = JSON.parse(text)?.errors?.[0];
    if (e && (e.code || e.message)) return String(e.message ?? e.code);
  } catch { /* not JSON */ }
  return text.trim() || res.statusText || `HTTP ${res.status}`;
}

/**
 * A fetch for one pull from one registry that signs in when the registry asks (see the module doc): a 401
 * with a Bearer challenge gets a token from the realm and the request is sent again; the token then goes with
 * every later request to the registry's origin, and with none to any other. Redirects are followed here
 * (unless the caller asks for `redirect: "manual"` and follows them itself), so that the token never reaches
 * another host. A 401 that signing in did not cure, a 403, or a token service that refuses is thrown as a
 * {@linkcode RegistryAuthError} that says what to do.
 *
 * @example
 * ```ts ignore
 * const f = registryFetch({ origin: "https://registry.ollama.ai", name: "me/private:latest" });
 * const res = await f("https://registry.ollama.ai/v2/me/private/manifests/latest");
 * ```
 */
export function registryFetch(options: RegistryFetchOptions): typeof fetch {
  const base = options.fetch ?? globalThis.fetch;
  const origin = new URL(options.origin).origin;
  const host = new URL(options.origin).host;
  const keyPath = options.keyPath ?? ollamaKeyPath(Deno.env.toObject());
  let token: string | undefined;
  let pending: Promise<void> | undefined;
  /** What was used for the last token request: the key (or why not), or nothing for another host's realm. */
  let signedWith: { key?: SigningKey; keyError?: KeyError; crossHost?: string } | undefined;

  const hint = (): string => {
    const ollama = /(^|\.)ollama\.(ai|com)$/i.test(new URL(origin).hostname);
    if (signedWith?.crossHost) {
      return `the registry's token service (${signedWith.crossHost}) gives no token without credentials, and ` +
        "llama-mgr signs only to a token service on the registry's own host (as Ollama does): pull it with a " +
        "client that has credentials for this registry";
    }
    const err = signedWith?.keyError;
    if (err?.kind === "missing") {
      return `${err.message}: run \`ollama signin\` (it makes that key and adds it to your ollama.com ` +
        "account), or copy your Ollama key there";
    }
    if (err) return `${err.message}; run \`ollama signin\` for a new key, or fix the file`;
    if (signedWith?.key) {
      const pub = `${keyPath}.pub`;
      return ollama
        ? `the key ${keyPath} is not one your ollama.com account knows, or the account cannot see ` +
          `'${options.name}': add ${pub} at https://ollama.com/settings/keys, open ${
            connectUrl(signedWith.key)
          } to connect it, or run \`ollama signin\``
        : `this registry did not accept the key ${keyPath}: give its operator your public key (${pub})`;
    }
    return ollama
      ? `'${options.name}' may be private: run \`ollama signin\` (or add ${keyPath}.pub at ` +
        "https://ollama.com/settings/keys), and check the name"
      : "the registry refused access: it may need credentials";
  };

  const refuse = (status: number, what: string, url: string) =>
    new RegistryAuthError(what, { status, hint: hint(), url });

  const fetchToken = async (challenge: string, url: URL): Promise<void> => {
    const c = parseChallenge(challenge);
    if (c.scheme.toLowerCase() !== "bearer" || !c.realm) {
      throw new RegistryAuthError(
        `registry ${host} asks for ${c.scheme || "unknown"} authentication for '${options.name}', which ` +
          "llama-mgr does not do (only Bearer tokens, as Ollama)",
        {
          status: 401,
          hint: "pull it with a client that has credentials for this registry",
          url: String(url),
        },
      );
    }
    let realm: URL;
    try {
      realm = new URL(c.realm);
    } catch {
      throw refuse(401, `registry ${host} names a token service that is not a URL: ${c.realm}`, String(url));
    }
    const target = tokenUrl(c);
    const headers: Record<string, string> = {};
    if (realm.host === host) {
      signedWith = {};
      try {
        signedWith.key = await readSigningKey(keyPath);
        headers.Authorization = signTokenRequest(signedWith.key, target);
      } catch (err) {
        if (!(err instanceof KeyError)) throw err;
        // No key: the token service may still give an anonymous token (public repositories).
        signedWith.keyError = err;
      }
    } else signedWith = { crossHost: realm.host };
    let res: Response;
    try {
      res = await base(target, { headers, redirect: "manual", signal: options.signal });
    } catch (err) {
      if (options.signal?.aborted) throw err;
      throw new DownloadError(`cannot reach the token service of registry ${host} (${realm.host}): ${err}`, {
        hint: "check the connection and run the command again",
      });
    }
    if (res.status >= 400 || REDIRECT.includes(res.status)) {
      const said = await wordsOf(res);
      throw refuse(
        res.status >= 400 ? res.status : 401,
        `registry ${host} gave no token for '${options.name}' (its token service answered ${res.status}: ${said})`,
        String(url),
      );
    }
    const body = await res.json().catch(() => ({})) as { token?: unknown; access_token?: unknown };
    const t = body.token || body.access_token;
    if (typeof t !== "string" || !t) {
      throw refuse(401, `the token service of registry ${host} answered without a token`, String(url));
    }
    token = t;
  };

  /** One request (no redirect followed), signed in when the registry asks. */
  const one = async (url: URL, init: RequestInit): Promise<Response> => {
    if (url.origin !== origin) {
      const headers = new Headers(init.headers);
      headers.delete("authorization");
      return await base(url, { ...init, headers });
    }
    for (let attempt = 0;; attempt++) {
      const used = token;
      const headers = new Headers(init.headers);
      if (used) headers.set("authorization", `Bearer ${used}`);
      const res = await base(url, { ...init, headers });
      const challenge = res.headers.get("www-authenticate") ?? "";
      if (res.status === 401 && attempt === 0 && challenge) {
        await res.body?.cancel().catch(() => {});
        // Parallel parts that meet an expired token share one new one.
        if (token === used) {
          pending ??= fetchToken(challenge, url).finally(() => pending = undefined);
          await pending;
        }
        continue;
      }
      if (res.status === 401 || res.status === 403) {
        const said = await wordsOf(res);
        throw refuse(
          res.status,
          `registry ${host} refused access to '${options.name}': ${said}`,
          String(url),
        );
      }
      return res;
    }
  };

  return async (input: string | URL | Request, init: RequestInit = {}): Promise<Response> => {
    let url = new URL(input instanceof Request ? input.url : String(input));
    if (init.redirect === "manual") return await one(url, init);
    let next: RequestInit = { ...init, redirect: "manual" };
    for (let hop = 0; hop <= 10; hop++) {
      const res = await one(url, next);
      const location = res.headers.get("location");
      if (!REDIRECT.includes(res.status) || !location) return res;
      await res.body?.cancel().catch(() => {});
      url = new URL(location, url);
      if (res.status === 303) next = { ...next, method: "GET", body: undefined };
    }
    throw new DownloadError(`${input}: too many redirects`);
  };
}
