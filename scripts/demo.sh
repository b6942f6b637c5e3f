#!/usr/bin/env bash
# The main job, end to end on a fresh machine: stream text from the demo model — a 4M-parameter
# Qwen2-architecture model that wick trained itself from scratch on the King James Bible
# (models/kjv-demo; `make demo-model` retrains it). Nothing is downloaded or generated first.
set -euo pipefail
BUILD="${1:-build}"
cd "$(dirname "$0")/.."
MODEL=models/kjv-demo
"$BUILD/wick" info "$MODEL" | head -4
echo
for prompt in "And God said" "Blessed are they that"; do
  printf '\n\033[1m%s\033[0m' "$prompt"
  "$BUILD/wick" generate -m "$MODEL" -p "$prompt" -n 60 --temp 0.8 --top-p 0.95 --seed 1
  echo
done
