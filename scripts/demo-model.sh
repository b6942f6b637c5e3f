#!/usr/bin/env bash
# demo-model.sh [BUILD] — the recipe of models/kjv-demo, from nothing: the corpus (Debian's
# bible-kjv-text, the King James Bible, public domain), a byte-level BPE tokenizer trained on
# it, a Qwen2-architecture model pretrained from scratch with wick, evaluated on a held-out
# split next to unigram and bigram baselines. Writes $BUILD/kjv-demo; `make demo-model
# DEMO_INSTALL=1` also copies the result over models/kjv-demo (what the repository holds).
# Deterministic: the same package, seed and thread count give the same loss curve (float
# sums in another thread count may differ in the last bits).
set -euo pipefail
BUILD="${1:-build}"
cd "$(dirname "$0")/.."
W="$BUILD/wick"
OUT="$BUILD/kjv-demo"
CORPUS="$BUILD/kjv-corpus"
# the recipe (models/kjv-demo/README.md explains the choice)
VOCAB=${VOCAB:-4096}
SHAPE=${SHAPE:-models/kjv-demo/shape.json}
STEPS=${STEPS:-3000}
BATCH=${BATCH:-16}
SEQ=${SEQ:-128}
LR=${LR:-2e-3}
SEED=${SEED:-1}
if ! command -v bible >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then apt-get install -y bible-kjv bible-kjv-text >/dev/null
  else echo "demo-model: needs Debian's bible-kjv and bible-kjv-text (apt-get install bible-kjv)" >&2; exit 1; fi
fi
./scripts/demo-corpus.sh "$CORPUS"
"$W" tokenizer-train --vocab "$VOCAB" --data "$CORPUS/train.txt" -o "$CORPUS/tokenizer.json" --force
"$W" pretrain --config "$SHAPE" --tokenizer "$CORPUS/tokenizer.json" --data "$CORPUS/train.txt" \
  --valid "$CORPUS/valid.txt" -o "$OUT" --force --steps "$STEPS" --batch "$BATCH" \
  --seq-len "$SEQ" --lr "$LR" --seed "$SEED" --eval-every 500 --log-every 50 --save-every 1000
if [ "${DEMO_INSTALL:-0}" = 1 ]; then
  for f in config.json generation_config.json model.safetensors tokenizer.json \
           tokenizer_config.json training_log.jsonl loss.svg eval.json; do
    cp "$OUT/$f" "models/kjv-demo/$f.tmp" && mv "models/kjv-demo/$f.tmp" "models/kjv-demo/$f"
  done
  echo "installed $OUT into models/kjv-demo"
fi
