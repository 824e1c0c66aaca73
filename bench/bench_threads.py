"""Training threads under load (issue 18): epoch time of the default preset by thread count and OpenMP wait policy.

Each configuration trains in a fresh process (OpenMP reads ``OMP_WAIT_POLICY`` once, when torch
loads), for ``--epochs`` epochs without early stopping, while ``--load`` busy processes keep
cores occupied, as Spark executors, a broker or another test do on a shared machine. The
configurations run in alternating rounds so drift on the machine hits them alike. Prints one
JSON line per run and a summary: median seconds per epoch and the ratio to the first.

Configurations (``--configs``; ``threads:policy``, policy ``spin`` = OpenMP's default):
    before:  2 threads, default wait policy  (the old default on a 2-core box: cores // ranks)
    now:     the new default (``default_threads``: cores available // ranks) with OMP_WAIT_POLICY=PASSIVE
    one:     1 thread, PASSIVE

Usage:
    python bench/bench_threads.py --data .ntm/data/20newsgroups --epochs 5 --rounds 2 --load 1
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHILD = r"""
import json, sys, time
sys.path.insert(0, {root!r})
from lightning_module.train import train_model
from ntm_spark.core.config import TrainConfig, from_dict
cfg = from_dict(TrainConfig, {{"data_dir": {data!r}, "output_dir": {out!r}, "epochs": {epochs}, "min_epochs": {epochs},
    "num_workers": 0, "accelerator": "cpu", "devices": 1, "progress_bar": False, "checkpoint": False,
    "threads_per_process": {threads}}})
import torch
t0 = time.perf_counter()
r = train_model(cfg)
print("RESULT " + json.dumps({{"fit_s": r.metrics["fit_seconds"], "epochs": r.epochs_trained, "torch_threads": torch.get_num_threads()}}))
"""


def _burn(stop) -> None:
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def run_config(name: str, threads, policy: str, data: str, epochs: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")}
    if policy != "spin":
        env["OMP_WAIT_POLICY"] = policy
    with tempfile.TemporaryDirectory() as out:
        code = CHILD.format(root=str(ROOT), data=data, out=out, epochs=epochs, threads="None" if threads is None else int(threads))
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"{name} failed:\n{proc.stderr[-3000:]}")
    res = json.loads(line[7:])
    return {"config": name, "threads_setting": threads, "policy": policy, "wall_s": round(wall, 2),
            "s_per_epoch": round(res["fit_s"] / max(1, res["epochs"]), 3), **res, "loadavg": os.getloadavg()[0]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT / ".ntm/data/20newsgroups"))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--load", type=int, default=1, help="busy processes running beside training")
    parser.add_argument("--configs", nargs="+", default=["before=2:spin", "now=auto:PASSIVE", "one=1:PASSIVE"])
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    configs = []
    for spec in args.configs:
        name, rest = spec.split("=", 1)
        threads, policy = rest.split(":", 1)
        configs.append((name, None if threads == "auto" else int(threads), policy))
    stop = mp.Event()
    burners = [mp.Process(target=_burn, args=(stop,), daemon=True) for _ in range(args.load)]
    for p in burners:
        p.start()
    rows = []
    try:
        for r in range(args.rounds):
            for name, threads, policy in configs if r % 2 == 0 else list(reversed(configs)):
                row = run_config(name, threads, policy, args.data, args.epochs)
                row["round"] = r
                print(json.dumps(row), flush=True)
                rows.append(row)
    finally:
        stop.set()
        for p in burners:
            p.join(timeout=5)
    base = statistics.median(r["s_per_epoch"] for r in rows if r["config"] == configs[0][0])
    summary = {}
    for name, _, _ in configs:
        med = statistics.median(r["s_per_epoch"] for r in rows if r["config"] == name)
        summary[name] = {"median_s_per_epoch": round(med, 3), "ratio_to_" + configs[0][0]: round(med / base, 3),
                         "torch_threads": rows[[r["config"] for r in rows].index(name)]["torch_threads"]}
    print(json.dumps({"summary": summary, "load_processes": args.load, "cores": os.cpu_count()}), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
