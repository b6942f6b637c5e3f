#!/usr/bin/env python3
"""Golden for `wick tokenizer-train` (issue 18): a byte-level BPE tokenizer trained by Hugging
Face tokenizers with Qwen2's pre-tokenizer, on a text file, one line (with its line ending) per
training sequence as Tokenizer.train(files) reads it.

    python3 tests/golden/tokenizer_train.py CORPUS VOCAB_SIZE OUT.json [ENCODE_FILE OUT_IDS.json]

Settings (what wick's trainer reproduces): normalizer NFC; pre-tokenizer Split(Qwen2 regex,
isolated) then ByteLevel(add_prefix_space=False, use_regex=False); decoder ByteLevel;
BpeTrainer(vocab_size, min_frequency=0, special_tokens=["<|endoftext|>", "<|im_start|>",
"<|im_end|>"], initial_alphabet=ByteLevel.alphabet()). With ENCODE_FILE, every line of it is
encoded by the trained tokenizer and the ids written as a JSON list of lists.
"""
import json
import sys

import tokenizers
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

PAT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
       r"|\s*[\r\n]+|\s+(?!\S)|\s+")

corpus, vocab, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
tok = Tokenizer(models.BPE())
tok.normalizer = normalizers.NFC()
tok.pre_tokenizer = pre_tokenizers.Sequence([
    pre_tokenizers.Split(Regex(PAT), behavior="isolated", invert=False),
    pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
])
tok.decoder = decoders.ByteLevel()
trainer = trainers.BpeTrainer(vocab_size=vocab, min_frequency=0, show_progress=False,
                              special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
tok.train([corpus], trainer)
tok.save(out)
print("tokenizers", tokenizers.__version__, "vocab", tok.get_vocab_size())
if len(sys.argv) > 5:
    with open(sys.argv[4], encoding="utf-8", newline="") as f:
        lines = f.read().split("\n")
    ids = [tok.encode(line, add_special_tokens=False).ids for line in lines]
    with open(sys.argv[5], "w") as f:
        json.dump(ids, f)
