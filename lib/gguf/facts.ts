/**
 * What a model is, from its GGUF header alone: architecture, size, quantization, context, attention shape,
 * experts, chat template, tokenizer, capabilities; and how much memory it needs at a given context.
 *
 * @module
 */
import type { GgufHeader, GgufValue } from "./reader.ts";
import { FILE_TYPES, ggmlTypeName, tensorBytes, tensorElements } from "./types.ts";

/**
 * Things a model can do, as Ollama names them.
 *
 * @example
 * ```ts ignore
 * const caps: Capability[] = describeModel(header).capabilities;
 * if (caps.includes("tools")) console.log("can call tools");
 * ```
 */
export type Capability = "completion" | "embedding" | "vision" | "tools" | "thinking" | "insert";

/**
 * The facts about a model.
 *
 * @example
 * ```ts ignore
 * const facts: ModelFacts = describeModel(await readGgufHeader("model.gguf", { skipArraysOver: 256 }));
 * console.log(facts.architecture, facts.fileType, facts.contextLength, facts.parameterCount);
 * ```
 */
export interface ModelFacts {
  /** `general.architecture`, e.g. `llama`, `qwen3`, `bert`. */
  architecture: string;
  /** `general.type` (`model`, `mmproj`, `adapter`). */
  type?: string;
  /** `general.name`. */
  name?: string;
  /** `general.basename`. */
  basename?: string;
  /** `general.finetune`. */
  finetune?: string;
  /** `general.size_label`, e.g. `7B`. */
  sizeLabel?: string;
  /** Parameters, counted from tensor shapes. */
  parameterCount: number;
  /** Quantization by file type, e.g. `Q4_K_M` (or the dominant tensor type when the file type is absent). */
  fileType: string;
  /** Tensor types and how many bytes each holds. */
  quantMix: { type: string; tensors: number; bytes: number }[];
  /** Bytes of all tensors. */
  tensorBytes: number;
  /**
   * The weights by layer, as llama.cpp offloads them: the input layer's (the token embedding and the other
   * tensors outside the repeating layers, kept on the CPU), the output layer's as a GPU holds it (the first
   * thing offloaded: `output.weight`, or a copy of `token_embd.weight` when the model ties the two), and the
   * repeating layers' (`blk.N.*`).
   */
  layerBytes?: { input: number; output: number; repeating: number };
  /** Training context length. */
  contextLength: number;
  /** Embedding width. */
  embeddingLength: number;
  /** Feed-forward width. */
  feedForwardLength: number;
  /** Layers. */
  blockCount: number;
  /** Attention heads (the largest, when per layer). */
  headCount: number;
  /** KV heads (the largest, when per layer). */
  headCountKv: number;
  /** KV heads of each layer (0 for layers without attention). */
  headCountKvPerLayer: number[];
  /** Key head dimension. */
  keyLength: number;
  /** Value head dimension. */
  valueLength: number;
  /** Head dimensions of multi-head latent attention (DeepSeek-style MLA): when set, the KV cache keeps one
   * compressed row of `keyLength` per token and layer, and no V. */
  keyLengthMla?: number;
  /** See {@linkcode ModelFacts.keyLengthMla}. */
  valueLengthMla?: number;
  /** False for models llama.cpp runs without a KV cache (BERT-style encoders, diffusion models). */
  hasKvCache: boolean;
  /** Which layers are recurrent (state-space or linear attention: a fixed state per sequence, no KV cache),
   * for hybrid and SSM models (Qwen3.5, Qwen3-Next, Mamba, Jamba, Granite 4 H...). */
  recurrentLayers?: boolean[];
  /** Floats of recurrent state one recurrent layer keeps per sequence (conv state + SSM state). */
  recurrentStatePerLayer?: number;
  /** Sliding attention window, when the model has one. */
  slidingWindow?: number;
  /** Which layers use the sliding window. */
  slidingLayers?: boolean[];
  /** Experts per MoE layer. */
  expertCount?: number;
  /** Experts used per token. */
  expertUsedCount?: number;
  /** Feed-forward width of one expert. */
  expertFeedForwardLength?: number;
  /** Feed-forward width of the shared expert(s), when the model has them. */
  expertSharedFeedForwardLength?: number;
  /** Shared experts (DeepSeek-style: each as wide as a routed expert). */
  expertSharedCount?: number;
  /** Vocabulary size. */
  vocabSize: number;
  /** Tokenizer model (`gpt2`, `llama`, `bert`...). */
  tokenizer?: string;
  /** Jinja chat template. */
  chatTemplate?: string;
  /** Pooling type for embedding models. */
  poolingType?: number;
  /** What the model can do. */
  capabilities: Capability[];
  /** Split files (`split.count`), 1 for a single file. */
  splitCount: number;
  /** GGUF version. */
  ggufVersion: number;
}

