"""The PyTorch side of bench/w3_lstm_cell.c: W3's byte embedding 256->64 and one LSTM
layer 64->256 over batch 32, sequence 64 (seq-first), forward + backward per training
step with a fixed upstream gradient ("core"), and the same plus the linear head 256->256
and cross-entropy ("step_without_adam"), in each thread set-up of torch_setup.py. Median
milliseconds over --iters steps after warm-up, and the training tokens per second they
imply.

Run: /usr/bin/python3 bench/torch_w3_lstm_cell.py [--setup a|b|c|d|all] [--json FILE]
"""
import statistics
import time

import torch_setup

VOCAB, EMBED, HIDDEN, BATCH, SEQ = 256, 64, 256, 32, 64


def measure(torch, iters):
    import torch.nn.functional as F
    torch.manual_seed(0)
    emb = torch.nn.Embedding(VOCAB, EMBED)
    lstm = torch.nn.LSTM(EMBED, HIDDEN)
    head = torch.nn.Linear(HIDDEN, VOCAB)
    ids = torch.randint(0, VOCAB, (SEQ, BATCH))
    labels = torch.randint(0, VOCAB, (SEQ * BATCH,))
    up = torch.randn(SEQ, BATCH, HIDDEN) * 1e-3
    params = list(emb.parameters()) + list(lstm.parameters()) + list(head.parameters())

    def core():
        y, _ = lstm(emb(ids))
        y.backward(up)

    def step_without_adam():
        y, _ = lstm(emb(ids))
        F.cross_entropy(head(y.reshape(-1, HIDDEN)), labels).backward()

    out = {}
    for name, fn in (("core", core), ("step_without_adam", step_without_adam)):
        times = []
        for i in range(iters + 3):
            for p in params:
                p.grad = None
            t0 = time.perf_counter()
            fn()
            dt = time.perf_counter() - t0
            if i >= 3:
                times.append(dt * 1e3)
        out[name] = statistics.median(times)
    return out


def main():
    p = torch_setup.parser(__doc__)
    p.add_argument("--iters", type=int, default=20)
    args = p.parse_args()
    if args.setup == "all":
        results, best = torch_setup.run_all(args, lambda r1, r2: r1["ms"]["core"] < r2["ms"]["core"])
        print(f"fastest (core): ({best}) {torch_setup.SETUPS[best]}")
        torch_setup.write_json(args.json, {
            "workload": "W3 recurrent core", "side": "torch", "setups": torch_setup.SETUPS,
            "runs": results, "fastest": best})
        return
    torch = torch_setup.apply(args.setup)
    ms = measure(torch, args.iters)
    tokens = BATCH * SEQ
    for name, value in ms.items():
        print(f"{name:20s} {value:8.3f} ms  {tokens / value * 1e3:8.0f} tokens/s")
    result = {"setup": args.setup, "torch": torch.__version__, "ms": ms,
              "tokens_per_s": {k: tokens / v * 1e3 for k, v in ms.items()}}
    result["summary"] = " ".join(f"{k} {v:.2f}" for k, v in ms.items()) + " ms (median)"
    torch_setup.emit(result)
    torch_setup.write_json(args.json, result)


if __name__ == "__main__":
    main()
