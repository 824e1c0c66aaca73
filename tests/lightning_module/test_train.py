import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_module._compat import pl
from lightning_module.model_folder import load_model_folder
from lightning_module.train import EarlyStoppingRule, NTMEarlyStopping, resolve_model_options, train_model
from ntm_spark.core.config import ConfigError, TrainConfig, from_dict, load_config

# ----------------------------------------------------------------------------- early stopping


def test_rule_stops_after_patience_without_relative_improvement():
    rule = EarlyStoppingRule(patience=3, tolerance=0.01)
    losses = [10.0, 9.0, 8.95, 8.92, 8.0, 7.99, 7.98, 7.97, 1.0]
    stops = [rule.update(v) for v in losses]
    # 8.95 / 8.92 are < 1% better than 9.0; 8.0 resets; 7.99, 7.98, 7.97 are < 1% better than 8.0
    assert stops == [False, False, False, False, False, False, False, True, False]


class ScriptedLoss(pl.LightningModule):
    """A BoringModel whose validation loss follows a script, one value per epoch."""

    def __init__(self, script):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.script = script

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).sum()

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", float(self.script[self.current_epoch]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_callback_stops_training_at_the_right_epoch(tmp_path):
    loader = DataLoader(TensorDataset(torch.ones(2, 2)), batch_size=2)
    script = [5.0, 4.0, 3.999, 3.998, 3.997, 1.0, 1.0, 1.0]
    stopper = NTMEarlyStopping("val/loss", patience=3, tolerance=0.001)
    trainer = pl.Trainer(
        max_epochs=len(script), callbacks=[stopper], logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=tmp_path,
    )
    trainer.fit(ScriptedLoss(script), loader, loader)
    # epochs 0..4 run; epochs 2, 3, 4 do not improve on 4.0 by > 0.1% -> stop after epoch index 4
    assert stopper.stopped_epoch == 4 and trainer.current_epoch == 5


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "override, match",
    [
        ("num_topics=1", "train.num_topics=1"),
        ("num_topics=1001", "train.num_topics=1001"),
        ("optimizer=lbfgs", "train.optimizer='lbfgs'"),
        ("encoder_layers_activation=gelu", "encoder_layers_activation='gelu'"),
        ("encoder_layers=[10, 0]", "train.encoder_layers=\\[10, 0\\]"),
        ("mini_batch_size=0", "train.mini_batch_size=0"),
        ("epochs=0", "train.epochs=0"),
        ("tolerance=0.5", "train.tolerance=0.5"),
        ("sub_sample=0", "train.sub_sample=0.0"),
        ("rescale_gradient=2", "train.rescale_gradient=2.0"),
        ("clip_gradient=0", "train.clip_gradient=0.0"),
        ("learning_rate=5", "train.learning_rate=5.0"),
        ("reader=tfrecord", "train.reader='tfrecord'"),
        ("decoder=mlp", "train.decoder='mlp'"),
        ("word_embeddings=glove.txt", "train.word_embeddings='glove.txt'"),
        ("ecr_weight=-1", "train.ecr_weight=-1.0"),
        ("topic_similarity_weight=-1", "train.topic_similarity_weight=-1.0"),
        ("ecr_background_mass=1", "train.ecr_background_mass=1.0"),
        ("beta_temperature=0", "train.beta_temperature=0.0"),
        ("num_topic=20", "unknown config key 'train.num_topic'"),
    ],
)
def test_invalid_hyperparameters_raise_config_error(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config("train", overrides=[override])


def test_defaults_and_presets():
    cfg = load_config("train")
    assert cfg.num_topics == 20 and cfg.mini_batch_size == 256 and cfg.epochs == 50 and cfg.num_patience_epochs == 3
    assert cfg.tolerance == 0.001 and cfg.rescale_gradient == 1.0 and cfg.sub_sample == 1.0 and cfg.encoder_layers == "auto"
    sm = resolve_model_options(from_dict(TrainConfig, {"preset": "sagemaker"}))
    assert sm["optimizer"] == "adadelta" and sm["encoder_layers_activation"] == "sigmoid"
    assert sm["batch_norm"] is True, "on since issue 18: off, the seed's architecture collapsed (docs/train.md)"
    over = resolve_model_options(from_dict(TrainConfig, {"preset": "sagemaker", "optimizer": "adam"}))
    assert over["optimizer"] == "adam"


def test_feature_dim_must_match_vocab(bow_corpus, tmp_path):
    cfg = from_dict(TrainConfig, {"data_dir": str(bow_corpus), "output_dir": str(tmp_path), "feature_dim": 7, "num_workers": 0})
    with pytest.raises(ConfigError, match="feature_dim=7"):
        train_model(cfg)


# ----------------------------------------------------------------------------- short runs


def _cfg(bow_corpus, out, **kw):
    base = {
        "data_dir": str(bow_corpus), "output_dir": str(out), "num_topics": 6, "epochs": 6, "mini_batch_size": 64,
        "num_workers": 0, "accelerator": "cpu", "devices": 1, "progress_bar": False, "threads_per_process": 1,
    }
    return from_dict(TrainConfig, {**base, **kw})


@pytest.mark.parametrize("preset", ["default", "sagemaker"])
def test_short_run_improves_val_loss_and_writes_model_folder(bow_corpus, tmp_path, preset, capsys):
    result = train_model(_cfg(bow_corpus, tmp_path, preset=preset))
    metrics = result.metrics
    history = _csv_metric(tmp_path, "val/loss")
    assert len(history) >= 2 and min(history[1:]) < history[0]
    for key in ("val_loss", "val_recon", "val_kl", "val_perplexity", "val_npmi", "val_tu", "val_diversity", "test_loss", "npmi"):
        assert np.isfinite(metrics[key]), key
    for name in ("model.pt", "hparams.json", "vocab.txt", "manifest.json", "config.yaml", "metrics.json", "topic_word.npy", "topics.csv", "topics.md"):
        assert (tmp_path / name).exists(), name
    out = capsys.readouterr().out
    assert "Topics from epoch:final (num_topics:6) [tu " in out and out.count("\n[tu ") == 6
    model, hparams, vocab = load_model_folder(tmp_path)
    assert len(vocab) == 120 and hparams["training"]["preset"] == preset
    x = torch.rand(3, 120)
    assert torch.allclose(model.infer_topics(x).sum(1), torch.ones(3), atol=1e-5)
    assert json.loads((tmp_path / "metrics.json").read_text())["npmi"] == pytest.approx(metrics["npmi"])
    # The drift baseline: the training split scored as the scorer scores (softmax(mu), eval mode).
    import pyarrow.parquet as pq

    from ntm_spark.core.contract import read_drift_baseline, split_files

    baseline = read_drift_baseline(tmp_path)
    table = pq.ParquetDataset([str(f) for f in split_files(bow_corpus, "train")]).read()
    dense = torch.zeros(table.num_rows, 120)
    for i, (idx, val) in enumerate(zip(table.column("indices").to_pylist(), table.column("values").to_pylist())):
        dense[i, idx] = torch.tensor(val)
    with torch.no_grad():
        weights = model.infer_topics(dense).numpy()
    assert baseline.documents == table.num_rows and baseline.split == "train"
    np.testing.assert_allclose(baseline.prevalence, weights.mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(baseline.std, weights.std(axis=0), atol=1e-5)
    assert baseline.oov_rate is None  # the synthetic corpus's manifest has no token counts: unknown


def _csv_metric(out, key):
    import csv

    rows = list(csv.DictReader(open(next(out.glob("logs/version_*/metrics.csv")))))
    return [float(r[key]) for r in rows if r.get(key)]


def test_synthetic_topics_beat_random_topics(bow_corpus, tmp_path):
    result = train_model(_cfg(bow_corpus, tmp_path, epochs=15, num_patience_epochs=15))
    import pyarrow.parquet as pq

    from ntm_spark.core.topic_metrics import npmi_coherence

    docs = [np.array(d) for f in sorted((bow_corpus / "test").glob("*.parquet")) for d in pq.read_table(f)["indices"].to_pylist()]
    random_top = np.random.default_rng(0).choice(120, size=(6, 10))
    assert result.metrics["test_npmi"] > npmi_coherence(random_top, docs) + 0.1


def test_resume_from_last_checkpoint(bow_corpus, tmp_path):
    train_model(_cfg(bow_corpus, tmp_path, epochs=2))
    result = train_model(_cfg(bow_corpus, tmp_path, epochs=3, resume="last"))
    assert result.epochs_trained == 3
    with pytest.raises(ConfigError, match="train.resume"):
        train_model(_cfg(bow_corpus, tmp_path, resume=str(tmp_path / "nope.ckpt")))


def test_seeded_runs_are_identical(bow_corpus, tmp_path):
    a = train_model(_cfg(bow_corpus, tmp_path / "a", epochs=2, checkpoint=False))
    b = train_model(_cfg(bow_corpus, tmp_path / "b", epochs=2, checkpoint=False))
    assert a.metrics["val_loss"] == b.metrics["val_loss"]
    assert np.array_equal(np.load(tmp_path / "a" / "topic_word.npy"), np.load(tmp_path / "b" / "topic_word.npy"))


@pytest.mark.parametrize("resident", [False, True])
def test_steps_per_execution_takes_the_same_optimizer_steps(bow_corpus, tmp_path, resident):
    # Grouping batches per Lightning step changes only the call overhead: same batches, same
    # order, one optimizer step each (the default preset's KL warm-up counts steps too).
    kw = {"epochs": 2, "checkpoint": False, "resident": resident}
    a = train_model(_cfg(bow_corpus, tmp_path / "a", steps_per_execution=1, **kw))
    b = train_model(_cfg(bow_corpus, tmp_path / "b", steps_per_execution=3, **kw))
    assert a.metrics["val_loss"] == pytest.approx(b.metrics["val_loss"], rel=1e-6)
    np.testing.assert_allclose(np.load(tmp_path / "a" / "topic_word.npy"), np.load(tmp_path / "b" / "topic_word.npy"), rtol=1e-5, atol=1e-7)


def test_clip_gradient_changes_the_updates(bow_corpus, tmp_path):
    kw = {"epochs": 1, "checkpoint": False, "optimizer": "sgd", "learning_rate": 0.1, "preset": "sagemaker"}
    train_model(_cfg(bow_corpus, tmp_path / "a", **kw))
    train_model(_cfg(bow_corpus, tmp_path / "b", clip_gradient=0.001, **kw))
    assert not np.allclose(np.load(tmp_path / "a" / "topic_word.npy"), np.load(tmp_path / "b" / "topic_word.npy"))


def test_topic_similarity_weight_pushes_the_linear_decoders_topics_apart(bow_corpus, tmp_path):
    from lightning_module.model_folder import load_model_folder
    from lightning_module.system import NTMSystem

    kw = {"epochs": 3, "checkpoint": False, "optimizer": "adam", "learning_rate": 0.01, "preset": "sagemaker", "min_epochs": 0}
    train_model(_cfg(bow_corpus, tmp_path / "off", topic_similarity_weight=0.0, **kw))
    train_model(_cfg(bow_corpus, tmp_path / "on", topic_similarity_weight=1000.0, **kw))
    off, on = (float(load_model_folder(tmp_path / name)[0].topic_similarity()) for name in ("off", "on"))
    assert on < 0.5 * off, (on, off)
    with pytest.raises(ValueError, match="topic_similarity_weight=-1.0"):
        NTMSystem(vocab_size=30, num_topics=4, topic_similarity_weight=-1.0)
    with pytest.raises(ValueError, match=r"ecr_background_mass=1.0: use a number in \[0, 1\)"):
        NTMSystem(vocab_size=30, num_topics=4, ecr_background_mass=1.0)


def test_no_validation_split_monitors_train_loss(tmp_path):
    from lightning_module.synthetic import write_synthetic_corpus

    data = write_synthetic_corpus(tmp_path / "d", n_docs=(120, 0, 0), vocab_size=40, row_group_size=30)
    with pytest.warns(UserWarning, match="monitors the training loss"):
        result = train_model(_cfg(data, tmp_path / "m", epochs=2, num_topics=3, checkpoint=False))
    assert "train_loss" in result.metrics and "val_loss" not in result.metrics


def test_model_folder_loads_with_torch_and_numpy_only(bow_corpus, tmp_path):
    train_model(_cfg(bow_corpus, tmp_path, epochs=1, checkpoint=False))
    code = (
        "import sys\n"
        "for m in ('pytorch_lightning', 'lightning', 'pyspark', 'mlflow', 'pyarrow', 'pandas', 'yaml'):\n"
        "    sys.modules[m] = None\n"
        "import torch\n"
        "from lightning_module.model_folder import load_model_folder\n"
        f"model, hp, vocab = load_model_folder({str(tmp_path)!r})\n"
        "print(model.infer_topics(torch.ones(2, len(vocab))).shape)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "torch.Size([2, 6])" in out.stdout


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_short_run_on_gpu(bow_corpus, tmp_path):
    result = train_model(_cfg(bow_corpus, tmp_path, accelerator="gpu", epochs=2, num_workers=2))
    assert np.isfinite(result.metrics["val_loss"])


def test_default_preset_trains_the_embedding_decoder_on_ppmi_vectors(bow_corpus, tmp_path):
    from lightning_module.data import document_cooccurrence
    from lightning_module.model import ppmi_word_vectors

    train_model(_cfg(bow_corpus, tmp_path, epochs=2, checkpoint=False, embedding_dim=16, log_every_n_steps=1))
    model, hparams, _ = load_model_folder(tmp_path)
    assert hparams["model"]["decoder"] == "embedding" and hparams["training"]["ecr_weight"] == 1000.0
    counts, n = document_cooccurrence(bow_corpus, 120)
    assert torch.allclose(model.word_embeddings, ppmi_word_vectors(counts, n, 16))  # fixed: still the PPMI vectors
    ecr = _csv_metric(tmp_path, "train/ecr")
    assert ecr and all(np.isfinite(ecr))


def test_word_vectors_from_a_npy_file_and_its_errors(bow_corpus, tmp_path):
    from ntm_spark.core.config import ConfigError

    vectors = np.random.default_rng(0).normal(size=(120, 8)).astype(np.float32)
    np.save(tmp_path / "vec.npy", vectors)
    train_model(_cfg(bow_corpus, tmp_path / "run", epochs=1, checkpoint=False, embedding_dim=8, word_embeddings=str(tmp_path / "vec.npy")))
    model, _, _ = load_model_folder(tmp_path / "run")
    expected = torch.nn.functional.normalize(torch.from_numpy(vectors), dim=1)
    assert torch.allclose(model.word_embeddings, expected)
    with pytest.raises(ConfigError, match=r"shape \(120, 8\).*\(120, 16\)"):
        train_model(_cfg(bow_corpus, tmp_path / "bad", embedding_dim=16, word_embeddings=str(tmp_path / "vec.npy")))
    with pytest.raises(ConfigError, match="no file at"):
        train_model(_cfg(bow_corpus, tmp_path / "bad", word_embeddings=str(tmp_path / "missing.npy")))


def test_linear_decoder_override_keeps_the_seed_decoder(bow_corpus, tmp_path):
    train_model(_cfg(bow_corpus, tmp_path, epochs=1, checkpoint=False, decoder="linear"))
    model, hparams, _ = load_model_folder(tmp_path)
    assert "decoder" not in hparams["model"] and isinstance(model.decoder, torch.nn.Linear)


class _GradSeen(pl.Callback):
    """Overrides a per-step hook, so the system must take Lightning's wrapped steps."""

    def __init__(self):
        self.calls = 0

    def on_after_backward(self, trainer, pl_module):
        self.calls += 1


@pytest.mark.parametrize("callback", [False, True])
def test_direct_steps_take_the_same_updates_as_lightnings_wrappers(bow_corpus, callback):
    from lightning_module.data import BowDataModule
    from lightning_module.system import NTMSystem

    def fit(direct):
        pl.seed_everything(3, verbose=False)
        system = NTMSystem(vocab_size=len(BowDataModule(str(bow_corpus)).vocab), num_topics=4, optimizer="adam",
                           learning_rate=0.01, direct_steps=direct)  # fmt: skip
        cbs = [_GradSeen()] if callback else []
        trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, callbacks=cbs, num_sanity_val_steps=0)  # fmt: skip
        trainer.fit(system, datamodule=BowDataModule(str(bow_corpus), batch_size=32, seed=1))
        return system, trainer, cbs

    direct, t_direct, cbs = fit(True)
    wrapped, t_wrapped, _ = fit(False)
    assert direct._direct_steps() is (not callback)  # a hook someone relies on keeps the wrapped path
    assert not wrapped._direct_steps()
    if callback:
        assert cbs[0].calls == t_direct.global_step > 0
    assert t_direct.global_step == t_wrapped.global_step > 0  # Lightning's step counter still advances
    for (name, a), (_, b) in zip(direct.state_dict().items(), wrapped.state_dict().items()):
        assert torch.equal(a, b), name


def test_without_a_test_split_the_topic_metrics_come_from_train_plus_validation(bow_corpus, tmp_path):
    """Issue 18: no test split -> NPMI over train+validation (heldout falls back), TU and diversity; never nan."""
    import math
    import shutil

    data = tmp_path / "data"
    shutil.copytree(bow_corpus, data)
    shutil.rmtree(data / "test")
    result = train_model(_cfg(data, tmp_path / "out", epochs=2))
    m = result.metrics
    assert all(math.isfinite(m[k]) for k in ("npmi", "tu", "diversity")), m
    import pyarrow.parquet as pq

    n_ref = sum(pq.read_metadata(f).num_rows for s in ("train", "validation") for f in (data / s).glob("*.parquet"))
    assert m["npmi_reference_docs"] == n_ref
    folder_metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert folder_metrics["npmi"] == pytest.approx(m["npmi"]) and folder_metrics["collapsed"] in (0.0, 1.0)
    training = json.loads((tmp_path / "out" / "hparams.json").read_text())["training"]
    assert training["npmi_reference"] == {"splits": "train+validation", "documents": n_ref, "setting": "train+heldout"}


def test_npmi_reference_setting_changes_the_reference(bow_corpus, tmp_path):
    whole = train_model(_cfg(bow_corpus, tmp_path / "a", epochs=1, npmi_reference="test"))
    import pyarrow.parquet as pq

    assert whole.metrics["npmi_reference_docs"] == sum(pq.read_metadata(f).num_rows for f in (bow_corpus / "test").glob("*.parquet"))
