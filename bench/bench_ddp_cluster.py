"""DDP on 2 CPU "nodes" (TorchDistributor cluster mode) against 1 process: docs/s per process, all-reduce share.

The 2 nodes are 2 executors of Spark's multi-JVM ``local-cluster[2,1,1024]`` master, one rank
each (gloo over loopback); the baseline is ``train_model`` in one process with one thread. Both
train the same synthetic corpus with the same ``mini_batch_size`` (per instance, so the 2-node run
steps over twice the documents). Every rank times, after the first (warm-up) epoch:

- docs/s: training documents it processed per second of its training epochs;
- the backward pass (``on_before_backward`` to ``on_after_backward``: DDP all-reduces the
  gradient buckets inside it) as a share of the step (``on_train_batch_start`` to ``_end``);
- the all-reduce itself, from a DDP comm hook: launch to completion of each bucket's
  ``all_reduce``, which includes waiting for the slower rank.

Usage:
    python bench/bench_ddp_cluster.py [--docs 8000] [--vocab 2000] [--epochs 3] [--batch 256] [--json out.json]

Each run is a child process of its own (a session's master cannot change). Workers write their
``work/`` folders under a temporary SPARK_HOME of links to pyspark's, not into the venv.
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
MASTER = "local-cluster[2,1,1024]"


def _train_cfg(data: str, out: str, args_: dict, devices: int, num_nodes: int):
    from ntm_spark.core.config import TrainConfig, from_dict

    return from_dict(
        TrainConfig,
        {
            "data_dir": data, "output_dir": out, "preset": "sagemaker", "num_topics": args_["k"], "epochs": args_["epochs"],
            "num_patience_epochs": args_["epochs"], "mini_batch_size": args_["batch"], "num_workers": 0,
            "accelerator": "cpu", "devices": devices, "num_nodes": num_nodes, "checkpoint": False,
            "progress_bar": False, "threads_per_process": 1, "seed": 3,
        },
    )


def timed_train(cfg_dict: dict, ranks_per_instance=None) -> dict:
    """One rank (or the single process): ``train_model`` with a timing callback; writes ``timing/rank{R}.json``."""
    import os
    import time

    import torch
    import torch.distributed as dist

    from lightning_module._compat import pl
    from lightning_module.train import apply_torchrun_env, train_model
    from ntm_spark.core.config import TrainConfig, from_dict

    out = Path(cfg_dict["output_dir"]) / "timing"

    class Timing(pl.Callback):
        def __init__(self):
            self.epoch, self.docs, self.train_s, self.step_s, self.backward_s, self.allreduce_s = 0, 0, 0.0, 0.0, 0.0, 0.0
            self.steps, self.buckets = 0, 0

        def _counting(self, trainer):
            return trainer.current_epoch >= 1  # the first epoch is warm-up

        def on_train_start(self, trainer, pl_module):
            model = trainer.strategy.model
            if isinstance(model, torch.nn.parallel.DistributedDataParallel):
                world = dist.get_world_size()

                def hook(state, bucket):
                    t0 = time.perf_counter()
                    fut = dist.all_reduce(bucket.buffer(), async_op=True).get_future()

                    def done(f):
                        if self._counting(trainer):
                            self.allreduce_s += time.perf_counter() - t0
                            self.buckets += 1
                        return f.value()[0].div_(world)

                    return fut.then(done)

                model.register_comm_hook(None, hook)

        def on_train_epoch_start(self, trainer, pl_module):
            self._e0 = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module):
            if self._counting(trainer):
                self.train_s += time.perf_counter() - self._e0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self._s0 = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if self._counting(trainer):
                self.step_s += time.perf_counter() - self._s0
                self.steps += 1
                self.docs += int(batch["indptr"].shape[0]) - 1

        def on_before_backward(self, trainer, pl_module, loss):
            self._b0 = time.perf_counter()

        def on_after_backward(self, trainer, pl_module):
            if self._counting(trainer):
                self.backward_s += time.perf_counter() - self._b0

        def on_fit_end(self, trainer, pl_module):
            out.mkdir(parents=True, exist_ok=True)
            report = {
                "rank": trainer.global_rank, "world_size": trainer.world_size, "node_rank": trainer.node_rank,
                "docs": self.docs, "steps": self.steps, "train_s": self.train_s, "step_s": self.step_s,
                "backward_s": self.backward_s, "allreduce_s": self.allreduce_s, "buckets": self.buckets,
                "pid": os.getpid(), "cwd": os.getcwd(),
            }
            (out / f"rank{trainer.global_rank}.json").write_text(json.dumps(report))

    cfg = from_dict(TrainConfig, cfg_dict)
    if "WORLD_SIZE" in os.environ:
        cfg = apply_torchrun_env(cfg)
    train_model(cfg, callbacks=[Timing()], ranks_per_instance=ranks_per_instance)
    return {}


def _child(mode: str, data: str, out: str, args_: dict) -> None:
    import dataclasses

    if mode == "single":
        timed_train(dataclasses.asdict(_train_cfg(data, out, args_, 1, 1)))
        return
    from ntm_spark.core.config import SparkConfig
    from ntm_spark.spark.distributed import run_with_distributor
    from ntm_spark.spark.session import build_spark_session, stop_spark_session

    spark = build_spark_session(
        SparkConfig(master=MASTER, kafka_connector="none", class_data_sharing=False, nio_local_filesystem=False,
                    conf={"spark.ui.enabled": "false", "spark.executor.cores": "1"}),
        app_name="bench-ddp-cluster",
    )
    try:
        run_with_distributor(spark, _train_cfg(data, out, args_, 1, 2), train_fn=timed_train)
    finally:
        stop_spark_session(spark)


def _spark_home(tmp: Path) -> Path:
    import pyspark

    home = tmp / "spark_home"
    home.mkdir()
    for entry in Path(pyspark.__file__).parent.iterdir():
        if entry.name != "work":
            (home / entry.name).symlink_to(entry)
    return home


def _summary(timings: list[dict]) -> dict:
    per = []
    for t in timings:
        per.append({
            "rank": t["rank"], "docs_per_s": t["docs"] / t["train_s"] if t["train_s"] else float("nan"),
            "step_ms": 1000 * t["step_s"] / max(1, t["steps"]),
            "backward_share": t["backward_s"] / t["step_s"] if t["step_s"] else float("nan"),
            "allreduce_share": t["allreduce_s"] / t["step_s"] if t["step_s"] else float("nan"),
            "allreduce_ms_per_step": 1000 * t["allreduce_s"] / max(1, t["steps"]),
            "steps": t["steps"], "cwd": t["cwd"],
        })
    return {"ranks": per}


def main(argv=None) -> int:
    """Run both settings and print the comparison."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--docs", type=int, default=8000)
    p.add_argument("--vocab", type=int, default=2000)
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch", type=int, default=256, help="mini_batch_size (per instance)")
    p.add_argument("--json", default=None)
    p.add_argument("--child", nargs=3, metavar=("MODE", "DATA", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    knobs = {"k": args.k, "epochs": args.epochs, "batch": args.batch}
    if args.child:
        _child(*args.child, knobs)
        return 0

    from lightning_module.synthetic import write_synthetic_corpus

    with tempfile.TemporaryDirectory(prefix="bench_ddp_cluster_") as tmp_s:
        tmp = Path(tmp_s)
        data = write_synthetic_corpus(tmp / "corpus", n_docs=(args.docs, 200, 200), vocab_size=args.vocab,
                                      num_topics=args.k, doc_len=80, row_group_size=1000, files_per_split=2, seed=5)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               "SPARK_HOME": str(_spark_home(tmp)), "SPARK_LOCAL_IP": "127.0.0.1", "OMP_NUM_THREADS": "1",
               "MASTER_ADDR": "127.0.0.1"}
        results = {"corpus": {"train_docs": args.docs, "vocab": args.vocab, "k": args.k}, **knobs, "master": MASTER}
        for mode in ("single", "cluster"):
            out = tmp / mode
            t0 = time.perf_counter()
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode, str(data), str(out),
                   "--k", str(args.k), "--epochs", str(args.epochs), "--batch", str(args.batch)]
            proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
            if proc.returncode:
                print(proc.stderr[-4000:], file=sys.stderr)
                return 1
            timings = [json.loads(f.read_text()) for f in sorted((out / "timing").glob("rank*.json"))]
            results[mode] = {**_summary(timings), "wall_s": time.perf_counter() - t0}
        single = results["single"]["ranks"][0]["docs_per_s"]
        per_rank = [r["docs_per_s"] for r in results["cluster"]["ranks"]]
        results["cluster_per_process_vs_single"] = min(per_rank) / single
        results["cluster_total_vs_single"] = sum(per_rank) / single
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
