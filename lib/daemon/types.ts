/**
 * The daemon's wire types: every request body it accepts (zod schemas, used by the server to validate and by
 * the tests to build requests) and every response body it sends (zod schemas too, so tests check the exact
 * shape a client sees). Shapes follow Ollama's `api/types.go`; unknown request fields are ignored as Ollama
 * does; `options` stays a free map checked by {@linkcode ./options.ts}. Each body's type is written out as an
 * interface, and the compiler checks that it is exactly what its schema outputs.
 *
 * @example
 * ```ts ignore
 * import { daemonWire } from "../../mod.ts";
 * const r = await fetch("http://127.0.0.1:11434/api/tags");
 * for (const m of daemonWire.ListResponseSchema.parse(await r.json()).models) console.log(m.name);
 * ```
 *
 * @module
 */
import { z } from "../deps.ts";
import { exactly } from "../util/zod.ts";

// ---------------------------------------------------------------------------------------------------------
// Shared pieces

/**
 * `keep_alive`: seconds as a number, a Go duration string, or null (the default); its type is checked by
 * keep_alive.ts so the error names what Ollama names.
 *
 * @example
 * ```ts
 * KeepAliveSchema.parse("10m"); // "10m"
 * ```
 */
export const KeepAliveSchema: z.ZodOptional<z.ZodUnknown> = z.unknown().optional();

/**
 * `think`: true/false, or an effort level.
 *
 * @example
 * ```ts
 * ThinkSchema.parse("high"); // "high"
 * ```
 */
export const ThinkSchema: z.ZodOptional<z.ZodType<boolean | "low" | "medium" | "high" | "max" | null>> = z
  .union([z.boolean(), z.enum(["low", "medium", "high", "max"]), z.null()])
  .optional();

/**
 * `format`: `"json"`, a JSON schema object, or empty.
 *
 * @example
 * ```ts
 * FormatSchema.parse({ type: "object", properties: { answer: { type: "string" } } });
 * ```
 */
export const FormatSchema: z.ZodOptional<z.ZodType<string | Record<string, unknown> | null>> = z
  .union([z.string(), z.record(z.string(), z.unknown()), z.null()])
  .optional();

/**
 * `options`: a free map; known keys are type-checked by `parseOptions`.
 *
 * @example
 * ```ts
 * OptionsSchema.parse({ temperature: 0.2, num_ctx: 8192 });
 * ```
 */
export const OptionsSchema: z.ZodOptional<z.ZodType<Record<string, unknown> | null>> = z
  .record(z.string(), z.unknown())
  .nullable()
  .optional();

/**
 * A tool call inside a message. `arguments` is an object (Ollama), a JSON string is accepted too.
 *
 * @example
 * ```ts
 * const call: ToolCall = { function: { name: "get_weather", arguments: { city: "Paris" } } };
 * ```
 */
export interface ToolCall {
  /** The call's id (OpenAI clients send one). */
  id?: string;
  /** `function`. */
  type?: string;
  /** The function called. */
  function: {
    /** Position among the message's calls. */
    index?: number;
    /** The function's name. */
    name: string;
    /** Its arguments: an object, or that object as a JSON string. */
    arguments?: Record<string, unknown> | string;
  };
}

/**
 * The schema of {@linkcode ToolCall}.
 *
 * @example
 * ```ts
 * ToolCallSchema.parse({ function: { name: "get_weather", arguments: '{"city":"Paris"}' } });
 * ```
 */
export const ToolCallSchema: z.ZodType<ToolCall> = exactly<ToolCall>()(z.object({
  id: z.string().optional(),
  type: z.string().optional(),
  function: z.object({
    index: z.number().int().optional(),
    name: z.string(),
    arguments: z.union([z.record(z.string(), z.unknown()), z.string()]).optional(),
  }),
}));

/**
 * A chat message as received: `role` is lower-cased, `content` may be missing (the Python client drops falsy
 * fields). A type rather than an interface, so that a message is also a `Record<string, unknown>` (the model
 * settings store messages as plain maps).
 *
 * @example
 * ```ts
 * const message: Message = { role: "user", content: "Why is the sky blue?" };
 * ```
 */
export type Message = {
  /** `system`, `user`, `assistant` or `tool` (lower-cased). */
  role: string;
  /** The text. */
  content?: string | null;
  /** The model's reasoning (an assistant message sent back). */
  thinking?: string | null;
  /** Base64 images. */
  images?: string[] | null;
  /** Calls the assistant made. */
  tool_calls?: ToolCall[] | null;
  /** The tool a `tool` message answers for. */
  tool_name?: string | null;
  /** The call a `tool` message answers (OpenAI's way). */
  tool_call_id?: string | null;
};

/**
 * The schema of {@linkcode Message}.
 *
 * @example
 * ```ts
 * MessageSchema.parse({ role: "User", content: "hi" }).role; // "user"
 * ```
 */
export const MessageSchema: z.ZodType<Message> = exactly<Message>()(z.object({
  role: z.string().transform((r) => r.toLowerCase()),
  content: z.string().nullable().optional(),
  thinking: z.string().nullable().optional(),
  images: z.array(z.string()).nullable().optional(),
  tool_calls: z.array(ToolCallSchema).nullable().optional(),
  tool_name: z.string().nullable().optional(),
  tool_call_id: z.string().nullable().optional(),
}));

