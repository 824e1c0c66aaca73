"""Drift of a stream against the model's training data: topic prevalence, Jensen–Shannon distance, OOV rate.

Pure numpy (no Spark, torch or MLflow), so training (the baseline), the stream (each
window) and tests share one implementation:

- :class:`TopicSums` accumulates document-topic weights (the scorer's ``softmax(mu)``)
  as sums, sums of squares and argmax counts; training turns the training split's sums
  into a :class:`DriftBaseline` (``drift_baseline.json`` in the model folder, read by
  :func:`ntm_spark.core.contract.read_drift_baseline`), the stream turns each window's
  into a :class:`WindowCounts`.
- :func:`evaluate_window` compares a window with the baseline under :class:`DriftThresholds`
  and returns the figures of a drift record (docs/streaming.md "Drift monitoring").

Definitions:

- *prevalence*: the mean of the documents' topic weights, a distribution over the K topics.
- *JS distance*: :func:`js_distance`, the square root of the Jensen–Shannon divergence
  with base-2 logarithms, so it lies in ``[0, 1]`` (0: the same prevalence).
- *z-score* of topic k: ``(window mean - training mean) / (training per-document std / sqrt(n))``,
  the z statistic of the window's mean under the training distribution.
- *OOV rate*: out-of-vocabulary normalized tokens / all normalized tokens (the texts that
  reached normalization, ``empty_after_normalization`` ones included).
- *empty rate*: ``empty_after_normalization`` documents / documents that reached normalization.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

#: The format of ``drift_baseline.json``.
BASELINE_FORMAT_VERSION = 1
#: A topic's training std below this is treated as this (a topic no document uses would give z = inf).
MIN_STD = 1e-6


def _vector(values: Any, name: str, length: Optional[int] = None) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a flat list of numbers, got shape {arr.shape}.")
    if length is not None and arr.shape[0] != length:
        raise ValueError(f"{name} has {arr.shape[0]} values, expected {length} (one per topic).")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} holds a value that is not finite: {arr.tolist()!r}.")
    return arr


# --------------------------------------------------------------------------- distances


def js_distance(p: Any, q: Any) -> float:
    """Jensen–Shannon distance of two distributions (base 2): ``sqrt(JSD)``, in ``[0, 1]``.

    ``p`` and ``q`` are non-negative weights of the same length; each is normalized to sum
    to 1 first (so counts work as well as probabilities). Zero entries are fine.

    Raises:
        ValueError: for different lengths, negative or non-finite values, or a vector with no mass.
    """
    p = _vector(p, "p")
    q = _vector(q, "q", len(p))
    return float(js_distance_matrix(p[None, :], q[None, :])[0, 0])


def js_distance_matrix(p: Any, q: Any) -> np.ndarray:
    """Jensen–Shannon distances (base 2) between every row of ``p`` ``(n, V)`` and every row of ``q`` ``(m, V)``: ``(n, m)``.

    The one implementation behind :func:`js_distance` (the stream's drift) and the topic
    matching of warm starts (:mod:`ntm_spark.core.topic_matching`). Rows are normalized to
    sum to 1 first.

    Raises:
        ValueError: for a shape mismatch, negative or non-finite values, or a row with no mass.
    """
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if p.ndim != 2 or q.ndim != 2 or p.shape[1] != q.shape[1]:
        raise ValueError(f"p {p.shape} and q {q.shape} must be 2-d with the same number of columns (one per outcome).")
    for name, v in (("p", p), ("q", q)):
        if not np.isfinite(v).all():
            raise ValueError(f"{name} holds a value that is not finite; pass finite non-negative weights.")
        if (v < 0).any():
            raise ValueError(f"{name} holds a negative weight; pass non-negative weights.")
        if (v.sum(axis=1) <= 0).any():
            raise ValueError(f"{name} has a row with no mass (its weights sum to 0): a distance needs at least one document.")
    p = p / p.sum(axis=1, keepdims=True)
    q = q / q.sum(axis=1, keepdims=True)
    out = np.empty((p.shape[0], q.shape[0]), dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(p > 0, p * np.log2(np.where(p > 0, p, 1.0)), 0.0).sum(axis=1)  # (n,)
        qlogq = np.where(q > 0, q * np.log2(np.where(q > 0, q, 1.0)), 0.0).sum(axis=1)  # (m,)
        for i in range(p.shape[0]):
            m = 0.5 * (p[i][None, :] + q)  # (m, V)
            mlogm = np.where(m > 0, m * np.log2(np.where(m > 0, m, 1.0)), 0.0).sum(axis=1)  # (m,)
            # JSD = H(M) - (H(P) + H(Q)) / 2, with H(X) = -sum x log2 x
            out[i] = 0.5 * (plogp[i] + qlogq) - mlogm
    return np.sqrt(np.clip(out, 0.0, 1.0))


def z_scores(window_mean: Any, n: int, baseline_mean: Any, baseline_std: Any) -> np.ndarray:
    """Per-topic z statistic of a window's mean weight under the training distribution.

    ``(window_mean - baseline_mean) / (max(baseline_std, MIN_STD) / sqrt(n))``.
    """
    w = _vector(window_mean, "window_mean")
    b = _vector(baseline_mean, "baseline_mean", len(w))
    s = np.maximum(_vector(baseline_std, "baseline_std", len(w)), MIN_STD)
    if n < 1:
        raise ValueError(f"n={n!r}: a z-score needs at least one document.")
    return (w - b) / (s / math.sqrt(n))


# --------------------------------------------------------------------------- accumulators


@dataclass
class TopicSums:
    """Sums of document-topic weights: enough for the mean, the per-document std and the argmax shares.

    Attributes:
        documents: Documents added.
        weight_sum: ``(K,)`` sum of the weights.
        weight_sumsq: ``(K,)`` sum of the squared weights.
        argmax_count: ``(K,)`` documents whose heaviest topic is k.
    """

    documents: int
    weight_sum: np.ndarray
    weight_sumsq: np.ndarray
    argmax_count: np.ndarray

    @classmethod
    def zeros(cls, num_topics: int) -> "TopicSums":
        """Empty sums over ``num_topics`` topics."""
        if int(num_topics) < 1:
            raise ValueError(f"num_topics={num_topics!r} must be >= 1.")
        k = int(num_topics)
        return cls(0, np.zeros(k), np.zeros(k), np.zeros(k, dtype=np.int64))

    @classmethod
    def from_weights(cls, weights: Any) -> "TopicSums":
        """Sums of a ``(N, K)`` weight matrix."""
        w = np.asarray(weights, dtype=np.float64)
        if w.ndim != 2 or w.shape[1] < 1:
            raise ValueError(f"weights must be a (documents, topics) matrix, got shape {w.shape}.")
        sums = cls.zeros(w.shape[1])
        sums.add(w)
        return sums

    @property
    def num_topics(self) -> int:
        """K."""
        return int(self.weight_sum.shape[0])

    def add(self, weights: Any) -> None:
        """Add a ``(N, K)`` block of document-topic weights (rows with a NaN are skipped)."""
        w = np.asarray(weights, dtype=np.float64)  # (N, K)
        if w.ndim != 2 or w.shape[1] != self.num_topics:
            raise ValueError(f"weights must have shape (N, {self.num_topics}), got {w.shape}.")
        w = w[np.isfinite(w).all(axis=1)]
        if not len(w):
            return
        self.documents += int(w.shape[0])
        self.weight_sum += w.sum(axis=0)
        self.weight_sumsq += (w * w).sum(axis=0)
        self.argmax_count += np.bincount(w.argmax(axis=1), minlength=self.num_topics)

    def merge(self, other: "TopicSums") -> "TopicSums":
        """Return the sums of both (same K)."""
        if other.num_topics != self.num_topics:
            raise ValueError(f"cannot merge sums over {other.num_topics} topics into sums over {self.num_topics}.")
        return TopicSums(
            self.documents + other.documents,
            self.weight_sum + other.weight_sum,
            self.weight_sumsq + other.weight_sumsq,
            self.argmax_count + other.argmax_count,
        )

    @property
    def prevalence(self) -> np.ndarray:
        """``(K,)`` mean weight per topic (zeros with no document)."""
        return self.weight_sum / self.documents if self.documents else np.zeros(self.num_topics)

    @property
    def std(self) -> np.ndarray:
        """``(K,)`` per-document standard deviation of each topic's weight (population std)."""
        if not self.documents:
            return np.zeros(self.num_topics)
        mean = self.prevalence
        return np.sqrt(np.maximum(self.weight_sumsq / self.documents - mean * mean, 0.0))

    @property
    def argmax_share(self) -> np.ndarray:
        """``(K,)`` share of documents whose heaviest topic is k."""
        return self.argmax_count / self.documents if self.documents else np.zeros(self.num_topics)


@dataclass
class DriftBaseline:
    """What the training split looked like: stored as ``drift_baseline.json`` in the model folder.

    Attributes:
        prevalence: ``(K,)`` mean document-topic weight over the training split.
        std: ``(K,)`` per-document std of each topic's weight.
        argmax_share: ``(K,)`` share of training documents whose heaviest topic is k.
        documents: Training documents scored.
        split: The split it was computed on.
        tokens: Normalized tokens of ``oov_split`` at preprocessing (``None``: unknown).
        in_vocab_tokens: Of those, the ones in the vocabulary (``None``: unknown).
        oov_split: The split the OOV counts are of: a split the vocabulary was *not* fitted on
            when there is one (validation), since the fitting split's own OOV rate is biased low
            (:func:`choose_oov_split`).
    """

    prevalence: np.ndarray
    std: np.ndarray
    argmax_share: np.ndarray
    documents: int
    split: str = "train"
    tokens: Optional[int] = None
    in_vocab_tokens: Optional[int] = None
    oov_split: Optional[str] = None

    @classmethod
    def from_sums(
        cls,
        sums: TopicSums,
        tokens: Optional[int] = None,
        in_vocab_tokens: Optional[int] = None,
        split: str = "train",
        oov_split: Optional[str] = None,
    ) -> "DriftBaseline":
        """The baseline of a split's :class:`TopicSums` and a split's preprocessing token counts."""
        if sums.documents < 1:
            raise ValueError(f"the {split!r} split has no scored document: a drift baseline needs at least one.")
        oov_split = (oov_split or split) if tokens is not None else None
        return cls(sums.prevalence, sums.std, sums.argmax_share, sums.documents, split, tokens, in_vocab_tokens, oov_split)

    @property
    def num_topics(self) -> int:
        """K."""
        return int(self.prevalence.shape[0])

    @property
    def oov_rate(self) -> Optional[float]:
        """The training split's share of normalized tokens outside the vocabulary, or ``None`` when unknown."""
        if self.tokens is None or self.in_vocab_tokens is None or self.tokens <= 0:
            return None
        return float(self.tokens - self.in_vocab_tokens) / float(self.tokens)

    def to_dict(self) -> dict:
        """The JSON form (``drift_baseline.json``)."""
        return {
            "format_version": BASELINE_FORMAT_VERSION,
            "split": self.split,
            "documents": int(self.documents),
            "prevalence": [float(x) for x in self.prevalence],
            "std": [float(x) for x in self.std],
            "argmax_share": [float(x) for x in self.argmax_share],
            "oov": {
                "split": self.oov_split,
                "tokens": self.tokens,
                "in_vocab_tokens": self.in_vocab_tokens,
                "rate": self.oov_rate,
                "source": "preprocessing manifest.json (splits.<split>.tokens / in_vocab_tokens)"
                if self.oov_rate is not None
                else "unknown: the data manifest has no token counts (written before they were recorded)",
            },
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "drift_baseline.json") -> "DriftBaseline":
        """Parse the JSON form.

        Raises:
            ValueError: naming ``where`` and the field that is wrong.
        """
        if not isinstance(data, dict):
            raise ValueError(f"{where} must hold a JSON object, got {type(data).__name__}.")
        if data.get("format_version") != BASELINE_FORMAT_VERSION:
            raise ValueError(
                f"{where} has format_version={data.get('format_version')!r}; this ntm-spark reads "
                f"{BASELINE_FORMAT_VERSION}: retrain the model or upgrade ntm-spark."
            )
        try:
            prevalence = _vector(data["prevalence"], f"{where}: prevalence")
            std = _vector(data["std"], f"{where}: std", len(prevalence))
            argmax = _vector(data["argmax_share"], f"{where}: argmax_share", len(prevalence))
            documents = int(data["documents"])
        except KeyError as err:
            raise ValueError(f"{where} has no {err.args[0]!r}: the file is damaged; retrain or re-register the model.") from err
        oov = data.get("oov") or {}
        tokens, in_vocab = oov.get("tokens"), oov.get("in_vocab_tokens")
        return cls(
            prevalence,
            std,
            argmax,
            documents,
            str(data.get("split", "train")),
            int(tokens) if isinstance(tokens, (int, float)) else None,
            int(in_vocab) if isinstance(in_vocab, (int, float)) else None,
            oov.get("split"),
        )


def choose_oov_split(token_counts: dict, fit_splits: Sequence[str] = ("train",)) -> Optional[str]:
    """The split whose OOV rate is the baseline: validation, else test, when the vocabulary was not fitted on it; else train.

    The vocabulary is chosen from ``fit_splits``, so their own OOV rate is lower than what new
    documents from the same source show; a held-out split (validation: same time span as train)
    measures the latter. ``token_counts`` maps split -> ``(tokens, in_vocab_tokens)`` (``None``s: unknown).
    """
    known = [s for s in ("validation", "test", "train") if (token_counts.get(s) or (None,))[0]]
    held_out = [s for s in known if s not in fit_splits]
    if held_out:
        return held_out[0]
    return "train" if "train" in known else (known or [None])[0]


@dataclass
class WindowCounts:
    """What one stream window saw.

    Attributes:
        records: Messages in the window (scored and dead-lettered).
        normalized: Documents that reached normalization (scored + ``empty_after_normalization``).
        empty: ``empty_after_normalization`` documents.
        tokens: Normalized tokens of the ``normalized`` documents.
        oov_tokens: Of those, the ones outside the vocabulary.
        sums: The scored documents' :class:`TopicSums` (``None`` when no document was scored).
    """

    records: int = 0
    normalized: int = 0
    empty: int = 0
    tokens: int = 0
    oov_tokens: int = 0
    sums: Optional[TopicSums] = None

    def merge(self, other: "WindowCounts") -> "WindowCounts":
        """Return the counts of both (a window over several micro-batches)."""
        if self.sums is None:
            sums = other.sums
        elif other.sums is None:
            sums = self.sums
        else:
            sums = self.sums.merge(other.sums)
        return WindowCounts(
            self.records + other.records,
            self.normalized + other.normalized,
            self.empty + other.empty,
            self.tokens + other.tokens,
            self.oov_tokens + other.oov_tokens,
            sums,
        )

    @property
    def scored(self) -> int:
        """Documents scored."""
        return self.sums.documents if self.sums is not None else 0


@dataclass
class DriftThresholds:
    """When a window's alert flag goes up (docs/streaming.md "Drift monitoring": how the defaults were chosen).

    Attributes:
        js_distance: Alert when the JS distance to the training prevalence is above this.
        oov_rate_increase: Alert when the OOV rate exceeds the training OOV rate by more than
            this (absolute, e.g. 0.1 = ten points); ignored when the baseline OOV rate is unknown.
        empty_rate: Alert when the ``empty_after_normalization`` rate is above this (``None``: never).
        z_score: Alert when a topic's ``|z|`` is above this (``None``: never; z grows with the
            window's size, so it is reported, not alerted on, by default).
        min_documents: A window with fewer scored documents never alerts (its figures are noise).
        top_z: How many topics (largest ``|z|``) a record lists.
    """

    js_distance: float = 0.13
    oov_rate_increase: Optional[float] = 0.09
    empty_rate: Optional[float] = None
    z_score: Optional[float] = None
    min_documents: int = 200
    top_z: int = 5

    def validate(self, prefix: str = "") -> None:
        """Raise ``ValueError`` naming the field, its value and the fix."""
        if not 0 < self.js_distance <= 1:
            raise ValueError(f"{prefix}js_distance={self.js_distance!r} must be in (0, 1]: use e.g. 0.13.")
        for name in ("oov_rate_increase", "empty_rate"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 1:
                raise ValueError(f"{prefix}{name}={value!r} must be null or a share in [0, 1].")
        if self.z_score is not None and self.z_score <= 0:
            raise ValueError(f"{prefix}z_score={self.z_score!r} must be null or a positive number.")
        if self.min_documents < 1:
            raise ValueError(f"{prefix}min_documents={self.min_documents!r} must be an integer >= 1.")
        if self.top_z < 0:
            raise ValueError(f"{prefix}top_z={self.top_z!r} must be an integer >= 0.")


def _rate(part: int, whole: int) -> Optional[float]:
    return float(part) / float(whole) if whole > 0 else None


def evaluate_window(window: WindowCounts, baseline: Optional[DriftBaseline], thresholds: DriftThresholds) -> dict:
    """The figures of one window against the baseline, and its alert flag.

    Returns:
        A JSON-able dict: ``records``, ``scored``, ``normalized``, ``empty``, ``tokens``, ``oov_tokens``,
        ``prevalence`` (K floats, ``None`` with no scored document), ``js_distance``, ``top_z``
        (``[{"topic", "z", "prevalence", "baseline"}]``, largest ``|z|`` first), ``oov_rate``,
        ``oov_rate_baseline``, ``empty_rate``, ``alert``, ``alert_reasons`` and ``notes``
        (why a figure is missing).
    """
    notes: list[str] = []
    reasons: list[str] = []
    sums = window.sums
    prevalence = sums.prevalence if sums is not None and sums.documents else None
    js: Optional[float] = None
    top: list[dict] = []
    if baseline is None:
        notes.append("the model has no drift baseline (drift_baseline.json): retrain it to compare with training")
    if prevalence is not None and baseline is not None:
        if baseline.num_topics != len(prevalence):
            notes.append(f"the window has {len(prevalence)} topics but the baseline {baseline.num_topics}: no comparison")
        else:
            js = js_distance(prevalence, baseline.prevalence)
            z = z_scores(prevalence, sums.documents, baseline.prevalence, baseline.std)
            order = np.argsort(-np.abs(z), kind="stable")[: thresholds.top_z]
            top = [
                {"topic": int(k), "z": float(z[k]), "prevalence": float(prevalence[k]), "baseline": float(baseline.prevalence[k])}
                for k in order
            ]
    oov_rate = _rate(window.oov_tokens, window.tokens)
    oov_base = baseline.oov_rate if baseline is not None else None
    if baseline is not None and oov_base is None:
        notes.append("the OOV rate has no baseline: the training data's manifest has no token counts (re-run ntm preprocess and retrain)")
    empty_rate = _rate(window.empty, window.normalized)
    enough = window.scored >= thresholds.min_documents
    if not enough:
        notes.append(f"{window.scored} scored documents, fewer than min_documents={thresholds.min_documents}: no alert")
    else:
        if js is not None and js > thresholds.js_distance:
            reasons.append(f"js_distance {js:.3f} > {thresholds.js_distance:g}")
        if thresholds.z_score is not None and top and abs(top[0]["z"]) > thresholds.z_score:
            reasons.append(f"topic {top[0]['topic']} z-score {top[0]['z']:.1f} beyond ±{thresholds.z_score:g}")
        if thresholds.oov_rate_increase is not None and oov_rate is not None and oov_base is not None:
            if oov_rate - oov_base > thresholds.oov_rate_increase:
                reasons.append(f"oov_rate {oov_rate:.3f} > baseline {oov_base:.3f} + {thresholds.oov_rate_increase:g}")
        if thresholds.empty_rate is not None and empty_rate is not None and empty_rate > thresholds.empty_rate:
            reasons.append(f"empty_rate {empty_rate:.3f} > {thresholds.empty_rate:g}")
    return {
        "records": int(window.records),
        "scored": int(window.scored),
        "normalized": int(window.normalized),
        "empty": int(window.empty),
        "tokens": int(window.tokens),
        "oov_tokens": int(window.oov_tokens),
        "prevalence": [float(x) for x in prevalence] if prevalence is not None else None,
        "js_distance": js,
        "top_z": top,
        "oov_rate": oov_rate,
        "oov_rate_baseline": oov_base,
        "empty_rate": empty_rate,
        "alert": bool(reasons),
        "alert_reasons": reasons,
        "notes": notes,
    }


def window_bounds(t: float, width_s: float) -> tuple[float, float]:
    """The processing-time window ``[start, end)`` (epoch seconds, aligned to ``width_s``) that holds ``t``."""
    if width_s <= 0:
        raise ValueError(f"width_s={width_s!r} must be positive.")
    start = math.floor(t / width_s) * width_s
    return start, start + width_s


def sums_from_lists(documents: int, weight_sum: Sequence[float], weight_sumsq: Sequence[float], argmax_count: Sequence[int]) -> TopicSums:
    """A :class:`TopicSums` from plain lists (e.g. a stream's observed metrics)."""
    s = _vector(weight_sum, "weight_sum")
    return TopicSums(
        int(documents),
        s,
        _vector(weight_sumsq, "weight_sumsq", len(s)),
        np.asarray(_vector(argmax_count, "argmax_count", len(s)), dtype=np.int64),
    )


__all__ = [
    "BASELINE_FORMAT_VERSION",
    "DriftBaseline",
    "DriftThresholds",
    "TopicSums",
    "WindowCounts",
    "choose_oov_split",
    "evaluate_window",
    "js_distance",
    "sums_from_lists",
    "window_bounds",
    "z_scores",
]
