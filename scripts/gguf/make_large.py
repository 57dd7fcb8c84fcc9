"""Write a GGUF file over 4 GiB without writing 4 GiB: PyPI `gguf`'s GGUFWriter writes the header and the
tensor infos of a 7B-shaped model (f32 embeddings and output, so tensor data runs past 4 GiB and tensor
offsets do not fit 32 bits), then the file is extended to its full size as a sparse file.
Usage: make_large.py OUT_FILE"""
import os
import sys

import numpy as np
import gguf

path = sys.argv[1]
embd, vocab, layers, ff = 4096, 152064, 4, 11008
w = gguf.GGUFWriter(path, "llama")
w.add_name("Large Test")
w.add_basename("largetest")
w.add_size_label("7B")
w.add_file_type(gguf.LlamaFileType.ALL_F32)
w.add_context_length(32768)
w.add_embedding_length(embd)
w.add_block_count(layers)
w.add_feed_forward_length(ff)
w.add_head_count(32)
w.add_head_count_kv(8)
w.add_tokenizer_model("gpt2")
w.add_token_list([f"t{i}" for i in range(vocab)])
F32 = gguf.GGMLQuantizationType.F32
total = 0


def info(name: str, dims: list[int]) -> None:
    """ggml dims innermost first; GGUFWriter takes the numpy shape (outermost first)."""
    global total
    n = int(np.prod(dims)) * 4
    w.add_tensor_info(name, list(reversed(dims)), np.dtype(np.float32), n, raw_dtype=F32)
    total += n + (-n % 32)


info("token_embd.weight", [embd, vocab])
for i in range(layers):
    for t, d in [("attn_q", [embd, embd]), ("attn_k", [embd, 1024]), ("attn_v", [embd, 1024]),
                 ("attn_output", [embd, embd]), ("ffn_gate", [embd, ff]), ("ffn_up", [embd, ff]),
                 ("ffn_down", [ff, embd]), ("attn_norm", [embd]), ("ffn_norm", [embd])]:
        info(f"blk.{i}.{t}.weight", d)
info("output_norm.weight", [embd])
info("output.weight", [embd, vocab])
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_ti_data_to_file()
w.close()
size = os.path.getsize(path)
data_offset = size + (-size % 32)
os.truncate(path, data_offset + total)
print(data_offset + total)
