"""CPU training throughput on this machine: one process vs 2-process DDP (gloo), same global batch.

Runs ``python -m jobs.train`` as a subprocess for each setting on the same data and
reads ``metrics.json`` (``fit_seconds``, ``epochs_trained``). Docs/s counts training
documents per second of ``trainer.fit`` (which includes the per-epoch validation pass).

Usage:
    python bench/bench_train_cpu.py --data .ntm/data/20newsgroups --epochs 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(data: str, out: Path, devices: int, epochs: int, batch: int, k: int, workers: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), MASTER_ADDR="127.0.0.1")
    cmd = [
        sys.executable, "-m", "jobs.train", "--data", data, "--output", str(out), "--epochs", str(epochs),
        "--num-topics", str(k), "--devices", str(devices),
        "--set", "accelerator=cpu", "--set", f"mini_batch_size={batch}", "--set", f"num_workers={workers}",
        "--set", "checkpoint=false", "--set", f"num_patience_epochs={epochs}", "--set", "progress_bar=false",
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    m = json.loads((out / "metrics.json").read_text())
    return {"fit_s": m["fit_seconds"], "epochs": m["epochs_trained"], "wall_s": wall}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT / ".ntm/data/20newsgroups"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=256, help="global mini_batch_size (per node)")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    import pyarrow.parquet as pq

    n_train = sum(pq.ParquetFile(f).metadata.num_rows for f in sorted(Path(args.data, "train").glob("*.parquet")))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for devices in (1, 2):
            r = run(args.data, Path(tmp) / f"d{devices}", devices, args.epochs, args.batch, args.k, args.workers)
            r.update(devices=devices, docs_per_s=n_train * r["epochs"] / r["fit_s"], epoch_s=r["fit_s"] / r["epochs"])
            rows.append(r)
            print(json.dumps(r), flush=True)
    print("\n| processes | docs/s | epoch s (incl. validation) | fit s | wall s (incl. start-up) |\n|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['devices']} | {r['docs_per_s']:.0f} | {r['epoch_s']:.2f} | {r['fit_s']:.1f} | {r['wall_s']:.1f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
