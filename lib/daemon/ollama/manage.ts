/**
 * Model management routes: `/api/copy`, `/api/delete`, `/api/pull`, `/api/push`, `/api/create`. Names are
 * validated as Ollama validates them; copies and created models are daemon-side names (see catalog.ts); pull
 * answers from the local stores only (llama-mgr does not download from registry.ollama.ai).
 *
 * @module
 */
import type { DaemonContext } from "../context.ts";
import { blobPath, findModel } from "../context.ts";
import { HttpError, jsonResponse, ndjsonResponse, readJsonBody } from "../http.ts";
import { isValidModelName } from "../../models/names.ts";
import { CopyRequestSchema, CreateRequestSchema, DeleteRequestSchema, PullRequestSchema } from "../types.ts";
import type { ModelSettings, NameRecord } from "../../models/catalog.ts";
import { checkParameters } from "../options.ts";
import { type ModelEntry, modelFromFile } from "../../models/mod.ts";
import { type PullEvent, pullKind, verifyModel } from "../../models/pull/mod.ts";
import { RegistryAuthError } from "../../models/pull/registry_auth.ts";
import { exists } from "../../util/fs.ts";
import { join } from "node:path";
import { quantizedName } from "../../convert/quantize.ts";
import { goTemplateToJinja, TemplateError } from "./template.ts";
import { storeChatTemplate } from "./layers.ts";

/**
 * `POST /api/copy`: 200 with an empty body; 400 for a bad name; 404 for an unknown source.
 *
 * @example
 * ```ts
 * await handleCopy(ctx, req);
 * ```
 */
export async function handleCopy(ctx: DaemonContext, req: Request): Promise<Response> {
  const body = await readJsonBody(req, CopyRequestSchema);
  if (!body.source || !isValidModelName(body.source)) {
    throw new HttpError(400, `source "${body.source}" is invalid`);
  }
  if (!body.destination || !isValidModelName(body.destination)) {
    throw new HttpError(400, `destination "${body.destination}" is invalid`);
  }
  const src = await ctx.catalog.find(body.source);
  if (!src) throw new HttpError(404, `model "${body.source}" not found`);
  await ctx.catalog.copy(src, body.destination);
  return new Response(null, { status: 200 });
}

/**
 * `DELETE /api/delete` (`model` or the older `name`): 200 with an empty body; 400 bad name; 404 unknown.
 *
 * @example
 * ```ts
 * await handleDelete(ctx, req);
 * ```
 */
export async function handleDelete(ctx: DaemonContext, req: Request): Promise<Response> {
  const body = await readJsonBody(req, DeleteRequestSchema);
  const name = body.model || body.name || "";
  if (!isValidModelName(name)) throw new HttpError(400, `name "${name}" is invalid`);
  const m = await ctx.catalog.find(name);
  if (!m) throw new HttpError(404, `model '${name}' not found`);
  await ctx.scheduler.expire(m);
  await ctx.catalog.remove(m);
  return new Response(null, { status: 200 });
}

/**
 * `POST /api/pull`: succeeds for a model that is already present (as Ollama does for an up-to-date model);
 * an absent one is a 404 that says how to get it.
 *
 * @example
 * ```ts
 * await handlePull(ctx, req);
 * ```
 */