/** Architectures llama.cpp gives no KV cache (`llama_model::create_memory` returns none). */
const NO_KV_ARCHES = new Set([
  "bert",
  "jina-bert-v2",
  "jina-bert-v3",
  "nomic-bert",
  "nomic-bert-moe",
  "neo-bert",
  "eurobert",
  "wavtokenizer-dec",
  "modern-bert",
  "gemma-embedding",
  "dream",
  "llada",
  "llada-moe",
  "rnd1",
]);

/** llama.cpp's default sliding-window pattern per architecture (`load_swa_pattern(ml, N, dense_first)`). */
const SWA_PATTERNS: Record<string, [number, boolean]> = {
  gemma2: [2, false],
  gemma3: [6, false],
  gemma3n: [5, false],
  "gemma-embedding": [6, false],
  cohere2: [4, false],
  cohere2moe: [4, true],
  "gpt-oss": [2, false],
  llama4: [4, false],
  olmo2: [4, false],
  exaone4: [4, false],
  "exaone-moe": [4, false],
  afmoe: [4, false],
  mellum: [4, false],
  "muse-glimmer": [4, false],
  plamo3: [8, false],
  smallthinker: [4, true],
  laguna: [4, true],
  "modern-bert": [3, true],
};

/** Hybrids whose linear-attention layers follow `full_attention_interval` (default 4) when the file has no
 * `attention.recurrent_layers` array. */
const INTERVAL_HYBRID_ARCHES = new Set(["qwen3next", "qwen35", "qwen35moe"]);
/** Pure state-space models: every layer is recurrent. */
const SSM_ARCHES = new Set(["mamba", "mamba2", "rwkv6", "rwkv7"]);

const EMBEDDING_ARCHES = new Set([
  "bert",
  "nomic-bert",
  "nomic-bert-moe",
  "jina-bert-v2",
  "jina-bert-v3",
  "t5encoder",
  "modern-bert",
  "neo-bert",
  "eurobert",
  "gemma-embedding",
]);

/** A count, length or id from the metadata: every number this file reads is one. NaN, infinities and negative
 * values (a float or signed key in a corrupt or hostile file) count as absent, so no estimate is NaN, infinite
 * or negative (a scheduler comparing NaN with its budget would think the model fits). */
function num(v: GgufValue | undefined): number | undefined {
  const n = typeof v === "number" ? v : typeof v === "bigint" ? Number(v) : undefined;
  return n !== undefined && Number.isFinite(n) && n >= 0 ? Math.floor(n) : undefined;
}

function numOrArray(v: GgufValue | undefined, layers: number): number[] | undefined {
  if (Array.isArray(v)) return v.slice(0, MAX_LAYERS).map((x) => num(x) ?? 0);
  const n = num(v);
  return n === undefined ? undefined : new Array(layers).fill(n);
}

/** The largest number, 0 for none (Math.max(...xs) overflows the stack on long arrays). */
function maxOf(xs: number[]): number {
  let m = 0;
  for (const x of xs) if (x > m) m = x;
  return m;
}

/** llama.cpp's `LLAMA_MAX_LAYERS`: it loads no model with more layers. A header claiming more (a hostile
 * `block_count` of 100 million cost 25 s and 1.4 GB in per-layer arrays) is refused. */
export const MAX_LAYERS = 512;

/**
 * Reads the facts from a header.
 *
 * @example
 * ```ts ignore
 * const facts = describeModel(await readGgufHeader("model.gguf", { skipArraysOver: 1024 }));
 * console.log(facts.architecture, facts.fileType, facts.parameterCount);
 * ```
 */
