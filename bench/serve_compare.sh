#!/usr/bin/env bash
# serve_compare.sh — wick serve next to another OpenAI-compatible server (llama.cpp's
# llama-server) on the same GGUF file, same threads, same load, alternating, in one run.
#
#   bench/serve_compare.sh MODEL.gguf /path/to/llama-server [THREADS] [CLIENTS...]
#
# For each client count N (default 1 4 8 16) and each round (ROUNDS, default 2), both servers
# are started with N parallel sequences and THREADS threads (default 2), `wick bench serve`
# drives N streaming clients for DURATION seconds (default 30; prompt PROMPT words, default
# 32; TOKENS new tokens, default 128, EOS ignored), and the server is stopped; the order of
# the two alternates per round. Prints one table line per run and the medians per N.
# llama-server options: --parallel N -c N*CTX (CTX default 1024 per sequence), continuous
# batching on (its default). Nothing of llama.cpp is part of this repository.
# On a seeded random model, greedy output is often invalid UTF-8 (byte tokens in any order);
# llama-server then ends the stream early (its JSON encoder refuses the text) and `wick bench
# serve` counts an error. Choose PROMPT so that its greedy continuation stays valid (33 words
# does for `create-random --like qwen2.5-0.5b --seed 1`); wick serve does not care.
set -euo pipefail
model=${1:?usage: $0 MODEL.gguf LLAMA_SERVER [THREADS] [CLIENTS...]}
llama=${2:?usage: $0 MODEL.gguf LLAMA_SERVER [THREADS] [CLIENTS...]}
threads=${3:-2}
shift 3 2>/dev/null || shift $#
clients=("$@")
[ ${#clients[@]} -eq 0 ] && clients=(1 4 8 16)
rounds=${ROUNDS:-2}
dur=${DURATION:-30}
prompt=${PROMPT:-32}
tokens=${TOKENS:-128}
ctx=${CTX:-1024}
here=$(cd "$(dirname "$0")/.." && pwd)
wick=${WICK:-$here/build/wick}
port=18471
out=$(mktemp)
trap 'rm -f "$out"; kill $(jobs -p) 2>/dev/null || true' EXIT

wait_up() { for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && return 0; sleep 0.2; done; return 1; }

run_one() { # name n
    local name=$1 n=$2 pid
    if [ "$name" = wick ]; then
        "$wick" serve -m "$model" --port $port -t "$threads" --parallel "$n" --ctx "$ctx" \
            >/dev/null 2>&1 &
    else
        "$llama" -m "$model" --port $port -t "$threads" --parallel "$n" -c $((n * ctx)) \
            >/dev/null 2>&1 &
    fi
    pid=$!
    wait_up || { echo "$name did not start" >&2; kill $pid; return 1; }
    local line
    line=$("$wick" bench serve --url "http://127.0.0.1:$port" -c "$n" -p "$prompt" -n "$tokens" \
           -d "$dur" | tail -1)
    kill -TERM $pid; wait $pid 2>/dev/null || true
    echo "$name $n $line" | tee -a "$out"
}

echo "model $model, $threads threads, prompt $prompt words, $tokens tokens, ${dur}s per run, $rounds rounds"
echo "server N | clients | requests | tokens/s | TTFT p50/p90/p99 ms | ITL p50/p90/p99 ms | errors"
for n in "${clients[@]}"; do
    for r in $(seq 1 "$rounds"); do
        if [ $((r % 2)) -eq 1 ]; then run_one wick "$n"; run_one llama "$n";
        else run_one llama "$n"; run_one wick "$n"; fi
    done
done
echo
echo "| N | wick tokens/s (runs) | llama-server tokens/s (runs) | ratio | wick ITL p99 ms | llama ITL p99 ms |"
echo "|---|---|---|---|---|---|"
for n in "${clients[@]}"; do
    python3 - "$out" "$n" <<'EOF'
import sys, statistics
rows = [l.split() for l in open(sys.argv[1])]
n = sys.argv[2]
def col(name, i):
    return [float(r[i]) for r in rows if r[0] == name and r[1] == n]
# fields after "name n": | clients | requests | tok/s | ttft... ; split on whitespace:
# ['wick','4','|','4','|','120','|','350.1','|','10','/','20','/','30','|','1.1','/','2.2','/','3.3','|',...]
w, l = col('wick', 7), col('llama', 7)
wi, li = col('wick', 19), col('llama', 19)
med = lambda v: statistics.median(v) if v else float('nan')
print(f"| {n} | {med(w):.1f} ({', '.join(f'{x:.1f}' for x in w)}) | {med(l):.1f} ({', '.join(f'{x:.1f}' for x in l)}) "
      f"| {med(w)/med(l):.2f}x | {med(wi):.1f} | {med(li):.1f} |")
EOF
done
