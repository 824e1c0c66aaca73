"""Synthetic bag-of-words corpora in the preprocessing output format, for tests and benchmarks.

Documents are drawn from an LDA generative model (sparse topics, Dirichlet mixtures),
so a topic model has real structure to find. Needs only numpy and pyarrow.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ntm_spark.core.schema import MANIFEST_FILE, SPLITS, VOCAB_FILE, bow_arrow_schema


def synthetic_docs(
    n_docs: int,
    vocab_size: int,
    num_topics: int = 10,
    doc_len: int = 80,
    seed: int = 0,
    id_prefix: str = "doc",
    topic_word: Optional[np.ndarray] = None,
) -> tuple[pa.Table, np.ndarray]:
    """Draw ``n_docs`` LDA documents; return the Arrow table and the true topic-word matrix ``(K, V)``."""
    rng = np.random.default_rng(seed)
    if topic_word is None:
        topic_word = rng.dirichlet(np.full(vocab_size, 0.05), size=num_topics)  # (K, V)
    theta = rng.dirichlet(np.full(num_topics, 0.3), size=n_docs)  # (D, K)
    lengths = rng.poisson(doc_len, size=n_docs).clip(5, None)
    ids, labels, n_words, indices, values = [], [], [], [], []
    # Draw counts in chunks: words ~ Multinomial(len, theta @ beta).
    for start in range(0, n_docs, 2048):
        stop = min(start + 2048, n_docs)
        probs = theta[start:stop] @ topic_word  # (d, V)
        for j, p in enumerate(probs):
            counts = rng.multinomial(lengths[start + j], p / p.sum())
            nz = np.flatnonzero(counts)
            ids.append(f"{id_prefix}-{start + j:07d}")
            labels.append(f"t{int(theta[start + j].argmax())}")
            n_words.append(int(counts.sum()))
            indices.append(nz.astype(np.int32))
            values.append(counts[nz].astype(np.float32))
    table = pa.table(
        {
            "id": pa.array(ids, pa.string()),
            "label": pa.array(labels, pa.string()),
            "n_words": pa.array(n_words, pa.int32()),
            "indices": pa.array(indices, pa.list_(pa.int32())),
            "values": pa.array(values, pa.list_(pa.float32())),
        },
        schema=bow_arrow_schema(),
    )
    return table, topic_word


def write_synthetic_corpus(
    path: str | Path,
    n_docs: Sequence[int] = (400, 60, 60),
    vocab_size: int = 200,
    num_topics: int = 8,
    doc_len: int = 60,
    row_group_size: int = 64,
    files_per_split: int = 2,
    seed: int = 0,
) -> Path:
    """Write ``train/validation/test`` Parquet, ``vocab.txt`` and ``manifest.json`` like the preprocessing job.

    Args:
        path: Output folder.
        n_docs: Documents in train, validation and test (0 skips a split).
        vocab_size: V.
        num_topics: True number of topics.
        doc_len: Mean words per document.
        row_group_size: Rows per Parquet row group (files get uneven last groups).
        files_per_split: Parquet files per split (uneven sizes).
        seed: Random seed.

    Returns:
        ``path``.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    topic_word = None
    for i, (split, n) in enumerate(zip(("train", "validation", "test"), n_docs)):
        if n <= 0:
            continue
        table, topic_word = synthetic_docs(n, vocab_size, num_topics, doc_len, seed + i, split, topic_word)
        folder = path / split
        folder.mkdir(exist_ok=True)
        # Uneven files: the first gets ~60% of the rows.
        cuts = np.linspace(0, n, files_per_split + 1).astype(int)
        if files_per_split > 1:
            cuts[1] = int(n * 0.6)
        for f in range(files_per_split):
            part = table.slice(cuts[f], cuts[f + 1] - cuts[f])
            pq.write_table(part, folder / f"part-{f:05d}.parquet", row_group_size=row_group_size)
    (path / VOCAB_FILE).write_text("".join(f"w{v:04d}\n" for v in range(vocab_size)))
    manifest = {"synthetic": True, "vocab_size": vocab_size, "num_topics": num_topics, "n_docs": list(n_docs), "seed": seed}
    # The preprocessing job's per-split counts, which readers check the Parquet footers against.
    manifest["splits"] = {s: {"path": s, "documents": int(n), "files": files_per_split} for s, n in zip(SPLITS, n_docs)}
    (path / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
    np.save(path / "true_topic_word.npy", topic_word)
    return path


def synthetic_csr_fast(
    n_docs: int, vocab_size: int, num_topics: int = 20, doc_len: int = 60, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorized LDA-like corpus for large sizes (1M docs in seconds): each document mixes two topics.

    Returns:
        CSR ``(indptr (D+1,), indices (nnz,) int32 ascending per row, values (nnz,) float32)``.
    """
    rng = np.random.default_rng(seed)
    topic_word = rng.dirichlet(np.full(vocab_size, 0.05), size=num_topics)  # (K, V)
    cdf = np.cumsum(topic_word, axis=1)
    cdf /= cdf[:, -1:]
    cdf_all = (cdf + np.arange(num_topics)[:, None]).ravel()  # monotone across topics
    lengths = rng.poisson(doc_len, size=n_docs).clip(5, None)
    pair = rng.integers(0, num_topics, size=(n_docs, 2))
    mix = rng.random(n_docs)
    doc = np.repeat(np.arange(n_docs, dtype=np.int64), lengths)
    topic = np.where(rng.random(doc.size) < mix[doc], pair[doc, 0], pair[doc, 1])
    word = np.searchsorted(cdf_all, rng.random(doc.size) + topic) - topic * vocab_size
    word = np.clip(word, 0, vocab_size - 1)
    keys, counts = np.unique(doc * vocab_size + word, return_counts=True)
    rows = keys // vocab_size
    indptr = np.zeros(n_docs + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=n_docs), out=indptr[1:])
    return indptr, (keys % vocab_size).astype(np.int32), counts.astype(np.float32)


def write_csr_split(folder: str | Path, indptr: np.ndarray, indices: np.ndarray, values: np.ndarray,
                    rows_per_file: int = 200_000, row_group_size: int = 1024, prefix: str = "doc",
                    ids: Optional[Sequence[str]] = None, labels: Optional[Sequence[Optional[str]]] = None) -> None:
    """Write a CSR block as bag-of-words Parquet files (the preprocessing schema).

    ``ids``/``labels``: one per row; default ids ``<prefix>-<row>``, labels null.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n = len(indptr) - 1
    for f, start in enumerate(range(0, n, rows_per_file)):
        stop = min(start + rows_per_file, n)
        offs = (indptr[start : stop + 1] - indptr[start]).astype(np.int32)
        lo, hi = indptr[start], indptr[stop]
        table = pa.table(
            {
                "id": pa.array(
                    [f"{prefix}-{i:08d}" for i in range(start, stop)] if ids is None else list(ids[start:stop]), pa.string()
                ),
                "label": pa.nulls(stop - start, pa.string()) if labels is None else pa.array(list(labels[start:stop]), pa.string()),
                "n_words": pa.array(np.add.reduceat(values[lo:hi], offs[:-1]).astype(np.int32) if hi > lo else np.zeros(stop - start, np.int32)),
                "indices": pa.ListArray.from_arrays(pa.array(offs), pa.array(indices[lo:hi], pa.int32())),
                "values": pa.ListArray.from_arrays(pa.array(offs), pa.array(values[lo:hi], pa.float32())),
            },
            schema=bow_arrow_schema(),
        )
        pq.write_table(table, folder / f"part-{f:05d}.parquet", row_group_size=row_group_size)
