#!/bin/sh
# install_check.sh BUILD_DIR SOURCE_DIR — `cmake --install` into a scratch prefix, then the
# README's library example built with `pkg-config --cflags --libs wick` against that prefix
# and run on the demo model (greedy: it must print a continuation), the man page and the
# shared library's soname checked.
set -eu
build=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" > "$tmp/install.log"
pc=$(find "$tmp/prefix" -name wick.pc)
[ -n "$pc" ] || { echo "FAIL: no wick.pc installed"; exit 1; }
libdir=$(dirname "$(dirname "$pc")")
test -x "$tmp/prefix/bin/wick" || { echo "FAIL: no bin/wick"; exit 1; }
test -f "$tmp/prefix/include/wick.h" || { echo "FAIL: no include/wick.h"; exit 1; }
grep -q '^\.TH WICK 1' "$tmp/prefix/share/man/man1/wick.1" || { echo "FAIL: no man page"; exit 1; }
grep -q '^\.SS pretrain' "$tmp/prefix/share/man/man1/wick.1" || { echo "FAIL: man page lacks commands"; exit 1; }
soname=$(objdump -p "$libdir/libwick.so" | awk '/SONAME/ {print $2}')
[ "$soname" = libwick.so.0 ] || { echo "FAIL: soname '$soname'"; exit 1; }
flags=$(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --cflags --libs wick)
cc "$src/examples/hello.c" $flags -Wl,-rpath,"$libdir" -o "$tmp/hello"
out=$("$tmp/hello" "$src/models/kjv-demo" "And God said" 12)
echo "$out"
case "$out" in
  "And God said"?*) echo "PASS: pkg-config build of examples/hello.c runs ($flags)" ;;
  *) echo "FAIL: hello printed '$out'"; exit 1 ;;
esac