/**
 * A tool the model may call (OpenAI function shape); other fields pass through.
 *
 * @example
 * ```ts
 * const tool: Tool = {
 *   type: "function",
 *   function: { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } } } },
 * };
 * ```
 */
export interface Tool {
  /** `function` (the default). */
  type: string;
  /** The function. */
  function: {
    /** Its name. */
    name: string;
    /** What it does. */
    description?: string;
    /** Its parameters, as a JSON schema. */
    parameters?: Record<string, unknown>;
    /** Other fields, passed through. */
    [key: string]: unknown;
  };
  /** Other fields, passed through. */
  [key: string]: unknown;
}

/**
 * The schema of {@linkcode Tool}.
 *
 * @example
 * ```ts
 * ToolSchema.parse({ function: { name: "now" } }).type; // "function"
 * ```
 */
export const ToolSchema: z.ZodType<Tool> = exactly<Tool>()(
  z.object({
    type: z.string().default("function"),
    function: z.object({
      name: z.string(),
      description: z.string().optional(),
      parameters: z.record(z.string(), z.unknown()).optional(),
    }).passthrough(),
  }).passthrough(),
);

// ---------------------------------------------------------------------------------------------------------
// Requests

/**
 * A `POST /api/generate` body.
 *
 * @example
 * ```ts
 * const req: GenerateRequest = { model: "qwen3:4b", prompt: "Why is the sky blue?", stream: false };
 * ```
 */
export interface GenerateRequest {
  /** The model's name (empty: only valid to load or unload with an empty prompt). */
  model: string;
  /** The prompt. */
  prompt?: string | null;
  /** Text after the insertion point (fill-in-the-middle). */
  suffix?: string | null;
  /** System prompt, instead of the model's. */
  system?: string | null;
  /** Prompt template: an Ollama Go template (translated to Jinja for llama-server). */
  template?: string | null;
  /** An earlier response's `context`. */
  context?: number[] | null;
  /** Stream NDJSON lines (default true). */
  stream?: boolean | null;
  /** Send the prompt as is, without the chat template. */
  raw?: boolean | null;
  /** `"json"` or a JSON schema the answer must follow. */
  format?: string | Record<string, unknown> | null;
  /** How long the model stays loaded after this request. */
  keep_alive?: unknown;
  /** Base64 images. */
  images?: string[] | null;
  /** Model options (`temperature`, `num_ctx`, ...). */
  options?: Record<string, unknown> | null;
  /** Think first, or how hard. */
  think?: boolean | "low" | "medium" | "high" | "max" | null;
  /** Cut a prompt longer than the context (default true). */
  truncate?: boolean | null;
  /** Shift the context when it fills up (default true). */
  shift?: boolean | null;
  /** Return each token's log-probability. */
  logprobs?: boolean | null;
  /** How many likeliest tokens to return at each place. */
  top_logprobs?: number | null;
}

/**
 * The schema of {@linkcode GenerateRequest}.
 *
 * @example
 * ```ts
 * GenerateRequestSchema.parse({ model: "qwen3:4b", prompt: "hi" });
 * ```
 */
export const GenerateRequestSchema: z.ZodType<GenerateRequest> = exactly<GenerateRequest>()(z.object({
  model: z.string().default(""),
  prompt: z.string().nullable().optional(),
  suffix: z.string().nullable().optional(),
  system: z.string().nullable().optional(),
  template: z.string().nullable().optional(),
  context: z.array(z.number().int()).nullable().optional(),
  stream: z.boolean().nullable().optional(),
  raw: z.boolean().nullable().optional(),
  format: FormatSchema,
  keep_alive: KeepAliveSchema,
  images: z.array(z.string()).nullable().optional(),
  options: OptionsSchema,
  think: ThinkSchema,
  truncate: z.boolean().nullable().optional(),
  shift: z.boolean().nullable().optional(),
  logprobs: z.boolean().nullable().optional(),
  top_logprobs: z.number().int().nullable().optional(),
}));

/**
 * A `POST /api/chat` body.
 *
 * @example
 * ```ts
 * const req: ChatRequest = { model: "qwen3:4b", messages: [{ role: "user", content: "hi" }], stream: false };
 * ```
 */
export interface ChatRequest {
  /** The model's name (empty: only valid to load or unload with no messages). */
  model: string;
  /** The conversation. */
  messages?: Message[] | null;
  /** Stream NDJSON lines (default true). */
  stream?: boolean | null;
  /** `"json"` or a JSON schema the answer must follow. */
  format?: string | Record<string, unknown> | null;
  /** How long the model stays loaded after this request. */
  keep_alive?: unknown;
  /** Tools the model may call. */
  tools?: Tool[] | null;
  /** Model options (`temperature`, `num_ctx`, ...). */
  options?: Record<string, unknown> | null;
  /** Think first, or how hard. */
  think?: boolean | "low" | "medium" | "high" | "max" | null;
  /** Cut a conversation longer than the context (default true). */
  truncate?: boolean | null;
  /** Shift the context when it fills up (default true). */
  shift?: boolean | null;
  /** Return each token's log-probability. */
  logprobs?: boolean | null;
  /** How many likeliest tokens to return at each place. */
  top_logprobs?: number | null;
}

