"""The PyTorch side of bench/w4_gpt.c (W4 of WORKLOADS.md): a byte-level GPT written as
nanoGPT writes it (token and learned position embeddings, 4 pre-LayerNorm blocks of
4-head causal self-attention with a fused qkv nn.Linear, masked_fill and softmax, and a
4x GELU (tanh) MLP; final LayerNorm and an untied nn.Linear head without bias: 875,264
parameters, GPT-2's init), in each thread set-up of torch_setup.py.

Training: AdamW lr 3e-4, weight decay 0.1 over model.parameters(), batch 16 random
windows of 128 bytes of Debian's fortunes (every file under /usr/share/games/fortunes
without a .dat/.u8 suffix, in sorted order) and their next bytes; three untimed warm-up
steps, then --steps (100) timed steps (window sampling, forward, cross-entropy,
backward, AdamW): training tokens per second.

Generation: from the trained model in eval mode under torch.no_grad(), 200 new tokens
after a one-byte prompt ("\\n"), batch 1, temperature 1, torch.multinomial; as most
users' code generates (nanoGPT's generate): the context cropped to the last 128 tokens
and recomputed in full for every new token, no key/value cache. Best and median tokens
per second over --gen-repeat runs.

Run: /usr/bin/python3 bench/torch_w4_gpt.py [--setup a|b|c|d|all] [--repeat N] [--steps N] [--json FILE]
"""
import math
import os
import statistics
import time

import torch_setup

VOCAB, CONTEXT, LAYERS, HEADS, WIDTH = 256, 128, 4, 4, 128
BATCH, SEQ, LR, WD, WARMUP, NEW_TOKENS = 16, 128, 3e-4, 0.1, 3, 200
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


def build(torch):
    import torch.nn as nn
    import torch.nn.functional as F

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn = nn.Linear(WIDTH, 3 * WIDTH)
            self.c_proj = nn.Linear(WIDTH, WIDTH)
            self.register_buffer("mask", torch.tril(torch.ones(CONTEXT, CONTEXT, dtype=torch.bool))
                                 .view(1, 1, CONTEXT, CONTEXT))

        def forward(self, x):
            B, T, C = x.shape
            q, k, v = self.c_attn(x).split(WIDTH, dim=2)
            hd = C // HEADS
            q = q.view(B, T, HEADS, hd).transpose(1, 2)
            k = k.view(B, T, HEADS, hd).transpose(1, 2)
            v = v.view(B, T, HEADS, hd).transpose(1, 2)
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
            att = att.masked_fill(~self.mask[:, :, :T, :T], float("-inf"))
            att = F.softmax(att, dim=-1)
            y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
            return self.c_proj(y)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1 = nn.LayerNorm(WIDTH)
            self.attn = Attention()
            self.ln_2 = nn.LayerNorm(WIDTH)
            self.c_fc = nn.Linear(WIDTH, 4 * WIDTH)
            self.gelu = nn.GELU(approximate="tanh")
            self.mlp_proj = nn.Linear(4 * WIDTH, WIDTH)

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp_proj(self.gelu(self.c_fc(self.ln_2(x))))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(VOCAB, WIDTH)
            self.wpe = nn.Embedding(CONTEXT, WIDTH)
            self.h = nn.ModuleList(Block() for _ in range(LAYERS))
            self.ln_f = nn.LayerNorm(WIDTH)
            self.lm_head = nn.Linear(WIDTH, VOCAB, bias=False)
            self.apply(self._init)
            for name, p in self.named_parameters():
                if name.endswith("c_proj.weight") or name.endswith("mlp_proj.weight"):
                    nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * LAYERS))

        @staticmethod
        def _init(m):
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if isinstance(m, nn.Linear) and m.bias is not None:
                    nn.init.zeros_(m.bias)

        def forward(self, ids):
            T = ids.shape[1]
            x = self.wte(ids) + self.wpe(torch.arange(T))
            for block in self.h:
                x = block(x)
            return self.lm_head(self.ln_f(x))

    return GPT()


def measure(torch, steps, gen_repeat):
    import torch.nn.functional as F
    torch.manual_seed(0)
    text = torch.frombuffer(bytearray(fortunes()), dtype=torch.uint8).long()
    model = build(torch)
    params = sum(p.numel() for p in model.parameters())
    assert params == 875264, params
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WD)
    offsets = torch.arange(SEQ + 1)

    def step():
        starts = torch.randint(0, len(text) - SEQ, (BATCH, 1))
        window = text[starts + offsets]
        ids, targets = window[:, :-1], window[:, 1:]
        loss = F.cross_entropy(model(ids).reshape(-1, VOCAB), targets.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(WARMUP):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        last = step()
    train_seconds = time.perf_counter() - start

    model.eval()
    rates = []
    with torch.no_grad():
        for _ in range(gen_repeat):
            idx = torch.tensor([[ord("\n")]])
            t0 = time.perf_counter()
            for _ in range(NEW_TOKENS):
                logits = model(idx[:, -CONTEXT:])[:, -1, :] / 1.0
                probs = F.softmax(logits, dim=-1)
                idx = torch.cat((idx, torch.multinomial(probs, num_samples=1)), dim=1)
            rates.append(NEW_TOKENS / (time.perf_counter() - t0))
    return {"train_seconds": train_seconds, "train_tokens_per_second": steps * BATCH * SEQ / train_seconds,
            "last_loss": last, "gen_tokens_per_second": max(rates),
            "gen_median_tokens_per_second": statistics.median(rates), "params": params}


def main():
    p = torch_setup.parser(__doc__)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--gen-repeat", type=int, default=3)
    args = p.parse_args()
    if args.setup == "all":
        results, best = torch_setup.run_all(
            args, lambda r1, r2: r1["train_tokens_per_second"] > r2["train_tokens_per_second"])
        best_gen = max(results, key=lambda s: max(r["gen_tokens_per_second"] for r in results[s]))
        print(f"fastest training: ({best}) {torch_setup.SETUPS[best]}; fastest generation: ({best_gen})")
        torch_setup.write_json(args.json, {
            "workload": "W4", "side": "torch", "setups": torch_setup.SETUPS, "runs": results, "fastest": best,
            "fastest_generation": best_gen})
        return
    torch = torch_setup.apply(args.setup)
    r = measure(torch, args.steps, args.gen_repeat)
    r.update({"setup": args.setup, "torch": torch.__version__, "steps": args.steps})
    r["summary"] = (f"training {r['train_tokens_per_second']:.0f} tokens/s ({args.steps} steps in "
                    f"{r['train_seconds']:.3f} s, last loss {r['last_loss']:.4f}); generation "
                    f"{r['gen_tokens_per_second']:.0f} tokens/s best, {r['gen_median_tokens_per_second']:.0f} median")
    print(r["summary"])
    torch_setup.emit(r)
    torch_setup.write_json(args.json, r)


if __name__ == "__main__":
    main()
