#!/usr/bin/env bash
# prefill.sh — one device call: the prefill attention kernel (a block per tile of query rows)
# checked and timed against the per-row kernel of the same build (WICK_CUDA_ATT_ROWS=0), and
# the quantized prefill GEMMs on the bf16 tensor cores against the f32 sgemm
# (WICK_CUDA_QGEMM=0) on a Q4_0 GGUF of the same model.
# Carry .gpu/{deps.sh,deps.tar.xz,fixtures.tar.xz}; run from the checkout's root.
set -u
T0=$SECONDS
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
G=$PWD/.gpu
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
eval "$("$G/deps.sh" /tmp/deps)" || exit 1
mkdir -p /tmp/fixtures && tar -xJf "$G/fixtures.tar.xz" -C /tmp/fixtures
export WICK_FIXTURES=/tmp/fixtures
cmake -S . -B build-cuda -DCMAKE_BUILD_TYPE=Release -DWICK_CUDA=ON >/dev/null &&
  cmake --build build-cuda -j"$(nproc)" --target wick test_cuda test_cuda_model test_engine \
    test_model_golden test_arch_golden >/tmp/b.log 2>&1 || { tail -30 /tmp/b.log; exit 1; }
echo "built at $((SECONDS - T0)) s"
step() { # name, command...
  local n=$1; shift
  if timeout -k 5 90 "$@" > "$OUT/$n.log" 2>&1; then echo "$n: ok"; else echo "$n: FAILED";
    grep -E "FAILED|ERROR|error|Failure" "$OUT/$n.log" | head -8; fi
}
( cd build-cuda && export CI=true
  step test_cuda env WICK_REQUIRE_CUDA=1 ./tests/test_cuda
  step test_cuda_model env WICK_REQUIRE_CUDA=1 ./tests/test_cuda_model
  step test_engine_cuda env WICK_DEVICE=cuda ./tests/test_engine
  step test_model_golden_cuda env WICK_DEVICE=cuda ./tests/test_model_golden
  step test_arch_golden_cuda env WICK_DEVICE=cuda ./tests/test_arch_golden
  command -v compute-sanitizer >/dev/null && step sanitizer_test_cuda env WICK_REQUIRE_CUDA=1 \
    compute-sanitizer --error-exitcode 1 ./tests/test_cuda
  grep -h "engine cuda vs\|precision fast" "$OUT"/*.log | head -3 )
W=$PWD/build-cuda/wick
for s in ${SIZES:-0.5b 1.5b}; do
  $W create-random --like qwen2.5-$s --out /tmp/q$s --dtype bf16 --tokenizer /tmp/fixtures/tokenizers/qwen3 -q || exit 1
  $W quantize /tmp/q$s /tmp/q$s-q4_0.gguf --type q4_0 -q || exit 1
done
echo "models at $((SECONDS - T0)) s"
for round in 1 2; do
  for s in ${SIZES:-0.5b 1.5b}; do
    for rows in 0 1; do
      WICK_CUDA_ATT_ROWS=$rows timeout 60 $W bench generate -m /tmp/q$s --device cuda -p 512,2048 -n 0 -r 3 2>&1 |
        grep -E "pp|rror" | sed "s|^|q$s rows=$rows\t|" | cut -c1-70
    done
    for qg in 0 1; do
      WICK_CUDA_QGEMM=$qg timeout 60 $W bench generate -m /tmp/q$s-q4_0.gguf --device cuda -p 512,2048 -n 0 -r 3 2>&1 |
        grep -E "pp|rror" | sed "s|^|q$s-q4_0 qgemm=$qg\t|" | cut -c1-70
    done
  done
done
echo "== done at $((SECONDS - T0)) s"
