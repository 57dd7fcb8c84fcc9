"""Write GGUF test files with PyPI `gguf`'s GGUFWriter: every value type, arrays of arrays, both byte orders,
version 2 and 3, a split model and a large vocabulary. Usage: make_fixtures.py OUT_DIR"""
import os
import sys

import numpy as np
import gguf

out = sys.argv[1]
os.makedirs(out, exist_ok=True)


def every_type(w: gguf.GGUFWriter) -> None:
    w.add_uint8("t.u8", 200)
    w.add_int8("t.i8", -100)
    w.add_uint16("t.u16", 60000)
    w.add_int16("t.i16", -30000)
    w.add_uint32("t.u32", 4000000000)
    w.add_int32("t.i32", -2000000000)
    w.add_float32("t.f32", 3.25)
    w.add_bool("t.bool_t", True)
    w.add_bool("t.bool_f", False)
    w.add_string("t.str", "héllo wörld ✓")
    w.add_string("t.empty", "")
    w.add_uint64("t.u64", 2**53 + 12345)
    w.add_int64("t.i64", -(2**40))
    w.add_float64("t.f64", 2.718281828459045)
    w.add_array("t.arr_i32", [1, -2, 3])
    w.add_array("t.arr_str", ["a", "bb", ""])
    w.add_array("t.arr_f32", [0.5, 1.5])
    w.add_array("t.arr_bool", [True, False, True])
    w.add_array("t.arr_empty", [])
    w.add_array("t.arr_nested", [[1, 2], [3]])
    w.add_array("t.arr_nested_str", [["x", "y"], ["z"]])


def llama_like(w: gguf.GGUFWriter, vocab: int, layers: int = 2, embd: int = 64) -> None:

    w.add_name("Test Model")
    w.add_basename("testmodel")
    w.add_size_label("1M")
    w.add_file_type(1)
    w.add_context_length(2048)
    w.add_embedding_length(embd)
    w.add_block_count(layers)
    w.add_feed_forward_length(embd * 2)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_tokenizer_model("gpt2")
    w.add_token_list([f"tok{i}" for i in range(vocab)])
    w.add_token_types([1] * vocab)
    w.add_chat_template("{% for m in messages %}{{ m.content }}{% endfor %}{% if tools %}tools{% endif %}")
    w.add_tensor("token_embd.weight", np.ones((vocab, embd), dtype=np.float16))
    for i in range(layers):
        w.add_tensor(f"blk.{i}.attn_q.weight", np.full((embd, embd), i, dtype=np.float32))
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones((embd,), dtype=np.float32))


def write(name: str, fill, endianess=gguf.GGUFEndian.LITTLE, arch="llama") -> str:
    path = os.path.join(out, name)
    w = gguf.GGUFWriter(path, arch, endianess=endianess)
    fill(w)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


write("types-le.gguf", lambda w: (every_type(w), llama_like(w, 100)))
write("types-be.gguf", lambda w: (every_type(w), llama_like(w, 100)), gguf.GGUFEndian.BIG)
v2 = write("types-v2.gguf", lambda w: (every_type(w), llama_like(w, 50)))
with open(v2, "r+b") as f:  # v2 and v3 share the layout for little-endian files
    f.seek(4)
    f.write((2).to_bytes(4, "little"))
write("aligned-64.gguf", lambda w: (w.add_custom_alignment(64), llama_like(w, 10)))
write("big-vocab.gguf", lambda w: llama_like(w, 151936, layers=1, embd=8))
for no in range(2):
    def part(w, no=no):
        w.add_uint16("split.no", no)
        w.add_uint16("split.count", 2)
        w.add_int32("split.tensors.count", 4)
        if no == 0:
            llama_like(w, 20, layers=1)
        else:
            w.add_tensor("blk.1.attn_q.weight", np.zeros((64, 64), dtype=np.float32))
    write(f"split-0000{no + 1}-of-00002.gguf", part)
print(out)
