#!/usr/bin/env bash
# demo-lora.sh [BUILD] — LoRA on the demo model: fine-tune models/kjv-demo (King James Bible)
# on fortune cookies (Debian's fortunes-min: /usr/share/games/fortunes/fortunes, BSD licence;
# nothing of it is committed) for a few minutes, generate with and without the adapter from
# the same prompts and seeds, then load the adapter into a running server and switch between
# base model and adapter per request.
set -euo pipefail
BUILD="${1:-build}"
cd "$(dirname "$0")/.."
W="$BUILD/wick"
MODEL=models/kjv-demo
OUT="$BUILD/demo-lora"
FORT=/usr/share/games/fortunes/fortunes
if [ ! -f "$FORT" ]; then
  if [ "$(id -u)" = 0 ]; then apt-get install -y fortunes-min >/dev/null
  else echo "demo-lora: needs Debian's fortunes-min package (apt-get install fortunes-min)" >&2; exit 1; fi
fi
mkdir -p "$OUT"
# one JSONL example per fortune (the text, then the model's EOS: the adapter learns to stop)
LC_ALL=C awk 'BEGIN { RS = "%\n" }
  { gsub(/[\001-\010\013-\037\177]/, ""); sub(/\n+$/, ""); gsub(/\\/, "\\\\"); gsub(/"/, "\\\"");
    gsub(/\t/, " "); gsub(/\n/, "\\n"); if (length($0)) print "{\"text\": \"" $0 "\"}" }' \
  "$FORT" > "$OUT/fortunes.jsonl"
echo "== fine-tuning a rank-16 LoRA on $(wc -l < "$OUT/fortunes.jsonl") fortunes"
rm -rf "$OUT/adapter"
"$W" train -m "$MODEL" --data "$OUT/fortunes.jsonl" --out "$OUT/adapter" -r 16 --alpha 32 \
  --targets q,k,v,o,gate,up,down --lr 3e-3 --steps 150 --batch 16 --seq-len 64 \
  --schedule cosine --warmup 10 --seed 1 --log-every 10
for prompt in "You will" "A wise man"; do
  printf '\n\033[1m== base model: %s\033[0m' "$prompt"
  "$W" generate -m "$MODEL" -p "$prompt" -n 40 --temp 0.7 --seed 3
  printf '\n\033[1m== with the fortunes adapter: %s\033[0m' "$prompt"
  "$W" generate -m "$MODEL" --adapter "$OUT/adapter" -p "$prompt" -n 40 --temp 0.7 --seed 3
  echo
done
echo
echo "== the server: load the adapter at run time, then choose per request"
PORT=${PORT:-18089}
"$W" serve -m "$MODEL" --port "$PORT" -q > "$OUT/serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -sf "localhost:$PORT/health" >/dev/null && break; sleep 0.1; done
curl -s "localhost:$PORT/v1/adapters" -d "{\"name\": \"fortunes\", \"path\": \"$PWD/$OUT/adapter\"}"
echo
for model in kjv-demo fortunes; do
  printf '%-9s: ' "$model"
  curl -s "localhost:$PORT/v1/completions" -d "{\"model\": \"$model\", \"prompt\": \"You will\",
    \"max_tokens\": 30, \"temperature\": 0.7, \"seed\": 3}" |
    sed -n 's/.*"text":"\([^"]*\)".*/You will\1/p'
  echo
done
