"""The W3 (LSTM) section of bench/RESULTS.md, for report.py: ember's and PyTorch's
training tokens per second side by side, ember with the OpenMP runtime's default wait
policy and with PASSIVE (PyTorch's set-up (c)), compared at the faster of the two as
PyTorch is at its fastest set-up."""

TARGET = 1.5


def _speed(r):
    return r["tokens_per_second"]


def _fastest_torch(torch):
    best = None
    for setup, runs in torch["runs"].items():
        pick = max(runs, key=_speed)
        if best is None or _speed(pick) > _speed(best[1]):
            best = (setup, pick)
    return best


def _ember_best(rec):
    """(label, record) of ember's faster wait policy, or None."""
    options = [(label, rec.get(key)) for key, label in (("ember", "default wait policy"),
                                                         ("ember_passive", "OMP_WAIT_POLICY=PASSIVE"))]
    options = [(label, r) for label, r in options if r]
    return max(options, key=lambda o: _speed(o[1])) if options else None


def render_w3(rec, header):
    out = header(rec)
    out += ["", "| side | set-up | training tokens/s (best) | all runs | mean loss over the run (bits/byte) |",
            "|---|---|---|---|---|"]
    for key, label in (("ember", "defaults"), ("ember_passive", "OMP_WAIT_POLICY=PASSIVE")):
        e = rec.get(key)
        if e:
            runs = ", ".join(f"{x:.0f}" for x in e.get("all_tokens_per_second", [_speed(e)]))
            out.append(f"| ember | {e['threads']} threads, {label} | **{_speed(e):.0f}** | {runs} | "
                       f"{e['mean_loss_bits']:.3f} |")
    t = rec.get("torch")
    if t:
        best_setup, best = _fastest_torch(t)
        for setup, runs in sorted(t["runs"].items()):
            top = max(runs, key=_speed)
            mark = " (fastest)" if setup == best_setup else ""
            all_runs = ", ".join(f"{_speed(r):.0f}" for r in runs)
            out.append(f"| PyTorch {runs[0].get('torch', '')} | ({setup}) {t['setups'][setup]}{mark} | "
                       f"{_speed(top):.0f} | {all_runs} | {top['mean_loss_bits']:.3f} |")
        e = _ember_best(rec)
        if e:
            out += ["", f"ember ({e[0]}) / fastest PyTorch ({best_setup}): **{_speed(e[1]) / _speed(best):.2f}x** "
                    f"the training tokens per second ({_speed(e[1]):.0f} vs {_speed(best):.0f}; "
                    f"W3's target is {TARGET}x)."]
    steps = (rec.get("ember") or {}).get("steps", 200)
    out += ["", "Both sides: embedding 256->64, LSTM 64->256, linear 256->256 at every position, Adam lr 2e-3, "
            f"batch 32 random 64-byte windows of Debian's fortunes, {steps} steps timed whole (window sampling, "
            "forward, cross-entropy, backward, update). ember runs the library's language-model loop "
            "(em_train_lm, as `ember train models/lstm.ember --data fortunes` does)."]
    return out


def summary_row(workload, rec):
    """The summary line of W3's record, or None."""
    if workload != "w3" or not rec.get("torch"):
        return None
    e = _ember_best(rec)
    if not e:
        return None
    setup, best = _fastest_torch(rec["torch"])
    ratio = _speed(e[1]) / _speed(best)
    return {"figure": "training tokens/s", "ember": f"{_speed(e[1]):.0f}", "torch": f"({setup}) {_speed(best):.0f}",
            "ratio": ratio, "target": f">= {TARGET}x the speed", "met": ratio >= TARGET}


RENDERERS = {"w3": render_w3}
