#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets into tests/fuzz/corpus/<target>/: a few
valid files of each format and a few near-misses, small enough to read. Run it again
after changing a format; crash cases found by the fuzzers are added by hand as
crash-<what>-<hash> and never regenerated here. Needs only the standard library."""
import gzip
import json
import os
import struct
import sys
import zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    folder = os.path.join(ROOT, target)
    os.makedirs(folder, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(folder, "seed-" + name), "wb") as f:
        f.write(data)


def safetensors(tensors, metadata=None, header_override=None):
    """tensors: list of (name, dtype, shape, raw bytes)."""
    header, blob = {}, b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [len(blob), len(blob) + len(raw)]}
        blob += raw
    if metadata:
        header["__metadata__"] = metadata
    text = header_override if header_override is not None else json.dumps(header)
    text = text.encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + blob


def f32(*values):
    return struct.pack("<%df" % len(values), *values)


def safetensors_seeds():
    put("safetensors", "one-f32", safetensors([("w", "F32", [2, 2], f32(1, 2, 3, 4))]))
    put("safetensors", "two-meta", safetensors(
        [("0.weight", "F32", [3, 2], f32(*range(6))), ("0.bias", "F32", [3], f32(7, 8, 9))],
        {"format": "pt", "ember.model": "input 2\nlinear 3\n"}))
    put("safetensors", "f16-bf16", safetensors(
        [("h", "F16", [2], struct.pack("<2e", 1.5, -2.0)),
         ("b", "BF16", [2], struct.pack("<2H", 0x3F80, 0xC000))]))
    put("safetensors", "scalar-and-empty", safetensors(
        [("s", "F32", [], f32(3.5)), ("e", "F32", [0, 4], b"")]))
    put("safetensors", "i64-other-dtype", safetensors([("i", "I64", [2], struct.pack("<2q", 1, 2))]))
    good = safetensors([("w", "F32", [4], f32(1, 2, 3, 4))])
    put("safetensors", "truncated-data", good[:-5])
    put("safetensors", "header-too-long", struct.pack("<Q", 1 << 40) + good[8:])
    put("safetensors", "overlap", safetensors([], header_override=json.dumps({
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})) + f32(0, 0, 0))
    put("safetensors", "bad-json", safetensors([], header_override='{"w": {"dtype": "F32", "shape": [1'))


def idx_pair(images, labels):
    """The idx target's input: 2-byte labels length, labels, images."""
    return struct.pack("<H", len(labels)) + labels + images


def idx_images(count, rows, cols, pixels=None):
    body = bytes(pixels) if pixels is not None else bytes((i * 37) % 256 for i in range(count * rows * cols))
    return struct.pack(">IIII", 0x803, count, rows, cols) + body


def idx_labels(labels):
    return struct.pack(">II", 0x801, len(labels)) + bytes(labels)


def idx_seeds():
    images, labels = idx_images(3, 2, 2), idx_labels([0, 2, 1])
    put("idx", "three-2x2", idx_pair(images, labels))
    put("idx", "gzip-both", idx_pair(gzip.compress(images, mtime=0), gzip.compress(labels, mtime=0)))
    put("idx", "swapped", idx_pair(labels, images))
    put("idx", "truncated-images", idx_pair(images[:-2], labels))
    put("idx", "count-mismatch", idx_pair(images, idx_labels([0, 1])))
    put("idx", "trailing-byte", idx_pair(images + b"\0", labels))
    put("idx", "zero-rows", idx_pair(idx_images(1, 0, 4, []), idx_labels([0])))
    put("idx", "huge-header", idx_pair(struct.pack(">IIII", 0x803, 60000, 28, 28) + b"\1" * 16,
                                       struct.pack(">II", 0x801, 60000) + b"\1" * 8))
    put("idx", "gzip-cut", idx_pair(gzip.compress(images, mtime=0)[:-6], labels))


