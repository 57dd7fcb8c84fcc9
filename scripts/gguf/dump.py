"""Dump what PyPI gguf's GGUFReader reads from GGUF files, as JSON. Usage: dump.py FILE..."""
import json
import sys

import gguf


def plain(v):
    if isinstance(v, list):
        return [plain(x) for x in v]
    if isinstance(v, (bytes, bytearray)):
        return v.decode("utf-8", "replace")
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, int) and abs(v) > 2**53 - 1:
        return {"bigint": str(v)}
    return v


out = {}
for path in sys.argv[1:]:
    r = gguf.GGUFReader(path)
    kv = {}
    for name, field in r.fields.items():
        if name.startswith("GGUF."):
            continue
        kv[name] = {"type": int(field.types[0]), "value": plain(field.contents())}
    tensors = [
        {"name": t.name, "dims": [int(d) for d in t.shape], "type": int(t.tensor_type), "absOffset": int(t.data_offset)}
        for t in r.tensors
    ]
    out[path] = {"byteorder": r.byte_order, "kv": kv, "tensors": tensors}
json.dump(out, sys.stdout)
