"""Training epoch docs/s by reader: the Arrow loader, Petastorm ``make_batch_reader``, Petastorm's Spark converter.

All three train the same ``NTMSystem`` (same preset, seed, batch and threads) on the same 20 Newsgroups
Parquet in one run, in ``.venv-petastorm`` (the only environment with Petastorm; this script re-runs
itself there when started from another interpreter). Each reader trains ``--epochs`` epochs with
no validation, the first a warm-up; a round takes every reader in turn, and ``--repeats`` rounds
alternate the order (the box is shared: its load drifts). Figures: the median docs/s over rounds,
and the median of each round's ratio to the Arrow loader, plus the ratio of the fastest epochs
(the least-contended, nearest an idle box). The reader alone (one epoch's batches,
no training) is timed too, to show where the time goes. The converter's set-up (Spark start,
materializing the DataFrame) is timed apart, once.

Usage:
    .venv/bin/python bench/bench_petastorm.py --data .ntm/data/20newsgroups --epochs 4 --repeats 3 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PETASTORM_PY = ROOT / ".venv-petastorm" / "bin" / "python"


def _reexec_in_petastorm_env(argv: list[str]) -> int:
    if not PETASTORM_PY.exists():
        print(f"bench_petastorm: {PETASTORM_PY.relative_to(ROOT)} is missing: run `make petastorm-env` first", file=sys.stderr)
        return 2
    print(f"bench_petastorm: petastorm is not importable here; re-running with {PETASTORM_PY.relative_to(ROOT)}", flush=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT), SPARK_LOCAL_IP="127.0.0.1")
    env.pop("PYSPARK_PYTHON", None)
    return subprocess.run([str(PETASTORM_PY), __file__, *argv], cwd=ROOT, env=env).returncode


class EpochTimer:
    """Wall time of every training epoch (a Lightning callback, built lazily so the re-exec needs no torch)."""

    def __new__(cls):
        from lightning_module._compat import pl

        class _Timer(pl.Callback):
            def __init__(self) -> None:
                self.times: list[float] = []

            def on_train_epoch_start(self, trainer, pl_module) -> None:
                self._t0 = time.perf_counter()

            def on_train_epoch_end(self, trainer, pl_module) -> None:
                self.times.append(time.perf_counter() - self._t0)

        return _Timer()


def train_epochs(dm, cfg, epochs: int, vocab_size: int) -> list[float]:
    """Train ``epochs`` epochs on ``dm``'s training loader; return each epoch's seconds."""
    from lightning_module._compat import pl
    from lightning_module.train import build_system, word_vectors

    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    system = build_system(cfg, vocab_size, num_threads=1, vectors=word_vectors(cfg, vocab_size, getattr(dm, "train_files", None)))
    timer = EpochTimer()
    trainer = pl.Trainer(
        max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
        callbacks=[timer], use_distributed_sampler=False,
    )  # fmt: skip
    trainer.fit(system, train_dataloaders=dm.train_dataloader())
    return timer.times


def read_epoch(loader) -> float:
    """Seconds to iterate one epoch of batches without training."""
    t0 = time.perf_counter()
    for _ in loader:
        pass
    return time.perf_counter() - t0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT / ".ntm/data/20newsgroups"))
    parser.add_argument("--epochs", type=int, default=4, help="training epochs per reader (the first is a warm-up)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--preset", default="default")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (set deliberately: the box is shared)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers of the Arrow and make_batch_reader loaders")
    parser.add_argument("--readers", nargs="+", default=["arrow", "petastorm", "converter"])
    parser.add_argument("--repeats", type=int, default=3, help="rounds over the readers, alternating their order")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    try:
        import petastorm  # noqa: F401
    except ImportError:
        return _reexec_in_petastorm_env(argv)
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)  # petastorm 0.13.1's own pyarrow calls (a script: ours to set)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import logging

    import torch

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    from lightning_module.data import BowDataModule
    from ntm_spark.core.config import TrainConfig, from_dict

    cfg = from_dict(TrainConfig, {
        "data_dir": args.data, "output_dir": "/tmp/bench_petastorm", "preset": args.preset, "num_topics": args.k,
        "mini_batch_size": args.batch, "num_workers": args.workers, "accelerator": "cpu", "devices": 1, "seed": 42,
        "threads_per_process": args.threads,
    })  # fmt: skip
    load = os.getloadavg()[0]
    spark = converter = None
    modules: dict = {}
    try:
        for reader in args.readers:
            t_setup = time.perf_counter()
            if reader == "converter":
                from petastorm.spark import SparkDatasetConverter, make_spark_converter
                from pyspark.sql import functions as F

                from ntm_spark.core.config import SparkConfig
                from ntm_spark.core.contract import read_vocabulary
                from ntm_spark.spark.petastorm_train import (
                    ConverterDataModule,
                    cache_dir_url,
                    converter_spark_config,
                    select_bow_columns,
                )
                from ntm_spark.spark.session import build_spark_session

                spark = build_spark_session(converter_spark_config(SparkConfig(master="local[1]", conf={"spark.ui.enabled": "false"})))
                df = select_bow_columns(spark.read.parquet(str(Path(args.data) / "train")))
                spark.conf.set(SparkDatasetConverter.PARENT_CACHE_DIR_URL_CONF, cache_dir_url("/tmp/bench_petastorm_cache"))
                max_nnz = df.select(F.max(F.size("indices"))).first()[0]
                converter = make_spark_converter(df)
                dm = ConverterDataModule(converter, read_vocabulary(args.data).words, args.batch, max_nnz, seed=42,
                                         shuffle_buffer=cfg.shuffle_buffer)  # fmt: skip
                n_docs = dm.num_rows
            else:
                dm = BowDataModule(args.data, batch_size=args.batch, reader=reader, num_workers=args.workers, seed=42)
                n_docs = dm.dataset("train").num_rows
            modules[reader] = (dm, n_docs, time.perf_counter() - t_setup)
        runs: dict = {r: [] for r in args.readers}
        epochs: dict = {r: [] for r in args.readers}  # every timed epoch (warm-ups left out)
        reads: dict = {r: [] for r in args.readers}
        for rep in range(args.repeats):
            # Alternate the order, so drift in the shared box's load does not favour one reader.
            for reader in args.readers if rep % 2 == 0 else list(reversed(args.readers)):
                dm, n_docs, _ = modules[reader]
                reads[reader].append(n_docs / read_epoch(dm.train_dataloader()))
                times = train_epochs(dm, cfg, args.epochs, dm.vocab_size)
                runs[reader].append(statistics.median(n_docs / t for t in (times[1:] or times)))
                epochs[reader].extend(times[1:] or times)
                print(json.dumps({"repeat": rep, "reader": reader, "epoch_s": [round(t, 3) for t in times],
                                  "docs_per_s": round(runs[reader][-1])}), flush=True)  # fmt: skip
    finally:
        if converter is not None:
            converter.delete()
        if spark is not None:
            spark.stop()
    rows: list[dict] = []
    for reader in args.readers:
        row = {
            "reader": reader, "docs": modules[reader][1], "setup_s": round(modules[reader][2], 2),
            "docs_per_s": round(statistics.median(runs[reader])), "docs_per_s_runs": [round(v) for v in runs[reader]],
            "read_only_docs_per_s": round(statistics.median(reads[reader])),
            "best_epoch_s": round(min(epochs[reader]), 3),
        }  # fmt: skip
        if "arrow" in runs:
            row["vs_arrow"] = round(statistics.median(v / a for v, a in zip(runs[reader], runs["arrow"])), 2)
            row["vs_arrow_runs"] = [round(v / a, 2) for v, a in zip(runs[reader], runs["arrow"])]
            row["read_only_vs_arrow"] = round(row["read_only_docs_per_s"] / statistics.median(reads["arrow"]), 2)
            # The least-contended epoch of each: the closest this shared box gets to an idle one.
            row["best_epoch_vs_arrow"] = round(min(epochs["arrow"]) / min(epochs[reader]), 2)
        rows.append(row)
    summary = {"rows": rows, "repeats": args.repeats, "epochs": args.epochs, "threads": args.threads, "workers": args.workers, "batch": args.batch, "preset": args.preset,
               "load_1min_at_start": round(load, 2), "load_1min_at_end": round(os.getloadavg()[0], 2)}  # fmt: skip
    print(json.dumps(summary, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
