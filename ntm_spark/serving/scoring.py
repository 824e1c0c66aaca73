"""The one scoring implementation: raw text or bag-of-words -> topic mixtures.

The MLflow pyfunc, the Kafka streaming job and the backfill all call
:class:`TopicScorer`; none re-implements normalization, vectorization or
inference. It needs torch and numpy only (no Spark, no MLflow).

Per-row problems never fail a batch: each row gets either topic weights or an
:class:`RowError` with a stable ``code`` (the dead-letter and HTTP 4xx codes).
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Union

import numpy as np

from ntm_spark.core import storage
from ntm_spark.core.checks import RowError, check_text
from ntm_spark.core.contract import (
    ContractError,
    read_drift_baseline,
    read_lemma_table,
    read_manifest,
    read_topic_word,
    text_rules_from_manifest,
    top_words,
)
from ntm_spark.core.text import TextNormalizer, get_normalizer
from ntm_spark.core.vocab import Vocabulary

# Error codes shared by the dead-letter topic, the REST endpoint and batch reports.
# The document codes (missing_text, text_not_string, empty_text, too_large, binary) are
# ntm_spark.core.checks'; these are the scorer's own.
NOT_JSON = "not_json"
EMPTY_AFTER_NORMALIZATION = "empty_after_normalization"
BAD_LENGTH = "bad_length"
NEGATIVE_COUNT = "negative_count"
NAN_COUNT = "nan_count"
COUNT_NOT_NUMBER = "count_not_number"
COUNT_TOO_LARGE = "count_too_large"
EMPTY_COUNTS = "empty_counts"
BAD_INDEX = "bad_index"
NONFINITE_WEIGHTS = "nonfinite_weights"
# Whole-request codes (raised as ScoringInputError by input adapters such as the MLflow pyfunc).
UNKNOWN_COLUMN = "unknown_column"
MISSING_COLUMN = "missing_column"
MIXED_INPUT = "mixed_input"


#: Largest count one bag-of-words cell may hold (``count_too_large`` above it). A 1 MB text
#: (``max_text_bytes``) has fewer than 500,000 tokens, so no text row ever reaches it.
MAX_COUNT = 1_000_000.0
#: Largest sum of one row's counts. With these two limits the float32 encoder's inputs stay
#: below 1e7 per row, far from float32's 3.4e38, so inference stays finite.
MAX_ROW_TOTAL = 10_000_000.0
#: Most a row's topic weights may differ from summing to 1 before the row is refused.
WEIGHTS_SUM_TOLERANCE = 1e-5

_BOOL_TYPES = (bool, np.bool_)
_NUMBER_TYPES = (int, float, np.integer, np.floating)
_INT_TYPES = (int, np.integer)


class ScoringInputError(ValueError):
    """The whole request is unusable (e.g. an unknown column); ``code`` names the problem."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass
class ScoreResult:
    """Per-row topic weights (``nan`` rows where :attr:`errors` has an entry).

    For raw texts (:meth:`TopicScorer.score_texts`) :attr:`tokens` and :attr:`oov_tokens`
    also give each row's normalized tokens and, of those, the ones outside the vocabulary
    (``-1`` for a row that never reached normalization); the stream's drift monitor sums them.
    """

    weights: np.ndarray  # (N, K) float32
    errors: list = field(default_factory=list)  # list[Optional[RowError]], len N
    tokens: Optional[np.ndarray] = None  # (N,) int64
    oov_tokens: Optional[np.ndarray] = None  # (N,) int64

    @property
    def ok(self) -> np.ndarray:
        """Boolean mask of the rows that were scored."""
        return np.array([e is None for e in self.errors], dtype=bool)


def describe_row_errors(result: ScoreResult, max_listed: int = 5) -> Optional[str]:
    """Return ``"N of M rows cannot be scored: row i: [code] message; ..."``, or ``None`` when every row scored.

    The one wording of a request's bad rows: the MLflow pyfunc and ``ntm serve``'s SageMaker
    routes answer 400 with it (each adds how to fix the request in its own API).
    """
    bad = [(i, e) for i, e in enumerate(result.errors) if e is not None]
    if not bad:
        return None
    listed = "; ".join(f"row {i}: [{e.code}] {e.message}" for i, e in bad[:max_listed])
    more = f" (and {len(bad) - max_listed} more)" if len(bad) > max_listed else ""
    return f"{len(bad)} of {len(result.errors)} rows cannot be scored: {listed}{more}"


