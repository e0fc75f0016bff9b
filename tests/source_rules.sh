#!/bin/sh
# Rules of the C sources that the compilers do not check.
# - No OpenMP region combines num_threads(...) with if(...): LLVM's libomp passes the
#   num_threads of a region whose if is false on to the next region, and when that was
#   OpenBLAS's threaded GEMM, clang builds hung (README, Threads). A region that should
#   not split says num_threads(1).
# Usage: sh tests/source_rules.sh (from the repository root)
cd "$(dirname "$0")/.." || exit 2
failures=0
hits=$(grep -rnE '^[[:space:]]*#[[:space:]]*pragma[[:space:]]+omp[[:space:]]+parallel.*' src tools include bench examples 2>/dev/null |
    grep -E 'num_threads' | grep -E '(^|[[:space:]])if[[:space:]]*\(')
if [ -n "$hits" ]; then
    echo "FAIL: OpenMP regions with both num_threads and if:"
    echo "$hits"
    failures=$((failures + 1))
fi
regions=$(grep -rnE '^[[:space:]]*#[[:space:]]*pragma[[:space:]]+omp[[:space:]]+parallel' src tools | wc -l)
[ "$regions" -gt 10 ] || { echo "FAIL: found only $regions OpenMP regions: is the search broken?"; failures=$((failures + 1)); }
echo "source_rules: $regions OpenMP regions checked, $failures failures"
[ "$failures" -eq 0 ]
