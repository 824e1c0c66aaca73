"""The JVM scorer's export (jvm/) and how the stream gets a local folder that has it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def test_export_refuses_a_folder_without_a_closed_lemma_table(tmp_path):
    from conftest import make_model_folder

    from ntm_spark.serving.jvm_export import JvmExportError, export_jvm_scorer

    folder = make_model_folder(tmp_path / "m")
    with pytest.raises(JvmExportError, match="no lemmas.json closed over its vocabulary.*stage_model_folder"):
        export_jvm_scorer(folder)
    assert not (folder / "jvm").exists()


def test_stage_model_folder_writes_the_export_once_with_the_rules_and_tensors(tmp_path):
    import torch
    from conftest import make_model_folder

    from ntm_spark.core.contract import read_jvm_export
    from ntm_spark.core.text import ENGLISH_STOP_WORDS, unicode_tables
    from ntm_spark.serving.pyfunc_model import stage_model_folder

    staged = stage_model_folder(make_model_folder(tmp_path / "m"), tmp_path / "staged")
    export = read_jvm_export(staged)
    # make_model_folder's manifest names no rule set: the legacy rules, without cleaning.
    assert export["text_rules"] == {
        "rules": "v1", "clean": False, "stop_words": sorted(ENGLISH_STOP_WORDS), "v2_lemma_overrides": export["text_rules"]["v2_lemma_overrides"],
    }  # fmt: skip
    assert export["text_rules"]["v2_lemma_overrides"]["does"] == "do"
    state = torch.load(staged / "model.pt", weights_only=True)
    linear = export["layers"][0]
    assert np.array_equal(np.load(staged / "jvm" / linear["weight"]), state["encoder.0.weight"].numpy())
    tables = __import__("json").loads((staged / "jvm" / "unicode.json").read_text())
    assert tables["word"] == unicode_tables()["word"] and tables["lower"]["304"] == "i\u0307"  # İ -> i + combining dot


def test_jvm_model_folder_fetches_a_registered_version_once(mlflow_tracking, logged_runs, tmp_path, monkeypatch):
    import mlflow

    from ntm_spark.serving.model_loader import ModelSpec, jvm_model_folder

    monkeypatch.setenv("NTM_HOME", str(tmp_path / "home"))
    name = "jvm-fetch-test"
    version = mlflow.register_model(f"runs:/{logged_runs['base']}/model", name).version
    mlflow.MlflowClient().set_registered_model_alias(name, "champion", version)
    folder, got_name, got_version = jvm_model_folder(ModelSpec(f"models:/{name}@champion", tracking_uri=mlflow_tracking))
    assert (got_name, got_version) == (name, str(version))
    assert Path(folder) == tmp_path / "home" / "jvm-models" / "v1" / f"{name}-{version}"
    assert (Path(folder) / "jvm" / "scorer.json").is_file() and (Path(folder) / "lemmas.json").is_file()
    mtime = (Path(folder) / "jvm" / "scorer.json").stat().st_mtime_ns
    again, _, _ = jvm_model_folder(ModelSpec(f"models:/{name}/{version}", tracking_uri=mlflow_tracking))
    assert again == folder and (Path(folder) / "jvm" / "scorer.json").stat().st_mtime_ns == mtime
    assert not [p for p in (tmp_path / "home" / "jvm-models" / "v1").iterdir() if p.name.startswith(".")]  # no work folder left


def test_jvm_model_folder_stages_a_training_folder_and_names_a_bad_reference(tmp_path, monkeypatch):
    from conftest import make_model_folder

    from ntm_spark.serving.model_loader import ModelLoadError, ModelSpec, folder_version, jvm_model_folder

    monkeypatch.setenv("NTM_HOME", str(tmp_path / "home"))
    src = make_model_folder(tmp_path / "trained")
    folder, name, version = jvm_model_folder(ModelSpec(str(src)))
    assert (name, version) == ("trained", folder_version(src))
    assert (Path(folder) / "jvm" / "scorer.json").is_file() and not (src / "jvm").exists()  # the source is untouched
    with pytest.raises(ModelLoadError, match="models:/nope@champion"):
        jvm_model_folder(ModelSpec("models:/nope@champion", tracking_uri=f"sqlite:///{tmp_path / 'empty.db'}"))
