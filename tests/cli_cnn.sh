#!/bin/sh
# ember predict and the convolutional layers from the command line: a tiny CNN trained
# here on 8x8 pictures of bars classifies PGM, PPM and PNG files of other sizes; bad
# images, weights that do not fit the model and a convolution wider than its input are
# reported by name with exit status 1, usage errors with 2.
# Usage: sh tests/cli_cnn.sh path/to/ember
. "$(dirname "$0")/lib/cli_harness.sh"

# ---- help ---------------------------------------------------------------------------
run --help
expect_status 0
expect_text out "predict"
run predict --help
expect_status 0
for opt in "Usage: ember predict" --weights --top --classes --invert --threads "(default: 3)" "BT.601"; do
    expect_text out "$opt"
done

# ---- data: 8x8 pictures of a horizontal bar (0), a vertical bar (1) or nothing (2) ----
# 64 pixel values and a label per line; integer hashing only, so every awk agrees.
awk 'BEGIN {
    for (i = 0; i < 600; i++) {
        label = i % 3; at = 2 + (i * 7) % 4
        line = ""
        for (y = 0; y < 8; y++) for (x = 0; x < 8; x++) {
            v = ((i * 131 + y * 17 + x * 29) * 7919) % 100 / 500
            if (label == 0 && (y == at || y == at + 1)) v = 0.8 + v
            if (label == 1 && (x == at || x == at + 1)) v = 0.8 + v
            line = line sprintf("%.3f,", v)
        }
        print line label
    }
}' >"$TMP/bars.csv"
cat >"$TMP/bars.ember" <<'EOF'
# ten outputs, so that Fashion-MNIST's class names apply by default
input 1x8x8
conv2d 4 3 pad=1
relu
maxpool 2
flatten
linear 10
EOF
run train "$TMP/bars.ember" --data "csv:$TMP/bars.csv" --epochs 4 --optimizer adam --lr 0.02 --batch 16 \
    --progress quiet --save "$TMP/bars.safetensors"
expect_status 0

# ---- images of other sizes and formats --------------------------------------------
# 16x16 P2 and P5: rows 6-9 bright (a horizontal bar after halving)
awk 'BEGIN { print "P2"; print "# a horizontal bar"; print "16 16"; print "255"
    for (y = 0; y < 16; y++) { line = ""; for (x = 0; x < 16; x++) line = line ((y >= 6 && y <= 9) ? " 255" : " 0"); print line } }' \
    >"$TMP/horizontal.pgm"
# 12x12 P5: columns 4-7 bright (vertical)
{ printf 'P5\n12 12\n255\n'
  for y in 0 1 2 3 4 5 6 7 8 9 10 11; do printf '\000\000\000\000\377\377\377\377\000\000\000\000'; done; } \
    >"$TMP/vertical.pgm"
# 4x4 P3 colour, upscaled: all dark
printf 'P3 4 4 255\n' >"$TMP/blank.ppm"
for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16; do printf '10 5 0\n' >>"$TMP/blank.ppm"; done
# 16x16 PNG, 8-bit grey, rows 6-9 white
printf '\211\120\116\107\015\012\032\012\000\000\000\015\111\110\104\122\000\000\000\020\000\000\000\020\010\000\000\000\000\072\230\240\275\000\000\000\023\111\104\101\124\170\332\143\140\240\013\370\217\006\310\021\240\013\000\000\340\377\077\301\135\364\173\266\000\000\000\000\111\105\116\104\256\102\140\202' \
    >"$TMP/horizontal.png"
# a dark bar on white, for --invert
awk 'BEGIN { print "P2 16 8 255"; for (y = 0; y < 8; y++) { line = ""; for (x = 0; x < 16; x++) line = line ((x >= 6 && x <= 9) ? " 0" : " 255"); print line } }' \
    >"$TMP/dark-vertical.pgm"

# the description travels in the checkpoint; ten outputs: Fashion-MNIST names
run predict --weights "$TMP/bars.safetensors" "$TMP/horizontal.pgm" "$TMP/vertical.pgm" "$TMP/blank.ppm" \
    "$TMP/horizontal.png"
expect_status 0
expect_lines out 4
expect_text out "horizontal.pgm: T-shirt/top "
expect_text out "vertical.pgm: Trouser "
expect_text out "blank.ppm: Pullover "
expect_text out "horizontal.png: T-shirt/top "
# three classes by default, comma-separated, probabilities with four decimals
checks=$((checks + 1))
grep -q -E '^.*horizontal\.pgm: T-shirt/top [01]\.[0-9]{4}, [^,]+ [01]\.[0-9]{4}, [^,]+ [01]\.[0-9]{4}$' "$TMP/out" ||
    fail "$last: the line of horizontal.pgm is not 'FILE: CLASS P, CLASS P, CLASS P'"

