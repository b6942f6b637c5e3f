#!/usr/bin/env bash
# fuzz.sh — builds wick's libFuzzer harnesses (clang, ASan + UBSan, coverage on every library
# file) in build-fuzz/, replays each harness's seed corpus and every past crash input, then
# fuzzes each for a bounded time.
#
#   scripts/fuzz.sh                    replay + 30 s of fuzzing per harness (what CI runs)
#   scripts/fuzz.sh --time 3600 gguf   a long campaign of one harness
#   scripts/fuzz.sh --replay           replay only
#   scripts/fuzz.sh --runs 10000000 --time 7200 gguf   stop at 10 M executions (or the time)
#
# Harness NAME is fuzz/fuzz_NAME.c; its seeds are fuzz/corpus/NAME/, its dictionary
# fuzz/dict/NAME.dict (when present) and its past crashes fuzz/regressions/NAME/. New inputs
# found while fuzzing go to a scratch copy of the corpus (not committed); a crash, leak or
# timeout stops the run, is saved as build-fuzz/crashes/NAME-*, and fails the script — commit
# it under fuzz/regressions/NAME/ with the fix. Limits: -timeout=10 s per input,
# -rss_limit_mb=2048, -malloc_limit_mb=512 (loaders must bound what they allocate by their
# input's size); the Jinja harness 30 s, 3 GiB, 1 GiB (its render limits). At the end a
# line per harness: executions, coverage, corpus size.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=30
replay_only=0
runs_cap=()
names=()
while [ $# -gt 0 ]; do
    case "$1" in
    --time) secs=$2; shift 2 ;;
    --replay) replay_only=1; shift ;;
    --runs) runs_cap=(-runs="$2"); shift 2 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) names+=("$1"); shift ;;
    esac
done
command -v clang >/dev/null || { echo "fuzz.sh: clang is needed (apt install clang libclang-rt-14-dev)" >&2; exit 1; }
jobs=$(nproc)
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DWICK_FUZZ=ON -DWICK_CUDA=OFF -DWICK_BUILD_TESTS=OFF >/dev/null
if [ ${#names[@]} -eq 0 ]; then
    for f in fuzz/fuzz_*.c; do
        n=$(basename "$f" .c); n=${n#fuzz_}
        [ "$n" = targets ] || names+=("$n")
    done
fi
targets=()
for n in "${names[@]}"; do targets+=("fuzz_$n"); done
cmake --build build-fuzz -j "$jobs" --target "${targets[@]}" >/dev/null
mkdir -p build-fuzz/crashes
export ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
summary=()
for n in "${names[@]}"; do
    bin=build-fuzz/fuzz_$n
    dict=(); [ -f "fuzz/dict/$n.dict" ] && dict=(-dict="fuzz/dict/$n.dict")
    dirs=()
    for d in "fuzz/corpus/$n" "fuzz/regressions/$n"; do [ -d "$d" ] && dirs+=("$d"); done
    common=(-timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512 -max_len=65536
            -artifact_prefix="build-fuzz/crashes/$n-")
    # a Jinja render may use its 512 MiB arena and 64 MiB of output, and one that runs to the
    # step limit takes seconds under the sanitizers
    [ "$n" = jinja ] && common=(-timeout=30 -rss_limit_mb=3072 -malloc_limit_mb=1024
            -max_len=4096 -artifact_prefix="build-fuzz/crashes/$n-")
    echo "== $n: replaying ${dirs[*]:-nothing}"
    if [ ${#dirs[@]} -gt 0 ]; then
        "$bin" "${common[@]}" -runs=0 "${dirs[@]}" 2> "build-fuzz/$n.replay.log" ||
            { tail -40 "build-fuzz/$n.replay.log"; echo "fuzz.sh: $n failed on a committed input" >&2; exit 1; }
    fi
    [ "$replay_only" = 1 ] && continue
    work=$(mktemp -d "build-fuzz/corpus-$n.XXXXXX")
    [ -d "fuzz/corpus/$n" ] && cp -r "fuzz/corpus/$n/." "$work/"
    echo "== $n: fuzzing for ${secs}s"
    if ! "$bin" "${common[@]}" "${dict[@]}" -max_total_time="$secs" "${runs_cap[@]}" -print_final_stats=1 \
            "$work" 2> "build-fuzz/$n.fuzz.log"; then
        tail -60 "build-fuzz/$n.fuzz.log"
        echo "fuzz.sh: $n found a failure; the input is in build-fuzz/crashes/" >&2
        exit 1
    fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "build-fuzz/$n.fuzz.log" | grep -o '[0-9]*$' || echo ?)
    cov=$(grep -o 'cov: [0-9]*' "build-fuzz/$n.fuzz.log" | tail -1 | grep -o '[0-9]*' || echo ?)
    summary+=("$n: $runs executions, coverage $cov edges, corpus $(ls "$work" | wc -l) inputs, 0 crashes")
    rm -rf "$work"
done
printf '%s\n' "${summary[@]}"