export async function handlePull(ctx: DaemonContext, req: Request): Promise<Response> {
  const body = await readJsonBody(req, PullRequestSchema);
  const name = (body.model || body.name || "").trim();
  if (!name) throw new HttpError(400, "model is required");
  const local = await ctx.catalog.find(name);
  if (!local && pullKind(name) === undefined) throw new HttpError(400, `invalid model name '${name}'`);
  if (!local && !ctx.pull) {
    throw new HttpError(404, `model '${name}' not found, and this daemon does not pull`);
  }
  // The work runs on its own and reports through a queue of lines, so that a client that stops reading does not
  // stop a pull another client may be waiting for too.
  const lines: Record<string, unknown>[] = [];
  let wake: (() => void) | undefined;
  let finished = false;
  const push = (line: Record<string, unknown>) => {
    lines.push(line);
    wake?.();
  };
  let lastPercent = "";
  const onProgress = (e: PullEvent) => {
    // Progress lines for one file are thinned to whole percents: a large file would otherwise send thousands.
    if (e.total && e.completed !== undefined && e.completed < e.total) {
      const pct = `${e.digest} ${Math.floor((e.completed / e.total) * 100)}`;
      if (pct === lastPercent) return;
      lastPercent = pct;
    }
    if (e.status !== "success") push({ ...e });
  };
  const work = (async () => {
    if (local) {
      // Here already: check it against the digests its store names its files by (none for a plain folder).
      await verifyModel(local.entry, onProgress);
    } else {
      onProgress({ status: "pulling manifest" });
      await ctx.pull!(name, { insecure: body.insecure ?? undefined, onProgress });
      ctx.catalog.invalidate();
    }
  })().then(
    () => push({ status: "success" }),
    // A refused sign-in is only useful with what to do about it (sign in, the key to add).
    (err) =>
      push({
        error: err instanceof RegistryAuthError
          ? `${err.message}; ${err.hint}`
          : err instanceof Error
          ? err.message
          : String(err),
      }),
  ).finally(() => {
    finished = true;
    wake?.();
  });
  if (body.stream === false) {
    await work;
    const error = lines.find((l) => "error" in l);
    if (error) throw new HttpError(errorStatusOf(error.error as string), error.error as string);
    return jsonResponse({ status: "success" });
  }
  return await ndjsonResponse((async function* () {
    for (;;) {
      while (lines.length) yield lines.shift()!;
      if (finished) return;
      await new Promise<void>((r) => wake = r);
      wake = undefined;
    }
  })());
}

/** A failed pull without streaming: a missing model is a 404, anything else a 500 (as Ollama answers). */
function errorStatusOf(message: string): number {
  return /not found|does not exist|manifest unknown/i.test(message) ? 404 : 500;
}

/**
 * `POST /api/push`: not supported (400 with the reason).
 */
export function handlePush(): Promise<Response> {
  return Promise.reject(new HttpError(400, "llama-mgr's daemon does not push models to a registry"));
}

/** A file name in `files`: relative, without `..` (Ollama's `fs.ValidPath`). */
function validFilePath(p: string): boolean {
  return p !== "" && !p.startsWith("/") && !p.includes("\\") &&
    p.split("/").every((part) => part !== "" && part !== "." && part !== "..");
}

/** An uploaded file named in `files` or `adapters`: its blob, which must be there and be a GGUF. */
async function uploadedGguf(
  ctx: DaemonContext,
  file: string,
  digest: string,
): Promise<{ path: string; facts: ModelEntry["facts"] }> {
  if (!validFilePath(file)) throw new HttpError(400, "file path must be relative");
  const path = blobPath(ctx, digest, file);
  if (!(await exists(path))) {
    throw new HttpError(
      400,
      `blob ${digest} (${file}) not found: upload it first with POST /api/blobs/${digest}`,
    );
  }
  try {
    return { path, facts: (await modelFromFile(path)).facts };
  } catch (err) {
    throw new HttpError(400, `supplied file was not in GGUF format: ${file}: ${(err as Error).message}`);
  }
}

/**
 * The model (and vision projector) among uploaded files (`files`: file name -> blob digest), read from the
 * blob store: every file must be an uploaded GGUF; exactly one must be a model.
 */
