"""Training on a Spark cluster: Spark's ``TorchDistributor`` starts the DDP ranks on the executors.

``jobs/train.py --launcher spark`` builds the session and calls :func:`run_with_distributor`;
each rank runs :func:`train_on_executor` (picked by reference, so executors import this module).
"""

from __future__ import annotations

from typing import Any


def train_on_executor(cfg_dict: dict) -> Any:
    """Train in one TorchDistributor rank: ``devices=LOCAL_WORLD_SIZE``, ``num_nodes=WORLD_SIZE//LOCAL_WORLD_SIZE``."""
    import logging as _logging

    from lightning_module.train import apply_torchrun_env, train_model
    from ntm_spark.core.config import TrainConfig, from_dict

    _logging.basicConfig(level=_logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = apply_torchrun_env(from_dict(TrainConfig, cfg_dict))
    return train_model(cfg)


def run_with_distributor(spark, cfg) -> Any:
    """Run :func:`train_on_executor` under Spark's ``TorchDistributor`` (local mode on a local master)."""
    import dataclasses

    from pyspark.ml.torch.distributor import TorchDistributor

    from lightning_module.train import local_device_count
    from ntm_spark.spark.session import is_local_master

    master = spark.sparkContext.master
    use_gpu = cfg.accelerator in ("gpu", "cuda") or (cfg.accelerator == "auto" and _cuda_available())
    num_processes = local_device_count(cfg) * cfg.num_nodes
    distributor = TorchDistributor(num_processes=num_processes, local_mode=is_local_master(master), use_gpu=use_gpu)
    cfg_dict = dataclasses.asdict(cfg)
    if not use_gpu:
        cfg_dict["accelerator"] = "cpu"
    return distributor.run(train_on_executor, cfg_dict)


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()
