"""W5 of bench/WORKLOADS.md in PyTorch: batch-1 forward latency of W2's network (default
init after torch.manual_seed(0)) in eval mode under torch.no_grad(). The input is the
first Fashion-MNIST test image. After warm-up calls, 1000 calls are timed one by one;
the figure is their median in microseconds.

Run: /usr/bin/python3 bench/torch_w5_latency.py [--setup a|b|c|d|all] [--repeat N] [--calls N] [--json FILE]
"""
import statistics
import time

import fashion_mnist
import torch_setup
from w2_network import network

WARMUP_CALLS = 200


def run(torch, x, calls):
    torch.manual_seed(0)
    model = network(torch.nn)
    model.eval()
    times = []
    with torch.no_grad():
        for _ in range(WARMUP_CALLS):
            model(x).argmax(dim=1)
        for _ in range(calls):
            start = time.perf_counter()
            predicted = model(x).argmax(dim=1)
            times.append(time.perf_counter() - start)
    times.sort()
    return {"median_us": 1e6 * statistics.median(times), "best_us": 1e6 * times[0],
            "p90_us": 1e6 * times[(calls * 9) // 10], "predicted_class": int(predicted.item())}


def main():
    p = torch_setup.parser(__doc__)
    p.add_argument("--calls", type=int, default=1000, help="timed calls (default 1000)")
    args = p.parse_args()
    if args.setup == "all":
        results, best = torch_setup.run_all(args, lambda r1, r2: r1["median_us"] < r2["median_us"])
        print(f"fastest: ({best}) {torch_setup.SETUPS[best]}")
        torch_setup.write_json(args.json, {
            "workload": "W5", "side": "torch", "calls": args.calls, "warmup": WARMUP_CALLS,
            "setups": torch_setup.SETUPS, "runs": results, "fastest": best})
        return
    torch = torch_setup.apply(args.setup)
    test_x, _ = fashion_mnist.load(torch, "t10k")
    x = test_x[0:1].float().div_(255.0)
    runs = [run(torch, x, args.calls) for _ in range(args.repeat)]
    result = min(runs, key=lambda r: r["median_us"])
    result.update({"setup": args.setup, "torch": torch.__version__,
                   "all_median_us": [r["median_us"] for r in runs]})
    result["summary"] = (f"median {result['median_us']:.1f} us per image (fastest call {result['best_us']:.1f}, "
                         f"90th percentile {result['p90_us']:.1f})")
    print(result["summary"])
    torch_setup.emit(result)
    torch_setup.write_json(args.json, result)


if __name__ == "__main__":
    main()
