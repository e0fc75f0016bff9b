#!/bin/sh
# Runs the benchmarks of WORKLOADS.md, ember and PyTorch side by side in one run, keeps
# each workload's figures in bench/results/<w>.json and writes bench/RESULTS.md from
# them (the figures, the exact command, the date and the machine's load).
#
# Usage: bench/run.sh [w1 w6 ...]      (default: every workload whose ember side exists)
# Environment: BUILD (build directory, default ./build), PYTHON (default /usr/bin/python3),
#              REPEAT (runs per side and set-up for the training workloads, default 2),
#              W6_SECONDS (timing per matrix size and side, default 1),
#              W2_REPEAT (runs per side, wait policy and set-up for W2, default 1: W2's
#              epochs keep the workload near 3 minutes on a quiet machine),
#              W2_STEPS (W2: train this many steps instead of the epoch, for quick checks;
#              default 0: the whole epoch), W7_STEPS (the same for W7, which then skips
#              the test pass), W8_RUNS (timed runs of ember in W8, default 50),
#              W4_STEPS (W4: timed training steps per run, default 100; fewer for quick checks),
#              QUIET_WAIT (wait up to this many seconds before each workload for the
#              1-minute load average to drop below 0.5; default 0: don't wait),
#              RESULTS (output file, default bench/RESULTS.md).
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
PYTHON=${PYTHON:-/usr/bin/python3}
REPEAT=${REPEAT:-2}
W6_SECONDS=${W6_SECONDS:-1}
W2_REPEAT=${W2_REPEAT:-1}
W2_STEPS=${W2_STEPS:-0}
W4_STEPS=${W4_STEPS:-100}
W7_STEPS=${W7_STEPS:-0}
W8_RUNS=${W8_RUNS:-50}
QUIET_WAIT=${QUIET_WAIT:-0}
RESULTS=${RESULTS:-$ROOT/bench/RESULTS.md}
OUT=$BUILD/bench-results
COMMAND="bench/run.sh${*:+ $*}"

# workload id -> ember program (bench/<name>.c) or a driver of whole processes of both
# sides (bench/<name>.py: W7 and W8 measure the ember command-line tool and a PyTorch
# script with /usr/bin/time and hyperfine)
program_of() {
    case $1 in
    w1) echo w1_mlp ;; w2) echo w2_cnn ;; w3) echo w3_lstm ;; w4) echo w4_gpt ;;
    w5) echo w5_latency ;; w6) echo w6_sgemm ;; w7) echo w7_memory ;; w8) echo w8_start ;;
    *) echo "bench/run.sh: unknown workload '$1' (w1 ... w8)" >&2; exit 2 ;;
    esac
}