async function modelFromBlobs(
  ctx: DaemonContext,
  files: Record<string, string>,
): Promise<{ path: string; mmproj?: string }> {
  const models: string[] = [];
  const projectors: string[] = [];
  for (const [file, digest] of Object.entries(files)) {
    const { path, facts } = await uploadedGguf(ctx, file, digest);
    if (facts.type === "adapter") {
      throw new HttpError(
        400,
        `${file} is a LoRA adapter, not a model: give it as an adapter (ADAPTER in a Modelfile, \`adapters\` in ` +
          "/api/create)",
      );
    }
    if (facts.splitCount > 1) {
      throw new HttpError(
        400,
        `${file} is one part of a model split in ${facts.splitCount}: llama-server needs all parts side by side ` +
          "under their own names, so put them in a models folder instead (or merge them with llama-gguf-split)",
      );
    }
    if (facts.type === "mmproj" || facts.architecture === "clip") projectors.push(path);
    else models.push(path);
  }
  if (models.length !== 1 || projectors.length > 1) {
    throw new HttpError(
      400,
      models.length === 0
        ? "no model among the files (only vision projectors)"
        : `${models.length} models and ${projectors.length} projectors among the files: a name takes one GGUF ` +
          "model (not split in parts) and at most one vision projector",
    );
  }
  return { path: models[0], ...(projectors.length ? { mmproj: projectors[0] } : {}) };
}

/**
 * `POST /api/create`: a new name `from` an existing model or from uploaded GGUF files (`files`, blob digests as
 * the Ollama CLI sends them for `FROM ./model.gguf`), with a system prompt, parameters (checked now, used as
 * each request's defaults), messages and a license, as Ollama keeps them; a Go `template` (translated to Jinja
 * for llama-server, 400 naming a construct that has no translation), one LoRA `adapters` blob (served with
 * `--lora`) and `quantize` (llama-quantize from an F16, BF16 or F32 model into the blob store). Built on `from`,
 * the base's settings carry over: a new system prompt, template, adapter or messages replace the base's,
 * parameters are merged (the new ones win).
 *
 * @example
 * ```ts
 * await handleCreate(ctx, req);
 * ```
 */
export async function handleCreate(ctx: DaemonContext, req: Request): Promise<Response> {
  const body = await readJsonBody(req, CreateRequestSchema);
  const name = body.model || body.name || "";
  if (!isValidModelName(name)) throw new HttpError(400, `invalid model name '${name}'`);
  const parameters = checkParameters(body.parameters ?? {});
  let jinja: string | undefined;
  if (body.template) {
    try {
      jinja = goTemplateToJinja(body.template);
    } catch (err) {
      if (!(err instanceof TemplateError)) throw err;
      throw new HttpError(400, `template error: ${err.message}`);
    }
  }
  let base: NameRecord;
  const lines: Record<string, unknown>[] = [];
  if (body.from) {
    base = ctx.catalog.recordOf(await findModel(ctx, body.from, { emptyStatus: 400 }));
    lines.push({ status: "using existing layers" });
  } else if (body.files && Object.keys(body.files).length) {
    base = await modelFromBlobs(ctx, body.files);
    lines.push({ status: "parsing GGUF" });
  } else {
    throw new HttpError(400, "neither 'from' or 'files' was specified");
  }
  const adapters = body.adapters && Object.keys(body.adapters).length
    ? await adaptersFromBlobs(ctx, body.adapters)
    : undefined;
  const quantize = (body.quantize || body.quantization || "").toUpperCase();
  let quantizeFrom: string | undefined;
  let parameterCount = 0;
  if (quantize) {
    const facts = (await modelFromFile(base.path)).facts;
    if (!["F16", "BF16", "F32"].includes(facts.fileType.toUpperCase())) {
      throw new HttpError(400, "quantization is only supported for F16, BF16 and F32 models");
    }
    if (!ctx.quantize) throw new HttpError(400, "this daemon does not quantize");
    if (facts.fileType.toUpperCase() !== quantize) quantizeFrom = facts.fileType.toUpperCase();
    parameterCount = Number(facts.parameterCount ?? 0);
  }

  const work = async (push: (line: Record<string, unknown>) => void) => {
    for (const l of lines) push(l);
    if (quantizeFrom) {
      const status = `quantizing ${quantizeFrom} model to ${quantize}`;
      const size = (await Deno.stat(base.path)).size;
      const output = join(
        ctx.catalog.blobsDir,
        `${quantizedName(base.path, quantize).replace(/\.gguf$/, "")}-${
          (await sha256Hex(base.path)).slice(0, 12)
        }.gguf`,
      );
      if (!(await exists(output))) {
        let last = -1;
        push({ status, digest: ZERO_DIGEST, total: size, completed: 0 });
        await ctx.quantize!(base.path, output, quantize, {
          parameterCount,
          onProgress: (n, total) => {
            const pct = Math.floor((n / total) * 100);
            if (pct === last) return;
            last = pct;
            push({ status, digest: ZERO_DIGEST, total: size, completed: Math.round((size * n) / total) });
          },
        });
      }
      push({ status, digest: ZERO_DIGEST, total: size, completed: size });
      base = { ...base, path: output };
    }
    const was = base.settings ?? {};
    const license = typeof body.license === "string" ? [body.license] : body.license ?? [];
    let chatTemplateFile = was.chatTemplateFile;
    if (jinja !== undefined) {
      chatTemplateFile = await storeChatTemplate(join(ctx.catalog.blobsDir, "..", "templates"), jinja);
    }
    const settings: ModelSettings = {
      ...was,
      ...(body.system ? { system: body.system } : {}),
      ...(Object.keys(parameters).length ? { parameters: { ...was.parameters, ...parameters } } : {}),
      ...(body.messages?.length ? { messages: body.messages.map(withoutNulls) } : {}),
      ...(license.length ? { license: [...(was.license ?? []), ...license.filter(Boolean)] } : {}),
      ...(jinja !== undefined ? { template: body.template!, chatTemplateFile } : {}),
      ...(adapters ? { adapters } : {}),
    };
    await ctx.catalog.create(name, {
      ...base,
      settings: Object.keys(settings).length ? settings : undefined,
    });
    push({ status: "writing manifest" });
  };
  // Without a quantization the work is quick: done before answering, so that a client that does not read the
  // lines still finds the name made, and an error is the answer's status.
  return await streamWork(quantizeFrom ? body.stream : false, work, body.stream !== false);
}

