#!/usr/bin/env bash
# Copy to .gpu/ (with deps.sh, deps.tar.xz, fixtures.tar.xz and, for the baseline, old.patch =
# `git diff BASELINE`) and run from the checkout root: TESTS_ONLY=1 skips the benchmark;
# MODELS, TEST_DEADLINE and TOTAL (seconds) fit it into one call.
# tests of the CUDA build on the GPU (priority order, a deadline), then decode.sh
set -u
T0=$SECONDS
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
G=$PWD/.gpu
eval "$("$G/deps.sh" /tmp/deps)" || exit 1
mkdir -p /tmp/fixtures && tar -xJf "$G/fixtures.tar.xz" -C /tmp/fixtures
export WICK_FIXTURES=/tmp/fixtures
cmake -S . -B build-cuda -DCMAKE_BUILD_TYPE=Release -DWICK_CUDA=ON >/dev/null &&
  cmake --build build-cuda -j"$(nproc)" >/tmp/b.log 2>&1 || { tail -30 /tmp/b.log; exit 1; }
echo "built at $((SECONDS - T0)) s"
cd build-cuda
export CI=true
step() { # name, timeout, command...
  local n=$1 to=$2; shift 2
  [ $((SECONDS - T0)) -gt ${TEST_DEADLINE:-300} ] && { echo "$n: skipped (deadline)"; return; }
  local t=$SECONDS
  if timeout -k 5 "$to" "$@" > "$OUT/$n.log" 2>&1; then echo "$n: ok ($((SECONDS - t)) s)";
  else echo "$n: FAILED exit $? ($((SECONDS - t)) s)"; grep -E "FAILED|ERROR|error|Failure" "$OUT/$n.log" | head -8; fi
}
step test_cuda 90 env WICK_REQUIRE_CUDA=1 ./tests/test_cuda
step test_cuda_model 90 env WICK_REQUIRE_CUDA=1 ./tests/test_cuda_model
for t in test_engine test_arch_golden test_model_golden test_generate test_server test_quant_model; do
  step "$t@cuda" 100 env WICK_DEVICE=cuda ./tests/$t
done
grep -h "graph:\|engine cuda vs\|precision fast" "$OUT"/*.log | head
cd ..
echo "tests done at $((SECONDS - T0)) s"
[ -n "${TESTS_ONLY:-}" ] && exit 0
SKIP_OLD=${SKIP_OLD:-} timeout $((${TOTAL:-560} - (SECONDS - T0))) bash bench/cuda-lease/decode.sh 1 > /dev/null 2>&1
grep -v "^==" "$OUT/decode_runs.tsv" 2>/dev/null | cut -c1-90
cat "$OUT/copy_bw.txt" 2>/dev/null
NSYS=$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -1)
echo "nsys: ${NSYS:-none}"
if [ -n "$NSYS" ] && [ $((SECONDS - T0)) -lt 500 ] && [ -d /tmp/q0.5b ]; then
  for gr in 0 1; do
    WICK_CUDA_GRAPHS=$gr timeout 40 "$NSYS" profile -t cuda --cuda-graph-trace=node -o /tmp/prof$gr -f true \
      build-cuda/wick bench generate -m /tmp/q0.5b --device cuda -p 0 -n 64 -r 1 > /dev/null 2>&1
    timeout 30 "$NSYS" stats -q -r cuda_gpu_kern_sum,cuda_api_sum -f csv -o /tmp/st$gr /tmp/prof$gr.nsys-rep > /dev/null 2>&1
    cp /tmp/st${gr}_cuda_gpu_kern_sum.csv "$OUT/kern_graphs$gr.csv" 2>/dev/null
    cp /tmp/st${gr}_cuda_api_sum.csv "$OUT/api_graphs$gr.csv" 2>/dev/null
    head -12 "$OUT/kern_graphs$gr.csv" 2>/dev/null | cut -d, -f1-9
  done
fi
echo "== done at $((SECONDS - T0)) s"
