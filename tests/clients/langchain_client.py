"""Drives llama-mgr's daemon with PyPI `langchain-ollama` and `langchain-openai` as a LangChain application
does; prints one JSON summary line.

Usage: python langchain_client.py <daemon-url>
"""
import json
import sys

import ollama
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.tools import tool
from langchain_ollama import ChatOllama, OllamaEmbeddings, OllamaLLM
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

url = sys.argv[1]
out = {}
greedy = {"temperature": 0, "top_k": 1, "seed": 42}

chat = ChatOllama(model="smol", base_url=url, num_predict=8, **greedy)
m = chat.invoke([SystemMessage("You are terse."), HumanMessage("Say hello.")])
out["invoke"] = {
    "text": m.content,
    "model": m.response_metadata.get("model"),
    "done_reason": m.response_metadata.get("done_reason"),
    "usage": m.usage_metadata,
}
out["stream_text"] = "".join(c.content for c in chat.stream([SystemMessage("You are terse."), HumanMessage("Say hello.")]))

llm = OllamaLLM(model="smol", base_url=url, num_predict=8, **greedy)
out["llm_text"] = llm.invoke("Once upon a time")

# Ollama's `format: "json"`: the answer is JSON (the suite's failures were answers that never ended).
js = ChatOllama(model="smol", base_url=url, format="json", num_predict=200, **greedy).invoke(
    "Give a JSON object with a name and an age for a person."
)
out["json"] = {"text": js.content, "done_reason": js.response_metadata.get("done_reason")}


class Person(BaseModel):
    name: str
    age: int


structured = ChatOllama(model="smol", base_url=url, num_predict=200, **greedy).with_structured_output(
    Person, method="json_schema"
)
try:
    p = structured.invoke("Alice is 30 years old. Who is she?")
    out["structured"] = {"ok": True, "name": p.name if p else None, "age": p.age if p else None}
except Exception as err:  # a small model may not fill the schema; the wire must still work
    out["structured"] = {"ok": False, "error": type(err).__name__}


@tool
def add(a: int, b: int) -> int:
    """Adds two numbers."""
    return a + b


try:
    ChatOllama(model="smol", base_url=url, num_predict=8, **greedy).bind_tools([add]).invoke("What is 2 + 3?")
    out["tools"] = None
except ollama.ResponseError as err:
    out["tools"] = {"status": err.status_code, "error": err.error}

emb = OllamaEmbeddings(model="smol", base_url=url)
vec = emb.embed_query("hello")
docs = emb.embed_documents(["hello", "world"])
out["embed"] = {"dim": len(vec), "docs": len(docs), "same": docs[0] == vec}

try:
    ChatOllama(model="nope", base_url=url).invoke("hi")
    out["unknown"] = None
except ollama.ResponseError as err:
    out["unknown"] = {"status": err.status_code}

oai = ChatOpenAI(model="smol", base_url=url + "/v1", api_key="unused", max_tokens=8, temperature=0)
om = oai.invoke("Say hello.")
out["openai"] = {
    "text": om.content,
    "model": om.response_metadata.get("model_name"),
    "finish_reason": om.response_metadata.get("finish_reason"),
    "output_tokens": (om.usage_metadata or {}).get("output_tokens"),
}
out["openai_stream_text"] = "".join(c.content for c in oai.stream("Say hello."))

print(json.dumps(out))
