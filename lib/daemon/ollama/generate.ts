/**
 * `POST /api/generate`: a prompt (with `system` and `images`, and `context` from an earlier answer) through
 * llama-server's chat template, a `raw` prompt through `/completion`, and a `suffix` (fill in the middle)
 * through `/infill`. A request's own `template` (an Ollama Go template) is rendered here, as Ollama renders
 * it, and the prompt it makes goes to `/completion` as written: images in it where Ollama's `[img-N]` tags
 * land, and the thinking split from the response at the thinking tags, as Ollama splits it. The answer of a
 * model whose own Go template has thinking tags is split at them too, `raw` included. A non-raw answer ends
 * with Ollama's `context`.
 *
 * @module
 */
import type { DaemonContext } from "../context.ts";
import { countsFor } from "../request_log.ts";
import { capabilitiesOf, findModel, modelOptions } from "../context.ts";
import { HttpError, readJsonBody } from "../http.ts";
import { parseKeepAlive } from "../keep_alive.ts";
import { parseOptions } from "../options.ts";
import { GenerateRequestSchema, type Message } from "../types.ts";
import { embeddingOnly } from "../../models/mod.ts";
import { checkCapabilities } from "./capabilities.ts";
import {
  completionSchema,
  imagePart,
  logprobFields,
  logprobsWanted,
  responseFormat,
  samplingFields,
  thinkFields,
  toOpenAIMessages,
} from "./to_llama.ts";
import { ChatEventParser, CompletionEventParser, type EventParser } from "./events.ts";
import { lineShape, loadAnswer, runGeneration } from "./answer.ts";
import { postJson } from "../upstream/client.ts";
import { TemplateError } from "./template.ts";
import { renderGoTemplate, type TemplateMessage, templateMessages } from "./template_exec.ts";
import {
  inferThinkingTags,
  servedThinkingTags,
  startsInside,
  ThinkingEventParser,
  thinkingOn,
  type ThinkingTags,
} from "./thinking.ts";
import { imagesError, imagesPrompt, imageTagged, multimodalPrompt } from "./images.ts";

/**
 * Answers `/api/generate`.
 *
 * @example
 * ```ts
 * const res = await handleGenerate(ctx, req);
 * ```
 */
