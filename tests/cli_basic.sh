#!/bin/sh
# Behaviour of the ember command-line tool: help texts, exit statuses (0 success,
# 1 library error, 2 usage error), error messages that name what is wrong, and a
# small train / eval / gradcheck round trip on CSV data generated here.
# Usage: sh tests/cli_basic.sh path/to/ember
. "$(dirname "$0")/lib/cli_harness.sh"
TINY=$HERE/data/tiny.ember

# ---- help and version -------------------------------------------------------------
run --help
expect_status 0
for c in train eval gradcheck help; do expect_text out "$c"; done
run --version
expect_status 0
expect_text out "ember 0."

check_help() { # command option...
    cmd=$1
    shift
    for form in "$cmd --help" "help $cmd"; do
        # shellcheck disable=SC2086
        run $form
        expect_status 0
        expect_text out "Usage: ember $cmd"
        for opt in "$@"; do expect_text out "$opt"; done
        # every option states its default (or that it is required)
        checks=$((checks + 1))
        n_options=$(grep -c -E '^  --' "$TMP/out")
        n_defaults=$(grep -o -e '(default: ' -e '(required)' "$TMP/out" | wc -l)
        [ "$n_options" -gt 0 ] && [ "$n_options" -eq "$n_defaults" ] ||
            fail "$last: $n_options options but $n_defaults defaults"
    done
}
check_help train --data --test-data --epochs --batch --optimizer --lr --momentum --nesterov \
    --weight-decay --seed --threads --save --plot --metrics --label-column --no-shuffle \
    --progress --help "default: 64" "default: 1)" "fashion-mnist"
check_help eval --weights --data --split --batch --threads --label-column --help
check_help gradcheck --batch --seed --threads --help

# ---- usage errors: exit 2 and a message naming the problem -------------------------
run frobnicate
expect_status 2
expect_text err "unknown command 'frobnicate'"
run trian
expect_status 2
expect_text err "did you mean 'train'"
run
expect_status 2
run help frobnicate
expect_status 2
run train "$TINY" --epoch 3
expect_status 2
expect_text err "unknown option '--epoch'"
expect_text err "did you mean --epochs"
expect_text err "ember train --help"
run train "$TINY" --epochs
expect_status 2
expect_text err "--epochs needs a value"
run train "$TINY" --epochs --batch 3
expect_status 2
expect_text err "--epochs needs a value"
run train "$TINY" --epochs three
expect_status 2
expect_text err "--epochs expects an integer"
expect_text err "three"
run train "$TINY" --lr fast
expect_status 2
expect_text err "--lr expects a number"
run train "$TINY" --batch 0
expect_status 2
expect_text err "--batch must be between"
run train "$TINY" --optimizer lbfgs
expect_status 2
expect_text err "--optimizer must be one of sgd, adam"
run train "$TINY" --progress loud
expect_status 2
expect_text err "--progress must be one of"
run train "$TINY" --optimizer adam --momentum 0.9
expect_status 2
expect_text err "--momentum"
run train
expect_status 2
expect_text err "missing argument"
run train "$TINY" extra
expect_status 2
expect_text err "unexpected extra argument 'extra'"
run eval "$TINY"
expect_status 2
expect_text err "--weights"
run gradcheck "$TINY" --batch x
expect_status 2
expect_text err "--batch expects an integer"
run train -x
expect_status 2
expect_text err "unknown option '-x'"

# ---- data: a learnable 3-class problem over 4 features ------------------------------
# Integer arithmetic only, so every awk produces the same files.
make_csv() { # rows offset header
    awk -v n="$1" -v off="$2" -v header="$3" 'BEGIN {
        if (header) print "f1,f2,f3,f4,label"
        for (i = off; i < off + n; i++) {
            a = (i * 7919) % 1000 / 500 - 1; b = (i * 104729) % 1000 / 500 - 1
            c = (i * 1299709) % 1000 / 500 - 1; d = (i * 15485863) % 1000 / 500 - 1
            label = (a + b > 0.3) ? 0 : ((a - b > 0) ? 1 : 2)
            printf "%.3f,%.3f,%.3f,%.3f,%d\n", a, b, c, d, label
        }
    }'
}
make_csv 300 0 1 >"$TMP/train.csv"
make_csv 90 5000 0 >"$TMP/test.csv"

