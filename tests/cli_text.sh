#!/bin/sh
# Language models from the command line: ember train on a text file reports bits per
# byte and perplexity (with the unigram entropy beside them), saves weights that ember
# generate samples from (seeded: the same text twice; prompt echoed, the asked number of
# bytes after it; streamed while it is drawn; top-k 1 greedy); without --data a token
# model trains on fortunes; a run stopped and resumed from its checkpoint ends with the weights of
# a straight run, byte for byte (random and sequential windows); bad input is reported by name with exit status 1 (a missing, empty or
# directory text file, a sequence longer than the text, a prompt byte outside the
# model's vocabulary, text bytes outside it, a model that takes no tokens) and misuse
# with 2 (text options on image data, missing --weights, an empty prompt).
# Usage: sh tests/cli_text.sh path/to/ember
. "$(dirname "$0")/lib/cli_harness.sh"

# A small text and a small language model (the vocabulary of bytes).
i=0
while [ $i -lt 60 ]; do
    echo "the quick brown fox jumps over the lazy dog $i times."
    i=$((i + 1))
done >"$TMP/fox.txt"
cat >"$TMP/small.ember" <<'EOF'
input 16
embedding 256 8
lstm 32
linear 256
EOF
# Bytes 0..127 only.
cat >"$TMP/ascii.ember" <<'EOF'
input 16
embedding 128 8
gru 16
linear 128
EOF

# ---- help ---------------------------------------------------------------------------
run --help
expect_status 0
expect_text out "generate"
run generate --help
expect_status 0
for opt in "Usage: ember generate" --weights --prompt --tokens --temperature --top-k --top-p --seed; do
    expect_text out "$opt"
done
run train --help
for opt in --seq-len --steps --windows --eval-every --val-chunk "text:FILE" fortunes; do
    expect_text out "$opt"
done

# ---- training and generating ----------------------------------------------------------
run train "$TMP/small.ember" --data "text:$TMP/fox.txt" --seq-len 16 --batch 8 --steps 30 --lr 0.01 \
    --eval-every 15 --progress lines --save "$TMP/small.safetensors"
expect_status 0
expect_text out "unigram entropy:"
expect_text out "bits/byte on the training text"
expect_text out "step 15/30  train"
expect_text out "step 30/30  train"
expect_text out "val "
expect_text out "perplexity"
expect_text out "evaluated alike on"
expect_text out "adam lr 0.01, batch 8 x 16 bytes"
expect_text out "saved $TMP/small.safetensors"
[ -f "$TMP/small.metrics.csv" ] && [ -f "$TMP/small.plot.png" ]
status=$?
expect_status 0

run generate "$TMP/small.ember" --weights "$TMP/small.safetensors" --prompt "the " --tokens 40 --seed 3
expect_status 0
cp "$TMP/out" "$TMP/first"
checks=$((checks + 1))
[ "$(wc -c <"$TMP/out")" -eq 44 ] || fail "$last: $(wc -c <"$TMP/out") bytes, expected 4 + 40"
checks=$((checks + 1))
[ "$(head -c 4 "$TMP/out")" = "the " ] || fail "$last: the prompt is not echoed"
# the description stored with the weights, the same seed: the same text
run generate --weights "$TMP/small.safetensors" --prompt "the " --tokens 40 --seed 3
expect_status 0
checks=$((checks + 1))
cmp -s "$TMP/out" "$TMP/first" || fail "$last: another text for the same seed"
run generate --weights "$TMP/small.safetensors" --prompt "the " --tokens 10 --temperature 0 --no-echo --stats
expect_status 0
expect_text err "tokens/s"
checks=$((checks + 1))
[ "$(wc -c <"$TMP/out")" -eq 10 ] || fail "$last: $(wc -c <"$TMP/out") bytes, expected 10"

# the text streams: the first bytes arrive while generation is still going (were the
# output held back until the end, none would come within the time allowed). The pipe's
# reading end stays open throughout, so the generator blocks rather than dies on it.
mkfifo "$TMP/stream"
"$EMBER" generate --weights "$TMP/small.safetensors" --prompt "the " --tokens 100000000 --seed 1 \
    >"$TMP/stream" 2>/dev/null &
generator=$!
exec 3<"$TMP/stream"
timeout 30 head -c 16 <&3 >"$TMP/streamed"
checks=$((checks + 1))
if ! kill -0 "$generator" 2>/dev/null; then
    fail "generate streaming: the process ended before its output was read"
elif [ "$(wc -c <"$TMP/streamed")" -ne 16 ]; then
    fail "generate streaming: $(wc -c <"$TMP/streamed") bytes arrived within 30 s, expected 16"
fi
kill "$generator" 2>/dev/null
exec 3<&-
wait "$generator" 2>/dev/null

# top-k 1 keeps only the most likely byte: the greedy text, whatever the seed
run generate --weights "$TMP/small.safetensors" --prompt "the " --tokens 30 --temperature 0
expect_status 0
cp "$TMP/out" "$TMP/greedy"
run generate --weights "$TMP/small.safetensors" --prompt "the " --tokens 30 --top-k 1 --seed 5
expect_status 0
checks=$((checks + 1))
cmp -s "$TMP/out" "$TMP/greedy" || fail "$last: top-k 1 is not the greedy text"