/** The digest Ollama's progress lines for a quantization carry. */
const ZERO_DIGEST = "0000000000000000000";

/** The SHA-256 (hex) of a string. */
async function sha256Hex(s: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(s));
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Runs a create's work: streamed as progress lines, the last `success` (or `error`: the work runs on even when
 * the client stops reading); with `stream: false`, one answer once done, a failure as its status (with
 * `linesAfter`, the lines of the finished work then).
 */
async function streamWork(
  stream: boolean | null | undefined,
  work: (push: (line: Record<string, unknown>) => void) => Promise<void>,
  linesAfter = false,
): Promise<Response> {
  const lines: Record<string, unknown>[] = [];
  let wake: (() => void) | undefined;
  let finished = false;
  const push = (line: Record<string, unknown>) => {
    lines.push(line);
    wake?.();
  };
  const done = work(push).then(
    () => push({ status: "success" }),
    (err) => {
      if (stream === false) throw err;
      push({ error: err instanceof Error ? err.message : String(err) });
    },
  ).finally(() => {
    finished = true;
    wake?.();
  });
  if (stream === false) {
    await done;
    if (!linesAfter) return jsonResponse({ status: "success" });
  }
  done.catch(() => {});
  return await ndjsonResponse((async function* () {
    for (;;) {
      while (lines.length) yield lines.shift()!;
      if (finished) return;
      await new Promise<void>((r) => wake = r);
      wake = undefined;
    }
  })());
}

/** The uploaded LoRA adapter (`adapters`: file name -> blob digest): one, a GGUF of type adapter. */
async function adaptersFromBlobs(ctx: DaemonContext, files: Record<string, string>): Promise<string[]> {
  const entries = Object.entries(files);
  if (entries.length > 1) throw new HttpError(400, "only one adapter is currently supported");
  const out: string[] = [];
  for (const [file, digest] of entries) {
    const { path, facts } = await uploadedGguf(ctx, file, digest);
    if (facts.type !== "adapter") {
      throw new HttpError(400, `${file} is not a LoRA adapter (a GGUF with general.type "adapter")`);
    }
    out.push(path);
  }
  return out;
}

/** An object without its null and undefined fields. */
function withoutNulls(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== null && v !== undefined));
}
