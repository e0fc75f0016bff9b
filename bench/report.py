"""Collects and renders the benchmark figures of bench/run.sh.

  report.py collect W OUTDIR --command CMD --started T --load-before L --load-after L
      combines OUTDIR/W_ember.json and OUTDIR/W_torch.json (with the run's command,
      date, load and machine) into bench/results/W.json;
  report.py render RESULTS_DIR RESULTS_MD
      writes RESULTS_MD from every bench/results/*.json.

Standard library only (no torch needed to render).
"""
import argparse
import ctypes
import json
import os
import platform
import sys

import report_cnn
import report_gpt
import report_rnn

HERE = os.path.dirname(os.path.abspath(__file__))
NOMINAL_PEAK = 234.0  # GFLOP/s: 2 cores x 32 flop/cycle x 3.67 GHz (BASELINE.md)


def machine_peak(e):
    """The float32 peak measured by the run's FMA loop (the machine the run was on); the
    nominal figure of the baseline's machine when a record lacks it."""
    return e.get("peak_gflops") or NOMINAL_PEAK

TITLES = {"w1": "W1 mlp", "w2": "W2 cnn", "w3": "W3 lstm", "w4": "W4 gpt", "w5": "W5 latency",
          "w6": "W6 sgemm", "w7": "W7 memory", "w8": "W8 start"}


