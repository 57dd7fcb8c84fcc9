/**
 * `POST /api/chat` on top of llama-server's `/v1/chat/completions` (its Jinja chat template, tool-call parser,
 * JSON-schema grammar and reasoning parser do the model-specific work): Ollama's request in, Ollama's NDJSON
 * lines out. The thinking of a model whose own Go template has thinking tags is split here, as Ollama does.
 *
 * @module
 */
import type { DaemonContext } from "../context.ts";
import { countsFor } from "../request_log.ts";
import { capabilitiesOf, findModel, modelMessages, modelOptions } from "../context.ts";
import { HttpError, readJsonBody } from "../http.ts";
import { parseKeepAlive } from "../keep_alive.ts";
import { parseOptions } from "../options.ts";
import { ChatRequestSchema } from "../types.ts";
import { embeddingOnly } from "../../models/mod.ts";
import { checkCapabilities } from "./capabilities.ts";
import {
  logprobFields,
  logprobsWanted,
  responseFormat,
  samplingFields,
  thinkFields,
  toOpenAIMessages,
} from "./to_llama.ts";
import { ChatEventParser } from "./events.ts";
import { lineShape, loadAnswer, runGeneration } from "./answer.ts";
import { servedThinkingTags, startsInside, ThinkingEventParser, thinkingOn } from "./thinking.ts";
import { renderGoTemplate, templateMessages } from "./template_exec.ts";

/**
 * Answers `/api/chat`.
 *
 * @example
 * ```ts
 * const res = await handleChat(ctx, req);
 * ```
 */
export async function handleChat(ctx: DaemonContext, req: Request): Promise<Response> {
  const startedAt = performance.now();
  const body = await readJsonBody(req, ChatRequestSchema);
  const model = await findModel(ctx, body.model, { emptyStatus: 400, emptyMessage: "model is required" });
  ctx.requests?.note(req, { model: body.model });
  const keepAliveMs = parseKeepAlive(body.keep_alive, ctx.defaultKeepAliveMs);
  const { load, sampling } = parseOptions(modelOptions(model, body.options));
  const top = logprobsWanted(body);
  if (embeddingOnly(model.entry)) throw new HttpError(400, `"${body.model}" does not support chat`);
  const caps = await capabilitiesOf(ctx, model);
  // As Ollama: checked before anything loads, also for an empty `messages`; `tools: []` (which the Python
  // client always sends) asks for nothing.
  if (body.tools?.length && !caps.includes("tools")) {
    throw new HttpError(400, `"${body.model}" does not support tools`);
  }
  const messages = body.messages ?? [];
  const base = { model: body.model, message: { role: "assistant", content: "" } };
  if (messages.length === 0) {
    if (body.keep_alive !== undefined && body.keep_alive !== null && keepAliveMs === 0) {
      await ctx.scheduler.expire(model);
      return loadAnswer(base, "unload");
    }
    const lease = await ctx.scheduler.acquire({ model, load, keepAliveMs });
    lease.release();
    return loadAnswer(base, "load");
  }
  checkCapabilities(body.model, caps, {
    think: body.think,
    images: messages.some((m) => m.images?.length),
  });
  const all = modelMessages(model, messages);
  // As Ollama: a model whose own Go template has thinking tags thinks unless told not to, and its answer is
  // split at those tags here, only when it thinks. llama-server's reasoning parser, which does not know the
  // tags (and splits a leading <think> even with thinking off), leaves the text as the model wrote it.
  const goTemplate = model.settings?.template;
  const modelTags = servedThinkingTags(model.settings);
  const rf = responseFormat(body.format);
  // With a format, llama-server's grammar binds from the first token, so such a model could not think before
  // its answer (Ollama lets it think, then asks again with the format): it is asked not to think.
  const think = modelTags && rf && thinkingOn(body.think ?? true)
    ? false
    : body.think ?? (modelTags ? true : undefined);
  const tags = thinkingOn(think) ? modelTags : undefined;
  const upstream: Record<string, unknown> = {
    messages: toOpenAIMessages(all),
    ...samplingFields(sampling),
    ...thinkFields(think),
    ...(modelTags ? { reasoning_format: "none" } : {}),
  };
  if (body.tools?.length) {
    // llama-server refuses log-probabilities for a streamed answer with tools, and the daemon always streams.
    if (top !== undefined) {
      throw new HttpError(
        400,
        "logprobs cannot be combined with tools here: llama-server does not give log-probabilities for a " +
          "streamed answer with tools; leave out logprobs or tools",
      );
    }
    upstream.tools = body.tools;
  }
  if (rf) upstream.response_format = rf;
  Object.assign(upstream, logprobFields(top, "chat"));
  const shape = lineShape(body.model, (p) => ({
    message: {
      role: "assistant",
      content: p.text,
      ...(p.thinking ? { thinking: p.thinking } : {}),
      ...(p.tools ? { tool_calls: p.tools } : {}),
    },
  }));
  const lease = await ctx.scheduler.acquire({ model, load, keepAliveMs });
  await ctx.arrivals.ready(req);
  const render = () => renderGoTemplate(goTemplate!, { messages: templateMessages(all), think });
  const inside = tags && startsInside(tags, render, lease.url, upstream);
  return await runGeneration({
    lease: ctx.requests?.hold(req, lease) ?? lease,
    path: "/v1/chat/completions",
    body: upstream,
    events: inside
      ? async () => new ThinkingEventParser(new ChatEventParser(top), tags, await inside)
      : () => new ChatEventParser(top),
    shape,
    stream: body.stream !== false,
    startedAt,
    counted: countsFor(ctx.requests, req),
    signal: req.signal,
  });
}
