/**
 * The route table: every endpoint in one screen, with the cross-cutting middleware (Host/Origin/API-key
 * checks, error bodies in Ollama's, OpenAI's or Anthropic's shape, 404 and 405 as Ollama answers them).
 *
 * @module
 */
import { type Handler, Hono } from "../deps.ts";
import type { DaemonContext } from "./context.ts";
import { checkAccess } from "./security.ts";
import { VERSION } from "../version.ts";
import { jsonResponse, toErrorResponse } from "./http.ts";
import { handleTags } from "./ollama/tags.ts";
import { handlePs } from "./ollama/ps.ts";
import { handleShow, type PresetParameters } from "./ollama/show.ts";
import { handleGenerate } from "./ollama/generate.ts";
import { handleChat } from "./ollama/chat.ts";
import { handleEmbed, handleEmbeddings } from "./ollama/embed.ts";
import { handleCopy, handleCreate, handleDelete, handlePull, handlePush } from "./ollama/manage.ts";
import { handleHeadBlob, handlePostBlob } from "./ollama/blobs.ts";
import { handleOpenAIModel, handleOpenAIModels, proxyOpenAI, toOpenAIError } from "./openai/proxy.ts";
import { toAnthropicError } from "./anthropic/errors.ts";

/**
 * Options for {@linkcode createRoutes}.
 *
 * @example
 * ```ts
 * const options: RouteOptions = { listenHost: "127.0.0.1", origins: ["http://localhost:*"] };
 * ```
 */
export interface RouteOptions {
  /** The address the daemon listens on (Host checks apply on loopback). */
  listenHost: string;
  /** Allowed origins (patterns). */
  origins: string[];
  /** Required API key, if any. */
  apiKey?: string;
  /** The options a model's preset sets, for `/api/show`. */
  parameters?: PresetParameters;
}

/** A route's path as a pattern: `:name` is one segment, `:name{re}` matches `re`. */
function pathPattern(path: string): RegExp {
  const segments = path.split("/").map((seg) => {
    const param = seg.match(/^:\w+(?:\{(.+)\})?$/);
    if (param) return param[1] ? `(?:${param[1]})` : "[^/]+";
    return seg.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  });
  return new RegExp(`^${segments.join("/")}$`);
}

/**
 * The daemon's HTTP API as one handler, what `Deno.serve` takes (built on Hono, which stays private).
 *
 * @example
 * ```ts ignore
 * const routes: DaemonRoutes = createRoutes(ctx, { listenHost: "127.0.0.1", origins: allowedOrigins([]) });
 * const r = await routes.fetch(new Request("http://127.0.0.1:11434/api/version"));
 * console.log(await r.json()); // { version: "0.33.0" }
 * ```
 */
export interface DaemonRoutes {
  /** Answers one request. */
  fetch(req: Request): Response | Promise<Response>;
}

/**
 * Builds the daemon's routes for a daemon context.
 *
 * @example
 * ```ts ignore
 * const app = createRoutes(ctx, { listenHost: "127.0.0.1", origins: allowedOrigins([]) });
 * Deno.serve({ port: 11434 }, app.fetch);
 * ```
 */
export function createRoutes(ctx: DaemonContext, options: RouteOptions): DaemonRoutes {
  const app = new Hono();
  // Every path the API has, from the registrations below: a known path with another method is a 405.
  const known: RegExp[] = [];
  const route = (method: "get" | "post" | "delete", path: string, handler: Handler) => {
    known.push(pathPattern(path));
    app[method](path, handler);
  };
  const running = () =>
    new Response("Ollama is running", { headers: { "content-type": "text/plain; charset=utf-8" } });

  app.use("*", async (c, next) => {
    const access = checkAccess(c.req.raw, options);
    if (access instanceof Response) return access;
    await next();
    for (const [k, v] of Object.entries(access)) c.res.headers.set(k, v);
  });

  app.onError((err, c) => {
    if (!(err instanceof Error && err.name === "HttpError")) {
      if (ctx.logger) ctx.logger.error(String(err), { path: c.req.path });
      else ctx.log(`error: ${c.req.path}: ${String(err)}`);
    }
    const path = c.req.path;
    return path.startsWith("/v1/messages")
      ? toAnthropicError(err)
      : path.startsWith("/v1/")
      ? toOpenAIError(err)
      : toErrorResponse(err);
  });
  app.notFound((c) => {
    if (known.some((p) => p.test(c.req.path))) return new Response("405 method not allowed", { status: 405 });
    return new Response("404 page not found", { status: 404, headers: { "content-type": "text/plain" } });
  });

  // Hono answers HEAD from GET routes with an empty body.
  route("get", "/", running);
  route("get", "/api/version", () => {
    const res = jsonResponse({ version: ctx.version });
    res.headers.set("x-llama-mgr-version", VERSION);
    return res;
  });
  route("get", "/api/tags", () => handleTags(ctx));
  route("get", "/api/ps", () => handlePs(ctx));
  route("post", "/api/show", (c) => handleShow(ctx, c.req.raw, options.parameters));
  route("post", "/api/generate", (c) => handleGenerate(ctx, c.req.raw));
  route("post", "/api/chat", (c) => handleChat(ctx, c.req.raw));
  route("post", "/api/embed", (c) => handleEmbed(ctx, c.req.raw));
  route("post", "/api/embeddings", (c) => handleEmbeddings(ctx, c.req.raw));
  route("post", "/api/copy", (c) => handleCopy(ctx, c.req.raw));
  route("delete", "/api/delete", (c) => handleDelete(ctx, c.req.raw));
  route("post", "/api/pull", (c) => handlePull(ctx, c.req.raw));
  route("post", "/api/push", () => handlePush());
  route("post", "/api/create", (c) => handleCreate(ctx, c.req.raw));
  // HEAD only: a GET on a blob is not part of the API.
  route(
    "get",
    "/api/blobs/:digest",
    (c) =>
      c.req.method === "HEAD"
        ? handleHeadBlob(ctx, c.req.param("digest") ?? "")
        : new Response("405 method not allowed", { status: 405 }),
  );
  route("post", "/api/blobs/:digest", (c) => handlePostBlob(ctx, c.req.param("digest") ?? "", c.req.raw));

  route("get", "/v1/models", () => handleOpenAIModels(ctx));
  route("get", "/v1/models/:id{.+}", (c) => handleOpenAIModel(ctx, c.req.param("id") ?? ""));
  route("post", "/v1/chat/completions", (c) => proxyOpenAI(ctx, c.req.raw, "/v1/chat/completions"));
  route("post", "/v1/completions", (c) => proxyOpenAI(ctx, c.req.raw, "/v1/completions"));
  route("post", "/v1/embeddings", (c) => proxyOpenAI(ctx, c.req.raw, "/v1/embeddings"));
  route("post", "/v1/responses", (c) => proxyOpenAI(ctx, c.req.raw, "/v1/responses"));
  route("post", "/v1/messages", (c) => proxyOpenAI(ctx, c.req.raw, "/v1/messages"));
  route("post", "/v1/messages/count_tokens", (c) => proxyOpenAI(ctx, c.req.raw, "/v1/messages/count_tokens"));
  return app;
}
