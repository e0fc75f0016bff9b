#!/bin/sh
# Regressions of the command line, one block per defect fixed:
# - a run resumed from its checkpoint writes the metrics file of a run never stopped,
#   the epochs before the checkpoint included (classification and text; the restored
#   rows have no timings, so the seconds column is left out of the comparison).
# Usage: sh tests/cli_fixes_regress.sh path/to/ember
. "$(dirname "$0")/lib/cli_harness.sh"
TINY=$HERE/data/tiny.ember

# The metrics file without its seconds column (the last).
without_seconds() { sed 's/,[^,]*$//' "$1"; }
expect_same_metrics() { # straight resumed what
    checks=$((checks + 1))
    without_seconds "$1" >"$TMP/a.csv"
    without_seconds "$2" >"$TMP/b.csv"
    cmp -s "$TMP/a.csv" "$TMP/b.csv" || {
        fail "$3: the resumed run's metrics differ from the straight run's"
        diff "$TMP/a.csv" "$TMP/b.csv" | head -n 10
    }
}
expect_rows() { # file kind count
    checks=$((checks + 1))
    n=$(grep -c "^[0-9]*,[0-9]*,$2," "$1")
    [ "$n" -eq "$3" ] || fail "$last: $n $2 rows in $1, expected $3"
}

# ---- classification: two epochs, then a third from the checkpoint --------------------
awk 'BEGIN {
    for (i = 0; i < 240; i++) {
        c = i % 3; s = (i * 7919) % 1000
        printf "%d.%03d,%d.%03d,%d.%03d,%d.%03d,%d\n", c, s, 2 - c, (s * 3) % 1000, c % 2, (s * 7) % 1000, 1, (s * 11) % 1000, c
    }
}' >"$TMP/train.csv"
# 240 examples, 20% held out for validation: 192 in batches of 16, 12 steps an epoch.
TRAIN="train $TINY --data csv:$TMP/train.csv --seed 5 --progress quiet --batch 16 --optimizer adam --lr 0.01 --val-split 0.2 --threads 1"
# shellcheck disable=SC2086
run $TRAIN --epochs 3 --metrics "$TMP/straight.csv"
expect_status 0
expect_rows "$TMP/straight.csv" epoch 3
# shellcheck disable=SC2086
run $TRAIN --epochs 2 --checkpoint "$TMP/two.st"
expect_status 0
# shellcheck disable=SC2086
run $TRAIN --epochs 3 --resume "$TMP/two.st" --metrics "$TMP/resumed.csv" --plot "$TMP/resumed.png"
expect_status 0
expect_rows "$TMP/resumed.csv" epoch 3
expect_rows "$TMP/resumed.csv" step 36
expect_same_metrics "$TMP/straight.csv" "$TMP/resumed.csv" "two epochs, then a third"
# Stopped inside the second epoch.
# shellcheck disable=SC2086
run $TRAIN --epochs 3 --checkpoint "$TMP/cut.st" --max-steps 17
expect_status 0
# shellcheck disable=SC2086
run $TRAIN --epochs 3 --resume "$TMP/cut.st" --metrics "$TMP/resumed_cut.csv"
expect_status 0
expect_same_metrics "$TMP/straight.csv" "$TMP/resumed_cut.csv" "stopped after step 17"

# ---- text: intervals of 5 steps, stopped after step 7 ----------------------------------
i=0
while [ $i -lt 40 ]; do
    echo "the quick brown fox jumps over the lazy dog $i times."
    i=$((i + 1))
done >"$TMP/fox.txt"
cat >"$TMP/small.ember" <<'EOF'
input 8
embedding 256 8
lstm 16
linear 256
EOF
for windows in random sequential; do
    TEXT="train $TMP/small.ember --data text:$TMP/fox.txt --seq-len 8 --batch 4 --steps 12 --eval-every 5 --windows $windows --progress quiet --seed 2 --threads 1"
    # shellcheck disable=SC2086
    run $TEXT --metrics "$TMP/text_straight.csv"
    expect_status 0
    expect_rows "$TMP/text_straight.csv" epoch 3
    # shellcheck disable=SC2086
    run $TEXT --checkpoint "$TMP/text.st" --max-steps 7
    expect_status 0
    # shellcheck disable=SC2086
    run $TEXT --resume "$TMP/text.st" --metrics "$TMP/text_resumed.csv"
    expect_status 0
    expect_same_metrics "$TMP/text_straight.csv" "$TMP/text_resumed.csv" "text, $windows windows, stopped after step 7"
done

finish cli_fixes_regress
