r"""The dataset folder and the model folder: their files, and the one place that reads them.

Preprocessing writes a *dataset folder*; training reads it and writes a *model folder*;
the registry, serving, streaming, backfill and the report read that. Every module asks
this one for a file's name, its content or a check between two files, and none opens
them itself (docs/architecture.md). Only numpy and json: no Spark, torch or MLflow (the
weights themselves are torch's business: :mod:`lightning_module.model_folder`).
Every folder may be a local path or a URI (``s3://``, ``gs://``, ``abfss://``, ``hdfs://``...):
files are read through :mod:`ntm_spark.core.storage`, and local paths keep the plain
:mod:`pathlib` route.

Dataset folder (``ntm preprocess``)::

    <data_dir>/
      train/ validation/ test/   Parquet shards (ntm_spark.core.schema's bag-of-words columns)
      vocab.txt                  the vocabulary, one word per line, index order
      manifest.json              counts, parameters, text rules, source, code version

Model folder (``ntm train``)::

    <model_dir>/
      model.pt  hparams.json  vocab.txt  manifest.json  config.yaml  metrics.json
      topic_word.npy  topics.csv  topics.md  drift_baseline.json
      [lemmas.json, jvm/, added when registered]

    jvm/                       the JVM scorer's export (``--trigger real_time``), written once when registered:
      scorer.json              format version, text rules, stop words, encoder layers, topic words
      unicode.json             this Python's \w, \s, isalpha..., str.lower() tables
      <tensor>.npy             float32 little-endian encoder weights, one file per tensor

``manifest.json``'s ``splits.<split>`` entries hold ``documents``, and (since issue 21)
``tokens`` and ``in_vocab_tokens``: the split's normalized tokens and, of those, the ones
in the vocabulary, counted before short documents are dropped (:func:`split_token_counts`).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from ntm_spark.core import storage
from ntm_spark.core.drift import DriftBaseline
from ntm_spark.core.schema import MANIFEST_FILE, SPLITS, VOCAB_FILE
from ntm_spark.core.text import LEGACY_TEXT_RULES, TEXT_RULE_SETS, resolve_text_rules
from ntm_spark.core.topic_matching import TopicStability
from ntm_spark.core.vocab import Vocabulary

PathLike = Union[str, "os.PathLike[str]"]

# --------------------------------------------------------------------------- file names

MODEL_FILE = "model.pt"
HPARAMS_FILE = "hparams.json"
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"
TOPIC_WORD_FILE = "topic_word.npy"
TOPICS_CSV = "topics.csv"
TOPICS_MD = "topics.md"
#: The registered model's token -> lemma table (closed over the vocabulary).
LEMMAS_FILE = "lemmas.json"
#: The JVM scorer's export (:mod:`ntm_spark.serving.jvm_export` writes it, the Java scorer reads it).
JVM_EXPORT_DIR = "jvm"
JVM_SCORER_FILE = "scorer.json"
JVM_UNICODE_FILE = "unicode.json"
#: The export's format; the Java scorer refuses any other.
JVM_EXPORT_FORMAT_VERSION = 1
#: The training split's topic prevalence and OOV rate (:class:`~ntm_spark.core.drift.DriftBaseline`).
DRIFT_BASELINE_FILE = "drift_baseline.json"
#: A warm-started model's topic ids against the model it started from (:class:`~ntm_spark.core.topic_matching.TopicStability`).
TOPIC_STABILITY_FILE = "topic_stability.json"
#: Files of a model folder that serving carries (checkpoints and logs stay behind).
MODEL_FOLDER_FILES = (
    MODEL_FILE, HPARAMS_FILE, VOCAB_FILE, MANIFEST_FILE, CONFIG_FILE, METRICS_FILE, TOPIC_WORD_FILE, TOPICS_CSV, TOPICS_MD,
    DRIFT_BASELINE_FILE, TOPIC_STABILITY_FILE,
)  # fmt: skip
#: Keys of a manifest's ``splits.<split>`` entry: normalized tokens, and those in the vocabulary.
TOKENS_KEY = "tokens"
IN_VOCAB_TOKENS_KEY = "in_vocab_tokens"


class ContractError(ValueError):
    """A dataset or model folder is missing a file, or two of its files disagree; the message names the path."""


class DataNotFoundError(ContractError, FileNotFoundError):
    """The preprocessing output is missing or incomplete."""


# --------------------------------------------------------------------------- dataset folder


def split_files(data_dir: PathLike, split: str, required: bool = False) -> list[Path]:
    """Return the sorted Parquet files of one split (``[]`` when absent, unless ``required``).

    A local ``data_dir`` gives :class:`~pathlib.Path` objects; a URI (``s3://...``) gives URI strings.

    Raises:
        ValueError: for an unknown split.
        DataNotFoundError: with ``required``, naming the folder and the splits that exist.
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: choose one of {list(SPLITS)}.")
    if storage.is_remote(data_dir):
        return _remote_split_files(data_dir, split, required)
    data_dir = storage.local_path(data_dir)
    folder = data_dir / split
    files = sorted(p for p in folder.rglob("*.parquet") if not p.name.startswith((".", "_"))) if folder.is_dir() else []
    if required and not files:
        if not data_dir.is_dir():
            raise DataNotFoundError(
                f"data folder {str(data_dir.resolve())!r} does not exist: run `ntm preprocess` first or pass its output_path."
            )
        present = [s for s in SPLITS if (data_dir / s).is_dir()]
        raise DataNotFoundError(f"split {split!r} has no Parquet files under {str(folder.resolve())!r}: use one of {present}.")
    return files


def _remote_split_files(data_dir: PathLike, split: str, required: bool) -> list:
    folder = storage.join(data_dir, split)
    files = storage.list_files(folder, ".parquet")
    if required and not files:
        if not storage.is_dir(data_dir):
            raise DataNotFoundError(
                f"data folder {str(data_dir)!r} does not exist: run `ntm preprocess` first or pass its output_path."
            )
        present = [s for s in SPLITS if storage.is_dir(storage.join(data_dir, s))]
        raise DataNotFoundError(f"split {split!r} has no Parquet files under {folder!r}: use one of {present}.")
    return files


def _file_in(path: PathLike, name: str) -> str:
    """Return ``path`` itself when it names a ``.json`` file, else ``path/name``."""
    text = str(path)
    if storage.is_remote(text):
        return text if text.partition("?")[0].endswith(".json") and not storage.is_dir(text) else storage.join(text, name)
    p = storage.local_path(text)
    return str(p if not p.is_dir() and p.name.endswith(".json") else p / name)


def read_manifest(path: PathLike, required: bool = True) -> Optional[dict[str, Any]]:
    """Read ``manifest.json`` of a dataset or model folder (or the file itself).

    Returns ``None`` when it is absent and not ``required``.

    Raises:
        DataNotFoundError: when ``required`` and absent, naming the path and the fix.
        ContractError: when the file is not a JSON object.
    """
    p = _file_in(path, MANIFEST_FILE)
    if not storage.is_file(p):
        if not required:
            return None
        raise DataNotFoundError(f"manifest {str(p)!r} does not exist: run `ntm preprocess` first (it writes one).")
    try:
        data = json.loads(storage.read_text(p))
    except ValueError as err:
        raise ContractError(f"manifest {str(p)!r} is not valid JSON ({err}): rewrite it with `ntm preprocess --overwrite`.") from err
    if not isinstance(data, dict):
        raise ContractError(f"manifest {str(p)!r} holds a {type(data).__name__}, not a JSON object.")
    return data


def split_document_count(manifest: Optional[dict[str, Any]], split: str) -> Optional[int]:
    """Return the documents the manifest says ``split`` holds, or ``None`` when it does not say (or there is no manifest)."""
    if not manifest:
        return None
    entry = (manifest.get("splits") or {}).get(split)
    if isinstance(entry, dict) and isinstance(entry.get("documents"), int):
        return int(entry["documents"])
    per_split = (manifest.get("documents") or {}).get("per_split") or {}
    return int(per_split[split]) if isinstance(per_split.get(split), int) else None


def split_token_counts(manifest: Optional[dict[str, Any]], split: str) -> tuple[Optional[int], Optional[int]]:
    """Return ``(tokens, in_vocab_tokens)`` the manifest records for ``split``; ``(None, None)`` when it does not.

    A manifest written before these counts existed (or none at all) means "unknown": drift
    then reports the stream's OOV rate without a baseline.
    """
    entry = ((manifest or {}).get("splits") or {}).get(split)
    if not isinstance(entry, dict):
        return None, None
    tokens, in_vocab = entry.get(TOKENS_KEY), entry.get(IN_VOCAB_TOKENS_KEY)
    if not isinstance(tokens, int) or not isinstance(in_vocab, int) or isinstance(tokens, bool) or isinstance(in_vocab, bool):
        return None, None
    return tokens, in_vocab


def read_vocabulary(folder: PathLike) -> Vocabulary:
    """Read ``vocab.txt`` of a dataset or model folder.

    Raises:
        DataNotFoundError: when it is missing, naming the job that writes it.
    """
    path = storage.join(folder, VOCAB_FILE)
    if not storage.is_file(path):
        raise DataNotFoundError(f"vocabulary {str(path)!r} not found: run `ntm preprocess` first or point at its output_path.")
    return Vocabulary.from_file(path)


def text_rules_from_manifest(manifest: Optional[dict]) -> dict:
    """Return the normalizer settings preprocessing used, from its manifest: ``rules``, ``clean``, ``stop_words``.

    The scorer must normalize exactly as preprocessing did, so the rules travel with
    the model (in its copy of ``manifest.json``); pass the result to
    :func:`ntm_spark.core.text.get_normalizer` (``get_normalizer(**rules)``). A manifest
    that names no rule set (everything written before rule sets had names, or no manifest
    at all) gets :data:`~ntm_spark.core.text.LEGACY_TEXT_RULES`, the rules it was written
    with, so an upgrade never changes how a served model scores.

    Raises:
        ContractError: when the manifest names a rule set this version does not know.
    """
    manifest = manifest or {}
    rules = manifest.get("text_rules") or {}
    params = manifest.get("params") or manifest.get("parameters") or {}
    clean = rules.get("clean", params.get("clean"))
    if clean is None:
        source = manifest.get("source")
        fmt = params.get("input_format") or (source.get("format") if isinstance(source, dict) else None)
        clean = fmt in (None, "20newsgroups")
    stop_words = rules.get("stop_words", params.get("stop_words", "english"))
    name = rules.get("rules") or LEGACY_TEXT_RULES
    try:
        name = resolve_text_rules(name)
    except ValueError as err:
        raise ContractError(
            f"the manifest's text_rules.rules={name!r} is not a rule set this ntm-spark knows "
            f"({list(TEXT_RULE_SETS)}): upgrade ntm-spark to the version that wrote it, or re-run `ntm preprocess`."
        ) from err
    return {"rules": name, "clean": bool(clean), "stop_words": stop_words}


# --------------------------------------------------------------------------- model folder


def is_model_folder(folder: PathLike) -> bool:
    """Whether ``folder`` holds weights and a vocabulary."""
    return storage.is_file(storage.join(folder, MODEL_FILE)) and storage.is_file(storage.join(folder, VOCAB_FILE))


def require_model_folder(folder: PathLike) -> Path:
    """Return ``folder`` as a Path (a URI as given), or raise naming what is missing and which command writes it."""
    folder = folder if storage.is_remote(folder) else Path(folder)
    missing = [name for name in (MODEL_FILE, VOCAB_FILE) if not storage.is_file(storage.join(folder, name))]
    if missing:
        raise ContractError(
            f"{str(folder)!r} is not a model folder (missing {', '.join(missing)}): pass the output_dir of `ntm train`."
        )
    return folder


def read_json_file(folder: PathLike, name: str) -> Optional[dict]:
    """Read one JSON file of a model folder (``hparams.json``, ``metrics.json``...), or ``None`` when absent."""
    path = storage.join(folder, name)
    if not storage.is_file(path):
        return None
    try:
        return json.loads(storage.read_text(path))
    except ValueError as err:
        raise ContractError(f"{str(path)!r} is not valid JSON ({err}): the model folder is damaged; retrain or re-download it.") from err


def read_topic_word(folder: PathLike, vocab_size: Optional[int] = None) -> Optional[np.ndarray]:
    """Return ``topic_word.npy`` as a (K, V) float array, or ``None`` when absent or of the wrong width.

    Raises:
        ContractError: when the file cannot be read as a 2-D array.
    """
    path = storage.join(folder, TOPIC_WORD_FILE)
    if not storage.is_file(path):
        return None
    try:
        tw = np.load(io.BytesIO(storage.read_bytes(path)) if storage.is_remote(path) else path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ContractError(f"{str(path)!r} is not a readable .npy array ({err}): retrain or re-download the model.") from err
    if tw.ndim != 2:
        raise ContractError(f"{str(path)!r} has shape {tw.shape}, not (topics, vocabulary): retrain or re-download the model.")
    if vocab_size is not None and tw.shape[1] != vocab_size:
        return None
    return tw


def top_words(topic_word: np.ndarray, words: list, n: int = 10) -> list[list[str]]:
    """Return each topic's ``n`` heaviest words."""
    return [[words[i] for i in np.argsort(-row)[:n]] for row in topic_word]


def read_lemma_table(folder_or_file: PathLike, vocab: Optional[Vocabulary] = None) -> tuple[Optional[dict], bool]:
    """Read a model folder's ``lemmas.json``: ``(token -> lemma, closed_over_vocab)``; ``(None, False)`` if absent.

    Two layouts are accepted: a plain ``{token: lemma}`` mapping (WordNet stays the
    fallback for other tokens), or ``{"lemmas": {...}, "closed_over_vocab": true,
    "vocab_sha256": ...}`` as written when a model is registered. A closed table only
    counts as closed for the vocabulary whose sha256 it names.
    """
    path = str(folder_or_file)
    if storage.is_dir(path):
        path = storage.join(path, LEMMAS_FILE)
    if not storage.is_file(path):
        return None, False
    data = json.loads(storage.read_text(path))
    if isinstance(data, dict) and isinstance(data.get("lemmas"), dict):
        closed = bool(data.get("closed_over_vocab"))
        if closed and vocab is not None and data.get("vocab_sha256") not in (None, vocab.sha256):
            closed = False
        return dict(data["lemmas"]), closed
    if not isinstance(data, dict):
        raise ContractError(f"lemma table {str(path)!r} must hold a JSON object of token -> lemma, got {type(data).__name__}.")
    return dict(data), False


def read_drift_baseline(folder: PathLike) -> Optional[DriftBaseline]:
    """Read a model folder's ``drift_baseline.json``, or ``None`` when absent (a model trained before issue 21).

    Raises:
        ContractError: when the file is not valid JSON or not a baseline, naming the path.
    """
    data = read_json_file(folder, DRIFT_BASELINE_FILE)
    if data is None:
        return None
    try:
        return DriftBaseline.from_dict(data, where=str(storage.join(folder, DRIFT_BASELINE_FILE)))
    except ValueError as err:
        raise ContractError(str(err)) from err


def write_drift_baseline(folder: PathLike, baseline: DriftBaseline) -> None:
    """Write ``drift_baseline.json`` into a local model folder."""
    path = Path(folder) / DRIFT_BASELINE_FILE
    path.write_text(json.dumps(baseline.to_dict(), indent=2), encoding="utf-8")


def read_topic_stability(folder: PathLike) -> Optional[TopicStability]:
    """Read a model folder's ``topic_stability.json``, or ``None`` when absent (a model trained from scratch).

    Raises:
        ContractError: when the file is not valid JSON or not a stability report, naming the path.
    """
    data = read_json_file(folder, TOPIC_STABILITY_FILE)
    if data is None:
        return None
    try:
        return TopicStability.from_dict(data)
    except ValueError as err:
        raise ContractError(f"{str(storage.join(folder, TOPIC_STABILITY_FILE))!r}: {err}") from err


def write_topic_stability(folder: PathLike, stability: TopicStability) -> None:
    """Write ``topic_stability.json`` into a local model folder."""
    path = Path(folder) / TOPIC_STABILITY_FILE
    path.write_text(json.dumps(stability.to_dict(), indent=2), encoding="utf-8")


def check_vocabulary_matches(data_dir: PathLike, words: list) -> None:
    """Check that a dataset folder's ``vocab.txt`` (when it has one) is the model's vocabulary.

    Raises:
        ContractError: naming both and the first difference.
    """
    path = storage.join(data_dir, VOCAB_FILE)
    if not storage.is_file(path):
        return
    theirs = read_vocabulary(data_dir).words
    if list(theirs) != list(words):
        diff = next((i for i, (a, b) in enumerate(zip(theirs, words)) if a != b), min(len(theirs), len(words)))
        raise ContractError(
            f"the vocabulary of {str(path)!r} ({len(theirs)} words) is not the model's ({len(words)} words; first difference "
            f"at index {diff}): use the data folder the model was trained on."
        )


def jvm_export_path(folder: PathLike, name: str = "") -> str:
    """Return the path of the JVM scorer's export folder (or of file ``name`` in it) in a model folder."""
    path = storage.join(folder, JVM_EXPORT_DIR)
    return storage.join(path, name) if name else path


def read_jvm_export(folder: PathLike) -> Optional[dict]:
    """Return a model folder's ``jvm/scorer.json``, or ``None`` when the model was registered without it.

    Raises:
        ContractError: when the file is not JSON or has another format version.
    """
    path = jvm_export_path(folder, JVM_SCORER_FILE)
    if not storage.is_file(path):
        return None
    try:
        data = json.loads(storage.read_text(path))
    except ValueError as err:
        raise ContractError(f"{str(path)!r} is not valid JSON ({err}): register the model again to rewrite it.") from err
    if not isinstance(data, dict) or data.get("format_version") != JVM_EXPORT_FORMAT_VERSION:
        version = data.get("format_version") if isinstance(data, dict) else None
        raise ContractError(
            f"{str(path)!r} has format_version={version!r}, this ntm-spark reads {JVM_EXPORT_FORMAT_VERSION}: "
            "register the model again with this version."
        )
    return data
