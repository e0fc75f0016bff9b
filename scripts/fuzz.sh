#!/bin/sh
# Runs each libFuzzer target of a fuzz build (make fuzz) for SECONDS, one after the
# other, starting from its seed corpus in tests/fuzz/corpus/<target>. New inputs and
# any crash go to $FUZZ_WORK/<target> and $FUZZ_WORK/<target>.crash-* (default
# /tmp/ember-fuzz), never into the repo:
# a crash worth keeping is copied into the corpus by hand as crash-<what>-<hash>.
# Usage: scripts/fuzz.sh BUILD_DIR [SECONDS] [TARGET...]
set -eu
build=${1:?usage: scripts/fuzz.sh BUILD_DIR [SECONDS] [TARGET...]}
seconds=${2:-60}
shift; [ $# -gt 0 ] && shift
root=$(cd "$(dirname "$0")/.." && pwd)
work=${FUZZ_WORK:-/tmp/ember-fuzz}
targets=${*:-$(cd "$root/tests/fuzz/corpus" && ls)}
status=0
for t in $targets; do
  bin="$build/fuzz_$t"
  [ -x "$bin" ] || { echo "fuzz: no $bin (configure with -DEMBER_FUZZ=ON)" >&2; exit 2; }
  mkdir -p "$work/$t"
  echo "== fuzz_$t for ${seconds}s (new inputs in $work/$t)"
  LSAN_OPTIONS="suppressions=$root/tests/lsan.supp" \
  "$bin" -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$work/$t." \
      "$work/$t" "$root/tests/fuzz/corpus/$t" 2>"$work/$t.log" || status=1
  grep -E "^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)|^(==|SUMMARY|Done)" \
      "$work/$t.log" || true
  ls "$work" | grep -E "^$t\.(crash|leak|timeout|oom|slow-unit)-" || true
done
exit $status
