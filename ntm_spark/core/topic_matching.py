"""Topic ids that stay put across retraining: matching topics, and how far each one moved.

Dashboards and downstream consumers key on topic ids, so a retrained model (``ntm train
--warm-start``) must keep the champion's. Two pieces, pure numpy (no torch, Spark or
MLflow), shared by training and the registry gate:

- :func:`match_topics`: the Hungarian assignment (:func:`linear_assignment`) of a new model's
  topics to a reference model's on the Jensen–Shannon distance of their topic-word
  distributions (:func:`ntm_spark.core.drift.js_distance_matrix`). Training reorders the new
  model's topics by it before writing the model folder.
- :func:`topic_stability`: by id (no re-matching), how far each topic moved from the
  reference, and which ids are new or retired. ``topic_stability.json`` in the model folder
  records it, and the gate (:func:`ntm_spark.mlops.registry.evaluate_gate`) refuses a
  challenger with more than ``gate_max_moved_topics`` moved topics.

Definitions (docs/train.md "Warm start"):

- *distance* of topic id k: the JS distance (base 2, in ``[0, 1]``) between the two models'
  word distributions of topic k, both put on the union of their vocabularies (a word a
  model does not have gets probability 0 there).
- *moved*: distance > ``move_threshold``; *replaced*: the new topic ``k`` is closer to another
  of the reference's topics than to topic ``k`` (the id now carries something else); *new*: an
  id only the new model has; *retired*: an id only the reference has. *Changed* ids (what the
  gate counts) are the moved, replaced, new and retired ones.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

from ntm_spark.core.drift import js_distance_matrix

#: The format of ``topic_stability.json``.
STABILITY_FORMAT_VERSION = 1
#: A topic whose word distribution moved further than this (JS distance, base 2) counts as moved.
#: Measured on 20 Newsgroups, K=20, the default preset, 3 seeds (BENCHMARKS.md "Warm start"): a warm
#: start on the other half of the training split moves its topics by a median of 0.11-0.13 (at most
#: 0.27-0.34, 2-4 of 20 ids above 0.2), while two *different* topics of one model are 0.19-0.23 apart
#: at the closest (5th percentile 0.27, median 0.39). Topic-word distributions are flat over the
#: vocabulary, so distinct topics are not far apart in JS terms: the threshold sits below the closest
#: distinct pair, and an id whose topic is now nearer another of the reference's counts as replaced
#: whatever its distance.
DEFAULT_MOVE_THRESHOLD = 0.2
#: The gate's default budget of moved topics: this share of the champion's topics.
DEFAULT_MAX_MOVED_SHARE = 0.2


# --------------------------------------------------------------------------- assignment


def linear_assignment(cost: Any) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost assignment of rows to columns (the Hungarian method, O(n² m)).

    Same contract as ``scipy.optimize.linear_sum_assignment``: for an ``(n, m)`` cost matrix
    returns ``(rows, cols)`` with ``min(n, m)`` pairs, ``rows`` ascending, minimizing
    ``cost[rows, cols].sum()``.

    Raises:
        ValueError: for a cost matrix that is not 2-d or holds a non-finite value.
    """
    c = np.asarray(cost, dtype=np.float64)
    if c.ndim != 2:
        raise ValueError(f"cost has shape {c.shape}: pass a 2-d matrix (rows x columns).")
    if not np.isfinite(c).all():
        raise ValueError("cost holds a value that is not finite: the assignment needs finite costs.")
    transposed = c.shape[0] > c.shape[1]
    if transposed:
        c = c.T
    n, m = c.shape
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    # Potentials u (rows), v (columns); p[j]: the row assigned to column j (1-based, 0 = none).
    u = np.zeros(n + 1)
    v = np.zeros(m + 1)
    p = np.zeros(m + 1, dtype=np.int64)
    way = np.zeros(m + 1, dtype=np.int64)
    for i in range(1, n + 1):
        p[0] = i
        j0 = 0
        minv = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, dtype=bool)
        while True:
            used[j0] = True
            i0 = p[j0]
            free = ~used[1:]
            cur = c[i0 - 1] - u[i0] - v[1:]  # (m,)
            better = free & (cur < minv[1:])
            minv[1:][better] = cur[better]
            way[1:][better] = j0
            candidates = np.where(free, minv[1:], np.inf)
            j1 = int(np.argmin(candidates)) + 1
            delta = candidates[j1 - 1]
            u[p[used]] += delta
            v[used] -= delta
            minv[1:][free] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while True:
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
            if j0 == 0:
                break
    cols_of_rows = np.full(n, -1, dtype=np.int64)
    for j in range(1, m + 1):
        if p[j]:
            cols_of_rows[p[j] - 1] = j - 1
    rows = np.arange(n, dtype=np.int64)
    if transposed:
        order = np.argsort(cols_of_rows)
        return cols_of_rows[order], rows[order]
    return rows, cols_of_rows


# --------------------------------------------------------------------------- topic-word matrices


