#!/bin/sh
# Checkpoints from the command line: ember inspect; train --checkpoint, --max-steps and
# --resume giving byte-identical checkpoints to an uninterrupted run; Ctrl-C (SIGINT) and
# SIGTERM writing a checkpoint and exiting 130/143, the resumed run again identical;
# SIGKILL at random moments of --checkpoint-every 1 always leaving a readable
# checkpoint; ember finetune (load report, freeze, new head, class selection) and the
# errors of all of these. EMBER_QUICK=1 shortens the loops.
# Usage: sh tests/cli_checkpoint.sh path/to/ember
. "$(dirname "$0")/lib/cli_harness.sh"
TINY=$HERE/data/tiny.ember
FIXTURES=$HERE/fixtures
QUICK=${EMBER_QUICK:-0}
SHOW_LINES=20

# Waits (up to 10 s) until the run has printed its first line, i.e. is training.
wait_started() {
    n=0
    while ! grep -q "^model " "$TMP/out" 2>/dev/null && [ $n -lt 1000 ]; do sleep 0.01; n=$((n + 1)); done
}
expect_same() { # file file what
    checks=$((checks + 1))
    cmp -s "$1" "$2" || fail "$3: $1 and $2 differ"
}

# ---- data: 3 classes over 4 features (integer arithmetic, the same everywhere) -------
awk 'BEGIN {
    for (i = 0; i < 240; i++) {
        c = i % 3; s = (i * 7919) % 1000
        printf "%d.%03d,%d.%03d,%d.%03d,%d.%03d,%d\n", c, s, 2 - c, (s * 3) % 1000, c % 2, (s * 7) % 1000, 1, (s * 11) % 1000, c
    }
}' >"$TMP/train.csv"
DATA_ONLY="--data csv:$TMP/train.csv --seed 5"
DATA="$DATA_ONLY --progress quiet"

# ---- inspect --------------------------------------------------------------------------
run inspect --help
expect_status 0
expect_text out "Usage: ember inspect"
run inspect "$FIXTURES/import_cnn.safetensors"
expect_status 0
expect_text out "format: pt"
expect_text out "1.num_batches_tracked"
expect_text out "I64"
expect_text out "[4, 2, 3, 3]"
expect_text out "tensors (24)"
run inspect "$FIXTURES/import_cnn.safetensors" --filter '0.*,15.*' --stats
expect_status 0
expect_text out "4 of 24 tensors match"
expect_text out "mean"
run inspect "$TMP/nothing.safetensors"
expect_status 1
expect_text err "nothing.safetensors"
printf 'not a safetensors file at all' >"$TMP/junk.safetensors"
run inspect "$TMP/junk.safetensors"
expect_status 1
expect_text err "junk.safetensors: header length"
run inspect
expect_status 2

# ---- exact resume ---------------------------------------------------------------------
# 240 examples in batches of 16: 15 steps an epoch, 60 in 4 epochs; SGD with momentum.
TRAIN="train $TINY $DATA --epochs 4 --batch 16 --optimizer sgd --momentum 0.9 --lr 0.05 --threads 1"
# shellcheck disable=SC2086
run $TRAIN --checkpoint "$TMP/straight.st" --save "$TMP/straight.w"
expect_status 0
expect_text out "checkpoint $TMP/straight.st"
for cut in 7 30; do # inside an epoch, at an epoch's end
    # shellcheck disable=SC2086
    run $TRAIN --checkpoint "$TMP/half.st" --max-steps $cut
    expect_status 0
    expect_text out "stopped after step $cut (--max-steps)"
    run inspect "$TMP/half.st"
    expect_text out "training state: $cut steps done"
    # shellcheck disable=SC2086
    run $TRAIN --checkpoint "$TMP/resumed.st" --save "$TMP/resumed.w" --resume "$TMP/half.st"
    expect_status 0
    expect_same "$TMP/straight.st" "$TMP/resumed.st" "cut after step $cut, resumed"
    expect_same "$TMP/straight.w" "$TMP/resumed.w" "cut after step $cut, weights"
