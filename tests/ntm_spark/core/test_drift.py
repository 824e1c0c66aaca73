"""The drift arithmetic (core/drift.py): JS distance, sums, baseline JSON, window evaluation."""

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ntm_spark.core.contract import ContractError, read_drift_baseline, split_token_counts, write_drift_baseline
from ntm_spark.core.drift import (
    DriftBaseline,
    DriftThresholds,
    TopicSums,
    WindowCounts,
    choose_oov_split,
    evaluate_window,
    js_distance,
    window_bounds,
    z_scores,
)

weights = st.integers(2, 12).flatmap(
    lambda k: st.tuples(
        arrays(np.float64, k, elements=st.floats(0, 1e6, allow_nan=False)),
        arrays(np.float64, k, elements=st.floats(0, 1e6, allow_nan=False)),
    )
).filter(lambda pq: pq[0].sum() > 0 and pq[1].sum() > 0)


@settings(max_examples=300, deadline=None)
@given(weights)
def test_js_distance_is_a_bounded_symmetric_finite_distance(pq):
    p, q = pq
    d = js_distance(p, q)
    assert math.isfinite(d) and 0.0 <= d <= 1.0
    assert d == pytest.approx(js_distance(q, p), abs=1e-12)
    assert js_distance(p, p) == pytest.approx(0.0, abs=1e-6)
    assert js_distance(p, p * 7.5) == pytest.approx(0.0, abs=1e-6)  # weights are normalized first


def test_js_distance_reference_values():
    # Disjoint supports: JSD = 1 bit, distance 1; scipy.spatial.distance.jensenshannon(base=2) agrees.
    assert js_distance([1, 0], [0, 1]) == pytest.approx(1.0)
    assert js_distance([0.5, 0.5], [1.0, 0.0]) == pytest.approx(0.5579230452841438)
    for bad, match in (([0, 0], "no mass"), ([1, -1], "negative"), ([1, float("nan")], "not finite"), ([1, 2, 3], "expected 2")):
        with pytest.raises(ValueError, match=match):
            js_distance([1, 1], bad)


def test_topic_sums_match_numpy_and_merge():
    rng = np.random.default_rng(0)
    w = rng.dirichlet(np.ones(5), size=200)
    a, b = TopicSums.from_weights(w[:70]), TopicSums.from_weights(w[70:])
    both = a.merge(b)
    assert both.documents == 200
    np.testing.assert_allclose(both.prevalence, w.mean(axis=0))
    np.testing.assert_allclose(both.std, w.std(axis=0), atol=1e-12)
    np.testing.assert_allclose(both.argmax_share, np.bincount(w.argmax(axis=1), minlength=5) / 200)
    with_nan = np.vstack([w[:3], np.full((1, 5), np.nan)])
    assert TopicSums.from_weights(with_nan).documents == 3  # a row that was not scored adds nothing
    with pytest.raises(ValueError, match="cannot merge"):
        a.merge(TopicSums.zeros(4))


def test_z_scores_are_the_mean_test():
    z = z_scores([0.3, 0.7], 100, [0.5, 0.5], [0.2, 0.0])
    assert z[0] == pytest.approx((0.3 - 0.5) / (0.2 / 10))
    assert math.isfinite(z[1])  # a topic with std 0 gets MIN_STD, not a division by zero


def _baseline(prev=(0.25, 0.25, 0.25, 0.25), tokens=1000, in_vocab=900):
    sums = TopicSums.from_weights(np.array([prev] * 50) + np.random.default_rng(1).normal(0, 0.01, (50, len(prev))).clip(0))
    return DriftBaseline.from_sums(sums, tokens, in_vocab)


def test_baseline_round_trips_through_the_model_folder(tmp_path):
    base = _baseline()
    assert base.oov_rate == pytest.approx(0.1)
    write_drift_baseline(tmp_path, base)
    back = read_drift_baseline(tmp_path)
    np.testing.assert_allclose(back.prevalence, base.prevalence)
    np.testing.assert_allclose(back.std, base.std)
    assert (back.documents, back.tokens, back.in_vocab_tokens) == (50, 1000, 900)
    assert read_drift_baseline(tmp_path / "none") is None
    unknown = DriftBaseline.from_sums(TopicSums.from_weights([[0.5, 0.5]]))
    assert unknown.oov_rate is None and "unknown" in unknown.to_dict()["oov"]["source"]
    (tmp_path / "drift_baseline.json").write_text(json.dumps({"format_version": 1, "prevalence": [0.5, 0.5]}))
    with pytest.raises(ContractError, match="no 'std'"):
        read_drift_baseline(tmp_path)
    (tmp_path / "drift_baseline.json").write_text(json.dumps({**base.to_dict(), "std": [0.1]}))
    with pytest.raises(ContractError, match="std has 1 values, expected 4"):
        read_drift_baseline(tmp_path)


