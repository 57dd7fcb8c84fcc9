/**
 * What every route handler gets: the model catalogue, the scheduler, the default keep-alive and a logger, plus
 * the one way handlers turn a requested name into a model (validated, then looked up; never a path).
 *
 * @module
 */
import { join } from "node:path";
import type { Paths } from "../config/paths.ts";
import type { Arrivals } from "./arrivals.ts";
import {
  type Catalog,
  type CatalogModel,
  digestFileName,
  isValidModelName,
  modelCapabilities,
  ModelNotFoundError,
} from "../models/mod.ts";
import type { Capability } from "../gguf/mod.ts";
import type { Scheduler } from "./runners/scheduler.ts";
import type { PullOptions, PullResult } from "../models/pull/mod.ts";
import { HttpError } from "./http.ts";
import type { Message } from "./types.ts";
import type { Logger } from "../util/log.ts";
import type { RequestLog } from "./request_log.ts";
import type { DigestCache } from "../models/digests.ts";
import { servedThinkingTags } from "./ollama/thinking.ts";

/**
 * Shared state of a running daemon: what {@linkcode createRoutes} serves from.
 *
 * @example
 * ```ts ignore
 * const ctx: DaemonContext = {
 *   paths,
 *   catalog: createCatalog({ paths, listModels: () => listModels(paths, config) }),
 *   scheduler: createScheduler({ launcher: await serverLauncher({ paths, config }), maxLoaded: 2 }),
 *   defaultKeepAliveMs: defaultKeepAlive(config.daemon.keep_alive),
 *   version: "0.33.0",
 *   log: console.error,
 *   arrivals: new DaemonArrivals(),
 *   pull: (ref, options) => pullModel(paths, config, ref, options),
 * };
 * ```
 */
export interface DaemonContext {
  /** Data locations. */
  paths: Paths;
  /** The models. */
  catalog: Catalog;
  /** Content digests of the models' files; unset: digests are reported as not known. */
  digests?: DigestCache;
  /** Loaded models. */
  scheduler: Scheduler;
  /** Default keep-alive in ms (Infinity = forever). */
  defaultKeepAliveMs: number;
  /** The Ollama version `/api/version` reports (see OLLAMA_API_VERSION). */
  version: string;
  /** Logs a line at info level. */
  log: (line: string) => void;
  /** The logger behind `log`, for other levels; unset: errors go to `log` too. */
  logger?: Logger;
  /** The request log, for handlers to add the model and token counts; unset: requests are not logged. */
  requests?: RequestLog;
  /** Generation requests being prepared: handlers call `ready(req)` just before sending one upstream. */
  arrivals: Arrivals;
  /** Gets a model the catalogue does not have (`/api/pull`); unset, pulls are refused. */
  pull?: (
    ref: string,
    options: Pick<PullOptions, "insecure" | "onProgress" | "signal">,
  ) => Promise<PullResult>;
  /**
   * What a model can do as served (a preset's chat template can give it tools); unset: what its file says.
   */
  capabilities?: (model: CatalogModel) => Promise<Capability[]>;
  /**
   * Quantizes a GGUF model to `type` with the instance's llama-quantize into `output` (`/api/create`'s
   * `quantize`); `onProgress` hears tensor n of N. Unset, quantize is refused.
   */
  quantize?: (
    input: string,
    output: string,
    type: string,
    options: { parameterCount: number; onProgress?: (n: number, total: number) => void },
  ) => Promise<void>;
}

/**
 * Finds the model a request names. An empty name throws `emptyStatus` with `emptyMessage` (Ollama differs per
 * endpoint), an invalid name a 400, an unknown one the catalogue's ModelNotFoundError (a 404
 * `model 'x' not found`).
 *
 * @example
 * ```ts
 * const model = await findModel(ctx, body.model, { emptyStatus: 400, emptyMessage: "model is required" });
 * ```
 */
export async function findModel(
  ctx: DaemonContext,
  name: string | undefined,
  options: { emptyStatus?: number; emptyMessage?: string } = {},
): Promise<CatalogModel> {
  const n = (name ?? "").trim();
  if (n === "") {
    throw new HttpError(options.emptyStatus ?? 400, options.emptyMessage ?? "model is required");
  }
  // The catalogue is only searched, never turned into a path, so an exact catalogue name is always safe; any
  // other text must be a valid Ollama name.
  try {
    return await ctx.catalog.get(n);
  } catch (err) {
    if (err instanceof ModelNotFoundError && !isValidModelName(n)) {
      throw new HttpError(400, `invalid model name '${n}'`);
    }
    throw err;
  }
}

/**
 * A request's `options` over the model's own parameters (set by `/api/create`): the request's win, key by key,
 * as Ollama merges them.
 *
 * @example
 * ```ts
 * const { load, sampling } = parseOptions(modelOptions(model, body.options));
 * ```
 */
export function modelOptions(
  model: CatalogModel,
  options: Record<string, unknown> | null | undefined,
): Record<string, unknown> | null | undefined {
  const own = model.settings?.parameters;
  return own ? { ...own, ...options } : options;
}

/**
 * The messages a chat sends: the model's own messages (set by `/api/create`) before the request's, and the
 * model's system prompt first unless the request starts with a system message of its own, as Ollama does.
 * `own` turns the model's messages (Ollama's shape) into the request's shape (for `/v1`, OpenAI's).
 *
 * @example
 * ```ts
 * const all = modelMessages(model, body.messages);
 * ```
 */
export function modelMessages<M extends { role?: unknown }>(
  model: CatalogModel,
  messages: M[],
  own: (ollama: Message[]) => M[] = (m) => m as unknown as M[],
): M[] {
  const s = model.settings;
  if (!s) return messages;
  const out = [...own((s.messages ?? []) as Message[]), ...messages];
  if (s.system && messages[0]?.role !== "system") {
    out.unshift({ role: "system", content: s.system } as unknown as M);
  }
  return out;
}

/**
 * Where the blob of a digest is kept (in the catalogue's blob store); a malformed digest is a 400 (naming
 * `what` the digest was given for, if said). Only a valid digest ever becomes a path.
 *
 * @example
 * ```ts
 * const path = blobPath(ctx, "sha256:" + "a".repeat(64));
 * ```
 */
export function blobPath(ctx: DaemonContext, digest: string, what?: string): string {
  const file = digestFileName(digest);
  if (!file) throw new HttpError(400, `invalid digest format '${digest}'${what ? ` for ${what}` : ""}`);
  return join(ctx.catalog.blobsDir, file);
}

/**
 * What a model can do as this daemon serves it: {@linkcode DaemonContext.capabilities}, else the file's; and
 * `thinking` when the model's own Go template (a Modelfile TEMPLATE, an Ollama template layer), as served, has
 * thinking tags, as Ollama decides it.
 *
 * @example
 * ```ts ignore
 * if (!(await capabilitiesOf(ctx, model)).includes("tools")) throw new HttpError(400, "no tools");
 * ```
 */
export async function capabilitiesOf(ctx: DaemonContext, model: CatalogModel): Promise<Capability[]> {
  const caps = ctx.capabilities ? await ctx.capabilities(model) : modelCapabilities(model.entry);
  if (
    caps.includes("completion") && !caps.includes("thinking") && servedThinkingTags(model.settings)
  ) {
    return [...caps, "thinking"];
  }
  return caps;
}
