#!/bin/sh
# pretrain_compare.sh SHAPE.json TOKENIZER.json CORPUS.txt [ROUNDS] [STEPS]
# Pretraining throughput, wick vs PyTorch, side by side on this machine: the same shape, the
# same corpus tokens (wick's tokenizer; windows of 128, batch 16), float32, 2 threads each,
# AdamW + clipping on both. Runs alternate (wick first in odd rounds, torch first in even
# ones); tokens/s over steps 6..STEPS of each run (the first 5 are warm-up). Prints every
# run, then medians, min–max and the ratio. Needs Debian's python3-torch (/usr/bin/python3).
set -eu
shape=${1:?usage: pretrain_compare.sh SHAPE.json TOKENIZER.json CORPUS.txt [ROUNDS] [STEPS]}
tok=${2:?}; corpus=${3:?}; rounds=${4:-3}; steps=${5:-40}
here=$(cd "$(dirname "$0")/.." && pwd)
wick=${WICK:-$here/build/wick}
py=${PYTHON:-/usr/bin/python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$wick" tokenize -t "$tok" --file "$corpus" > "$tmp/ids.json"
run_wick() {
    "$wick" pretrain --config "$shape" --tokenizer "$tok" --data "$corpus" -o "$tmp/w" --force \
        --steps "$steps" --batch 16 --seq-len 128 --log-every 1000 -t 2 > /dev/null
    awk -v s="$steps" -F'[:,]' '/"loss"/ { for (i = 1; i < NF; i++) { if ($i ~ /"step"/) st = $(i+1); if ($i ~ /"elapsed_s"/) el = $(i+1) } e[st+0] = el+0 }
        END { printf "%.1f\n", 16 * 128 * (s - 5) / (e[s] - e[5]) }' "$tmp/w/training_log.jsonl"
}
run_torch() {
    "$py" "$here/bench/pretrain_torch.py" --config "$shape" --ids "$tmp/ids.json" --steps "$steps" \
        --skip 5 --batch 16 --seq-len 128 --threads 2 | "$py" -c 'import json,sys; print("%.1f" % json.load(sys.stdin)["tokens_per_s"])'
}
: > "$tmp/w.txt"; : > "$tmp/t.txt"
r=1
while [ "$r" -le "$rounds" ]; do
    if [ $((r % 2)) -eq 1 ]; then w=$(run_wick); t=$(run_torch); else t=$(run_torch); w=$(run_wick); fi
    echo "round $r: wick $w tok/s, torch $t tok/s"
    echo "$w" >> "$tmp/w.txt"; echo "$t" >> "$tmp/t.txt"
    r=$((r + 1))
done
"$py" - "$tmp/w.txt" "$tmp/t.txt" <<'PY'
import statistics, sys
w = [float(x) for x in open(sys.argv[1])]; t = [float(x) for x in open(sys.argv[2])]
mw, mt = statistics.median(w), statistics.median(t)
print(f"wick  median {mw:.0f} tok/s (min {min(w):.0f}, max {max(w):.0f})")
print(f"torch median {mt:.0f} tok/s (min {min(t):.0f}, max {max(t):.0f})")
print(f"ratio wick/torch {mw / mt:.2f}x")
PY
