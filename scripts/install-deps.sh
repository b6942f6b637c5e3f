#!/usr/bin/env bash
# Installs the Debian 12 packages wick needs to build and test. Idempotent:
# does nothing (and needs no network) when everything is already present.
set -euo pipefail
pkgs=(build-essential cmake pkg-config libopenblas-dev libcjson-dev libpcre2-dev
      libutf8proc-dev libcmocka-dev libmicrohttpd-dev libcurl4-openssl-dev libssl-dev libedit-dev curl ca-certificates
      clang libclang-rt-14-dev)   # clang + its runtimes: libFuzzer and the sanitizers for fuzz/
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
# node + npm for tests/openai (the openai SDK against wick serve); any install will do (a
# nodesource nodejs bundles npm, Debian splits them)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
# Debian's chromium for the chat page test (tests/openai/chat_page.mjs, headless)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