export function describeModel(header: GgufHeader): ModelFacts {
  const m = header.metadata;
  const arch = typeof m["general.architecture"] === "string"
    ? m["general.architecture"] as string
    : "unknown";
  const k = (suffix: string) => m[`${arch}.${suffix}`];
  const s = (key: string) => typeof m[key] === "string" ? m[key] as string : undefined;
  const blockCount = num(k("block_count")) ?? 0;
  if (!Number.isSafeInteger(blockCount) || blockCount < 0 || blockCount > MAX_LAYERS) {
    throw new RangeError(
      `${arch}.block_count ${blockCount} is not a layer count llama.cpp loads (0 to ${MAX_LAYERS})`,
    );
  }
  const embd = num(k("embedding_length")) ?? 0;
  const heads = numOrArray(k("attention.head_count"), blockCount) ?? [];
  const kvHeads = numOrArray(k("attention.head_count_kv"), blockCount) ?? heads;
  const headCount = maxOf(heads);
  const keyLength = num(k("attention.key_length")) ?? (headCount ? Math.floor(embd / headCount) : 0);
  const valueLength = num(k("attention.value_length")) ?? keyLength;

  let params = 0;
  let bytes = 0;
  const mix = new Map<string, { tensors: number; bytes: number }>();
  const layers = { input: 0, output: 0, repeating: 0, embedding: 0 };
  for (const t of header.tensors) {
    params += tensorElements(t.dims);
    const b = tensorBytes(t.dims, t.type);
    bytes += b;
    if (t.name.startsWith("blk.")) layers.repeating += b;
    else if (t.name === "output.weight") layers.output += b;
    else layers.input += b;
    if (t.name === "token_embd.weight") layers.embedding = b;
    const name = ggmlTypeName(t.type);
    const e = mix.get(name) ?? { tensors: 0, bytes: 0 };
    e.tensors++;
    e.bytes += b;
    mix.set(name, e);
  }
  const quantMix = [...mix.entries()].map(([type, v]) => ({ type, ...v })).sort((a, b) => b.bytes - a.bytes);
  const ft = num(m["general.file_type"]);
  const fileType = ft !== undefined && FILE_TYPES[ft] ? FILE_TYPES[ft] : quantMix[0]?.type ?? "unknown";

  const tokens = m["tokenizer.ggml.tokens"];
  const vocabSize = num(k("vocab_size")) ??
    (Array.isArray(tokens)
      ? tokens.length
      : tokens && typeof tokens === "object" && "length" in tokens
      ? tokens.length
      : 0);

  // Sliding-window layers as llama.cpp sets them (src/models/*.cpp): an explicit pattern array, else a number
  // N (llama.cpp's set_swa_pattern: N-1 window layers then a global one, or with dense_first a global one then
  // N-1), else the architecture's default. Llama 4's chunked attention is a window of 8,192 unless the file
  // says 0; Phi-3's window is ignored by llama.cpp (full cache).
  let slidingWindow = num(k("attention.sliding_window"));
  if (arch === "llama4") slidingWindow = slidingWindow === 0 ? undefined : 8192;
  if (arch === "phi3") slidingWindow = undefined;
  let slidingLayers: boolean[] | undefined;
  if (slidingWindow) {
    const pattern = k("attention.sliding_window_pattern");
    if (Array.isArray(pattern)) slidingLayers = pattern.map((x) => x === true || x === 1);
    else {
      const [defaultN, denseFirst] = SWA_PATTERNS[arch] ?? [0, false];
      const n = num(pattern) ?? defaultN;
      slidingLayers = Array.from(
        { length: blockCount },
        (_, i) => n === 0 || (denseFirst ? i % n !== 0 : i % n < n - 1),
      );
    }
  }

  // Recurrent layers: an explicit list, else the hybrids' interval, else (SSM hybrids such as Jamba or Granite
  // 4 H) the layers without KV heads; llama.cpp keeps conv + SSM state for them instead of a KV cache.
  const dConv = num(k("ssm.conv_kernel"));
  const dInner = num(k("ssm.inner_size"));
  const dState = num(k("ssm.state_size"));
  const nGroup = num(k("ssm.group_count")) ?? 0;
  let recurrentLayers: boolean[] | undefined;
  const recList = k("attention.recurrent_layers");
  const interval = num(k("full_attention_interval"));
  if (Array.isArray(recList)) recurrentLayers = recList.map((x) => x === true || x === 1);
  else if (interval !== undefined || INTERVAL_HYBRID_ARCHES.has(arch)) {
    const n = interval ?? 4;
    recurrentLayers = Array.from({ length: blockCount }, (_, i) => (i + 1) % n !== 0);
  } else if (SSM_ARCHES.has(arch)) recurrentLayers = new Array(blockCount).fill(true);
  else if (dState !== undefined && Array.isArray(k("attention.head_count_kv"))) {
    recurrentLayers = kvHeads.map((h) => h === 0);
  }
  const recurrentStatePerLayer = recurrentLayers && dState !== undefined && dInner !== undefined
    ? Math.max(0, (dConv ?? 1) - 1) * (dInner + 2 * nGroup * dState) + dState * dInner
    : undefined;

  const chatTemplate = s("tokenizer.chat_template");
  const poolingType = num(k("pooling_type"));
  const type = s("general.type");
  const caps: Capability[] = [];
  // As Ollama decides: a pooling type makes an embedding model. The converter writes one only for models with a
  // sentence-transformers pooling layer (Qwen3-Embedding, gte-Qwen2...), which often carry a chat template too.
  const embeddingOnly = EMBEDDING_ARCHES.has(arch) || poolingType !== undefined;
  if (type === "mmproj" || arch === "clip") caps.push("vision");
  else if (embeddingOnly) caps.push("embedding");
  else {
    caps.push("completion");
    if (chatTemplate && /\btools\b/.test(chatTemplate)) caps.push("tools");
    if (chatTemplate && /<think>|enable_thinking|reasoning_content|thinking/.test(chatTemplate)) {
      caps.push("thinking");
    }
    if (
      m["tokenizer.ggml.fim_pre_token_id"] !== undefined || m["tokenizer.ggml.prefix_token_id"] !== undefined
    ) {
      caps.push("insert");
    }
  }

  return {
    architecture: arch,
    type,
    name: s("general.name"),
    basename: s("general.basename"),
    finetune: s("general.finetune"),
    sizeLabel: s("general.size_label"),
    parameterCount: params,
    fileType,
    quantMix,
    tensorBytes: bytes,
    layerBytes: {
      input: layers.input,
      output: layers.output || layers.embedding,
      repeating: layers.repeating,
    },
    contextLength: num(k("context_length")) ?? 0,
    embeddingLength: embd,
    feedForwardLength: maxOf(numOrArray(k("feed_forward_length"), blockCount) ?? []),
    blockCount,
    headCount,
    headCountKv: maxOf(kvHeads),
    headCountKvPerLayer: kvHeads,
    keyLength,
    valueLength,
    keyLengthMla: num(k("attention.key_length_mla")),
    valueLengthMla: num(k("attention.value_length_mla")),
    hasKvCache: !NO_KV_ARCHES.has(arch),
    recurrentLayers,
    recurrentStatePerLayer,
    slidingWindow,
    slidingLayers,
    expertCount: num(k("expert_count")),
    expertUsedCount: num(k("expert_used_count")),
    expertFeedForwardLength: num(k("expert_feed_forward_length")),
    expertSharedFeedForwardLength: num(k("expert_shared_feed_forward_length")),
    expertSharedCount: num(k("expert_shared_count")),
    vocabSize,
    tokenizer: s("tokenizer.ggml.model"),
    chatTemplate,
    poolingType,
    capabilities: caps,
    splitCount: num(m["split.count"]) ?? 1,
    ggufVersion: header.version,
  };
}