/**
 * The schema of {@linkcode ChatRequest}.
 *
 * @example
 * ```ts
 * ChatRequestSchema.parse({ model: "qwen3:4b", messages: [{ role: "user", content: "hi" }] });
 * ```
 */
export const ChatRequestSchema: z.ZodType<ChatRequest> = exactly<ChatRequest>()(z.object({
  model: z.string().default(""),
  messages: z.array(MessageSchema).nullable().optional(),
  stream: z.boolean().nullable().optional(),
  format: FormatSchema,
  keep_alive: KeepAliveSchema,
  tools: z.array(ToolSchema).nullable().optional(),
  options: OptionsSchema,
  think: ThinkSchema,
  truncate: z.boolean().nullable().optional(),
  shift: z.boolean().nullable().optional(),
  logprobs: z.boolean().nullable().optional(),
  top_logprobs: z.number().int().nullable().optional(),
}));

/**
 * A `POST /api/embed` body: `input` is checked by the handler so a wrong type gets Ollama's message.
 *
 * @example
 * ```ts
 * const req: EmbedRequest = { model: "all-minilm", input: ["first text", "second text"] };
 * ```
 */
export interface EmbedRequest {
  /** The model's name. */
  model: string;
  /** A string or an array of strings. */
  input?: unknown;
  /** How long the model stays loaded after this request. */
  keep_alive?: unknown;
  /** Cut an input longer than the context (default true). */
  truncate?: boolean | null;
  /** Keep only the first N dimensions. */
  dimensions?: number | null;
  /** Model options. */
  options?: Record<string, unknown> | null;
}

/**
 * The schema of {@linkcode EmbedRequest}.
 *
 * @example
 * ```ts
 * EmbedRequestSchema.parse({ model: "all-minilm", input: "text" });
 * ```
 */
export const EmbedRequestSchema: z.ZodType<EmbedRequest> = exactly<EmbedRequest>()(z.object({
  model: z.string().default(""),
  input: z.unknown().optional(),
  keep_alive: KeepAliveSchema,
  truncate: z.boolean().nullable().optional(),
  dimensions: z.number().int().nonnegative().nullable().optional(),
  options: OptionsSchema,
}));

/**
 * A `POST /api/embeddings` body (the older endpoint).
 *
 * @example
 * ```ts
 * const req: EmbeddingsRequest = { model: "all-minilm", prompt: "text" };
 * ```
 */
export interface EmbeddingsRequest {
  /** The model's name. */
  model: string;
  /** The text. */
  prompt?: string | null;
  /** How long the model stays loaded after this request. */
  keep_alive?: unknown;
  /** Model options. */
  options?: Record<string, unknown> | null;
}

/**
 * The schema of {@linkcode EmbeddingsRequest}.
 *
 * @example
 * ```ts
 * EmbeddingsRequestSchema.parse({ model: "all-minilm", prompt: "text" });
 * ```
 */
export const EmbeddingsRequestSchema: z.ZodType<EmbeddingsRequest> = exactly<EmbeddingsRequest>()(z.object({
  model: z.string().default(""),
  prompt: z.string().nullable().optional(),
  keep_alive: KeepAliveSchema,
  options: OptionsSchema,
}));

/**
 * A `POST /api/show` body (`name` is the older spelling of `model`).
 *
 * @example
 * ```ts
 * const req: ShowRequest = { model: "qwen3:4b", verbose: true };
 * ```
 */
export interface ShowRequest {
  /** The model's name. */
  model?: string;
  /** The model's name (older spelling). */
  name?: string;
  /** Include long metadata arrays (the vocabulary). */
  verbose?: boolean | null;
  /** A system prompt to show instead of the model's. */
  system?: string | null;
  /** A template to show instead of the model's. */
  template?: string | null;
  /** Options to show over the model's. */
  options?: Record<string, unknown> | null;
}

/**
 * The schema of {@linkcode ShowRequest}.
 *
 * @example
 * ```ts
 * ShowRequestSchema.parse({ name: "qwen3:4b" });
 * ```
 */
export const ShowRequestSchema: z.ZodType<ShowRequest> = exactly<ShowRequest>()(z.object({
  model: z.string().optional(),
  name: z.string().optional(),
  verbose: z.boolean().nullable().optional(),
  system: z.string().nullable().optional(),
  template: z.string().nullable().optional(),
  options: OptionsSchema,
}));

/**
 * A `POST /api/copy` body.
 *
 * @example
 * ```ts
 * const req: CopyRequest = { source: "qwen3:4b", destination: "mine:latest" };
 * ```
 */
export interface CopyRequest {
  /** The existing name. */
  source: string;
  /** The new name. */
  destination: string;
}

/**
 * The schema of {@linkcode CopyRequest}.
 *
 * @example
 * ```ts
 * CopyRequestSchema.parse({ source: "qwen3:4b", destination: "mine" });
 * ```
 */
export const CopyRequestSchema: z.ZodType<CopyRequest> = exactly<CopyRequest>()(z.object({
  source: z.string().default(""),
  destination: z.string().default(""),
}));

