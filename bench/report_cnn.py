"""The sections and summary lines of RESULTS.md for the workloads built on W2's network:
W2 (training speed), W5 (batch-1 latency), W7 (peak memory of a training process) and
W8 (start-up: load a checkpoint, classify one image). Used by report.py.

Every ratio reads "ember is N times better": PyTorch's figure over ember's for times and
memory, so that a target such as "peak memory <= 1/5 of PyTorch's" is N >= 5.
"""
import math

TARGETS = {"w2": 1.6, "w5": 4.0, "w7": 5.0, "w8": 100.0}
TARGET_TEXT = {"w2": ">= 1.6x the speed", "w5": ">= 4x faster", "w7": "<= 1/5 of PyTorch's peak",
               "w8": "<= 1/100 of PyTorch's time"}


def _lowest_torch(t, key):
    """(setup, run) with the lowest key over every run of every set-up."""
    best = None
    for setup, runs in sorted(t["runs"].items()):
        for r in runs:
            if best is None or key(r) < key(best[1]):
                best = (setup, r)
    return best


def _per_setup(t, key, mark):
    """Each PyTorch set-up in order as (set-up cell, its run with the lowest key, all its
    runs); the set-up holding the overall lowest is marked."""
    best_setup, _ = _lowest_torch(t, key)
    for setup, runs in sorted(t["runs"].items()):
        cell = f"({setup}) {t['setups'][setup]}" + (f" ({mark})" if setup == best_setup else "")
        yield cell, min(runs, key=key), runs


def _summary(rec, field, figure, ember_text, torch_text):
    """A summary line comparing ember's field with the lowest of PyTorch's runs (the ratio
    PyTorch's over ember's); ember_text and torch_text write a record's figure. None
    without both sides."""
    e, t = rec.get("ember"), rec.get("torch")
    if not e or not t:
        return None
    setup, best = _lowest_torch(t, lambda r: r[field])
    return {"figure": figure, "ember": ember_text(e), "torch": f"({setup}) {torch_text(best)}",
            "ratio": best[field] / e[field]}


def _threads(n):
    return f"{n} thread{'s' if n > 1 else ''}"


def _setups_line(t):
    return "PyTorch set-ups: " + "; ".join(f"({k}) {v}" for k, v in sorted(t["setups"].items())) + "."


def _fmt_acc(v):
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


# ---- W2 ---------------------------------------------------------------------------

def _w2_ember_runs(rec):
    """[(label, result)] for the default wait policy and PASSIVE, when present."""
    out = []
    for key in ("ember", "ember_passive"):
        e = rec.get(key)
        if e:
            policy = e.get("omp_wait_policy", "default")
            out.append((f"{e['threads']} threads, OMP_WAIT_POLICY " +
                        ("unset (libgomp's default)" if policy == "default" else policy), e))
    return out


def _w2_quick_note(rec):
    e = rec.get("ember") or {}
    t = rec.get("torch") or {}
    steps = e.get("steps") or t.get("steps") or 0
    return f" (quick run: {steps} steps, not the whole epoch)" if steps else ""


def render_w2(rec, header):
    out = header(rec)
    t = rec.get("torch")
    ember = _w2_ember_runs(rec)
    out += ["", "| side | set-up | s/epoch (best) | all runs | test accuracy |", "|---|---|---|---|---|"]
    for label, e in ember:
        runs = ", ".join(f"{s:.2f}" for s in e.get("all_seconds", [e["seconds"]]))
        out.append(f"| ember | {label} | **{e['seconds']:.2f}** | {runs} | {_fmt_acc(e['test_accuracy'])} |")
    if t:
        best_setup, best = _lowest_torch(t, lambda r: r["seconds"])
        for cell, top, runs in _per_setup(t, lambda r: r["seconds"], "fastest"):
            all_s = ", ".join(f"{r['seconds']:.2f}" for r in runs)
            out.append(f"| PyTorch {runs[0].get('torch', '')} | {cell} | "
                       f"{top['seconds']:.2f} | {all_s} | {_fmt_acc(top['test_accuracy'])} |")
        out.append("")
        for label, e in ember:
            out.append(f"ember ({label}) / fastest PyTorch ({best_setup}): **{best['seconds'] / e['seconds']:.2f}x** "
                       f"the speed ({e['seconds']:.2f} s vs {best['seconds']:.2f} s per epoch).  ")
        out += ["", _setups_line(t)]
    out += ["", "Both sides: Adam lr 1e-3, batch 64, one epoch of the 60k training images in file order "
            "(the last partial batch included), default init, seed 0; each batch converted from uint8 inside "
            "the timed loop; test accuracy over the 10k test images afterwards (batches of 500, untimed)"
            + _w2_quick_note(rec) + ". Programs: `bench/w2_cnn.c`, `bench/torch_w2_cnn.py`."]
    return out


