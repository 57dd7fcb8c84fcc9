#!/usr/bin/env python3
"""Writes a tiny llama-architecture model with random weights as a Hugging Face folder.

Usage: make_tiny_llama.py OUT_DIR [--hidden 256] [--layers 2] [--vocab 512] [--seed 0]

The tokenizer is a SentencePiece model trained on a small generated corpus (no network), saved with
LlamaTokenizer so the folder looks like any llama checkpoint (config.json, model.safetensors,
tokenizer.model, tokenizer_config.json). Dimensions are multiples of 256 so k-quants (Q4_K_M) apply to
every matrix instead of falling back to other types. The tokenizer has byte fallback, so every character
(newlines included) has a token: llama-imatrix aborts on calibration text with a character the vocabulary
lacks (`unordered_map::at` while tokenizing).
"""
import argparse
import os
import random
import tempfile

import sentencepiece as spm
import torch
from transformers import LlamaConfig, LlamaForCausalLM, LlamaTokenizer

WORDS = (
    "the a an of to in and is was for on with as by at from that this it be are were has have had not but or "
    "model llama small tiny test random weight token text word sentence story cat dog house tree river sun moon "
    "red green blue fast slow big little old new good bad day night time year people world water fire earth "
    "one two three four five six seven eight nine ten hello there friend quick brown fox jumps over lazy"
).split()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--intermediate", type=int, default=512)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    random.seed(a.seed)
    torch.manual_seed(a.seed)
    os.makedirs(a.out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = os.path.join(tmp, "corpus.txt")
        with open(corpus, "w") as f:
            for _ in range(4000):
                n = random.randint(4, 16)
                f.write(" ".join(random.choice(WORDS) for _ in range(n)).capitalize() + ".\n")
        prefix = os.path.join(tmp, "sp")
        spm.SentencePieceTrainer.train(
            input=corpus,
            model_prefix=prefix,
            vocab_size=a.vocab,
            model_type="bpe",
            character_coverage=1.0,
            byte_fallback=True,
            bos_id=1,
            eos_id=2,
            unk_id=0,
            pad_id=-1,
            minloglevel=2,
        )
        tok = LlamaTokenizer(vocab_file=prefix + ".model", legacy=True)
        tok.save_pretrained(a.out)

    cfg = LlamaConfig(
        vocab_size=a.vocab,
        hidden_size=a.hidden,
        intermediate_size=a.intermediate,
        num_hidden_layers=a.layers,
        num_attention_heads=a.heads,
        num_key_value_heads=a.heads,
        max_position_embeddings=512,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
        torch_dtype="float32",
    )
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(a.out, safe_serialization=True)
    print(a.out)


if __name__ == "__main__":
    main()