# ---- library errors: exit 1, "ember: ..." naming the file, line or shapes -----------
printf '# a model with a typo on line 3\ninput 4\nlinaer 3\n' >"$TMP/bad.ember"
run train "$TMP/bad.ember" --data "csv:$TMP/train.csv" --progress quiet
expect_status 1
expect_text err "ember: "
expect_text err "bad.ember:3"

run train "$TMP/missing.ember" --data "csv:$TMP/train.csv"
expect_status 1
expect_text err "missing.ember"

# Output paths are checked before training starts.
run train "$TINY" --data "csv:$TMP/train.csv" --save "$TMP/no/such/dir/x.safetensors"
expect_status 1
expect_text err "no/such/dir"
expect_no_text out "final:"

# IDX: labels for 10 examples, images whose header promises 10 28x28 images but
# whose data stops after 100 bytes, and images with a wrong magic number.
{ printf '\000\000\010\001\000\000\000\012'; printf '\000\001\002\000\001\002\000\001\002\000'; } \
    >"$TMP/labels.idx"
{ printf '\000\000\010\003\000\000\000\012\000\000\000\034\000\000\000\034'
  head -c 100 /dev/zero; } >"$TMP/short-images.idx"
{ printf '\001\002\010\003\000\000\000\012\000\000\000\034\000\000\000\034'
  head -c 7840 /dev/zero; } >"$TMP/magic-images.idx"
run train "$TINY" --data "idx:$TMP/short-images.idx,$TMP/labels.idx" --progress quiet
expect_status 1
expect_text err "ember: "
expect_text err "short-images.idx"
expect_text err "truncated"
run train "$TINY" --data "idx:$TMP/magic-images.idx,$TMP/labels.idx" --progress quiet
expect_status 1
expect_text err "magic-images.idx"
expect_text err "magic"

# Well-formed IDX images reach the model as 1x28x28 or, reshaped, as 784 features;
# 4 features do not fit and both shapes are named.
{ printf '\000\000\010\003\000\000\000\012\000\000\000\034\000\000\000\034'
  head -c 7840 /dev/zero; } >"$TMP/images.idx"
printf 'input 784\nlinear 3\n' >"$TMP/flat.ember"
run train "$TMP/flat.ember" --data "idx:$TMP/images.idx,$TMP/labels.idx" --progress quiet
expect_status 0
expect_text out "final: epochs 1"
printf 'input 1x28x28\nflatten\nlinear 3\n' >"$TMP/image.ember"
run train "$TMP/image.ember" --data "idx:$TMP/images.idx,$TMP/labels.idx" --progress quiet
expect_status 0
expect_text out "final: epochs 1"
run train "$TINY" --data "idx:$TMP/images.idx,$TMP/labels.idx" --progress quiet
expect_status 1
expect_text err "[4]"
expect_text err "784"

printf '1,2,3,4,0\n0.5,0.25,x7,1,1\n' >"$TMP/bad.csv"
run train "$TINY" --data "csv:$TMP/bad.csv" --progress quiet
expect_status 1
expect_text err "bad.csv"
expect_text err "line 2"
expect_text err "column 3"
expect_text err "x7"

# 5 features for a model that takes 4: both shapes named.
printf '1,2,3,4,5,0\n2,3,4,5,6,1\n' >"$TMP/wide.csv"
run train "$TINY" --data "csv:$TMP/wide.csv" --progress quiet
expect_status 1
expect_text err "[4]"
expect_text err "[5]"