def csv_seeds():
    # The first byte picks the label column: value % 5 - 2 (so 1 is -1, 2 is 0).
    last, first = b"\x01", b"\x02"
    put("csv", "header-last", last + b"a,b,label\n0.5,1,0\n-2,3e-1,1\n4,5,2\n")
    put("csv", "no-header-first", first + b"1,0.25,0.5\n0,1,2\n\n2,3,4\n")
    put("csv", "bom-quoted-crlf", last + b"\xef\xbb\xbfx,\"y\",c\r\n\"1\",2,0\r\n3,4,1\r\n")
    put("csv", "ragged", last + b"1,2,0\n3,0\n")
    put("csv", "bad-cell", last + b"f1,f2,y\n1,abc,0\n")
    put("csv", "bad-label", last + b"1,2,0.5\n")
    put("csv", "negative-label", first + b"-1,2\n")
    put("csv", "one-column", last + b"1\n2\n")
    put("csv", "header-only", last + b"a,b\n")
    put("csv", "nul-byte", last + b"1,2,0\n3,\x004,1\n")
    put("csv", "out-of-range-column", b"\x04" + b"1,2\n")
    put("csv", "inf-nan", last + b"inf,1,0\nnan,2,1\n")


def model_seeds():
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for path in ("models/mlp.ember", "tests/data/tiny.ember"):
        with open(os.path.join(here, path), "rb") as f:
            put("model_parse", os.path.basename(path).replace(".", "-"), f.read())
    put("model_parse", "options", "input 2x3x4\nflatten 1 -1\nlinear out=5 bias=false\n"
        "leaky_relu slope=0.2\nlinear 3\ngelu approximate=tanh\nsilu\nsigmoid\ntanh\n")
    put("model_parse", "zero-size", "input 4\nlinear 0\n")
    put("model_parse", "negative-size", "input 4\nlinear -3\n")
    put("model_parse", "zero-input", "input 0x28\nlinear 3\n")
    put("model_parse", "unknown-kind", "input 4\nconvolution 3\n")
    put("model_parse", "bad-option", "input 4\nlinear 3 bias=maybe\n")
    put("model_parse", "no-flatten", "input 1x2x2\nlinear 3\n")
    put("model_parse", "no-input", "linear 3\n")
    with open(os.path.join(here, "models/cnn.ember"), "rb") as f:
        put("model_parse", "cnn-ember", f.read())
    put("model_parse", "cnn-options", "input 3x11x10\nconv2d 6 3x5 stride=2x1 pad=1x2 dilation=1x2 groups=3 "
        "bias=false\nbatchnorm momentum=0.25 eps=0.001 affine=false\nmaxpool 3x2 stride=1x2 pad=1\n"
        "avgpool 2 stride=1 count_include_pad=false\nbatchnorm track_running_stats=false\n"
        "adaptive_avgpool 1\nflatten\ndropout 0.125\nlinear 3\nbatchnorm\n")
    put("model_parse", "conv-too-wide", "input 1x5x5\nconv2d 4 7\n")


def png_chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png(width, height, colour_type, rows, bit_depth=8, extra=b""):
    """A PNG of unfiltered rows (bytes each); `extra` chunks go before the data."""
    raw = b"".join(b"\0" + r for r in rows)
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + extra + png_chunk(b"IDAT", zlib.compress(raw))
            + png_chunk(b"IEND", b""))


def image_seeds():
    grey = png(4, 3, 0, [bytes([0, 85, 170, 255])] * 3)
    put("image", "png-grey", grey)
    put("image", "png-rgba", png(2, 2, 6, [bytes([255, 0, 0, 255, 0, 0, 255, 128])] * 2))
    put("image", "png-grey16", png(2, 1, 0, [struct.pack(">2H", 4660, 65535)], bit_depth=16))
    put("image", "png-palette", png(2, 2, 3, [bytes([0, 1])] * 2,
                                    extra=png_chunk(b"PLTE", bytes([0, 0, 0, 255, 255, 255]))))
    put("image", "png-truncated", grey[:-20])
    put("image", "png-huge-header", png(60000, 60000, 0, [b""]))
    put("image", "p2-comments", "P2\n# comment\n3 2 # width height\n4\n0 1 2\n3 4 0\n")
    put("image", "p5", b"P5 2 2 255\n\x00\x01\xfe\xff")
    put("image", "p5-16bit", b"P5\n2 1\n65535\n\x12\x34\xff\xff")
    put("image", "p3", "P3 2 1 255 255 0 0  0 0 255\n")
    put("image", "p6", b"P6 1 1 255\r\x10\x20\x30")
    put("image", "p5-truncated", b"P5 16 16 255\n\x01\x02")
    put("image", "p2-above-maxval", "P2 2 1 9 3 10\n")
    put("image", "p7", "P7\nWIDTH 2\n")


def bpe_pair(merges, vocab):
    """The bpe target's input: 2-byte merges length, merges.txt, vocab.json."""
    return struct.pack("<H", len(merges)) + merges + vocab


