#!/bin/sh
# cli_check.sh BUILD_DIR SOURCE_DIR — the `wick` command line as a user meets it: every
# command's --help (stdout, exit 0), exit codes of good and bad arguments (0 ok, 1 runtime
# error, 2 usage error), --json output parsed as JSON, training's progress/log/summary files,
# the summary line of writing commands, --force refusals, and no partial output after an
# injected failure (a read-only output folder, a model that cannot be read).
# Runs on the demo model (models/kjv-demo) and scratch models from `wick create-random`; the
# fixtures in $WICK_FIXTURES (default ../shared/fixtures) add the BERT and adapter checks when
# present. Prints PASS/FAIL per check and exits 1 when any failed.
set -u
build=$1
src=$2
W="$(cd "$build" && pwd)/wick"
M="$(cd "$src" && pwd)/models/kjv-demo"
FIX=${WICK_FIXTURES:-$src/../shared/fixtures}
tmp=$(mktemp -d)
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
export OPENBLAS_NUM_THREADS=1
fails=0

pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# run NAME EXPECTED_RC cmd...: runs cmd with stdout in $tmp/out, stderr in $tmp/err
run() {
  _name=$1 _want=$2
  shift 2
  "$@" > "$tmp/out" 2> "$tmp/err" < /dev/null
  _got=$?
  if [ "$_got" = "$_want" ]; then pass "$_name (exit $_got)"
  else fail "$_name: exit $_got, expected $_want"; sed 's/^/    /' "$tmp/err" | head -5; fi
}
# has FILE TEXT NAME: FILE contains TEXT
has() { if grep -qF -- "$2" "$1"; then pass "$3"; else fail "$3: '$2' not in $(basename "$1")"; sed 's/^/    /' "$1" | head -5; fi; }
hasnt() { if grep -qF -- "$2" "$1"; then fail "$3: '$2' in $(basename "$1")"; else pass "$3"; fi; }
# json FILE NAME: FILE is one JSON document
if command -v python3 > /dev/null 2>&1; then
  json() { if python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$1" 2> /dev/null; then pass "$2"; else fail "$2: not JSON"; head -c 300 "$1"; fi; }
elif command -v jq > /dev/null 2>&1; then
  json() { if jq -e . "$1" > /dev/null 2>&1; then pass "$2"; else fail "$2: not JSON"; fi; }
else
  json() { echo "SKIP: $2 (no python3 or jq to parse JSON)"; }
fi
# leftovers DIR NAME: no writer temporaries in DIR
leftovers() { if ls -A "$1" 2> /dev/null | grep -q 'wick-tmp\|wick-old'; then fail "$2: temporaries left in $1"; ls -A "$1"; else pass "$2"; fi; }

# ---- --help on every command: usage on stdout, exit 0 ----
for c in $("$W" help | awk '/^commands:/ {on = 1; next} on && /^  [a-z]/ {print $1}'); do
  run "$c --help" 0 "$W" "$c" --help
  has "$tmp/out" "usage: wick" "$c --help prints its usage on stdout"
done
for b in generate stream adapters batch serve kernels; do
  run "bench $b --help" 0 "$W" bench "$b" --help
  has "$tmp/out" "usage: wick bench" "bench $b --help prints its usage on stdout"
done
run "wick (no command)" 2 "$W"
run "wick unknown command" 2 "$W" frobnicate
run "wick --version" 0 "$W" --version

# ---- train: progress, log, loss curve, eval, summary ----
i=0
: > "$tmp/d.jsonl"
while [ $i -lt 24 ]; do
  echo "{\"prompt\": \"And God said $i\", \"completion\": \" let there be light\"}" >> "$tmp/d.jsonl"
  i=$((i + 1))
done
head -4 "$tmp/d.jsonl" > "$tmp/e.jsonl"
run "train with --eval-data" 0 "$W" train -m "$M" --data "$tmp/d.jsonl" --eval-data "$tmp/e.jsonl" \
  -o "$tmp/lora" --steps 12 --batch 2 --eval-every 4 --save-every 6 -t 1
n=$(grep -c '"loss": ' "$tmp/lora/training_log.jsonl")
[ "$n" = 12 ] && pass "training_log.jsonl: 12 step lines" || fail "training_log.jsonl: $n step lines"
n=$(grep -c '"eval_loss": ' "$tmp/lora/training_log.jsonl")
[ "$n" = 3 ] && pass "training_log.jsonl: 3 eval lines (steps 4, 8, 12)" || fail "training_log.jsonl: $n eval lines"
has "$tmp/lora/loss.svg" "<svg" "loss.svg beside the adapter"
has "$tmp/err" "first" "train summary names the first loss"
has "$tmp/err" "best" "train summary names the best loss"
has "$tmp/err" "eval loss" "train summary names the eval loss"
has "$tmp/err" "wrote $tmp/lora" "train ends with the written path"
has "$tmp/err" "step 12/12" "plain progress lines on a non-terminal stderr"
hasnt "$tmp/out" "step 1/" "progress stays off stdout"
test -f "$tmp/lora/checkpoint-6/adapter_model.safetensors" && pass "checkpoint-6 written" || fail "no checkpoint-6"
run "train -q" 0 "$W" train -m "$M" --data "$tmp/d.jsonl" -o "$tmp/lora-q" --steps 3 -t 1 -q
hasnt "$tmp/err" "step 1/" "-q silences progress"
[ -s "$tmp/err" ] && fail "train -q printed: $(head -3 "$tmp/err")" || pass "train -q prints nothing"
test -f "$tmp/lora-q/adapter_model.safetensors" && pass "train -q still writes the adapter" || fail "train -q wrote no adapter"
run "train --resume a checkpoint" 0 "$W" train -m "$M" --data "$tmp/d.jsonl" -o "$tmp/lora" \
  --resume "$tmp/lora/checkpoint-6" --steps 12 --batch 2 -t 1 -r 4
has "$tmp/err" "-r ignored" "-r when resuming is a stated warning"
has "$tmp/err" "6 steps (6" "resumed run trains steps 7..12"
n=$(grep -c '"loss": ' "$tmp/lora/training_log.jsonl")
[ "$n" = 12 ] && pass "resumed log keeps steps 1-6 and replaces 7-12" || fail "resumed log: $n step lines"
run "train --adapter (old spelling of --resume)" 0 "$W" train -m "$M" --data "$tmp/d.jsonl" \
  -o "$tmp/lora2" --adapter "$tmp/lora/checkpoint-6" --steps 7 --batch 2 -t 1 -q
has "$tmp/err" "--resume" "--adapter in train notes the new spelling"
run "train --eval-data missing" 1 "$W" train -m "$M" --data "$tmp/d.jsonl" --eval-data "$tmp/none.jsonl" -o "$tmp/lora3" --steps 1
has "$tmp/err" "none.jsonl" "a missing --eval-data is named"
run "train without --data" 2 "$W" train -m "$M" -o "$tmp/lora3"
run "train --steps 0" 2 "$W" train -m "$M" --data "$tmp/d.jsonl" -o "$tmp/lora3" --steps 0

# ---- one flag vocabulary ----
run "wick help flags" 0 "$W" help flags
has "$tmp/out" "-t, --threads" "help flags documents -t/--threads"
has "$tmp/out" "-T, --tokenizer" "help flags documents -T/--tokenizer"
has "$tmp/out" "Exit codes" "help flags documents the exit codes"
run "wick help merge" 0 "$W" help merge
has "$tmp/out" "usage: wick merge" "wick help CMD is CMD --help"
run "wick help nosuch" 2 "$W" help nosuch
run "tokenize -T" 0 "$W" tokenize -T "$M" --text "And God"
cp "$tmp/out" "$tmp/ids-T"
run "tokenize -t PATH (old spelling)" 0 "$W" tokenize -t "$M" --text "And God"
has "$tmp/err" "deprecated" "-t PATH notes the new spelling"
cmp -s "$tmp/out" "$tmp/ids-T" && pass "-t PATH gives what -T gives" || fail "-t PATH and -T differ"
run "tokenize --threads N" 0 "$W" tokenize --tokenizer "$M" --text "And God" --threads 2
has "$tmp/err" "no effect" "--threads where it does nothing is stated"
run "tokenize --threads PATH" 2 "$W" tokenize --threads "$M" --text "x"
run "detokenize -T --keep-special" 0 "$W" detokenize -T "$M" --ids 299,390 --keep-special
run "template -t PATH (old spelling)" 1 "$W" template -t "$M" --messages "$tmp/nosuch.json"
has "$tmp/err" "No such file" "template's unreadable --messages says why"
run "generate --ctx above the maximum" 0 "$W" generate -m "$M" -p "And" -n 2 --temp 0 --ctx 100000 -t 1
has "$tmp/err" "above the model's maximum of 1024" "--ctx above max_position_embeddings is a stated warning"
run "generate -a (short --adapter)" 0 "$W" generate -m "$M" -a "$tmp/lora" -p "And" -n 2 --temp 0 -t 1
run "generate --json" 0 "$W" generate -m "$M" -p "And God said" -n 4 --temp 0 --json -t 1
if command -v python3 > /dev/null 2>&1; then
  if python3 -c 'import json,sys; [json.loads(l) for l in open(sys.argv[1]) if l.strip()]' "$tmp/out"; then
    pass "generate --json: every stdout line is JSON"; else fail "generate --json: stdout is not JSON lines"; fi
fi
run "generate --json --logprobs" 0 "$W" generate -m "$M" -p "And God said" -n 3 --temp 0 --json --logprobs 5 -t 1
hasnt "$tmp/out" '"token":"\u0120' "top_logprobs tokens are decoded text"
hasnt "$tmp/out" '"token":"Ġ' "top_logprobs tokens are decoded text (no Ġ)"
has "$tmp/out" '"token":" ' "a decoded token keeps its leading space"
run "generate --json --logprobs --raw-tokens" 0 "$W" generate -m "$M" -p "And God said" -n 3 --temp 0 --json --logprobs 5 --raw-tokens -t 1
has "$tmp/out" 'Ġ' "--raw-tokens shows the vocabulary strings"
run "logits top-5" 0 "$W" logits -m "$M" --ids 299,390 -t 1
has "$tmp/out" '" said"' "logits top-5 shows decoded, quoted text"
printf 'line one\nab\377cd\n' > "$tmp/bad-utf8.txt"
run "tokenize invalid UTF-8 file" 1 "$W" tokenize -T "$M" --file "$tmp/bad-utf8.txt"
has "$tmp/err" "byte 11 (line 2): 0xFF" "invalid UTF-8 is named by byte offset and line"
run "generate invalid UTF-8 prompt" 2 "$W" generate -m "$M" -p "$(printf 'ab\377')" -n 1
has "$tmp/err" "not valid UTF-8 at byte 2" "an invalid -p names the byte"
if [ -d "$FIX/tiny-bert" ]; then
  run "embed invalid UTF-8 line" 1 "$W" embed -m "$FIX/tiny-bert" --file "$tmp/bad-utf8.txt"
  has "$tmp/err" "line 2" "embed names the line of --file"
fi
run "tokenize valid UTF-8" 0 "$W" tokenize -T "$M" --text "héllo 日本 😀"
run "info --json" 0 "$W" info "$M" --json
json "$tmp/out" "info --json stdout parses"
run "train --threads" 0 "$W" train -m "$M" --data "$tmp/d.jsonl" -o "$tmp/lora-t" --steps 1 --threads 1 -q
run "bench generate --help" 0 "$W" bench generate --help

# ---- writing commands: summary line, --force, no partial output ----
TOKDIR="$FIX/tokenizers/qwen3"
tokopt=""
[ -d "$TOKDIR" ] && tokopt="--tokenizer $TOKDIR"
run "create-random" 0 "$W" create-random --like tiny -o "$tmp/rnd" $tokopt
has "$tmp/err" "wick create-random: wrote $tmp/rnd (" "create-random summary line"
run "create-random over an existing folder" 1 "$W" create-random --like tiny -o "$tmp/rnd"
has "$tmp/err" "--force" "create-random names --force"
run "create-random --force" 0 "$W" create-random --like tiny -o "$tmp/rnd" --force -q $tokopt
[ -s "$tmp/err" ] && fail "create-random -q printed: $(cat "$tmp/err")" || pass "create-random -q prints nothing"
run "create-random unknown shape" 1 "$W" create-random --like nosuch -o "$tmp/rnd-x"
test -e "$tmp/rnd-x" && fail "a failed create-random left $tmp/rnd-x" || pass "no output after a failed create-random"
run "quantize" 0 "$W" quantize "$tmp/rnd" -o "$tmp/q8.gguf" --type q8_0
has "$tmp/err" "wick quantize: wrote $tmp/q8.gguf (" "quantize summary line"
has "$tmp/err" "MiB" "the summary gives the size"
run "quantize over an existing file" 1 "$W" quantize "$tmp/rnd" -o "$tmp/q8.gguf" --type q8_0
run "quantize bad --type" 2 "$W" quantize "$tmp/rnd" -o "$tmp/qx.gguf" --type q3_x
run "convert GGUF -> folder" 0 "$W" convert "$tmp/q8.gguf" -o "$tmp/conv"
has "$tmp/err" "wick convert: wrote $tmp/conv (" "convert summary line"
run "convert a missing input" 1 "$W" convert "$tmp/nosuch" -o "$tmp/conv2.gguf"
has "$tmp/err" "nosuch" "a missing input is named"
test -e "$tmp/conv2.gguf" && fail "convert left conv2.gguf" || pass "no output after a failed convert"
run "merge" 0 "$W" merge -m "$M" -a "$tmp/lora" -o "$tmp/merged"
has "$tmp/err" "wick merge: wrote $tmp/merged (" "merge summary line"
run "merge over an existing folder" 1 "$W" merge -m "$M" -a "$tmp/lora" -o "$tmp/merged"
run "merge --force" 0 "$W" merge -m "$M" -a "$tmp/lora" -o "$tmp/merged" --force
run "merge -o the base" 2 "$W" merge -m "$M" -a "$tmp/lora" -o "$M/" --force
has "$tmp/err" "base model" "merge -o BASE says why"
run "merge -o the adapter" 2 "$W" merge -m "$M" -a "$tmp/lora" -o "$tmp/lora" --force
printf 'low lower lowest newer newest wider widest\n' > "$tmp/corpus.txt"
run "tokenizer-train" 0 "$W" tokenizer-train --vocab 270 --data "$tmp/corpus.txt" -o "$tmp/tok.json"
has "$tmp/err" "wick tokenizer-train: wrote $tmp/tok.json (" "tokenizer-train summary line"
run "tokenizer-train unreadable data" 1 "$W" tokenizer-train --vocab 270 --data "$tmp/nosuch.txt" -o "$tmp/tok2.json"
has "$tmp/err" "No such file" "cannot read says why (errno text)"

# an injected failure: the output grows past RLIMIT_FSIZE (SIGXFSZ ignored, so write() fails
# with EFBIG as on a full disk) — nothing may remain, and the message names the final path
mkdir "$tmp/full"
inject() { (trap '' XFSZ; ulimit -f 1024; "$@") > "$tmp/out" 2> "$tmp/err"; }
for c in "create-random --like tiny -o $tmp/full/rnd" \
         "quantize $tmp/rnd -o $tmp/full/q.gguf --type f32" \
         "convert $tmp/q8.gguf -o $tmp/full/conv" \
         "merge -m $M -a $tmp/lora -o $tmp/full/m"; do
  # shellcheck disable=SC2086
  inject "$W" $c
  rc=$?
  [ $rc = 1 ] && pass "injected failure: '${c%% *}' exits 1" || fail "injected failure: '${c%% *}' exit $rc"
  if [ -n "$(ls -A "$tmp/full")" ]; then fail "injected failure: '${c%% *}' left $(ls -A "$tmp/full")"
  else pass "injected failure: '${c%% *}' leaves nothing"; fi
  hasnt "$tmp/err" "wick-tmp" "injected failure: '${c%% *}' names the final path"
done
inject "$W" train -m "$M" --data "$tmp/d.jsonl" -o "$tmp/full/m" --full --steps 1 -t 1 -q
test -e "$tmp/full/m/model.safetensors" && fail "a failed train --full left model.safetensors" || pass "no bogus model.safetensors after a failed train --full"
leftovers "$tmp/full" "no temporaries after injected failures"
leftovers "$tmp" "no temporaries in the scratch folder"

# ---- fixtures from the command line: BERT info, adapter/base mismatch, special ids ----
if [ -d "$FIX/tiny-bert" ]; then
  run "info on a BERT folder" 0 "$W" info "$FIX/tiny-bert"
  has "$tmp/out" "BertModel" "info names the encoder architecture"
  has "$tmp/out" "mean pooling" "info shows the embedding settings"
  run "info --json on a BERT folder" 0 "$W" info "$FIX/tiny-bert" --json
  json "$tmp/out" "BERT info --json parses"
  has "$tmp/out" '"kind": "encoder"' "BERT info --json says encoder"
else
  echo "SKIP: tiny-bert fixture not found ($FIX)"
fi
# MPNet + Dense (tests/data/arch/mpnet, in the tree): embed gives 32 floats per text, info
# shows the Dense width
A="$(cd "$src" && pwd)/tests/data/arch/mpnet"
run "embed on an MPNet folder with a Dense module" 0 "$W" embed -m "$A" --text "a test" -t 1
json "$tmp/out" "MPNet embed output parses"
if [ "$(tr -cd , < "$tmp/out" | wc -c)" -eq 31 ]; then pass "MPNet + Dense embedding has 32 floats"
else fail "MPNet + Dense embedding is not 32 floats: $(cut -c1-80 "$tmp/out")"; fi
run "info on an MPNet folder" 0 "$W" info "$A"
has "$tmp/out" "MPNetModel" "info names MPNet"
has "$tmp/out" "dim 32" "info shows the Dense width as the embedding dim"
# --dim (Matryoshka, renormalised), --quantize, --index + wick search
run "embed --dim 8" 0 "$W" embed -m "$A" --text "a test" --dim 8 -t 1
if [ "$(tr -cd , < "$tmp/out" | wc -c)" -eq 7 ]; then pass "--dim 8 gives 8 floats"; else fail "--dim 8: $(cut -c1-80 "$tmp/out")"; fi
if python3 -c 'import json,sys; v=json.load(open(sys.argv[1])); assert abs(sum(x*x for x in v)-1) < 1e-5' "$tmp/out" 2> /dev/null
then pass "--dim renormalises"; else fail "--dim 8 row is not unit length"; fi
run "embed --dim beyond the model" 2 "$W" embed -m "$A" --text x --dim 33
has "$tmp/err" "more than the model's 32 values" "--dim too large is explained"
run "embed --quantize binary" 0 "$W" embed -m "$A" --text "a" --text "b" --quantize binary -t 1
if [ "$(head -n 1 "$tmp/out" | tr -cd , | wc -c)" -eq 3 ]; then pass "binary packs 32 values into 4 bytes"; else fail "binary: $(head -n 1 "$tmp/out")"; fi
run "embed --quantize int8" 0 "$W" embed -m "$A" --text "a" --text "b" --quantize int8 -t 1
has "$tmp/out" "127" "int8 codes reach the top of the range"
run "embed --quantize junk" 2 "$W" embed -m "$A" --text a --quantize int4
printf 'the cat sat on the mat\nbread and wine\n"quoted" line\n' > "$tmp/corpus.txt"
run "embed --index" 0 "$W" embed -m "$A" --file "$tmp/corpus.txt" --index "$tmp/ix" -t 1
run "embed --index over an existing one" 1 "$W" embed -m "$A" --file "$tmp/corpus.txt" --index "$tmp/ix" -t 1
has "$tmp/err" "--force replaces it" "an existing index is kept without --force"
run "search" 0 "$W" search --index "$tmp/ix" -k 2 --json "the cat" -t 1
n=$(wc -l < "$tmp/out")
[ "$n" = 2 ] && pass "search -k 2 prints 2 results" || fail "search printed $n lines"
head -n 1 "$tmp/out" > "$tmp/s1.json" && json "$tmp/s1.json" "search --json lines are JSON"
run "search the index's own text" 0 "$W" search --index "$tmp/ix" -k 1 --json '"quoted" line' -t 1
has "$tmp/out" '"text":"\"quoted\" line"' "a stored text comes back exactly (quotes included)"
has "$tmp/out" '"rank":1' "results are ranked"
run "search a missing index" 1 "$W" search --index "$tmp/nope" "x"
has "$tmp/err" "is $tmp/nope an index" "a missing index is explained"
# a damaged index.json: numbers out of range or not whole are refused by name, not converted
cp -r "$tmp/ix" "$tmp/ixbad"
sed -i 's/"dim":[0-9]*/"dim":1e30/' "$tmp/ixbad/index.json"
run "search an index with dim 1e30" 1 "$W" search --index "$tmp/ixbad" "x" -t 1
has "$tmp/err" "index.json: expected fields" "an out-of-range dim names index.json"
sed -i 's/"dim":1e30/"dim":4.5/' "$tmp/ixbad/index.json"
run "search an index with dim 4.5" 1 "$W" search --index "$tmp/ixbad" "x" -t 1
has "$tmp/err" "whole numbers" "a fractional dim is refused"
# a decoder embedder (tests/data/arch/qwen3_embed: Qwen3-Embedding's layout): last-token
# pooling, the folder's prompts, an index searched with the query prompt
Q="$(cd "$src" && pwd)/tests/data/arch/qwen3_embed"
run "embed with a decoder (Qwen3-Embedding layout)" 0 "$W" embed -m "$Q" --text "a test" -t 1
json "$tmp/out" "decoder embed output parses"
run "embed --prompt-name query" 0 "$W" embed -m "$Q" --text "a test" --prompt-name query -t 1
run "embed --prompt-name of a missing prompt" 1 "$W" embed -m "$Q" --text x --prompt-name passage
has "$tmp/err" 'no prompt named "passage"' "a missing prompt is named with the ones there are"
run "embed --pooling weightedmean" 0 "$W" embed -m "$Q" --text x --pooling weightedmean -t 1
run "embed --index with a decoder" 0 "$W" embed -m "$Q" --file "$tmp/corpus.txt" --index "$tmp/qix" -t 1
run "search with --prompt-name query" 0 "$W" search --index "$tmp/qix" -k 1 --json --prompt-name query "the cat" -t 1
has "$tmp/out" '"rank":1' "a decoder index is searched with the query prompt"
run "info on a decoder embedder" 0 "$W" info "$Q"
has "$tmp/out" "lasttoken pooling" "info shows a decoder embedder's pooling"
cp -r "$Q" "$tmp/q-headless"
sed -i 's/"tie_word_embeddings": true/"tie_word_embeddings": false/' "$tmp/q-headless/config.json"
run "info on a decoder without lm_head" 0 "$W" info "$tmp/q-headless"
has "$tmp/out" "embeddings only" "info says a headless decoder only embeds"
run "generate with a decoder without lm_head" 1 "$W" generate -m "$tmp/q-headless" --prompt-ids 1,2 -n 2
has "$tmp/err" "lm_head.weight" "generation names the missing lm_head"
if [ -d "$FIX/tiny-llama" ] && [ -d "$FIX/tiny-qwen2-lora/adapter_a" ]; then
  run "Qwen2 adapter on a LLaMA base" 1 "$W" logits -m "$FIX/tiny-llama" -a "$FIX/tiny-qwen2-lora/adapter_a" --ids 1,2,3 --out "$tmp/l.safetensors"
  has "$tmp/err" "Qwen2ForCausalLM" "the mismatch names the adapter's base architecture"
  has "$tmp/err" "LlamaForCausalLM" "the mismatch names the model's architecture"
  run "Qwen2 adapter on its Qwen2 base" 0 "$W" logits -m "$FIX/tiny-qwen2" -a "$FIX/tiny-qwen2-lora/adapter_a" --ids 1,2,3 --out "$tmp/l.safetensors"
  run "adapter on a base of other shapes" 1 "$W" logits -m "$M" -a "$FIX/tiny-qwen2-lora/adapter_a" --ids 1,2,3 --out "$tmp/l.safetensors"
  has "$tmp/err" "hidden 64" "the shape mismatch names the adapter's base shape"
  has "$tmp/err" "hidden 256" "the shape mismatch names the model's shape"
else
  echo "SKIP: tiny-llama / tiny-qwen2-lora fixtures not found ($FIX)"
fi
# bos/eos/pad ids through folder -> GGUF -> folder, with ids the tokenizer files do not imply
ids() { "$W" info "$1" --json | sed 's/.*"bos_id": \([^,]*\), "eos_ids": \(\[[^]]*\]\), "pad_id": \([^,]*\),.*/\1 \2 \3/'; }
cp -r "$tmp/rnd" "$tmp/ids"
sed -i 's/"bos_token_id": [^,]*,/"bos_token_id": 4,/; s/"eos_token_id": [^,}]*/"eos_token_id": [5, 6, 7], "pad_token_id": 9/' "$tmp/ids/config.json" "$tmp/ids/generation_config.json"
want="4 [5, 6, 7] 9"
[ "$(ids "$tmp/ids")" = "$want" ] && pass "edited ids load ($want)" || fail "edited ids: $(ids "$tmp/ids")"
run "convert folder -> GGUF" 0 "$W" convert "$tmp/ids" -o "$tmp/ids.gguf" -q
[ "$(ids "$tmp/ids.gguf")" = "$want" ] && pass "GGUF keeps bos/eos/pad" || fail "GGUF ids: $(ids "$tmp/ids.gguf"), expected $want"
run "convert GGUF -> folder" 0 "$W" convert "$tmp/ids.gguf" -o "$tmp/ids2" -q
[ "$(ids "$tmp/ids2")" = "$want" ] && pass "folder -> GGUF -> folder keeps bos/eos/pad" || fail "round-trip ids: $(ids "$tmp/ids2"), expected $want"
[ "$(ids "$M")" = "$(cd "$tmp" && "$W" convert "$M" -o "$tmp/kjv.gguf" -q && ids "$tmp/kjv.gguf")" ] && pass "demo model's ids survive convert" || fail "demo model's ids change in convert"

# ---- Ctrl-C during train: a loadable checkpoint of the last completed step, exit 130 ----
"$W" train -m "$M" --data "$tmp/d.jsonl" -o "$tmp/sig" --steps 100000 --batch 2 -t 1 \
  > "$tmp/sig.out" 2> "$tmp/sig.err" < /dev/null &
pid=$!
i=0
while [ $i -lt 300 ]; do
  n=$(grep -c '"loss": ' "$tmp/sig/training_log.jsonl" 2> /dev/null)
  [ "${n:-0}" -ge 3 ] && break
  sleep 0.1
  i=$((i + 1))
done
kill -INT $pid
wait $pid
rc=$?
[ $rc = 130 ] && pass "SIGINT during train exits 130" || fail "SIGINT during train: exit $rc"
ck=$(ls -d "$tmp/sig"/checkpoint-* 2> /dev/null | head -1)
if [ -n "$ck" ]; then
  pass "SIGINT leaves $(basename "$ck")"
  has "$tmp/sig.err" "saved $ck" "the interrupt message names the checkpoint"
  run "the checkpoint loads as an adapter" 0 "$W" generate -m "$M" -a "$ck" -p "And" -n 2 --temp 0 -t 1
  step=${ck##*-}
  run "train --resume the checkpoint" 0 "$W" train -m "$M" --data "$tmp/d.jsonl" -o "$tmp/sig" \
    --resume "$ck" --steps $((step + 2)) --batch 2 -t 1 -q
  n=$(grep -c '"loss": ' "$tmp/sig/training_log.jsonl")
  [ "$n" = $((step + 2)) ] && pass "the resumed run continues from step $step" || fail "resumed log has $n step lines, expected $((step + 2))"
else
  fail "SIGINT left no checkpoint in $tmp/sig"; cat "$tmp/sig.err"
fi
leftovers "$tmp/sig" "no temporaries after SIGINT"

# ---- bench: the table's columns line up (± is one column), noisy rows are explained ----
# (only with WICK_CLI_BENCH=1: it reads 512 MB buffers to measure bandwidth, which would
# disturb benchmarks running beside the tests)
if [ "${WICK_CLI_BENCH:-0}" = 1 ]; then
  run "bench generate" 0 "$W" bench generate -m "$M" -t 1 -p 8 -n 4 -r 2
  n=$(sed 's/±/+/g' "$tmp/out" | awk '/^\|/ {print length($0)}' | sort -u | wc -l)
  [ "$n" = 1 ] && pass "bench generate table rows have one width" || fail "bench generate table rows have $n widths"
  if grep -q '^| [a-z0-9]* \*' "$tmp/out"; then has "$tmp/out" "* noisy" "a row marked * is explained"; fi
else
  echo "SKIP: bench generate table (set WICK_CLI_BENCH=1)"
fi

# ---- bench spec: oracle and prompt-lookup rows (each checked against plain greedy output
# by the command itself), bad --accept ----
run "bench spec" 0 "$W" bench spec -m "$M" -t 1 -p 8 -n 16 -r 1 --accept 0.5,1 --ngram 2
has "$tmp/out" "| oracle | 50% |" "bench spec prints an oracle row per acceptance"
has "$tmp/out" "| prompt lookup (n=2) |" "bench spec prints the prompt-lookup row"
run "bench spec --accept 1.5" 2 "$W" bench spec -m "$M" --accept 1.5
has "$tmp/err" "expected up to 8 numbers in [0, 1]" "bench spec names the bad --accept"
# ---- bench generate: depth, --json, --compare-with (a stand-in llama-bench), bad options ----
run "bench generate -d junk" 2 "$W" bench generate -m "$M" -d 4,x
has "$tmp/err" "-d 4,x: expected" "bench generate names the bad -d list"
run "bench generate --kv-type junk" 2 "$W" bench generate -m "$M" --kv-type f8
has "$tmp/err" "expected f16, bf16, q8_0 or f32" "bench generate lists the KV types"
run "bench kernels --shapes junk" 2 "$W" bench kernels --shapes 384x384,12
has "$tmp/err" "--shapes expects a comma list of up to 8 ROWSxCOLS" "bench kernels names the bad --shapes"
run "bench generate --compare-with missing" 2 "$W" bench generate -m "$M" --compare-with "$tmp/nope"
has "$tmp/err" "not an executable file" "bench generate says the comparison tool is missing"
run "bench generate --compare-with on a folder model" 2 "$W" bench generate -m "$M" -p 4 -n 0 -r 1 \
  --compare-with /bin/true
has "$tmp/err" "needs a GGUF file" "--compare-with refuses a model llama-bench cannot read"
# a GGUF copy of the demo model and a stand-in llama-bench that echoes its arguments back as JSON
if "$W" convert "$M" -o "$tmp/demo.gguf" -q > /dev/null 2>&1; then
  cat > "$tmp/fake-llama-bench" << 'EOF2'
#!/bin/sh
p=0 n=0 d=0
while [ $# -gt 0 ]; do case $1 in -p) p=$2; shift ;; -n) n=$2; shift ;; -d) d=$2; shift ;; esac; shift; done
echo "{\"build_commit\": \"fake\", \"type_k\": \"f16\", \"flash_attn\": 0, \"n_prompt\": $p, \"n_gen\": $n, \"n_depth\": $d, \"avg_ts\": 1000.0}"
EOF2
  chmod +x "$tmp/fake-llama-bench"
  run "bench generate --json --compare-with -d" 0 "$W" bench generate -m "$tmp/demo.gguf" -t 1 -p 4 -n 2 -d 0,8 -r 2 \
    --json --compare-with "$tmp/fake-llama-bench"
  n=$(wc -l < "$tmp/out")
  [ "$n" = 4 ] && pass "bench generate --json prints one line per test (pp, tg at 2 depths)" || fail "bench generate --json printed $n lines, expected 4"
  head -n 1 "$tmp/out" > "$tmp/l1.json" && json "$tmp/l1.json" "bench generate --json lines are JSON"
  has "$tmp/out" '"n_depth":8' "the depth is in the JSON"
  has "$tmp/out" '"build_commit":"fake","type_k":"f16","flash_attn":0,"samples_ts":[1000,1000]' "llama-bench's samples are in the JSON"
  has "$tmp/out" '"syncs_per_token":' "decode reports synchronisations per token"
  run "bench generate --compare-with table" 0 "$W" bench generate -m "$tmp/demo.gguf" -t 1 -p 4 -n 0 -r 1 \
    --compare-with "$tmp/fake-llama-bench"
  has "$tmp/out" "1000.0 (1000.0–1000.0)" "the table shows llama-bench's median and range"
  has "$tmp/out" "build fake, KV f16" "the table names the llama-bench build and KV type"
else
  fail "wick convert of the demo model to GGUF"
fi

# ---- chat: /params, /save, /load, /help, tokens/s (driven through a pipe) ----
printf 'In the beginning\n/params temp=0 max_tokens=4\n/params top_p=2\nAnd God said\n/save %s\n/help\n/frob\n/load %s\n/params\n/exit\n' \
  "$tmp/c.json" "$tmp/c.json" > "$tmp/chat.in"
"$W" chat -m "$M" -n 4 -t 1 < "$tmp/chat.in" > "$tmp/out" 2> "$tmp/err"
rc=$?
[ $rc = 0 ] && pass "chat session through a pipe (exit 0)" || fail "chat session: exit $rc"
has "$tmp/out" "temp=0," "/params shows the changed temperature"
has "$tmp/out" "top_p expects a number in" "/params refuses an out-of-range value"
has "$tmp/out" "saved $tmp/c.json" "/save names the file"
has "$tmp/out" "loaded $tmp/c.json" "/load names the file"
has "$tmp/out" "/save FILE, /load FILE" "/help lists the commands"
has "$tmp/out" "unknown command" "an unknown /command is named"
has "$tmp/err" "tok/s]" "each reply ends with its speed on stderr"
json "$tmp/c.json" "/save writes JSON"
has "$tmp/c.json" "In the beginning" "/save keeps what was typed"
if [ -d "$FIX/tokenizers/qwen3" ]; then   # a chat template: user/assistant messages
  printf 'hello\n/save %s\n/load %s\n/save %s\n/exit\n' "$tmp/c2.json" "$tmp/c2.json" "$tmp/c3.json" > "$tmp/chat.in"
  "$W" chat -m "$tmp/rnd" -n 3 --temp 0 -t 1 < "$tmp/chat.in" > "$tmp/out" 2> "$tmp/err"
  has "$tmp/c2.json" '"role":	"assistant"' "/save writes the roles of a templated chat"
  cmp -s "$tmp/c2.json" "$tmp/c3.json" && pass "/load then /save gives the same file" || fail "/load + /save changed the conversation"
  run "template renders a saved chat" 0 "$W" template -T "$tmp/rnd" --messages "$tmp/c2.json"
fi

echo
if [ $fails -gt 0 ]; then echo "$fails check(s) failed"; exit 1; fi
echo "all checks passed"