export async function handleGenerate(ctx: DaemonContext, req: Request): Promise<Response> {
  const startedAt = performance.now();
  const body = await readJsonBody(req, GenerateRequestSchema);
  const top = logprobsWanted(body);
  ctx.requests?.note(req, { model: body.model });
  const model = await findModel(ctx, body.model, {
    emptyStatus: 404,
    emptyMessage: `model '${body.model}' not found`,
  });
  const keepAliveMs = parseKeepAlive(body.keep_alive, ctx.defaultKeepAliveMs);
  const { load, sampling } = parseOptions(modelOptions(model, body.options));
  const prompt = body.prompt ?? "";
  const base = { model: body.model, response: "" };
  if (prompt === "" && body.keep_alive !== undefined && body.keep_alive !== null && keepAliveMs === 0) {
    await ctx.scheduler.expire(model);
    return loadAnswer(base, "unload");
  }
  if (body.raw && (body.template || body.system || body.context?.length)) {
    throw new HttpError(400, "raw mode does not support template, system, or context");
  }
  if (embeddingOnly(model.entry)) throw new HttpError(400, `"${body.model}" does not support generate`);
  const modelTags = inferThinkingTags(model.settings?.template);
  // Through llama-server's chat template: only when that is the model's Go template.
  const servedTags = servedThinkingTags(model.settings);
  const caps = await capabilitiesOf(ctx, model);
  checkCapabilities(body.model, caps, {
    think: body.think,
    images: !!body.images?.length,
  });
  if (prompt === "") {
    const lease = await ctx.scheduler.acquire({ model, load, keepAliveMs });
    lease.release();
    return loadAnswer(base, "load");
  }
  let path: string;
  let upstream: Record<string, unknown>;
  let events: () => EventParser | Promise<EventParser> = () => new ChatEventParser(top);
  const completionEvents = () => new CompletionEventParser(top);
  // A prompt run as written through `/completion` (raw, or a conversation given back as `context`).
  const completion = (text: string) => ({
    prompt: text,
    ...samplingFields(sampling),
    ...completionSchema(body.format),
    ...logprobFields(top, "completion"),
  });
  // The conversation as Ollama builds it: the system prompt (the request's, else the model's), the model's own
  // messages (not when a conversation is given back as `context`), the prompt.
  const system = body.system || model.settings?.system;
  const modelMessages = body.context?.length ? [] : (model.settings?.messages ?? []) as Message[];
  let templated: string | undefined;
  const images = body.images ?? [];
  // As Ollama: a thinking model thinks unless the request says otherwise.
  const think = body.think ?? (caps.includes("thinking") ? true : undefined);
  // Where the answer is split here: with a format, llama-server's grammar binds from the first token, so the
  // model could not think before its answer (Ollama lets it think, then asks again with the format): it is
  // asked not to think.
  const ownThink = responseFormat(body.format) && thinkingOn(think) ? false : think;
  // A model whose own Go template has thinking tags has its answer split at them here when it thinks, as Ollama
  // splits it (llama-server's reasoning parser, which does not know the tags, leaves the text as written).
  const goTags = thinkingOn(ownThink) ? servedTags : undefined;
  if (body.template && !body.raw) {
    const userText = images.length ? imageTagged(prompt, images.length) : prompt;
    try {
      templated = renderGoTemplate(body.template, {
        messages: [
          ...(system ? [{ role: "system", content: system }] : []),
          ...modelMessages.map((m): TemplateMessage => ({
            role: String(m.role ?? "").toLowerCase(),
            content: typeof m.content === "string" ? m.content : "",
            ...(m.thinking ? { thinking: m.thinking } : {}),
          })),
          { role: "user", content: userText, ...(images.length ? { images } : {}) },
        ],
        prompt: userText,
        suffix: body.suffix ?? undefined,
        think: ownThink,
      });
    } catch (err) {
      if (err instanceof TemplateError) throw new HttpError(400, `template: ${err.message}`);
      throw err;
    }
    // Images the template leaves no place for, or that are not base64: a 400 before the model is loaded.
    if (images.length) multimodalPrompt("", templated, images, "");
  }
  if (templated !== undefined) {
    path = "/completion";
    events = completionEvents;
    upstream = completion(templated);
  } else if (body.suffix) {
    path = "/infill";
    events = completionEvents;
    upstream = {
      input_prefix: prompt,
      input_suffix: body.suffix,
      prompt: "",
      ...samplingFields(sampling),
      ...logprobFields(top, "completion"),
    };
  } else if (body.raw) {
    if (body.images?.length) throw new HttpError(400, "raw mode does not support images");
    path = "/completion";
    upstream = completion(prompt);
    // As Ollama: a raw answer is split too, the prompt given saying whether it starts inside the thinking.
    const tags = thinkingOn(ownThink)
      ? modelTags ?? jinjaThinkingTags(model.entry.facts.chatTemplate)
      : undefined;
    const inside = tags !== undefined && prompt.trimEnd().endsWith(tags.open);
    events = tags ? () => new ThinkingEventParser(completionEvents(), tags, inside) : completionEvents;
  } else {
    path = "/v1/chat/completions";
    const user = body.images?.length
      ? { role: "user", content: [{ type: "text", text: prompt }, ...body.images.map(imagePart)] }
      : { role: "user", content: prompt };
    upstream = {
      messages: [
        ...(system ? [{ role: "system", content: system }] : []),
        ...toOpenAIMessages(modelMessages),
        user,
      ],
      ...samplingFields(sampling),
      ...thinkFields(servedTags ? ownThink : body.think),
      ...(servedTags ? { reasoning_format: "none" } : {}),
      ...logprobFields(top, "chat"),
    };
    const rf = responseFormat(body.format);
    if (rf) upstream.response_format = rf;
  }
  if (body.context?.length && templated === undefined && (body.raw || body.suffix || body.images?.length)) {
    throw new HttpError(400, "context cannot be combined with raw, suffix or images here");
  }
  const name = body.model;
  const shape = lineShape(name, (p) => ({
    response: p.text,
    ...(p.thinking ? { thinking: p.thinking } : {}),
    ...(p.tools ? { tool_calls: p.tools } : {}),
  }));
  const lease = await ctx.scheduler.acquire({ model, load, keepAliveMs });
  let finish: ((text: string) => Promise<Record<string, unknown>>) | undefined;
  let begin: (() => void) | undefined;
  try {
    await ctx.arrivals.ready(req);
    if (templated !== undefined) {
      const turn = await templatedTurn(lease.url, templated, body.context ?? []);
      upstream = completion(turn.prompt);
      if (images.length) {
        upstream.prompt = await imagesPrompt(lease.url, turn.prior, templated, images);
      }
      const tags = thinkingOn(ownThink)
        ? modelTags ?? inferThinkingTags(body.template) ?? jinjaThinkingTags(model.entry.facts.chatTemplate)
        : undefined;
      if (tags) {
        // The answer starts inside the thinking when the prompt ends with the opening tag.
        const inside = turn.prompt.trimEnd().endsWith(tags.open);
        let split: ThinkingEventParser | undefined;
        events = () => (split = new ThinkingEventParser(completionEvents(), tags, inside));
        // The context is the conversation as the model wrote it, thinking and tags included.
        finish = (text) => turn.finish(split?.raw ?? text);
      } else finish = turn.finish;
    } else if (path === "/v1/chat/completions") {
      const turn = await conversation(lease.url, upstream, body.context ?? []);
      finish = turn.finish;
      begin = turn.begin;
      const chat = upstream;
      if (turn.prompt !== undefined) {
        // Going on from a context: the whole conversation as a plain completion.
        path = "/completion";
        events = completionEvents;
        upstream = completion(turn.prompt);
      }
      if (goTags) {
        const given = turn.prompt;
        const inner = given === undefined ? () => new ChatEventParser(top) : completionEvents;
        const render = () =>
          given ?? renderGoTemplate(model.settings!.template!, {
            messages: templateMessages([
              ...(system ? [{ role: "system", content: system }] : []),
              ...modelMessages,
              { role: "user", content: prompt },
            ]),
            think: ownThink,
          });
        const inside = startsInside(goTags, render, lease.url, chat);
        let split: ThinkingEventParser | undefined;
        events = async () => (split = new ThinkingEventParser(inner(), goTags, await inside));
        // The context is the conversation as the model wrote it, thinking and tags included.
        finish = (text) => turn.finish(split?.raw ?? text);
      }
    }
  } catch (err) {
    lease.release();
    throw err;
  }
  try {
    return await runGeneration({
      lease: ctx.requests?.hold(req, lease) ?? lease,
      path,
      body: upstream,
      events,
      shape,
      stream: body.stream !== false,
      startedAt,
      finish,
      begun: begin,
      counted: countsFor(ctx.requests, req),
      signal: req.signal,
    });
  } catch (err) {
    // llama-server answers 501 when the model has no fill-in-the-middle tokens; Ollama says it this way.
    if (body.suffix && err instanceof HttpError && err.status === 501) {
      throw new HttpError(400, `"${name}" does not support insert`);
    }
    throw images.length ? imagesError(err, name) : err;
  }
}

