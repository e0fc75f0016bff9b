"""The PyTorch side of bench/w4_attention.c: forward + backward of one W4 block's
layer norm and causal self-attention at B=16, T=128, C=128, 4 heads, attention written as
nanoGPT writes it (q·kᵀ/sqrt(hd), masked_fill -inf, softmax, @ v), in each thread set-up
of torch_setup.py. Median milliseconds over --iters steps after warm-up.

Run: /usr/bin/python3 bench/torch_w4_attention.py [--setup a|b|c|d|all] [--json FILE]
"""
import math
import statistics
import time

import torch_setup


def measure(torch, iters, batch, seq):
    import torch.nn.functional as F
    torch.manual_seed(0)
    C, H = 128, 4
    hd = C // H
    x = torch.randn(batch, seq, C, requires_grad=True)
    ln_w = torch.ones(C, requires_grad=True)
    ln_b = torch.zeros(C, requires_grad=True)
    qkv_in = torch.randn(batch, seq, 3 * C, requires_grad=True)
    attn = torch.nn.Linear(C, 3 * C)
    proj = torch.nn.Linear(C, C)
    mask = torch.tril(torch.ones(seq, seq, dtype=torch.bool)).view(1, 1, seq, seq)
    up = torch.randn(batch, seq, C)

    def attention(qkv):
        q, k, v = qkv.split(C, dim=2)
        q = q.view(batch, seq, H, hd).transpose(1, 2)
        k = k.view(batch, seq, H, hd).transpose(1, 2)
        v = v.view(batch, seq, H, hd).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
        att = att.masked_fill(~mask, float("-inf"))
        att = F.softmax(att, dim=-1)
        return (att @ v).transpose(1, 2).contiguous().view(batch, seq, C)

    steps = {
        "layer_norm": lambda: F.layer_norm(x, (C,), ln_w, ln_b, 1e-5),
        "attention": lambda: attention(qkv_in),
        "sub_block": lambda: proj(attention(attn(F.layer_norm(x, (C,), ln_w, ln_b, 1e-5)))),
    }
    out = {}
    for name, fn in steps.items():
        times = []
        for i in range(iters + 3):
            t0 = time.perf_counter()
            fn().backward(up)
            dt = time.perf_counter() - t0
            if i >= 3:
                times.append(dt * 1e3)
        out[name] = statistics.median(times)
    with torch.no_grad():
        times = []
        for i in range(iters + 3):
            t0 = time.perf_counter()
            attention(qkv_in)
            if i >= 3:
                times.append((time.perf_counter() - t0) * 1e3)
        out["attention_forward"] = statistics.median(times)
    return out


def main():
    p = torch_setup.parser(__doc__)
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=128)
    args = p.parse_args()
    if args.setup == "all":
        results, best = torch_setup.run_all(
            args, lambda r1, r2: r1["ms"]["sub_block"] < r2["ms"]["sub_block"])
        print(f"fastest (sub-block): ({best}) {torch_setup.SETUPS[best]}")
        torch_setup.write_json(args.json, {
            "workload": "W4 attention block", "side": "torch", "setups": torch_setup.SETUPS,
            "runs": results, "fastest": best})
        return
    torch = torch_setup.apply(args.setup)
    ms = measure(torch, args.iters, args.batch, args.seq)
    for name, value in ms.items():
        print(f"{name:20s} {value:8.3f} ms")
    result = {"setup": args.setup, "torch": torch.__version__, "ms": ms}
    result["summary"] = " ".join(f"{k} {v:.2f}" for k, v in ms.items()) + " ms (median)"
    torch_setup.emit(result)
    torch_setup.write_json(args.json, result)


if __name__ == "__main__":
    main()
