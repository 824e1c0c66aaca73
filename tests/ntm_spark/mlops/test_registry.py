"""Registry: register, gate in both directions, guard and vocabulary checks, force, rollback."""

from __future__ import annotations

import json

import pytest

from ntm_spark.core.config import MlflowConfig
from ntm_spark.mlops.registry import (
    RegistryError,
    list_versions,
    promote_version,
    register_run_model,
    rollback_champion,
    show_version,
)

pytestmark = [pytest.mark.mlflow]


def _cfg(uri: str, name: str) -> MlflowConfig:
    return MlflowConfig(tracking_uri=uri, experiment="ntm-tests", registered_model_name=name)


def _aliases(client, name):
    return {a: str(v) for a, v in client.get_registered_model(name).aliases.items()}


def test_register_gate_both_ways_then_rollback(mlflow_tracking, logged_runs):
    from mlflow.tracking import MlflowClient

    name = "ntm-gate"
    cfg = _cfg(mlflow_tracking, name)
    client = MlflowClient(mlflow_tracking, mlflow_tracking)

    first = register_run_model(logged_runs["base"], cfg)
    assert first.decision.promoted and "no champion" in first.decision.reason
    assert _aliases(client, name) == {"champion": first.version}
    mv = client.get_model_version(name, first.version)
    assert mv.tags["num_topics"] == "4" and mv.tags["feature_dim"] == "30"
    assert len(mv.tags["vocab_sha256"]) == 64 and float(mv.tags["npmi"]) == pytest.approx(0.1)
    assert float(mv.tags["val_loss"]) == pytest.approx(10.0) and float(mv.tags["tu"]) == pytest.approx(0.9)
    assert mv.tags["git_commit"] and json.loads(mv.tags["corpus"])["vocab_size"] == 30
    assert "| topic | top words |" in mv.description
    assert "**Input**" in mv.description and "text/csv" in mv.description  # no input schema: the description says what it takes

    better = register_run_model(logged_runs["better"], cfg)  # npmi 0.2 > 0.1, val_loss +2% (< 5%)
    assert better.decision.promoted, better.decision.reason
    assert _aliases(client, name) == {"champion": better.version}

    worse = register_run_model(logged_runs["worse"], cfg)  # npmi 0.05 < 0.2
    assert not worse.decision.promoted and "does not beat" in worse.decision.reason
    assert _aliases(client, name) == {"champion": better.version, "challenger": worse.version}

    guard = register_run_model(logged_runs["bad_guard"], cfg)  # npmi better, val_loss 2x worse
    assert not guard.decision.promoted and "guard val_loss" in guard.decision.reason

    other = register_run_model(logged_runs["other_vocab"], cfg)  # best npmi, other vocabulary
    assert not other.decision.promoted and "feature_dim semantics" in other.decision.reason
    assert _aliases(client, name) == {"champion": better.version, "challenger": other.version}

    rolled = rollback_champion(name, cfg)
    assert rolled.version == first.version and rolled.previous_champion == better.version
    assert _aliases(client, name)["champion"] == first.version
    with pytest.raises(RegistryError, match="no previous champion"):
        rollback_champion(name, cfg)

    rows = list_versions(name, cfg)
    assert [r["version"] for r in rows] == ["5", "4", "3", "2", "1"]
    assert rows[-1]["aliases"] == ["champion"] and rows[0]["aliases"] == ["challenger"]
    shown = show_version(name, "@champion", cfg)
    assert shown["version"] == first.version and shown["lineage"]["run_id"] == logged_runs["base"]
    assert shown["champion_history"] == [first.version]


def test_force_promote_records_reason(mlflow_tracking, logged_runs):
    from mlflow.tracking import MlflowClient

    name = "ntm-force"
    cfg = _cfg(mlflow_tracking, name)
    client = MlflowClient(mlflow_tracking, mlflow_tracking)
    base = register_run_model(logged_runs["base"], cfg)
    other = register_run_model(logged_runs["other_vocab"], cfg)
    assert not other.decision.promoted
    with pytest.raises(RegistryError, match="--reason"):
        promote_version(name, other.version, cfg, force=True)
    forced = promote_version(name, other.version, cfg, force=True, reason="new corpus, clients updated")
    assert forced.promoted and forced.forced
    tags = client.get_model_version(name, other.version).tags
    assert tags["forced_promotion_reason"] == "new corpus, clients updated" and tags["promotion"] == "forced"
    assert _aliases(client, name) == {"champion": other.version}
    assert rollback_champion(name, cfg).version == base.version


