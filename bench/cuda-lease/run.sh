#!/usr/bin/env bash
# .gpu/run.sh [MODE] — one device call. MODE: all (default) | tests | bench
set -u
G=$(cd "$(dirname "$0")" && pwd)
MODE=${1:-all}
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
exec > >(tee -a "$OUT/run.log") 2>&1
T0=$SECONDS
echo "== env"; head -2 /etc/os-release; ldd --version | head -1; uname -r; nproc
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader
for c in pkg-config nvcc cmake ninja gcc g++ python3 compute-sanitizer; do printf '%s: %s\n' $c "$(command -v $c)"; done
nvcc --version | tail -1; cmake --version | head -1; gcc --version | head -1
python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'
eval "$("$G/deps.sh" /tmp/deps)" || { echo "deps failed"; exit 1; }
echo "deps ok ($((SECONDS-T0)) s)"
if [ -f "$G/fixtures.tar.xz" ]; then
  mkdir -p /tmp/fixtures && tar -xJf "$G/fixtures.tar.xz" -C /tmp/fixtures
  export WICK_FIXTURES=/tmp/fixtures
else
  export WICK_FIXTURES=$G/fixtures
fi
# the tree: .gpu/tree (a git archive) when it was sent, else the checkout the call runs in
if [ -d "$G/tree" ]; then cd "$G/tree"; else cd "$G/.."; fi
if [ "$MODE" != bench ]; then
  WICK_CUDA_STEP_TIMEOUT=${STEP_TIMEOUT:-150} timeout -k 5 ${CHECK_TIMEOUT:-420} scripts/cuda-check.sh
  echo "cuda-check exit $? at $((SECONDS-T0)) s"
  tar czf "$OUT/logs.tgz" -C build-cuda cuda-check-logs 2>/dev/null
  if { [ -n "${SANITIZE:-}" ] || ! grep -q "^\[  PASSED  \]" build-cuda/cuda-check-logs/test_cuda.log 2>/dev/null || grep -q "FAILED" build-cuda/cuda-check-logs/test_cuda.log; } && [ -x build-cuda/tests/test_cuda ]; then
    (cd build-cuda && WICK_REQUIRE_CUDA=1 timeout 90 compute-sanitizer --tool memcheck --print-limit 20 ./tests/test_cuda > "$OUT/sanitizer.log" 2>&1; echo "sanitizer exit $?"; tail -30 "$OUT/sanitizer.log")
  fi
else
  cmake -S . -B build-cuda -DCMAKE_BUILD_TYPE=Release -DWICK_CUDA=ON -DWICK_BUILD_TESTS=OFF >/dev/null && cmake --build build-cuda -j "$(nproc)" --target wick >/dev/null || { echo build failed; exit 1; }
  echo "built at $((SECONDS-T0)) s"
fi
[ "$MODE" = tests ] && exit 0
[ -x build-cuda/wick ] || exit 1
# ---- bench: wick (cuda) vs transformers on the same random model, alternating ----
M=/tmp/qwen05
build-cuda/wick create-random --like qwen2.5-0.5b --out $M --force --dtype bf16 --tokenizer "$WICK_FIXTURES/tokenizers/qwen3" || exit 1
IDS=$(python3 -c 'print(",".join(str((i*7919+13)%151936) for i in range(32)))')
timeout 60 build-cuda/wick logits -m $M --ids $IDS --device cuda --out /tmp/wl.safetensors | tail -2
(unset LD_LIBRARY_PATH; timeout 90 python3 "$G/cmp.py" $M /tmp/wl.safetensors $IDS 2>&1 | grep -v -i "warn\|Loading" | tee "$OUT/cmp.txt")
P=${BENCH_P:-512}; N=${BENCH_N:-128}; R=${BENCH_R:-5}
for round in $(seq ${ROUNDS:-2}); do
  echo "== round $round: wick --device cuda"
  timeout 120 build-cuda/wick bench generate -m $M --device cuda -p $P -n $N -r $R 2>&1 | tee -a "$OUT/bench_wick.txt"
  echo "== round $round: transformers bf16"
  (unset LD_LIBRARY_PATH; PYTHONUNBUFFERED=1 timeout 150 python3 scripts/torch-bench.py $M -p $P -n $N -r $R --dtype bf16 2>&1 | grep -v Warning | tee -a "$OUT/bench_torch.txt")
done
echo "== transformers f32 (once, for context)"
(unset LD_LIBRARY_PATH; PYTHONUNBUFFERED=1 timeout 150 python3 scripts/torch-bench.py $M -p $P -n $N -r $R --dtype f32 2>&1 | tee -a "$OUT/bench_torch.txt")
nvidia-smi --query-gpu=clocks.sm,temperature.gpu,power.draw --format=csv,noheader
echo "== done at $((SECONDS-T0)) s"
