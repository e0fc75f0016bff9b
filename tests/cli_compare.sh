#!/bin/sh
# ember compare: usage errors name what is wrong (unknown optimizer or activation names
# list the valid ones); the seven optimizers, activations, models and learning curves
# run on a small CSV problem and write a report, a plot and every run's files; a
# learning rate that makes the loss infinite stops that run with a line in the report
# while the comparison goes on.
# Usage: sh tests/cli_compare.sh path/to/ember
. "$(dirname "$0")/lib/cli_harness.sh"
TINY=$HERE/data/tiny.ember
SHOW_LINES=40

expect_file() {
    checks=$((checks + 1))
    [ -s "$1" ] || fail "$last: no file $1"
}
expect_png() {
    checks=$((checks + 1))
    [ "$(head -c 4 "$1" 2>/dev/null | tail -c 3)" = "PNG" ] || fail "$last: $1 is not a PNG"
}
# count_rows FILE: table rows of runs in a report
count_rows() { grep -c '^| \*\*' "$1"; }

# The 3-class problem of cli_basic.sh (integer arithmetic: the same files everywhere).
make_csv() { # rows offset
    awk -v n="$1" -v off="$2" 'BEGIN {
        for (i = off; i < off + n; i++) {
            a = (i * 7919) % 1000 / 500 - 1; b = (i * 104729) % 1000 / 500 - 1
            c = (i * 1299709) % 1000 / 500 - 1; d = (i * 15485863) % 1000 / 500 - 1
            label = (a + b > 0.3) ? 0 : ((a - b > 0) ? 1 : 2)
            printf "%.3f,%.3f,%.3f,%.3f,%d\n", a, b, c, d, label
        }
    }'
}
make_csv 400 0 >"$TMP/train.csv"
make_csv 150 5000 >"$TMP/test.csv"
DATA="--data csv:$TMP/train.csv --test-data csv:$TMP/test.csv"
printf 'input 4\nlinear 3\n' >"$TMP/linear.ember"

# ---- help and usage errors ------------------------------------------------------------
run compare --help
expect_status 0
for opt in --optimizers --activations --models --train-sizes --lr --epochs --train-subset --val-split \
    --patience --schedule --clip-norm --target-loss --out "sgd 0.1" "adamw 1e-3"; do
    expect_text out "$opt"
done
checks=$((checks + 1))
n_options=$(grep -c -E '^  --' "$TMP/out")
n_defaults=$(grep -o -e '(default: ' "$TMP/out" | wc -l)
[ "$n_options" -eq "$n_defaults" ] || fail "compare --help: $n_options options but $n_defaults defaults"
run --help
expect_text out "compare"

# shellcheck disable=SC2086
run compare "$TINY" $DATA --optimizers sgd,adamax,adam
expect_status 2
expect_text err "unknown optimizer 'adamax' in --optimizers; valid: sgd, momentum, nesterov, adagrad, rmsprop, adam, adamw"
# shellcheck disable=SC2086
run compare "$TINY" $DATA --activations relu,swish
expect_status 2
expect_text err "unknown activation 'swish' in --activations; valid: relu, leaky_relu, sigmoid, tanh, gelu, gelu_tanh, silu"
# shellcheck disable=SC2086
run compare "$TINY" $DATA
expect_status 2
expect_text err "give exactly one of --optimizers, --activations, --models and --train-sizes"
# shellcheck disable=SC2086
run compare "$TINY" $DATA --optimizers sgd --activations relu
expect_status 2
expect_text err "exactly one of"
# shellcheck disable=SC2086
run compare $DATA --optimizers sgd,adam
expect_status 2
expect_text err "missing the model"
# shellcheck disable=SC2086
run compare "$TINY" $DATA --optimizers sgd,,adam
expect_status 2
expect_text err "without empty items"
# shellcheck disable=SC2086
run compare "$TINY" $DATA --optimizers sgd,sgd
expect_status 2
expect_text err "'sgd' is listed twice"
# shellcheck disable=SC2086
run compare "$TINY" $DATA --optimizers sgd,adam --lr lion=0.1
expect_status 2
expect_text err "--lr: unknown optimizer 'lion'; valid: sgd, momentum"
# shellcheck disable=SC2086
run compare "$TINY" $DATA --optimizers sgd,adam --lr sgd=fast
expect_status 2
expect_text err "the rate for sgd must be a number > 0, got 'fast'"
# shellcheck disable=SC2086
run compare $DATA --models "$TINY" --train-sizes 100,50
expect_status 2
expect_text err "--train-sizes must increase"
# shellcheck disable=SC2086
run compare "$TINY" $DATA --optimizers sgd --optimizer adam
expect_status 2
expect_text err "with --optimizers it varies"
# shellcheck disable=SC2086
run compare "$TINY" $DATA --optimizers sgd --patience 2 --val-split 0
expect_status 2
expect_text err "--val-split must be between"
# A model without an activation line cannot vary its activations (a library error).
# shellcheck disable=SC2086
run compare "$TMP/linear.ember" $DATA --activations relu,tanh --out "$TMP/none"
expect_status 1
expect_text err "linear.ember has no activation line to replace"