# the description given explicitly, custom names, one class each
names="flat,upright,empty,a,b,c,d,e,f,g"
run predict "$TMP/bars.ember" --weights "$TMP/bars.safetensors" --top 1 --classes "$names" "$TMP/vertical.pgm" \
    "$TMP/horizontal.png"
expect_status 0
expect_text out "vertical.pgm: upright "
expect_text out "horizontal.png: flat "
expect_no_text out ","
# --invert: a dark bar on white reads as the light bar on black the model knows
run predict "$TMP/bars.ember" --weights "$TMP/bars.safetensors" --top 1 --classes "$names" --invert \
    "$TMP/dark-vertical.pgm"
expect_status 0
expect_text out "dark-vertical.pgm: upright "
run predict "$TMP/bars.ember" --weights "$TMP/bars.safetensors" --top 1 --classes "$names" \
    "$TMP/dark-vertical.pgm"
expect_status 0
expect_no_text out "upright"
run predict --weights "$TMP/bars.safetensors" --classes index --top 2 "$TMP/horizontal.pgm"
expect_status 0
expect_text out "horizontal.pgm: class 0 "
run predict --weights "$TMP/bars.safetensors" --classes mnist --top 1 "$TMP/vertical.pgm"
expect_status 0
expect_text out "vertical.pgm: 1 "

# ---- images that cannot be decoded: named with the reason, the others still classified
printf 'hello, not a picture\n' >"$TMP/text.png"
head -c 50 "$TMP/horizontal.png" >"$TMP/cut.png"
printf 'P5 16 16 255\n\001\002' >"$TMP/short.pgm"
run predict --weights "$TMP/bars.safetensors" "$TMP/text.png" "$TMP/horizontal.pgm" "$TMP/cut.png" \
    "$TMP/short.pgm" "$TMP/missing.pgm"
expect_status 1
expect_text err "ember: $TMP/text.png: not a PNG, PGM or PPM image"
expect_text err "ember: $TMP/cut.png: "
expect_text err "ember: $TMP/short.pgm: truncated"
expect_text err "$TMP/missing.pgm: No such file or directory"
expect_text out "horizontal.pgm: T-shirt/top"
expect_lines out 1

# ---- weights that do not fit the model: the tensor and both shapes --------------------
sed 's/conv2d 4 3/conv2d 5 3/' "$TMP/bars.ember" >"$TMP/wider.ember"
run predict "$TMP/wider.ember" --weights "$TMP/bars.safetensors" "$TMP/horizontal.pgm"
expect_status 1
expect_text err "tensor '0.weight' has shape [4, 1, 3, 3] in the checkpoint but [5, 1, 3, 3] in the model"
expect_no_text out "horizontal"
run eval "$TMP/wider.ember" --weights "$TMP/bars.safetensors" --data "csv:$TMP/bars.csv"
expect_status 1
expect_text err "'0.weight' has shape [4, 1, 3, 3] in the checkpoint but [5, 1, 3, 3]"

# ---- a convolution wider than its input ---------------------------------------------
printf 'input 1x8x8\nconv2d 4 3\nmaxpool 2\nconv2d 4 5\nflatten\nlinear 3\n' >"$TMP/narrow.ember"
run train "$TMP/narrow.ember" --data "csv:$TMP/bars.csv" --progress quiet
expect_status 1
expect_text err "narrow.ember:4: layer 2 (conv2d): the input [4, 3, 3] padded to 3x3 is smaller than the kernel 5x5"
run predict "$TMP/narrow.ember" --weights "$TMP/bars.safetensors" "$TMP/horizontal.pgm"
expect_status 1
expect_text err "smaller than the kernel 5x5"
run gradcheck "$TMP/narrow.ember"
expect_status 1
expect_text err "smaller than the kernel"

# a model whose input is not an image
printf 'input 5\nlinear 3\n' >"$TMP/flat.ember"
run train "$TMP/flat.ember" --data "csv:$TMP/bars.csv" --progress quiet
expect_status 1
run predict "$TMP/flat.ember" --weights "$TMP/bars.safetensors" "$TMP/horizontal.pgm"
expect_status 1
expect_text err "ember: "

# ---- usage errors --------------------------------------------------------------------
run predict "$TMP/horizontal.pgm"
expect_status 2
expect_text err "--weights FILE is required"
run predict --weights "$TMP/bars.safetensors"
expect_status 2
expect_text err "no images given"
run predict "$TMP/bars.ember" --weights "$TMP/bars.safetensors"
expect_status 2
expect_text err "no images given"
run predict --weights "$TMP/bars.safetensors" --classes "a,b,c" "$TMP/horizontal.pgm"
expect_status 2
expect_text err "--classes names 3 classes but model"
run predict --weights "$TMP/bars.safetensors" --classes cifar "$TMP/horizontal.pgm"
expect_status 2
expect_text err "--classes 'cifar' is neither a known dataset"
run predict --weights "$TMP/bars.safetensors" --top 0 "$TMP/horizontal.pgm"
expect_status 2
expect_text err "--top"

finish cli_cnn
