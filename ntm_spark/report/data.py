"""The corpus side of the report: stream a split's Parquet, score it into summary statistics, and place the topics.

:func:`summarize_split` streams the split a batch at a time (with a seeded sample of
whole row groups when ``max_docs`` caps it) through the shared
:class:`~ntm_spark.serving.scoring.TopicScorer`, so memory stays bounded by one batch
plus ``O(K * labels)`` sums. :func:`js_distances` and :func:`classical_mds` give the
intertopic distance map its coordinates. The split's files come from
:mod:`ntm_spark.core.contract`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from ntm_spark.core import storage
from ntm_spark.core.contract import split_files as contract_split_files
from ntm_spark.core.schema import ID_COL, INDICES_COL, LABEL_COL, VALUES_COL
from ntm_spark.report._base import ExploreError, PathLike

#: At most this many distinct labels are tracked for the topic x label heatmap.
MAX_LABELS = 200


def split_files(data_dir: PathLike, split: str) -> list[Path]:
    """Return the Parquet files of one split of a preprocessing output (the contract's, required)."""
    return contract_split_files(data_dir, split, required=True)


def iter_split_batches(
    files: Sequence[PathLike],
    max_docs: int = 0,
    batch_size: int = 1024,
    seed: int = 0,
    columns: Sequence[str] = (ID_COL, LABEL_COL, INDICES_COL, VALUES_COL),
) -> Iterator[Any]:
    """Stream a split as pyarrow ``RecordBatch`` es, one row group at a time.

    Args:
        files: The split's Parquet files.
        max_docs: Cap on the rows read; ``0`` reads everything. With a cap, a seeded
            random set of whole row groups is read (in file order), so a sorted split
            is not sampled from its head only.
        batch_size: Most rows per batch.
        seed: Seed of the row-group sample.
        columns: Columns to read (those missing from the files are skipped).

    Yields:
        Record batches; the last one is cut so that at most ``max_docs`` rows are yielded.
    """
    import pyarrow.parquet as pq

    groups: list[tuple[int, int, int]] = []  # (file, row group, rows)
    for f_idx, path in enumerate(files):
        meta = pq.ParquetFile(storage.open_input_file(path)).metadata
        groups += [(f_idx, g, meta.row_group(g).num_rows) for g in range(meta.num_row_groups)]
    total = sum(g[2] for g in groups)
    chosen = groups
    if max_docs and total > max_docs:
        order = np.random.default_rng(seed).permutation(len(groups))
        picked, rows = [], 0
        for i in order:
            picked.append(groups[i])
            rows += groups[i][2]
            if rows >= max_docs:
                break
        chosen = sorted(picked)
    left = max_docs or total
    for f_idx in sorted({g[0] for g in chosen}):
        pf = pq.ParquetFile(storage.open_input_file(files[f_idx]))
        names = set(pf.schema_arrow.names)
        cols = [c for c in columns if c in names]
        row_groups = [g for (f, g, _) in chosen if f == f_idx]
        for batch in pf.iter_batches(batch_size=batch_size, row_groups=row_groups, columns=cols):
            if left <= 0:
                return
            if batch.num_rows > left:
                batch = batch.slice(0, left)
            left -= batch.num_rows
            yield batch


@dataclass
class SplitSummary:
    """What scoring a corpus split found.

    Attributes:
        n_docs: Documents scored.
        n_failed: Documents the scorer rejected (not counted in the means).
        prevalence: Mean topic weight over the scored documents, shape ``(K,)``.
        labels: The tracked labels, most frequent first.
        label_counts: Documents per label, shape ``(L,)``.
        label_means: Mean topic weight per label, shape ``(L, K)``.
        sample_ids: Ids of the sample documents.
        sample_labels: Their labels (``None`` when unlabelled).
        sample_weights: Their topic weights, shape ``(S, K)``.
        npmi: Per-topic NPMI of the top words over the scored documents, shape ``(K,)``.
    """

    n_docs: int
    n_failed: int
    prevalence: np.ndarray
    labels: list[str] = field(default_factory=list)
    label_counts: np.ndarray = field(default_factory=lambda: np.zeros(0))
    label_means: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    sample_ids: list[str] = field(default_factory=list)
    sample_labels: list[Optional[str]] = field(default_factory=list)
    sample_weights: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    npmi: Optional[np.ndarray] = None


def summarize_split(
    scorer: Any,
    files: Sequence[PathLike],
    top_ids: Optional[np.ndarray] = None,
    max_docs: int = 20000,
    sample_docs: int = 10,
    batch_size: int = 1024,
    seed: int = 0,
) -> SplitSummary:
    """Score a split batch by batch and accumulate prevalence, per-label means, samples and NPMI.

    Args:
        scorer: A :class:`~ntm_spark.serving.scoring.TopicScorer`.
        files: The split's Parquet files (:func:`split_files`).
        top_ids: Each topic's top words ``(K, n)``; when given, their NPMI over the split is computed.
        max_docs: Cap on documents scored (``0``: all).
        sample_docs: Documents kept for the assignment plot, one per label first.
        batch_size: Rows scored at a time (a dense ``(batch, V)`` block is built).
        seed: Seed of the row-group sample.

    Returns:
        The :class:`SplitSummary`.

    Raises:
        ExploreError: when no document could be scored.
    """
    from ntm_spark.core.topic_metrics import cooccurrence_counts, npmi_from_counts

    k = scorer.num_topics
    total = np.zeros(k, dtype=np.float64)
    n_docs = n_failed = 0
    label_sums: dict[str, np.ndarray] = {}
    label_n: dict[str, int] = {}
    samples: list[tuple[str, Optional[str], np.ndarray]] = []
    spare: list[tuple[str, Optional[str], np.ndarray]] = []
    word_ids = np.unique(top_ids) if top_ids is not None else None
    df = co = None
    n_ref = 0
    for batch in iter_split_batches(files, max_docs=max_docs, batch_size=batch_size, seed=seed):
        cols = batch.schema.names
        indices = batch.column(cols.index(INDICES_COL)).to_pylist()
        values = batch.column(cols.index(VALUES_COL)).to_pylist()
        ids = batch.column(cols.index(ID_COL)).to_pylist() if ID_COL in cols else [None] * batch.num_rows
        labels = batch.column(cols.index(LABEL_COL)).to_pylist() if LABEL_COL in cols else [None] * batch.num_rows
        result = scorer.score_sparse(indices, values)
        ok = result.ok
        weights = result.weights.astype(np.float64)  # (b, K)
        n_failed += int((~ok).sum())
        n_docs += int(ok.sum())
        total += weights[ok].sum(axis=0)
        for i in np.flatnonzero(ok):
            label = labels[i]
            if label is not None:
                if label in label_sums:
                    label_sums[label] += weights[i]
                    label_n[label] += 1
                elif len(label_sums) < MAX_LABELS:
                    label_sums[label] = weights[i].copy()
                    label_n[label] = 1
            if len(samples) < sample_docs:
                doc = (str(ids[i]), label, weights[i].copy())
                if label is None or all(s[1] != label for s in samples):
                    samples.append(doc)
                elif len(spare) < sample_docs:
                    spare.append(doc)
        if word_ids is not None:
            d, c, n = cooccurrence_counts(word_ids, (np.asarray(ix) for ix, good in zip(indices, ok) if good))
            df, co = (d, c) if df is None else (df + d, co + c)
            n_ref += n
    if n_docs == 0:
        raise ExploreError(
            f"no document of {[str(f) for f in files][:3]} could be scored ({n_failed} rejected): "
            "check the data was preprocessed with the model's vocabulary."
        )
    samples += spare[: sample_docs - len(samples)]
    labels_sorted = sorted(label_sums, key=lambda lab: (-label_n[lab], lab))
    npmi = npmi_from_counts(top_ids, word_ids, df, co, n_ref) if word_ids is not None and n_ref else None
    return SplitSummary(
        n_docs=n_docs,
        n_failed=n_failed,
        prevalence=total / n_docs,
        labels=labels_sorted,
        label_counts=np.array([label_n[lab] for lab in labels_sorted], dtype=np.int64),
        label_means=(
            np.stack([label_sums[lab] / label_n[lab] for lab in labels_sorted]) if labels_sorted else np.zeros((0, k))
        ),
        sample_ids=[s[0] for s in samples],
        sample_labels=[s[1] for s in samples],
        sample_weights=np.stack([s[2] for s in samples]) if samples else np.zeros((0, k)),
        npmi=npmi,
    )


# --------------------------------------------------------------------------- topic geometry


def js_distances(topic_word: np.ndarray) -> np.ndarray:
    """Return the Jensen-Shannon distance between every pair of topics.

    Args:
        topic_word: Topic-word distributions, shape ``(K, V)`` (rows are renormalized).

    Returns:
        A symmetric ``(K, K)`` matrix with a zero diagonal, values in ``[0, 1]`` (base-2 logs).
    """
    p = np.asarray(topic_word, dtype=np.float64)
    p = np.clip(p, 0, None)
    p = p / np.clip(p.sum(axis=1, keepdims=True), 1e-300, None)  # (K, V)
    k = p.shape[0]
    out = np.zeros((k, k))
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = np.where(p > 0, np.log2(p), 0.0)  # (K, V)
        for i in range(k):
            m = 0.5 * (p[i] + p)  # (K, V)
            logm = np.where(m > 0, np.log2(m), 0.0)
            kl_i = (p[i] * (logp[i] - logm)).sum(axis=1)  # (K,)
            kl_j = (p * (logp - logm)).sum(axis=1)  # (K,)
            out[i] = np.sqrt(np.clip(0.5 * (kl_i + kl_j), 0, 1))
    out = 0.5 * (out + out.T)
    np.fill_diagonal(out, 0.0)
    return out


def classical_mds(dist: np.ndarray, dims: int = 2) -> np.ndarray:
    """Embed points in ``dims`` dimensions so Euclidean distances approximate ``dist`` (Torgerson MDS).

    Args:
        dist: A symmetric distance matrix, shape ``(K, K)``.
        dims: Output dimensions.

    Returns:
        Coordinates, shape ``(K, dims)``; axes with no variance are zero.
    """
    d2 = np.asarray(dist, dtype=np.float64) ** 2
    k = d2.shape[0]
    j = np.eye(k) - 1.0 / k
    b = -0.5 * j @ d2 @ j  # (K, K), double-centred Gram matrix
    evals, evecs = np.linalg.eigh(b)
    order = np.argsort(evals)[::-1][:dims]
    coords = evecs[:, order] * np.sqrt(np.clip(evals[order], 0, None))  # (K, <=dims)
    if coords.shape[1] < dims:
        coords = np.hstack([coords, np.zeros((k, dims - coords.shape[1]))])
    # Deterministic orientation: the largest-magnitude coordinate of each axis is positive.
    signs = np.sign(coords[np.abs(coords).argmax(axis=0), np.arange(dims)])
    return coords * np.where(signs == 0, 1, signs)

