/**
 * The daemon's wire types: every request body it accepts (zod schemas, used by the server to validate and by
 * the tests to build requests) and every response body it sends (zod schemas too, so tests check the exact
 * shape a client sees). Shapes follow Ollama's `api/types.go`; unknown request fields are ignored as Ollama
 * does; `options` stays a free map checked by {@linkcode ./options.ts}.
 *
 * @module
 */
import { z } from "../deps.ts";

// ---------------------------------------------------------------------------------------------------------
// Shared pieces

/** `keep_alive`: seconds as a number, a Go duration string, or null (the default); its type is checked by
 * keep_alive.ts so the error names what Ollama names. */
export const KeepAliveSchema: z.ZodType<unknown> = z.unknown().optional();

/** `think`: true/false, or an effort level. */
export const ThinkSchema: z.ZodType<boolean | "low" | "medium" | "high" | "max" | null | undefined> = z.union(
  [z.boolean(), z.enum(["low", "medium", "high", "max"]), z.null()],
).optional();

/** `format`: `"json"`, a JSON schema object, or empty. */
export const FormatSchema: z.ZodType<string | Record<string, unknown> | null | undefined> = z.union([
  z.string(),
  z.record(z.string(), z.unknown()),
  z.null(),
]).optional();

/** `options`: a free map; known keys are type-checked by `parseOptions`. */
export const OptionsSchema: z.ZodType<Record<string, unknown> | null | undefined> = z.record(
  z.string(),
  z.unknown(),
).nullable().optional();

/** A tool call inside a message. `arguments` is an object (Ollama), a JSON string is accepted too. */
export const ToolCallSchema = z.object({
  id: z.string().optional(),
  type: z.string().optional(),
  function: z.object({
    index: z.number().int().optional(),
    name: z.string(),
    arguments: z.union([z.record(z.string(), z.unknown()), z.string()]).optional(),
  }),
});
/** A tool call. */
export type ToolCall = z.infer<typeof ToolCallSchema>;

/** A chat message: `role` is lower-cased, `content` may be missing (the Python client drops falsy fields). */
export const MessageSchema = z.object({
  role: z.string().transform((r) => r.toLowerCase()),
  content: z.string().nullable().optional(),
  thinking: z.string().nullable().optional(),
  images: z.array(z.string()).nullable().optional(),
  tool_calls: z.array(ToolCallSchema).nullable().optional(),
  tool_name: z.string().nullable().optional(),
  tool_call_id: z.string().nullable().optional(),
});
/** A chat message as received. */
export type Message = z.infer<typeof MessageSchema>;

/** A tool the model may call (OpenAI function shape). */
export const ToolSchema = z.object({
  type: z.string().default("function"),
  function: z.object({
    name: z.string(),
    description: z.string().optional(),
    parameters: z.record(z.string(), z.unknown()).optional(),
  }).passthrough(),
}).passthrough();
/** A tool definition. */
export type Tool = z.infer<typeof ToolSchema>;

// ---------------------------------------------------------------------------------------------------------
// Requests

/** `POST /api/generate`. */
export const GenerateRequestSchema = z.object({
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
});
/** A generate request. */
export type GenerateRequest = z.infer<typeof GenerateRequestSchema>;

/** `POST /api/chat`. */
export const ChatRequestSchema = z.object({
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
});
/** A chat request. */
export type ChatRequest = z.infer<typeof ChatRequestSchema>;

/** `POST /api/embed`: `input` is checked by the handler so a wrong type gets Ollama's message. */
export const EmbedRequestSchema = z.object({
  model: z.string().default(""),
  input: z.unknown().optional(),
  keep_alive: KeepAliveSchema,
  truncate: z.boolean().nullable().optional(),
  dimensions: z.number().int().nonnegative().nullable().optional(),
  options: OptionsSchema,
});
/** An embed request. */
export type EmbedRequest = z.infer<typeof EmbedRequestSchema>;

/** `POST /api/embeddings` (the older endpoint). */
export const EmbeddingsRequestSchema = z.object({
  model: z.string().default(""),
  prompt: z.string().nullable().optional(),
  keep_alive: KeepAliveSchema,
  options: OptionsSchema,
});
/** An old-style embeddings request. */
export type EmbeddingsRequest = z.infer<typeof EmbeddingsRequestSchema>;

/** `POST /api/show` (`name` is the older spelling of `model`). */
export const ShowRequestSchema = z.object({
  model: z.string().optional(),
  name: z.string().optional(),
  verbose: z.boolean().nullable().optional(),
  system: z.string().nullable().optional(),
  template: z.string().nullable().optional(),
  options: OptionsSchema,
});

/** `POST /api/copy`. */
export const CopyRequestSchema = z.object({
  source: z.string().default(""),
  destination: z.string().default(""),
});

/** `DELETE /api/delete`. */
export const DeleteRequestSchema = z.object({
  model: z.string().optional(),
  name: z.string().optional(),
});

/** `POST /api/pull` and `/api/push`. */
export const PullRequestSchema = z.object({
  model: z.string().optional(),
  name: z.string().optional(),
  insecure: z.boolean().nullable().optional(),
  stream: z.boolean().nullable().optional(),
});

/** `POST /api/create`. */
export const CreateRequestSchema = z.object({
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
});

// ---------------------------------------------------------------------------------------------------------
// Responses

