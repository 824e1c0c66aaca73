"""The model folder: what training writes and what the registry, serving and streaming read.

Layout (:func:`save_model_folder`)::

    <model_dir>/
      model.pt         state_dict of NTMModel (torch.save)
      hparams.json     {"format_version": 1, "model": NTMModel.config, "training": {...}}
      vocab.txt        the training vocabulary, one word per line, index order
      manifest.json    copied from the data folder when it has one
      config.yaml      the resolved train config of the run
      metrics.json     final metrics: val_* and test_* (loss, recon, kl, perplexity, npmi, tu,
                       diversity), plus npmi/tu/diversity (test if present, else val)
      topic_word.npy   (K, V) float32, each row a topic's word distribution
      topics.csv       topic, rank, word, weight (top words per topic)
      topics.md        the same as a readable table, with per-topic NPMI and TU
      drift_baseline.json  the training split's topic prevalence and OOV rate, when given
                       (lightning_module.drift_baseline; the stream's drift monitor reads it)
      topic_stability.json  a warm start's topic ids against the model it started from
                       (lightning_module.warm_start; the registry gate reads it)

:func:`load_model_folder` needs only torch and numpy (no Lightning, Spark or MLflow).
The folder may be a local path or a URI (``s3://``, ``gs://``, ``abfss://``, ``hdfs://``...),
reached through :mod:`ntm_spark.core.storage` (pyarrow.fs); a remote folder is written
locally first, then uploaded file by file.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from lightning_module.model import NTMModel
from ntm_spark.core import storage
from ntm_spark.core.contract import (  # the model folder's file names: the contract's
    CONFIG_FILE,
    HPARAMS_FILE,
    METRICS_FILE,
    MODEL_FILE,
    TOPIC_WORD_FILE,
    TOPICS_CSV,
    TOPICS_MD,
    write_drift_baseline,
    write_topic_stability,
)
from ntm_spark.core.schema import MANIFEST_FILE, VOCAB_FILE

FORMAT_VERSION = 1


class ModelFolderError(ValueError):
    """A model folder is missing files or does not match its vocabulary."""


def save_model_folder(
    path: str | os.PathLike,
    model: NTMModel,
    vocab: Sequence[str],
    metrics: Optional[dict[str, Any]] = None,
    config: Optional[dict[str, Any]] = None,
    manifest_path: Optional[str | os.PathLike] = None,
    training: Optional[dict[str, Any]] = None,
    topic_npmi: Optional[np.ndarray] = None,
    topic_tu: Optional[np.ndarray] = None,
    top_n: int = 10,
    drift_baseline: Any = None,
    topic_stability: Any = None,
) -> Path:
    """Write a model folder (see the module docstring).

    Args:
        path: The folder, local or a URI; created if missing, files in it are overwritten.
        model: The trained model (any device; saved on CPU).
        vocab: Vocabulary words; ``len(vocab)`` must equal ``model.vocab_size``.
        metrics: Final metrics for ``metrics.json``.
        config: The resolved train config for ``config.yaml``.
        manifest_path: The data folder's ``manifest.json`` (local or a URI), copied when it exists.
        training: Extra facts for ``hparams.json["training"]`` (preset, epochs...).
        topic_npmi: Per-topic NPMI ``(K,)`` for ``topics.md``.
        topic_tu: Per-topic TU ``(K,)`` for ``topics.md``.
        top_n: Top words per topic in ``topics.csv``/``topics.md``.
        drift_baseline: The training split's :class:`~ntm_spark.core.drift.DriftBaseline`
            (``drift_baseline.json``; omitted when ``None``).
        topic_stability: A warm start's :class:`~ntm_spark.core.topic_matching.TopicStability`
            (``topic_stability.json``; omitted when ``None``).

    Returns:
        The folder path (a URI as given).
    """
    if len(vocab) != model.vocab_size:
        raise ModelFolderError(
            f"vocab has {len(vocab)} words but the model's vocab_size is {model.vocab_size}: "
            "pass the vocabulary the model was trained on."
        )
    if storage.is_remote(path):
        with tempfile.TemporaryDirectory(prefix="ntm-model-") as tmp:
            staged_manifest = None
            if manifest_path is not None and storage.is_file(manifest_path):
                staged_manifest = Path(tmp) / "_data_manifest.json"
                storage.copy_file(manifest_path, staged_manifest)
            local = _save_local(
                Path(tmp) / "model", model, vocab, metrics, config, staged_manifest, training, topic_npmi, topic_tu, top_n, drift_baseline,
                topic_stability,
            )
            storage.make_dirs(path)
            for item in sorted(local.iterdir()):
                storage.copy_file(item, storage.join(path, item.name))
        return path  # type: ignore[return-value]
    return _save_local(
        Path(path), model, vocab, metrics, config, manifest_path, training, topic_npmi, topic_tu, top_n, drift_baseline, topic_stability
    )


def _save_local(
    path: Path, model, vocab, metrics, config, manifest_path, training, topic_npmi, topic_tu, top_n, drift_baseline=None, topic_stability=None
) -> Path:
    import yaml

    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save(state, path / MODEL_FILE)
    hparams = {"format_version": FORMAT_VERSION, "model": model.config, "training": training or {}}
    (path / HPARAMS_FILE).write_text(json.dumps(hparams, indent=2))
    (path / VOCAB_FILE).write_text("".join(f"{w}\n" for w in vocab), encoding="utf-8")
    if manifest_path is not None and storage.is_file(manifest_path):
        storage.copy_file(manifest_path, path / MANIFEST_FILE)
    if config is not None:
        (path / CONFIG_FILE).write_text(yaml.safe_dump(config, sort_keys=False))
    (path / METRICS_FILE).write_text(json.dumps(metrics or {}, indent=2, sort_keys=True))
    was_training = model.training
    model.eval()
    topic_word = model.topic_word().float().cpu().numpy()  # (K, V)
    model.train(was_training)
    np.save(path / TOPIC_WORD_FILE, topic_word)
    write_topics(path, topic_word, vocab, top_n, topic_npmi, topic_tu)
    if drift_baseline is not None:
        write_drift_baseline(path, drift_baseline)
    if topic_stability is not None:
        write_topic_stability(path, topic_stability)
    return path


def write_topics(
    path: Path,
    topic_word: np.ndarray,
    vocab: Sequence[str],
    top_n: int = 10,
    topic_npmi: Optional[np.ndarray] = None,
    topic_tu: Optional[np.ndarray] = None,
) -> None:
    """Write ``topics.csv`` and ``topics.md`` (top words per topic with weights)."""
    from ntm_spark.core.topic_metrics import top_words, write_top_words_csv

    top = top_words(topic_word, top_n)
    write_top_words_csv(path / TOPICS_CSV, topic_word, vocab, top)
    lines = ["| topic | npmi | tu | top words (weight) |", "|---:|---:|---:|---|"]
    for k, ids in enumerate(top):
        words = ", ".join(f"{vocab[i]} ({topic_word[k, i]:.3f})" for i in ids)
        npmi = f"{topic_npmi[k]:.3f}" if topic_npmi is not None else ""
        tu = f"{topic_tu[k]:.2f}" if topic_tu is not None else ""
        lines.append(f"| {k} | {npmi} | {tu} | {words} |")
    (path / TOPICS_MD).write_text("\n".join(lines) + "\n", encoding="utf-8")


def load_model_folder(path: str | os.PathLike, map_location: str = "cpu") -> tuple[NTMModel, dict[str, Any], list[str]]:
    """Load a model folder written by :func:`save_model_folder`.

    Args:
        path: The folder, local or a URI.
        map_location: Where to put the weights (``"cpu"`` by default).

    Returns:
        ``(model, hparams, vocab)``: the model in ``eval()`` mode, the parsed
        ``hparams.json`` and the vocabulary words.

    Raises:
        ModelFolderError: when a required file is missing, the vocabulary size differs or the weights cannot be loaded.
    """
    path = path if storage.is_remote(path) else Path(path)
    for name in (MODEL_FILE, HPARAMS_FILE, VOCAB_FILE):
        if not storage.exists(storage.join(path, name)):
            raise ModelFolderError(f"model folder {str(path)!r} has no {name}: point at a folder written by `ntm train`.")
    hparams = json.loads(storage.read_text(storage.join(path, HPARAMS_FILE)))
    if hparams.get("format_version") != FORMAT_VERSION:
        raise ModelFolderError(
            f"hparams.json format_version={hparams.get('format_version')!r} in {str(path)!r}: "
            f"this code reads version {FORMAT_VERSION}; retrain or upgrade ntm-spark."
        )
    vocab = storage.read_text(storage.join(path, VOCAB_FILE)).splitlines()
    model = NTMModel.from_config(hparams["model"])
    if len(vocab) != model.vocab_size:
        raise ModelFolderError(
            f"vocab.txt has {len(vocab)} words but hparams.json says vocab_size={model.vocab_size}: the folder is inconsistent."
        )
    weights = storage.join(path, MODEL_FILE)
    source = io.BytesIO(storage.read_bytes(weights)) if storage.is_remote(weights) else weights
    try:
        state = torch.load(source, map_location=map_location, weights_only=True)
        model.load_state_dict(state)
    except (RuntimeError, EOFError, pickle.UnpicklingError) as err:  # torch reports a truncated or foreign file so
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ModelFolderError(
            f"{MODEL_FILE} in {str(path)!r} cannot be loaded ({type(err).__name__}: {first}): the file is corrupt, "
            "truncated or from another model; copy the model folder again or retrain."
        ) from err
    model.eval()
    return model, hparams, vocab
