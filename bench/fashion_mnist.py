"""Fashion-MNIST for the PyTorch side of the benchmarks: Debian's IDX files (plain or
gzip, by magic) read straight into one uint8 buffer each, so that the process holds the
images once, as bytes, as ember does (a 60k training set is 47 MB)."""
import gzip
import os
import struct

DATA_DIR = os.environ.get("EMBER_DATA_DIR", "/usr/share/datasets/fashion-mnist")


def find(name):
    for candidate in (name, name + ".gz"):
        path = os.path.join(DATA_DIR, candidate)
        if os.path.exists(path):
            return path
    raise SystemExit(f"missing {name} under {DATA_DIR} (apt-get install dataset-fashion-mnist)")


def read_idx(path):
    """(dims, bytearray of the values) of an IDX file of unsigned bytes."""
    with open(path, "rb") as raw:
        compressed = raw.read(2) == b"\x1f\x8b"
    with (gzip.open if compressed else open)(path, "rb") as f:
        head = f.read(4)
        if len(head) != 4 or head[0] != 0 or head[1] != 0 or head[2] != 0x08:
            raise SystemExit(f"{path}: not an IDX file of unsigned bytes")
        ndim = head[3]
        dims = struct.unpack(">" + "I" * ndim, f.read(4 * ndim))
        count = 1
        for d in dims:
            count *= d
        values = bytearray(count)
        if f.readinto(values) != count:
            raise SystemExit(f"{path}: truncated")
    return dims, values


def load(torch, split, flat=False):
    """Images as uint8 [N, 1, 28, 28] (or [N, 784] with flat) and labels as int64 [N];
    split is 'train' or 't10k'."""
    dims, pixels = read_idx(find(f"{split}-images-idx3-ubyte"))
    _, labels = read_idx(find(f"{split}-labels-idx1-ubyte"))
    x = torch.frombuffer(pixels, dtype=torch.uint8)
    x = x.reshape(dims[0], dims[1] * dims[2]) if flat else x.reshape(dims[0], 1, dims[1], dims[2])
    y = torch.frombuffer(labels, dtype=torch.uint8).long()
    return x, y
