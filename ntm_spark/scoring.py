"""The one scoring implementation: raw text or bag-of-words -> topic mixtures.

The MLflow pyfunc, the Kafka streaming job and the backfill all call
:class:`TopicScorer`; none re-implements normalization, vectorization or
inference. It needs torch and numpy only (no Spark, no MLflow).

Per-row problems never fail a batch: each row gets either topic weights or an
:class:`RowError` with a stable ``code`` (the dead-letter and HTTP 4xx codes).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Union

import numpy as np

from ntm_spark.text import TextNormalizer, get_normalizer
from ntm_spark.vocab import Vocabulary

# Error codes shared by the dead-letter topic, the REST endpoint and batch reports.
NOT_JSON = "not_json"
MISSING_TEXT = "missing_text"
TEXT_NOT_STRING = "text_not_string"
TOO_LARGE = "too_large"
EMPTY_TEXT = "empty_text"
EMPTY_AFTER_NORMALIZATION = "empty_after_normalization"
BAD_LENGTH = "bad_length"
NEGATIVE_COUNT = "negative_count"
NAN_COUNT = "nan_count"
BAD_INDEX = "bad_index"
# Whole-request codes (raised as ScoringInputError by input adapters such as the MLflow pyfunc).
UNKNOWN_COLUMN = "unknown_column"
MISSING_COLUMN = "missing_column"
MIXED_INPUT = "mixed_input"

#: The model folder's token -> lemma table (see :func:`read_lemma_table`).
LEMMAS_FILE = "lemmas.json"


class ScoringInputError(ValueError):
    """The whole request is unusable (e.g. an unknown column); ``code`` names the problem."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class RowError:
    """Why one row could not be scored."""

    code: str
    message: str


@dataclass
class ScoreResult:
    """Per-row topic weights (``nan`` rows where :attr:`errors` has an entry)."""

    weights: np.ndarray  # (N, K) float32
    errors: list = field(default_factory=list)  # list[Optional[RowError]], len N

    @property
    def ok(self) -> np.ndarray:
        """Boolean mask of the rows that were scored."""
        return np.array([e is None for e in self.errors], dtype=bool)


def text_rules_from_manifest(manifest: dict) -> dict:
    """Return the ``clean``/``stop_words`` settings preprocessing used, from its manifest.

    The scorer must normalize exactly as preprocessing did, so the rules travel with
    the model (in its copy of ``manifest.json``).
    """
    rules = manifest.get("text_rules") or {}
    params = manifest.get("params") or manifest.get("parameters") or {}
    clean = rules.get("clean", params.get("clean"))
    if clean is None:
        source = manifest.get("source")
        fmt = params.get("input_format") or (source.get("format") if isinstance(source, dict) else None)
        clean = fmt in (None, "20newsgroups")
    stop_words = rules.get("stop_words", params.get("stop_words", "english"))
    return {"clean": bool(clean), "stop_words": stop_words}


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


def read_lemma_table(path: Union[str, Path], vocab: Optional[Vocabulary] = None) -> tuple[dict, bool]:
    """Read a model folder's ``lemmas.json``: ``(token -> lemma, closed_over_vocab)``.

    Two layouts are accepted: a plain ``{token: lemma}`` mapping (WordNet stays the
    fallback for other tokens), or ``{"lemmas": {...}, "closed_over_vocab": true,
    "vocab_sha256": ...}`` as written by :func:`ntm_spark.pyfunc_model.write_lemma_table`.
    A closed table only counts as closed for the vocabulary whose sha256 it names.
    """
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if isinstance(data, dict) and isinstance(data.get("lemmas"), dict):
        closed = bool(data.get("closed_over_vocab"))
        if closed and vocab is not None and data.get("vocab_sha256") not in (None, vocab.sha256):
            closed = False
        return dict(data["lemmas"]), closed
    if not isinstance(data, dict):
        raise ValueError(f"lemma table {str(path)!r} must hold a JSON object of token -> lemma, got {type(data).__name__}.")
    return dict(data), False


