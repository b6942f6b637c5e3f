#!/usr/bin/env bash
# llama.sh — one device call: wick's CUDA build against llama.cpp's CUDA build (llama-bench
# -ngl 99) on the same GGUF files, same GPU, alternating.
#   .gpu/llama-src.tar.xz  CMakeLists.txt cmake ggml src include common vendor licenses app
#                          and tools/llama-bench of a llama.cpp snapshot (fetched on the CPU
#                          machine; never committed; the other backends' folders left out and
#                          tools/CMakeLists.txt reduced to llama-bench, 2 MB), built here for
#                          sm_90a in the background
# Q4K=1 adds a 1.5B Q4_K file (wick quantize --type q4_k). VARIANTS=0 skips the A/B runs
# (split rows off, f32 activations); PROFILE=decode profiles a
# 1.5B Q4_0 decode instead of a 0.5B prefill.
#   .gpu/deps.sh, .gpu/deps.tar.xz   wick's Debian libraries (pack.sh)
#   run from the checkout's root:  bash bench/cuda-lease/llama.sh
# Also runs test_cuda (the op parity tests need no fixtures), then makes seeded random
# Qwen2.5-0.5B / 1.5B shaped models (`wick create-random`) and their BF16 and Q4_0 GGUFs
# (`wick quantize`); both programs read those GGUFs: `llama-bench -m F -ngl 99 -p 512 -n 128
# -r 3` and `wick bench generate -m F --device cuda -p 512 -n 128 -r 3`.
set -u
T0=$SECONDS
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
exec > >(tee -a "$OUT/llama.log") 2>&1
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
  cmake --build build-cuda -j"$(nproc)" --target wick test_cuda >/tmp/b.log 2>&1 || { tail -30 /tmp/b.log; exit 1; }
echo "wick built at $((SECONDS - T0)) s"
(cd build-cuda && WICK_REQUIRE_CUDA=1 timeout 120 ./tests/test_cuda > "$OUT/test_cuda.log" 2>&1 &&
  echo "test_cuda: ok" || { echo "test_cuda: FAILED"; grep -E "FAIL|ERROR|error" "$OUT/test_cuda.log" | head; })
(cd build-cuda && WICK_REQUIRE_CUDA=1 timeout 300 compute-sanitizer --report-api-errors no \
  --error-exitcode 1 ./tests/test_cuda > "$OUT/sanitizer.log" 2>&1 &&
  echo "test_cuda under compute-sanitizer (memcheck): ok" ||
  { echo "test_cuda under compute-sanitizer: FAILED"; grep -E "FAIL|ERROR|rror" "$OUT/sanitizer.log" | head; })
W=$PWD/build-cuda/wick
TOK=/tmp/tok; mkdir -p $TOK
# the tokenizer (llama.cpp needs one in the GGUF): .gpu/tok.tar.xz, the qwen3 fixture alone
# (tar -C ../shared/fixtures -cJf .gpu/tok.tar.xz tokenizers/qwen3)
if [ -f "$G/tok.tar.xz" ]; then tar -xJf "$G/tok.tar.xz" -C /tmp && TOK=/tmp/tokenizers/qwen3; fi
for s in ${SIZES:-0.5b 1.5b}; do
  M=/tmp/q$s
  if [ -f "$TOK/tokenizer.json" ]; then $W create-random --like qwen2.5-$s --out $M --dtype bf16 --tokenizer "$TOK" --force -q || exit 1
  else $W create-random --like qwen2.5-$s --out $M --dtype bf16 --force -q || exit 1; fi
  $W quantize $M $M-bf16.gguf --type bf16 --force -q && $W quantize $M $M-q4_0.gguf --type q4_0 --force -q || exit 1