def test_unknown_model_and_alias_errors(mlflow_tracking, logged_runs):
    cfg = _cfg(mlflow_tracking, "ntm-unknown")
    with pytest.raises(RegistryError, match="no registered model named 'ntm-unknown'"):
        list_versions("ntm-unknown", cfg)
    register_run_model(logged_runs["base"], _cfg(mlflow_tracking, "ntm-alias"))
    with pytest.raises(RegistryError, match="no alias 'staging'"):
        show_version("ntm-alias", "@staging", _cfg(mlflow_tracking, "ntm-alias"))


def test_no_promotion_moves_champion_to_a_version_that_cannot_load(mlflow_tracking, logged_runs, tmp_path, capsys):
    """Issue 15: `promote --force` moved champion to a version whose model.pt was corrupt."""
    from pathlib import Path
    from urllib.parse import unquote, urlparse

    import mlflow
    from conftest import make_model_folder
    from mlflow.tracking import MlflowClient

    from jobs.registry import main
    from ntm_spark.mlops.tracking import ensure_experiment, log_training_run

    name = "ntm-corrupt"
    cfg = _cfg(mlflow_tracking, name)
    client = MlflowClient(mlflow_tracking, mlflow_tracking)
    champion = register_run_model(logged_runs["base"], cfg).version
    # A better candidate (same vocabulary, npmi 0.5) whose stored weights are then corrupted.
    folder = make_model_folder(tmp_path / "candidate", npmi=0.5, val_loss=10.0, seed=11)
    with mlflow.start_run(experiment_id=ensure_experiment("ntm-tests", mlflow_tracking), run_name="corrupt") as run:
        log_training_run(folder, config={"num_topics": 4, "spec": "corrupt"})
    bad = register_run_model(run.info.run_id, cfg, gate=False).version
    stored = Path(unquote(urlparse(client.get_model_version_download_uri(name, bad)).path))
    weights = stored / "artifacts" / "model_folder" / "model.pt"
    assert weights.is_file()
    weights.write_bytes(b"\x80\x02 not a torch checkpoint")

    with pytest.raises(RegistryError, match=rf"cannot promote 'ntm-corrupt' version {bad}: its model cannot be loaded"):
        promote_version(name, bad, cfg, force=True, reason="trust me")
    gated = promote_version(name, bad, cfg)  # the gate would promote it (npmi 0.5 > 0.1): the load check refuses
    assert not gated.promoted and "cannot be loaded" in gated.reason
    assert _aliases(client, name) == {"champion": champion, "challenger": bad}
    assert "promotion" not in client.get_model_version(name, bad).tags

    args = ["--tracking-uri", mlflow_tracking, "--name", name]
    assert main(["promote", bad, "--force", "--reason", "trust me", *args]) == 1
    err = capsys.readouterr().err
    assert f"cannot promote 'ntm-corrupt' version {bad}: its model cannot be loaded (loading its model folder:" in err
    assert "Champion did not move" in err
    assert _aliases(client, name)["champion"] == champion
    # A loadable version is still promoted by force (the check loads it).
    loadable = register_run_model(logged_runs["worse"], cfg, gate=False).version
    assert promote_version(name, loadable, cfg, force=True, reason="loads").promoted
    assert _aliases(client, name)["champion"] == loadable


def test_gate_refuses_a_collapsed_model_whatever_its_npmi(mlflow_tracking, tmp_path):
    """All topics equal (decoder weights zero: every topic is the same background words) never becomes champion,
    neither as the first version nor against a champion, even though its run reports the best NPMI and no collapse."""
    import mlflow
    import torch
    from mlflow.tracking import MlflowClient

    from lightning_module.model import NTMModel
    from lightning_module.model_folder import save_model_folder
    from ntm_spark.mlops.tracking import ensure_experiment, log_training_run

    words = [f"word{i:03d}" for i in range(200)]

    def folder(key, collapse):
        torch.manual_seed(0)
        model = NTMModel(vocab_size=len(words), num_topics=10)
        with torch.no_grad():
            model.decoder.weight.zero_()
            model.decoder.bias.copy_(torch.linspace(3.0, -3.0, len(words)))
            if not collapse:  # topic k lifts its own 20 words: 10 distinct topics
                model.decoder.weight.copy_(10.0 * torch.eye(10).repeat_interleave(20, dim=0))
        path = tmp_path / key
        path.mkdir()
        # The run claims the best NPMI and says nothing of collapse: the gate must see it in the topics.
        metrics = {"val_loss": 10.0, "npmi": 0.9 if collapse else 0.2, "tu": 0.9}
        save_model_folder(path, model, words, metrics=metrics, config={"num_topics": 10})
        with mlflow.start_run(experiment_id=ensure_experiment("ntm-tests", mlflow_tracking), run_name=key) as run:
            log_training_run(path, config={"num_topics": 10})
        return run.info.run_id

    name = "ntm-collapse"
    cfg = _cfg(mlflow_tracking, name)
    client = MlflowClient(mlflow_tracking, mlflow_tracking)
    collapsed_run, healthy_run = folder("collapsed", True), folder("healthy", False)

    first = register_run_model(collapsed_run, cfg)
    assert not first.decision.promoted
    assert "diversity 0.100" in first.decision.reason and "never becomes champion" in first.decision.reason
    assert "champion" not in _aliases(client, name)
    assert float(client.get_model_version(name, first.version).tags["diversity"]) == pytest.approx(0.1)

    healthy = register_run_model(healthy_run, cfg)
    assert healthy.decision.promoted, healthy.decision.reason
    again = promote_version(name, first.version, cfg)  # npmi 0.9 would beat 0.2: the collapse check comes first
    assert not again.promoted and "never becomes champion" in again.reason
    assert _aliases(client, name)["champion"] == healthy.version


