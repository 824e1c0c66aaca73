"""Warm start: train a challenger from the champion's weights and vocabulary, keeping its topic ids.

``ntm train --warm-start models:/<name>@champion --data NEW`` (docs/train.md "Warm start"):

1. :func:`load_warm_start` reads the champion's model folder (weights, vocabulary, topics).
2. :func:`prepare_warm_start_data` puts the new data on the champion's vocabulary, counts
   the words it does not have (reported, never silently lost), and mixes in a replay sample
   of the champion's own training data, into a data folder training reads as usual.
3. Training starts from the champion's weights (:func:`lightning_module.train.train_model`
   with ``warm_start=``), then :func:`align_to_reference` reorders the new topics so that
   each keeps the id of the champion topic it matches (Hungarian assignment,
   :mod:`ntm_spark.core.topic_matching`) and writes ``topic_stability.json``: per topic how
   far it moved, and which are new or retired.

Imports neither pyspark nor mlflow: the registry reference is resolved above this layer
(:mod:`ntm_spark.serving.warm_start`), which hands a local model folder in.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from lightning_module.data import Csr, list_row_groups, open_parquet, table_to_csr
from lightning_module.model import NTMModel
from lightning_module.model_folder import load_model_folder
from lightning_module.synthetic import write_csr_split
from ntm_spark.core.contract import (
    DataNotFoundError,
    read_manifest,
    read_vocabulary,
    split_files,
    split_token_counts,
)
from ntm_spark.core.schema import ID_COL, INDICES_COL, LABEL_COL, MANIFEST_FILE, SPLITS, VALUES_COL, VOCAB_FILE
from ntm_spark.core.topic_matching import (
    DEFAULT_MOVE_THRESHOLD,
    TopicStability,
    match_topics,
    topic_stability,
)
from ntm_spark.core.vocab import Vocabulary

log = logging.getLogger(__name__)

#: The new words listed in the report (by count); all are counted.
NEW_WORDS_LISTED = 50
#: Marks a finished data folder (a rerun, or every DDP rank re-running the command, reuses it).
DONE_FILE = "_WARM_START_DONE"


class WarmStartError(ValueError):
    """The warm start cannot go ahead; the message names the problem and the fix."""


@dataclass
class WarmStart:
    """The champion a run starts from.

    Attributes:
        folder: Its local model folder.
        reference: How reports name it, e.g. ``models:/ntm@champion (version 3)``.
        model: The loaded ``NTMModel`` (eval mode).
        hparams: Its ``hparams.json``.
        vocab: Its vocabulary words.
        topic_word: Its ``(K, V)`` topic-word distributions.
        data_dir: The data folder it was trained on (from ``hparams.json``), if recorded.
        facts: What :func:`prepare_warm_start_data` found (new words, replay), for the model folder.
    """

    folder: str
    reference: str
    model: NTMModel
    hparams: dict
    vocab: list[str]
    topic_word: np.ndarray
    data_dir: Optional[str] = None
    facts: dict = field(default_factory=dict)

    @property
    def num_topics(self) -> int:
        """K."""
        return int(self.model.num_topics)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The champion's weights."""
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}


def load_warm_start(folder: str | os.PathLike, reference: Optional[str] = None) -> WarmStart:
    """Load the champion's model folder.

    Raises:
        WarmStartError: when the folder is not a model folder, naming it.
    """
    try:
        model, hparams, vocab = load_model_folder(folder)
    except (OSError, ValueError) as err:
        raise WarmStartError(f"cannot warm-start from {str(folder)!r}: {err}") from err
    model.eval()
    topic_word = model.topic_word().float().cpu().numpy().astype(np.float64)  # (K, V)
    data_dir = (hparams.get("training") or {}).get("data_dir")
    return WarmStart(str(folder), reference or str(folder), model, hparams, list(vocab), topic_word, data_dir)


# --------------------------------------------------------------------------- topic ids


def permute_topics(model: NTMModel, order: Sequence[int]) -> None:
    """Reorder ``model``'s topics in place: new topic ``j`` is old topic ``order[j]``.

    Every topic-indexed tensor moves: the encoder's ``mu``/``log_sigma`` rows, ``mu``'s
    batch-norm statistics, the decoder's topic columns (linear) or topic vectors
    (embedding), and the prior. Document-topic weights and topic-word rows come out
    permuted the same way; the loss is unchanged.

    Raises:
        ValueError: when ``order`` is not a permutation of ``range(K)``.
    """
    k = int(model.num_topics)
    idx = torch.as_tensor(np.asarray(order, dtype=np.int64))
    if sorted(idx.tolist()) != list(range(k)):
        raise ValueError(f"order {list(order)!r} is not a permutation of the model's {k} topic ids.")
    with torch.no_grad():
        for layer in (model.mu, model.log_sigma):
            layer.weight.copy_(layer.weight[idx])
            layer.bias.copy_(layer.bias[idx])
        bn = model.mu_bn
        if isinstance(bn, torch.nn.BatchNorm1d):
            bn.running_mean.copy_(bn.running_mean[idx])
            bn.running_var.copy_(bn.running_var[idx])
        if model.decoder_kind == "linear":
            model.decoder.weight.copy_(model.decoder.weight[:, idx])  # (V, K)
        else:
            model.topic_embeddings.copy_(model.topic_embeddings[idx])  # (K, D)
        model.prior_mu.copy_(model.prior_mu[idx])
        model.prior_var.copy_(model.prior_var[idx])


