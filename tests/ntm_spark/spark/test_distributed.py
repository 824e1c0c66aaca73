"""The TorchDistributor plan: mode, GPU use and SageMaker's per-instance ``mini_batch_size`` (no Spark started)."""

import pytest
import torch

from lightning_module.train import per_device_batch_size
from ntm_spark.core.config import ConfigError, TrainConfig, from_dict
from ntm_spark.spark.distributed import DistributorPlan, plan_distributor
from ntm_spark.spark.session import is_local_master

GPU_CLUSTER = {"spark.executor.resource.gpu.amount": "4", "spark.task.resource.gpu.amount": "1"}


def _cfg(**values):
    return from_dict(TrainConfig, {"mini_batch_size": 256, **values})


def test_is_local_master():
    assert all(is_local_master(m) for m in (None, "local", "local[2]", "local[*]", "local[2,3]"))
    assert not any(is_local_master(m) for m in ("local-cluster[2,1,1024]", "spark://127.0.0.1:7077", "yarn", "k8s://h:443"))


def test_per_device_batch_size_divides_an_instance_batch():
    assert per_device_batch_size(256, 1) == 256
    assert per_device_batch_size(256, 4) == 64
    with pytest.warns(UserWarning, match="not divisible by the 3 devices per instance"):
        assert per_device_batch_size(256, 3) == 85
    with pytest.raises(ValueError, match="local_devices=0"):
        per_device_batch_size(256, 0)


def test_cpu_cluster_one_rank_per_executor():
    plan = plan_distributor(_cfg(devices=1, num_nodes=2), "local-cluster[2,1,1024]", {"spark.executor.cores": "1"})
    assert plan == DistributorPlan(local_mode=False, use_gpu=False, num_processes=2, num_instances=2, ranks_per_instance=1)
    # Per instance (executor): not divided across nodes; the global batch is one per instance.
    assert plan.per_rank_batch_size(256) == 256 and plan.global_batch_size(256) == 512


def test_gpu_cluster_divides_over_the_executor_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a CPU-only driver
    plan = plan_distributor(_cfg(devices="auto", num_nodes=2), "spark://10.0.0.1:7077", GPU_CLUSTER)
    assert plan == DistributorPlan(local_mode=False, use_gpu=True, num_processes=8, num_instances=2, ranks_per_instance=4)
    # SageMaker: 256 per instance over its 4 GPUs; 2 instances -> 512 per step.
    assert plan.per_rank_batch_size(256) == 64 and plan.global_batch_size(256) == 512


def test_use_gpu_ignores_the_driver_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU driver, CPU executors
    plan = plan_distributor(_cfg(devices="auto", num_nodes=2), "spark://10.0.0.1:7077", {})
    assert not plan.use_gpu and plan.num_processes == 2 and plan.ranks_per_instance == 1
    assert not plan_distributor(_cfg(devices=2), "local[2]", {}).use_gpu
    assert not plan_distributor(_cfg(accelerator="cpu"), "spark://h:7077", GPU_CLUSTER).use_gpu


def test_local_mode_is_one_instance():
    plan = plan_distributor(_cfg(devices=2), "local[2]", {})
    assert plan == DistributorPlan(local_mode=True, use_gpu=False, num_processes=2, num_instances=1, ranks_per_instance=2)
    assert plan.per_rank_batch_size(256) == 128
    gpu = plan_distributor(_cfg(devices="auto"), "local[*]", {"spark.driver.resource.gpu.amount": "2"})
    assert gpu.use_gpu and gpu.num_processes == 2


def test_gpu_accelerator_needs_gpus_in_the_spark_conf():
    with pytest.raises(ConfigError, match="spark.task.resource.gpu.amount"):
        plan_distributor(_cfg(accelerator="gpu", devices=1, num_nodes=2), "spark://h:7077", {})
    with pytest.raises(ConfigError, match="spark.driver.resource.gpu.amount"):
        plan_distributor(_cfg(accelerator="gpu", devices=1), "local[2]", {})


def test_executor_size_mismatch_is_logged(caplog):
    with caplog.at_level("WARNING", logger="ntm_spark.spark.distributed"):
        plan_distributor(_cfg(devices=1, num_nodes=2), "spark://h:7077", {"spark.executor.cores": "4"})
    assert "room for 4 ranks" in caplog.text
