import json

import pytest

from jobs.train import main
from lightning_module.train import apply_torchrun_env
from ntm_spark.core.config import ConfigError, TrainConfig, from_dict
from ntm_spark.spark.distributed import run_with_distributor


def _flags(data, out):
    return [
        "--data", str(data), "--output", str(out), "--num-topics", "5", "--epochs", "2", "--devices", "1",
        "--set", "num_workers=0", "--set", "mini_batch_size=64", "--set", "accelerator=cpu", "--set", "threads_per_process=1",
    ]


def test_main_trains_and_writes_the_model_folder(bow_corpus, tmp_path, capsys):
    assert main(_flags(bow_corpus, tmp_path / "m")) == 0
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert {"val_loss", "test_npmi", "npmi", "tu", "diversity"} <= set(metrics)
    assert "Topics from epoch:final (num_topics:5)" in capsys.readouterr().out


def test_main_resume_last(bow_corpus, tmp_path):
    assert main(_flags(bow_corpus, tmp_path / "m")) == 0
    assert main(_flags(bow_corpus, tmp_path / "m") + ["--epochs", "3", "--resume", "last"]) == 0


def test_main_reports_bad_values_and_missing_data(tmp_path, capsys):
    assert main(["--num-topics", "1", "--data", str(tmp_path)]) == 2
    assert "train.num_topics=1" in capsys.readouterr().err
    assert main(["--data", str(tmp_path / "none"), "--output", str(tmp_path / "o")]) == 2
    assert "ntm preprocess" in capsys.readouterr().err


def test_torchrun_launcher_reads_the_environment(monkeypatch):
    cfg = from_dict(TrainConfig, {})
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    monkeypatch.setenv("WORLD_SIZE", "8")
    cfg = apply_torchrun_env(cfg)
    assert (cfg.devices, cfg.num_nodes) == (4, 2)
    monkeypatch.delenv("WORLD_SIZE")
    with pytest.raises(ConfigError, match="torchrun"):
        apply_torchrun_env(cfg)


@pytest.mark.spark
@pytest.mark.ddp
@pytest.mark.slow
def test_torch_distributor_local_mode_cpu(spark, bow_corpus, tmp_path, loopback_ddp):
    cfg = from_dict(
        TrainConfig,
        {
            "data_dir": str(bow_corpus), "output_dir": str(tmp_path / "m"), "num_topics": 4, "epochs": 2, "devices": 2,
            "mini_batch_size": 64, "num_workers": 0, "accelerator": "cpu", "progress_bar": False, "threads_per_process": 1,
            "checkpoint": False,
        },
    )
    result = run_with_distributor(spark, cfg)
    assert result.model_dir == str(tmp_path / "m") and result.epochs_trained == 2
    assert (tmp_path / "m" / "model.pt").exists() and "val_loss" in result.metrics