def align_to_reference(
    model: NTMModel, warm: WarmStart, vocab: Sequence[str], top_n: int = 10, move_threshold: Optional[float] = None
) -> tuple[np.ndarray, TopicStability]:
    """Reorder ``model``'s topics to keep ``warm``'s ids, and measure how far each moved.

    ``move_threshold``: see :class:`~ntm_spark.core.topic_matching.TopicStability` (``None``: the default).

    Returns:
        ``(order, stability)``: the permutation applied (identity when nothing was swapped)
        and the per-id :class:`~ntm_spark.core.topic_matching.TopicStability`.
    """
    from ntm_spark.core.topic_matching import on_common_vocabulary

    was_training = model.training
    model.eval()
    new_tw = model.topic_word().float().cpu().numpy().astype(np.float64)
    ref, new = on_common_vocabulary(warm.topic_word, warm.vocab, new_tw, list(vocab))
    order = match_topics(ref, new)
    if not np.array_equal(order, np.arange(len(order))):
        permute_topics(model, order)
        new_tw = model.topic_word().float().cpu().numpy().astype(np.float64)
    model.train(was_training)
    threshold = DEFAULT_MOVE_THRESHOLD if move_threshold is None else float(move_threshold)
    stability = topic_stability(
        warm.topic_word, new_tw, warm.reference, move_threshold=threshold, vocabs=(warm.vocab, list(vocab)), top_n=top_n
    )
    return order, stability