if [ $# -eq 0 ]; then
    set --
    for w in w1 w2 w3 w4 w5 w6 w7 w8; do
        if [ -f "$ROOT/bench/$(program_of $w).c" ] || [ -f "$ROOT/bench/$(program_of $w).py" ]; then
            set -- "$@" $w
        fi
    done
fi
for w in "$@"; do program_of "$w" >/dev/null; done

cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
mkdir -p "$OUT"
rm -f "$OUT"/*.json

available=""
for w in "$@"; do
    prog=$(program_of "$w")
    target=$prog
    if [ -f "$ROOT/bench/$prog.py" ]; then
        target=ember_cli
    elif [ ! -f "$ROOT/bench/$prog.c" ]; then
        echo "== $w: bench/$prog.c does not exist yet, skipped" >&2
        continue
    fi
    if ! cmake --build "$BUILD" -j 2 --target "$target" >"$OUT/build-$w.log" 2>&1; then
        echo "== $w: $prog does not build (see $OUT/build-$w.log), skipped" >&2
        continue
    fi
    available="$available $w"
done
[ -n "$available" ] || { echo "bench/run.sh: nothing to run" >&2; exit 1; }

load() { cut -d' ' -f1-3 /proc/loadavg; }
now() { date -u +%Y-%m-%dT%H:%M:%SZ; }

wait_for_quiet() {
    waited=0
    while [ "$waited" -lt "$QUIET_WAIT" ] &&
          [ "$(awk '{print ($1 >= 0.5)}' /proc/loadavg)" = 1 ]; do
        sleep 10
        waited=$((waited + 10))
    done
}

for w in $available; do
    prog=$(program_of "$w")
    wait_for_quiet
    started=$(now)
    load_before=$(load)
    echo "== $w: ember ($prog)" >&2
    case $w in
    w2) # with the OpenMP runtime's default wait policy, then with PyTorch set-up (c)'s
        "$BUILD/$prog" --repeat "$W2_REPEAT" --steps "$W2_STEPS" --json "$OUT/${w}_ember.json"
        OMP_WAIT_POLICY=PASSIVE "$BUILD/$prog" --repeat "$W2_REPEAT" --steps "$W2_STEPS" \
            --json "$OUT/${w}_ember_passive.json" ;;
    w3) # likewise (the LSTM's steps meet at a barrier per BLAS call and elementwise op)
        "$BUILD/$prog" --repeat "$REPEAT" --json "$OUT/${w}_ember.json"
        OMP_WAIT_POLICY=PASSIVE "$BUILD/$prog" --repeat "$REPEAT" --json "$OUT/${w}_ember_passive.json" ;;
    w4) # likewise: on a busy machine two threads spinning at OpenMP barriers lose the most
        "$BUILD/$prog" --repeat "$REPEAT" --steps "$W4_STEPS" --json "$OUT/${w}_ember.json"
        OMP_WAIT_POLICY=PASSIVE "$BUILD/$prog" --repeat "$REPEAT" --steps "$W4_STEPS" \
            --json "$OUT/${w}_ember_passive.json" ;;
    w6) "$BUILD/$prog" --seconds "$W6_SECONDS" --json "$OUT/${w}_ember.json" ;;
    w7) "$PYTHON" "$ROOT/bench/$prog.py" --build "$BUILD" --steps "$W7_STEPS" --outdir "$OUT" ;;
    w8) "$PYTHON" "$ROOT/bench/$prog.py" --build "$BUILD" --runs "$W8_RUNS" --outdir "$OUT" ;;
    *) "$BUILD/$prog" --repeat "$REPEAT" --json "$OUT/${w}_ember.json" ;;
    esac
    # torch_<program>.py when there is one (w3 has a second script for its recurrent core)
    torch_script=$ROOT/bench/torch_$prog.py
    [ -f "$torch_script" ] || torch_script=$(ls "$ROOT"/bench/torch_"$w"_*.py 2>/dev/null | head -n 1)
    if [ -f "$ROOT/bench/$prog.py" ]; then
        : # the driver measured PyTorch too
    elif [ -n "$torch_script" ]; then
        echo "== $w: PyTorch ($(basename "$torch_script"), each thread set-up)" >&2
        case $w in
        w2) "$PYTHON" "$torch_script" --repeat "$W2_REPEAT" --steps "$W2_STEPS" --json "$OUT/${w}_torch.json" ;;
        w4) "$PYTHON" "$torch_script" --repeat "$REPEAT" --steps "$W4_STEPS" --json "$OUT/${w}_torch.json" ;;
        w6) "$PYTHON" "$torch_script" --seconds "$W6_SECONDS" --json "$OUT/${w}_torch.json" ;;
        *) "$PYTHON" "$torch_script" --repeat "$REPEAT" --json "$OUT/${w}_torch.json" ;;
        esac
    else
        echo "== $w: no PyTorch script yet" >&2
    fi
    # Keeps this workload's figures in bench/results/ (other workloads' stay as they were).
    "$PYTHON" "$ROOT/bench/report.py" collect "$w" "$OUT" --command "$COMMAND" \
        --started "$started" --load-before "$load_before" --load-after "$(load)"
done

"$PYTHON" "$ROOT/bench/report.py" render "$ROOT/bench/results" "$RESULTS"
echo "wrote $RESULTS" >&2
