/**
 * `HEAD/POST /api/blobs/:digest`: content-addressed uploads under `<data>/daemon/blobs/`. Only a digest that
 * matches `^sha256[:-][0-9a-fA-F]{64}$` ever becomes a file name (the CVE-2024-37032 rule), and an upload is
 * kept only when its content hashes to that digest.
 *
 * @module
 */
import { join } from "node:path";
import { createHash } from "node:crypto";
import { blobPath, type DaemonContext } from "../context.ts";
import { HttpError } from "../http.ts";
import { exists } from "../../util/fs.ts";

/**
 * `HEAD /api/blobs/:digest`: 200 when present, 404 when absent, 400 for a malformed digest.
 *
 * @example
 * ```ts
 * await handleHeadBlob(ctx, "sha256:...");
 * ```
 */
export async function handleHeadBlob(ctx: DaemonContext, digest: string): Promise<Response> {
  const path = blobPath(ctx, digest);
  if (!(await exists(path))) throw new HttpError(404, `blob "${digest}" not found`);
  return new Response(null, { status: 200 });
}

/**
 * `POST /api/blobs/:digest`: 201 when stored, 200 when already there, 400 `digest mismatch` when the content
 * does not hash to the digest (nothing is kept then).
 *
 * @example
 * ```ts
 * await handlePostBlob(ctx, "sha256:...", req);
 * ```
 */
export async function handlePostBlob(ctx: DaemonContext, digest: string, req: Request): Promise<Response> {
  const path = blobPath(ctx, digest);
  if (await exists(path)) {
    await req.body?.cancel();
    return new Response(null, { status: 200 });
  }
  await Deno.mkdir(join(path, ".."), { recursive: true });
  const tmp = `${path}.${crypto.randomUUID().slice(0, 8)}.partial`;
  const hash = createHash("sha256");
  const f = await Deno.open(tmp, { write: true, create: true, truncate: true });
  try {
    if (req.body) {
      for await (const chunk of req.body) {
        hash.update(chunk);
        let off = 0;
        while (off < chunk.length) off += await f.write(chunk.subarray(off));
      }
    }
  } catch (err) {
    f.close();
    await Deno.remove(tmp).catch(() => {});
    throw err;
  }
  f.close();
  const got = `sha256:${hash.digest("hex")}`;
  if (got !== `sha256:${digest.slice(7).toLowerCase()}`) {
    await Deno.remove(tmp).catch(() => {});
    throw new HttpError(400, `digest mismatch, expected "${digest}", got "${got}"`);
  }
  await Deno.rename(tmp, path);
  return new Response(null, { status: 201 });
}
