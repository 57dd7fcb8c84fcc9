"""Reference embeddings from sentence-transformers. Usage: st_embed.py MODEL_DIR < sentences.json > vectors.json"""
import json
import sys

from sentence_transformers import SentenceTransformer

model = SentenceTransformer(sys.argv[1], device="cpu")
sentences = json.load(sys.stdin)
json.dump(model.encode(sentences, normalize_embeddings=True).tolist(), sys.stdout)