/** `details` of a model in tags, ps and show. */
export const ModelDetailsSchema = z.object({
  parent_model: z.string(),
  format: z.string(),
  family: z.string(),
  families: z.array(z.string()).nullable(),
  parameter_size: z.string(),
  quantization_level: z.string(),
});
/** Model details. */
export type ModelDetails = z.infer<typeof ModelDetailsSchema>;

/** One entry of `GET /api/tags`. */
export const ListModelSchema = z.object({
  name: z.string(),
  model: z.string(),
  modified_at: z.string(),
  size: z.number().int(),
  digest: z.string(),
  details: ModelDetailsSchema,
  capabilities: z.array(z.string()).optional(),
});
/** A listed model. */
export type ListModel = z.infer<typeof ListModelSchema>;

/** `GET /api/tags`. */
export const ListResponseSchema = z.object({ models: z.array(ListModelSchema) });

/** One entry of `GET /api/ps`. */
export const ProcessModelSchema = z.object({
  name: z.string(),
  model: z.string(),
  size: z.number().int(),
  digest: z.string(),
  details: ModelDetailsSchema,
  expires_at: z.string(),
  size_vram: z.number().int(),
  context_length: z.number().int(),
});
/** A loaded model. */
export type ProcessModel = z.infer<typeof ProcessModelSchema>;

/** `GET /api/ps`. */
export const ProcessResponseSchema = z.object({ models: z.array(ProcessModelSchema) });

/** `POST /api/show`. */
export const ShowResponseSchema = z.object({
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
});
/** A show response. */
export type ShowResponse = z.infer<typeof ShowResponseSchema>;

/** Timing counters shared by generate and chat (durations in nanoseconds). */
export const MetricsSchema = z.object({
  total_duration: z.number().int().optional(),
  load_duration: z.number().int().optional(),
  prompt_eval_count: z.number().int().optional(),
  prompt_eval_duration: z.number().int().optional(),
  eval_count: z.number().int().optional(),
  eval_duration: z.number().int().optional(),
});
/** Timing counters. */
export type Metrics = z.infer<typeof MetricsSchema>;

/** The reasons a generation ends. */
export const DoneReasonSchema = z.enum(["stop", "length", "load", "unload"]);
/** A done reason. */
export type DoneReason = z.infer<typeof DoneReasonSchema>;

/** A token's log-probability (Ollama's `TokenLogprob`): its text, its log-probability and its bytes. */
export const TokenLogprobSchema = z.object({
  token: z.string(),
  logprob: z.number(),
  bytes: z.array(z.number().int()).optional(),
});
/** A token's log-probability. */
export type TokenLogprob = z.infer<typeof TokenLogprobSchema>;

/** A generated token's log-probability, with the likeliest tokens at its place when `top_logprobs` asked. */
export const LogprobSchema = TokenLogprobSchema.extend({
  top_logprobs: z.array(TokenLogprobSchema).optional(),
});
/** A generated token's log-probability. */
export type Logprob = z.infer<typeof LogprobSchema>;

/** One line (or the whole body) of `POST /api/generate`. */
export const GenerateResponseSchema = MetricsSchema.extend({
  model: z.string(),
  created_at: z.string(),
  response: z.string(),
  thinking: z.string().optional(),
  done: z.boolean(),
  done_reason: DoneReasonSchema.optional(),
  context: z.array(z.number()).optional(),
  tool_calls: z.array(ToolCallSchema).optional(),
  logprobs: z.array(LogprobSchema).optional(),
});
/** A generate response. */
export type GenerateResponse = z.infer<typeof GenerateResponseSchema>;

/** The assistant message of a chat response. */
export const ResponseMessageSchema = z.object({
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
});
/** A message in a response. */
export type ResponseMessage = z.infer<typeof ResponseMessageSchema>;

/** One line (or the whole body) of `POST /api/chat`. */
export const ChatResponseSchema = MetricsSchema.extend({
  model: z.string(),
  created_at: z.string(),
  message: ResponseMessageSchema,
  done: z.boolean(),
  done_reason: DoneReasonSchema.optional(),
  logprobs: z.array(LogprobSchema).optional(),
});
/** A chat response. */
export type ChatResponse = z.infer<typeof ChatResponseSchema>;

/** `POST /api/embed`. */
export const EmbedResponseSchema = z.object({
  model: z.string(),
  embeddings: z.array(z.array(z.number())),
  total_duration: z.number().int().optional(),
  load_duration: z.number().int().optional(),
  prompt_eval_count: z.number().int().optional(),
});
/** An embed response. */
export type EmbedResponse = z.infer<typeof EmbedResponseSchema>;

/** `POST /api/embeddings`. */
export const EmbeddingsResponseSchema = z.object({ embedding: z.array(z.number()) });

/** A progress line of pull/create/push. */
export const ProgressResponseSchema = z.object({
  status: z.string(),
  digest: z.string().optional(),
  total: z.number().optional(),
  completed: z.number().optional(),
});

/** The Ollama error body. */
export const ErrorResponseSchema = z.object({ error: z.string() });

/** The OpenAI error body. */
export const OpenAIErrorSchema = z.object({
  error: z.object({
    message: z.string(),
    type: z.string(),
    param: z.string().nullable(),
    code: z.string().nullable(),
  }),
});

/** `GET /v1/models` entry. */
export const OpenAIModelSchema = z.object({
  id: z.string(),
  object: z.literal("model"),
  created: z.number().int(),
  owned_by: z.string(),
});

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
