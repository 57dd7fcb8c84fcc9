"""Drives llama-mgr's daemon /v1/responses with PyPI `openai`; prints one JSON summary line.

Usage: python responses_client.py <daemon-url> <api-key>
"""
import json
import sys

import openai

client = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key=sys.argv[2], max_retries=0)
out = {}
args = {"model": "smol", "input": "Say hello.", "max_output_tokens": 8, "temperature": 0}

r = client.responses.create(**args)
out["create"] = {
    "object": r.object,
    "status": r.status,
    "text": r.output_text,
    "output_types": [o.type for o in r.output],
    "input_tokens": r.usage.input_tokens if r.usage else None,
    "output_tokens": r.usage.output_tokens if r.usage else None,
}

events = list(client.responses.create(stream=True, **args))
out["stream"] = {
    "types": sorted({e.type for e in events}),
    "text": "".join(e.delta for e in events if e.type == "response.output_text.delta"),
    "completed_text": next((e.response.output_text for e in events if e.type == "response.completed"), None),
}

pirate = "You are a pirate. Always answer like a pirate."
ri = client.responses.create(instructions=pirate, **args)
out["instructions"] = {
    "text": ri.output_text,
    "input_tokens": ri.usage.input_tokens if ri.usage else None,
}

try:
    client.responses.create(**{**args, "model": "nope"})
    out["unknown"] = None
except openai.NotFoundError as err:
    out["unknown"] = {"status": err.status_code}
print(json.dumps(out))
