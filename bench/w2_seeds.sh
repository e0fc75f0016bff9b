#!/bin/sh
# W2's test accuracy over several seeds, ember and PyTorch on the same set-up (Adam lr
# 1e-3, batch 64, one epoch of Fashion-MNIST in file order, default init from the seed):
# a single seed's gap is mostly the luck of the draw, the mean over seeds is the
# comparison. Prints a Markdown table. Accuracy does not depend on PyTorch's thread
# set-up beyond summation order, so PyTorch runs in its default set-up (a).
# The table goes to stdout and to bench/results/w2_extra.md, which bench/report.py adds
# to W2's section of bench/RESULTS.md (re-rendered here).
# Usage: bench/w2_seeds.sh [SEEDS...] (default 0 1 2 3 4); needs build/ember
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
EMBER=${EMBER:-$ROOT/build/ember}
PYTHON=${PYTHON:-/usr/bin/python3}
seeds=${*:-0 1 2 3 4}
OUT=$ROOT/bench/results/w2_extra.md
table() {
echo "| seed | ember | PyTorch (a) | ember - PyTorch (points) |"
echo "|---|---|---|---|"
sum_e=0 sum_t=0 n=0
for s in $seeds; do
    e=$("$EMBER" train "$ROOT/models/cnn.ember" --data fashion-mnist --optimizer adam --lr 1e-3 --batch 64 \
        --epochs 1 --no-shuffle --seed "$s" --progress quiet --no-log |
        sed -n 's/^final:.*test accuracy \([0-9.]*\)%.*/\1/p')
    t=$("$PYTHON" "$ROOT/bench/torch_w2_cnn.py" --setup a --seed "$s" |
        sed -n 's/.*test accuracy \([0-9.]*\)$/\1/p' | tail -n 1)
    t=$(echo "$t" | awk '{printf "%.2f", $1 * 100}')
    echo "| $s | $e | $t | $(echo "$e $t" | awk '{printf "%+.2f", $1 - $2}') |"
    sum_e=$(echo "$sum_e $e" | awk '{print $1 + $2}')
    sum_t=$(echo "$sum_t $t" | awk '{print $1 + $2}')
    n=$((n + 1))
done
echo "| mean | $(echo "$sum_e $n" | awk '{printf "%.2f", $1 / $2}') | $(echo "$sum_t $n" | awk '{printf "%.2f", $1 / $2}') | $(echo "$sum_e $sum_t $n" | awk '{printf "%+.2f", ($1 - $2) / $3}') |"
}
{
    echo "Test accuracy over seeds \`$seeds\` (\`bench/w2_seeds.sh\`, $(date -u +%Y-%m-%dT%H:%MZ)): ember through"
    echo "\`ember train models/cnn.ember --seed S\` with W2's options, PyTorch in set-up (a) with \`--seed S\`."
    echo "A single seed's gap is mostly the luck of the draw; the mean is the comparison."
    echo
    table
} | tee "$OUT"
"$PYTHON" "$ROOT/bench/report.py" render "$ROOT/bench/results" "$ROOT/bench/RESULTS.md"
