"""`ntm demo --quick` end to end against the real broker, Spark and MLflow, leaving nothing running."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ntm_spark.core.nltk_data import find_wordnet
from ntm_spark.core.paths import jars_dir
from ntm_spark.tools.services import free_port

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.spark, pytest.mark.mlflow, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_quick_demo_tags_every_document_and_stops_everything(tmp_path, live_processes):
    # As a user runs it: its own process, so the in-process Spark JVM of its preprocessing step
    # ends with it (inside pytest it would live on in the test process and count as left running).
    home = tmp_path / "ntm_home"
    env = {
        **os.environ,
        "NLTK_DATA": str(find_wordnet(download=False)),  # before NTM_HOME hides the project's copy
        "NTM_JARS_DIR": str(jars_dir()),
        "NTM_HOME": str(home),
        "PYSPARK_PYTHON": sys.executable,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    n = 60
    proc = subprocess.run(
        [
            sys.executable, "-m", "jobs.cli", "demo", "--quick", "--messages", str(n), "--epochs", "3",
            "--kafka-port", str(free_port()), "--kafka-controller-port", str(free_port()), "--mlflow-port", str(free_port()),
            "--stream-timeout", "240",
        ],
        capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path,
    )  # fmt: skip
    out = proc.stdout
    assert proc.returncode == 0, (out[-3000:], proc.stderr[-3000:])
    for step in range(1, 11):
        assert f"[{step}/10]" in out
    assert f"tagged {n}/{n} messages, 0 dead-lettered" in out
    assert "MLflow UI      http://127.0.0.1:" in out
    report = home / "demo" / "report" / "index.html"
    assert report.is_file() and report.stat().st_size > 10_000
    # Nothing the demo started is left: not the broker, the MLflow server, the stream job nor a
    # Spark JVM (a JVM whose parent has exited gets a few seconds to finish its shutdown hooks).
    deadline = time.monotonic() + 20
    while live_processes(str(home)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert live_processes(str(home)) == []