/**
 * A `DELETE /api/delete` body.
 *
 * @example
 * ```ts
 * const req: DeleteRequest = { model: "mine:latest" };
 * ```
 */
export interface DeleteRequest {
  /** The name to delete. */
  model?: string;
  /** The name to delete (older spelling). */
  name?: string;
}

/**
 * The schema of {@linkcode DeleteRequest}.
 *
 * @example
 * ```ts
 * DeleteRequestSchema.parse({ model: "mine" });
 * ```
 */
export const DeleteRequestSchema: z.ZodType<DeleteRequest> = exactly<DeleteRequest>()(z.object({
  model: z.string().optional(),
  name: z.string().optional(),
}));

/**
 * A `POST /api/pull` and `/api/push` body.
 *
 * @example
 * ```ts
 * const req: PullRequest = { model: "qwen3:4b", stream: false };
 * ```
 */
export interface PullRequest {
  /** The model's name. */
  model?: string;
  /** The model's name (older spelling). */
  name?: string;
  /** Allow an insecure registry. */
  insecure?: boolean | null;
  /** Stream progress lines (default true). */
  stream?: boolean | null;
}

/**
 * The schema of {@linkcode PullRequest}.
 *
 * @example
 * ```ts
 * PullRequestSchema.parse({ model: "qwen3:4b" });
 * ```
 */
export const PullRequestSchema: z.ZodType<PullRequest> = exactly<PullRequest>()(z.object({
  model: z.string().optional(),
  name: z.string().optional(),
  insecure: z.boolean().nullable().optional(),
  stream: z.boolean().nullable().optional(),
}));

/**
 * A `POST /api/create` body.
 *
 * @example
 * ```ts
 * const req: CreateRequest = {
 *   model: "pirate",
 *   from: "qwen3:4b",
 *   system: "Answer like a pirate.",
 *   parameters: { temperature: 0.2 },
 * };
 * ```
 */
export interface CreateRequest {
  /** The new name. */
  model?: string;
  /** The new name (older spelling). */
  name?: string;
  /** The model it is made from. */
  from?: string | null;
  /** GGUF files uploaded as blobs: file name -> `sha256:<digest>`. */
  files?: Record<string, string> | null;
  /** Stream progress lines (default true). */
  stream?: boolean | null;
  /** Quantize to this type (from an F16, BF16 or F32 model), e.g. `Q4_K_M`. */
  quantize?: string | null;
  /** Quantization (older spelling). */
  quantization?: string | null;
  /** One LoRA adapter uploaded as a blob: file name -> `sha256:<digest>`. */
  adapters?: Record<string, string> | null;
  /** System prompt. */
  system?: string | null;
  /** Prompt template: an Ollama Go template (translated to Jinja for llama-server). */
  template?: string | null;
  /** License text(s). */
  license?: string | string[] | null;
  /** Default options. */
  parameters?: Record<string, unknown> | null;
  /** Messages that start every conversation. */
  messages?: Message[] | null;
}

/**
 * The schema of {@linkcode CreateRequest}.
 *
 * @example
 * ```ts
 * CreateRequestSchema.parse({ model: "pirate", from: "qwen3:4b" });
 * ```
 */
export const CreateRequestSchema: z.ZodType<CreateRequest> = exactly<CreateRequest>()(z.object({
  model: z.string().optional(),
  name: z.string().optional(),
  from: z.string().nullable().optional(),
  files: z.record(z.string(), z.string()).nullable().optional(),
  stream: z.boolean().nullable().optional(),
  quantize: z.string().nullable().optional(),
  quantization: z.string().nullable().optional(),
  adapters: z.record(z.string(), z.string()).nullable().optional(),
  system: z.string().nullable().optional(),
  template: z.string().nullable().optional(),
  license: z.union([z.string(), z.array(z.string())]).nullable().optional(),
  parameters: z.record(z.string(), z.unknown()).nullable().optional(),
  messages: z.array(MessageSchema).nullable().optional(),
}));

// ---------------------------------------------------------------------------------------------------------
// Responses

/**
 * `details` of a model in tags, ps and show.
 *
 * @example
 * ```ts
 * const details: ModelDetails = {
 *   parent_model: "",
 *   format: "gguf",
 *   family: "qwen3",
 *   families: ["qwen3"],
 *   parameter_size: "4.0B",
 *   quantization_level: "Q4_K_M",
 * };
 * ```
 */
export interface ModelDetails {
  /** The model it was made from (empty). */
  parent_model: string;
  /** `gguf`. */
  format: string;
  /** The architecture. */
  family: string;
  /** The architectures (the model's and its projector's). */
  families: string[] | null;
  /** Parameters, e.g. `4.0B`. */
  parameter_size: string;
  /** File type, e.g. `Q4_K_M`. */
  quantization_level: string;
}

/**
 * The schema of {@linkcode ModelDetails}.
 *
 * @example
 * ```ts
 * ModelDetailsSchema.safeParse({ format: "gguf" }).success; // false
 * ```
 */
export const ModelDetailsSchema: z.ZodType<ModelDetails> = exactly<ModelDetails>()(z.object({
  parent_model: z.string(),
  format: z.string(),
  family: z.string(),
  families: z.array(z.string()).nullable(),
  parameter_size: z.string(),
  quantization_level: z.string(),
}));

