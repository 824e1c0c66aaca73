"""Run by test_train_cluster.py: train through TorchDistributor in cluster mode on a multi-JVM master.

Usage: python tests/integration/cluster_train_script.py MASTER DATA_DIR OUT_DIR DEVICES NUM_NODES [EXECUTOR_CORES]

Trains with tests/lightning_module/ddp_script.py's settings (so the weights compare with its
1-process run) and has every rank write, under OUT_DIR, its final weights
(``weights/rank{R}.pt``) and what it saw (``ranks/rank{R}.json``: the torchrun environment,
Lightning's ranks, the loader's batch size, its working folder, which is its executor's).
Rank 0's result goes to ``result.json``. Its own process: a session's master cannot change.
"""

import json
import sys
from pathlib import Path

from ntm_spark.core.config import SparkConfig, TrainConfig, from_dict
from ntm_spark.spark.distributed import run_with_distributor
from ntm_spark.spark.session import build_spark_session, stop_spark_session


def record_ranks(cfg_dict, ranks_per_instance):
    """What each rank runs (pickled by value from ``__main__``): train_on_executor plus a recording callback."""
    import os

    import torch

    from lightning_module._compat import pl
    from lightning_module.train import apply_torchrun_env, train_model

    out = Path(cfg_dict["output_dir"])

    class Record(pl.Callback):
        def on_fit_end(self, trainer, pl_module):
            rank = trainer.global_rank
            for sub in ("weights", "ranks"):
                (out / sub).mkdir(parents=True, exist_ok=True)
            torch.save(pl_module.model.state_dict(), out / "weights" / f"rank{rank}.pt")
            env = {k: os.environ.get(k) for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "NODE_RANK")}
            seen = {
                "env": env, "global_rank": rank, "node_rank": trainer.node_rank, "world_size": trainer.world_size,
                "num_nodes": trainer.num_nodes, "batch_size": trainer.datamodule.batch_size, "cwd": os.getcwd(),
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            }
            (out / "ranks" / f"rank{rank}.json").write_text(json.dumps(seen))

    cfg = apply_torchrun_env(from_dict(TrainConfig, cfg_dict))
    return train_model(cfg, callbacks=[Record()], ranks_per_instance=ranks_per_instance)


def main(argv):
    master, data, out, devices, num_nodes = argv[:5]
    executor_cores = argv[5] if len(argv) > 5 else "1"
    spark = build_spark_session(
        SparkConfig(
            master=master,
            kafka_connector="none",
            class_data_sharing=False,
            nio_local_filesystem=False,
            conf={"spark.ui.enabled": "false", "spark.executor.cores": executor_cores, "spark.task.cpus": "1"},
        ),
        app_name="ntm-train-cluster-test",
    )
    cfg = from_dict(
        TrainConfig,
        {
            "data_dir": data, "output_dir": out, "preset": "sagemaker", "optimizer": "sgd", "learning_rate": 0.05,
            "num_topics": 4, "epochs": 3, "mini_batch_size": 404, "num_workers": 0, "accelerator": "auto",
            "devices": int(devices), "num_nodes": int(num_nodes), "sample_latent": False, "checkpoint": False,
            "progress_bar": False, "threads_per_process": 1, "seed": 11,
            "batch_norm": False,  # as ddp_script.py: CPU ranks have no SyncBatchNorm
        },
    )
    try:
        result = run_with_distributor(spark, cfg, train_fn=record_ranks)
    finally:
        stop_spark_session(spark)
    (Path(out) / "result.json").write_text(json.dumps({"model_dir": result.model_dir, "epochs": result.epochs_trained}))


if __name__ == "__main__":
    main(sys.argv[1:])
