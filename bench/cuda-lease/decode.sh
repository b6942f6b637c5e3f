#!/usr/bin/env bash
# decode.sh — one device call: CUDA decode and prefill of this checkout against an older
# build of wick, side by side on the same GPU, files and settings.
#
#   .gpu/old.patch    `git diff BASELINE` of this checkout (made on the CPU machine; the
#                     baseline tree is this one with the patch taken back out, which keeps
#                     the call small: a whole second tree would not fit what a call carries)
#   run from the checkout's root on the device:  bash bench/cuda-lease/decode.sh [rounds]
#
# Builds both trees (CUDA, wick target only), makes seeded random Qwen2.5-0.5B and 1.5B
# shaped models (bf16 folders and q4_0 GGUFs made by `wick quantize`), measures the GPU's
# device-to-device copy bandwidth with torch, then alternates, round by round:
#   old            the baseline build
#   new graphs=0   this checkout with recorded passes off (WICK_CUDA_GRAPHS=0; MID_ENV and
#                  MID_LABEL pick another setting, e.g. MID_ENV=WICK_CUDA_FUSE=0 MID_LABEL=new-fuse0)
#   new            this checkout as shipped
# each running `wick bench generate --device cuda -p 512 -n 128 -r 3`, plus tg128 at a depth
# of 4096 tokens on the 0.5B bf16 model. Results go to $OUT (default /tmp/out).
set -u
ROUNDS=${1:-2}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/decode.log") 2>&1
T0=$SECONDS
G=$PWD/.gpu
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
eval "$("$G/deps.sh" /tmp/deps)" || { echo "deps failed"; exit 1; }
J=$(nproc)
build() { # src dir, build dir
    cmake -S "$1" -B "$2" -DCMAKE_BUILD_TYPE=Release -DWICK_CUDA=ON -DWICK_BUILD_TESTS=OFF \
        >/dev/null && cmake --build "$2" -j "$J" --target wick >/dev/null
}
if [ -z "${SKIP_BUILD:-}" ]; then
    rm -rf /tmp/old && mkdir -p /tmp/old
    tar -C . --exclude='./build*' --exclude=./.gpu --exclude=./.git -cf - . | tar -C /tmp/old -xf -
    (cd /tmp/old && { patch -R -p1 -s < "$G/old.patch" || git apply -R "$G/old.patch"; }) ||
        { echo "cannot take the patch out"; exit 1; }
    build /tmp/old /tmp/old/build-cuda || { echo "old build failed"; exit 1; }
    [ -x build-cuda/wick ] || build . build-cuda || { echo "new build failed"; exit 1; }
fi
OLD=/tmp/old/build-cuda/wick NEW=$PWD/build-cuda/wick
echo "built at $((SECONDS - T0)) s"
TOK=${WICK_FIXTURES:-/tmp/fixtures}/tokenizers/qwen3
for s in 0.5b 1.5b; do
    M=/tmp/q$s
    [ -d $M ] || $NEW create-random --like qwen2.5-$s --out $M --dtype bf16 --tokenizer "$TOK" -q || exit 1
    [ -f $M-q4_0.gguf ] || $NEW quantize $M $M-q4_0.gguf --type q4_0 -q 2>&1 | tail -1
done
ls -la /tmp/q0.5b/model.safetensors /tmp/q1.5b/model.safetensors /tmp/q*.gguf
(unset LD_LIBRARY_PATH; python3 bench/cuda-lease/copy_bw.py 2>&1 | grep -v Warn | tee "$OUT/copy_bw.txt")
bench() { # label, binary, model, extra env..., then bench args
    local label=$1 bin=$2 m=$3; shift 3
    echo "== $label $(basename $m) $*"
    env "$@" timeout 120 $bin bench generate -m $m --device cuda ${BARGS:--p 512 -n 128 -r 3} 2>&1 |
        grep -E "pp|tg|error|Error" | sed "s|^|$label\t$(basename $m)\t|" | tee -a "$OUT/decode_runs.tsv"
}
for round in $(seq "$ROUNDS"); do
    echo "==== round $round ($((SECONDS - T0)) s)"
    for m in ${MODELS:-/tmp/q0.5b /tmp/q0.5b-q4_0.gguf /tmp/q1.5b /tmp/q1.5b-q4_0.gguf}; do
        bench old $OLD $m WICK_X=1
        bench ${MID_LABEL:-new-graphs0} $NEW $m ${MID_ENV:-WICK_CUDA_GRAPHS=0}
        bench new $NEW $m WICK_X=1
    done
    BARGS="-p 0 -n 128 -d 4096 -r 3" bench old $OLD /tmp/q0.5b WICK_X=1
    BARGS="-p 0 -n 128 -d 4096 -r 3" bench ${MID_LABEL:-new-graphs0} $NEW /tmp/q0.5b ${MID_ENV:-WICK_CUDA_GRAPHS=0}
    BARGS="-p 2048 -n 0 -r 3" bench old $OLD /tmp/q0.5b WICK_X=1
    BARGS="-p 2048 -n 0 -r 3" bench new $NEW /tmp/q0.5b WICK_X=1
    BARGS="-p 0 -n 128 -d 4096 -r 3" bench new $NEW /tmp/q0.5b WICK_X=1
done
nvidia-smi --query-gpu=clocks.sm,temperature.gpu,power.draw --format=csv,noheader
echo "== done at $((SECONDS - T0)) s"