done
$W quantize /tmp/q0.5b /tmp/q0.5b-q8_0.gguf --type q8_0 --force -q
[ -n "${Q4K:-}" ] && $W quantize /tmp/q1.5b /tmp/q1.5b-q4_k.gguf --type q4_k --force -q
# greedy decode of the quantized files on the GPU and on the CPU (a one-token prompt, so every
# step is a decode step: both sides quantize the activations to 8-bit blocks)
for f in /tmp/q0.5b-q4_0.gguf /tmp/q0.5b-q8_0.gguf; do
  for d in cpu cuda; do
    timeout 120 $W generate -m $f --device $d -p "The" -n 48 --temp 0 --ignore-eos > /tmp/gen-$d.txt 2>/dev/null
  done
  cmp -s /tmp/gen-cpu.txt /tmp/gen-cuda.txt && echo "$(basename $f): greedy text cpu == cuda ($(wc -c < /tmp/gen-cpu.txt) bytes)" ||
    { echo "$(basename $f): greedy text differs"; head -c 300 /tmp/gen-cpu.txt; echo; head -c 300 /tmp/gen-cuda.txt; echo; }
done
ls -la /tmp/q*.gguf
(unset LD_LIBRARY_PATH; python3 bench/cuda-lease/copy_bw.py 2>&1 | grep -v Warn)
echo "models at $((SECONDS - T0)) s; waiting for llama.cpp"
wait $LB
LBENCH=/tmp/llama/b/bin/llama-bench
[ -x $LBENCH ] || { tail -20 /tmp/llama-build.log; exit 1; }
for round in $(seq ${ROUNDS:-2}); do
  for f in ${FILES:-/tmp/q0.5b-bf16.gguf /tmp/q0.5b-q4_0.gguf /tmp/q0.5b-q8_0.gguf /tmp/q1.5b-bf16.gguf /tmp/q1.5b-q4_0.gguf ${Q4K:+/tmp/q1.5b-q4_k.gguf}}; do
    [ $((SECONDS - T0)) -gt ${DEADLINE:-540} ] && break 2
    echo "== round $round $(basename $f) ($((SECONDS - T0)) s)"
    timeout 90 $LBENCH -m $f -ngl 99 -p 512 -n 128 -r 3 2>&1 | grep -E "^\| |build" | sed "s|^|llama.cpp\t|"
    timeout 90 $W bench generate -m $f --device cuda -p 512 -n 128 -r 3 2>&1 | grep -E "pp|tg|rror" | sed "s|^|wick\t|"
    [ "${VARIANTS:-1}" = 0 ] && continue
    WICK_CUDA_MV_SPLIT=0 timeout 90 $W bench generate -m $f --device cuda -p 0 -n 128 -r 3 2>&1 | grep -E "tg|rror" | sed "s|^|wick-split0\t|"
    case $f in *q4_0*|*q8_0*) WICK_CUDA_Q8X=0 timeout 90 $W bench generate -m $f --device cuda -p 0 -n 128 -r 3 2>&1 | grep -E "tg|rror" | sed "s|^|wick-q8x0\t|";; esac
  done
done
# where decode (PROFILE=decode, the 1.5B Q4_0) or prefill time goes (per-op GPU time; graphs
# are off while profiling)
if [ "${PROFILE:-prefill}" = decode ]; then
  WICK_CUDA_PROFILE=1 timeout 60 $W bench generate -m /tmp/q1.5b-q4_0.gguf --device cuda -p 0 -n 64 -r 1 \
    > /dev/null 2> "$OUT/prof_tg.txt"
  grep -A 24 "WICK_CUDA_PROFILE" "$OUT/prof_tg.txt" | cut -c1-110
else
  WICK_CUDA_PROFILE=1 timeout 60 $W bench generate -m /tmp/q0.5b --device cuda -p 2048 -n 0 -r 1 \
    > /dev/null 2> "$OUT/prof_pp2048.txt"
  grep -A 14 "WICK_CUDA_PROFILE" "$OUT/prof_pp2048.txt" | cut -c1-100
fi
echo "== done at $((SECONDS - T0)) s"
