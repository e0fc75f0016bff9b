"""W1 of bench/WORKLOADS.md in PyTorch: a 784-512-256-10 ReLU MLP with cross-entropy,
SGD momentum 0.9, lr 0.05, batch 128, one epoch of Fashion-MNIST's 60k training images
in file order (the last partial batch included), default PyTorch init after
torch.manual_seed(0). Timed region: the training loop, with the images in memory as
uint8 and each batch converted to float32 (scaled by 1/255) inside the loop. Test
accuracy over the 10k test images afterwards (not timed).

Run: /usr/bin/python3 bench/torch_w1_mlp.py [--setup a|b|c|d|all] [--repeat N] [--json FILE]
"""
import gzip
import os
import struct
import time

import torch_setup

DATA_DIR = os.environ.get("EMBER_DATA_DIR", "/usr/share/datasets/fashion-mnist")


def read_idx(path):
    opener = gzip.open if open(path, "rb").read(2) == b"\x1f\x8b" else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return dims, data[4 + 4 * ndim:]


def find(name):
    for candidate in (name, name + ".gz"):
        path = os.path.join(DATA_DIR, candidate)
        if os.path.exists(path):
            return path
    raise SystemExit(f"missing {name} under {DATA_DIR} (apt-get install dataset-fashion-mnist)")


def load(torch, prefix):
    dims, pixels = read_idx(find(f"{prefix}-images-idx3-ubyte"))
    _, labels = read_idx(find(f"{prefix}-labels-idx1-ubyte"))
    x = torch.frombuffer(bytearray(pixels), dtype=torch.uint8).reshape(dims[0], dims[1] * dims[2])
    y = torch.frombuffer(bytearray(labels), dtype=torch.uint8).long()
    return x, y


def run(torch):
    nn = torch.nn
    F = torch.nn.functional
    train_x, train_y = load(torch, "train")
    test_x, test_y = load(torch, "t10k")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                          nn.Linear(256, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    batch = 128
    n = train_x.shape[0]
    model.train()
    start = time.perf_counter()
    for i in range(0, n, batch):
        x = train_x[i:i + batch].float().div_(255.0)
        y = train_y[i:i + batch]
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        pred = model(test_x.float().div_(255.0)).argmax(dim=1)
    accuracy = (pred == test_y).float().mean().item()
    return {"seconds": seconds, "test_accuracy": accuracy, "last_loss": loss.item(),
            "batches": (n + batch - 1) // batch}


def main():
    p = torch_setup.parser(__doc__)
    args = p.parse_args()
    if args.setup == "all":
        results, best = torch_setup.run_all(args, lambda r1, r2: r1["seconds"] < r2["seconds"])
        print(f"fastest: ({best}) {torch_setup.SETUPS[best]}")
        torch_setup.write_json(args.json, {
            "workload": "W1", "side": "torch", "setups": torch_setup.SETUPS,
            "runs": results, "fastest": best})
        return
    torch = torch_setup.apply(args.setup)
    runs = [run(torch) for _ in range(args.repeat)]
    result = min(runs, key=lambda r: r["seconds"])
    result.update({"setup": args.setup, "torch": torch.__version__,
                   "all_seconds": [r["seconds"] for r in runs]})
    result["summary"] = f"{result['seconds']:.2f} s/epoch, test accuracy {result['test_accuracy']:.4f}"
    print(result["summary"])
    torch_setup.emit(result)
    torch_setup.write_json(args.json, result)


if __name__ == "__main__":
    main()
