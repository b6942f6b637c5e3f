#!/usr/bin/env bash
# Copy to .gpu/ with segv.c: builds test_arch_golden and test_engine with debug info, runs
# them on the GPU with CUDA graphs off and on, and on a crash prints the backtrace (an
# LD_PRELOAD handler that keeps cmocka from catching SIGSEGV) resolved with addr2line.
set -u
G=$PWD/.gpu
eval "$("$G/deps.sh" /tmp/deps)" || exit 1
mkdir -p /tmp/fixtures && tar -xJf "$G/fixtures.tar.xz" -C /tmp/fixtures
export WICK_FIXTURES=/tmp/fixtures CI=true
gcc -shared -fPIC -O1 -o /tmp/segv.so "$G/segv.c" -ldl || exit 1
cmake -S . -B /tmp/bd -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWICK_CUDA=ON >/dev/null &&
  cmake --build /tmp/bd -j"$(nproc)" --target test_arch_golden test_engine >/tmp/b.log 2>&1 || { tail -30 /tmp/b.log; exit 1; }
cd /tmp/bd
echo "gdb: $(command -v gdb) addr2line: $(command -v addr2line)"
for t in test_arch_golden test_engine; do
  echo "== $t graphs off"
  WICK_CUDA_GRAPHS=0 WICK_DEVICE=cuda timeout 100 ./tests/$t 2>&1 | grep -E "^\[  (FAILED|ERROR|  OK)|PASSED" | head -12
  echo "== $t graphs on"
  WICK_DEVICE=cuda LD_PRELOAD=/tmp/segv.so timeout 100 ./tests/$t > /tmp/$t.log 2>&1
  grep -E "^\[  (FAILED|ERROR|  OK)|PASSED" /tmp/$t.log | head -12
  if grep -q "SEGV backtrace" /tmp/$t.log; then
    sed -n '/SEGV backtrace/,$p' /tmp/$t.log | head -30
    sed -n '/SEGV backtrace/,$p' /tmp/$t.log | grep -o "tests/$t(+0x[0-9a-f]*)" | grep -o "0x[0-9a-f]*" |
      xargs -r addr2line -e ./tests/$t -f -C -i | paste - - | head -30
  fi
done
