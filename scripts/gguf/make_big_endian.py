"""Write a big-endian GGUF file with a large vocabulary (a header of several window lengths) with PyPI gguf's
GGUFWriter, and print what its GGUFReader reads back: key count, token count, first and last tokens, tensors.
Usage: make_big_endian.py OUT_FILE [VOCAB]"""
import json
import sys

import numpy as np
import gguf

out = sys.argv[1]
vocab = int(sys.argv[2]) if len(sys.argv) > 2 else 151936
w = gguf.GGUFWriter(out, "qwen2", endianess=gguf.GGUFEndian.BIG)
w.add_name("Big Endian Vocab")
w.add_context_length(4096)
w.add_embedding_length(8)
w.add_block_count(1)
w.add_head_count(2)
w.add_head_count_kv(1)
w.add_tokenizer_model("gpt2")
w.add_token_list([f"tok{i}" for i in range(vocab)])
w.add_token_types([1] * vocab)
w.add_token_merges([f"t {i}" for i in range(vocab - 1936)])
w.add_tensor("token_embd.weight", np.ones((vocab, 8), dtype=np.float16))
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()

r = gguf.GGUFReader(out)
tokens = r.fields["tokenizer.ggml.tokens"].contents()
print(json.dumps({
    "byteorder": r.byte_order,
    "keys": sorted(k for k in r.fields if not k.startswith("GGUF.")),
    "tokens": len(tokens),
    "first": tokens[0],
    "last": tokens[-1],
    "merges": len(r.fields["tokenizer.ggml.merges"].contents()),
    "tensors": [{"name": t.name, "dims": [int(d) for d in t.shape], "absOffset": int(t.data_offset)} for t in r.tensors],
}))
