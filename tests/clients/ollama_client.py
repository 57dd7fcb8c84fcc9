"""Drives llama-mgr's daemon with PyPI `ollama` the way an application does; prints one JSON summary line.

Usage: python ollama_client.py <daemon-url> <a GGUF model file to upload>
"""
import json
import sys

import ollama

url = sys.argv[1]
client = ollama.Client(host=url)
out = {}
greedy = {"temperature": 0, "top_k": 1, "seed": 42}

out["list"] = [m.model for m in client.list().models]
show = client.show("smol")
out["show_family"] = show.details.family
out["show_has_model_info"] = show.modelinfo is not None and "general.architecture" in show.modelinfo
out["show_capabilities"] = list(show.capabilities or [])

parts = list(client.generate(model="smol", prompt="Why is the sky blue?", stream=True,
                             options={**greedy, "num_predict": 8}))
out["generate_stream_chunks"] = len(parts)
out["generate_stream_done_reason"] = parts[-1].done_reason
out["generate_stream_text"] = "".join(p.response for p in parts)
g = client.generate(model="smol", prompt="Why is the sky blue?", options={**greedy, "num_predict": 8})
out["generate_text"] = g.response
out["generate_eval_count"] = g.eval_count
out["generate_total_duration"] = g.total_duration

tools = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}]
history = [
    {"role": "system", "content": "You never answer in words. You always call a tool."},
    {"role": "user", "content": "What is the weather in Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
    {"role": "user", "content": "What is the weather in Rome?"},
    {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Rome"}}}]},
    {"role": "user", "content": "What is the weather in London?"},
]
c = client.chat(model="smol", messages=history, tools=tools, options={**greedy, "num_predict": 60})
out["tool_calls"] = [{"name": t.function.name, "arguments": dict(t.function.arguments)} for t in (c.message.tool_calls or [])]

schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}, "required": ["name", "age"]}
j = client.chat(model="smol", messages=[{"role": "user", "content": "Give me a person."}], format=schema,
                options={**greedy, "num_predict": 64})
out["json_format"] = json.loads(j.message.content)

lp = client.chat(model="smol", messages=[{"role": "user", "content": "Name a colour."}], logprobs=True,
                 top_logprobs=2, options={**greedy, "num_predict": 6})
out["logprobs"] = {
    "count": len(lp.logprobs or []),
    "eval_count": lp.eval_count,
    "tokens": "".join(e.token for e in (lp.logprobs or [])),
    "content": lp.message.content,
    "tops": [len(e.top_logprobs or []) for e in (lp.logprobs or [])],
}

e = client.embed(model="smol", input=["hello", "world"])
out["embed_count"] = len(e.embeddings)
out["embed_dim"] = len(e.embeddings[0])

out["ps"] = [m.model for m in client.ps().models]
client.generate(model="smol", prompt="", keep_alive=0)
out["ps_after_unload"] = [m.model for m in client.ps().models]

# `ollama create` from a local GGUF: the file as a blob, then a name for it with a system prompt and parameters.
digest = client.create_blob(sys.argv[2])
created = client.create(model="py-made:v1", files={"model.gguf": digest}, system="Answer in French.",
                        parameters={**greedy, "num_predict": 5})
made = client.chat(model="py-made:v1", messages=[{"role": "user", "content": "Hello"}])
direct = client.chat(model="smol", messages=[{"role": "system", "content": "Answer in French."},
                                             {"role": "user", "content": "Hello"}],
                     options={**greedy, "num_predict": 5})
shown = client.show("py-made:v1")
out["created"] = {"status": created.status, "modelfile": shown.modelfile, "parameters": shown.parameters,
                  "content": made.message.content, "direct": direct.message.content, "eval_count": made.eval_count}
client.delete("py-made:v1")

client.copy("smol", "py-copy:v1")
out["after_copy"] = "py-copy:v1" in [m.model for m in client.list().models]
client.delete("py-copy:v1")
out["after_delete"] = "py-copy:v1" in [m.model for m in client.list().models]

try:
    client.chat(model="does-not-exist", messages=[{"role": "user", "content": "hi"}])
    out["unknown_error"] = None
except ollama.ResponseError as err:
    out["unknown_error"] = {"status": err.status_code, "error": err.error}

print(json.dumps(out))
