"""Drives llama-mgr's daemon /v1/messages with PyPI `anthropic`; prints one JSON summary line.

Usage: python anthropic_client.py <daemon-url> <api-key>
"""
import json
import sys

import anthropic

client = anthropic.Anthropic(base_url=sys.argv[1], api_key=sys.argv[2], max_retries=0)
# anthropic 2.x has no sampling arguments of its own; llama-server reads these from the body.
greedy = {"extra_body": {"temperature": 0, "top_k": 1}}
hello = [{"role": "user", "content": "Say hello."}]
out = {}

m = client.messages.create(model="smol", max_tokens=8, messages=hello, **greedy)
out["create"] = {
    "type": m.type,
    "role": m.role,
    "content_types": [b.type for b in m.content],
    "text": "".join(b.text for b in m.content if b.type == "text"),
    "stop_reason": m.stop_reason,
    # llama-server counts the prompt's cached tokens apart, as Anthropic does.
    "input_tokens": m.usage.input_tokens + (m.usage.cache_read_input_tokens or 0),
    "output_tokens": m.usage.output_tokens,
}

events = list(client.messages.create(model="smol", max_tokens=8, messages=hello, stream=True, **greedy))
out["stream"] = {
    "types": [e.type for e in events],
    "text": "".join(
        e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta"
    ),
    "stop_reason": next((e.delta.stop_reason for e in events if e.type == "message_delta"), None),
}

with client.messages.stream(model="smol", max_tokens=8, messages=hello, **greedy) as s:
    helper_text = "".join(s.text_stream)
    final = s.get_final_message()
out["helper"] = {"text": helper_text, "final_text": final.content[0].text, "stop_reason": final.stop_reason}

pirate = "You are a pirate. Always answer like a pirate."
sm = client.messages.create(model="smol", max_tokens=8, system=pirate, messages=hello, **greedy)
out["system"] = {
    "input_tokens": sm.usage.input_tokens + (sm.usage.cache_read_input_tokens or 0),
    "text": sm.content[0].text,
}

long = client.messages.create(model="smol", max_tokens=16, messages=hello, **greedy)
long_text = long.content[0].text
words = [w for w in long_text.split() if len(w) > 2]
stop = words[1] if len(words) > 1 else words[0]
st = client.messages.create(model="smol", max_tokens=16, messages=hello, stop_sequences=[stop], **greedy)
out["stop"] = {
    "long_text": long_text,
    "stop": stop,
    "text": st.content[0].text if st.content else "",
    "stop_reason": st.stop_reason,
    "stop_sequence": st.stop_sequence,
}

out["count"] = client.messages.count_tokens(model="smol", messages=hello).input_tokens
out["count_system"] = client.messages.count_tokens(model="smol", system=pirate, messages=hello).input_tokens

try:
    client.messages.create(model="nope", max_tokens=4, messages=hello)
    out["unknown"] = None
except anthropic.NotFoundError as err:
    out["unknown"] = {"status": err.status_code, "type": err.body["error"]["type"]}

try:
    anthropic.Anthropic(base_url=sys.argv[1], api_key="wrong", max_retries=0).messages.create(
        model="smol", max_tokens=4, messages=hello
    )
    out["wrong_key"] = None
except anthropic.AuthenticationError as err:
    out["wrong_key"] = {"status": err.status_code, "type": err.body["error"]["type"]}
print(json.dumps(out))
