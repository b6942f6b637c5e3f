#!/usr/bin/env bash
# deps.sh PREFIX — puts wick's build dependencies (Debian 12 packages) under PREFIX (never into
# /), rewrites their .pc files to point there, and prints the environment to eval.
# Source: .gpu/deps.tar.xz (the packages already unpacked and trimmed: no static libraries,
# no docs; made by bench/cuda-lease/pack.sh) or else .gpu/debs/*.deb.
# A shared library goes on LD_LIBRARY_PATH only when the machine lacks its soname
# (ldconfig -p): the machine's own libssl, libcurl, zlib... are never shadowed by Debian's.
set -eu
P=$1; G=$(cd "$(dirname "$0")" && pwd)
R=$P/root
mkdir -p "$R" "$P/pc" "$P/need"
if [ -f "$G/deps.tar.xz" ]; then
  tar -xJf "$G/deps.tar.xz" -C "$R"
else
  for f in "$G"/debs/*.deb; do dpkg -x "$f" "$R"; done
fi
L=$R/usr/lib/x86_64-linux-gnu
for pc in "$L"/pkgconfig/*.pc "$L"/openblas-pthread/pkgconfig/openblas.pc; do
  [ -f "$pc" ] || continue
  sed -e "s#/usr#$R/usr#g" -e '/^Requires.private/d' "$pc" > "$P/pc/$(basename "$pc")"
done
have=$(ldconfig -p 2>/dev/null | awk '{print $1}' | sort -u)
for d in "$L" "$L/openblas-pthread" "$R/lib/x86_64-linux-gnu"; do
  [ -d "$d" ] || continue
  for f in "$d"/*.so.*; do
    [ -e "$f" ] || continue
    b=$(basename "$f")
    grep -qx -- "$b" <<<"$have" || ln -sf "$f" "$P/need/$b"
  done
done
echo "export PKG_CONFIG_PATH=$P/pc"
# multiarch headers (openssl/configuration.h, curl/curlbuild.h) sit where only /usr's are found
echo "export CPATH=$R/usr/include/x86_64-linux-gnu\${CPATH:+:\$CPATH}"
echo "export LD_LIBRARY_PATH=$P/need\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
# the linker follows a library's own dependencies through -rpath-link; give it every folder
echo "export LDFLAGS=\"-Wl,-rpath-link,$L:$L/openblas-pthread:$R/lib/x86_64-linux-gnu\${LDFLAGS:+ \$LDFLAGS}\""
command -v pkg-config >/dev/null || echo "export PATH=$R/usr/bin:\$PATH"
