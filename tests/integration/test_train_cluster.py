"""TorchDistributor in cluster mode (``local_mode=False``) on Spark's multi-JVM ``local-cluster`` master.

Each case starts its own driver (a session's master cannot change in the test process) with
``cluster_train_script.py``: separate executor JVMs and Python workers, gloo on CPU. The weights
are compared with ``ddp_script.py``'s 1-process run on the same data, as test_ddp.py does.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("cluster_train_script.py")
ONE_PROCESS = ROOT / "tests" / "lightning_module" / "ddp_script.py"

pytestmark = [pytest.mark.integration, pytest.mark.cluster, pytest.mark.ddp, pytest.mark.slow]


@pytest.fixture(scope="module")
def spark_home(tmp_path_factory) -> Path:
    """A SPARK_HOME of links to pyspark's: local-cluster workers write their ``work/`` folders here, not into the venv."""
    import pyspark

    home = tmp_path_factory.mktemp("spark_home")
    for entry in Path(pyspark.__file__).parent.iterdir():
        if entry.name != "work":
            (home / entry.name).symlink_to(entry)
    return home


@pytest.fixture(scope="module")
def one_process(bow_corpus, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("one")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    proc = subprocess.run(
        [sys.executable, str(ONE_PROCESS), str(bow_corpus), str(out), "1", "linear"],
        capture_output=True, text=True, timeout=180, env=env, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(out / "weights" / "rank0.pt")


@pytest.mark.parametrize(
    ("master", "devices", "num_nodes", "executor_cores", "rank_batch"),
    [
        # 2 executors of 1 core = 2 instances of 1 rank: each rank takes the whole per-instance batch.
        ("local-cluster[2,1,1024]", 1, 2, 1, 404),
        # 1 executor of 2 cores = 1 instance of 2 ranks: its batch is divided, although each rank
        # is a torchrun node of its own (LOCAL_WORLD_SIZE=1).
        ("local-cluster[1,2,1024]", 2, 1, 2, 202),
    ],
    ids=["2-executors", "1-executor-2-ranks"],
)
def test_cluster_mode_ranks_batch_and_weights(bow_corpus, tmp_path, spark_home, one_process, master, devices, num_nodes, executor_cores, rank_batch):
    out = tmp_path / "cluster"
    env = {**os.environ, "SPARK_HOME": str(spark_home), "SPARK_LOCAL_IP": "127.0.0.1", "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), master, str(bow_corpus), str(out), str(devices), str(num_nodes), str(executor_cores)],
        capture_output=True, text=True, timeout=400, env=env, cwd=ROOT,
    )
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-4000:])

    seen = [json.loads((out / "ranks" / f"rank{r}.json").read_text()) for r in (0, 1)]
    for rank, s in enumerate(seen):
        assert s["env"]["WORLD_SIZE"] == "2" and s["env"]["RANK"] == str(rank) and s["global_rank"] == rank
        # TorchDistributor's cluster mode: one torchrun per Spark task, so every rank is node `rank`.
        assert s["env"]["LOCAL_WORLD_SIZE"] == "1" and s["env"]["GROUP_RANK"] == str(rank) and s["node_rank"] == rank
        assert (s["world_size"], s["num_nodes"]) == (2, 2)
        assert s["batch_size"] == rank_batch, "mini_batch_size=404 per instance, divided over its ranks"
        assert s["cuda_visible_devices"] == "", "no GPUs in the SparkConf: the ranks train on CPU"
        assert "/work/app-" in s["cwd"], s["cwd"]  # an executor's working folder, not the driver's
    executors = {s["cwd"] for s in seen}
    assert len(executors) == num_nodes, executors
    hparams = json.loads((out / "hparams.json").read_text())
    training = hparams.get("training", hparams)
    assert (training["per_device_batch_size"], training["ranks_per_instance"]) == (rank_batch, devices)

    r0, r1 = (torch.load(out / "weights" / f"rank{r}.pt") for r in (0, 1))
    for name in r0:
        assert torch.equal(r0[name], r1[name]), f"{name} differs across ranks"
        # Both sides take the whole training split per step (2 x 202/201 documents against 403).
        assert torch.allclose(r0[name], one_process[name], rtol=1e-3, atol=1e-4), name
    assert (out / "model.pt").exists() and json.loads((out / "result.json").read_text())["epochs"] == 3