def summary_w2(rec):
    t = rec.get("torch")
    ember = _w2_ember_runs(rec)
    if not ember or not t:
        return None
    label, e = min(ember, key=lambda x: x[1]["seconds"])
    setup, best = _lowest_torch(t, lambda r: r["seconds"])
    return {"figure": "s/epoch" + _w2_quick_note(rec), "ember": f"{e['seconds']:.2f} ({label})",
            "torch": f"({setup}) {best['seconds']:.2f}", "ratio": best["seconds"] / e["seconds"]}


# ---- W5 ---------------------------------------------------------------------------

def render_w5(rec, header):
    out = header(rec)
    e, t = rec.get("ember"), rec.get("torch")
    out += ["", "| side | set-up | median µs per image | fastest call | 90th percentile | medians of the repeats |",
            "|---|---|---|---|---|---|"]
    if e:
        for r in e["by_threads"]:
            fastest = r["threads"] == e["threads"]
            median = f"**{r['median_us']:.1f}**" if fastest else f"{r['median_us']:.1f}"
            reps = ", ".join(f"{x:.1f}" for x in r["all_median_us"])
            out.append(f"| ember | {_threads(r['threads'])}{' (fastest)' if fastest else ''} | "
                       f"{median} | {r['best_us']:.1f} | {r['p90_us']:.1f} | {reps} |")
    if t:
        best_setup, best = _lowest_torch(t, lambda r: r["median_us"])
        for cell, top, runs in _per_setup(t, lambda r: r["median_us"], "fastest"):
            reps = ", ".join(f"{r['median_us']:.1f}" for r in runs)
            out.append(f"| PyTorch {runs[0].get('torch', '')} | {cell} | "
                       f"{top['median_us']:.1f} | {top['best_us']:.1f} | {top['p90_us']:.1f} | {reps} |")
        if e:
            out += ["", f"ember ({_threads(e['threads'])}) / fastest PyTorch "
                    f"({best_setup}): **{best['median_us'] / e['median_us']:.2f}x** faster "
                    f"({e['median_us']:.1f} µs vs {best['median_us']:.1f} µs)."]
        out += ["", _setups_line(t)]
    calls = (e or t or {}).get("calls", 1000)
    out += ["", f"Both sides: W2's network, default init (seed 0), evaluation mode without gradients, the first "
            f"test image as a [1, 1, 28, 28] batch; {calls} calls timed one by one after warm-up, median. "
            "Programs: `bench/w5_latency.c`, `bench/torch_w5_latency.py`."]
    return out


def summary_w5(rec):
    return _summary(rec, "median_us", "median µs per image, batch 1",
                    lambda e: f"{e['median_us']:.1f} ({_threads(e['threads'])})", lambda r: f"{r['median_us']:.1f}")


# ---- W7 ---------------------------------------------------------------------------

def _w7_scope(rec):
    e = rec.get("ember") or {}
    steps = e.get("steps") or 0
    if steps:
        return f"{steps} training steps, no test pass (quick run, not the whole epoch)"
    return "one epoch and the test pass in batches of 500"


