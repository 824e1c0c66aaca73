"""Topic-quality metrics: top words, NPMI coherence, topic uniqueness (TU) and diversity.

numpy only, so that training, the MLflow registry gate and the exploration report
all score topics the same way without importing torch or Spark.

Definitions:
    * **NPMI** (Lau et al., 2014) of a topic is the mean over pairs of its top ``n``
      words of ``log(P(wi, wj) / (P(wi) P(wj))) / -log P(wi, wj)``, where the
      probabilities are document frequencies over the reference documents. A pair
      that never co-occurs scores -1. The model's NPMI is the mean over topics.
    * **TU** (SageMaker NTM): ``TU(k) = mean over the top n words w of topic k of
      1 / cnt(w)``, where ``cnt(w)`` is how many topics have ``w`` in their top ``n``;
      the model's TU is the mean over topics (1 = no word shared, 1/K = all shared).
    * **Diversity** (Dieng et al., 2020): the share of unique words among the top 25
      words of all topics.

Example:
    >>> import numpy as np
    >>> docs = [np.array([0, 1]), np.array([0, 1, 2]), np.array([2, 3])]
    >>> round(npmi_coherence(np.array([[0, 1], [2, 3]]), docs), 3)
    0.685
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence

import numpy as np

__all__ = [
    "top_words",
    "cooccurrence_counts",
    "npmi_from_counts",
    "npmi_from_pair_counts",
    "topic_pairs",
    "npmi_per_topic",
    "npmi_coherence",
    "topic_uniqueness",
    "topic_diversity",
    "format_topics",
]


def top_words(topic_word: np.ndarray, n: int = 10) -> np.ndarray:
    """Return the indices of each topic's ``n`` highest-weight words, best first.

    Args:
        topic_word: Topic-word weights, shape ``(K, V)``.
        n: How many words per topic.

    Returns:
        An int64 array of shape ``(K, n)``.
    """
    topic_word = np.asarray(topic_word)
    if topic_word.ndim != 2:
        raise ValueError(f"topic_word must have shape (K, V), got shape {topic_word.shape!r}: pass one row per topic.")
    if not 1 <= n <= topic_word.shape[1]:
        raise ValueError(f"n={n!r} must be between 1 and the vocabulary size {topic_word.shape[1]}.")
    part = np.argpartition(-topic_word, n - 1, axis=1)[:, :n]  # (K, n), unordered
    order = np.argsort(-np.take_along_axis(topic_word, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1).astype(np.int64)


def cooccurrence_counts(word_ids: np.ndarray, docs: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray, int]:
    """Count document frequencies and pairwise co-document frequencies of some words.

    Args:
        word_ids: The distinct vocabulary indices to count, shape ``(U,)``.
        docs: Reference documents, each an array of the vocabulary indices it contains
            (the ``indices`` column of the bag-of-words Parquet; repeats are ignored).

    Returns:
        ``(df, co, n_docs)``: ``df[u]`` documents containing ``word_ids[u]`` (shape
        ``(U,)``), ``co[u, v]`` documents containing both (shape ``(U, U)``), and the
        number of documents.
    """
    word_ids = np.asarray(word_ids, dtype=np.int64)
    lookup = {int(w): i for i, w in enumerate(word_ids)}
    u = len(word_ids)
    co = np.zeros((u, u), dtype=np.int64)
    n_docs = 0
    rows: list[np.ndarray] = []
    for doc in docs:
        n_docs += 1
        hit = np.unique([lookup[w] for w in np.asarray(doc).tolist() if w in lookup]).astype(np.int64)
        rows.append(hit)
        if len(rows) >= 4096:
            co += _block_cooc(rows, u)
            rows = []
    if rows:
        co += _block_cooc(rows, u)
    return np.diag(co).copy(), co, n_docs


def _block_cooc(rows: Sequence[np.ndarray], u: int) -> np.ndarray:
    onehot = np.zeros((len(rows), u), dtype=np.float64)  # (docs, U)
    for i, hit in enumerate(rows):
        onehot[i, hit] = 1.0
    return np.rint(onehot.T @ onehot).astype(np.int64)  # (U, U)


def npmi_from_counts(
    top_ids: np.ndarray, word_ids: np.ndarray, df: np.ndarray, co: np.ndarray, n_docs: int
) -> np.ndarray:
    """Compute each topic's NPMI from precomputed document counts.

    Args:
        top_ids: Each topic's top words, shape ``(K, n)``.
        word_ids: The words the counts refer to, shape ``(U,)``; must cover ``top_ids``.
        df: Document frequency of each of ``word_ids``, shape ``(U,)``.
        co: Co-document frequency, shape ``(U, U)``.
        n_docs: The number of reference documents.

    Returns:
        NPMI per topic, shape ``(K,)``, each in ``[-1, 1]``.
    """
    top_ids = np.asarray(top_ids, dtype=np.int64)
    if n_docs <= 0:
        raise ValueError(f"n_docs={n_docs!r}: NPMI needs at least one reference document.")
    pos = {int(w): i for i, w in enumerate(np.asarray(word_ids).tolist())}
    missing = sorted({int(w) for w in top_ids.ravel()} - set(pos))
    if missing:
        raise ValueError(f"word_ids does not cover top word {missing[0]!r}: count every word of top_ids.")
    idx = np.vectorize(pos.__getitem__, otypes=[np.int64])(top_ids)  # (K, n)
    a, b = topic_pairs(top_ids.shape[1])
    return npmi_from_pair_counts(co[idx[:, a], idx[:, b]], df[idx[:, a]], df[idx[:, b]], n_docs)


def topic_pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the column indices ``(i, j)`` of the ``n (n - 1) / 2`` word pairs ``i < j`` of a topic."""
    return np.triu_indices(n, k=1)


