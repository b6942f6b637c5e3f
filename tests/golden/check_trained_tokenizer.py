#!/usr/bin/env python3
"""Checks that Hugging Face loads a tokenizer.json written by `wick tokenizer-train` and encodes
exactly as a tokenizer HF trained itself on the same corpus (issue 18).

    python3 tests/golden/check_trained_tokenizer.py WICK_TOKENIZER.json HF_TOKENIZER.json CORPUS [MODEL_DIR]

Encodes every line of CORPUS (with and without its line ending) with both; with MODEL_DIR, also
loads the folder with transformers.AutoTokenizer and compares its ids. Prints the counts and
exits 1 on the first difference.
"""
import sys

from tokenizers import Tokenizer

mine, ref, corpus = Tokenizer.from_file(sys.argv[1]), Tokenizer.from_file(sys.argv[2]), sys.argv[3]
lines = open(corpus, encoding="utf-8", newline="").read().split("\n")
texts = [l for l in lines] + [l + "\n" for l in lines[:2000]]
n = 0
for t in texts:
    a, b = mine.encode(t).ids, ref.encode(t).ids
    if a != b:
        print("DIFF", repr(t[:80]), a[:20], b[:20])
        sys.exit(1)
    n += len(a)
print(f"tokenizers: {len(texts)} texts, {n} ids identical; vocab {mine.get_vocab_size()}")
if len(sys.argv) > 4:
    from transformers import AutoTokenizer
    at = AutoTokenizer.from_pretrained(sys.argv[4])
    for t in texts[:5000]:
        if at(t, add_special_tokens=False)["input_ids"] != ref.encode(t).ids:
            print("DIFF (transformers)", repr(t[:80]))
            sys.exit(1)
    print(f"transformers {type(at).__name__}: 5000 texts identical; eos {at.eos_token!r}, "
          f"chat_template {at.chat_template is not None}")
