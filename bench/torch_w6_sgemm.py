"""W6 of bench/WORKLOADS.md in PyTorch: torch.mm on row-major float32 n x n matrices,
n in 64..2048, GFLOP/s (best and median over about --seconds of calls per size), in
each thread set-up of torch_setup.py.

Run: /usr/bin/python3 bench/torch_w6_sgemm.py [--setup a|b|c|d|all] [--json FILE]
"""
import statistics
import time

import torch_setup

SIZES = [64, 128, 256, 512, 1024, 2048]


def measure(torch, seconds, sizes):
    torch.manual_seed(0)
    rows = []
    for n in sizes:
        a = torch.rand(n, n) * 2 - 1
        b = torch.rand(n, n) * 2 - 1
        c = torch.empty(n, n)
        flops = 2.0 * n * n * n
        torch.mm(a, b, out=c)
        torch.mm(a, b, out=c)
        rates = []
        start = time.perf_counter()
        while len(rates) < 5 or time.perf_counter() - start < seconds:
            t0 = time.perf_counter()
            torch.mm(a, b, out=c)
            rates.append(flops / (time.perf_counter() - t0) * 1e-9)
        rows.append({"n": n, "best": max(rates), "median": statistics.median(rates)})
    return rows


def large_median(result):
    """The figure the set-ups are ranked by: mean median GFLOP/s over n >= 512."""
    big = [r["median"] for r in result["sizes"] if r["n"] >= 512]
    return sum(big) / len(big) if big else 0.0


def main():
    p = torch_setup.parser(__doc__)
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument("--sizes", default=",".join(map(str, SIZES)))
    args = p.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.setup == "all":
        results, best = torch_setup.run_all(
            args, lambda r1, r2: large_median(r1) > large_median(r2))
        print(f"fastest: ({best}) {torch_setup.SETUPS[best]}")
        torch_setup.write_json(args.json, {
            "workload": "W6", "side": "torch", "setups": torch_setup.SETUPS,
            "runs": results, "fastest": best})
        return
    torch = torch_setup.apply(args.setup)
    rows = measure(torch, args.seconds, sizes)
    for r in rows:
        print(f"n={r['n']:5d}  best {r['best']:7.1f}  median {r['median']:7.1f} GFLOP/s")
    result = {"setup": args.setup, "torch": torch.__version__, "sizes": rows}
    result["summary"] = " ".join(f"{r['n']}:{r['median']:.0f}" for r in rows) + " GFLOP/s (median)"
    torch_setup.emit(result)
    torch_setup.write_json(args.json, result)


if __name__ == "__main__":
    main()