# ---- train, then evaluate the checkpoint --------------------------------------------
run train "$TINY" --data "csv:$TMP/train.csv" --test-data "csv:$TMP/test.csv" --epochs 2 \
    --progress lines --seed 3 --save "$TMP/tiny.safetensors" --metrics "$TMP/tiny.csv" \
    --plot "$TMP/tiny.png"
expect_status 0
# one line per epoch with every figure
for epoch in 1 2; do
    checks=$((checks + 1))
    grep -q -E "^epoch $epoch/2 .*train loss [0-9.]+ .*test loss [0-9.]+ .*test accuracy [0-9.]+% .*[0-9.]+ s .*[0-9.]+ samples/s" \
        "$TMP/out" || fail "$last: no complete line for epoch $epoch"
done
expect_text out "final: epochs 2"
checks=$((checks + 1))
[ "$(head -c 4 "$TMP/tiny.png" | tail -c 3)" = "PNG" ] || fail "train --plot wrote no PNG"
checks=$((checks + 1))
[ -s "$TMP/tiny.safetensors" ] || fail "train --save wrote no checkpoint"
checks=$((checks + 1))
[ -s "$TMP/tiny.csv" ] || fail "train --metrics wrote no metrics file"

# Enough epochs with Adam to learn the problem: the CLI really trains.
run train "$TINY" --data "csv:$TMP/train.csv" --test-data "csv:$TMP/test.csv" --epochs 40 \
    --batch 16 --optimizer adam --lr 0.01 --progress quiet --seed 3 --save "$TMP/tiny.safetensors"
expect_status 0
trained=$(sed -n 's/^final:.*test accuracy \([0-9.]*%\) \(([0-9]*\/90)\).*/\1 \2/p' "$TMP/out")
checks=$((checks + 1))
if [ -z "$trained" ]; then
    fail "train: no final test accuracy line"
elif ! awk -v a="$trained" 'BEGIN { exit !(a + 0 >= 85) }'; then
    fail "train: test accuracy $trained after 40 epochs, expected >= 85%"
fi

run eval --weights "$TMP/tiny.safetensors" --data "csv:$TMP/test.csv"
expect_status 0
evaluated=$(sed -n 's/.*accuracy \([0-9.]*%\) \(([0-9]*\/90)\).*/\1 \2/p' "$TMP/out")
checks=$((checks + 1))
[ -n "$trained" ] && [ "$evaluated" = "$trained" ] ||
    fail "eval from the checkpoint alone: accuracy '$evaluated', training reported '$trained'"

run eval "$TINY" --weights "$TMP/tiny.safetensors" --data "csv:$TMP/test.csv"
expect_status 0
evaluated=$(sed -n 's/.*accuracy \([0-9.]*%\) \(([0-9]*\/90)\).*/\1 \2/p' "$TMP/out")
checks=$((checks + 1))
[ -n "$trained" ] && [ "$evaluated" = "$trained" ] ||
    fail "eval with the description: accuracy '$evaluated', training reported '$trained'"

# Weights that do not fit the description: the tensor and both shapes are named.
printf 'input 4\nlinear 8\nrelu\nlinear 3\n' >"$TMP/narrow.ember"
run eval "$TMP/narrow.ember" --weights "$TMP/tiny.safetensors" --data "csv:$TMP/test.csv"
expect_status 1
expect_text err "0.weight"
run eval --weights "$TMP/missing.safetensors" --data "csv:$TMP/test.csv"
expect_status 1
expect_text err "missing.safetensors"
printf 'not a checkpoint' >"$TMP/junk.safetensors"
run eval --weights "$TMP/junk.safetensors" --data "csv:$TMP/test.csv"
expect_status 1
expect_text err "junk.safetensors"

# ---- gradcheck ------------------------------------------------------------------------
run gradcheck "$TINY" --batch 3 --seed 1
expect_status 0
for p in 0.weight 0.bias 2.weight 2.bias; do expect_text out "$p"; done
expect_text out "passed"

finish cli_basic