def test_gate_checks_topic_stability_both_ways(mlflow_tracking, tmp_path):
    """A warm-started challenger that keeps the champion's topic ids passes; one whose ids were shuffled is refused
    (unless forced); ``always`` checks fresh challengers too, ``off`` never."""
    import dataclasses

    import mlflow
    import torch
    from mlflow.tracking import MlflowClient

    from lightning_module.model import NTMModel
    from lightning_module.model_folder import save_model_folder
    from lightning_module.warm_start import permute_topics
    from ntm_spark.core.topic_matching import topic_stability
    from ntm_spark.mlops.tracking import ensure_experiment, log_training_run

    words = [f"word{i:03d}" for i in range(200)]
    champion_tw = None

    def folder(key, npmi, shuffle=None, warm=True):
        nonlocal champion_tw
        torch.manual_seed(0)
        model = NTMModel(vocab_size=len(words), num_topics=10, decoder="linear", batch_norm=False)
        with torch.no_grad():  # topic k lifts its own 20 words: 10 distinct topics
            model.decoder.weight.copy_(10.0 * torch.eye(10).repeat_interleave(20, dim=0) + 0.01 * torch.randn(200, 10))
        if shuffle is not None:
            permute_topics(model, shuffle)
        tw = model.topic_word().numpy()
        champion_tw = tw if champion_tw is None else champion_tw
        path = tmp_path / key
        path.mkdir()
        stability = topic_stability(champion_tw, tw, "champion") if warm else None
        save_model_folder(path, model, words, metrics={"val_loss": 10.0, "npmi": npmi, "tu": 0.9}, config={"num_topics": 10},
                          topic_stability=stability)
        with mlflow.start_run(experiment_id=ensure_experiment("ntm-tests", mlflow_tracking), run_name=key) as run:
            log_training_run(path, config={"num_topics": 10})
        return run.info.run_id

    name = "ntm-stability"
    cfg = _cfg(mlflow_tracking, name)
    client = MlflowClient(mlflow_tracking, mlflow_tracking)
    assert register_run_model(folder("champion", 0.20, warm=False), cfg).decision.promoted

    stable = register_run_model(folder("stable", 0.21), cfg)
    assert stable.decision.promoted, stable.decision.reason
    tags = client.get_model_version(name, stable.version).tags
    assert tags["warm_start_from"] == "champion" and tags["topics_moved"] == "0"

    swapped = [1, 0, 3, 2, 5, 4, 6, 7, 8, 9]  # 6 of 10 ids now carry another topic; 2 may move (20%)
    shuffled = register_run_model(folder("shuffled", 0.30, swapped), cfg)
    assert not shuffled.decision.promoted
    assert "topic ids unstable: 6 of the champion" in shuffled.decision.reason and "topics 0, 1, 2, 3, 4, 5" in shuffled.decision.reason
    assert client.get_model_version(name, shuffled.version).tags["topics_moved"] == "6"
    assert _aliases(client, name)["champion"] == stable.version
    loose = dataclasses.replace(cfg, gate_max_moved_topics=6)
    assert promote_version(name, shuffled.version, loose).promoted  # within a budget of 6
    assert rollback_champion(name, cfg).version == stable.version

    fresh = register_run_model(folder("fresh-shuffled", 0.40, swapped, warm=False), cfg)
    assert fresh.decision.promoted, "the default (warm_start) does not check a model that claims no topic ids"
    rollback_champion(name, cfg)
    always = dataclasses.replace(cfg, gate_topic_stability="always")
    refused = promote_version(name, fresh.version, always)
    assert not refused.promoted and "topic ids unstable" in refused.reason
    forced = promote_version(name, fresh.version, always, force=True, reason="new topic set, dashboards rebuilt")
    assert forced.promoted and _aliases(client, name)["champion"] == fresh.version
    rollback_champion(name, cfg)
    assert promote_version(name, shuffled.version, dataclasses.replace(cfg, gate_topic_stability="off")).promoted