/**
 * One entry of `GET /api/tags`.
 *
 * @example
 * ```ts
 * function line(m: ListModel): string {
 *   return `${m.name} ${m.details.parameter_size} ${m.size} bytes`;
 * }
 * ```
 */
export interface ListModel {
  /** The model's name. */
  name: string;
  /** The model's name, again. */
  model: string;
  /** When the file last changed (RFC 3339). */
  modified_at: string;
  /** File size in bytes. */
  size: number;
  /** An identifier of the file (sha256 for Ollama's store). */
  digest: string;
  /** Family, size and quantization. */
  details: ModelDetails;
  /** `completion`, `embedding`, `vision`, `tools`, `thinking`, `insert`. */
  capabilities?: string[];
}

/**
 * The schema of {@linkcode ListModel}.
 *
 * @example
 * ```ts ignore
 * const r = await fetch("http://127.0.0.1:11434/api/tags");
 * const first = ListModelSchema.parse((await r.json()).models[0]);
 * ```
 */
export const ListModelSchema: z.ZodType<ListModel> = exactly<ListModel>()(z.object({
  name: z.string(),
  model: z.string(),
  modified_at: z.string(),
  size: z.number().int(),
  digest: z.string(),
  details: ModelDetailsSchema,
  capabilities: z.array(z.string()).optional(),
}));

/**
 * The `GET /api/tags` body.
 *
 * @example
 * ```ts
 * const empty: ListResponse = { models: [] };
 * ```
 */
export interface ListResponse {
  /** Every model. */
  models: ListModel[];
}

/**
 * The schema of {@linkcode ListResponse}.
 *
 * @example
 * ```ts ignore
 * const r = await fetch("http://127.0.0.1:11434/api/tags");
 * const names = ListResponseSchema.parse(await r.json()).models.map((m) => m.name);
 * ```
 */
export const ListResponseSchema: z.ZodType<ListResponse> = exactly<ListResponse>()(
  z.object({ models: z.array(ListModelSchema) }),
);

/**
 * One entry of `GET /api/ps`.
 *
 * @example
 * ```ts
 * function line(m: ProcessModel): string {
 *   return `${m.name} ctx ${m.context_length} until ${m.expires_at}`;
 * }
 * ```
 */
export interface ProcessModel {
  /** The name it was loaded under. */
  name: string;
  /** The same name. */
  model: string;
  /** Estimated memory in bytes. */
  size: number;
  /** An identifier of the file. */
  digest: string;
  /** Family, size and quantization. */
  details: ModelDetails;
  /** When it unloads (RFC 3339). */
  expires_at: string;
  /** Bytes of `size` in GPU memory. */
  size_vram: number;
  /** The context it runs with. */
  context_length: number;
  /** llama-mgr's own: the llama-server that runs it, whose log `llama-mgr server logs RUNNER` shows. */
  runner?: string;
}

/**
 * The schema of {@linkcode ProcessModel}.
 *
 * @example
 * ```ts ignore
 * const r = await fetch("http://127.0.0.1:11434/api/ps");
 * const first = ProcessModelSchema.parse((await r.json()).models[0]);
 * ```
 */
export const ProcessModelSchema: z.ZodType<ProcessModel> = exactly<ProcessModel>()(z.object({
  name: z.string(),
  model: z.string(),
  size: z.number().int(),
  digest: z.string(),
  details: ModelDetailsSchema,
  expires_at: z.string(),
  size_vram: z.number().int(),
  context_length: z.number().int(),
  runner: z.string().optional(),
}));

/**
 * The `GET /api/ps` body.
 *
 * @example
 * ```ts
 * const none: ProcessResponse = { models: [] };
 * ```
 */
export interface ProcessResponse {
  /** The loaded models. */
  models: ProcessModel[];
}

/**
 * The schema of {@linkcode ProcessResponse}.
 *
 * @example
 * ```ts ignore
 * const r = await fetch("http://127.0.0.1:11434/api/ps");
 * const loaded = ProcessResponseSchema.parse(await r.json()).models.length;
 * ```
 */
export const ProcessResponseSchema: z.ZodType<ProcessResponse> = exactly<ProcessResponse>()(
  z.object({ models: z.array(ProcessModelSchema) }),
);

/**
 * The `POST /api/show` body.
 *
 * @example
 * ```ts
 * function contextLength(show: ShowResponse): unknown {
 *   return show.model_info[`${show.details.family}.context_length`];
 * }
 * ```
 */
export interface ShowResponse {
  /** The license. */
  license?: string;
  /** A Modelfile that makes this model. */
  modelfile?: string;
  /** The default options, one `name value` a line. */
  parameters?: string;
  /** The chat template. */
  template?: string;
  /** The system prompt. */
  system?: string;
  /** Family, size and quantization. */
  details: ModelDetails;
  /** Every metadata key of the file (long arrays empty unless verbose). */
  model_info: Record<string, unknown>;
  /** The projector's metadata, for a vision model. */
  projector_info?: Record<string, unknown>;
  /** `completion`, `embedding`, `vision`, `tools`, `thinking`, `insert`. */
  capabilities?: string[];
  /** Messages that start every conversation. */
  messages?: Record<string, unknown>[];
  /** The tensors (verbose only). */
  tensors?: { name: string; type: string; shape: number[] }[];
  /** When the file last changed (RFC 3339). */
  modified_at: string;
}

