"""Drives llama-mgr's daemon /v1 endpoints with PyPI `openai`; prints one JSON summary line.

Usage: python openai_client.py <daemon-url>
"""
import json
import sys

import openai

client = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="unused")
out = {}
stream = client.chat.completions.create(
    model="smol", messages=[{"role": "user", "content": "Say hello."}], max_tokens=8, temperature=0, stream=True,
)
chunks = list(stream)
out["stream_text"] = "".join((c.choices[0].delta.content or "") for c in chunks if c.choices)
out["stream_finish"] = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
emb = client.embeddings.create(model="smol", input=["hello", "world"])
out["embeddings"] = [len(d.embedding) for d in emb.data]
out["models"] = [m.id for m in client.models.list().data]
try:
    client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    out["unknown"] = None
except openai.NotFoundError as err:
    out["unknown"] = {"status": err.status_code}
print(json.dumps(out))