def npmi_from_pair_counts(co_ij: np.ndarray, df_i: np.ndarray, df_j: np.ndarray, n_docs: float) -> np.ndarray:
    """Return each topic's NPMI from the counts of its word pairs.

    Args:
        co_ij: Documents containing both words of each pair, shape ``(K, P)``.
        df_i: Documents containing the first word of each pair, shape ``(K, P)``.
        df_j: Documents containing the second word, shape ``(K, P)``.
        n_docs: Number of reference documents.

    Returns:
        Mean NPMI over each topic's pairs, shape ``(K,)``.
    """
    co_ij, df_i, df_j = (np.asarray(a, dtype=np.float64) for a in (co_ij, df_i, df_j))
    p_ij, p_i, p_j = co_ij / n_docs, df_i / n_docs, df_j / n_docs
    with np.errstate(divide="ignore", invalid="ignore"):
        npmi = (np.log(p_ij) - np.log(p_i) - np.log(p_j)) / -np.log(p_ij)
    npmi = np.where(p_ij <= 0, -1.0, npmi)  # never together: the conventional -1
    npmi = np.where(p_ij >= 1, 1.0, npmi)  # together in every document
    return npmi.mean(axis=1) if npmi.shape[1] else np.zeros(len(npmi))


def npmi_per_topic(top_ids: np.ndarray, reference_docs: Iterable[np.ndarray]) -> np.ndarray:
    """Return each topic's NPMI over reference documents.

    Args:
        top_ids: Each topic's top words (usually 10), shape ``(K, n)``.
        reference_docs: Each document's vocabulary indices.

    Returns:
        Shape ``(K,)``.
    """
    top_ids = np.asarray(top_ids, dtype=np.int64)
    word_ids = np.unique(top_ids)
    df, co, n_docs = cooccurrence_counts(word_ids, reference_docs)
    return npmi_from_counts(top_ids, word_ids, df, co, n_docs)


def npmi_coherence(top_ids: np.ndarray, reference_docs: Iterable[np.ndarray]) -> float:
    """Return the model's NPMI: the mean of :func:`npmi_per_topic`."""
    return float(np.mean(npmi_per_topic(top_ids, reference_docs)))


def topic_uniqueness(top_ids: np.ndarray, per_topic: bool = False):
    """Return SageMaker NTM's topic uniqueness of the top words.

    Args:
        top_ids: Each topic's top words, shape ``(K, n)``.
        per_topic: Return the ``(K,)`` array of ``TU(k)`` instead of its mean.
    """
    top_ids = np.asarray(top_ids, dtype=np.int64)
    words, counts = np.unique(top_ids, return_counts=True)
    cnt = counts[np.searchsorted(words, top_ids)]  # (K, n)
    tu = (1.0 / cnt).mean(axis=1)
    return tu if per_topic else float(tu.mean())


def topic_diversity(top_ids_or_topic_word: np.ndarray, n: int = 25) -> float:
    """Return the share of unique words among the top ``n`` words of all topics.

    Args:
        top_ids_or_topic_word: Either top-word indices ``(K, >=n)`` (int) or
            topic-word weights ``(K, V)`` (float).
        n: How many top words per topic (25 in Dieng et al.).
    """
    arr = np.asarray(top_ids_or_topic_word)
    top = arr[:, :n] if np.issubdtype(arr.dtype, np.integer) else top_words(arr, n)
    return float(len(np.unique(top)) / top.size)


def write_top_words_csv(path, topic_word: np.ndarray, words: Sequence[str], top_ids: np.ndarray) -> None:
    """Write the top-words table ``topic, rank, word, weight`` (one row per topic and rank) as CSV.

    The one format shared by the model folder's ``topics.csv`` and the report's ``top_words.csv``.
    """
    import csv

    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["topic", "rank", "word", "weight"])
        for k, ids in enumerate(top_ids):
            for r, i in enumerate(ids):
                writer.writerow([k, r + 1, words[i], f"{topic_word[k, i]:.6f}"])


def format_topics(
    topic_word: np.ndarray,
    vocab: Sequence[str],
    n: int = 10,
    npmi: Optional[np.ndarray] = None,
    tu: Optional[np.ndarray] = None,
) -> list[str]:
    """Format each topic as SageMaker NTM prints them: ``[tu 0.82, npmi 0.21] w1 w2 ...``."""
    top = top_words(topic_word, n)
    lines = []
    for k, ids in enumerate(top):
        tags = []
        if tu is not None:
            tags.append(f"tu {tu[k]:.2f}")
        if npmi is not None:
            tags.append(f"npmi {npmi[k]:.2f}")
        prefix = f"[{', '.join(tags)}] " if tags else ""
        lines.append(prefix + " ".join(vocab[i] for i in ids))
    return lines