/**
 * The schema of {@linkcode ShowResponse}.
 *
 * @example
 * ```ts ignore
 * const r = await fetch("http://127.0.0.1:11434/api/show", { method: "POST", body: '{"model":"qwen3:4b"}' });
 * console.log(ShowResponseSchema.parse(await r.json()).capabilities);
 * ```
 */
export const ShowResponseSchema: z.ZodType<ShowResponse> = exactly<ShowResponse>()(z.object({
  license: z.string().optional(),
  modelfile: z.string().optional(),
  parameters: z.string().optional(),
  template: z.string().optional(),
  system: z.string().optional(),
  details: ModelDetailsSchema,
  model_info: z.record(z.string(), z.unknown()),
  projector_info: z.record(z.string(), z.unknown()).optional(),
  capabilities: z.array(z.string()).optional(),
  messages: z.array(z.record(z.string(), z.unknown())).optional(),
  tensors: z.array(z.object({ name: z.string(), type: z.string(), shape: z.array(z.number()) })).optional(),
  modified_at: z.string(),
}));

/**
 * Timing counters shared by generate and chat (durations in nanoseconds).
 *
 * @example
 * ```ts
 * const tokensPerSecond = (m: Metrics) => (m.eval_count ?? 0) / ((m.eval_duration ?? 1) / 1e9);
 * ```
 */
export interface Metrics {
  /** The whole request. */
  total_duration?: number;
  /** Loading the model. */
  load_duration?: number;
  /** Prompt tokens. */
  prompt_eval_count?: number;
  /** Reading the prompt. */
  prompt_eval_duration?: number;
  /** Generated tokens. */
  eval_count?: number;
  /** Generating. */
  eval_duration?: number;
}

const metricsShape = {
  total_duration: z.number().int().optional(),
  load_duration: z.number().int().optional(),
  prompt_eval_count: z.number().int().optional(),
  prompt_eval_duration: z.number().int().optional(),
  eval_count: z.number().int().optional(),
  eval_duration: z.number().int().optional(),
};

/**
 * The schema of {@linkcode Metrics}.
 *
 * @example
 * ```ts
 * MetricsSchema.parse({ eval_count: 12, eval_duration: 240_000_000 });
 * ```
 */
export const MetricsSchema: z.ZodType<Metrics> = exactly<Metrics>()(z.object(metricsShape));

/**
 * Why a generation ended: `stop`, `length`, or `load`/`unload` for a request that only loaded or unloaded.
 *
 * @example
 * ```ts
 * const truncated = (reason: DoneReason | undefined) => reason === "length";
 * ```
 */
export type DoneReason = "stop" | "length" | "load" | "unload";

/**
 * The schema of {@linkcode DoneReason}.
 *
 * @example
 * ```ts
 * DoneReasonSchema.safeParse("timeout").success; // false
 * ```
 */
export const DoneReasonSchema: z.ZodType<DoneReason> = exactly<DoneReason>()(
  z.enum(["stop", "length", "load", "unload"]),
);

/**
 * A token's log-probability (Ollama's `TokenLogprob`): its text, its log-probability and its bytes.
 *
 * @example
 * ```ts
 * const p: TokenLogprob = { token: " blue", logprob: -0.02, bytes: [32, 98, 108, 117, 101] };
 * ```
 */
export interface TokenLogprob {
  /** The token's text. */
  token: string;
  /** Its natural log-probability. */
  logprob: number;
  /** Its UTF-8 bytes. */
  bytes?: number[];
}

const tokenLogprobShape = {
  token: z.string(),
  logprob: z.number(),
  bytes: z.array(z.number().int()).optional(),
};

/**
 * The schema of {@linkcode TokenLogprob}.
 *
 * @example
 * ```ts
 * TokenLogprobSchema.parse({ token: "a", logprob: -1.5 });
 * ```
 */
export const TokenLogprobSchema: z.ZodType<TokenLogprob> = exactly<TokenLogprob>()(
  z.object(tokenLogprobShape),
);

/**
 * A generated token's log-probability, with the likeliest tokens at its place when `top_logprobs` asked.
 *
 * @example
 * ```ts
 * const p: Logprob = { token: " blue", logprob: -0.02, top_logprobs: [{ token: " blue", logprob: -0.02 }] };
 * ```
 */
export interface Logprob extends TokenLogprob {
  /** The likeliest tokens at this place, likeliest first. */
  top_logprobs?: TokenLogprob[];
}

/**
 * The schema of {@linkcode Logprob}.
 *
 * @example
 * ```ts
 * LogprobSchema.parse({ token: "a", logprob: -1.5, top_logprobs: [] });
 * ```
 */
export const LogprobSchema: z.ZodType<Logprob> = exactly<Logprob>()(z.object({
  ...tokenLogprobShape,
  top_logprobs: z.array(TokenLogprobSchema).optional(),
}));

/**
 * One line (or the whole body) of `POST /api/generate`.
 *
 * @example
 * ```ts
 * const last: GenerateResponse = {
 *   model: "qwen3:4b",
 *   created_at: "2025-01-01T00:00:00Z",
 *   response: "",
 *   done: true,
 *   done_reason: "stop",
 * };
 * ```
 */
