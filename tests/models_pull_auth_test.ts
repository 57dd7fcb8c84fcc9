/**
 * Signing in to a registry as `ollama pull` does, against a registry served inside the test whose `/v2/`
 * paths answer 401 with a Bearer challenge and whose token realm checks the request's ed25519 signature
 * with node:crypto against the public keys registered with it (as ollama.com does with the keys of
 * `ollama signin`). The keys are real OpenSSH files made by `ssh-keygen`, as Ollama writes them. The model
 * layer is the real SmolLM2 GGUF.
 */
import { createPublicKey, verify } from "node:crypto";
import { assert, assertEquals, assertRejects, assertStringIncludes } from "./_assert.ts";
import { cli, sha256File, smolModelPath, tempDir } from "./_fixtures.ts";
import { cliWorld } from "./_daemon.ts";
import { Registry } from "./_registry.ts";
import { exists } from "../lib/util/fs.ts";
import { pullOllama } from "../lib/models/pull/ollama.ts";
import {
  ollamaKeyPath,
  parseChallenge,
  readSigningKey,
  RegistryAuthError,
  tokenUrl,
} from "../lib/models/pull/registry_auth.ts";

const te = new TextEncoder();
const MT = "application/vnd.ollama.image.";
const fromB64 = (s: string) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
const b64url = (b: Uint8Array) =>
  btoa(String.fromCharCode(...b)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");

const hasSshKeygen = await new Deno.Command("ssh-keygen", { args: ["-?"], stderr: "null", stdout: "null" })
  .output().then(() => true, () => false);
if (!hasSshKeygen) console.log("ssh-keygen is not installed: the sign-in tests are skipped");

/** A HOME with `.ollama/id_ed25519` made by ssh-keygen; returns the public key's base64 blob. */
async function makeKey(home: string): Promise<string> {
  await Deno.mkdir(`${home}/.ollama`, { recursive: true });
  const out = await new Deno.Command("ssh-keygen", {
    args: ["-q", "-t", "ed25519", "-N", "", "-C", "", "-f", `${home}/.ollama/id_ed25519`],
  }).output();
  assert(out.success, new TextDecoder().decode(out.stderr));
  return (await Deno.readTextFile(`${home}/.ollama/id_ed25519.pub`)).split(" ")[1];
}

/** The hash Ollama signs for an empty body: base64 of the hex sha256 of nothing. */
const EMPTY = btoa(
  [...new Uint8Array(await crypto.subtle.digest("SHA-256", new Uint8Array()))]
    .map((b) => b.toString(16).padStart(2, "0")).join(""),
);

/** Checks `<pubkey>:<signature>` over `GET,<url>,<empty>`; returns the public key when the signature holds. */
function verifiedKey(authorization: string, url: string): string | undefined {
  const [pub, sig] = authorization.split(":");
  if (!pub || !sig) return undefined;
  const blob = fromB64(pub);
  const view = new DataView(blob.buffer);
  const typeLen = view.getUint32(0);
  const raw = blob.subarray(4 + typeLen + 4, 4 + typeLen + 4 + view.getUint32(4 + typeLen));
  const key = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: b64url(raw) }, format: "jwk" });
  return verify(null, te.encode(`GET,${url},${EMPTY}`), key, fromB64(sig)) ? pub : undefined;
}

/** Sign-in as ollama.com does it: tokens from `/token` for requests signed by a registered key. */
class SignIn {
  registered = new Set<string>();
  /** Repositories anyone may pull (an anonymous token is given). */
  public = new Set<string>();
  /** Uses of a token before it expires. */
  maxUses = Infinity;
  tokens = new Map<string, { scope: string; uses: number }>();
  tokenRequests: { url: string; signedBy?: string; signatureValid: boolean }[] = [];
  realm = "";

