"""W8 of bench/WORKLOADS.md: whole-process wall time to load W2 from a checkpoint and
classify one image, measured with hyperfine (warm-up runs, then timed runs, no shell):
  ember:   ember predict --weights cnn.safetensors image.png
  PyTorch: python3 bench/torch_w8_start.py cnn.pt image.png
           (imports torch, builds the network, loads the state_dict, classifies)
Prepared beforehand, untimed: cnn.safetensors from a short `ember train` run (300 steps),
cnn.pt converted from it by the PyTorch script (torch.save of the state_dict), and
image.png, the first Fashion-MNIST test image. Both sides print the same class.
PyTorch runs in its default thread set-up (a), as a user's script does.

Run: /usr/bin/python3 bench/w8_start.py [--build DIR] [--runs N] [--torch-runs N] [--outdir DIR]
Writes OUTDIR/w8_ember.json and OUTDIR/w8_torch.json (the harness's form).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import torch_setup  # noqa: E402  (standard library only)

TRAIN_STEPS = 300


def run(argv, cwd):
    done = subprocess.run(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0:
        sys.exit(f"w8_start: `{' '.join(argv)}` failed (status {done.returncode}):\n{done.stdout[-2000:]}")
    return done.stdout.strip()


def hyperfine(argv, cwd, warmup, runs, name):
    """hyperfine's figures for argv (seconds), run without a shell in cwd."""
    export = os.path.join(cwd, f"hyperfine-{name}.json")
    run(["hyperfine", "--shell=none", "--style", "basic", "--warmup", str(warmup), "--runs", str(runs),
         "--export-json", export, " ".join(argv)], cwd)
    with open(export) as f:
        r = json.load(f)["results"][0]
    return {"median_s": r["median"], "mean_s": r["mean"], "stddev_s": r["stddev"], "min_s": r["min"],
            "max_s": r["max"], "user_s": r["user"], "system_s": r["system"], "runs": len(r["times"]),
            "warmup": warmup}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build", default=os.path.join(ROOT, "build"), help="build directory holding ember")
    p.add_argument("--runs", type=int, default=50, help="timed runs of ember (default 50)")
    p.add_argument("--torch-runs", type=int, default=10, help="timed runs of PyTorch (default 10)")
    p.add_argument("--outdir", default=".", help="where the JSON files go")
    args = p.parse_args()
    if not shutil.which("hyperfine"):
        sys.exit("w8_start: hyperfine is missing: apt-get install hyperfine (scripts/deps.sh bench)")
    work = os.path.join(os.path.abspath(args.outdir), "w8")
    os.makedirs(work, exist_ok=True)
    ember_bin = os.path.join(os.path.abspath(args.build), "ember")
    torch_script = os.path.join(HERE, "torch_w8_start.py")

    run([ember_bin, "train", os.path.join(ROOT, "models", "cnn.ember"), "--data", "fashion-mnist",
         "--optimizer", "adam", "--lr", "1e-3", "--batch", "64", "--no-shuffle", "--max-steps", str(TRAIN_STEPS),
         "--save", "cnn.safetensors", "--no-log", "--progress", "quiet"], work)
    run([sys.executable, torch_script, "--export", "cnn.safetensors", "cnn.pt", "image.png"], work)

    ember = [ember_bin, "predict", "--weights", "cnn.safetensors", "image.png"]
    torch = [sys.executable, torch_script, "cnn.pt", "image.png"]
    shown_ember = "ember predict --weights cnn.safetensors image.png"
    shown_torch = f"{sys.executable} bench/torch_w8_start.py cnn.pt image.png"
    ember_says, torch_says = run(ember, work), run(torch, work)
    print(f"ember:   {ember_says}\nPyTorch: {torch_says}", flush=True)

    e = hyperfine(ember, work, 5, args.runs, "ember")
    e.update({"workload": "W8", "side": "ember", "command": shown_ember, "output": ember_says,
              "checkpoint_steps": TRAIN_STEPS})
    print(f"ember: median {1e3 * e['median_s']:.1f} ms (min {1e3 * e['min_s']:.1f}, {e['runs']} runs)", flush=True)
    t = hyperfine(torch, work, 2, args.torch_runs, "torch")
    t.update({"setup": "a", "command": shown_torch, "output": torch_says})
    print(f"PyTorch: median {1e3 * t['median_s']:.1f} ms (min {1e3 * t['min_s']:.1f}, {t['runs']} runs)", flush=True)
    with open(os.path.join(args.outdir, "w8_ember.json"), "w") as f:
        json.dump(e, f, indent=1)
    with open(os.path.join(args.outdir, "w8_torch.json"), "w") as f:
        json.dump({"workload": "W8", "side": "torch", "setups": {"a": torch_setup.SETUPS["a"]},
                   "runs": {"a": [t]}, "fastest": "a"}, f, indent=1)
    print(f"ember / PyTorch = {e['median_s'] / t['median_s']:.4f}")


if __name__ == "__main__":
    main()
