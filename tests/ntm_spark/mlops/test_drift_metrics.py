"""The drift baseline travels with the registered model, and drift windows land on the serving version's run."""

import uuid

import numpy as np
import pytest

pytestmark = [pytest.mark.mlflow]


def test_registered_model_carries_the_baseline_and_windows_are_logged_on_its_run(mlflow_tracking, tmp_path):
    import mlflow
    from conftest import make_model_folder
    from mlflow import MlflowClient

    from ntm_spark.core.contract import write_drift_baseline
    from ntm_spark.core.drift import DriftBaseline, TopicSums
    from ntm_spark.mlops.tracking import drift_metrics_sink
    from ntm_spark.serving.model_loader import ModelSpec, get_loader
    from ntm_spark.serving.pyfunc_model import log_pyfunc_model

    folder = make_model_folder(tmp_path / "m", num_topics=4)
    base = DriftBaseline.from_sums(TopicSums.from_weights(np.full((8, 4), 0.25)), 100, 80, oov_split="validation")
    write_drift_baseline(folder, base)
    name = f"ntm-drift-{uuid.uuid4().hex[:6]}"
    mlflow.set_experiment("ntm-drift-tests")
    with mlflow.start_run() as run:
        log_pyfunc_model(folder, registered_model_name=name)

    loaded = get_loader(ModelSpec(f"models:/{name}/1", tracking_uri=mlflow_tracking)).get()
    got = loaded.scorer.drift_baseline
    assert got is not None and got.oov_rate == pytest.approx(0.2) and got.oov_split == "validation"
    np.testing.assert_allclose(got.prevalence, base.prevalence)

    sink = drift_metrics_sink(mlflow_tracking)
    record = {"window_start": "2026-12-07T10:00:00.000Z", "window_end": "2026-12-07T10:01:00.000Z", "model_name": name,
              "model_version": "1", "js_distance": 0.31, "oov_rate": 0.4, "empty_rate": None, "scored": 50, "alert": True}  # fmt: skip
    sink(record)
    sink({**record, "model_name": "a-model-folder", "model_version": "0123456789ab"})  # not registered: skipped
    client = MlflowClient(mlflow_tracking)
    history = client.get_metric_history(run.info.run_id, "drift/js_distance")
    assert [(m.value, m.step) for m in history] == [(0.31, 1796637600)]
    assert client.get_metric_history(run.info.run_id, "drift/alert")[0].value == 1.0
    assert client.get_metric_history(run.info.run_id, "drift/empty_rate") == []
