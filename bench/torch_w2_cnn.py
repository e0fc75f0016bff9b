"""W2 of bench/WORKLOADS.md in PyTorch: conv 1->32 3x3 pad 1, ReLU, max pool 2; conv
32->64 3x3 pad 1, ReLU, max pool 2; flatten; linear 3136->128, ReLU; linear 128->10 with
cross-entropy, Adam lr 1e-3, batch 64, one epoch of Fashion-MNIST's 60k training images
in file order (the last partial batch included), default PyTorch init after
torch.manual_seed(0) (--seed S for another). Timed region: the training loop, with the images in memory as
uint8 and each batch converted to float32 (scaled by 1/255) inside the loop. Test
accuracy over the 10k test images afterwards in batches of 500, as `ember train`
evaluates (not timed).

With --setup X the process does just that once (W7 measures such a process's peak
memory; --steps N stops after N batches for quick checks, --test-batch 0 skips the test pass).

Run: /usr/bin/python3 bench/torch_w2_cnn.py [--setup a|b|c|d|all] [--repeat N] [--steps N] [--test-batch N]
                                            [--json FILE]
"""
import time

import fashion_mnist
import torch_setup
from w2_network import network

TEST_BATCH = 500


def run(torch, train, test, max_steps, test_batch, seed):
    F = torch.nn.functional
    train_x, train_y = train
    test_x, test_y = test
    torch.manual_seed(seed)
    model = network(torch.nn)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch = 64
    n = train_x.shape[0]
    batches = 0
    model.train()
    start = time.perf_counter()
    for i in range(0, n, batch):
        if max_steps and batches >= max_steps:
            break
        x = train_x[i:i + batch].float().div_(255.0)
        y = train_y[i:i + batch]
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        batches += 1
    seconds = time.perf_counter() - start
    accuracy = float("nan")
    if test_batch > 0:
        model.eval()
        correct = 0
        with torch.no_grad():
            for i in range(0, test_x.shape[0], test_batch):
                pred = model(test_x[i:i + test_batch].float().div_(255.0)).argmax(dim=1)
                correct += (pred == test_y[i:i + test_batch]).sum().item()
        accuracy = correct / test_x.shape[0]
    return {"seconds": seconds, "test_accuracy": accuracy, "last_loss": loss.item(),
            "batches": batches}


def main():
    p = torch_setup.parser(__doc__)
    p.add_argument("--steps", type=int, default=0, help="stop after this many batches (0: the whole epoch)")
    p.add_argument("--seed", type=int, default=0, help="torch.manual_seed before the init (default 0)")
    p.add_argument("--test-batch", type=int, default=TEST_BATCH,
                   help=f"batch of the test pass (default {TEST_BATCH}; 0: no test pass)")
    args = p.parse_args()
    if args.setup == "all":
        results, best = torch_setup.run_all(args, lambda r1, r2: r1["seconds"] < r2["seconds"])
        print(f"fastest: ({best}) {torch_setup.SETUPS[best]}")
        torch_setup.write_json(args.json, {
            "workload": "W2", "side": "torch", "steps": args.steps, "setups": torch_setup.SETUPS,
            "runs": results, "fastest": best})
        return
    torch = torch_setup.apply(args.setup)
    train = fashion_mnist.load(torch, "train")
    test = fashion_mnist.load(torch, "t10k")
    runs = [run(torch, train, test, args.steps, args.test_batch, args.seed) for _ in range(args.repeat)]
    result = min(runs, key=lambda r: r["seconds"])
    result.update({"setup": args.setup, "torch": torch.__version__,
                   "all_seconds": [r["seconds"] for r in runs]})
    result["summary"] = (f"{result['seconds']:.2f} s/epoch ({result['batches']} batches), "
                         f"test accuracy {result['test_accuracy']:.4f}")
    print(result["summary"])
    torch_setup.emit(result)
    torch_setup.write_json(args.json, result)


if __name__ == "__main__":
    main()