class TopicScorer:
    """Normalize, vectorize and infer topic mixtures with one trained model.

    Args:
        model: A trained ``lightning_module.model.NTMModel`` in eval mode.
        vocab: The vocabulary the model was trained on (its ``feature_dim``).
        normalizer: The preprocessing text rules (the shared :class:`TextNormalizer`).
        topic_words: Top words of each topic, for ``top_topics`` output.
        max_text_bytes: Texts larger than this are rejected with ``too_large``.
        batch_size: Rows per inference batch.
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
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_model_folder(cls, path: Union[str, Path], **kwargs: Any) -> "TopicScorer":
        """Load a scorer from a training model folder (``model.pt``, ``hparams.json``, ``vocab.txt``...)."""
        from lightning_module.model_folder import load_model_folder

        path = Path(path)
        model, _hparams, words = load_model_folder(path)
        vocab = Vocabulary(words)
        manifest = {}
        if (path / "manifest.json").exists():
            manifest = json.loads((path / "manifest.json").read_text())
        rules = text_rules_from_manifest(manifest)
        lemma_table, closed = None, False
        if (path / LEMMAS_FILE).exists():
            lemma_table, closed = read_lemma_table(path / LEMMAS_FILE, vocab)
        if closed:
            normalizer: TextNormalizer = VocabularyLemmaNormalizer(
                clean=rules["clean"], stop_words=rules["stop_words"], lemma_table=lemma_table
            )
        else:
            normalizer = get_normalizer(clean=rules["clean"], stop_words=rules["stop_words"], lemma_table=lemma_table)
        topic_words = None
        if (path / "topic_word.npy").exists():
            tw = np.load(path / "topic_word.npy")
            topic_words = [[words[i] for i in np.argsort(-row)[:10]] for row in tw]
        return cls(model, vocab, normalizer, topic_words=topic_words, **kwargs)

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
        return ScoreResult(weights, errors)

    def check_text(self, text: Any) -> Optional[RowError]:
        """Return why ``text`` cannot be scored before normalization, or ``None``."""
        if text is None or (isinstance(text, float) and np.isnan(text)):
            return RowError(MISSING_TEXT, "the document has no 'text' value")
        if not isinstance(text, str):
            return RowError(TEXT_NOT_STRING, f"'text' must be a string, got {type(text).__name__}")
        if len(text) * 4 > self.max_text_bytes and len(text.encode("utf-8", errors="replace")) > self.max_text_bytes:
            return RowError(TOO_LARGE, f"'text' is larger than max_text_bytes={self.max_text_bytes}")
        if not text.strip():
            return RowError(EMPTY_TEXT, "'text' is empty")
        return None

    def vectorize_texts(self, texts: Iterable[Any]) -> tuple[np.ndarray, list]:
        """Normalize and count texts with the model's vocabulary: ``(dense (N, V), errors)``."""
        texts = list(texts)
        dense = np.zeros((len(texts), self.feature_dim), dtype=np.float32)
        errors: list = []
        rows: list[int] = []
        cols: list[int] = []
        normalize, indices_of = self.normalizer.normalize, self.vocab.indices_of
        for i, text in enumerate(texts):
            err = self.check_text(text)
            if err is None:
                hits = indices_of(normalize(text))
                if not hits:
                    err = RowError(EMPTY_AFTER_NORMALIZATION, "no vocabulary word is left after normalization")
                else:
                    cols.extend(hits)
                    rows.extend([i] * len(hits))
            errors.append(err)
        if cols:
            np.add.at(dense, (np.asarray(rows, dtype=np.intp), np.asarray(cols, dtype=np.intp)), 1.0)  # counts
        return dense, errors

    def score_texts(self, texts: Iterable[Any]) -> ScoreResult:
        """Topic weights for raw documents, normalized exactly as in preprocessing."""
        dense, errors = self.vectorize_texts(texts)
        return self._score_dense_checked(dense, errors)

    def score_dense(self, rows: Any) -> ScoreResult:
        """Topic weights for dense bag-of-words rows of length ``feature_dim``."""
        rows = list(rows) if not isinstance(rows, np.ndarray) else rows
        dense = np.zeros((len(rows), self.feature_dim), dtype=np.float32)
        errors: list = []
        for i, row in enumerate(rows):
            try:
                arr = np.asarray(row, dtype=np.float64).reshape(-1)
            except (TypeError, ValueError):
                errors.append(RowError(BAD_LENGTH, "a bag-of-words row must be a list of numbers"))
                continue
            errors.append(self._check_counts(arr, expect_len=True))
            if errors[-1] is None:
                dense[i] = arr
        return self._score_dense_checked(dense, errors)

    def score_sparse(self, indices: Sequence[Sequence[int]], values: Sequence[Sequence[float]]) -> ScoreResult:
        """Topic weights for sparse rows given as parallel ``indices``/``values`` lists."""
        if len(indices) != len(values):
            raise ScoringInputError(BAD_LENGTH, f"got {len(indices)} 'indices' rows but {len(values)} 'values' rows")
        dense = np.zeros((len(indices), self.feature_dim), dtype=np.float32)
        errors: list = []
        for i, (idx, val) in enumerate(zip(indices, values)):
            try:
                idx = np.asarray(idx, dtype=np.int64).reshape(-1)
                val = np.asarray(val, dtype=np.float64).reshape(-1)
            except (TypeError, ValueError):
                errors.append(RowError(BAD_LENGTH, "'indices' must be integers and 'values' numbers"))
                continue
            err = None
            if len(idx) != len(val):
                err = RowError(BAD_LENGTH, f"row has {len(idx)} indices but {len(val)} values")
            elif len(idx) and (idx.min() < 0 or idx.max() >= self.feature_dim):
                err = RowError(BAD_INDEX, f"indices must be in [0, {self.feature_dim})")
            else:
                err = self._check_counts(val, expect_len=False)
            if err is None and len(idx):
                np.add.at(dense[i], idx, val.astype(np.float32))
            errors.append(err)
        return self._score_dense_checked(dense, errors)

    def _check_counts(self, arr: np.ndarray, expect_len: bool) -> Optional[RowError]:
        if expect_len and arr.shape[0] != self.feature_dim:
            return RowError(BAD_LENGTH, f"a bag-of-words row must have feature_dim={self.feature_dim} values, got {arr.shape[0]}")
        if np.isnan(arr).any() or np.isinf(arr).any():
            return RowError(NAN_COUNT, "counts must be finite numbers (found NaN or inf)")
        if (arr < 0).any():
            return RowError(NEGATIVE_COUNT, "counts must be >= 0")
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