export interface GenerateResponse extends Metrics {
  /** The model's name. */
  model: string;
  /** When this line was made (RFC 3339). */
  created_at: string;
  /** The text generated (this line's piece when streaming). */
  response: string;
  /** The reasoning generated. */
  thinking?: string;
  /** The last line. */
  done: boolean;
  /** Why it ended (last line). */
  done_reason?: DoneReason;
  /** Context to send back with the next request. */
  context?: number[];
  /** Calls the model made. */
  tool_calls?: ToolCall[];
  /** Log-probabilities of the tokens of this line. */
  logprobs?: Logprob[];
}

/**
 * The schema of {@linkcode GenerateResponse}.
 *
 * @example
 * ```ts ignore
 * const r = await fetch("http://127.0.0.1:11434/api/generate", {
 *   method: "POST",
 *   body: JSON.stringify({ model: "qwen3:4b", prompt: "hi", stream: false }),
 * });
 * console.log(GenerateResponseSchema.parse(await r.json()).response);
 * ```
 */
export const GenerateResponseSchema: z.ZodType<GenerateResponse> = exactly<GenerateResponse>()(z.object({
  ...metricsShape,
  model: z.string(),
  created_at: z.string(),
  response: z.string(),
  thinking: z.string().optional(),
  done: z.boolean(),
  done_reason: DoneReasonSchema.optional(),
  context: z.array(z.number()).optional(),
  tool_calls: z.array(ToolCallSchema).optional(),
  logprobs: z.array(LogprobSchema).optional(),
}));

/**
 * The assistant message of a chat response.
 *
 * @example
 * ```ts
 * const m: ResponseMessage = { role: "assistant", content: "Rayleigh scattering." };
 * ```
 */
export interface ResponseMessage {
  /** `assistant`. */
  role: string;
  /** The text (this line's piece when streaming). */
  content: string;
  /** The reasoning. */
  thinking?: string;
  /** Images (never sent by llama-server). */
  images?: string[];
  /** Calls the model made. */
  tool_calls?: {
    /** The call's id. */
    id?: string;
    /** The function called. */
    function: { index: number; name: string; arguments: Record<string, unknown> };
  }[];
}

/**
 * The schema of {@linkcode ResponseMessage}.
 *
 * @example
 * ```ts
 * ResponseMessageSchema.parse({ role: "assistant", content: "hi" });
 * ```
 */
export const ResponseMessageSchema: z.ZodType<ResponseMessage> = exactly<ResponseMessage>()(z.object({
  role: z.string(),
  content: z.string(),
  thinking: z.string().optional(),
  images: z.array(z.string()).optional(),
  tool_calls: z.array(z.object({
    id: z.string().optional(),
    function: z.object({
      index: z.number().int(),
      name: z.string(),
      arguments: z.record(z.string(), z.unknown()),
    }),
  })).optional(),
}));

/**
 * One line (or the whole body) of `POST /api/chat`.
 *
 * @example
 * ```ts
 * const last: ChatResponse = {
 *   model: "qwen3:4b",
 *   created_at: "2025-01-01T00:00:00Z",
 *   message: { role: "assistant", content: "" },
 *   done: true,
 *   done_reason: "stop",
 * };
 * ```
 */
export interface ChatResponse extends Metrics {
  /** The model's name. */
  model: string;
  /** When this line was made (RFC 3339). */
  created_at: string;
  /** The assistant's message (this line's piece when streaming). */
  message: ResponseMessage;
  /** The last line. */
  done: boolean;
  /** Why it ended (last line). */
  done_reason?: DoneReason;
  /** Log-probabilities of the tokens of this line. */
  logprobs?: Logprob[];
}

/**
 * The schema of {@linkcode ChatResponse}.
 *
 * @example
 * ```ts ignore
 * const r = await fetch("http://127.0.0.1:11434/api/chat", {
 *   method: "POST",
 *   body: JSON.stringify({ model: "qwen3:4b", messages: [{ role: "user", content: "hi" }], stream: false }),
 * });
 * console.log(ChatResponseSchema.parse(await r.json()).message.content);
 * ```
 */
export const ChatResponseSchema: z.ZodType<ChatResponse> = exactly<ChatResponse>()(z.object({
  ...metricsShape,
  model: z.string(),
  created_at: z.string(),
  message: ResponseMessageSchema,
  done: z.boolean(),
  done_reason: DoneReasonSchema.optional(),
  logprobs: z.array(LogprobSchema).optional(),
}));

/**
 * The `POST /api/embed` body.
 *
 * @example
 * ```ts
 * const dims = (e: EmbedResponse) => e.embeddings[0]?.length ?? 0;
 * ```
 */
export interface EmbedResponse {
  /** The model's name. */
  model: string;
  /** One vector per input. */
  embeddings: number[][];
  /** The whole request, in nanoseconds. */
  total_duration?: number;
  /** Loading the model, in nanoseconds. */
  load_duration?: number;
  /** Tokens read. */
  prompt_eval_count?: number;
}

