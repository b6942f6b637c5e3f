#!/usr/bin/env bash
# moe.sh — one device call: mixture-of-experts decode and prefill on the GPU, wick's CUDA build
# against llama.cpp's (llama-bench -ngl 99) on the same GGUF files, alternating.
#   .gpu/llama-src.tar.xz, .gpu/deps.sh, .gpu/deps.tar.xz, .gpu/tok.tar.xz: as llama.sh
#   run from the checkout's root:  bash bench/cuda-lease/moe.sh
# Makes a seeded random Qwen3-MoE model (`wick create-random --like qwen3-moe-64x8`: 64
# experts, 8 chosen a token) with the qwen3 tokenizer, its BF16 and Q4_0 GGUFs, then runs
# `llama-bench -m F -ngl 99 -p 512 -n 128 -r 3` and `wick bench generate -m F --device cuda
# -p 512 -n 128 -r 3` in turn, ROUNDS rounds (default 2).
set -u
T0=$SECONDS
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
exec > >(tee -a "$OUT/moe.log") 2>&1
G=$PWD/.gpu
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
mkdir -p /tmp/llama && tar -xJf "$G/llama-src.tar.xz" -C /tmp/llama || exit 1
( cd /tmp/llama && cmake -S . -B b -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DGGML_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES=90a -DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF > /tmp/llama-cfg.log 2>&1 &&
  cmake --build b -j"$(nproc)" --target llama-bench > /tmp/llama-build.log 2>&1
  echo "llama.cpp build: rc=$? at $((SECONDS - T0)) s" ) &
LB=$!
eval "$("$G/deps.sh" /tmp/deps)" || exit 1
cmake -S . -B build-cuda -DCMAKE_BUILD_TYPE=Release -DWICK_CUDA=ON >/dev/null &&
  cmake --build build-cuda -j"$(nproc)" --target wick >/tmp/b.log 2>&1 || { tail -30 /tmp/b.log; exit 1; }
echo "wick built at $((SECONDS - T0)) s"
W=$PWD/build-cuda/wick
tar -xJf "$G/tok.tar.xz" -C /tmp || exit 1
M=/tmp/moe
$W create-random --like ${SHAPE:-qwen3-moe-64x8} --out $M --dtype bf16 --tokenizer /tmp/tokenizers/qwen3 --force -q || exit 1
$W quantize $M $M-bf16.gguf --type bf16 --force -q && $W quantize $M $M-q4_0.gguf --type q4_0 --force -q || exit 1
ls -la /tmp/moe*.gguf; cat $M/config.json
echo "models at $((SECONDS - T0)) s; waiting for llama.cpp"
wait $LB
LBENCH=/tmp/llama/b/bin/llama-bench
[ -x $LBENCH ] || { tail -20 /tmp/llama-build.log; exit 1; }
for round in $(seq ${ROUNDS:-2}); do
  for f in $M-bf16.gguf $M-q4_0.gguf; do
    [ $((SECONDS - T0)) -gt ${DEADLINE:-540} ] && break 2
    echo "== round $round $(basename $f) ($((SECONDS - T0)) s)"
    timeout 90 $LBENCH -m $f -ngl 99 -p 512 -n 128 -r 3 2>&1 | grep -E "^\| " | sed "s|^|llama.cpp\t|"
    timeout 90 $W bench generate -m $f --device cuda -p 512 -n 128 -r 3 2>&1 | grep -E "pp|tg|rror" | sed "s|^|wick\t|"
  done
done
echo "== done at $((SECONDS - T0)) s"
