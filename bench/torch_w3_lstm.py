"""The PyTorch side of bench/w3_lstm.c (W3 of WORKLOADS.md): nn.Embedding(256, 64),
nn.LSTM(64, 256, batch_first=True), nn.Linear(256, 256) at every position, trained on
Debian's fortunes (every file under /usr/share/games/fortunes without a .dat/.u8 suffix,
in sorted order, as bytes) with Adam lr 2e-3, batch 32, random windows of 64 bytes and
their next-byte targets, 200 steps, in each thread set-up of torch_setup.py. Timed
region: the 200 steps (window sampling, forward, cross-entropy over all positions,
backward, Adam); the figure is training tokens (32 x 64 per step) per second.

Run: /usr/bin/python3 bench/torch_w3_lstm.py [--setup a|b|c|d|all] [--repeat N] [--steps N] [--json FILE]
"""
import math
import os
import time

import torch_setup

VOCAB, EMBED, HIDDEN, BATCH, SEQ, LR = 256, 64, 256, 32, 64, 2e-3
FORTUNES = "/usr/share/games/fortunes"


def fortunes():
    paths = []
    for root, dirs, files in os.walk(FORTUNES):
        for name in files:
            path = os.path.join(root, name)
            if name.startswith(".") or name.endswith(".dat") or name.endswith(".u8") or os.path.islink(path):
                continue
            paths.append(path)
    data = b""
    for path in sorted(paths):
        with open(path, "rb") as f:
            data += f.read()
    return data


def measure(torch, steps):
    import torch.nn as nn
    import torch.nn.functional as F

    class LanguageModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(VOCAB, EMBED)
            self.lstm = nn.LSTM(EMBED, HIDDEN, batch_first=True)
            self.head = nn.Linear(HIDDEN, VOCAB)

        def forward(self, ids):
            y, _ = self.lstm(self.embedding(ids))
            return self.head(y)

    torch.manual_seed(0)
    text = torch.frombuffer(bytearray(fortunes()), dtype=torch.uint8).long()
    model = LanguageModel()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    offsets = torch.arange(SEQ + 1)
    losses = []
    start = time.perf_counter()
    for _ in range(steps):
        starts = torch.randint(0, len(text) - SEQ, (BATCH, 1))
        window = text[starts + offsets]
        ids, targets = window[:, :-1], window[:, 1:]
        loss = F.cross_entropy(model(ids).reshape(-1, VOCAB), targets.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    seconds = time.perf_counter() - start
    return seconds, sum(losses) / len(losses) / math.log(2.0)


def main():
    p = torch_setup.parser(__doc__)
    p.add_argument("--steps", type=int, default=200)
    args = p.parse_args()
    if args.setup == "all":
        results, best = torch_setup.run_all(args, lambda r1, r2: r1["tokens_per_second"] > r2["tokens_per_second"])
        print(f"fastest: ({best}) {torch_setup.SETUPS[best]}")
        torch_setup.write_json(args.json, {
            "workload": "W3", "side": "torch", "setups": torch_setup.SETUPS, "runs": results, "fastest": best})
        return
    torch = torch_setup.apply(args.setup)
    seconds, mean_bits = measure(torch, args.steps)
    tokens = args.steps * BATCH * SEQ
    result = {"setup": args.setup, "torch": torch.__version__, "steps": args.steps, "seconds": seconds,
              "tokens_per_second": tokens / seconds, "mean_loss_bits": mean_bits}
    result["summary"] = (f"{tokens / seconds:.0f} training tokens/s ({args.steps} steps in {seconds:.3f} s), "
                         f"mean loss {mean_bits:.3f} bits/byte")
    print(result["summary"])
    torch_setup.emit(result)
    torch_setup.write_json(args.json, result)


if __name__ == "__main__":
    main()