def on_common_vocabulary(
    reference: Any, reference_vocab: Sequence[str], other: Any, other_vocab: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Put two topic-word matrices ``(K, V1)`` and ``(L, V2)`` on the union of their vocabularies (same word order).

    Words one model lacks get weight 0 in it. The same vocabulary returns the matrices as they are.

    Raises:
        ValueError: when a matrix's width differs from its vocabulary's length.
    """
    a, b = np.asarray(reference, dtype=np.float64), np.asarray(other, dtype=np.float64)
    for name, mat, vocab in (("reference", a, reference_vocab), ("other", b, other_vocab)):
        if mat.ndim != 2 or mat.shape[1] != len(vocab):
            raise ValueError(f"the {name} topic-word matrix has shape {mat.shape} but its vocabulary {len(vocab)} words.")
    if list(reference_vocab) == list(other_vocab):
        return a, b
    union = list(reference_vocab) + [w for w in other_vocab if w not in set(reference_vocab)]
    index = {w: i for i, w in enumerate(union)}
    a2 = np.zeros((a.shape[0], len(union)))
    a2[:, [index[w] for w in reference_vocab]] = a
    b2 = np.zeros((b.shape[0], len(union)))
    b2[:, [index[w] for w in other_vocab]] = b
    return a2, b2


def match_topics(reference: Any, other: Any) -> np.ndarray:
    """Return ``order``: ``other``'s topics reordered so that ``other[order]`` keeps ``reference``'s ids.

    Topic-word matrices on one vocabulary (:func:`on_common_vocabulary`), ``(K, V)`` and
    ``(L, V)``. The first ``min(K, L)`` ids get the Hungarian assignment on the JS distance;
    when ``L > K`` the unmatched topics follow as new ids ``K..L-1``, closest first.
    ``order`` is a permutation of ``range(L)``.
    """
    a, b = np.asarray(reference, dtype=np.float64), np.asarray(other, dtype=np.float64)
    dist = js_distance_matrix(a, b)  # (K, L)
    rows, cols = linear_assignment(dist)
    order = np.full(a.shape[0], -1, dtype=np.int64)
    order[rows] = cols
    matched = order[order >= 0]
    if len(matched) < a.shape[0]:
        # L < K: the reference ids left without a topic are retired; the matched ones keep
        # their relative order, packed into ids 0..L-1 (ids past L cannot exist in the new model).
        return matched
    rest = [j for j in range(b.shape[0]) if j not in set(matched.tolist())]
    rest.sort(key=lambda j: float(dist[:, j].min()))
    return np.concatenate([matched, np.asarray(rest, dtype=np.int64)])


@dataclass
class TopicStability:
    """How far each topic id moved from a reference model (``topic_stability.json``).

    Attributes:
        reference: What the topics were compared with, e.g. ``models:/ntm@champion (version 3)``.
        distances: Per id present in both models, the JS distance of its word distributions.
        move_threshold: A distance above this is *moved*.
        nearest: Per id present in both, the reference topic closest to the new topic.
        moved: Ids with distance > ``move_threshold``.
        replaced: Ids whose new topic is closer to another reference topic than to their own.
        new: Ids only the new model has.
        retired: Ids only the reference has.
        top_words: Per id, ``{"before": [...], "after": [...]}`` top words, when vocabularies were given.
    """

    reference: str
    distances: list[float]
    move_threshold: float
    nearest: list[int] = field(default_factory=list)
    moved: list[int] = field(default_factory=list)
    replaced: list[int] = field(default_factory=list)
    new: list[int] = field(default_factory=list)
    retired: list[int] = field(default_factory=list)
    top_words: Optional[list[dict[str, list[str]]]] = None
    format_version: int = STABILITY_FORMAT_VERSION

    @property
    def changed_ids(self) -> list[int]:
        """Ids that do not carry the reference's topic as it was: moved, replaced, new and retired."""
        return sorted(set(self.moved) | set(self.replaced) | set(self.new) | set(self.retired))

    @property
    def changed(self) -> int:
        """How many :attr:`changed_ids` there are."""
        return len(self.changed_ids)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``topic_stability.json``), with a summary."""
        d = asdict(self)
        kept = len(set(range(len(self.distances))) - set(self.moved) - set(self.replaced))
        d["summary"] = {
            "topics_compared": len(self.distances),
            "kept": kept,
            "changed": self.changed,
            "moved": len(self.moved),
            "replaced": len(self.replaced),
            "new": len(self.new),
            "retired": len(self.retired),
            "median_distance": float(np.median(self.distances)) if self.distances else None,
            "max_distance": float(np.max(self.distances)) if self.distances else None,
        }
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TopicStability":
        """Read the JSON form.

        Raises:
            ValueError: for another format version or missing fields, naming the fix.
        """
        if not isinstance(data, dict) or data.get("format_version") != STABILITY_FORMAT_VERSION:
            raise ValueError(
                f"topic_stability.json format_version={(data or {}).get('format_version')!r}: this code reads "
                f"version {STABILITY_FORMAT_VERSION}; retrain with this ntm-spark."
            )
        try:
            return cls(
                reference=str(data["reference"]),
                distances=[float(x) for x in data["distances"]],
                move_threshold=float(data["move_threshold"]),
                nearest=[int(x) for x in data.get("nearest", [])],
                moved=[int(x) for x in data.get("moved", [])],
                replaced=[int(x) for x in data.get("replaced", [])],
                new=[int(x) for x in data.get("new", [])],
                retired=[int(x) for x in data.get("retired", [])],
                top_words=data.get("top_words"),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"topic_stability.json is malformed ({err}); retrain to rewrite it.") from None

    def table(self, limit: Optional[int] = None) -> str:
        """A readable per-topic table: id, distance, status, top words before -> after."""
        lines = [f"topic stability against {self.reference} (moved: JS distance > {self.move_threshold:g}):"]
        for k, d in enumerate(self.distances[:limit] if limit else self.distances):
            status = "replaced" if k in self.replaced else ("moved" if k in self.moved else "kept")
            if k in self.replaced and k < len(self.nearest):
                status += f" (now nearest to {self.nearest[k]})"
            words = ""
            if self.top_words and k < len(self.top_words):
                w = self.top_words[k]
                words = f"  {' '.join(w.get('before', [])[:5])} -> {' '.join(w.get('after', [])[:5])}"
            lines.append(f"  topic {k:>3}  {d:.3f}  {status:<28}{words}")
        for k in self.new:
            lines.append(f"  topic {k:>3}  new")
        for k in self.retired:
            lines.append(f"  topic {k:>3}  retired")
        s = self.to_dict()["summary"]
        lines.append(f"  {s['kept']} kept, {s['moved']} moved, {s['replaced']} replaced, {s['new']} new, {s['retired']} retired")
        return "\n".join(lines)


def topic_stability(
    reference: Any,
    other: Any,
    reference_name: str = "the reference model",
    move_threshold: float = DEFAULT_MOVE_THRESHOLD,
    vocabs: Optional[tuple[Sequence[str], Sequence[str]]] = None,
    top_n: int = 10,
) -> TopicStability:
    """Compare topic ``k`` of ``other`` with topic ``k`` of ``reference`` for every id (no re-matching).

    Args:
        reference: The reference's topic-word matrix ``(K, V1)``.
        other: The new model's ``(L, V2)``.
        reference_name: How the report names the reference.
        move_threshold: See :class:`TopicStability`.
        vocabs: ``(reference vocabulary, other vocabulary)``; ``None``: both matrices are on one
            vocabulary already (and no top words are recorded).
        top_n: Top words recorded per id, before and after.

    Raises:
        ValueError: for a threshold out of ``(0, 1]``, or shapes that do not fit.
    """
    if not 0 < move_threshold <= 1:
        raise ValueError(f"move_threshold={move_threshold!r}: use a JS distance in (0, 1] (JS distances lie in [0, 1]).")
    a, b = np.asarray(reference, dtype=np.float64), np.asarray(other, dtype=np.float64)
    top = None
    if vocabs is not None:
        top = [
            {"before": [vocabs[0][i] for i in np.argsort(-row)[:top_n]]} for row in a
        ]
        for k, row in enumerate(b):
            if k < len(top):
                top[k]["after"] = [vocabs[1][i] for i in np.argsort(-row)[:top_n]]
            else:
                top.append({"before": [], "after": [vocabs[1][i] for i in np.argsort(-row)[:top_n]]})
        a, b = on_common_vocabulary(a, vocabs[0], b, vocabs[1])
    elif a.shape[1] != b.shape[1]:
        raise ValueError(f"topic-word matrices {a.shape} and {b.shape} are on different vocabularies: pass vocabs.")
    n = min(a.shape[0], b.shape[0])
    full = js_distance_matrix(a, b[:n]) if n else np.zeros((a.shape[0], 0))  # (K, n): reference x new
    dist = np.diagonal(full[:n]) if n else np.zeros(0)
    nearest = [int(i) for i in full.argmin(axis=0)] if n else []
    distances = [round(float(x), 6) for x in dist]
    return TopicStability(
        reference=reference_name,
        distances=distances,
        move_threshold=float(move_threshold),
        nearest=nearest,
        moved=[k for k, d in enumerate(distances) if d > move_threshold],
        replaced=[k for k in range(n) if nearest[k] != k and full[nearest[k], k] < full[k, k]],
        new=list(range(n, b.shape[0])),
        retired=list(range(n, a.shape[0])),
        top_words=top,
    )


def max_moved_topics(num_topics: int, setting: Optional[int] = None) -> int:
    """The gate's budget of changed topic ids: ``setting``, or ``DEFAULT_MAX_MOVED_SHARE`` of ``num_topics`` (rounded down)."""
    if setting is not None:
        return int(setting)
    return int(DEFAULT_MAX_MOVED_SHARE * int(num_topics))
