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
import { modelFromFile } from "../../models/mod.ts";
import { type PullEvent, pullKind, verifyModel } from "../../models/pull/mod.ts";
import { exists } from "../../util/fs.ts";

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
    (err) => push({ error: err instanceof Error ? err.message : String(err) }),
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
    if (!validFilePath(file)) throw new HttpError(400, "file path must be relative");
    const path = blobPath(ctx, digest, file);
    if (!(await exists(path))) {
      throw new HttpError(
        400,
        `blob ${digest} (${file}) not found: upload it first with POST /api/blobs/${digest}`,
      );
    }
    let facts;
    try {
      facts = (await modelFromFile(path)).facts;
    } catch (err) {
      throw new HttpError(400, `supplied file was not in GGUF format: ${file}: ${(err as Error).message}`);
    }
    if (facts.type === "adapter") {
      throw new HttpError(
        400,
        `${file} is a LoRA adapter, not a model: llama-mgr's /api/create does not apply adapters (give ` +
          "llama-server --lora through a preset's args instead)",
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
 * each request's defaults), messages and a license, as Ollama keeps them. Built on `from`, the base's settings
 * carry over: a new system prompt or messages replace the base's, parameters are merged (the new ones win).
 * `quantize`, `adapters` and a Go `template` are 400s that say what to do instead.
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
  if (body.quantize || body.quantization) {
    throw new HttpError(
      400,
      "quantize is not supported by llama-mgr's /api/create: run `llama-mgr quantize MODEL TYPE` and create " +
        "from its output (or put it in a models folder)",
    );
  }
  if (body.adapters && Object.keys(body.adapters).length) {
    throw new HttpError(
      400,
      "adapters are not supported by llama-mgr's /api/create: give llama-server --lora through a preset's args",
    );
  }
  if (body.template) {
    throw new HttpError(
      400,
      "TEMPLATE is not supported: llama-server applies the model's own Jinja chat template (from the GGUF), not " +
        "Ollama's Go templates; to use another, give a preset `args: [--chat-template-file, FILE]`",
    );
  }
  const parameters = checkParameters(body.parameters ?? {});
  let base: NameRecord;
  const lines: { status: string }[] = [];
  if (body.from) {
    base = ctx.catalog.recordOf(await findModel(ctx, body.from, { emptyStatus: 400 }));
    lines.push({ status: "using existing layers" });
  } else if (body.files && Object.keys(body.files).length) {
    base = await modelFromBlobs(ctx, body.files);
    lines.push({ status: "parsing GGUF" });
  } else {
    throw new HttpError(400, "neither 'from' or 'files' was specified");
  }
  const was = base.settings ?? {};
  const license = typeof body.license === "string" ? [body.license] : body.license ?? [];
  const settings: ModelSettings = {
    ...was,
    ...(body.system ? { system: body.system } : {}),
    ...(Object.keys(parameters).length ? { parameters: { ...was.parameters, ...parameters } } : {}),
    ...(body.messages?.length ? { messages: body.messages.map(withoutNulls) } : {}),
    ...(license.length ? { license: [...(was.license ?? []), ...license.filter(Boolean)] } : {}),
  };
  await ctx.catalog.create(name, { ...base, settings: Object.keys(settings).length ? settings : undefined });
  lines.push({ status: "writing manifest" }, { status: "success" });
  if (body.stream === false) return jsonResponse({ status: "success" });
  return await ndjsonResponse((async function* () {
    yield* lines;
  })());
}

/** An object without its null and undefined fields. */
function withoutNulls(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== null && v !== undefined));
}