def machine():
    info = {"cpus": os.cpu_count(), "kernel": platform.release()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        blas = ctypes.CDLL("libblas.so.3")
        blas.openblas_get_config.restype = ctypes.c_char_p
        info["openblas"] = blas.openblas_get_config().decode()
    except (OSError, AttributeError):
        pass
    return info


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def collect(args):
    record = {
        "workload": args.workload,
        "command": args.command,
        "started": args.started,
        "load_before": args.load_before,
        "load_after": args.load_after,
        "machine": machine(),
        "ember": read_json(os.path.join(args.outdir, f"{args.workload}_ember.json")),
        "torch": read_json(os.path.join(args.outdir, f"{args.workload}_torch.json")),
    }
    # W2's ember side runs a second time with OMP_WAIT_POLICY=PASSIVE
    passive = read_json(os.path.join(args.outdir, f"{args.workload}_ember_passive.json"))
    if passive:
        record["ember_passive"] = passive
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    path = os.path.join(HERE, "results", f"{args.workload}.json")
    with open(path, "w") as f:
        json.dump(record, f, indent=1)
        f.write("\n")


# ---- rendering ---------------------------------------------------------------------

def fastest_torch(torch, key, lower_is_better):
    """(setup, best run) over the set-ups, by `key` of each set-up's best run."""
    best = None
    for setup, runs in torch["runs"].items():
        pick = (min if lower_is_better else max)(runs, key=key)
        if best is None or (key(pick) < key(best[1])) == lower_is_better:
            best = (setup, pick)
    return best


def header(rec):
    m = rec.get("machine", {})
    lines = [
        f"Command: `{rec['command']}` (started {rec['started']}; load average "
        f"{rec['load_before']} before, {rec['load_after']} after).",
        f"Machine: {m.get('cpu', '?')}, {m.get('cpus', '?')} CPUs, Linux {m.get('kernel', '?')}; "
        f"{m.get('openblas', 'OpenBLAS ?')}.",
    ]
    return lines


def render_w1(rec):
    out = header(rec)
    e, t = rec.get("ember"), rec.get("torch")
    out += ["", "| side | set-up | s/epoch (best) | all runs | test accuracy |", "|---|---|---|---|---|"]
    if e:
        runs = ", ".join(f"{s:.2f}" for s in e.get("all_seconds", [e["seconds"]]))
        out.append(f"| ember | {e['threads']} threads, defaults | **{e['seconds']:.2f}** | {runs} | "
                   f"{e['test_accuracy']:.4f} |")
    if t:
        best_setup, best = fastest_torch(t, lambda r: r["seconds"], True)
        for setup, runs in sorted(t["runs"].items()):
            top = min(runs, key=lambda r: r["seconds"])
            mark = " (fastest)" if setup == best_setup else ""
            all_s = ", ".join(f"{r['seconds']:.2f}" for r in runs)
            out.append(f"| PyTorch {runs[0].get('torch', '')} | ({setup}) {t['setups'][setup]}{mark} | "
                       f"{top['seconds']:.2f} | {all_s} | {top['test_accuracy']:.4f} |")
        if e:
            out += ["", f"ember / fastest PyTorch ({best_setup}): **{best['seconds'] / e['seconds']:.2f}x** "
                    f"the speed ({e['seconds']:.2f} s vs {best['seconds']:.2f} s per epoch)."]
    return out


def render_w6(rec):
    out = header(rec)
    e, t = rec.get("ember"), rec.get("torch")
    if e:
        out += ["", f"Float32 peak measured here with an FMA loop (12 independent 512-bit FMA chains "
                f"per thread): **{e['peak_gflops']:.0f} GFLOP/s** on {e['threads']} threads "
                f"({e['peak_gflops_1thread']:.0f} on one); a chain of dependent FMAs gives a clock of "
                f"{e['clock_ghz']:.2f} GHz, so the loop reaches "
                f"{e['peak_gflops'] / (e['clock_ghz'] * e['threads']):.0f} flop/cycle/core (two 512-bit FMA "
                f"units give 64, two 256-bit ones 32). Fractions below are of the measured "
                f"{machine_peak(e):.0f} GFLOP/s (the baseline's machine had a nominal {NOMINAL_PEAK:.0f})."]
        env = {k: v for k, v in e.get("env", {}).items() if v}
        out.append("")
        out.append(f"ember: em_matmul with gradients off, {e['threads']} threads"
                   + (f", environment {env}" if env else ", no OMP_* variables set") +
                   "; OpenBLAS = cblas_sgemm called directly from the same process. "
                   "GFLOP/s are medians over about 1 s of calls (best in brackets).")
    setups = sorted(t["runs"]) if t else []
    best_setup = None
    if t:
        def score(r):
            big = [s["median"] for s in r["sizes"] if s["n"] >= 512]
            return sum(big) / len(big)
        best_setup, _ = fastest_torch(t, score, False)
    cols = ["n", "ember", f"of {machine_peak(e):.0f}" if e else "of peak", "OpenBLAS direct"] + [f"torch ({s})" for s in setups]
    if t:
        cols.append(f"ember / torch ({best_setup})")
    out += ["", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    rows = {}
    if e:
        for s in e["sizes"]:
            rows.setdefault(s["n"], {})["ember"] = s
    if t:
        for setup in setups:
            run = max(t["runs"][setup], key=lambda r: sum(x["median"] for x in r["sizes"]))
            for s in run["sizes"]:
                rows.setdefault(s["n"], {})[setup] = s
    for n in sorted(rows):
        r = rows[n]
        cells = [str(n)]
        if "ember" in r:
            em = r["ember"]
            cells += [f"**{em['ember_median']:.1f}** ({em['ember_best']:.1f})",
                      f"{100 * em['ember_median'] / machine_peak(e):.0f}%",
                      f"{em['blas_median']:.1f} ({em['blas_best']:.1f})"]
        else:
            cells += ["", "", ""]
        for setup in setups:
            s = r.get(setup)
            cells.append(f"{s['median']:.1f} ({s['best']:.1f})" if s else "")
        if t:
            s = r.get(best_setup)
            cells.append(f"{r['ember']['ember_median'] / s['median']:.2f}" if s and "ember" in r else "")
        out.append("| " + " | ".join(cells) + " |")
    if t:
        out += ["", "PyTorch set-ups: " + "; ".join(f"({k}) {v}" for k, v in sorted(t["setups"].items()))
                + f". Fastest over n >= 512: ({best_setup})."]
    return out


def render_generic(rec):
    return header(rec) + ["", "```", json.dumps({"ember": rec.get("ember"), "torch": rec.get("torch")},
                                                indent=1), "```"]


RENDERERS = {"w1": render_w1, "w6": render_w6,
             **{w: (lambda rec, fn=fn: fn(rec, header)) for w, fn in report_cnn.RENDERERS.items()},
             **{w: (lambda rec, fn=fn: fn(rec, header)) for w, fn in report_gpt.RENDERERS.items()},
             **{w: (lambda rec, fn=fn: fn(rec, header)) for w, fn in report_rnn.RENDERERS.items()}}


W1_TARGET = 1.25      # ember's epoch at least 1.25x as fast as PyTorch's fastest set-up
W6_TARGET = 0.85      # at least 85% of the machine's measured peak at every n >= 512


def summary_w1(rec):
    e, t = rec.get("ember"), rec.get("torch")
    if not e or not t:
        return None
    setup, best = fastest_torch(t, lambda r: r["seconds"], True)
    ratio = best["seconds"] / e["seconds"]
    return {"figure": "s/epoch", "ember": f"{e['seconds']:.2f}", "torch": f"({setup}) {best['seconds']:.2f}",
            "ratio": ratio, "target": f">= {W1_TARGET}x the speed", "met": ratio >= W1_TARGET}


def summary_w6(rec):
    e, t = rec.get("ember"), rec.get("torch")
    if not e:
        return None
    big = [s for s in e["sizes"] if s["n"] >= 512]
    if not big:
        return None
    worst = min(s["ember_median"] for s in big)
    peak = machine_peak(e)
    row = {"figure": "GFLOP/s, n >= 512 (lowest median)", "ember": f"{worst:.1f} ({100 * worst / peak:.0f}% of peak)",
           "torch": "", "ratio": float("nan"),
           "target": f">= {100 * W6_TARGET:.0f}% of the measured {peak:.0f} GFLOP/s",
           "met": worst >= W6_TARGET * peak}
    if t:
        def score(r):
            sizes = [x["median"] for x in r["sizes"] if x["n"] >= 512]
            return min(sizes) if sizes else 0.0
        setup, best = fastest_torch(t, score, False)
        row["torch"] = f"({setup}) {score(best):.1f}"
        row["ratio"] = worst / score(best)
    return row


MY_SUMMARIES = {"w1": summary_w1, "w6": summary_w6}


def summary_table(records):
    """One line per workload that has a summary: figure, both sides, ratio, target."""
    rows = []
    for rec in records:
        mine = MY_SUMMARIES.get(rec["workload"])
        row = ((mine(rec) if mine else None) or report_cnn.summary_row(rec["workload"], rec)
               or report_rnn.summary_row(rec["workload"], rec))
        rows += [(rec, row)] if row else [(rec, r) for r in report_gpt.summary_rows(rec["workload"], rec)]
    if not rows:
        return []
    out = ["| workload | figure | ember | PyTorch (fastest set-up) | ember is | target | met | command |",
           "|---|---|---|---|---|---|---|---|"]
    for rec, row in rows:
        out.append(f"| {TITLES.get(rec['workload'], rec['workload'])} | {row['figure']} | {row['ember']} | "
                   f"{row['torch']} | {row['ratio']:.2f}x better | {row['target']} | "
                   f"{'yes' if row['met'] else 'no'} | `{rec['command']}` |")
    return out + [""]


def render(args):
    records = []
    for name in sorted(os.listdir(args.results_dir)):
        if name.endswith(".json"):
            with open(os.path.join(args.results_dir, name)) as f:
                records.append(json.load(f))
    lines = ["# Benchmark results", "",
             "ember and PyTorch side by side on the same machine in one run per workload "
             "(definitions: `WORKLOADS.md` of the project's benchmark notes; PyTorch in each of its "
             "four thread set-ups, compared at its fastest). Regenerate with `bench/run.sh [w1 w6 ...]`; "
             "each section states the command that produced it. The machine is shared and noisy: "
             "compare the two sides of one section, not figures across sections or days.", ""]
    lines += summary_table(records)
    for rec in records:
        w = rec["workload"]
        lines += [f"## {TITLES.get(w, w)}", ""]
        lines += RENDERERS.get(w, render_generic)(rec)
        lines.append("")
        # figures of the same workload made by another script (bench/w2_seeds.sh), kept as written
        extra = os.path.join(args.results_dir, f"{w}_extra.md")
        if os.path.exists(extra):
            with open(extra) as f:
                lines += [f.read().strip(), ""]
    with open(args.output, "w") as f:
        f.write("\n".join(lines))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="mode", required=True)
    c = sub.add_parser("collect")
    c.add_argument("workload")
    c.add_argument("outdir")
    c.add_argument("--command", required=True)
    c.add_argument("--started", default="")
    c.add_argument("--load-before", default="")
    c.add_argument("--load-after", default="")
    r = sub.add_parser("render")
    r.add_argument("results_dir")
    r.add_argument("output")
    args = p.parse_args()
    collect(args) if args.mode == "collect" else render(args)


if __name__ == "__main__":
    sys.exit(main())
