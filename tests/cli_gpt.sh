#!/bin/sh
# GPT models from the command line: a tiny gpt trains on a text file with AdamW, a
# cosine schedule with warm-up and gradient clipping (bits per byte reported; GPT-2's
# set-up is the default, each option given replacing its part), saves a
# GPT-2-format file (Hugging Face names) that ember generate samples from through the
# key/value cache (seeded, greedy, --stop, prompts longer than the context); the
# miniature Hugging Face GPT-2 of tests/fixtures/gpt2_tiny generates with its BPE
# tokenizer. Bad input is reported by name with exit status 1: windows longer than the
# context, weights with missing or extra tensors, a GPT-2 file without a head count,
# malformed vocab.json and merges.txt, a tokenizer larger than the model's vocabulary.
# Usage: sh tests/cli_gpt.sh path/to/ember
. "$(dirname "$0")/lib/cli_harness.sh"
FIXTURE=$HERE/fixtures/gpt2_tiny
QUICK=${EMBER_QUICK:-0}
SHOW_LINES=20

expect_bytes() { # N: stdout holds exactly N bytes
    checks=$((checks + 1))
    n=$(wc -c <"$TMP/out")
    [ "$n" -eq "$1" ] || fail "$last: $n bytes on stdout, expected $1"
}

i=0
while [ $i -lt 80 ]; do
    echo "the quick brown fox jumps over the lazy dog $i times."
    i=$((i + 1))
done >"$TMP/fox.txt"
cat >"$TMP/gpt.ember" <<'EOF'
input 32
gpt vocab=256 context=32 layers=2 heads=2 width=32
EOF
if [ "$QUICK" = 1 ]; then STEPS=20; else STEPS=60; fi

# ---- training ------------------------------------------------------------------------
run train "$TMP/gpt.ember" --data "text:$TMP/fox.txt" --seq-len 32 --batch 8 --steps $STEPS --optimizer adamw \
    --lr 3e-3 --weight-decay 0.1 --schedule cosine --warmup 5 --clip-norm 1 --progress lines --threads 1 \
    --save "$TMP/gpt.safetensors" --no-log
expect_status 0
expect_text out "adamw lr 0.003"
expect_text out "bits/byte"
run inspect "$TMP/gpt.safetensors"
expect_status 0
for name in wte.weight wpe.weight h.0.ln_1.weight h.1.attn.c_attn.weight h.1.attn.c_proj.bias \
    h.0.mlp.c_fc.weight ln_f.bias lm_head.weight "[32, 96]"; do
    expect_text out "$name"
done

# GPT-2's training set-up by default; an option given replaces its default only
run train "$TMP/gpt.ember" --data "text:$TMP/fox.txt" --steps 30 --progress quiet --threads 1 --no-log
expect_status 0
expect_text out "adamw lr 0.001, batch 16 x 32 bytes"
expect_text out "with cosine schedule (per step) after 3 steps of warm-up, weight decay 0.1, gradient norm clipped to 1, 1 parameter group"
run train "$TMP/gpt.ember" --data "text:$TMP/fox.txt" --steps 30 --warmup 7 --weight-decay 0.2 --batch 4 \
    --seq-len 16 --progress quiet --threads 1 --no-log
expect_status 0
expect_text out "adamw lr 0.001, batch 4 x 16 bytes"
expect_text out "with cosine schedule (per step) after 7 steps of warm-up, weight decay 0.2, gradient norm clipped to 1"
expect_no_text out "parameter group"
run train "$TMP/gpt.ember" --data "text:$TMP/fox.txt" --steps 30 --optimizer adam --schedule constant \
    --clip-value 5 --progress quiet --threads 1 --no-log
expect_status 0
expect_text out "adam lr 0.001, batch 16 x 32 bytes"
expect_text out "with gradients clamped to ±5"
expect_no_text out "parameter group"

# windows longer than the context
run train "$TMP/gpt.ember" --data "text:$TMP/fox.txt" --seq-len 33 --steps 1 --progress quiet
expect_status 1
expect_text err "windows of 33 tokens are longer than the model's context of 32 positions"

# ---- generation ----------------------------------------------------------------------
run generate --weights "$TMP/gpt.safetensors" --prompt "the " --tokens 100 --seed 4 --no-echo --stats
expect_status 0
expect_bytes 100
expect_text err "100 tokens in"
cp "$TMP/out" "$TMP/first"
run generate "$TMP/gpt.ember" --weights "$TMP/gpt.safetensors" --prompt "the " --tokens 100 --seed 4 --no-echo
expect_status 0
checks=$((checks + 1))
cmp -s "$TMP/out" "$TMP/first" || fail "$last: the same seed gave another text"

