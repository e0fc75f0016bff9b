"""W7 of bench/WORKLOADS.md: peak resident memory of a whole process that trains W2, as
/usr/bin/time -v reports it ("Maximum resident set size"), for ember's command-line tool
and for PyTorch (bench/torch_w2_cnn.py, one process per thread set-up).

Both processes load Fashion-MNIST, train one epoch (Adam lr 1e-3, batch 64, file order)
and then evaluate the test set in batches of 500, which is what `ember train` does.
With --steps N both stop after N steps instead and skip the test pass (what
`ember train --max-steps N` does): quicker, for checks on a busy machine.

Run: /usr/bin/python3 bench/w7_memory.py [--build DIR] [--steps N] [--setups abcd] [--outdir DIR]
Writes OUTDIR/w7_ember.json and OUTDIR/w7_torch.json (the harness's form).
"""
import argparse
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import torch_setup  # noqa: E402  (standard library only until a set-up is applied)

TIME = "/usr/bin/time"


def shown(argv):
    """The command as a user would type it from the repository's root."""
    out = []
    for a in argv:
        if os.path.isabs(a) and a.startswith(ROOT + os.sep):
            a = os.path.relpath(a, ROOT)
        out.append(a)
    return " ".join(out)


def measure(argv, cwd):
    """Runs argv under /usr/bin/time -v in cwd; its peak RSS and wall time."""
    report = os.path.join(cwd, "time-v.txt")
    done = subprocess.run([TIME, "-v", "-o", report] + argv, cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0:
        sys.exit(f"w7_memory: `{shown(argv)}` failed (status {done.returncode}):\n{done.stdout[-2000:]}")
    with open(report) as f:
        text = f.read()
    kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text).group(1)
    seconds = 0.0
    for part in wall.split(":"):
        seconds = 60 * seconds + float(part)
    return {"peak_kib": kib, "peak_mib": kib / 1024, "wall_seconds": seconds, "command": shown(argv),
            "output_tail": done.stdout.strip().splitlines()[-1:]}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build", default=os.path.join(ROOT, "build"), help="build directory holding ember")
    p.add_argument("--steps", type=int, default=0, help="train this many steps, no test pass (0: one epoch)")
    p.add_argument("--setups", default="abcd", help="PyTorch thread set-ups to measure (default abcd)")
    p.add_argument("--outdir", default=".", help="where the JSON files go")
    args = p.parse_args()
    if not os.access(TIME, os.X_OK):
        sys.exit(f"w7_memory: {TIME} is missing: apt-get install time (scripts/deps.sh bench)")
    work = os.path.join(os.path.abspath(args.outdir), "w7")
    os.makedirs(work, exist_ok=True)

    # ember train writes its interrupt checkpoint (after --max-steps) into the working
    # directory: run it in a scratch one.
    ember = [os.path.join(os.path.abspath(args.build), "ember"), "train", os.path.join(ROOT, "models", "cnn.ember"),
             "--data", "fashion-mnist", "--optimizer", "adam", "--lr", "1e-3", "--batch", "64", "--epochs", "1",
             "--no-shuffle", "--progress", "quiet"]
    if args.steps > 0:
        ember += ["--max-steps", str(args.steps)]
    e = measure(ember, work)
    e.update({"workload": "W7", "side": "ember", "steps": args.steps,
              "test_pass": args.steps == 0, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default")})
    print(f"ember: peak RSS {e['peak_mib']:.1f} MiB ({e['wall_seconds']:.1f} s): {e['command']}", flush=True)
    with open(os.path.join(args.outdir, "w7_ember.json"), "w") as f:
        json.dump(e, f, indent=1)

    runs = {}
    for setup in args.setups:
        argv = [sys.executable, os.path.join(HERE, "torch_w2_cnn.py"), "--setup", setup]
        if args.steps > 0:
            argv += ["--steps", str(args.steps), "--test-batch", "0"]
        r = measure(argv, work)
        r["setup"] = setup
        runs[setup] = [r]
        print(f"({setup}) {torch_setup.SETUPS[setup]}: peak RSS {r['peak_mib']:.1f} MiB ({r['wall_seconds']:.1f} s)",
              flush=True)
    best = min(runs, key=lambda s: runs[s][0]["peak_kib"])
    with open(os.path.join(args.outdir, "w7_torch.json"), "w") as f:
        json.dump({"workload": "W7", "side": "torch", "steps": args.steps, "test_pass": args.steps == 0,
                   "setups": {s: torch_setup.SETUPS[s] for s in runs}, "runs": runs, "fastest": best}, f, indent=1)
    print(f"lowest: ({best}) {runs[best][0]['peak_mib']:.1f} MiB; ember / PyTorch = "
          f"{e['peak_kib'] / runs[best][0]['peak_kib']:.3f}")


if __name__ == "__main__":
    main()
