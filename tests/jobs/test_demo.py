"""`ntm demo --quick` end to end against the real broker, Spark and MLflow, leaving nothing running."""

import pytest

from jobs import demo
from ntm_spark.core.nltk_data import find_wordnet
from ntm_spark.core.paths import jars_dir
from ntm_spark.tools.services import free_port

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.spark, pytest.mark.mlflow, pytest.mark.slow]


def test_quick_demo_tags_every_document_and_stops_everything(tmp_path, monkeypatch, capsys, live_processes):
    home = tmp_path / "ntm_home"
    monkeypatch.setenv("NLTK_DATA", str(find_wordnet(download=False)))  # before NTM_HOME hides the project's copy
    monkeypatch.setenv("NTM_JARS_DIR", str(jars_dir()))
    monkeypatch.setenv("NTM_HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///unused.db")  # restored after the demo overrides it
    n = 60
    code = demo.main(
        [
            "--quick", "--messages", str(n), "--epochs", "3",
            "--kafka-port", str(free_port()), "--kafka-controller-port", str(free_port()), "--mlflow-port", str(free_port()),
            "--stream-timeout", "240",
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out[-3000:]
    for step in range(1, 11):
        assert f"[{step}/10]" in out
    assert f"tagged {n}/{n} messages, 0 dead-lettered" in out
    assert "MLflow UI      http://127.0.0.1:" in out
    report = home / "demo" / "report" / "index.html"
    assert report.is_file() and report.stat().st_size > 10_000
    # Nothing the demo started is left: not the broker, the MLflow server nor the stream job.
    assert live_processes(str(home)) == []
