#!/usr/bin/env bash
# run.sh — wick's encoder against PyTorch and ONNX Runtime on the CPU, side by side in one run
# (issue 15's speed goal): the same random-weight BERT-layout safetensors of a real shape, the
# same token ids, the same threads, the three tools alternating in every round.
#
#   bench/embed_compare/run.sh [ROUNDS] [THREADS] [SHAPES]      (defaults 3 2 "minilm mpnet")
#
# Needs: build/bench_embed_ids (make), Debian's python3-torch (/usr/bin/python3), node with
# onnxruntime-node (npm install --ignore-scripts here). Work files go to $TMPDIR/wick-embcmp.
# Per shape: batch 32 (256 texts of 8-128 ids, 96 for mpnet; file order; sentences/s: best of 3 passes per
# sample) and batch 1 (median per-text latency over the same texts, best of 2 passes); the
# table gives each tool's median over the rounds with the range, and wick's ratio to each.
# Every tool's embeddings are compared with wick's (max abs difference; mean pooling + L2
# normalisation): they must agree within 1e-4, which also shows the comparison is fair.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"; root="$(cd "$here/../.." && pwd)"
rounds="${1:-3}"; threads="${2:-2}"; shapes="${3:-minilm mpnet}"
py=/usr/bin/python3
W="$root/build/bench_embed_ids"
[ -x "$W" ] || { echo "run.sh: build first (make): $W missing" >&2; exit 2; }
$py -c 'import torch' 2> /dev/null || { echo "run.sh: /usr/bin/python3 lacks torch (apt-get install python3-torch)" >&2; exit 2; }
[ -d "$here/node_modules/onnxruntime-node" ] || (cd "$here" && npm install --ignore-scripts --no-audit --no-fund > /dev/null)
work="${TMPDIR:-/tmp}/wick-embcmp"; mkdir -p "$work"
echo "torch $($py -c 'import torch; print(torch.__version__)'), onnxruntime-node $(node -e "console.log(require('$here/node_modules/onnxruntime-node/package.json').version)"), $threads threads, $rounds rounds, $(date -u +%F)"
echo "| shape | test | wick | PyTorch | ONNX Runtime | wick / PyTorch | wick / ORT | max abs diff (PyTorch / ORT) |"
echo "|---|---|---|---|---|---|---|---|"
for shape in $shapes; do
  d="$work/$shape"
  n_texts=$([ "$shape" = mpnet ] && echo 96 || echo 256)
  [ -f "$d/model.safetensors" ] || $py "$here/make_model.py" "$d" "$shape" --texts $n_texts > /dev/null
  [ -f "$d/model.onnx" ] || $py "$here/torch_embed.py" "$d" "$threads" 32 1 "$d/t.f32" --export "$d/model.onnx" > /dev/null 2>&1
  for b in 32 1; do
    reps=$([ $b = 1 ] && echo 2 || echo 3)
    : > "$d/w$b" ; : > "$d/t$b" ; : > "$d/o$b"
    for r in $(seq "$rounds"); do
      "$W" "$d" "$threads" $b $reps "$d/w$b.f32" | awk '{print $2}' >> "$d/w$b"
      $py "$here/torch_embed.py" "$d" "$threads" $b $reps "$d/t$b.f32" 2> /dev/null | awk '{print $2}' >> "$d/t$b"
      node "$here/ort_embed.mjs" "$d" "$d/model.onnx" "$threads" $b $reps "$d/o$b.f32" | awk '{print $2}' >> "$d/o$b"
    done
    $py - "$d" $b "$shape" << 'PY'
import sys, statistics as st
import numpy as np
d, b, shape = sys.argv[1], sys.argv[2], sys.argv[3]
vals = {k: [float(x) for x in open(f"{d}/{k}{b}")] for k in "wto"}
emb = {k: np.fromfile(f"{d}/{k}{b}.f32", dtype=np.float32) for k in "wto"}
dt, do = float(np.abs(emb["w"] - emb["t"]).max()), float(np.abs(emb["w"] - emb["o"]).max())
unit = "sentences/s" if b != "1" else "ms per text"
cell = lambda v: f"{st.median(v):.{1 if b != '1' else 2}f} ({min(v):.{1 if b != '1' else 2}f}-{max(v):.{1 if b != '1' else 2}f})"
mw, mt, mo = (st.median(vals[k]) for k in "wto")
ratio = (lambda a, x: a / x) if b != "1" else (lambda a, x: x / a)
print(f"| {shape} | batch {b} ({unit}) | {cell(vals['w'])} | {cell(vals['t'])} | {cell(vals['o'])} "
      f"| {ratio(mw, mt):.2f}x | {ratio(mw, mo):.2f}x | {dt:.1e} / {do:.1e} |")
if max(dt, do) > 1e-4:
    print(f"run.sh: embeddings disagree by more than 1e-4 ({dt:.2e} torch, {do:.2e} ORT)", file=sys.stderr)
    sys.exit(1)
PY
  done
done