# greedy; then --stop at a piece of that text: it ends just before the piece
run generate --weights "$TMP/gpt.safetensors" --prompt "the quick" --tokens 60 --temperature 0 --no-echo
expect_status 0
cp "$TMP/out" "$TMP/greedy"
stop=$(cut -c 11-13 "$TMP/greedy" | head -n 1)
if [ ${#stop} -eq 3 ]; then
    run generate --weights "$TMP/gpt.safetensors" --prompt "the quick" --tokens 60 --temperature 0 --no-echo \
        --stop "$stop"
    expect_status 0
    checks=$((checks + 1))
    before=$(awk -v s="$stop" '{ i = index($0, s); if (i) { print substr($0, 1, i - 1); exit } }' "$TMP/greedy")
    [ "$(cat "$TMP/out")" = "$before" ] || fail "$last: stopped text '$(cat "$TMP/out")', expected '$before'"
fi
# an escaped stop sequence: a newline
run generate --weights "$TMP/gpt.safetensors" --prompt "the quick" --tokens 200 --temperature 0 --no-echo \
    --stop '\n'
expect_status 0
checks=$((checks + 1))
[ "$(wc -l <"$TMP/out")" -eq 0 ] || fail "$last: a newline was written despite --stop '\\n'"

# a prompt longer than the context: a note, and the text goes on
long=$(head -c 100 "$TMP/fox.txt" | tr '\n' ' ')
run generate --weights "$TMP/gpt.safetensors" --prompt "$long" --tokens 50 --no-echo
expect_status 0
expect_bytes 50
expect_text err "the prompt's 100 tokens exceed the model's context of 32"

# ---- a miniature Hugging Face GPT-2 with its BPE tokenizer ---------------------------
run generate --weights "$FIXTURE/model.safetensors" --tokenizer "$FIXTURE" --prompt "the fox" --tokens 12 \
    --temperature 0 --stats
expect_status 0
expect_text out "the fox"
expect_text err "12 tokens in"
expect_text err "(prompt of 2 tokens)"
run generate --weights "$FIXTURE/model_f16.safetensors" --tokenizer "$FIXTURE" --prompt "the fox" --tokens 5
expect_status 0
# <|endoftext|> in the prompt is one token; a model that draws it next ends the text there
run generate --weights "$FIXTURE/model.safetensors" --tokenizer "$FIXTURE" --prompt "the<|endoftext|>fox" \
    --tokens 3 --temperature 0 --no-echo --stats
expect_status 0
expect_text err "(prompt of 3 tokens)"
run generate --weights "$FIXTURE/model_ends.safetensors" --tokenizer "$FIXTURE" --prompt "the fox" --tokens 20 \
    --stats
expect_status 0
expect_text err "0 tokens in"
expect_text err "ended by <|endoftext|>"
[ "$(cat "$TMP/out")" = "the fox" ] || fail "$last: wrote more than the prompt: $(cat "$TMP/out")"
checks=$((checks + 1))
# without config.json the head count must be given
cp "$FIXTURE/model.safetensors" "$TMP/hf.safetensors"
run generate --weights "$TMP/hf.safetensors" --tokenizer "$FIXTURE" --prompt "the" --tokens 3
expect_status 1
expect_text err "the number of attention heads is not in the weights"
run generate --weights "$TMP/hf.safetensors" --heads 2 --tokenizer "$FIXTURE" --prompt "the" --tokens 3
expect_status 0

# ---- weights that do not fit -------------------------------------------------------
sed 's/layers=2/layers=3/' "$TMP/gpt.ember" >"$TMP/gpt3.ember"
run generate "$TMP/gpt3.ember" --weights "$TMP/gpt.safetensors" --tokens 3
expect_status 1
expect_text err "h.2.ln_1.weight"
sed 's/width=32/width=32 tied=true/' "$TMP/gpt.ember" >"$TMP/tied.ember"
run generate "$TMP/tied.ember" --weights "$TMP/gpt.safetensors" --tokens 3
expect_status 1
expect_text err "lm_head.weight"

# ---- malformed tokenizers ----------------------------------------------------------
mkdir "$TMP/tok"
cp "$FIXTURE/merges.txt" "$TMP/tok/merges.txt"
printf '{\n  "a": 0,\n  "b": x\n}\n' >"$TMP/tok/vocab.json"
run generate --weights "$FIXTURE/model.safetensors" --tokenizer "$TMP/tok" --tokens 3
expect_status 1
expect_text err "$TMP/tok/vocab.json:3:"
expect_text err "not valid JSON"
cp "$FIXTURE/vocab.json" "$TMP/tok/vocab.json"
printf "#version: 0.2\\nh e\\nthe\\n" >"$TMP/tok/merges.txt"
run generate --weights "$FIXTURE/model.safetensors" --tokenizer "$TMP/tok" --tokens 3
expect_status 1
expect_text err "$TMP/tok/merges.txt:3: expected two symbols separated by one space"
rm "$TMP/tok/merges.txt"
run generate --weights "$FIXTURE/model.safetensors" --tokenizer "$TMP/tok" --tokens 3
expect_status 1
expect_text err "$TMP/tok/merges.txt: No such file or directory"
run generate --weights "$TMP/gpt.safetensors" --tokenizer "$FIXTURE" --tokens 3
expect_status 1
expect_text err "has 297 tokens but"

# ---- usage ------------------------------------------------------------------------------
run generate --weights "$TMP/gpt.safetensors" --stop ""
expect_status 2
expect_text err "--stop needs a non-empty"

finish cli_gpt