  gate = (req: Request, url: URL): Response | undefined => {
    if (url.pathname === "/token") return this.#token(req, url);
    const m = url.pathname.match(/^\/v2\/([^/]+\/[^/]+)\/(manifests|blobs)\//);
    if (!m) return undefined;
    const scope = `repository:${m[1]}:pull`;
    const t = this.tokens.get(req.headers.get("authorization")?.replace(/^Bearer /, "") ?? "");
    if (t && t.scope === scope && t.uses++ < this.maxUses) return undefined;
    return Response.json({ errors: [{ code: "UNAUTHORIZED", message: "authentication required" }] }, {
      status: 401,
      headers: {
        "www-authenticate": `Bearer realm="${this.realm}",service="test-registry",scope="${scope}"`,
      },
    });
  };

  #token(req: Request, url: URL): Response {
    const auth = req.headers.get("authorization");
    const signedBy = auth ? verifiedKey(auth, req.url) : undefined;
    this.tokenRequests.push({ url: req.url, signedBy, signatureValid: !!signedBy });
    const scope = url.searchParams.get("scope") ?? "";
    const fresh = Math.abs(Number(url.searchParams.get("ts")) - Date.now() / 1000) < 60;
    const repo = scope.match(/^repository:(.+):pull$/)?.[1] ?? "";
    const allowed = fresh && url.searchParams.get("nonce") &&
      url.searchParams.get("service") === "test-registry" &&
      (signedBy && this.registered.has(signedBy) || this.public.has(repo));
    if (!allowed) {
      return Response.json({
        errors: [{ code: "UNAUTHORIZED", message: "unauthorized: key not registered" }],
      }, {
        status: 401,
      });
    }
    const token = crypto.randomUUID();
    this.tokens.set(token, { scope, uses: 0 });
    return Response.json({ token });
  }
}

async function world(cdn: "other" | "none") {
  const tmp = await tempDir();
  const signIn = new SignIn();
  const registry = new Registry({ gate: signIn.gate, cdn });
  signIn.realm = `http://${registry.host}/token`;
  const smol = await smolModelPath();
  await registry.publish("me/private:latest", [
    { mediaType: `${MT}model`, bytes: await Deno.readFile(smol) },
    { mediaType: `${MT}system`, bytes: te.encode("You are private.") },
  ]);
  return {
    tmp,
    signIn,
    registry,
    smol,
    name: `${registry.host}/me/private`,
    close: async () => {
      await registry.close();
      await tmp.cleanup();
    },
  };
}

