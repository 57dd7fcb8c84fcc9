"""Write tiny but loadable GGUF models of architectures whose KV cache is not the plain one, with PyPI `gguf`'s
GGUFWriter and random weights, so a real llama-server can load them and print its buffer sizes:

- gemma3 with a sliding window (5 of every 6 layers attend to a window), grouped-query attention;
- qwen3moe (mixture of experts), grouped-query attention;
- deepseek2 with multi-head latent attention (MLA: one compressed K row per token, no V cache), shared expert;
- bert, an embedding model: non-causal, llama.cpp gives it no KV cache at all;
- qwen35, a hybrid: 3 of 4 layers are linear attention (gated delta net) with a fixed recurrent state per
  sequence instead of a KV cache.

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


def deepseek2() -> None:
    arch = gguf.MODEL_ARCH.DEEPSEEK2
    layers, embd, ff, heads = 3, 128, 256, 4
    kv_lora, rope, nope, v_mla = 64, 32, 32, 32
    experts, used, ff_exp, shared = 4, 2, 64, 1
    w = gguf.GGUFWriter(os.path.join(out, "tiny-deepseek2-mla.gguf"), "deepseek2")
    w.add_name("Tiny DeepSeek2 MLA")
    w.add_context_length(4096)
    w.add_embedding_length(embd)
    w.add_block_count(layers)
    w.add_feed_forward_length(ff)
    w.add_head_count(heads)
    w.add_head_count_kv(1)
    w.add_key_length(kv_lora + rope)
    w.add_value_length(kv_lora)
    w.add_key_length_mla(nope + rope)
    w.add_value_length_mla(v_mla)
    w.add_rope_dimension_count(rope)
    w.add_q_lora_rank(0)
    w.add_kv_lora_rank(kv_lora)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(10000.0)
    w.add_leading_dense_block_count(1)
    w.add_expert_count(experts)
    w.add_expert_used_count(used)
    w.add_expert_shared_count(shared)
    w.add_expert_feed_forward_length(ff_exp)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    add_tokenizer(w)
    tensor(w, arch, T.TOKEN_EMBD, [embd, N_VOCAB], dtype=np.float16)
    tensor(w, arch, T.OUTPUT_NORM, [embd])
    for i in range(layers):
        tensor(w, arch, T.ATTN_NORM, [embd], i)
        tensor(w, arch, T.ATTN_KV_A_NORM, [kv_lora], i)
        tensor(w, arch, T.ATTN_Q, [embd, heads * (nope + rope)], i)
        tensor(w, arch, T.ATTN_KV_A_MQA, [embd, kv_lora + rope], i)
        tensor(w, arch, T.ATTN_K_B, [nope, kv_lora, heads], i)
        tensor(w, arch, T.ATTN_V_B, [kv_lora, v_mla, heads], i)
        tensor(w, arch, T.ATTN_OUT, [heads * v_mla, embd], i)
        tensor(w, arch, T.FFN_NORM, [embd], i)
        if i == 0:
            tensor(w, arch, T.FFN_GATE, [embd, ff], i)
            tensor(w, arch, T.FFN_UP, [embd, ff], i)
            tensor(w, arch, T.FFN_DOWN, [ff, embd], i)
        else:
            tensor(w, arch, T.FFN_GATE_INP, [embd, experts], i)
            tensor(w, arch, T.FFN_GATE_EXP, [embd, ff_exp, experts], i)
            tensor(w, arch, T.FFN_UP_EXP, [embd, ff_exp, experts], i)
            tensor(w, arch, T.FFN_DOWN_EXP, [ff_exp, embd, experts], i)
            tensor(w, arch, T.FFN_GATE_SHEXP, [embd, ff_exp * shared], i)
            tensor(w, arch, T.FFN_UP_SHEXP, [embd, ff_exp * shared], i)
            tensor(w, arch, T.FFN_DOWN_SHEXP, [ff_exp * shared, embd], i)
    finish(w)


def bert() -> None:
    arch = gguf.MODEL_ARCH.BERT
    layers, embd, ff, heads, ctx = 2, 128, 256, 4, 512
    w = gguf.GGUFWriter(os.path.join(out, "tiny-bert-embed.gguf"), "bert")
    w.add_name("Tiny BERT Embed")
    w.add_context_length(ctx)
    w.add_embedding_length(embd)
    w.add_block_count(layers)
    w.add_feed_forward_length(ff)
    w.add_head_count(heads)
    w.add_layer_norm_eps(1e-12)
    w.add_causal_attention(False)
    w.add_token_type_count(2)
    w.add_pooling_type(gguf.PoolingType.MEAN)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    add_tokenizer(w)
    tensor(w, arch, T.TOKEN_EMBD, [embd, N_VOCAB], dtype=np.float16)
    tensor(w, arch, T.TOKEN_TYPES, [embd, 2])
    tensor(w, arch, T.POS_EMBD, [embd, ctx])
    tensor(w, arch, T.TOKEN_EMBD_NORM, [embd])
    tensor(w, arch, T.TOKEN_EMBD_NORM, [embd], suffix="bias")
    for i in range(layers):
        for kind in (T.ATTN_Q, T.ATTN_K, T.ATTN_V, T.ATTN_OUT):
            tensor(w, arch, kind, [embd, embd], i)
            tensor(w, arch, kind, [embd], i, suffix="bias")
        for kind in (T.ATTN_OUT_NORM, T.LAYER_OUT_NORM):
            tensor(w, arch, kind, [embd], i)
            tensor(w, arch, kind, [embd], i, suffix="bias")
        tensor(w, arch, T.FFN_UP, [embd, ff], i)
        tensor(w, arch, T.FFN_UP, [ff], i, suffix="bias")
        tensor(w, arch, T.FFN_DOWN, [ff, embd], i)
        tensor(w, arch, T.FFN_DOWN, [embd], i, suffix="bias")
    finish(w)


def qwen35() -> None:
    arch = gguf.MODEL_ARCH.QWEN35
    layers, embd, ff, heads, kv, hd = 4, 128, 256, 4, 2, 32
    d_state, n_group, dt_rank, d_conv = 16, 2, 4, 4
    key_dim, value_dim = d_state * n_group, d_state * dt_rank
    w = gguf.GGUFWriter(os.path.join(out, "tiny-qwen35-hybrid.gguf"), "qwen35")
    common(w, "Tiny Qwen3.5 Hybrid", layers, embd, ff, heads, kv, hd, 4096)
    w.add_rope_dimension_count(hd)
    w.add_rope_dimension_sections([8, 4, 4, 0])
    w.add_ssm_conv_kernel(d_conv)
    w.add_ssm_inner_size(value_dim)
    w.add_ssm_state_size(d_state)
    w.add_ssm_time_step_rank(dt_rank)
    w.add_ssm_group_count(n_group)
    w.add_full_attention_interval(4)
    tensor(w, arch, T.TOKEN_EMBD, [embd, N_VOCAB], dtype=np.float16)
    tensor(w, arch, T.OUTPUT_NORM, [embd])
    for i in range(layers):
        tensor(w, arch, T.ATTN_NORM, [embd], i)
        tensor(w, arch, T.ATTN_POST_NORM, [embd], i)
        if (i + 1) % 4 == 0:
            tensor(w, arch, T.ATTN_Q, [embd, hd * heads * 2], i)
            tensor(w, arch, T.ATTN_K, [embd, hd * kv], i)
            tensor(w, arch, T.ATTN_V, [embd, hd * kv], i)
            tensor(w, arch, T.ATTN_OUT, [hd * heads, embd], i)
            tensor(w, arch, T.ATTN_Q_NORM, [hd], i)
            tensor(w, arch, T.ATTN_K_NORM, [hd], i)
        else:
            tensor(w, arch, T.ATTN_QKV, [embd, key_dim * 2 + value_dim], i)
            tensor(w, arch, T.ATTN_GATE, [embd, value_dim], i)
            tensor(w, arch, T.SSM_CONV1D, [d_conv, key_dim * 2 + value_dim], i)
            tensor(w, arch, T.SSM_DT, [dt_rank], i, suffix="bias")
            name = gguf.TENSOR_NAMES[T.SSM_A].format(bid=i)
            w.add_tensor(name, (rng.standard_normal([dt_rank], dtype=np.float32) * 0.02))
            tensor(w, arch, T.SSM_BETA, [embd, dt_rank], i)
            tensor(w, arch, T.SSM_ALPHA, [embd, dt_rank], i)
            tensor(w, arch, T.SSM_NORM, [d_state], i)
            tensor(w, arch, T.SSM_OUT, [value_dim, embd], i)
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
deepseek2()
bert()
qwen35()