def test_split_token_counts_reads_the_manifest_or_says_unknown():
    manifest = {"splits": {"train": {"documents": 3, "tokens": 40, "in_vocab_tokens": 30}, "test": {"documents": 1}}}
    assert split_token_counts(manifest, "train") == (40, 30)
    assert split_token_counts(manifest, "test") == (None, None)
    assert split_token_counts(None, "train") == (None, None)


def _window(weights, tokens=100, oov=10, empty=0, normalized=None):
    w = np.asarray(weights, dtype=float)
    return WindowCounts(records=len(w) + empty, normalized=normalized if normalized is not None else len(w) + empty,
                        empty=empty, tokens=tokens, oov_tokens=oov, sums=TopicSums.from_weights(w))  # fmt: skip


def test_evaluate_window_alerts_on_js_oov_and_empty_rate_and_says_why():
    base = _baseline()
    th = DriftThresholds(js_distance=0.2, oov_rate_increase=0.05, empty_rate=0.3, min_documents=20)
    same = evaluate_window(_window([[0.25] * 4] * 30, tokens=1000, oov=100), base, th)
    assert not same["alert"] and same["js_distance"] < 0.05 and same["oov_rate"] == pytest.approx(0.1)
    assert same["oov_rate_baseline"] == pytest.approx(0.1) and len(same["top_z"]) == 4
    shifted = evaluate_window(_window([[0.85, 0.05, 0.05, 0.05]] * 30, tokens=1000, oov=100), base, th)
    assert shifted["alert"] and shifted["alert_reasons"][0].startswith("js_distance")
    assert shifted["top_z"][0]["topic"] == 0 and shifted["top_z"][0]["z"] > 0
    oov = evaluate_window(_window([[0.25] * 4] * 30, tokens=1000, oov=300), base, th)
    assert oov["alert"] and oov["alert_reasons"] == ["oov_rate 0.300 > baseline 0.100 + 0.05"]
    empty = evaluate_window(_window([[0.25] * 4] * 30, tokens=1000, oov=100, empty=20), base, th)
    assert empty["alert"] and empty["empty_rate"] == pytest.approx(0.4)
    few = evaluate_window(_window([[0.85, 0.05, 0.05, 0.05]] * 5), base, th)
    assert not few["alert"] and "fewer than min_documents=20" in few["notes"][-1]


def test_evaluate_window_without_baseline_or_oov_baseline_reports_and_says_so():
    th = DriftThresholds()
    none = evaluate_window(_window([[0.5, 0.5]] * 30), None, th)
    assert none["js_distance"] is None and none["oov_rate"] == pytest.approx(0.1) and not none["alert"]
    assert "no drift baseline" in none["notes"][0]
    unknown = DriftBaseline.from_sums(TopicSums.from_weights([[0.5, 0.5]] * 5))
    rec = evaluate_window(_window([[0.5, 0.5]] * 30, oov=90), unknown, th)
    assert rec["oov_rate_baseline"] is None and any("no baseline" in n for n in rec["notes"]) and not rec["alert"]
    other_k = evaluate_window(_window([[0.2, 0.3, 0.5]] * 30), unknown, th)
    assert other_k["js_distance"] is None and "3 topics but the baseline 2" in other_k["notes"][0]
    empty_window = evaluate_window(WindowCounts(records=4, normalized=4, empty=4, tokens=9, oov_tokens=9), unknown, th)
    assert empty_window["prevalence"] is None and empty_window["empty_rate"] == 1.0


def test_thresholds_and_windows_validate():
    with pytest.raises(ValueError, match="js_distance=0"):
        DriftThresholds(js_distance=0).validate()
    with pytest.raises(ValueError, match="min_documents=0"):
        DriftThresholds(min_documents=0).validate()
    assert window_bounds(125.0, 60) == (120.0, 180.0)
    with pytest.raises(ValueError, match="width_s"):
        window_bounds(1.0, 0)


def test_the_oov_baseline_prefers_a_split_the_vocabulary_was_not_fitted_on():
    counts = {"train": (100, 90), "validation": (20, 15), "test": (None, None)}
    assert choose_oov_split(counts, ["train"]) == "validation"
    assert choose_oov_split(counts, ["train", "validation"]) == "train"  # nothing held out: the fitted split
    assert choose_oov_split({"train": (100, 90), "validation": (0, 0)}, ["train"]) == "train"
    assert choose_oov_split({"train": (None, None)}, ["train"]) is None
    base = DriftBaseline.from_sums(TopicSums.from_weights([[0.5, 0.5]]), 20, 15, oov_split="validation")
    assert DriftBaseline.from_dict(base.to_dict()).oov_split == "validation" and base.oov_rate == 0.25
