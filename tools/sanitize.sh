#!/usr/bin/env bash
# tools/sanitize.sh -- the Python extension under AddressSanitizer and
# UndefinedBehaviorSanitizer (the C-only test has `make -C csrc sanitize`).
#
# Builds pytransformer in a scratch copy of the tracked files (the working
# tree's own in-place build is left alone) with csrc/ and the Cython module
# compiled -fsanitize=address,undefined, then runs the kernel tests with the
# sanitizer runtimes preloaded into python3: once on the AVX2 paths (when the
# CPU has them) and once with PT_PORTABLE=1. A UBSan finding aborts
# (-fno-sanitize-recover=undefined), as does any ASan one. Reports go to
# files (log_path: pytest's capture would swallow them with the aborted
# process), which are printed; the run fails on a non-zero pytest exit or
# on any report.
#   -fno-wrapv: Python's own CFLAGS carry -fwrapv, under which GCC drops
#     UBSan's signed-overflow check.
#   detect_leaks=0: CPython and NumPy keep memory until exit.
# Reports from OpenBLAS/NumPy (not instrumented) would not come from csrc/;
# the stack trace says which.
#
# Usage: tools/sanitize.sh [pytest arguments]   (default: the kernel tests)
# Takes ~1 min to build and ~1 min to test on 2 cores.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

TESTS=(tests/test_malformed.py tests/test_attention.py tests/test_layernorm.py
       tests/test_softmax.py tests/test_gemm.py tests/test_linear.py tests/test_embedding.py
       tests/test_activation.py tests/test_dropout.py tests/test_optim.py
       tests/test_simd_paths.py)
[ $# -gt 0 ] && TESTS=("$@")

(cd "$ROOT" && git ls-files -z | tar --null -T - -cf -) | tar -xf - -C "$WORK"
cd "$WORK"
echo "== sanitize: building the extension with -fsanitize=address,undefined"
CFLAGS="-fno-wrapv -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
LDFLAGS="-fsanitize=address,undefined" \
  "$PY" setup.py build_ext --inplace --force -q > build.log 2>&1 || { tail -30 build.log; exit 1; }

export LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
export OMP_NUM_THREADS=2
status=0
for portable in 0 1; do
  echo "== sanitize: pytest with PT_PORTABLE=$portable"
  mkdir -p "reports-$portable"
  rc=0
  ASAN_OPTIONS="detect_leaks=0:log_path=$WORK/reports-$portable/asan" \
  UBSAN_OPTIONS="print_stacktrace=1:log_path=$WORK/reports-$portable/ubsan" \
  PT_PORTABLE=$portable "$PY" -m pytest -q -p no:cacheprovider "${TESTS[@]}" \
    > "pytest-$portable.log" 2>&1 || rc=$?
  grep -E '(passed|failed|error)' "pytest-$portable.log" | tail -n 1 || true
  if [ -n "$(ls "reports-$portable")" ]; then
    echo "sanitizer reports (PT_PORTABLE=$portable):"
    cat "reports-$portable"/* | head -80
    status=1
  elif [ $rc -ne 0 ]; then
    tail -n 40 "pytest-$portable.log"
    status=1
  fi
done
[ $status -eq 0 ] && echo "sanitize: no ASan/UBSan report"
exit $status