def procrustes_align(vectors: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Rotate word ``vectors`` ``(V, D)`` onto ``reference`` ``(V, D)`` (orthogonal Procrustes); rows stay unit length.

    The embedding decoder's topics are vectors in the word vectors' space. New PPMI vectors
    (from the new data) come in another basis (an SVD's signs and order are arbitrary), so
    the champion's topic vectors would point at other words. The rotation ``R = U Vᵀ`` of
    ``svd(vectorsᵀ reference)`` brings them back: ``vectors @ R`` is as close to ``reference``
    as a rotation allows, and keeps every distance between words.
    """
    a, b = vectors.double(), reference.double()
    u, _s, vt = torch.linalg.svd(a.T @ b)  # (D, D)
    return torch.nn.functional.normalize(a @ (u @ vt), dim=1).to(vectors.dtype)


# --------------------------------------------------------------------------- data


def _remap_block(block: Csr, mapping: np.ndarray) -> tuple[Csr, np.ndarray]:
    """Translate ``block``'s word indices through ``mapping`` (old -> new, -1: dropped); rows stay ascending.

    Returns:
        ``(remapped block, dropped counts per old index)``.
    """
    new_idx = mapping[block.indices]
    rows = np.repeat(np.arange(len(block)), np.diff(block.indptr))
    dropped = np.bincount(block.indices[new_idx < 0], weights=block.values[new_idx < 0], minlength=len(mapping))
    keep = new_idx >= 0
    rows, cols, vals = rows[keep], new_idx[keep], block.values[keep]
    order = np.lexsort((cols, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    indptr = np.zeros(len(block) + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=len(block)), out=indptr[1:])
    return Csr(indptr, cols.astype(np.int32), vals.astype(np.float32), block.ids), dropped


def read_split(data_dir: str | os.PathLike, split: str) -> tuple[Csr, list[Optional[str]]]:
    """Read a whole split of a bag-of-words folder: ``(block with ids, labels)``."""
    blocks, labels = [], []
    for group in list_row_groups(split_files(data_dir, split)):
        table = open_parquet(group.path).read_row_group(group.index, columns=[ID_COL, LABEL_COL, INDICES_COL, VALUES_COL])
        blocks.append(table_to_csr(table, with_ids=True))
        labels.extend(table.column(LABEL_COL).to_pylist())
    return (Csr.concat(blocks) if blocks else Csr.empty(with_ids=True)), labels


def _nonempty(block: Csr, labels: list) -> tuple[Csr, list, int]:
    lens = np.diff(block.indptr)
    keep = np.flatnonzero(lens > 0)
    return block.take(keep), [labels[i] for i in keep], int(len(block) - len(keep))


def _sample(n: int, k: int, seed: int, salt: str) -> np.ndarray:
    digest = hashlib.sha256(f"{seed}:{salt}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    return np.sort(rng.choice(n, size=min(k, n), replace=False)) if k > 0 and n > 0 else np.zeros(0, np.int64)


def prepare_warm_start_data(
    new_data: str | os.PathLike,
    vocab: Sequence[str],
    dest: str | os.PathLike,
    replay_data: Optional[str | os.PathLike] = None,
    replay_fraction: float = 0.5,
    seed: int = 42,
    base_manifest: Optional[dict] = None,
) -> dict[str, Any]:
    """Write a data folder on the champion's vocabulary: the new documents plus a replay sample of the old.

    Each split of ``new_data`` (a preprocessing output, with its own ``vocab.txt``) is put on
    ``vocab``: words the champion does not know are dropped from the documents and counted
    (``new_words``), and a document left with no word is dropped and counted. Then, for the
    training and validation splits, ``replay_fraction`` documents of ``replay_data`` (the
    champion's training data) per new document are added, sampled with ``seed``. The test
    split, when there is one, is the new data's only.

    Args:
        new_data: The new data folder.
        vocab: The champion's vocabulary.
        dest: The folder to write (replaced when it exists but is unfinished; reused when finished).
        replay_data: The old data folder; ``None``: no replay.
        replay_fraction: Replayed documents per new document (0: none).
        seed: Sampling seed.
        base_manifest: The champion's data manifest (its text rules and vocabulary facts are kept).

    Returns:
        The facts written to the folder's ``manifest.json`` under ``warm_start``.

    Raises:
        WarmStartError: when the new data has no training documents left on the champion's vocabulary.
        DataNotFoundError: when a folder is not a preprocessing output.
    """
    dest = Path(dest)
    if (dest / DONE_FILE).is_file():
        return json.loads((dest / MANIFEST_FILE).read_text())["warm_start"]
    target = Vocabulary(vocab)
    work = dest.with_name(f".{dest.name}.{os.getpid()}.work")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    new_manifest = read_manifest(new_data, required=False) or {}
    sources = [("new", new_data, 1.0)]
    if replay_data is not None and replay_fraction > 0:
        sources.append(("replay", replay_data, float(replay_fraction)))
    facts: dict[str, Any] = {
        "new_data": str(new_data),
        "replay_data": str(replay_data) if replay_data is not None and replay_fraction > 0 else None,
        "replay_fraction": float(replay_fraction) if replay_data is not None else 0.0,
        "seed": int(seed),
        "splits": {},
    }
    new_word_counts: collections.Counter = collections.Counter()
    new_tokens_in_vocab = 0
    new_tokens_total = 0
    splits_out: dict[str, Any] = {}
    new_train_docs = 0
    for split in SPLITS:
        parts: list[tuple[Csr, list]] = []
        split_facts: dict[str, Any] = {}
        for kind, folder, fraction in sources:
            if kind == "replay" and split == "test":
                continue
            if not split_files(folder, split):
                continue
            block, labels = read_split(folder, split)
            source_vocab = read_vocabulary(folder)
            if list(source_vocab.words) != list(target.words):
                mapping = np.asarray([target.index_of(w) if w in target else -1 for w in source_vocab.words], dtype=np.int64)
                before = float(block.values.sum())
                block, dropped = _remap_block(block, mapping)
                if kind == "new" and split == "train":
                    for i in np.flatnonzero(dropped):
                        new_word_counts[source_vocab.words[i]] += float(dropped[i])
                dropped_tokens = before - float(block.values.sum())
            else:
                dropped_tokens = 0.0
            block, labels, empty = _nonempty(block, labels)
            if kind == "replay":
                n_new = split_facts.get("new_documents", 0)
                rows = _sample(len(block), int(round(fraction * n_new)), seed, split)  # the same sample wherever the folder is
                block, labels = block.take(rows), [labels[i] for i in rows]
            else:
                new_train_docs += len(block) if split == "train" else 0
                in_vocab = float(block.values.sum())
                new_tokens_in_vocab += int(in_vocab) if split == "train" else 0
                tokens, _ = split_token_counts(new_manifest, split)
                if split == "train":
                    new_tokens_total += int(tokens) if tokens is not None else int(in_vocab + dropped_tokens)
                split_facts["dropped_empty_documents"] = empty
                split_facts["dropped_tokens"] = int(dropped_tokens)
            split_facts[f"{kind}_documents"] = len(block)
            # Ids must stay unique across sources: replayed ids get a prefix.
            if kind == "replay" and block.ids is not None:
                block.ids = np.asarray([f"replay/{i}" for i in block.ids], dtype=object)
            parts.append((block, labels))
        if not parts:
            continue
        merged = Csr.concat([p[0] for p in parts])
        labels = [label for p in parts for label in p[1]]
        if len(merged) == 0:
            continue
        write_csr_split(work / split, merged.indptr, merged.indices, merged.values, ids=list(merged.ids), labels=labels)
        splits_out[split] = {"path": split, "documents": len(merged), "files": 1}
        if split == "train" and new_tokens_total:
            # The drift baseline's OOV rate: the new training documents' tokens, inside and outside the vocabulary
            # (the replayed ones are the champion's and counted there).
            splits_out[split].update({"tokens": int(new_tokens_total), "in_vocab_tokens": int(new_tokens_in_vocab)})
        facts["splits"][split] = split_facts
    if new_train_docs == 0:
        shutil.rmtree(work, ignore_errors=True)
        raise WarmStartError(
            f"the new data {str(new_data)!r} has no training document with a word of the champion's vocabulary "
            f"({len(target)} words): check that it is the right corpus, or retrain from scratch (`ntm train` without --warm-start)."
        )
    total_new = sum(new_word_counts.values())
    facts["new_words"] = {
        "distinct": len(new_word_counts),
        "tokens": int(total_new),
        "share_of_new_tokens": round(total_new / new_tokens_total, 6) if new_tokens_total else None,
        "top": [[w, int(c)] for w, c in new_word_counts.most_common(NEW_WORDS_LISTED)],
        "note": "words of the new data's vocabulary that the champion does not have: dropped from the documents "
        "(the challenger keeps the champion's feature_dim); retrain from scratch to learn them",
    }
    (work / VOCAB_FILE).write_text(target.to_text(), encoding="utf-8")
    manifest = dict(base_manifest or {})
    manifest["splits"] = splits_out
    manifest["documents"] = {"per_split": {s: v["documents"] for s, v in splits_out.items()}}
    manifest["warm_start"] = facts
    (work / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
    (work / DONE_FILE).write_text("")
    publish_folder(work, dest)
    return facts


def publish_folder(work: Path, dest: Path) -> None:
    """Move a finished ``work`` folder to ``dest``; when another process (a DDP rank) got there first, keep theirs."""
    if dest.exists() and not (dest / DONE_FILE).is_file():
        shutil.rmtree(dest, ignore_errors=True)  # an unfinished folder of a killed run
    try:
        os.replace(work, dest)
    except OSError:
        if not (dest / DONE_FILE).is_file():
            raise
        shutil.rmtree(work, ignore_errors=True)


def describe_facts(facts: dict[str, Any]) -> str:
    """One paragraph for the log: documents per split and source, and the new words."""
    lines = []
    for split, f in (facts.get("splits") or {}).items():
        replay = f.get("replay_documents")
        lines.append(
            f"  {split}: {f.get('new_documents', 0)} new documents"
            + (f" + {replay} replayed" if replay is not None else "")
            + (f" ({f['dropped_empty_documents']} dropped: no champion word)" if f.get("dropped_empty_documents") else "")
        )
    nw = facts.get("new_words") or {}
    if nw.get("distinct"):
        share = nw.get("share_of_new_tokens")
        top = ", ".join(f"{w} ({c})" for w, c in (nw.get("top") or [])[:15])
        lines.append(
            f"  new words outside the champion's vocabulary: {nw['distinct']} words, {nw['tokens']} tokens"
            + (f" ({share:.1%} of the new training tokens)" if share is not None else "")
            + f", dropped; most frequent: {top}"
        )
    return "\n".join(lines)


def replay_folder(warm: WarmStart, setting: Optional[str]) -> Optional[str]:
    """Resolve ``warm_start.replay_data``: ``auto`` is the champion's training data when that folder still exists.

    Raises:
        DataNotFoundError: for an explicit folder that is not a preprocessing output.
    """
    if setting in (None, "none", "", "null"):
        return None
    if setting == "auto":
        if warm.data_dir and split_files(warm.data_dir, "train"):
            return str(warm.data_dir)
        log.warning(
            "warm start: the champion's training data %r is not reachable, so nothing is replayed; "
            "pass --set warm_start.replay_data=PATH to mix old documents in.",
            warm.data_dir,
        )
        return None
    if not split_files(setting, "train"):
        raise DataNotFoundError(
            f"invalid config value train.warm_start.replay_data={setting!r}: no training split there; "
            "point at a preprocessing output (or set it to none)."
        )
    return str(setting)
