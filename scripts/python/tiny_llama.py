"""A tiny llama-architecture model with random weights and a sentencepiece tokenizer (160 pieces, padded to 256
by the converter so K-quant rows are whole blocks), saved as a Hugging Face
folder (config.json, model.safetensors, tokenizer.model). Usage: tiny_llama.py OUT_DIR"""
import os
import random
import sys

import sentencepiece as spm
import torch
from transformers import LlamaConfig, LlamaForCausalLM

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
random.seed(0)
torch.manual_seed(0)
words = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran", "in", "park", "sun", "is", "hot", "we", "like", "tea",
         "llama", "model", "runs", "fast", "small", "big", "red", "blue", "green", "sky", "sea", "tree", "house", "car"]
corpus = os.path.join(out, "corpus.txt")
with open(corpus, "w") as f:
    for _ in range(3000):
        f.write(" ".join(random.choice(words) for _ in range(random.randint(4, 12))) + ".\n")
spm.SentencePieceTrainer.train(input=corpus, model_prefix=os.path.join(out, "tokenizer"), vocab_size=160,
                               model_type="bpe", character_coverage=1.0, bos_id=1, eos_id=2, unk_id=0, pad_id=-1)
os.remove(corpus)
os.remove(os.path.join(out, "tokenizer.vocab"))
config = LlamaConfig(vocab_size=256, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                     bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
model = LlamaForCausalLM(config)
model.save_pretrained(out, safe_serialization=True)
print(out)
