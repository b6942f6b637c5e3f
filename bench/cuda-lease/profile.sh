#!/usr/bin/env bash
# profile.sh — one device call: the CUDA tests, then where a decode step's GPU time goes.
# Run from the checkout root with .gpu/{deps.sh,deps.tar.xz,fixtures.tar.xz} carried:
#   bash bench/cuda-lease/profile.sh
# Builds with tests, runs test_cuda and test_cuda_model (WICK_REQUIRE_CUDA=1) and the golden
# tests with WICK_DEVICE=cuda, makes seeded random Qwen2.5-0.5B / 1.5B shaped models (bf16 and
# `wick quantize` q4_0), then per model: `wick bench generate -p 0 -n 64` timed as shipped
# (graphs on) and with WICK_CUDA_PROFILE=1 (per-op GPU time, graphs off), and a torch 1 GiB
# device-to-device copy for the bandwidth limit. Logs to $OUT.
set -u
T0=$SECONDS
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
G=$PWD/.gpu
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
eval "$("$G/deps.sh" /tmp/deps)" || exit 1
mkdir -p /tmp/fixtures && tar -xJf "$G/fixtures.tar.xz" -C /tmp/fixtures
export WICK_FIXTURES=/tmp/fixtures
cmake -S . -B build-cuda -DCMAKE_BUILD_TYPE=Release -DWICK_CUDA=ON >/dev/null &&
  cmake --build build-cuda -j"$(nproc)" >/tmp/b.log 2>&1 || { tail -30 /tmp/b.log; exit 1; }
echo "built at $((SECONDS - T0)) s"
step() { # name, timeout, command...
  local n=$1 to=$2; shift 2
  local t=$SECONDS
  if timeout -k 5 "$to" "$@" > "$OUT/$n.log" 2>&1; then echo "$n: ok ($((SECONDS - t)) s)";
  else echo "$n: FAILED exit $? ($((SECONDS - t)) s)"; grep -E "FAILED|ERROR|error|Failure" "$OUT/$n.log" | head -8; fi
}
( cd build-cuda && export CI=true
  step test_cuda 90 env WICK_REQUIRE_CUDA=1 ./tests/test_cuda
  step test_cuda_model 90 env WICK_REQUIRE_CUDA=1 ./tests/test_cuda_model
  for t in ${TESTS:-test_engine test_arch_golden test_model_golden}; do
    step "$t@cuda" 100 env WICK_DEVICE=cuda ./tests/$t
  done
  grep -h "graph:\|engine cuda vs" "$OUT"/*.log | head -5 )
echo "tests done at $((SECONDS - T0)) s"
W=$PWD/build-cuda/wick
TOK=/tmp/fixtures/tokenizers/qwen3
for s in ${SIZES:-0.5b 1.5b}; do
  M=/tmp/q$s
  $W create-random --like qwen2.5-$s --out $M --dtype bf16 --tokenizer "$TOK" -q || exit 1
  $W quantize $M $M-q4_0.gguf --type q4_0 -q 2>&1 | tail -1
done
(unset LD_LIBRARY_PATH; python3 bench/cuda-lease/copy_bw.py 2>&1 | grep -v Warn | tee "$OUT/copy_bw.txt")
for m in ${MODELS:-/tmp/q0.5b /tmp/q0.5b-q4_0.gguf /tmp/q1.5b}; do
  b=$(basename $m)
  timeout 60 $W bench generate -m $m --device cuda -p 0 -n 128 -r 3 2>&1 | grep -E "tg|rror" | sed "s|^|$b\t|"
  WICK_CUDA_PROFILE=1 timeout 60 $W bench generate -m $m --device cuda -p 0 -n 64 -r 1 > /dev/null 2> "$OUT/prof_$b.txt"
  echo "== $b profile"; grep -A 22 "WICK_CUDA_PROFILE" "$OUT/prof_$b.txt" | cut -c1-110
done
echo "== done at $((SECONDS - T0)) s"
