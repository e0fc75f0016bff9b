"""PyTorch's four thread set-ups of bench/WORKLOADS.md, shared by the torch_*.py
benchmarks.

On 2 cores PyTorch's OpenMP pool and OpenBLAS's pool can fight over the cores, so each
workload is measured in each set-up and compared at its fastest:
  a  torch.set_num_threads(2), OpenBLAS 2 threads (the default)
  b  torch.set_num_threads(2), OpenBLAS 1 thread
  c  OMP_WAIT_POLICY=PASSIVE with (a)
  d  torch.set_num_threads(1), OpenBLAS 2 threads
OpenBLAS is resized through ctypes on libblas.so.3 (torch does not resize it itself).
OMP_WAIT_POLICY is read when the OpenMP runtime starts, so `apply` re-executes the
script with the environment each set-up needs before torch is imported.
"""
import argparse
import ctypes
import json
import os
import subprocess
import sys

SETUPS = {
    "a": "torch 2 threads, OpenBLAS 2 threads (default)",
    "b": "torch 2 threads, OpenBLAS 1 thread",
    "c": "OMP_WAIT_POLICY=PASSIVE, torch 2 threads, OpenBLAS 2 threads",
    "d": "torch 1 thread, OpenBLAS 2 threads",
}
_THREADS = {"a": (2, 2), "b": (2, 1), "c": (2, 2), "d": (1, 2)}
_MARK = "EMBER_BENCH_TORCH_SETUP"


def parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--setup", default="all", choices=sorted(SETUPS) + ["all"],
                   help="thread set-up (default: all four, each in its own process)")
    p.add_argument("--repeat", type=int, default=1, help="runs per set-up (the best counts)")
    p.add_argument("--json", help="write the results to this file")
    return p


def apply(setup):
    """Puts this process in the set-up (re-executing it first if the environment must
    change) and returns torch."""
    want_passive = setup == "c"
    env = dict(os.environ)
    changed = False
    if want_passive and env.get("OMP_WAIT_POLICY") != "PASSIVE":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
        changed = True
    if not want_passive and "OMP_WAIT_POLICY" in env:
        del env["OMP_WAIT_POLICY"]
        changed = True
    if changed and env.get(_MARK) != setup:
        env[_MARK] = setup
        os.execve(sys.executable, [sys.executable] + sys.argv, env)
    import torch
    torch_threads, blas_threads = _THREADS[setup]
    torch.set_num_threads(torch_threads)
    blas = ctypes.CDLL("libblas.so.3")
    blas.openblas_set_num_threads(ctypes.c_int(blas_threads))
    return torch


def blas_threads():
    blas = ctypes.CDLL("libblas.so.3")
    return blas.openblas_get_num_threads()


def run_all(args, better):
    """Runs this script once per set-up (and --repeat times each) in fresh processes;
    returns {setup: [result, ...]} and the key of the fastest set-up. `better(r1, r2)`
    says whether result r1 beats r2."""
    results = {}
    for setup in sorted(SETUPS):
        results[setup] = []
        for _ in range(args.repeat):
            cmd = [sys.executable, sys.argv[0], "--setup", setup, "--repeat", "1"]
            cmd += extra_args(args)
            out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
            line = [l for l in out.splitlines() if l.startswith("RESULT ")][-1]
            results[setup].append(json.loads(line[len("RESULT "):]))
            print(f"({setup}) {SETUPS[setup]}: {summary_of(results[setup][-1])}", flush=True)
    best = None
    for setup, runs in results.items():
        top = best_run(runs, better)
        if best is None or better(top, best_run(results[best], better)):
            best = setup
    return results, best


def best_run(runs, better):
    top = runs[0]
    for r in runs[1:]:
        if better(r, top):
            top = r
    return top


def extra_args(args):
    """Arguments other than --setup/--repeat/--json to pass on to the child runs."""
    out = []
    for key, value in vars(args).items():
        if key in ("setup", "repeat", "json") or value is None:
            continue
        out += [f"--{key.replace('_', '-')}", str(value)]
    return out


def summary_of(result):
    return result.get("summary", "")


def emit(result):
    """The line run_all reads back from a child run."""
    print("RESULT " + json.dumps(result), flush=True)


def write_json(path, obj):
    if path:
        with open(path, "w") as f:
            json.dump(obj, f, indent=1)
            f.write("\n")