def render_w7(rec, header):
    out = header(rec)
    e, t = rec.get("ember"), rec.get("torch")
    out += ["", "| side | set-up | peak RSS (MiB) | wall time (s) | command |", "|---|---|---|---|---|"]
    if e:
        out.append(f"| ember | defaults | **{e['peak_mib']:.1f}** | {e['wall_seconds']:.1f} | `{e['command']}` |")
    if t:
        best_setup, best = _lowest_torch(t, lambda r: r["peak_kib"])
        for cell, r, _ in _per_setup(t, lambda x: x["peak_kib"], "lowest"):
            out.append(f"| PyTorch | {cell} | {r['peak_mib']:.1f} | "
                       f"{r['wall_seconds']:.1f} | `{r['command']}` |")
        if e:
            out += ["", f"PyTorch ({best_setup}) / ember: **{best['peak_kib'] / e['peak_kib']:.2f}x** the memory "
                    f"(ember {e['peak_mib']:.1f} MiB = {e['peak_kib'] / best['peak_kib']:.3f} of "
                    f"{best['peak_mib']:.1f} MiB)."]
    out += ["", f"Peak resident set size of the whole process (`/usr/bin/time -v`, \"Maximum resident set size\"); "
            f"both processes load Fashion-MNIST and train W2 (Adam lr 1e-3, batch 64, file order): {_w7_scope(rec)}. "
            "Both hold the 70k images as bytes (55 MB of each figure). Driver: `bench/w7_memory.py`."]
    return out


def summary_w7(rec):
    quick = " (quick run)" if (rec.get("ember") or {}).get("steps") else ""
    return _summary(rec, "peak_kib", "peak RSS, MiB" + quick, lambda e: f"{e['peak_mib']:.1f}",
                    lambda r: f"{r['peak_mib']:.1f}")


# ---- W8 ---------------------------------------------------------------------------

def render_w8(rec, header):
    out = header(rec)
    e, t = rec.get("ember"), rec.get("torch")
    out += ["", "| side | median (ms) | mean ± sd (ms) | min (ms) | user + sys (ms) | runs | command | prints |",
            "|---|---|---|---|---|---|---|---|"]

    def row(side, r):
        return (f"| {side} | **{1e3 * r['median_s']:.1f}** | {1e3 * r['mean_s']:.1f} ± {1e3 * r['stddev_s']:.1f} | "
                f"{1e3 * r['min_s']:.1f} | {1e3 * (r['user_s'] + r['system_s']):.1f} | {r['runs']} "
                f"(+{r['warmup']} warm-up) | `{r['command']}` | `{r.get('output', '')}` |")
    if e:
        out.append(row("ember", e))
    if t:
        setup, best = _lowest_torch(t, lambda r: r["median_s"])
        out.append(row(f"PyTorch ({setup}) {t['setups'][setup]}", best))
        if e:
            out += ["", f"ember / PyTorch: **{best['median_s'] / e['median_s']:.0f}x** faster "
                    f"({e['median_s'] / best['median_s']:.4f} of PyTorch's time)."]
    out += ["", "Whole processes timed by hyperfine (no shell). Prepared untimed: `cnn.safetensors` from "
            f"`ember train` ({(e or {}).get('checkpoint_steps', 300)} steps), the PyTorch state_dict `cnn.pt` "
            "converted from it, and the first Fashion-MNIST test image as `image.png`. Driver: `bench/w8_start.py`."]
    return out


def summary_w8(rec):
    return _summary(rec, "median_s", "whole process, median ms", lambda e: f"{1e3 * e['median_s']:.1f}",
                    lambda r: f"{1e3 * r['median_s']:.0f}")


RENDERERS = {"w2": render_w2, "w5": render_w5, "w7": render_w7, "w8": render_w8}
SUMMARIES = {"w2": summary_w2, "w5": summary_w5, "w7": summary_w7, "w8": summary_w8}


def summary_row(workload, rec):
    """The summary line of a record, with its target, or None."""
    fn = SUMMARIES.get(workload)
    row = fn(rec) if fn else None
    if row:
        row["target"] = TARGET_TEXT[workload]
        row["met"] = row["ratio"] >= TARGETS[workload]
    return row