done
# Refusals: another batch size, a weights-only file, nothing left to do.
# shellcheck disable=SC2086
run train $TINY $DATA --epochs 4 --batch 32 --resume "$TMP/half.st"
expect_status 1
expect_text err "batches of 16"
# shellcheck disable=SC2086
run $TRAIN --resume "$TMP/straight.w"
expect_status 1
expect_text err "not a full training checkpoint"
# shellcheck disable=SC2086
run $TRAIN --resume "$TMP/straight.st"
expect_status 1
expect_text err "nothing left to train"
# shellcheck disable=SC2086
run $TRAIN --checkpoint-every 5
expect_status 2
expect_text err "--checkpoint-every needs --checkpoint"

# ---- Ctrl-C and SIGTERM: a checkpoint, exit 128+signal, and the same end result -----
if [ "$QUICK" = 1 ]; then LONG=300; else LONG=800; fi
LONGRUN="train $TINY $DATA --epochs $LONG --batch 1 --optimizer adam --lr 0.001 --threads 1"
# shellcheck disable=SC2086
run $LONGRUN --checkpoint "$TMP/long.st"
expect_status 0
for sig in INT TERM; do
    rm -f "$TMP/sig.st"
    # shellcheck disable=SC2086
    "$EMBER" $LONGRUN --checkpoint "$TMP/sig.st" >"$TMP/out" 2>"$TMP/err" &
    pid=$!
    wait_started
    sleep 0.2
    kill -$sig $pid
    wait $pid
    status=$?
    last="ember train ... (SIG$sig after 0.2 s of training)"
    if [ $sig = INT ]; then expect_status 130; else expect_status 143; fi
    expect_text out "interrupted by SIG$sig after step"
    run inspect "$TMP/sig.st"
    expect_status 0
    # shellcheck disable=SC2086
    run $LONGRUN --checkpoint "$TMP/sig_resumed.st" --resume "$TMP/sig.st"
    expect_status 0
    expect_same "$TMP/long.st" "$TMP/sig_resumed.st" "SIG$sig then resume"
done
# Without --checkpoint, Ctrl-C still leaves one (in the current folder).
(cd "$TMP" && exec "$EMBER" $LONGRUN >"$TMP/out" 2>"$TMP/err") &
pid=$!
wait_started
sleep 0.2
kill -INT $pid
wait $pid
status=$?
last="ember train without --checkpoint (SIGINT)"
expect_status 130
expect_text out "checkpoint ember-interrupted.safetensors"
checks=$((checks + 1))
[ -s "$TMP/ember-interrupted.safetensors" ] || fail "no ember-interrupted.safetensors"

# ---- SIGKILL while checkpoints are being written -------------------------------------
# A checkpoint after every step of a wider model (MBs per write): whenever the process
# dies, the file is a complete checkpoint that inspect reads and training resumes from.
cat >"$TMP/wide.ember" <<'EOF'
input 4
linear 512
relu
linear 512
relu
linear 3
EOF
if [ "$QUICK" = 1 ]; then KILLS=3; else KILLS=12; fi
KILLRUN="train $TMP/wide.ember $DATA --epochs 50 --batch 8 --optimizer adam --threads 1"
k=0
readable=0
while [ $k -lt $KILLS ]; do
    rm -f "$TMP/kill.st"
    # shellcheck disable=SC2086
    "$EMBER" $KILLRUN --checkpoint "$TMP/kill.st" --checkpoint-every 1 >/dev/null 2>&1 &
    pid=$!
    # Until the first checkpoint exists, then a random 0-99 ms more.
    n=0
    while [ ! -s "$TMP/kill.st" ] && [ $n -lt 200 ]; do sleep 0.01; n=$((n + 1)); done
    sleep "0.0$(awk -v s="$k" 'BEGIN { srand(s + 11); printf "%02d", int(rand() * 100) }')"
    kill -KILL $pid
    wait $pid 2>/dev/null
    run inspect "$TMP/kill.st"
    if [ "$status" -eq 0 ] && grep -q "training state:" "$TMP/out"; then readable=$((readable + 1)); fi
    k=$((k + 1))
