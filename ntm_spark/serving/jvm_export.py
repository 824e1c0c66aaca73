r"""The JVM scorer's export: a registered model's encoder, text rules and tables in files Java reads.

Spark's real-time mode refuses Python operators, so ``--trigger real_time`` scores with a Java
UDF (``conf/jvm/src/io/github/ntmspark/scorer``, built by ``make jars``). The Python scorer
(:class:`~ntm_spark.serving.scoring.TopicScorer`) stays the definition; this module writes
what the Java twin needs to give the same answer, once, when the model folder is staged for
registration (:func:`ntm_spark.serving.pyfunc_model.stage_model_folder`)::

    jvm/scorer.json    format version, text rules (rule set, clean, stop words), the encoder's
                       layers in order, feature_dim, num_topics, vocab sha256, topic words
    jvm/unicode.json   this Python's \w, \s, isalpha, isdigit, isalnum, cased, case-ignorable
                       and str.lower() tables (:func:`ntm_spark.core.text.unicode_tables`)
    jvm/<name>.npy     each encoder tensor, float32 little-endian, C order

``.npy`` and JSON rather than ONNX: the encoder is a few dense layers (no runtime worth a
150 MB dependency on every executor), ``.npy`` is raw float32 behind a one-line header that
``numpy.load`` reads back in a test, and the Java side needs only Jackson, which Spark ships.
The JVM scorer also reads the model folder's ``vocab.txt`` and ``lemmas.json`` as they are.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Union

import numpy as np

from ntm_spark.core.contract import (
    JVM_EXPORT_DIR,
    JVM_EXPORT_FORMAT_VERSION,
    JVM_SCORER_FILE,
    JVM_UNICODE_FILE,
    read_lemma_table,
    read_manifest,
    read_topic_word,
    text_rules_from_manifest,
    top_words,
)
from ntm_spark.core.text import V2_LEMMA_OVERRIDES, resolve_stop_words, unicode_tables
from ntm_spark.core.vocab import Vocabulary

#: The rule sets the Java scorer implements; it refuses a model with another, naming it.
JVM_TEXT_RULES = ("notebook", "v1", "v2")
#: Top words per topic written for ``top_topics`` (the Python scorer keeps 10).
TOPIC_WORDS = 10


class JvmExportError(ValueError):
    """The model cannot be exported for the JVM scorer; the message says why and what to do."""


def _save(folder: Path, name: str, tensor: Any) -> str:
    arr = np.ascontiguousarray(tensor.detach().cpu().numpy(), dtype="<f4")
    np.save(folder / f"{name}.npy", arr, allow_pickle=False)
    return f"{name}.npy"


def _linear(folder: Path, name: str, layer: Any) -> dict:
    return {
        "kind": "linear",
        "in": int(layer.in_features),
        "out": int(layer.out_features),
        "weight": _save(folder, f"{name}.weight", layer.weight),  # (out, in)
        "bias": _save(folder, f"{name}.bias", layer.bias),  # (out,)
    }


def _batch_norm(folder: Path, name: str, layer: Any) -> dict:
    out = {
        "kind": "batch_norm",
        "size": int(layer.num_features),
        "eps": float(layer.eps),
        "running_mean": _save(folder, f"{name}.running_mean", layer.running_mean),
        "running_var": _save(folder, f"{name}.running_var", layer.running_var),
    }
    if layer.affine:
        out["weight"] = _save(folder, f"{name}.weight", layer.weight)
        out["bias"] = _save(folder, f"{name}.bias", layer.bias)
    return out


def _encoder_layers(folder: Path, model: Any) -> list[dict]:
    """The encoder as a list of layer records, in the order ``NTMModel.encode`` applies them (eval mode)."""
    from torch import nn

    from lightning_module.model import NTMModel

    if not isinstance(model, NTMModel):
        raise JvmExportError(f"model is a {type(model).__name__}, not an NTMModel: export a model folder written by `ntm train`.")
    activations = {nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.ReLU: "relu", nn.Softplus: "softplus"}
    layers: list[dict] = []
    for i, layer in enumerate(model.encoder):
        if isinstance(layer, nn.Linear):
            layers.append(_linear(folder, f"encoder.{i}", layer))
        elif isinstance(layer, nn.BatchNorm1d):
            layers.append(_batch_norm(folder, f"encoder.{i}", layer))
        elif type(layer) in activations:
            if isinstance(layer, nn.Softplus) and (layer.beta != 1 or layer.threshold != 20):
                raise JvmExportError(f"encoder.{i} is Softplus(beta={layer.beta}, threshold={layer.threshold}): the JVM scorer has beta=1, threshold=20.")
            layers.append({"kind": "activation", "name": activations[type(layer)]})
        else:
            raise JvmExportError(
                f"encoder layer {i} is {type(layer).__name__}, which the JVM scorer does not implement: "
                "score this model with the Python scorer (a processing_time trigger)."
            )
    # encoder_dropout is the identity in eval mode; mu, then mu_bn (batch norm without affine, or identity).
    layers.append(_linear(folder, "mu", model.mu))
    if isinstance(model.mu_bn, nn.BatchNorm1d):
        layers.append(_batch_norm(folder, "mu_bn", model.mu_bn))
    elif not isinstance(model.mu_bn, nn.Identity):
        raise JvmExportError(f"mu_bn is {type(model.mu_bn).__name__}: the JVM scorer implements batch norm or nothing there.")
    return layers


def export_jvm_scorer(folder: Union[str, Path], model: Any = None) -> Path:
    """Write the JVM scorer's export (``jvm/``) into a local model folder and return its path.

    Args:
        folder: A local model folder with ``lemmas.json`` (a staged, registered model folder).
        model: The folder's ``NTMModel``; default: loaded from the folder.

    Raises:
        JvmExportError: when the model uses a layer the JVM scorer lacks, or the folder has no
            closed lemma table (the JVM scorer has no WordNet). The rule set is written whatever
            it is: the Java scorer refuses one it lacks, naming it.
    """
    from lightning_module.model_folder import load_model_folder

    folder = Path(folder)
    if model is None:
        model, _hparams, words = load_model_folder(folder)
    else:
        words = Vocabulary.from_file(folder / "vocab.txt").words
    vocab = Vocabulary(words)
    rules = text_rules_from_manifest(read_manifest(folder, required=False))
    _table, closed = read_lemma_table(folder, vocab)
    if not closed:
        raise JvmExportError(
            f"{str(folder)!r} has no lemmas.json closed over its vocabulary: the JVM scorer has no WordNet. "
            "Stage the folder with ntm_spark.serving.pyfunc_model.stage_model_folder (it writes the table first)."
        )
    out = folder / JVM_EXPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    tw = read_topic_word(folder, len(vocab))
    scorer = {
        "format_version": JVM_EXPORT_FORMAT_VERSION,
        "feature_dim": len(vocab),
        "num_topics": int(model.num_topics),
        "vocab_sha256": vocab.sha256,
        "text_rules": {
            "rules": rules["rules"],
            "clean": bool(rules["clean"]),
            "stop_words": sorted(resolve_stop_words(rules["stop_words"])),
            "v2_lemma_overrides": dict(V2_LEMMA_OVERRIDES),
        },
        "encoder_input": model.encoder_input,
        "layers": _encoder_layers(out, model),
        "topic_words": top_words(tw, list(words), TOPIC_WORDS) if tw is not None else [],
    }
    (out / JVM_UNICODE_FILE).write_text(json.dumps(unicode_tables(), separators=(",", ":"), ensure_ascii=True), encoding="utf-8")
    (out / JVM_SCORER_FILE).write_text(json.dumps(scorer, separators=(",", ":"), ensure_ascii=False), encoding="utf-8")
    return out