/** KV cache element types and their bytes per element. */
export const CACHE_TYPE_BYTES: Record<string, number> = {
  f32: 4,
  f16: 2,
  bf16: 2,
  q8_0: 34 / 32,
  q5_1: 24 / 32,
  q5_0: 22 / 32,
  q4_1: 20 / 32,
  q4_0: 18 / 32,
  iq4_nl: 18 / 32,
};

/**
 * Options for {@linkcode estimateMemory}.
 *
 * @example
 * ```ts
 * const options: EstimateOptions = { ctx: 32768, cacheType: "q8_0", parallel: 1 };
 * ```
 */
export interface EstimateOptions {
  /** Context size (tokens). */
  ctx: number;
  /** KV cache type (default f16). */
  cacheType?: "f16" | "q8_0" | "q4_0" | string;
  /** Micro-batch size (default 512, as llama-server's). */
  ubatch?: number;
  /** Flash attention (default true: llama-server's `auto` turns it on where supported). */
  flashAttention?: boolean;
  /** Bytes of the model's other files (an mmproj), added to the weights. */
  extraBytes?: number;
  /** Sequences sharing one unified KV cache (default 4: llama-server's automatic `-np` with `--kv-unified`).
   * Sliding-window layers keep `window × parallel + ubatch` cells. */
  parallel?: number;
  /** Full-size cache for sliding-window layers too (llama-server's `--swa-full`). */
  swaFull?: boolean;
}

/**
 * A memory estimate, in bytes.
 *
 * @example
 * ```ts ignore
 * const est: MemoryEstimate = estimateMemory(facts, { ctx: 8192 });
 * console.log(`${(est.totalBytes / 2 ** 30).toFixed(1)} GiB, of which KV cache ${est.kvBytes} bytes`);
 * ```
 */
export interface MemoryEstimate {
  /** Tensor data. */
  weightsBytes: number;
  /** KV cache at the context. */
  kvBytes: number;
  /** Recurrent state of hybrid and SSM models (f32, one per sequence; 0 for others). */
  recurrentBytes: number;
  /** The allowance for compute buffers. */
  computeBytes: number;
  /** The sum. */
  totalBytes: number;
}

