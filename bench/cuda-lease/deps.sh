#!/usr/bin/env bash
# deps.sh PREFIX — unpacks .gpu/debs (Debian 12 packages) into PREFIX (never into /), rewrites
# their .pc files to point there, and prints the environment to eval.
set -eu
P=$1; D=$(cd "$(dirname "$0")" && pwd)/debs
mkdir -p "$P/main" "$P/extra" "$P/pc"
for f in "$D"/*.deb; do
  case $(basename "$f") in
    libgnutls30*|libp11-kit0*|libidn2-0*|libunistring2*|libtasn1-6*|libnettle8*|libhogweed6*|libgmp10*|libffi8*)
      dpkg -x "$f" "$P/extra" ;;
    *) dpkg -x "$f" "$P/main" ;;
  esac
done
L=$P/main/usr/lib/x86_64-linux-gnu
for pc in "$L"/pkgconfig/*.pc "$L"/openblas-pthread/pkgconfig/openblas.pc; do
  sed -e "s#/usr#$P/main/usr#g" -e '/^Requires.private/d' "$pc" > "$P/pc/$(basename "$pc")"
done
EXTRA=""
if ! ldconfig -p 2>/dev/null | grep -q 'libgnutls.so.30 '; then EXTRA=":$P/extra/usr/lib/x86_64-linux-gnu"; fi
if ! ldconfig -p 2>/dev/null | grep -q 'libgfortran.so.5 '; then :; fi
echo "export PKG_CONFIG_PATH=$P/pc"
echo "export LD_LIBRARY_PATH=$L:$L/openblas-pthread$EXTRA\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
command -v pkg-config >/dev/null || echo "export PATH=$P/main/usr/bin:\$PATH"
