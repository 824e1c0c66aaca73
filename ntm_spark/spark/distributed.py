"""Training on a Spark cluster: Spark's ``TorchDistributor`` starts the DDP ranks on the executors.

``jobs/train.py --launcher spark`` builds the session and calls :func:`run_with_distributor`;
each rank runs :func:`train_on_executor` (picked by reference, so executors import this module).

What an *instance* is. SageMaker NTM's ``mini_batch_size`` is per instance (one training
machine) and divided over that instance's GPUs; with several instances the global batch is
``mini_batch_size`` times the instances. Under TorchDistributor an instance is one **executor**:
``num_nodes`` executors, each running ``devices`` ranks (its GPUs, or one CPU rank), so each rank
takes ``mini_batch_size // devices`` documents per step. The executor's share cannot be read from
the ranks: in cluster mode TorchDistributor starts ``torchrun`` once per Spark task, so a rank
sees ``LOCAL_WORLD_SIZE`` = the GPUs of its task (1 on CPU), not of its executor. The driver
therefore works it out here (:func:`plan_distributor`) and hands it to every rank.

Whether the ranks use GPUs follows the cluster's resources in the SparkConf
(``spark.executor.resource.gpu.amount``; ``spark.driver.resource.gpu.amount`` when the ranks
run in the driver's JVM), never the driver's own CUDA: a CPU-only driver may drive a GPU cluster.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Optional

from ntm_spark.core.config import ConfigError

log = logging.getLogger(__name__)

EXECUTOR_GPUS = "spark.executor.resource.gpu.amount"
TASK_GPUS = "spark.task.resource.gpu.amount"
DRIVER_GPUS = "spark.driver.resource.gpu.amount"


@dataclass(frozen=True)
class DistributorPlan:
    """How :func:`run_with_distributor` starts the ranks.

    Attributes:
        local_mode: TorchDistributor's ``local_mode``: the ranks run beside the driver (one-JVM master).
        use_gpu: Whether the ranks train on GPUs (from the cluster's resources).
        num_processes: DDP ranks in all.
        num_instances: Instances (executors; 1 in local mode), each with ``ranks_per_instance`` ranks.
        ranks_per_instance: Ranks that share one instance's ``mini_batch_size``.
    """

    local_mode: bool
    use_gpu: bool
    num_processes: int
    num_instances: int
    ranks_per_instance: int

    def per_rank_batch_size(self, mini_batch_size: int) -> int:
        """Documents each rank takes per step: the instance's ``mini_batch_size`` over its ranks."""
        from lightning_module.train import per_device_batch_size

        return per_device_batch_size(mini_batch_size, self.ranks_per_instance)

    def global_batch_size(self, mini_batch_size: int) -> int:
        """Documents per optimizer step over all ranks (``mini_batch_size`` times the instances, when it divides)."""
        return self.per_rank_batch_size(mini_batch_size) * self.num_processes


def _gpu_amount(conf: Mapping[str, str], key: str) -> float:
    value = conf.get(key, "0")
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"invalid Spark setting {key}={value!r}: use a number of GPUs, e.g. {key}=1.") from None


def _explicit_devices(devices: Any) -> Optional[int]:
    """``devices`` as a positive integer, or None for ``auto``/``-1`` (decided by the resources)."""
    if isinstance(devices, int) or str(devices).lstrip("-").isdigit():
        n = int(devices)
        return n if n > 0 else None
    return None


