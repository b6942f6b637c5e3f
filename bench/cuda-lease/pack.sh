#!/usr/bin/env bash
# pack.sh — makes .gpu/deps.tar.xz and .gpu/fixtures.tar.xz for a device call (the call carries
# at most 64 MB with the tracked files; the unpacked packages are 71 MB, mostly OpenBLAS).
# Run in the repository root after downloading the packages into .gpu/debs (NOTES.md lists them).
set -eu
cd "$(dirname "$0")/../.."
T=$(mktemp -d)
for f in .gpu/debs/*.deb; do dpkg -x "$f" "$T"; done
find "$T" -name '*.a' -delete
rm -rf "$T"/usr/share/doc "$T"/usr/share/man "$T"/usr/share/info "$T"/usr/share/locale "$T"/usr/share/lintian
tar -cJf .gpu/deps.tar.xz.tmp -C "$T" . && mv .gpu/deps.tar.xz.tmp .gpu/deps.tar.xz
rm -rf "$T"
F=${WICK_FIXTURES:-../shared/fixtures}
tar -cJf .gpu/fixtures.tar.xz.tmp -C "$F" tiny-qwen2 tiny-llama tiny-qwen2-lora small-qwen2 \
    tokenizers/qwen3 README.md $(cd "$F" && ls *.json) && mv .gpu/fixtures.tar.xz.tmp .gpu/fixtures.tar.xz
cp bench/cuda-lease/run.sh bench/cuda-lease/deps.sh bench/cuda-lease/cmp.py .gpu/
ls -la .gpu/deps.tar.xz .gpu/fixtures.tar.xz