/** `<think>` and `</think>` when a model's own Jinja chat template writes them (Qwen3, DeepSeek-R1 and others). */
function jinjaThinkingTags(chatTemplate: string | undefined): ThinkingTags | undefined {
  return chatTemplate?.includes("<think>") && chatTemplate.includes("</think>")
    ? { open: "<think>", close: "</think>" }
    : undefined;
}

/**
 * A prompt rendered from the request's own template: after the conversation given back as `context` (as
 * text), and the final line's `context` from the whole (as Ollama returns it).
 */
async function templatedTurn(
  url: string,
  rendered: string,
  given: number[],
): Promise<
  { prior: string; prompt: string; finish: (answer: string) => Promise<Record<string, unknown>> }
> {
  const prior = given.length
    ? String((await postJson(url, "/detokenize", { tokens: given })).content ?? "")
    : "";
  const prompt = prior + rendered;
  const finish = async (answer: string) => {
    try {
      const r = await postJson(url, "/tokenize", { content: prompt + answer });
      return { context: r.tokens ?? [] };
    } catch {
      return {}; // the answer stands without its context
    }
  };
  return { prior, prompt, finish };
}

/**
 * Ollama's `context` for a templated generate: the conversation's tokens (the templated prompt and the answer),
 * which a client sends back to go on from there. Given one (`given`), the prompt to run is that conversation
 * (as text) followed by this turn through the chat template (`prompt`). Without one, the turn is rendered once
 * the answer has begun (`begin`: rendered beside the prompt's processing, it would delay the first token).
 * `finish` gives the final line's `context`.
 */
async function conversation(
  url: string,
  chat: Record<string, unknown>,
  given: number[],
): Promise<
  { prompt?: string; begin: () => void; finish: (answer: string) => Promise<Record<string, unknown>> }
> {
  let prompt: string | undefined;
  let rendered: Promise<string> | undefined;
  const begin = () => {
    if (rendered) return;
    rendered = postJson(url, "/apply-template", chat).then((r) => String(r.prompt ?? ""));
    rendered.catch(() => {});
  };
  if (given.length) {
    const [prior, turn] = await Promise.all([
      postJson(url, "/detokenize", { tokens: given }),
      postJson(url, "/apply-template", chat),
    ]).catch((err) => {
      // llama.cpp builds from before /apply-template (early 2025) cannot render a turn on its own.
      if (err instanceof HttpError && err.status === 404) {
        throw new HttpError(
          501,
          "going on from a context needs llama-server's /apply-template, which this instance's llama.cpp is too " +
            "old to have: update the instance (llama-mgr install -i NAME)",
        );
      }
      throw err;
    });
    prompt = String(prior.content ?? "") + String(turn.prompt ?? "");
    rendered = Promise.resolve(prompt);
  }
  const finish = async (answer: string) => {
    begin();
    try {
      const r = await postJson(url, "/tokenize", { content: (await rendered!) + answer });
      return { context: r.tokens ?? [] };
    } catch {
      return {}; // the answer stands without its context
    }
  };
  return { prompt, begin, finish };
}