def bpe_seeds():
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    folder = os.path.join(here, "tests", "fixtures", "gpt2_tiny")
    with open(os.path.join(folder, "merges.txt"), "rb") as f:
        merges = f.read()
    with open(os.path.join(folder, "vocab.json"), "rb") as f:
        vocab = f.read()
    put("bpe", "tiny", bpe_pair(merges, vocab))
    put("bpe", "no-merges", bpe_pair(b"#version: 0.2\n", vocab))
    put("bpe", "merge-unknown-symbol", bpe_pair(merges + b"zz qq\n", vocab))
    put("bpe", "merge-one-symbol", bpe_pair(merges + b"abc\n", vocab))
    table = json.loads(vocab)
    missing = dict(table)
    del missing["a"]
    put("bpe", "vocab-missing-byte", bpe_pair(merges, json.dumps(missing).encode()))
    put("bpe", "vocab-not-object", bpe_pair(merges, b"[1, 2, 3]"))
    put("bpe", "vocab-bad-id", bpe_pair(merges, vocab.replace(b'"!": 0', b'"!": -7')))
    put("bpe", "vocab-truncated", bpe_pair(merges, vocab[: len(vocab) // 2]))


def gpt_tensors(vocab=8, context=4, width=4, layers=1, prefix="", lm_head=False, mask=False):
    """A miniature GPT-2 in Hugging Face's names and Conv1D layouts, seeded values."""
    counter = [0]

    def values(*shape):
        n = 1
        for d in shape:
            n *= d
        out = []
        for _ in range(n):
            counter[0] += 1
            out.append(((counter[0] * 37) % 17 - 8) / 16.0)
        return list(shape), f32(*out)

    t = [("wte.weight", *values(vocab, width)), ("wpe.weight", *values(context, width))]
    for i in range(layers):
        h = "h.%d." % i
        t += [(h + "ln_1.weight", *values(width)), (h + "ln_1.bias", *values(width)),
              (h + "attn.c_attn.weight", *values(width, 3 * width)), (h + "attn.c_attn.bias", *values(3 * width)),
              (h + "attn.c_proj.weight", *values(width, width)), (h + "attn.c_proj.bias", *values(width)),
              (h + "ln_2.weight", *values(width)), (h + "ln_2.bias", *values(width)),
              (h + "mlp.c_fc.weight", *values(width, 4 * width)), (h + "mlp.c_fc.bias", *values(4 * width)),
              (h + "mlp.c_proj.weight", *values(4 * width, width)), (h + "mlp.c_proj.bias", *values(width))]
        if mask:
            t.append((h + "attn.bias", *values(1, 1, context, context)))
    t += [("ln_f.weight", *values(width)), ("ln_f.bias", *values(width))]
    t = [(prefix + name, "F32", shape, raw) for name, shape, raw in t]
    if lm_head:
        t.append(("lm_head.weight", "F32", *values(vocab, width)))
    return t


def gpt_seeds():
    put("gpt_import", "tiny", safetensors(gpt_tensors()))
    put("gpt_import", "prefix-mask-head", safetensors(gpt_tensors(prefix="transformer.", mask=True, lm_head=True)))
    put("gpt_import", "two-layers-meta", safetensors(gpt_tensors(vocab=4, context=2, width=2, layers=2),
                                                      {"ember.model": "input 2\ngpt vocab=4 context=2 layers=2 heads=2 width=2\n"}))
    half = [(n, "F16", s, struct.pack("<%de" % (len(r) // 4), *struct.unpack("<%df" % (len(r) // 4), r)))
            for n, _, s, r in gpt_tensors()]
    put("gpt_import", "f16", safetensors(half))
    put("gpt_import", "missing-ln-f", safetensors([t for t in gpt_tensors() if not t[0].startswith("ln_f")]))
    put("gpt_import", "extra-tensor", safetensors(gpt_tensors() + [("extra", "F32", [1], f32(1))]))
    bad = gpt_tensors()
    bad[2] = (bad[2][0], "F32", [3], f32(1, 2, 3))
    put("gpt_import", "wrong-shape", safetensors(bad))


def main():
    image_seeds()
    safetensors_seeds()
    idx_seeds()
    csv_seeds()
    model_seeds()
    bpe_seeds()
    gpt_seeds()
    return 0


if __name__ == "__main__":
    sys.exit(main())