done
checks=$((checks + 1))
[ $readable -eq $KILLS ] || fail "after SIGKILL: $readable of $KILLS checkpoints readable"
# shellcheck disable=SC2086
run $KILLRUN --checkpoint "$TMP/kill2.st" --resume "$TMP/kill.st"
expect_status 0
echo "SIGKILL during checkpoint writes: $readable of $KILLS left a readable checkpoint"

# ---- finetune -------------------------------------------------------------------------
run finetune --help
expect_status 0
for opt in --from --strict --freeze --replace-head --unfreeze-after --unfreeze-lr --classes --per-class; do
    expect_text out "$opt"
done
run finetune "$TINY" $DATA --from "$TMP/straight.w" --freeze '0.*' --replace-head 2 --classes 2,0 \
    --per-class 30 --epochs 3 --save "$TMP/tuned.w"
expect_status 0
expect_text out "loaded 4 tensors from $TMP/straight.w"
expect_text out "froze 2 parameter tensors matching '0.*'"
expect_text out "replaced the head (layer 2): 3 -> 2 outputs"
expect_text out "60 train"
expect_text out "34 trained"
run inspect "$TMP/tuned.w" --stats
expect_text out "[2, 16]"
# Frozen tensors kept their pre-trained values exactly.
"$EMBER" inspect "$TMP/straight.w" --filter '0.*' --stats | grep '^  0\.' >"$TMP/before"
"$EMBER" inspect "$TMP/tuned.w" --filter '0.*' --stats | grep '^  0\.' >"$TMP/after"
expect_same "$TMP/before" "$TMP/after" "frozen layer 0 after finetune"
# The description stored in the file stands in for MODEL; unfreezing with its own lr.
run finetune --from "$TMP/straight.w" $DATA_ONLY --freeze '*' --replace-head 3 --unfreeze-after 1 --epochs 2 \
    --progress lines
expect_status 0
expect_text out "epoch 2: 2 frozen parameter tensors train from now on, lr 0.001"
# Missing and unexpected tensors, by name; --strict makes them errors.
cat >"$TMP/other.ember" <<'EOF'
input 4
linear 16
relu
linear 8
relu
linear 3
EOF
run finetune "$TMP/other.ember" $DATA --from "$TMP/straight.w" --epochs 1
expect_status 1
expect_text err "'2.weight' has shape [3, 16] in the checkpoint but [8, 16] in the model"
cat >"$TMP/other.ember" <<'EOF'
input 4
linear 16
tanh
relu
linear 3
EOF
run finetune "$TMP/other.ember" $DATA --from "$TMP/straight.w" --epochs 1
expect_status 0
expect_text out "missing from the file (2, freshly initialised): '3.weight', '3.bias'"
expect_text out "unexpected in the file (2, ignored): '2.weight', '2.bias'"
run finetune "$TMP/other.ember" $DATA --from "$TMP/straight.w" --epochs 1 --strict
expect_status 1
expect_text err "missing tensors (2): '3.weight', '3.bias'; unexpected tensors (2): '2.weight', '2.bias'"
run finetune "$TINY" $DATA --from "$TMP/straight.w" --freeze 'conv.*'
expect_status 1
expect_text err "pattern 'conv.*' matches no parameter"
run finetune "$TINY" $DATA --from "$TMP/straight.w" --freeze '*'
expect_status 1
expect_text err "nothing would train"
run finetune "$TINY" $DATA --from "$TMP/straight.w" --classes 7
expect_status 1
expect_text err "no class 7"
run finetune "$TINY" $DATA --from "$TMP/straight.w" --classes 2-x
expect_status 2
expect_text err "--classes"
run finetune "$TINY" $DATA
expect_status 2
expect_text err "--from FILE is required"
# A PyTorch state_dict has no description: MODEL is needed, and the message says so.
run finetune --from "$FIXTURES/import_mlp.safetensors" $DATA
expect_status 1
expect_text err "holds no model description"

finish cli_checkpoint
