"""Topic-quality metrics: top words, NPMI coherence, topic uniqueness (TU) and diversity.

numpy only, so that training, the MLflow registry gate and the exploration report
all score topics the same way without importing torch or Spark.

Definitions:
    * **NPMI** (Lau et al., 2014), exactly as gensim's ``CoherenceModel(coherence="c_npmi")``
      computes it with one window per document: a topic's NPMI is the mean over the pairs of
      its top ``n`` (10) words of ``log((P(wi, wj) + eps) / (P(wi) P(wj))) / -log(P(wi, wj) + eps)``
      with ``eps = 1e-12`` (:data:`NPMI_EPSILON`), where ``P`` are boolean document
      frequencies over the *reference* documents. A pair that never co-occurs scores about
      -0.3 to -0.6 on a corpus of thousands of documents, not -1. A top word absent from the
      reference (where gensim divides by zero) makes its pairs score -1. The model's NPMI is
      the mean over topics. Which documents are the reference is a training setting
      (``npmi_reference``: by default the training split plus the held-out split); its size is
      recorded beside every figure (:class:`CoherenceReference`), and references under
      :data:`MIN_REFERENCE_DOCS` documents get a warning, since rare pairs then dominate.
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
    "NPMI_EPSILON",
    "MIN_REFERENCE_DOCS",
    "CoherenceReference",
    "collapse_reason",
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


#: gensim's ``EPSILON`` in ``direct_confirmation_measure``: keeps the logarithms finite.
NPMI_EPSILON = 1e-12
#: Below this many reference documents, NPMI is dominated by pairs that never co-occur by chance.
MIN_REFERENCE_DOCS = 2000
#: A model whose top-25 diversity is below this shows the same few words in every topic.
COLLAPSE_DIVERSITY = 0.3
#: Mean KL per document (nats) below which the posterior carries no information (posterior collapse).
COLLAPSE_KL = 0.1


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
        npmi = np.log((p_ij + NPMI_EPSILON) / (p_i * p_j)) / -np.log(p_ij + NPMI_EPSILON)
    npmi = np.where((p_i <= 0) | (p_j <= 0), -1.0, npmi)  # a word the reference lacks: gensim's inf, here -1
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


class CoherenceReference:
    """The reference documents of NPMI, held as one sorted posting list per word.

    Memory is one int32 per (document, distinct word) pair, however large the vocabulary; a
    topic's pair counts are intersections of two posting lists, so scoring costs nothing per
    document. Training, the registry and the report all score through it.

    Args:
        docs: Each reference document's vocabulary indices (repeats are ignored).
        vocab_size: The vocabulary size V.
        name: What the reference is, e.g. ``"train+test"``, recorded beside every figure.

    Example:
        >>> ref = CoherenceReference([np.array([0, 1]), np.array([0, 1, 2]), np.array([2, 3])], 4, "toy")
        >>> ref.n_docs, ref.document_frequency(np.array([0, 2])).tolist()
        (3, [2, 2])
    """

    def __init__(self, docs: Iterable[np.ndarray], vocab_size: int, name: str = "reference") -> None:
        if vocab_size < 1:
            raise ValueError(f"vocab_size={vocab_size!r} must be >= 1.")
        doc_ids: list[np.ndarray] = []
        words: list[np.ndarray] = []
        n = 0
        for doc in docs:
            w = np.unique(np.asarray(doc, dtype=np.int64))
            if w.size and (w[0] < 0 or w[-1] >= vocab_size):
                raise ValueError(f"reference document {n} has word index {int(w[-1] if w[-1] >= vocab_size else w[0])} "
                                 f"outside the vocabulary of {vocab_size} words: use the model's own vocabulary.")
            words.append(w)
            doc_ids.append(np.full(w.size, n, dtype=np.int32))
            n += 1
        flat_w = np.concatenate(words) if words else np.zeros(0, np.int64)
        flat_d = np.concatenate(doc_ids) if doc_ids else np.zeros(0, np.int32)
        order = np.argsort(flat_w, kind="stable")  # by word, then by document (stable)
        self.postings = flat_d[order]  # (nnz,), each word's documents ascending
        self.offsets = np.concatenate([[0], np.cumsum(np.bincount(flat_w, minlength=vocab_size))]).astype(np.int64)
        self.n_docs = n
        self.vocab_size = int(vocab_size)
        self.name = name

    def __repr__(self) -> str:
        return f"CoherenceReference({self.name!r}, n_docs={self.n_docs})"

    def documents_with(self, word: int) -> np.ndarray:
        """Return the sorted ids of the reference documents that contain ``word``."""
        return self.postings[self.offsets[word] : self.offsets[word + 1]]

    def document_frequency(self, word_ids: np.ndarray) -> np.ndarray:
        """Return how many reference documents contain each of ``word_ids``."""
        w = np.asarray(word_ids, dtype=np.int64)
        return self.offsets[w + 1] - self.offsets[w]

    def npmi_per_topic(self, top_ids: np.ndarray) -> np.ndarray:
        """Return each topic's NPMI (the module's definition) over these documents, shape ``(K,)``.

        Raises:
            ValueError: when the reference is empty.
        """
        top_ids = np.asarray(top_ids, dtype=np.int64)
        if self.n_docs <= 0:
            raise ValueError(f"the NPMI reference {self.name!r} has no documents: choose another npmi_reference.")
        a, b = topic_pairs(top_ids.shape[1])
        wa, wb = top_ids[:, a], top_ids[:, b]  # (K, P)
        cache: dict[tuple[int, int], int] = {}
        co = np.empty(wa.shape, dtype=np.float64)
        for idx in np.ndindex(wa.shape):
            key = (int(min(wa[idx], wb[idx])), int(max(wa[idx], wb[idx])))
            hit = cache.get(key)
            if hit is None:
                hit = cache[key] = int(np.intersect1d(self.documents_with(key[0]), self.documents_with(key[1]), assume_unique=True).size)
            co[idx] = hit
        return npmi_from_pair_counts(co, self.document_frequency(wa), self.document_frequency(wb), self.n_docs)

    def describe(self) -> str:
        """``"train+test, 9,087 documents"``: how every figure names its reference."""
        return f"{self.name}, {self.n_docs:,} documents"


def collapse_reason(diversity: float, kl: Optional[float], num_topics: int, vocab_size: int, top_n: int = 25) -> Optional[str]:
    """Return why a model has collapsed, or ``None``.

    Two ways, either enough:

    * **topic collapse**: top-25 diversity under :data:`COLLAPSE_DIVERSITY` (scaled down where the
      vocabulary is too small for ``num_topics`` distinct top-25 lists): every topic shows the
      same few words;
    * **posterior collapse**: mean KL under :data:`COLLAPSE_KL` nats per document: the encoder
      ignores the document, so every document gets the same topic mixture, whatever the topics
      look like (a linear decoder's untrained weight columns can even look diverse).
    """
    ceiling = min(1.0, vocab_size / float(num_topics * top_n))
    floor = COLLAPSE_DIVERSITY * ceiling
    reasons = []
    if diversity < floor:
        reasons.append(f"topic diversity {diversity:.3f} < {floor:.2f}: the topics share the same few top words")
    if kl is not None and kl < COLLAPSE_KL:
        reasons.append(
            f"mean KL {kl:.4f} < {COLLAPSE_KL} nats per document: posterior collapse, the encoder ignores the "
            "documents and gives every one the same topic mixture"
        )
    return "; ".join(reasons) or None


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