def plan_distributor(cfg: Any, master: Optional[str], conf: Mapping[str, str]) -> DistributorPlan:
    """Decide TorchDistributor's mode, GPU use and ranks from the train config, the master and the SparkConf.

    Args:
        cfg: The train config (``accelerator``, ``devices`` per instance, ``num_nodes`` instances).
        master: The Spark master URL; a one-JVM master (``local[...]``) runs the ranks beside the driver.
        conf: The SparkConf as a mapping (``dict(spark.sparkContext.getConf().getAll())``).

    Raises:
        ConfigError: for ``accelerator: gpu`` on a cluster that schedules no GPUs.
    """
    from ntm_spark.spark.session import is_local_master

    local_mode = is_local_master(master)
    gpu_key = DRIVER_GPUS if local_mode else EXECUTOR_GPUS
    gpus = _gpu_amount(conf, gpu_key)
    accelerator = str(cfg.accelerator)
    if accelerator == "cpu":
        use_gpu = False
    elif accelerator in ("gpu", "cuda"):
        use_gpu = True
    else:  # auto: what the cluster gives its executors (the driver's JVM in local mode)
        use_gpu = gpus > 0
    needed = DRIVER_GPUS if local_mode else TASK_GPUS
    if use_gpu and _gpu_amount(conf, needed) <= 0:
        raise ConfigError(
            f"invalid config value train.accelerator={accelerator!r}: TorchDistributor needs {needed} to give "
            f"the ranks GPUs, and it is not set; add --spark-conf {needed}=1"
            + ("" if local_mode else f" --spark-conf {EXECUTOR_GPUS}=<GPUs per executor>")
            + ", or use accelerator: cpu."
        )
    per_instance = _explicit_devices(cfg.devices) or (max(1, int(gpus)) if use_gpu else 1)
    if local_mode:
        # One machine: every rank belongs to the one instance, whatever num_nodes says.
        num_processes = per_instance * cfg.num_nodes
        return DistributorPlan(True, use_gpu, num_processes, 1, num_processes)
    slots = _executor_slots(conf, use_gpu)
    if slots is not None and slots != per_instance:
        log.warning(
            "each executor has room for %d ranks but train.devices gives %d per instance: Spark may place the ranks "
            "on more or fewer executors than num_nodes=%d, and mini_batch_size is then divided by %d all the same; "
            "make them agree (spark.executor.cores / spark.task.cpus on CPU, %s on GPU).",
            slots, per_instance, cfg.num_nodes, per_instance, EXECUTOR_GPUS,
        )
    return DistributorPlan(False, use_gpu, per_instance * cfg.num_nodes, cfg.num_nodes, per_instance)


def _executor_slots(conf: Mapping[str, str], use_gpu: bool) -> Optional[int]:
    """Ranks one executor can hold, when the SparkConf says (None when it does not)."""
    if use_gpu:
        gpus = int(_gpu_amount(conf, EXECUTOR_GPUS))
        return gpus or None
    cores = conf.get("spark.executor.cores")
    if cores is None or not str(cores).isdigit():
        return None
    return max(1, int(cores) // max(1, int(conf.get("spark.task.cpus", "1"))))


def train_on_executor(cfg_dict: dict, ranks_per_instance: Optional[int] = None) -> Any:
    """Train in one TorchDistributor rank.

    ``devices=LOCAL_WORLD_SIZE`` and ``num_nodes=WORLD_SIZE//LOCAL_WORLD_SIZE`` as ``torchrun`` set them
    (Lightning checks them against the process group); ``mini_batch_size`` is divided by
    ``ranks_per_instance`` (:func:`plan_distributor`), not by ``LOCAL_WORLD_SIZE``.
    """
    import logging as _logging

    from lightning_module.train import apply_torchrun_env, train_model
    from ntm_spark.core.config import TrainConfig, from_dict

    _logging.basicConfig(level=_logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = apply_torchrun_env(from_dict(TrainConfig, cfg_dict))
    return train_model(cfg, ranks_per_instance=ranks_per_instance)


def run_with_distributor(spark, cfg, train_fn: Optional[Callable[..., Any]] = None) -> Any:
    """Run :func:`train_on_executor` under Spark's ``TorchDistributor``; return rank 0's result.

    Local mode on a one-JVM master (``local[...]``), cluster mode otherwise (``local-cluster[...]``,
    ``spark://``, YARN, Kubernetes); see :func:`plan_distributor`.

    Args:
        spark: The active session.
        cfg: The train config.
        train_fn: What each rank runs, called as ``train_fn(cfg_dict, ranks_per_instance)``;
            default :func:`train_on_executor` (tests pass one that also records what the ranks saw).
    """
    from pyspark.ml.torch.distributor import TorchDistributor

    sc = spark.sparkContext
    plan = plan_distributor(cfg, sc.master, dict(sc.getConf().getAll()))
    log.info(
        "TorchDistributor: %d ranks (%s mode, %s), %d instance(s) x %d ranks; %d documents per rank per step",
        plan.num_processes, "local" if plan.local_mode else "cluster", "GPU" if plan.use_gpu else "CPU",
        plan.num_instances, plan.ranks_per_instance, plan.per_rank_batch_size(cfg.mini_batch_size),
    )
    distributor = TorchDistributor(num_processes=plan.num_processes, local_mode=plan.local_mode, use_gpu=plan.use_gpu)
    cfg_dict = dataclasses.asdict(cfg)
    if not plan.use_gpu:
        cfg_dict["accelerator"] = "cpu"
    return distributor.run(train_fn or train_on_executor, cfg_dict, plan.ranks_per_instance)