# ---- the seven optimizers, one made to diverge --------------------------------------
# shellcheck disable=SC2086
run compare "$TINY" $DATA --optimizers all --lr sgd=1e9 --epochs 8 --batch 16 --out "$TMP/opt" \
    --target-loss 0.6
expect_status 0
for name in sgd momentum nesterov adagrad rmsprop adam adamw; do
    expect_text out "$name "
    expect_file "$TMP/opt/runs/$name.metrics.csv"
    expect_png "$TMP/opt/runs/$name.plot.png"
done
expect_text out "sgd          diverged at step"
expect_text out "the comparison goes on"
expect_file "$TMP/opt/report.md"
expect_png "$TMP/opt/compare.png"
R=$TMP/opt/report.md
expect_text "$R" "# Optimizers: tiny on csv:"
expect_text "$R" "![Optimizers: tiny on csv:"
expect_text "$R" "| **sgd** | sgd lr 1e+09 |"
expect_text "$R" "**diverged**: loss not finite at step"
expect_text "$R" "- **sgd diverged**: training diverged"
expect_text "$R" "The comparison went on without it."
expect_text "$R" "| **adamw** | adamw lr 0.001, weight decay 0.01 (decoupled) |"
expect_text "$R" "| **nesterov** | sgd lr 0.05, momentum 0.9 (nesterov) |"
expect_text "$R" "**Best validation accuracy**"
expect_text "$R" "**Fastest to a training loss of 0.6**"
expect_text "$R" "## Overfitting"
checks=$((checks + 1))
[ "$(count_rows "$R")" -eq 7 ] || fail "optimizer report: $(count_rows "$R") rows, expected 7"
# The runs that did not diverge learnt the problem (chance is about 33%).
checks=$((checks + 1))
learnt=$(grep -E '^(momentum|nesterov|adagrad|rmsprop|adam|adamw) ' "$TMP/out" |
    sed -n 's/.*test accuracy \([0-9.]*\)%.*/\1/p' | awk '$1 >= 70' | wc -l)
[ "$learnt" -eq 6 ] || fail "expected six optimizers at 70% test accuracy or more, got $learnt"
# Every run's metrics file has the validation and gradient-norm columns filled.
checks=$((checks + 1))
awk -F, 'NR == 1 { ok = ($6 == "val_loss" && $11 == "grad_norm") }
    $3 == "epoch" && ($6 == "" || $11 == "") { ok = 0 } END { exit !ok }' "$TMP/opt/runs/adam.metrics.csv" ||
    fail "adam.metrics.csv lacks validation or gradient-norm figures"

# ---- activations ----------------------------------------------------------------------
# shellcheck disable=SC2086
run compare "$TINY" $DATA --activations relu,tanh,gelu,silu --epochs 3 --batch 16 --out "$TMP/act"
expect_status 0
R=$TMP/act/report.md
expect_text "$R" "# Activations: tiny on csv:"
expect_text "$R" "Optimizer of every run: adam lr 0.001."
for name in relu tanh gelu silu; do expect_text "$R" "| **$name** |"; done
expect_png "$TMP/act/compare.png"
expect_png "$TMP/act/runs/gelu.plot.png"

# ---- models and learning curves -------------------------------------------------------
# shellcheck disable=SC2086
run compare --models "$TMP/linear.ember,$TINY" $DATA --epochs 3 --batch 16 --out "$TMP/models"
expect_status 0
expect_text "$TMP/models/report.md" "| **linear** |"
expect_text "$TMP/models/report.md" "| **tiny** |"
# shellcheck disable=SC2086
run compare --models "$TMP/linear.ember,$TINY" $DATA --train-sizes 50,100,400 --epochs 6 --batch 16 \
    --out "$TMP/curves"
expect_status 0
R=$TMP/curves/report.md
expect_text "$R" "# Learning curves on csv:"
expect_text "$R" "| **linear** | 50 |"
expect_text "$R" "| **tiny** | 400 |"
expect_text "$R" "- **400 examples**:"
expect_png "$TMP/curves/compare.png"
checks=$((checks + 1))
[ "$(count_rows "$R")" -eq 6 ] || fail "learning curves: $(count_rows "$R") rows, expected 6"
# About the same number of steps per run (6 epochs of 25 steps over 400 examples, in
# whole epochs): 50 examples train for 38 epochs of 4 steps.
checks=$((checks + 1))
grep -q -F '| **tiny** | 50 | 38 | 152 |' "$R" || fail "learning curves: the 50-example run did not get 38 epochs of 4 steps"

finish cli_compare