class VocabularyLemmaNormalizer(TextNormalizer):
    """A :class:`TextNormalizer` whose lemma table is *closed over the vocabulary*: it never needs WordNet.

    The table holds every surface token whose WordNet lemma is a vocabulary word
    (and every vocabulary word itself). Any other token's lemma is outside the
    vocabulary, so it is dropped when counting whatever its lemma is; keeping the
    token unchanged therefore gives exactly the bag-of-words WordNet would, with no
    NLTK data on the machine.
    """

    def _lemmatize_uncached(self, token: str) -> str:
        return self.lemma_table.get(token, token)


def _first_non_number(row: Iterable[Any]) -> Optional[tuple[int, Any]]:
    """Return ``(position, value)`` of the first cell that is not an int or float, or ``None``."""
    for j, x in enumerate(row):
        if isinstance(x, _BOOL_TYPES) or not isinstance(x, _NUMBER_TYPES):
            return j, x
    return None


def _number_array(
    row: Any, field: str, code: str = COUNT_NOT_NUMBER, what: str = "counts must be numbers"
) -> tuple[Optional[np.ndarray], Optional[RowError]]:
    """Return a flat float64 array of ``row``'s numbers, or why it is not a list of numbers.

    Strings (even ``"1"``), booleans, ``None`` and nested lists are refused: a count is an
    int or a float, never something that converts to one.
    """
    if isinstance(row, np.ndarray):
        if row.ndim != 1 or row.dtype.kind not in "iuf":
            bad = _first_non_number(row.reshape(-1)) if row.ndim and row.dtype.kind in "bOUS" else None
            if bad is None:
                return None, RowError(code, f"'{field}' must be a flat list of numbers, got an array of shape {row.shape}")
            return None, _not_number_error(field, *bad, code=code, what=what)
    elif isinstance(row, (list, tuple)):
        kinds = set(map(type, row))
        if not all(issubclass(t, _NUMBER_TYPES) and not issubclass(t, _BOOL_TYPES) for t in kinds):
            return None, _not_number_error(field, *_first_non_number(row), code=code, what=what)
    else:
        return None, RowError(code, f"'{field}' must be a list of numbers, got {type(row).__name__} {_short(row)}")
    try:
        return np.asarray(row, dtype=np.float64).reshape(-1), None
    except OverflowError:  # a JSON integer beyond float64's range
        return None, RowError(COUNT_TOO_LARGE, f"'{field}' holds an integer too large for a float64: send counts of real documents")


def _not_number_error(field: str, position: int, value: Any, code: str = COUNT_NOT_NUMBER, what: str = "counts must be numbers") -> RowError:
    value = value.item() if isinstance(value, np.generic) else value
    return RowError(code, f"{field}[{position}] is {type(value).__name__} {_short(value)}: {what}, not strings, booleans, null or lists")


