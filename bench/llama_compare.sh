#!/usr/bin/env bash
# Side-by-side prefill/decode speed of wick and llama.cpp's llama-bench on the same GGUF files,
# same threads, alternating runs in one invocation (issue 14: no figure from another machine).
#
#   bench/llama_compare.sh LLAMA_BENCH ROUNDS THREADS "PP" "TG" FILE.gguf [FILE.gguf ...]
#   e.g. bench/llama_compare.sh ~/llama.cpp/build/bin/llama-bench 3 2 512 128 m-q4_0.gguf m-bf16.gguf
#
# Each round runs, per file, `wick bench generate -p PP -n TG -r REPS` then `llama-bench -p PP
# -n TG -r REPS` (REPS=2 by default, env REPS). Each run's mean is one sample; the table gives
# per file and test the median of the ROUNDS samples of each tool, their range (min–max), and
# the ratio of the medians. Env: WICK (default build/wick), WICK_ENV (extra environment for
# wick, e.g. "WICK_PRECISION=exact"), OUT (raw samples, default: a temp file, printed).
set -euo pipefail
[ $# -ge 6 ] || { sed -n 2,12p "$0"; exit 2; }
LB=$1 ROUNDS=$2 T=$3 PP=$4 TG=$5
shift 5
WICK=${WICK:-build/wick} REPS=${REPS:-2}
OUT=${OUT:-$(mktemp /tmp/llama_compare.XXXXXX)}
: >"$OUT"
for f in "$@"; do [ -f "$f" ] || { echo "no such file: $f" >&2; exit 2; }; done
# "| pp512 | 656.7 ± 1 |" (wick) and "| ... | pp512 | 533.23 ± 10.94 |" (llama-bench)
parse() { awk -v tool="$1" -v file="$2" -v round="$3" -F'|' '{
    for (i = 2; i < NF; i++) {
        g = $i; gsub(/ /, "", g)
        sub(/\*$/, "", g)  # wick marks noisy rows "pp512 *"
        if (g ~ /^(pp|tg)[0-9]+$/) { v = $(i + 1); sub(/±.*/, "", v); gsub(/ /, "", v)
            if (v ~ /^[0-9.]+$/) print tool "\t" file "\t" round "\t" g "\t" v; break } } }'; }
for r in $(seq 1 "$ROUNDS"); do
    for f in "$@"; do
        b=$(basename "$f")
        env ${WICK_ENV:-} "$WICK" bench generate -m "$f" -t "$T" -p "$PP" -n "$TG" -r "$REPS" 2>/dev/null |
            parse wick "$b" "$r" >>"$OUT"
        "$LB" -m "$f" -t "$T" -p "$PP" -n "$TG" -r "$REPS" 2>/dev/null | parse llama "$b" "$r" >>"$OUT"
    done
    echo "round $r of $ROUNDS done" >&2
done
python3 - "$OUT" <<'EOF'
import collections, statistics, sys
s = collections.defaultdict(list)
for line in open(sys.argv[1]):
    tool, f, r, test, v = line.split("\t")
    s[(f, test, tool)].append(float(v))
keys = sorted({(f, t) for f, t, _ in s}, key=lambda k: (k[0], k[1][:2], int(k[1][2:])))
print("| file | test | wick tok/s median (range) | llama.cpp tok/s median (range) | wick / llama.cpp |")
print("|---|---|---|---|---|")
for f, t in keys:
    w, l = s.get((f, t, "wick"), []), s.get((f, t, "llama"), [])
    fmt = lambda v: f"{statistics.median(v):.1f} ({min(v):.1f}–{max(v):.1f})" if v else "-"
    ratio = f"{statistics.median(w) / statistics.median(l):.2f}×" if w and l else "-"
    print(f"| {f} | {t} | {fmt(w)} | {fmt(l)} | {ratio} |")
EOF
echo "raw samples: $OUT" >&2
