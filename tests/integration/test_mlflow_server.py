"""A real ``mlflow server`` (ntm services' MlflowServer, state in a temporary NTM_HOME): a training-style
run logs to it over HTTP, and its REST API lists the registered model with its aliases."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.mlflow, pytest.mark.slow]


def test_training_run_over_http_and_rest_aliases(tmp_path, monkeypatch):
    from ntm_spark.core.config import MlflowConfig, load_config
    from ntm_spark.core.nltk_data import find_wordnet
    from ntm_spark.mlops.tracking import track_training
    from ntm_spark.tools.services import MlflowServer, free_port
    from tests.conftest import make_model_folder

    monkeypatch.setenv("NLTK_DATA", str(find_wordnet(download=False)))  # before NTM_HOME hides the project's copy
    monkeypatch.setenv("NTM_HOME", str(tmp_path / "ntm_home"))
    server = MlflowServer(load_config("services", overrides=[f"mlflow_port={free_port()}"]))
    url = server.up()
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        cfg = MlflowConfig(tracking_uri=url, experiment="ntm-http", registered_model_name="ntm-http")

        def train(loggers):
            # What Lightning does with the loggers: per-epoch metrics, then the model folder.
            for epoch in range(3):
                for lg in loggers:
                    lg.log_metrics({"train/loss": 10.0 - epoch, "epoch": epoch}, step=epoch * 5)
                    lg.log_metrics({"val/loss": 11.0 - epoch, "val/npmi": 0.05 * epoch, "val/tu": 0.9, "epoch": epoch}, step=epoch * 5)
            return make_model_folder(tmp_path / "model", npmi=0.12, val_loss=9.0)

        tracked = track_training(train, config={"num_topics": 4, "epochs": 3}, mlflow_cfg=cfg, run_name="http-run")
        assert tracked.registration.decision.promoted

        from mlflow.tracking import MlflowClient

        client = MlflowClient(url)
        history = client.get_metric_history(tracked.run_id, "val/npmi")
        assert [(m.step, round(m.value, 3)) for m in history] == [(0, 0.0), (1, 0.05), (2, 0.1)]
        run = client.get_run(tracked.run_id)
        assert run.data.params["num_topics"] == "4" and run.data.metrics["npmi"] == pytest.approx(0.12)
        names = {a.path for a in client.list_artifacts(tracked.run_id)}
        assert {"vocab.txt", "manifest.json", "topic_word.npy", "topics.csv", "topics.md", "environment.json", "config.yaml"} <= names
        assert str(tmp_path / "ntm_home") in client.get_experiment(run.info.experiment_id).artifact_location

        query = urllib.parse.urlencode({"name": "ntm-http"})
        with urllib.request.urlopen(f"{url}/api/2.0/mlflow/registered-models/get?{query}", timeout=30) as resp:
            model = json.loads(resp.read())["registered_model"]
        aliases = {a["alias"]: a["version"] for a in model.get("aliases", [])}
        assert aliases == {"champion": tracked.registration.version}
    finally:
        server.down()
