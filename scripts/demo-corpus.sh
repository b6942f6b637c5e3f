#!/bin/sh
# demo-corpus.sh OUT_DIR — the demo model's corpus: the King James Bible from Debian's
# bible-kjv-text (the text is in the public domain; the package is GPL-2+ as software) as
# plain text, one chapter heading ("Genesis 1") then one verse per line without its number,
# a blank line between chapters. Chapters are split by their index: every 20th chapter
# (index % 20 == 19) goes to OUT_DIR/valid.txt (held out, ~5%), the rest to train.txt.
# Deterministic: the same package gives the same bytes.
set -eu
out=${1:?usage: demo-corpus.sh OUT_DIR}
if ! command -v bible >/dev/null 2>&1; then
    echo "demo-corpus: the 'bible' reader is missing: apt-get install bible-kjv bible-kjv-text" >&2
    exit 1
fi
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bible -l100000 "Gen1:1-Rev22:21" > "$tmp/all.txt"
awk -v tr="$tmp/train.txt" -v va="$tmp/valid.txt" '
    /^$/ { next }
    /^  *[0-9]+ / { sub(/^ *[0-9]+ /, ""); print > f; next }
    { ch++; f = (ch % 20 == 19 ? va : tr); if (seen[f]++) print "" > f; print > f }
' "$tmp/all.txt"
mv "$tmp/train.txt" "$out/train.txt.tmp" && mv "$out/train.txt.tmp" "$out/train.txt"
mv "$tmp/valid.txt" "$out/valid.txt.tmp" && mv "$out/valid.txt.tmp" "$out/valid.txt"
echo "demo-corpus: $(wc -c < "$out/train.txt") bytes train, $(wc -c < "$out/valid.txt") bytes held out in $out" >&2