# without --data a model that takes tokens trains on the fortunes corpus (here a
# directory of one file standing in for Debian's)
mkdir "$TMP/fortunes"
cp "$TMP/fox.txt" "$TMP/fortunes/fox"
EMBER_FORTUNES_DIR=$TMP/fortunes run train "$TMP/small.ember" --seq-len 16 --batch 4 --steps 2 --progress quiet
expect_status 0
expect_text out "text fortunes (1 files in $TMP/fortunes)"

# the weights on a text: bits per byte of (nearly) every byte
run eval --weights "$TMP/small.safetensors" --data "text:$TMP/fox.txt" --seq-len 16
expect_status 0
expect_text out "$TMP/fox.txt: "
expect_text out "bits/byte, perplexity"
expect_text out "bytes predicted; unigram entropy"

# sequential windows with carried state, chunked validation
run train "$TMP/small.ember" --data "text:$TMP/fox.txt" --seq-len 8 --batch 4 --steps 6 --windows sequential \
    --val-chunk 256 --val-split 0.2 --progress quiet
expect_status 0
expect_text out "a seeded choice of chunks"

# full checkpoints: stopped by --max-steps (mid-interval and at an interval's end) and
# resumed, the weights are those of a run never stopped, byte for byte (sequential
# windows carry their hidden state through the checkpoint)
for windows in random sequential; do
    args="$TMP/small.ember --data text:$TMP/fox.txt --seq-len 8 --batch 4 --steps 12 --eval-every 5 --windows $windows --progress quiet --seed 2"
    run train $args --save "$TMP/straight.safetensors" --no-log
    expect_status 0
    for stop in 7 10; do
        run train $args --checkpoint "$TMP/ck.safetensors" --max-steps $stop
        expect_status 0
        expect_text out "stopped after step $stop (--max-steps): checkpoint $TMP/ck.safetensors"
        run train $args --resume "$TMP/ck.safetensors" --save "$TMP/resumed.safetensors" --no-log
        expect_status 0
        checks=$((checks + 1))
        cmp -s "$TMP/straight.safetensors" "$TMP/resumed.safetensors" ||
            fail "$windows windows stopped at $stop and resumed: other weights than a straight run"
    done
done
run train "$TMP/small.ember" --data "text:$TMP/fox.txt" --seq-len 8 --batch 2 --steps 12 --progress quiet \
    --resume "$TMP/ck.safetensors"
expect_status 1
expect_text err "in batches of 4 (sequential windows); this run has"

# ---- bad input --------------------------------------------------------------------------
run train "$TMP/small.ember" --data "text:$TMP/missing.txt" --steps 1
expect_status 1
expect_text err "cannot open text file $TMP/missing.txt: No such file or directory"
: >"$TMP/empty.txt"
run train "$TMP/small.ember" --data "text:$TMP/empty.txt" --steps 1
expect_status 1
expect_text err "text file $TMP/empty.txt is empty"
run train "$TMP/small.ember" --data "text:$TMP" --steps 1
expect_status 1
expect_text err "is a directory"
printf 'short text\n' >"$TMP/short.txt"
run train "$TMP/small.ember" --data "text:$TMP/short.txt" --seq-len 64 --steps 1 --val-split 0.3
expect_status 1
expect_text err "the sequence length 64 is longer than the first 70% of $TMP/short.txt allows: 8 bytes hold windows of at most 7"
printf 'caf\303\251\n' >"$TMP/utf8.txt"
run train "$TMP/ascii.ember" --data "text:$TMP/utf8.txt" --seq-len 2 --steps 1 --val-split 0.4
expect_status 1
expect_text err "byte 195 (0xc3) at offset 3 is outside the model's vocabulary of 128 tokens"
run train "$TMP/small.ember" --data mnist --seq-len 8
expect_status 2
expect_text err "--seq-len applies to text"
cat >"$TMP/mlp.ember" <<'EOF'
input 4
linear 2
EOF
run train "$TMP/mlp.ember" --data "text:$TMP/fox.txt" --steps 1
expect_status 1
expect_text err "does not take text: a language model starts with an 'embedding VOCAB DIM' line"

# generation: a prompt byte outside the vocabulary, an empty prompt, no weights
run train "$TMP/ascii.ember" --data "text:$TMP/fox.txt" --seq-len 8 --steps 2 --progress quiet \
    --save "$TMP/ascii.safetensors" --no-log
expect_status 0
run generate --weights "$TMP/ascii.safetensors" --prompt "café" --tokens 5
expect_status 1
expect_text err "the prompt's byte 3 is 195 (0xc3), outside the vocabulary of"
expect_text err "(128 tokens: bytes 0 to 127)"
run generate --weights "$TMP/ascii.safetensors" --prompt "" --tokens 5
expect_status 2
expect_text err "--prompt needs a non-empty TEXT"
run generate "$TMP/small.ember" --prompt "x"
expect_status 2
expect_text err "--weights FILE is required"
run generate "$TMP/small.ember" --weights "$TMP/ascii.safetensors" --prompt "x"
expect_status 1
expect_text err "0.weight"

finish cli_text
