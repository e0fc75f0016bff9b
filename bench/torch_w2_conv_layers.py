"""The convolutional part of W2 in PyTorch, as bench/w2_conv_layers.c times it in ember:
conv 1->32 3x3 pad 1 + ReLU, max pool 2, conv 32->64 3x3 pad 1 + ReLU, max pool 2 on
[64, 1, 28, 28] batches of random data (the input needs no gradient), forward and backward
with a fixed upstream gradient, per batch: the median and fastest of --iters steps after
warm-up, in each thread set-up of bench/torch_setup.py.

Run: /usr/bin/python3 bench/torch_w2_conv_layers.py [--setup a|b|c|d|all] [--iters N]
"""
import time

import torch_setup


def run(torch, iters, batch):
    nn = torch.nn
    torch.manual_seed(0)
    layers = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                           nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
    x = torch.rand(batch, 1, 28, 28)
    upstream = torch.randn(batch, 64, 7, 7) * 1e-3
    times = []
    for i in range(iters + 3):
        start = time.perf_counter()
        out = layers(x)
        out.backward(upstream)
        elapsed = time.perf_counter() - start
        for p in layers.parameters():
            p.grad = None
        if i >= 3:
            times.append(elapsed)
    times.sort()
    median = times[len(times) // 2]
    return {"median_ms": 1e3 * median, "fastest_ms": 1e3 * times[0],
            "summary": f"{1e3 * median:.3f} ms median, {1e3 * times[0]:.3f} ms fastest per batch"}


def main():
    p = torch_setup.parser(__doc__)
    p.add_argument("--iters", type=int, default=50)
    p.add_argument("--batch", type=int, default=64)
    args = p.parse_args()
    if args.setup == "all":
        results, best = torch_setup.run_all(args, lambda r1, r2: r1["median_ms"] < r2["median_ms"])
        print(f"fastest: ({best}) {torch_setup.SETUPS[best]}")
        torch_setup.write_json(args.json, {"results": results, "fastest": best})
        return
    torch = torch_setup.apply(args.setup)
    result = run(torch, args.iters, args.batch)
    torch_setup.emit(result)


if __name__ == "__main__":
    main()
