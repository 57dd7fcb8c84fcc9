"""Write tiny but loadable GGUF models of architectures whose KV cache is not the plain one, with PyPI `gguf`'s
GGUFWriter and random weights, so a real llama-server can load them and print its buffer sizes:

- gemma3 with a sliding window (5 of every 6 layers attend to a window), grouped-query attention;
- qwen3moe (mixture of experts), grouped-query attention;
- llama with per-layer KV head counts (an array, as OpenELM-style files carry).

The tokenizer is copied from a real model (argument 2), so llama.cpp's vocabulary loader is satisfied.
Usage: make_arch_models.py OUT_DIR TOKENIZER_SOURCE.gguf"""
import os
import sys

import numpy as np
import gguf

out, tok_src = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(7)
T = gguf.MODEL_TENSOR


def tokenizer_from(path: str):
    r = gguf.GGUFReader(path)
    vals = {}
    for key, field in r.fields.items():
        if not key.startswith("tokenizer."):
            continue
        vals[key] = (field.types, field.contents())
    return vals


TOK = tokenizer_from(tok_src)
N_VOCAB = len(TOK["tokenizer.ggml.tokens"][1])


def add_tokenizer(w: gguf.GGUFWriter) -> None:
    for key, (types, value) in TOK.items():
        if key == "tokenizer.chat_template":
            continue
        vtype = types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            w.add_key_value(key, value, vtype, sub_type=types[-1])
        else:
            w.add_key_value(key, value, vtype)


def tensor(w: gguf.GGUFWriter, arch: gguf.MODEL_ARCH, kind, dims: list[int], bid: int | None = None,
           dtype=np.float32, suffix: str = "weight") -> None:
    """Adds a tensor with ggml dims (innermost first); numpy's shape is the reverse."""
    assert kind in gguf.MODEL_TENSORS[arch] or gguf.TENSOR_NAMES[kind] == "blk.{bid}.ffn_norm", kind
    name = gguf.TENSOR_NAMES[kind].format(bid=bid) + "." + suffix
    data = (rng.standard_normal(list(reversed(dims)), dtype=np.float32) * 0.02).astype(dtype)
    w.add_tensor(name, data)


def common(w: gguf.GGUFWriter, name: str, layers: int, embd: int, ff: int, heads: int, kv, head_dim: int,
           ctx: int) -> None:
    w.add_name(name)
    w.add_context_length(ctx)
    w.add_embedding_length(embd)
    w.add_block_count(layers)
    w.add_feed_forward_length(ff)
    w.add_head_count(heads)
    w.add_head_count_kv(kv)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(10000.0)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    add_tokenizer(w)


def gemma3() -> None:
    arch = gguf.MODEL_ARCH.GEMMA3
    layers, embd, ff, heads, kv, hd = 8, 128, 256, 4, 1, 64
    w = gguf.GGUFWriter(os.path.join(out, "tiny-gemma3-swa.gguf"), "gemma3")
    common(w, "Tiny Gemma3 SWA", layers, embd, ff, heads, kv, hd, 8192)
    w.add_sliding_window(256)
    tensor(w, arch, T.TOKEN_EMBD, [embd, N_VOCAB], dtype=np.float16)
    tensor(w, arch, T.OUTPUT_NORM, [embd])
    for i in range(layers):
        tensor(w, arch, T.ATTN_NORM, [embd], i)
        tensor(w, arch, T.ATTN_Q, [embd, hd * heads], i)
        tensor(w, arch, T.ATTN_K, [embd, hd * kv], i)
        tensor(w, arch, T.ATTN_V, [embd, hd * kv], i)
        tensor(w, arch, T.ATTN_OUT, [hd * heads, embd], i)
        tensor(w, arch, T.ATTN_POST_NORM, [embd], i)
        tensor(w, arch, T.ATTN_K_NORM, [hd], i)
        tensor(w, arch, T.ATTN_Q_NORM, [hd], i)
        tensor(w, arch, T.FFN_NORM, [embd], i)
        tensor(w, arch, T.FFN_GATE, [embd, ff], i)
        tensor(w, arch, T.FFN_UP, [embd, ff], i)
        tensor(w, arch, T.FFN_DOWN, [ff, embd], i)
        tensor(w, arch, T.FFN_POST_NORM, [embd], i)
    finish(w)


def qwen3moe() -> None:
    arch = gguf.MODEL_ARCH.QWEN3MOE
    layers, embd, ff, heads, kv, hd, experts, used, ff_exp = 4, 128, 512, 4, 2, 32, 8, 2, 64
    w = gguf.GGUFWriter(os.path.join(out, "tiny-qwen3moe.gguf"), "qwen3moe")
    common(w, "Tiny Qwen3 MoE", layers, embd, ff, heads, kv, hd, 4096)
    w.add_expert_count(experts)
    w.add_expert_used_count(used)
    w.add_expert_feed_forward_length(ff_exp)
    tensor(w, arch, T.TOKEN_EMBD, [embd, N_VOCAB], dtype=np.float16)
    tensor(w, arch, T.OUTPUT_NORM, [embd])
    for i in range(layers):
        tensor(w, arch, T.ATTN_NORM, [embd], i)
        tensor(w, arch, T.ATTN_Q, [embd, hd * heads], i)
        tensor(w, arch, T.ATTN_K, [embd, hd * kv], i)
        tensor(w, arch, T.ATTN_V, [embd, hd * kv], i)
        tensor(w, arch, T.ATTN_OUT, [hd * heads, embd], i)
        tensor(w, arch, T.ATTN_K_NORM, [hd], i)
        tensor(w, arch, T.ATTN_Q_NORM, [hd], i)
        tensor(w, arch, T.FFN_NORM, [embd], i)
        tensor(w, arch, T.FFN_GATE_INP, [embd, experts], i)
        tensor(w, arch, T.FFN_GATE_EXP, [embd, ff_exp, experts], i)
        tensor(w, arch, T.FFN_DOWN_EXP, [ff_exp, embd, experts], i)
        tensor(w, arch, T.FFN_UP_EXP, [embd, ff_exp, experts], i)
    finish(w)


def llama_kv_per_layer() -> None:
    arch = gguf.MODEL_ARCH.LLAMA
    layers, embd, ff, heads, hd = 4, 128, 256, 4, 32
    kv = [4, 2, 1, 2]
    w = gguf.GGUFWriter(os.path.join(out, "tiny-llama-kv-per-layer.gguf"), "llama")
    common(w, "Tiny Llama KV per layer", layers, embd, ff, heads, kv, hd, 4096)
    w.add_rope_dimension_count(hd)
    tensor(w, arch, T.TOKEN_EMBD, [embd, N_VOCAB], dtype=np.float16)
    tensor(w, arch, T.OUTPUT_NORM, [embd])
    for i in range(layers):
        tensor(w, arch, T.ATTN_NORM, [embd], i)
        tensor(w, arch, T.ATTN_Q, [embd, hd * heads], i)
        tensor(w, arch, T.ATTN_K, [embd, hd * kv[i]], i)
        tensor(w, arch, T.ATTN_V, [embd, hd * kv[i]], i)
        tensor(w, arch, T.ATTN_OUT, [hd * heads, embd], i)
        tensor(w, arch, T.FFN_NORM, [embd], i)
        tensor(w, arch, T.FFN_GATE, [embd, ff], i)
        tensor(w, arch, T.FFN_UP, [embd, ff], i)
        tensor(w, arch, T.FFN_DOWN, [ff, embd], i)
    finish(w)


def finish(w: gguf.GGUFWriter) -> None:
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


gemma3()
qwen3moe()
llama_kv_per_layer()