Deno.test({
  name: "a private model pulls with the user's Ollama key; the CDN never sees the token",
  ignore: !hasSshKeygen,
  sanitizeResources: false,
  async fn(t) {
    const w = await world("other");
    try {
      const home = `${w.tmp.path}/home`;
      w.signIn.registered.add(await makeKey(home));
      const store = `${w.tmp.path}/store`;

      await t.step("the pull signs in at the realm and gets the real GGUF", async () => {
        const r = await pullOllama(w.name, {
          storeDir: store,
          insecure: true,
          keyPath: ollamaKeyPath({ HOME: home }),
        });
        assertEquals(await sha256File(r.model), await sha256File(w.smol));
        assert(w.signIn.tokenRequests.length >= 1);
        assert(
          w.signIn.tokenRequests.every((q) => q.signatureValid),
          "every token request was validly signed",
        );
        const pub = (await readSigningKey(ollamaKeyPath({ HOME: home }))).publicKey.split(" ")[1];
        assertEquals(w.signIn.tokenRequests[0].signedBy, pub);
      });

      await t.step("the manifest was asked for without credentials, then with the token", () => {
        const manifests = w.registry.seen.filter((s) => s.path.includes("/manifests/"));
        assertEquals(manifests[0].authorization, undefined);
        assert(manifests[1].authorization?.startsWith("Bearer "), JSON.stringify(manifests));
      });

      await t.step("the blob redirect to another host carried no Authorization", () => {
        const cdn = w.registry.seen.filter((s) => s.server === "cdn");
        assert(cdn.length > 0, "the blobs came from the CDN host");
        assertEquals(cdn.filter((s) => s.authorization !== undefined), []);
        const blobs = w.registry.seen.filter((s) => s.server === "registry" && s.path.includes("/blobs/"));
        assert(blobs.some((s) => s.authorization?.startsWith("Bearer ")));
      });

      await t.step("without a key: a clear refusal that says to sign in, and nothing stored", async () => {
        const store2 = `${w.tmp.path}/store2`;
        const keyPath = ollamaKeyPath({ HOME: `${w.tmp.path}/nobody` });
        const err = await assertRejects(
          () => pullOllama(w.name, { storeDir: store2, insecure: true, keyPath }),
          RegistryAuthError,
        );
        assertEquals(err.status, 401);
        assertStringIncludes(err.message, "gave no token for");
        assertStringIncludes(err.message, "key not registered");
        assertStringIncludes(err.hint ?? "", `there is no key at ${keyPath}`);
        assertStringIncludes(err.hint ?? "", "ollama signin");
        assert(!(await exists(`${store2}/manifests`)));
        assert(!(await exists(`${store2}/blobs`)));
      });

      await t.step("a key the registry does not know: the hint names its public key file", async () => {
        const other = `${w.tmp.path}/other`;
        await makeKey(other);
        const keyPath = ollamaKeyPath({ HOME: other });
        const err = await assertRejects(
          () => pullOllama(w.name, { storeDir: `${w.tmp.path}/store3`, insecure: true, keyPath }),
          RegistryAuthError,
        );
        assertStringIncludes(err.hint ?? "", `${keyPath}.pub`);
        assert(w.signIn.tokenRequests.at(-1)!.signatureValid, "the request was signed, with an unknown key");
      });

      await t.step("a key file that is not a key: the hint says the file cannot be used", async () => {
        const bad = `${w.tmp.path}/bad/.ollama`;
        await Deno.mkdir(bad, { recursive: true });
        await Deno.writeTextFile(`${bad}/id_ed25519`, "not a key\n");
        const err = await assertRejects(
          () =>
            pullOllama(w.name, {
              storeDir: `${w.tmp.path}/store4`,
              insecure: true,
              keyPath: `${bad}/id_ed25519`,
            }),
          RegistryAuthError,
        );
        assertStringIncludes(err.hint ?? "", "cannot be used: it is not a private key");
      });
    } finally {
      await w.close();
    }
  },
});

Deno.test({
  name: "blobs served by the registry: parts carry the token, an expired one is renewed, a resume signs in",
  ignore: !hasSshKeygen,
  sanitizeResources: false,
  async fn() {
    const w = await world("none");
    try {
      const home = `${w.tmp.path}/home`;
      w.signIn.registered.add(await makeKey(home));
      w.signIn.maxUses = 6;
      const store = `${w.tmp.path}/store`;
      const keyPath = ollamaKeyPath({ HOME: home });
      const size = (await Deno.stat(w.smol)).size;
      const stop = new AbortController();
      await assertRejects(() =>
        pullOllama(w.name, {
          storeDir: store,
          insecure: true,
          keyPath,
          parallel: 4,
          signal: stop.signal,
          onProgress: (p) => {
            if (p.total === size && (p.completed ?? 0) > size * 0.3) stop.abort();
          },
        })
      );
      const first = w.signIn.tokenRequests.length;
      assert(first >= 2, `tokens expire after 6 uses: ${first} token requests before the stop`);
      const r = await pullOllama(w.name, { storeDir: store, insecure: true, keyPath, parallel: 4 });
      assertEquals(await sha256File(r.model), await sha256File(w.smol));
      assert(r.fetchedBytes < size * 0.8, `the resumed pull fetched ${r.fetchedBytes} of ${size} bytes`);
      assert(w.signIn.tokenRequests.length > first, "the resumed pull signed in again");
      assert(w.signIn.tokenRequests.every((q) => q.signatureValid));
      const ranged = w.registry.log.filter((l) => l.includes("/blobs/") && l.includes("bytes="));
      assert(ranged.length > 4, "the blob came in ranged parts from the registry");
    } finally {
      await w.close();
    }
  },
});