def _index_array(idx: Any, feature_dim: int) -> tuple[Optional[np.ndarray], Optional[RowError]]:
    """Return a row's ``indices`` as int64, or why they are not whole numbers in ``[0, feature_dim)``."""
    if isinstance(idx, np.ndarray) and idx.ndim == 1 and idx.dtype.kind in "iu":  # e.g. RecordIO's uint64 keys
        bad = (idx >= feature_dim) | (idx < 0) if idx.dtype.kind == "i" else idx >= feature_dim
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            return None, RowError(BAD_INDEX, f"indices[{j}] is {int(idx[j])}: indices must be in [0, feature_dim={feature_dim})")
        return idx.astype(np.int64), None
    if isinstance(idx, (list, tuple)) and all(issubclass(t, _INT_TYPES) and not issubclass(t, _BOOL_TYPES) for t in set(map(type, idx))):
        try:  # the common case, whole numbers already: no float round trip
            arr = np.asarray(idx, dtype=np.int64)
        except OverflowError:
            return None, RowError(BAD_INDEX, f"'indices' holds an integer too large for an index: indices must be in [0, feature_dim={feature_dim})")
        if len(arr) and (arr.min() < 0 or arr.max() >= feature_dim):
            j = int(np.flatnonzero((arr < 0) | (arr >= feature_dim))[0])
            return None, RowError(BAD_INDEX, f"indices[{j}] is {int(arr[j])}: indices must be in [0, feature_dim={feature_dim})")
        return arr, None
    arr, err = _number_array(idx, "indices", code=BAD_INDEX, what="indices must be whole numbers")
    if err is not None:
        return None, err
    whole = np.isfinite(arr) & (arr == np.floor(arr))
    if not whole.all():
        j = int(np.flatnonzero(~whole)[0])
        return None, RowError(BAD_INDEX, f"indices[{j}] is {float(arr[j])!r}: indices must be whole numbers (positions in vocab.txt)")
    out_of_range = np.flatnonzero((arr < 0) | (arr >= feature_dim))
    if len(out_of_range):
        j = int(out_of_range[0])
        return None, RowError(BAD_INDEX, f"indices[{j}] is {int(arr[j])}: indices must be in [0, feature_dim={feature_dim})")
    return arr.astype(np.int64), None


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class TopicScorer:
    """Normalize, vectorize and infer topic mixtures with one trained model.

    Args:
        model: A trained ``lightning_module.model.NTMModel`` in eval mode.
        vocab: The vocabulary the model was trained on (its ``feature_dim``).
        normalizer: The preprocessing text rules (the shared :class:`TextNormalizer`).
        topic_words: Top words of each topic, for ``top_topics`` output.
        max_text_bytes: Texts larger than this are rejected with ``too_large``.
        batch_size: Rows per inference batch.
        model_name: The registered model's name, for output records.
        model_version: The registered model's version, for output records.
        max_count: Largest count of one bag-of-words cell (``count_too_large`` above it).
        max_row_total: Largest sum of one row's counts (``count_too_large`` above it).
    """

    def __init__(
        self,
        model: Any,
        vocab: Vocabulary,
        normalizer: TextNormalizer,
        topic_words: Optional[Sequence[Sequence[str]]] = None,
        max_text_bytes: int = 1_000_000,
        batch_size: int = 1024,
        model_name: Optional[str] = None,
        model_version: Optional[str] = None,
        max_count: float = MAX_COUNT,
        max_row_total: float = MAX_ROW_TOTAL,
    ) -> None:
        if int(model.vocab_size) != len(vocab):
            raise ValueError(
                f"model feature_dim={model.vocab_size!r} does not match the vocabulary size {len(vocab)!r}: "
                "score with the vocab.txt the model was trained on."
            )
        self.model = model.eval()
        self.vocab = vocab
        self.normalizer = normalizer
        self.topic_words = [list(w) for w in topic_words] if topic_words is not None else None
        self.max_text_bytes = int(max_text_bytes)
        self.batch_size = int(batch_size)
        self.model_name = model_name
        self.model_version = model_version
        self.max_count = float(max_count)
        self.max_row_total = float(max_row_total)
        #: The training split's :class:`~ntm_spark.core.drift.DriftBaseline` (``None``: the model has none),
        #: and why it could not be read when the file is damaged.
        self.drift_baseline: Any = None
        self.drift_baseline_error: Optional[str] = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_model_folder(cls, path: Union[str, Path], **kwargs: Any) -> "TopicScorer":
        """Load a scorer from a training model folder (``model.pt``, ``hparams.json``, ``vocab.txt``...), local or a URI."""
        from lightning_module.model_folder import load_model_folder

        path = path if storage.is_remote(path) else Path(path)
        model, _hparams, words = load_model_folder(path)
        vocab = Vocabulary(words)
        rules = text_rules_from_manifest(read_manifest(path, required=False))
        lemma_table, closed = read_lemma_table(path, vocab)
        if closed:
            normalizer: TextNormalizer = VocabularyLemmaNormalizer(**rules, lemma_table=lemma_table)
        else:
            normalizer = get_normalizer(**rules, lemma_table=lemma_table)
        tw = read_topic_word(path, len(vocab))
        topic_words = top_words(tw, words) if tw is not None else None
        scorer = cls(model, vocab, normalizer, topic_words=topic_words, **kwargs)
        try:
            scorer.drift_baseline = read_drift_baseline(path)
        except ContractError as err:  # a damaged baseline costs the drift comparison, never the scoring
            scorer.drift_baseline_error = str(err)
        return scorer

    @property
    def num_topics(self) -> int:
        """K."""
        return int(self.model.num_topics)

    @property
    def feature_dim(self) -> int:
        """V, the vocabulary size."""
        return len(self.vocab)

    # ------------------------------------------------------------------ inference

    def _infer(self, dense: np.ndarray) -> np.ndarray:
        import torch

        out = np.empty((dense.shape[0], self.num_topics), dtype=np.float32)
        with self._lock, torch.inference_mode():
            for start in range(0, dense.shape[0], self.batch_size):
                chunk = torch.from_numpy(np.ascontiguousarray(dense[start : start + self.batch_size], dtype=np.float32))
                out[start : start + len(chunk)] = self.model.infer_topics(chunk).numpy()  # (b, K)
        return out

    def _score_dense_checked(self, dense: np.ndarray, errors: list) -> ScoreResult:
        weights = np.full((dense.shape[0], self.num_topics), np.nan, dtype=np.float32)
        ok = np.array([e is None for e in errors], dtype=bool)
        if ok.any():
            weights[ok] = self._infer(dense[ok])
            # The count limits keep float32 inference finite; this guard makes sure no row
            # ever leaves the scorer with weights that are not a distribution.
            with np.errstate(invalid="ignore"):
                off = np.abs(weights.sum(axis=1, dtype=np.float64) - 1.0) > WEIGHTS_SUM_TOLERANCE
            for i in np.flatnonzero(ok & (off | ~np.isfinite(weights).all(axis=1))):
                errors[i] = RowError(
                    NONFINITE_WEIGHTS,
                    "the model gave weights that are not finite or do not sum to 1 for this row: "
                    "send smaller counts (or report the model)",
                )
                weights[i] = np.nan
        return ScoreResult(weights, errors)

    def check_text(self, text: Any) -> Optional[RowError]:
        """Return why ``text`` cannot be scored before normalization, or ``None`` (:func:`ntm_spark.core.checks.check_text`)."""
        return check_text(text, self.max_text_bytes)

    def vectorize_texts(self, texts: Iterable[Any]) -> tuple[np.ndarray, list]:
        """Normalize and count texts with the model's vocabulary: ``(dense (N, V), errors)``."""
        dense, errors, _tokens, _oov = self._vectorize_texts(texts)
        return dense, errors

    def _vectorize_texts(
        self, texts: Iterable[Any], oov_words: Optional["collections.Counter"] = None
    ) -> tuple[np.ndarray, list, np.ndarray, np.ndarray]:
        """:meth:`vectorize_texts` plus each row's normalized tokens and out-of-vocabulary tokens (``-1``: not normalized).

        ``oov_words``: a ``Counter`` that also counts the out-of-vocabulary tokens themselves.
        """
        texts = list(texts)
        dense = np.zeros((len(texts), self.feature_dim), dtype=np.float32)
        tokens = np.full(len(texts), -1, dtype=np.int64)
        oov = np.full(len(texts), -1, dtype=np.int64)
        errors: list = []
        rows: list[int] = []
        cols: list[int] = []
        normalize, indices_of = self.normalizer.normalize, self.vocab.indices_of
        for i, text in enumerate(texts):
            err = self.check_text(text)
            if err is None:
                normalized = normalize(text)
                hits = indices_of(normalized)
                tokens[i], oov[i] = len(normalized), len(normalized) - len(hits)
                if oov_words is not None and oov[i]:
                    oov_words.update(t for t in normalized if t not in self.vocab)
                if not hits:
                    err = RowError(EMPTY_AFTER_NORMALIZATION, "no vocabulary word is left after normalization")
                else:
                    cols.extend(hits)
                    rows.extend([i] * len(hits))
            errors.append(err)
        if cols:
            np.add.at(dense, (np.asarray(rows, dtype=np.intp), np.asarray(cols, dtype=np.intp)), 1.0)  # counts
        return dense, errors, tokens, oov

    def score_texts(self, texts: Iterable[Any]) -> ScoreResult:
        """Topic weights for raw documents, normalized exactly as in preprocessing (with token counts)."""
        dense, errors, tokens, oov = self._vectorize_texts(texts)
        result = self._score_dense_checked(dense, errors)
        result.tokens, result.oov_tokens = tokens, oov
        return result

    def score_dense(self, rows: Any, field: str = "counts") -> ScoreResult:
        """Topic weights for dense bag-of-words rows of length ``feature_dim``.

        Args:
            rows: One sequence (or a 2-D array) of ``feature_dim`` numbers per document.
            field: The input's name for a row, used in error messages (``counts``, ``columns``).
        """
        rows = list(rows) if not isinstance(rows, np.ndarray) else rows
        dense = np.zeros((len(rows), self.feature_dim), dtype=np.float32)
        errors: list = []
        for i, row in enumerate(rows):
            arr, err = _number_array(row, field)
            if err is None:
                err = self._check_counts(arr, expect_len=True, field=field)
            if err is None:
                dense[i] = arr
            errors.append(err)
        return self._score_dense_checked(dense, errors)

    def score_sparse(self, indices: Sequence[Sequence[int]], values: Sequence[Sequence[float]]) -> ScoreResult:
        """Topic weights for sparse rows given as parallel ``indices``/``values`` lists.

        Indices must be whole numbers in ``[0, feature_dim)`` (``1.0`` is index 1, ``1.5`` is
        ``bad_index``); repeated indices add up. Values follow the count rules of
        :meth:`score_dense`.
        """
        if len(indices) != len(values):
            raise ScoringInputError(BAD_LENGTH, f"got {len(indices)} 'indices' rows but {len(values)} 'values' rows")
        fast = self._sparse_to_dense_fast(indices, values)
        if fast is not None:
            return self._score_dense_checked(fast, [None] * len(indices))
        dense = np.zeros((len(indices), self.feature_dim), dtype=np.float32)
        errors: list = []
        for i, (idx, val) in enumerate(zip(indices, values)):
            idx_arr, err = _index_array(idx, self.feature_dim)
            val_arr = None
            if err is None:
                val_arr, err = _number_array(val, "values")
            if err is None and len(idx_arr) != len(val_arr):
                err = RowError(BAD_LENGTH, f"the row has {len(idx_arr)} 'indices' but {len(val_arr)} 'values': send one value per index")
            if err is None:
                err = self._check_counts(val_arr, expect_len=False, field="values")
            if err is None:
                np.add.at(dense[i], idx_arr, val_arr.astype(np.float32))
            errors.append(err)
        for i in np.flatnonzero(dense.max(axis=1, initial=0) > self.max_count):  # repeated indices add up
            errors[i] = RowError(
                COUNT_TOO_LARGE,
                f"repeated 'indices' add up to a count of {float(dense[i].max())!r}, above max_count={self.max_count:g}: "
                "send counts of real documents",
            )
        return self._score_dense_checked(dense, errors)

    def _sparse_to_dense_fast(self, indices: Sequence[Any], values: Sequence[Any]) -> Optional[np.ndarray]:
        """The dense ``(N, V)`` counts of sparse rows in a few numpy calls, or ``None`` when any row breaks a rule.

        Only a request whose every row passes :meth:`score_sparse`'s checks (whole-number
        indices in range, numeric finite counts within the limits, one value per index, no
        empty row) takes this path; any other goes row by row, which names each problem.
        """
        n = len(indices)
        if n == 0:
            return None
        try:
            lengths = [len(i) for i in indices]
            if lengths != [len(v) for v in values] or 0 in lengths:
                return None
            if all(isinstance(i, np.ndarray) and i.ndim == 1 and i.dtype.kind in "iu" for i in indices):
                flat_idx = np.concatenate(indices).astype(np.int64)
            elif all(isinstance(i, list) for i in indices):
                flat = [x for row in indices for x in row]
                if set(map(type, flat)) - {int}:
                    return None
                flat_idx = np.array(flat, dtype=np.int64)
            else:
                return None
            if all(isinstance(v, np.ndarray) and v.ndim == 1 and v.dtype.kind in "iuf" for v in values):
                flat_val = np.concatenate(values).astype(np.float64)
            elif all(isinstance(v, list) for v in values):
                flat = [x for row in values for x in row]
                if set(map(type, flat)) - {int, float}:
                    return None
                flat_val = np.array(flat, dtype=np.float64)
            else:
                return None
        except (TypeError, ValueError, OverflowError):
            return None
        if flat_idx.min() < 0 or flat_idx.max() >= self.feature_dim:
            return None
        if not np.isfinite(flat_val).all() or flat_val.min() < 0 or flat_val.max() > self.max_count:
            return None
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        totals = np.add.reduceat(flat_val, starts)
        if totals.min() <= 0 or totals.max() > self.max_row_total:
            return None
        dense = np.zeros((n, self.feature_dim), dtype=np.float32)
        np.add.at(dense, (np.repeat(np.arange(n), lengths), flat_idx), flat_val.astype(np.float32))
        if dense.max() > self.max_count:  # repeated indices add up past the limit
            return None
        return dense

    def _check_counts(self, arr: np.ndarray, expect_len: bool, field: str = "counts") -> Optional[RowError]:
        """Return why a row of counts (float64, numbers already checked) cannot be scored, or ``None``.

        The rules every path shares (REST, stream, backfill): ``feature_dim`` values when
        ``expect_len``; finite (``nan_count``); ``>= 0`` (``negative_count``); each at most
        :attr:`max_count` and their sum at most :attr:`max_row_total` (``count_too_large``);
        and not all zero (``empty_counts``: the model would see an empty document).
        """
        if expect_len and arr.shape[0] != self.feature_dim:
            return RowError(
                BAD_LENGTH, f"'{field}' must have feature_dim={self.feature_dim} values, got {arr.shape[0]}: send every position, zeros included"
            )
        if not arr.size:
            return RowError(EMPTY_COUNTS, f"the row has no '{field}': an empty document has no topics; send at least one count > 0")
        low, high = float(arr.min()), float(arr.max())  # NaN propagates through min/max
        if not (np.isfinite(low) and np.isfinite(high)):
            j = int(np.flatnonzero(~np.isfinite(arr))[0])
            return RowError(NAN_COUNT, f"{field}[{j}] is {float(arr[j])!r}: counts must be finite numbers (not NaN or inf)")
        if low < 0:
            j = int(np.flatnonzero(arr < 0)[0])
            return RowError(NEGATIVE_COUNT, f"{field}[{j}] is {float(arr[j])!r}: counts must be >= 0")
        if high > self.max_count:
            j = int(np.flatnonzero(arr > self.max_count)[0])
            return RowError(
                COUNT_TOO_LARGE,
                f"{field}[{j}] is {float(arr[j])!r}, above max_count={self.max_count:g}: send counts of real documents",
            )
        total = float(arr.sum())
        if total > self.max_row_total:
            return RowError(
                COUNT_TOO_LARGE, f"the '{field}' of the row add up to {total:g}, above max_row_total={self.max_row_total:g}: send counts of real documents"
            )
        if total == 0:
            return RowError(
                EMPTY_COUNTS, f"every '{field}' count of the row is 0: an empty document has no topics; send at least one count > 0"
            )
        return None

    # ------------------------------------------------------------------ output

    def top_topics(self, weights: np.ndarray, k: int = 3, words: int = 5) -> list[dict]:
        """Return the ``k`` heaviest topics of one row as ``[{"topic", "weight", "words"}]``."""
        order = np.argsort(-weights)[:k]
        return [
            {
                "topic": int(t),
                "weight": float(weights[t]),
                "words": (self.topic_words[t][:words] if self.topic_words else []),
            }
            for t in order
        ]
