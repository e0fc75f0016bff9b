"""The W4 (GPT) section of bench/RESULTS.md, for report.py: ember's and PyTorch's training
and generation tokens per second side by side, and their ratios against the targets."""


def fastest(torch, key):
    """(setup, best run) over the set-ups, by the largest `key` of each set-up's runs."""
    best = None
    for setup, runs in torch["runs"].items():
        pick = max(runs, key=key)
        if best is None or key(pick) > key(best[1]):
            best = (setup, pick)
    return best


def render_w4(rec, header):
    out = header(rec)
    e, t = rec.get("ember"), rec.get("torch")
    out += ["", "| side | set-up | training tokens/s (best) | all runs | generation tokens/s (best, median) | "
            "last training loss |", "|---|---|---|---|---|---|"]
    if e:
        runs = ", ".join(f"{v:.0f}" for v in e.get("all_train_tokens_per_second", [e["train_tokens_per_second"]]))
        gen_threads = f" (generation on {e['gen_threads']} thread{'s' if e['gen_threads'] != 1 else ''})" \
            if "gen_threads" in e else ""
        out.append(f"| ember | {e['threads']} threads, defaults; key/value cache{gen_threads} | "
                   f"**{e['train_tokens_per_second']:.0f}** | {runs} | **{e['gen_tokens_per_second']:.0f}**, "
                   f"{e['gen_median_tokens_per_second']:.0f} | {e['last_loss']:.4f} |")
    passive = rec.get("ember_passive")
    if passive:
        runs = ", ".join(f"{v:.0f}" for v in passive.get("all_train_tokens_per_second", []))
        gen_threads = f" (generation on {passive['gen_threads']} thread{'s' if passive['gen_threads'] != 1 else ''})" \
            if "gen_threads" in passive else ""
        out.append(f"| ember | {passive['threads']} threads, OMP_WAIT_POLICY=PASSIVE{gen_threads} | "
                   f"{passive['train_tokens_per_second']:.0f} | {runs} | {passive['gen_tokens_per_second']:.0f}, "
                   f"{passive['gen_median_tokens_per_second']:.0f} | {passive['last_loss']:.4f} |")
        # compared at its faster policy, as PyTorch is at its fastest set-up
        if not e or passive["train_tokens_per_second"] > e["train_tokens_per_second"]:
            e = dict(e or passive, train_tokens_per_second=passive["train_tokens_per_second"])
        if passive["gen_tokens_per_second"] > e["gen_tokens_per_second"]:
            e = dict(e, gen_tokens_per_second=passive["gen_tokens_per_second"])
    if t:
        best_train = fastest(t, lambda r: r["train_tokens_per_second"])
        best_gen = fastest(t, lambda r: r["gen_tokens_per_second"])
        for setup, runs in sorted(t["runs"].items()):
            top = max(runs, key=lambda r: r["train_tokens_per_second"])
            gen = max(runs, key=lambda r: r["gen_tokens_per_second"])
            marks = [m for m, b in (("fastest training", best_train), ("fastest generation", best_gen))
                     if b[0] == setup]
            mark = f" ({', '.join(marks)})" if marks else ""
            all_t = ", ".join(f"{r['train_tokens_per_second']:.0f}" for r in runs)
            out.append(f"| PyTorch {runs[0].get('torch', '')} | ({setup}) {t['setups'][setup]}{mark}; no cache | "
                       f"{top['train_tokens_per_second']:.0f} | {all_t} | {gen['gen_tokens_per_second']:.0f}, "
                       f"{gen['gen_median_tokens_per_second']:.0f} | {top['last_loss']:.4f} |")
        if e:
            tr = e["train_tokens_per_second"] / best_train[1]["train_tokens_per_second"]
            gr = e["gen_tokens_per_second"] / best_gen[1]["gen_tokens_per_second"]
            out += ["", f"ember (its faster wait policy) / fastest PyTorch: training **{tr:.2f}x** (target 1.8x; PyTorch's ({best_train[0]})), "
                    f"generation **{gr:.1f}x** (target 40x; PyTorch's ({best_gen[0]}))."]
    steps = (rec.get("ember") or rec.get("ember_passive") or {}).get("steps", 100)
    out += ["", "Training: AdamW lr 3e-4, weight decay 0.1, batch 16 random windows of 128 bytes of fortunes, "
            f"3 untimed warm-up steps then {steps} timed ones{'' if steps == 100 else ' (W4_STEPS; W4 is 100)'}. Generation: 200 new tokens after a one-byte prompt, "
            "batch 1, temperature 1; ember through its key/value cache (a re-prefill of 64 positions whenever the "
            "128-position context fills: twice in these 200), PyTorch recomputing the cropped context for every token. W4 is untied: 875,264 "
            "parameters on both sides."]
    return out



def _ember_best(rec, key):
    runs = [r for r in (rec.get("ember"), rec.get("ember_passive")) if r]
    return max(runs, key=lambda r: r[key]) if runs else None


def summary_rows(workload, rec):
    """W4's two summary lines (training and generation), or none."""
    t = rec.get("torch")
    if workload != "w4" or not t:
        return []
    rows = []
    for key, figure, target in (("train_tokens_per_second", "training tokens/s", 1.8),
                                ("gen_tokens_per_second", "generation tokens/s (cache vs none)", 40.0)):
        e = _ember_best(rec, key)
        if not e:
            continue
        setup, best = fastest(t, lambda r: r[key])
        ratio = e[key] / best[key]
        rows.append({"figure": figure, "ember": f"{e[key]:.0f}", "torch": f"({setup}) {best[key]:.0f}",
                     "ratio": ratio, "target": f">= {target:g}x the speed", "met": ratio >= target})
    return rows


RENDERERS = {"w4": render_w4}
