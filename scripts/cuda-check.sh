#!/usr/bin/env bash
# cuda-check.sh — builds wick with the CUDA backend from scratch and checks it on this
# machine's GPU, then prints a summary:
#   1. configure build-cuda (Release, -DWICK_CUDA=ON) and build everything;
#   2. tests/test_cuda (every CUDA op against the reference table) and tests/test_cuda_model
#      (HF and PEFT goldens on the GPU, engine on the GPU vs the CPU), with
#      WICK_REQUIRE_CUDA=1 so that a missing GPU or driver fails instead of skipping;
#   3. the existing model tests with every model forced onto the GPU (WICK_DEVICE=cuda):
#      test_model_golden, test_arch_golden (decoder families, mixture of experts included),
#      test_engine, test_generate, test_quant_model, test_server;
#   4. `wick bench generate --device cuda` on MODEL (a model folder or .gguf), when given.
# Golden fixtures come from $WICK_FIXTURES (default ../shared/fixtures beside the tree); the
# tests run with CI=true, so a missing fixture fails rather than skips.
#
# usage: scripts/cuda-check.sh [MODEL] [extra bench generate options, e.g. -p 512 -n 128]
# Exit status 0 only when every step passed. Nothing outside build-cuda is written.
# WICK_CUDA_STEP_TIMEOUT (seconds, default 600) bounds each test and bench step.
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${WICK_CUDA_BUILD:-$ROOT/build-cuda}   # override only to test this script
MODEL=${1:-}
[ $# -gt 0 ] && shift
JOBS=$(nproc 2>/dev/null || echo 4)
STEP_TIMEOUT=${WICK_CUDA_STEP_TIMEOUT:-600}   # seconds per test step (exit 124 when exceeded)
export WICK_FIXTURES=${WICK_FIXTURES:-$ROOT/../shared/fixtures}
[ -d "$WICK_FIXTURES" ] || [ ! -d "$ROOT/shared/fixtures" ] || WICK_FIXTURES=$ROOT/shared/fixtures

declare -a NAMES RESULTS
record() { NAMES+=("$1"); RESULTS+=("$2"); }
LOG=$BUILD/cuda-check-logs
failed=0

run_step() { # name, command... : runs with its output in $LOG/name.log, tail shown on failure
    local name=$1; shift
    local t0=$SECONDS
    # a hung kernel or a deadlock must not eat a whole lease: each step has a time limit
    if timeout -k 10 "$STEP_TIMEOUT" "$@" >"$LOG/$name.log" 2>&1; then
        record "$name" "ok ($((SECONDS - t0)) s)"
    else
        record "$name" "FAILED (exit $?, $((SECONDS - t0)) s; log: $LOG/$name.log)"
        failed=1
        echo "---- $name failed; last lines of $LOG/$name.log:"
        tail -n 30 "$LOG/$name.log"
    fi
}

echo "== wick cuda-check in $ROOT"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
NVCC=$(command -v nvcc || true)
[ -z "$NVCC" ] && [ -x /usr/local/cuda/bin/nvcc ] && NVCC=/usr/local/cuda/bin/nvcc
if [ -z "$NVCC" ]; then
    echo "cuda-check: no nvcc on PATH or in /usr/local/cuda/bin" >&2
    exit 1
fi
echo "nvcc: $NVCC ($("$NVCC" --version | tail -n 1))"
echo "fixtures: $WICK_FIXTURES"

rm -rf "$BUILD"
mkdir -p "$LOG"
t0=$SECONDS
if cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DWICK_CUDA=ON \
        -DCMAKE_CUDA_COMPILER="$NVCC" >"$LOG/configure.log" 2>&1 &&
   cmake --build "$BUILD" -j "$JOBS" >"$LOG/build.log" 2>&1; then
    record build "ok ($((SECONDS - t0)) s)"
else
    record build "FAILED (logs: $LOG/configure.log, $LOG/build.log)"
    tail -n 40 "$LOG/configure.log" "$LOG/build.log"
    printf '%-20s %s\n' "${NAMES[0]}" "${RESULTS[0]}"
    exit 1
fi

cd "$BUILD"
export CI=true
run_step test_cuda env WICK_REQUIRE_CUDA=1 ./tests/test_cuda
run_step test_cuda_model env WICK_REQUIRE_CUDA=1 ./tests/test_cuda_model
for t in test_model_golden test_arch_golden test_engine test_generate test_quant_model test_server; do
    run_step "$t@cuda" env WICK_DEVICE=cuda "./tests/$t"
done
if [ -n "$MODEL" ]; then
    run_step bench_generate ./wick bench generate -m "$MODEL" --device cuda "$@"
    run_step bench_generate_cpu ./wick bench generate -m "$MODEL" -r 1 "$@"
fi

echo
echo "== summary"
for i in "${!NAMES[@]}"; do printf '%-26s %s\n' "${NAMES[$i]}" "${RESULTS[$i]}"; done
for f in test_cuda test_cuda_model; do
    [ -f "$LOG/$f.log" ] && grep -E "max (abs )?err|within|SKIP|FAIL" "$LOG/$f.log" | sed "s/^/$f: /"
done
if [ -n "$MODEL" ]; then
    echo
    echo "-- bench generate --device cuda:"
    cat "$LOG/bench_generate.log"
    echo "-- bench generate (cpu, one round, for comparison):"
    cat "$LOG/bench_generate_cpu.log"
fi
exit $failed