/**
 * Estimates the memory a model needs at a context, as llama-server allocates it: weights (exact, from tensor
 * types) + KV cache (per layer, respecting GQA, layers without attention, and sliding-window layers, which keep
 * `pad256(min(ctx, window × parallel + ubatch))` cells) + an allowance for compute buffers of
 * `ubatch × 4 B × (3·n_ff_active + 4·n_embd)` (MoE: `n_ff_active` counts only the experts a token uses) plus
 * the f16 attention masks `ubatch × cells × 2 B` per cache (plus the scores `ubatch × ctx × heads × 4 B` without
 * flash attention). All experts of a MoE model are in the weights; they do not change the KV cache. MLA models
 * (DeepSeek-style) keep one compressed K row per token and layer and no V; BERT-style encoders keep no cache;
 * the recurrent layers of hybrid and SSM models (Qwen3.5, Mamba, Jamba...) keep a fixed f32 state per sequence.
 *
 * @example
 * ```ts ignore
 * const est = estimateMemory(facts, { ctx: 32768, cacheType: "q8_0" });
 * ```
 */
export function estimateMemory(facts: ModelFacts, options: EstimateOptions): MemoryEstimate {
  const ctx = Math.max(1, Math.floor(options.ctx));
  const elem = CACHE_TYPE_BYTES[options.cacheType ?? "f16"];
  if (elem === undefined) throw new Error(`unknown cache type '${options.cacheType}'`);
  const ubatch = options.ubatch ?? 512;
  const parallel = Math.max(1, options.parallel ?? 4);
  // llama.cpp (llama-kv-cache-iswa.cpp): the SWA cache holds GGML_PAD(min(ctx, n_swa·n_seq + n_ubatch), 256).
  const swaCells = facts.slidingWindow && !options.swaFull
    ? Math.ceil(Math.min(ctx, facts.slidingWindow * parallel + ubatch) / 256) * 256
    : ctx;
  let kv = 0;
  let fullLayers = 0;
  let swaLayers = 0;
  const layers = facts.hasKvCache === false
    ? []
    : facts.headCountKvPerLayer.length
    ? facts.headCountKvPerLayer
    : new Array(facts.blockCount).fill(facts.headCountKv);
  // MLA keeps one compressed K row per token (the latent plus the rope part) and no V.
  const rowElems = facts.keyLengthMla && facts.valueLengthMla
    ? facts.keyLength
    : facts.keyLength + facts.valueLength;
  layers.forEach((kvHeads, i) => {
    if (!kvHeads || facts.recurrentLayers?.[i]) return;
    const swa = facts.slidingWindow && facts.slidingLayers?.[i];
    if (swa) swaLayers++;
    else fullLayers++;
    kv += (swa ? swaCells : ctx) * kvHeads * rowElems * elem;
  });
  // Activations of one layer for a micro-batch (MoE: only the experts a token uses), then the f16 attention
  // masks (one per cache: ubatch × cells), then without flash attention the f32 scores (ubatch × ctx × heads).
  const expertFf = facts.expertFeedForwardLength ??
    Math.floor(facts.feedForwardLength / Math.max(1, facts.expertUsedCount ?? 1));
  const ffActive = facts.expertCount && facts.expertUsedCount
    ? facts.expertUsedCount * expertFf +
      (facts.expertSharedFeedForwardLength ?? (facts.expertSharedCount ?? 0) * expertFf)
    : facts.feedForwardLength;
  let compute = ubatch * 4 * (3 * ffActive + 4 * facts.embeddingLength);
  // MLA attends in the latent space: every head's query is projected to a `keyLength` row.
  if (facts.keyLengthMla && facts.valueLengthMla) compute += ubatch * 4 * facts.headCount * facts.keyLength;
  if (fullLayers) compute += ubatch * 2 * ctx;
  if (swaLayers) compute += ubatch * 2 * swaCells;
  if (!layers.length) compute += ubatch * 2 * Math.min(ctx, ubatch); // no cache: the batch attends to itself
  if (options.flashAttention === false) compute += ubatch * ctx * facts.headCount * 4;
  const weights = facts.tensorBytes + (options.extraBytes ?? 0);
  kv = Math.round(kv);
  const recurrent = (facts.recurrentLayers?.filter(Boolean).length ?? 0) *
    (facts.recurrentStatePerLayer ?? 0) *
    4 * parallel;
  return {
    weightsBytes: weights,
    kvBytes: kv,
    recurrentBytes: recurrent,
    computeBytes: compute,
    totalBytes: weights + kv + recurrent + compute,
  };
}