/**
 * The schema of {@linkcode EmbedResponse}.
 *
 * @example
 * ```ts
 * EmbedResponseSchema.parse({ model: "all-minilm", embeddings: [[0.1, 0.2]] });
 * ```
 */
export const EmbedResponseSchema: z.ZodType<EmbedResponse> = exactly<EmbedResponse>()(z.object({
  model: z.string(),
  embeddings: z.array(z.array(z.number())),
  total_duration: z.number().int().optional(),
  load_duration: z.number().int().optional(),
  prompt_eval_count: z.number().int().optional(),
}));

/**
 * The `POST /api/embeddings` body.
 *
 * @example
 * ```ts
 * const e: EmbeddingsResponse = { embedding: [0.1, 0.2] };
 * ```
 */
export interface EmbeddingsResponse {
  /** The vector. */
  embedding: number[];
}

/**
 * The schema of {@linkcode EmbeddingsResponse}.
 *
 * @example
 * ```ts
 * EmbeddingsResponseSchema.parse({ embedding: [0.1, 0.2] });
 * ```
 */
export const EmbeddingsResponseSchema: z.ZodType<EmbeddingsResponse> = exactly<EmbeddingsResponse>()(
  z.object({ embedding: z.array(z.number()) }),
);

/**
 * A progress line of pull, create and push.
 *
 * @example
 * ```ts
 * const line: ProgressResponse = { status: "success" };
 * ```
 */
export interface ProgressResponse {
  /** What is happening, `success` at the end. */
  status: string;
  /** The blob being transferred. */
  digest?: string;
  /** Its size. */
  total?: number;
  /** Bytes done. */
  completed?: number;
}

/**
 * The schema of {@linkcode ProgressResponse}.
 *
 * @example
 * ```ts
 * ProgressResponseSchema.parse({ status: "writing manifest" });
 * ```
 */
export const ProgressResponseSchema: z.ZodType<ProgressResponse> = exactly<ProgressResponse>()(z.object({
  status: z.string(),
  digest: z.string().optional(),
  total: z.number().optional(),
  completed: z.number().optional(),
}));

/**
 * The Ollama error body.
 *
 * @example
 * ```ts
 * const err: ErrorResponse = { error: "model 'x' not found" };
 * ```
 */
export interface ErrorResponse {
  /** The message. */
  error: string;
}

/**
 * The schema of {@linkcode ErrorResponse}.
 *
 * @example
 * ```ts
 * ErrorResponseSchema.parse({ error: "model is required" }).error;
 * ```
 */
export const ErrorResponseSchema: z.ZodType<ErrorResponse> = exactly<ErrorResponse>()(
  z.object({ error: z.string() }),
);

/**
 * The OpenAI error body (the `/v1` endpoints).
 *
 * @example
 * ```ts
 * const err: OpenAIError = {
 *   error: { message: "model 'x' not found", type: "not_found_error", param: null, code: null },
 * };
 * ```
 */
export interface OpenAIError {
  /** The error. */
  error: {
    /** The message. */
    message: string;
    /** Its kind, e.g. `invalid_request_error`. */
    type: string;
    /** The parameter at fault. */
    param: string | null;
    /** A code. */
    code: string | null;
  };
}

/**
 * The schema of {@linkcode OpenAIError}.
 *
 * @example
 * ```ts ignore
 * const r = await fetch("http://127.0.0.1:11434/v1/models/nothing");
 * console.log(OpenAIErrorSchema.parse(await r.json()).error.message);
 * ```
 */
export const OpenAIErrorSchema: z.ZodType<OpenAIError> = exactly<OpenAIError>()(z.object({
  error: z.object({
    message: z.string(),
    type: z.string(),
    param: z.string().nullable(),
    code: z.string().nullable(),
  }),
}));

/**
 * A `GET /v1/models` entry.
 *
 * @example
 * ```ts
 * const m: OpenAIModel = { id: "qwen3:4b", object: "model", created: 1735689600, owned_by: "library" };
 * ```
 */
export interface OpenAIModel {
  /** The model's name. */
  id: string;
  /** `model`. */
  object: "model";
  /** When the file last changed (Unix seconds). */
  created: number;
  /** Its namespace (`library` for a bare name). */
  owned_by: string;
}

/**
 * The schema of {@linkcode OpenAIModel}.
 *
 * @example
 * ```ts ignore
 * const r = await fetch("http://127.0.0.1:11434/v1/models/qwen3:4b");
 * console.log(OpenAIModelSchema.parse(await r.json()).owned_by);
 * ```
 */
export const OpenAIModelSchema: z.ZodType<OpenAIModel> = exactly<OpenAIModel>()(z.object({
  id: z.string(),
  object: z.literal("model"),
  created: z.number().int(),
  owned_by: z.string(),
}));

/**
 * Turns a zod error into one line that names the fields, e.g.
 * `invalid request: messages.0.role: expected string, received number`.
 *
 * @example
 * ```ts
 * const r = ChatRequestSchema.safeParse({ model: 1 });
 * if (!r.success) console.log(describeZodError(r.error));
 * ```
 */
export function describeZodError(err: z.ZodError): string {
  const parts = err.issues.slice(0, 3).map((i) => {
    const path = i.path.map(String).join(".");
    return path ? `${path}: ${i.message}` : i.message;
  });
  return parts.join("; ");
}
