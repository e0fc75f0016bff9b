#!/bin/sh
# Every kind of bad input the reliability notes list (docs/reliability.md), given to the
# command-line tool: each must fail cleanly (exit 1 for bad files and data, 2 for bad
# usage; never a crash) with a message naming the problem. With --table, prints the
# Markdown table of inputs and messages that the notes carry instead of checking.
# Usage: sh tests/cli_bad_inputs.sh path/to/ember [--table]
EMBER=$1
TABLE=${2:-}
if [ -z "$EMBER" ] || [ ! -x "$EMBER" ]; then
    echo "usage: sh $0 path/to/ember [--table]" >&2
    exit 2
fi
case $EMBER in /*) ;; *) EMBER=$(pwd)/$EMBER ;; esac
GPT2_TINY=$(cd "$(dirname "$0")" && pwd)/fixtures/gpt2_tiny
TMP=$(mktemp -d) || exit 2
trap 'rm -rf "$TMP"' EXIT
trap 'exit 1' INT TERM
cd "$TMP" || exit 2

checks=0
failures=0
section=""

# bad DESCRIPTION STATUS EXPECTED-TEXT ARGS...: runs ember ARGS, expecting the exit
# status and the text in its standard error.
bad() {
    what=$1 want_status=$2 want_text=$3
    shift 3
    "$EMBER" "$@" >out 2>err
    status=$?
    if [ -n "$TABLE" ]; then
        msg=$(grep -v '^Try ' err | head -n 1 | sed -e "s|$TMP/||g" -e 's/|/\\|/g')
        printf '| %s | %s | `%s` |\n' "$section" "$what" "$msg"
        return
    fi
    checks=$((checks + 2))
    if [ "$status" -ne "$want_status" ]; then
        failures=$((failures + 1))
        echo "FAIL: $what: ember $*: exit status $status, expected $want_status"
        sed 's/^/    stderr: /' err
    fi
    if ! grep -q -F -e "$want_text" err; then
        failures=$((failures + 1))
        echo "FAIL: $what: ember $*: '$want_text' missing from stderr"
        sed 's/^/    stderr: /' err
    fi
}

# ---- inputs -------------------------------------------------------------------------
printf 'input 4\nlinear 8\nrelu\nlinear 3\n' >tiny.ember
i=0
{
    echo "a,b,c,d,label"
    while [ $i -lt 30 ]; do
        echo "0.$((i % 7)),$((i % 5)),-0.$((i % 3)),$((i % 2)),$((i % 3))"
        i=$((i + 1))
    done
} >good.csv
# IDX: 3 images of 2x2, 3 labels (printf octal escapes: portable binary).
printf '\0\0\10\3\0\0\0\3\0\0\0\2\0\0\0\2\1\2\3\4\5\6\7\10\11\12\13\14' >images.idx
printf '\0\0\10\1\0\0\0\3\0\1\2' >labels.idx
printf '\0\0\10\1\0\0\0\2\0\1' >labels2.idx

[ -n "$TABLE" ] && printf '| Input | Bad input | Message |\n|---|---|---|\n'

section="model file"
bad "missing file" 1 "cannot open model description missing.ember" train missing.ember --data csv:good.csv
bad "a directory" 1 "cannot read model description .: Is a directory" train . --data csv:good.csv
printf '' >empty.ember
bad "empty file" 1 "no 'input' line" train empty.ember --data csv:good.csv
printf 'input 4\nlinear 0\n' >zero.ember
bad "zero size" 1 "zero.ember:2: linear: out_features must be at least 1, got 0" train zero.ember --data csv:good.csv
printf 'input 4\nlinear -3\n' >negative.ember
bad "negative size" 1 "negative.ember:2: linear: out_features must be at least 1, got -3" train negative.ember --data csv:good.csv
printf 'input 0\nlinear 3\n' >zero_input.ember
bad "zero input size" 1 "zero_input.ember:1: input: every size must be between 1" train zero_input.ember --data csv:good.csv
printf 'input 4x-2\nlinear 3\n' >negative_input.ember
bad "negative input size" 1 "negative_input.ember:1: input: every size must be between 1" train negative_input.ember --data csv:good.csv
printf 'input 1x4x4\nconv2d 0 3\n' >conv_zero.ember
bad "zero channels (conv2d)" 1 "conv_zero.ember:2: conv2d: out_channels must be at least 1, got 0" train conv_zero.ember --data csv:good.csv
printf 'input 1x4x4\nconv2d 2 3 stride=0\n' >conv_stride.ember
bad "zero stride (conv2d)" 1 "conv_stride.ember:2: conv2d: stride must be at least 1, got 0" train conv_stride.ember --data csv:good.csv
printf 'input 1x4x4\nmaxpool -2\n' >pool.ember
bad "negative window (maxpool)" 1 "pool.ember:2: maxpool: kernel_size must be at least 1, got -2" train pool.ember --data csv:good.csv
printf 'input 1x4x4\nconv2d 2 9\n' >kernel.ember
bad "kernel larger than the input" 1 "kernel.ember:2: layer 0 (conv2d): the input [1, 4, 4] padded to 4x4 is smaller than the kernel 9x9" train kernel.ember --data csv:good.csv
printf 'input 4\ndropout 1.5\nlinear 3\n' >dropout.ember
bad "probability above 1 (dropout)" 1 "dropout.ember:2: dropout: p must be in [0, 1], got 1.5" train dropout.ember --data csv:good.csv
printf 'input 4\nlinear many\n' >word.ember
bad "a word for a number" 1 "word.ember:2: linear: out_features must be an integer, got 'many'" train word.ember --data csv:good.csv
printf 'input 100000\nlinear 100000\n' >huge.ember
bad "a layer too large" 1 "ember refuses tensors above" train huge.ember --data csv:good.csv
printf 'input 4\nconvolution 3\n' >unknown.ember
bad "unknown layer" 1 "unknown.ember:2: unknown layer 'convolution'; valid kinds:" train unknown.ember --data csv:good.csv
printf 'linear 3\n' >no_input.ember
bad "no input line" 1 "no_input.ember:1: expected 'input DxHxW' or 'input N' as the first line" train no_input.ember --data csv:good.csv
printf 'input 4\n' >no_layers.ember
bad "no layers" 1 "no layers after the 'input' line" train no_layers.ember --data csv:good.csv
printf 'input 4\nlinear 3 bias=maybe\n' >bad_bool.ember
bad "bad option value" 1 "bad_bool.ember:2: linear: bias must be true or false, got 'maybe'" train bad_bool.ember --data csv:good.csv
printf 'input 4\nlinear 3 colour=red\n' >bad_key.ember
bad "unknown option" 1 "bad_key.ember:2: linear: unknown option 'colour=red'" train bad_key.ember --data csv:good.csv
printf 'input 1x2x2\nlinear 3\n' >no_flatten.ember
bad "shape that does not fit" 1 "add a 'flatten' line before it" train no_flatten.ember --data csv:good.csv
printf 'input 4\nlin\000ear 3\n' >nul.ember
bad "binary file (NUL bytes)" 1 "contains NUL bytes; a model description is text" train nul.ember --data csv:good.csv
printf 'input 5\nlinear 3\n' >five.ember
bad "input size unlike the data" 1 "expects inputs of shape [5] (5 values), but the items of good.csv have shape [4]" train five.ember --data csv:good.csv
printf 'input 4\nlinear 2\n' >two.ember
bad "fewer outputs than classes" 1 "has labels up to 2 (3 classes), but model two.ember has only 2 outputs" train two.ember --data csv:good.csv

section="CSV"
bad "missing file" 1 "cannot open CSV file 'missing.csv': No such file or directory" train tiny.ember --data csv:missing.csv
bad "a directory" 1 "cannot read CSV file '.': Is a directory" train tiny.ember --data csv:.
printf '' >empty.csv
bad "empty file" 1 "CSV file 'empty.csv' is empty" train tiny.ember --data csv:empty.csv
printf 'a,b,c,d,label\n' >header_only.csv
bad "header only" 1 "has a header (line 1) but no data rows" train tiny.ember --data csv:header_only.csv
printf '1,2,3,4,0\n1,2,3,1\n' >ragged.csv
bad "row with a missing cell" 1 "CSV file 'ragged.csv', line 2: has 4 cells, expected 5 as on line 1" train tiny.ember --data csv:ragged.csv
printf 'a,b,c,d,y\n1,abc,3,4,0\n' >cell.csv
bad "text in a number column" 1 "line 2, column 2 (\"b\"): 'abc' is not a number" train tiny.ember --data csv:cell.csv
printf '1,2,3,4,0\n1,nan,3,4,1\n' >nan.csv
bad "NaN in the data" 1 "line 2, column 2: 'nan' is not a number" train tiny.ember --data csv:nan.csv
printf '1,2,3,4,0\n1,1e39,3,4,1\n' >overflow.csv
bad "value beyond float range" 1 "line 2, column 2: '1e39' is not a number" train tiny.ember --data csv:overflow.csv
printf '1,2,3,4,0.5\n' >fraction.csv
bad "fractional label" 1 "label '0.5' is not a class index" train tiny.ember --data csv:fraction.csv
printf '1,2,3,4,-1\n' >negative_label.csv
bad "negative label" 1 "label '-1' is not a class index" train tiny.ember --data csv:negative_label.csv
printf '1\n2\n' >one_column.csv
bad "one column" 1 "found 1 column; need at least one feature column and a label column" train tiny.ember --data csv:one_column.csv
printf '1,2,3,4,0\n1,2,\0003,4,1\n' >nul.csv
bad "binary file (NUL byte)" 1 "line 2: contains a NUL byte" train tiny.ember --data csv:nul.csv
bad "label column out of range" 1 "label column 7 is out of range: the file has 5 columns" train tiny.ember --data csv:good.csv --label-column 7

section="IDX"
bad "missing file" 1 "cannot open images file 'missing.idx'" train tiny.ember --data idx:missing.idx,labels.idx
printf '' >empty.idx
bad "empty file" 1 "images file 'empty.idx' is empty" train tiny.ember --data idx:empty.idx,labels.idx
printf 'hello, not an IDX file' >text.idx
bad "not an IDX file" 1 "bad magic 0x68656c6c, expected 0x00000803" train tiny.ember --data idx:text.idx,labels.idx
bad "images and labels swapped" 1 "it looks like a labels file (are images and labels swapped?)" train tiny.ember --data idx:labels.idx,images.idx
printf '\0\0\15\3\0\0\0\3\0\0\0\2\0\0\0\2' >float.idx
bad "element type other than bytes" 1 "only unsigned-byte (type 0x08) IDX files are supported" train tiny.ember --data idx:float.idx,labels.idx
head -c 25 images.idx >truncated.idx
bad "truncated" 1 "images file 'truncated.idx' is truncated: expected 28 bytes" train tiny.ember --data idx:truncated.idx,labels.idx
{ cat images.idx; printf 'x'; } >long.idx
bad "trailing bytes" 1 "is longer than its header says: expected 28 bytes" train tiny.ember --data idx:long.idx,labels.idx
bad "count mismatch" 1 "holds 3 images but labels file 'labels2.idx' holds 2 labels" train tiny.ember --data idx:images.idx,labels2.idx
printf '\0\0\10\3\0\0\0\3\0\0\0\0\0\0\0\2' >zero_rows.idx
bad "zero-sized images" 1 "every dimension must be positive" train tiny.ember --data idx:zero_rows.idx,labels.idx
printf '\0\0\10\3\377\377\377\377\377\377\377\377\377\377\377\377' >huge.idx
bad "header claiming 2^96 pixels" 1 "too large to hold in memory" train tiny.ember --data idx:huge.idx,labels.idx
if command -v gzip >/dev/null 2>&1; then
    gzip -n -c <images.idx >images.idx.gz
    size=$(wc -c <images.idx.gz)
    head -c $((size - 10)) images.idx.gz >cut.idx.gz
    bad "gzip stream cut short" 1 "the gzip stream ends early" train tiny.ember --data idx:cut.idx.gz,labels.idx
    # Damage the deflate data (after the 10-byte gzip header, no name in it with -n).
    { head -c 12 images.idx.gz; printf '\377\377\377\377'; tail -c +17 images.idx.gz; } >damaged.idx.gz
    bad "damaged gzip data" 1 "(damaged gzip data)" train tiny.ember --data idx:damaged.idx.gz,labels.idx
fi
bad "one path instead of two" 1 "expected idx:IMAGES,LABELS (two paths separated by a comma)" train tiny.ember --data idx:images.idx
bad "unknown dataset name" 1 "unknown dataset 'nosuchset'" train tiny.ember --data nosuchset
EMBER_DATA_DIR=$TMP/none bad "named dataset not installed" 1 "set EMBER_DATA_DIR" train tiny.ember --data mnist

section="weights (safetensors)"
"$EMBER" train tiny.ember --data csv:good.csv --progress quiet --save ok.safetensors >/dev/null 2>&1
bad "missing file" 1 "missing.safetensors: cannot open: No such file or directory" eval tiny.ember --weights missing.safetensors --data csv:good.csv
printf 'garbage' >short.safetensors
bad "shorter than the header length" 1 "too short for a safetensors file" eval tiny.ember --weights short.safetensors --data csv:good.csv
head -c 100 ok.safetensors >truncated.safetensors
bad "truncated header" 1 "runs past the end of the file (100 bytes)" eval tiny.ember --weights truncated.safetensors --data csv:good.csv
size=$(wc -c <ok.safetensors)
head -c $((size - 8)) ok.safetensors >cut.safetensors
bad "truncated data" 1 "cut.safetensors" eval tiny.ember --weights cut.safetensors --data csv:good.csv
printf '\20\0\0\0\0\0\0\0{"w": [1, 2, 3]}' >not_object.safetensors
bad "entry that is not an object" 1 "not_object.safetensors" eval tiny.ember --weights not_object.safetensors --data csv:good.csv
printf '\10\0\0\0\0\0\0\0{"w": [1' >bad_json.safetensors
bad "invalid JSON header" 1 "bad_json.safetensors" eval tiny.ember --weights bad_json.safetensors --data csv:good.csv
printf 'input 4\nlinear 5\nrelu\nlinear 3\n' >wider.ember
bad "weights of another shape" 1 "tensor '0.weight' has shape [8, 4] in the checkpoint but [5, 4] in the model" eval wider.ember --weights ok.safetensors --data csv:good.csv

section="image (predict)"
{ printf '\0\0\10\3\0\0\0\3\0\0\0\34\0\0\0\34'; head -c 2352 /dev/zero; } >images28.idx
printf 'input 1x28x28\nflatten\nlinear 3\n' >image.ember
"$EMBER" train image.ember --data idx:images28.idx,labels.idx --progress quiet --save image.safetensors \
    --plot plot.png >/dev/null 2>&1
bad "missing file" 1 "cannot open image missing.png: No such file or directory" predict image.ember --weights image.safetensors missing.png
echo hello >text.png
bad "not an image" 1 "text.png: not a PNG, PGM or PPM image (it starts with bytes 68 65 6c 6c 6f 0a)" predict image.ember --weights image.safetensors text.png
if [ -s plot.png ]; then
    head -c 200 plot.png >cut.png
    bad "truncated PNG" 1 "cut.png: the PNG image data cannot be decoded" predict image.ember --weights image.safetensors cut.png
fi
printf 'P5\n2 2\n255\n\0' >short.pgm
bad "truncated PGM" 1 "short.pgm: truncated: a 2x2 raster with maximum value 255 needs 4 bytes" predict image.ember --weights image.safetensors short.pgm
printf 'P5\n0 2\n255\n' >zero.pgm
bad "zero width" 1 "zero.pgm: width 0, height 2 and maximum value 255 must be at least 1" predict image.ember --weights image.safetensors zero.pgm
printf 'P5\n99999999 99999999\n255\n' >huge.pgm
bad "huge size in the header" 1 "huge.pgm: the width at byte 3 exceeds 65535" predict image.ember --weights image.safetensors huge.pgm
printf 'P7\nWIDTH 2\n' >p7.pam
bad "unsupported format" 1 "netpbm format P7 is not supported" predict image.ember --weights image.safetensors p7.pam

section="tokenizer (generate)"
# A tiny language model with room for the miniature GPT-2 tokenizer's 297 tokens.
i=0
while [ $i -lt 20 ]; do echo "the quick brown fox $i"; i=$((i + 1)); done >fox.txt
printf 'input 8\ngpt vocab=320 context=8 layers=1 heads=1 width=8\n' >lm.ember
"$EMBER" train lm.ember --data text:fox.txt --seq-len 8 --batch 2 --steps 1 --progress quiet \
    --save lm.safetensors --no-log >/dev/null 2>&1
mkdir tok
cp "$GPT2_TINY/merges.txt" tok/merges.txt
printf '{\n  "a": 0,\n  "b": x\n}\n' >tok/vocab.json
bad "invalid JSON vocabulary" 1 "tok/vocab.json:3:8: not valid JSON" generate --weights lm.safetensors --tokenizer tok --tokens 3
echo '[1, 2]' >tok/vocab.json
bad "vocabulary not an object" 1 "tok/vocab.json: expected an object of \"token\": id pairs, got an array" generate --weights lm.safetensors --tokenizer tok --tokens 3
sed 's/"a": [0-9]*, //' "$GPT2_TINY/vocab.json" >tok/vocab.json
bad "a byte without its token" 1 "tok/vocab.json: no token for byte 0x61" generate --weights lm.safetensors --tokenizer tok --tokens 3
cp "$GPT2_TINY/vocab.json" tok/vocab.json
printf '#version: 0.2\nh e\nthe\n' >tok/merges.txt
bad "merge line without two symbols" 1 "tok/merges.txt:3: expected two symbols separated by one space" generate --weights lm.safetensors --tokenizer tok --tokens 3
printf '#version: 0.2\nh e\nzz qq\n' >tok/merges.txt
bad "merge of unknown symbols" 1 "tok/merges.txt:3: the symbol \"zz\" is not in the vocabulary" generate --weights lm.safetensors --tokenizer tok --tokens 3
rm tok/merges.txt
bad "missing merges.txt" 1 "tok/merges.txt: No such file or directory" generate --weights lm.safetensors --tokenizer tok --tokens 3

section="training"
# Values near the float limit: the first update is finite, the next forward overflows.
i=0
while [ $i -lt 8 ]; do echo "3e38,-3e38,1e37,2,$((i % 3))"; i=$((i + 1)); done >extreme.csv
bad "forward overflows (diverges)" 1 "training diverged at epoch 2, step 2 (batch 1 of 1 in the epoch): the loss is NaN; every parameter is finite, so the forward pass itself overflowed" train tiny.ember --data csv:extreme.csv --progress quiet --epochs 2
bad "the same with --detect-anomaly" 1 "anomaly detection: op 'linear' produced" train tiny.ember --data csv:extreme.csv --progress quiet --epochs 2 --detect-anomaly
bad "learning rate out of range" 2 "--lr must be between" train tiny.ember --data csv:good.csv --lr 1e30
bad "zero batch size" 2 "--batch must be between 1 and" train tiny.ember --data csv:good.csv --batch 0
bad "zero epochs" 2 "--epochs must be between 1 and" train tiny.ember --data csv:good.csv --epochs 0
bad "negative thread count" 2 "--threads must be between 0 and" train tiny.ember --data csv:good.csv --threads -3
bad "save into a missing directory" 1 "cannot use directory" train tiny.ember --data csv:good.csv --progress quiet --save none/x.safetensors

section="command line"
bad "unknown option" 2 "unknown option '--colour'" train tiny.ember --colour
bad "option without its value" 2 "--data needs a value (SPEC)" train tiny.ember --data
bad "text for a number" 2 "--epochs expects an integer N, got 'abc'" train tiny.ember --epochs abc
bad "unknown command" 2 "unknown command" frobnicate

[ -n "$TABLE" ] && exit 0

# A thread count above the core count is allowed.
checks=$((checks + 1))
if ! "$EMBER" train tiny.ember --data csv:good.csv --progress quiet --threads 64 >out 2>err ||
    ! grep -q "64 threads" out; then
    failures=$((failures + 1))
    echo "FAIL: --threads 64 on $(nproc 2>/dev/null || echo '?') cores was refused or not used"
    sed 's/^/    /' out err
fi

echo "cli_bad_inputs: $checks checks, $failures failures"
[ "$failures" -eq 0 ]