Deno.test({
  name: "a Docker-style registry: an anonymous token from a realm on another host, which gets no signature",
  ignore: !hasSshKeygen,
  sanitizeResources: false,
  async fn() {
    const w = await world("other");
    const seen: (string | null)[] = [];
    const tokens = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
      seen.push(req.headers.get("authorization"));
      const t = crypto.randomUUID();
      w.signIn.tokens.set(t, { scope: new URL(req.url).searchParams.get("scope") ?? "", uses: 0 });
      return Response.json({ access_token: t, expires_in: 300 });
    });
    try {
      const home = `${w.tmp.path}/home`;
      await makeKey(home);
      w.signIn.realm = `http://localhost:${tokens.addr.port}/token`;
      const r = await pullOllama(w.name, {
        storeDir: `${w.tmp.path}/store`,
        insecure: true,
        keyPath: ollamaKeyPath({ HOME: home }),
      });
      assertEquals(await sha256File(r.model), await sha256File(w.smol));
      assert(seen.length >= 1);
      assertEquals(seen.filter((a) => a !== null), [], "the key's signature never went to another host");
    } finally {
      await tokens.shutdown();
      await w.close();
    }
  },
});

Deno.test("a challenge is read as Ollama reads it", () => {
  assertEquals(
    parseChallenge(
      'Bearer realm="https://registry.ollama.ai/v2/token",service="registry.ollama.ai",scope="repository:me/x:pull"',
    ),
    {
      scheme: "Bearer",
      realm: "https://registry.ollama.ai/v2/token",
      service: "registry.ollama.ai",
      scope: "repository:me/x:pull",
    },
  );
});

Deno.test({
  name: "llama-mgr pull of a private model: without a key it says to sign in; with the key it pulls",
  ignore: !hasSshKeygen,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const w = await world("other");
    const cw = await cliWorld();
    try {
      const pull = (home: string) =>
        cli(["-d", cw.data, "--config", cw.config, "-i", "cpu", "pull", "--insecure", w.name], {
          env: { ...cw.env, HOME: home },
        });
      const nobody = `${w.tmp.path}/nobody`;
      await Deno.mkdir(nobody);
      const refused = await pull(nobody);
      assertEquals(refused.code, 1, refused.stderr);
      assertStringIncludes(refused.stderr, `error: registry ${w.registry.host} gave no token`);
      assertStringIncludes(refused.stderr, `hint: there is no key at ${nobody}/.ollama/id_ed25519`);
      assertStringIncludes(refused.stderr, "ollama signin");
      const home = `${w.tmp.path}/home`;
      w.signIn.registered.add(await makeKey(home));
      const pulled = await pull(home);
      assertEquals(pulled.code, 0, pulled.stderr);
      assertStringIncludes(pulled.stdout, `pulled ${w.name.toLowerCase()}`);
    } finally {
      await cw.close();
      await w.close();
    }
  },
});

Deno.test("the token URL is written as Go's url.Values.Encode writes it (the signature covers the text)", () => {
  const url = tokenUrl({
    scheme: "Bearer",
    realm: "https://r.example:8443/v2/token?b=1~2&a=x y",
    service: "r.example",
    scope: "repository:me/a:pull repository:me/b:pull,push",
  }, 1_700_000_000_000);
  const m = url.match(/^https:\/\/r\.example:8443\/v2\/token\?(.*)$/);
  assert(m, url);
  assertEquals(
    m[1].replace(/nonce=[A-Za-z0-9_-]{22}&/, "nonce=N&"),
    "a=x+y&b=1~2&nonce=N&scope=repository%3Ame%2Fa%3Apull&scope=repository%3Ame%2Fb%3Apull%2Cpush" +
      "&service=r.example&ts=1700000000",
  );
});
