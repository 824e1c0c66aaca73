"""Topic matching and stability (issue 21): the Hungarian assignment, the JS distance matrix, the per-id report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ntm_spark.core.drift import js_distance, js_distance_matrix
from ntm_spark.core.topic_matching import (
    TopicStability,
    linear_assignment,
    match_topics,
    max_moved_topics,
    on_common_vocabulary,
    topic_stability,
)

costs = st.tuples(st.integers(0, 7), st.integers(0, 7)).flatmap(
    lambda nm: arrays(np.float64, nm, elements=st.floats(0, 100, allow_nan=False, allow_subnormal=False))
)


@settings(max_examples=300, deadline=None)
@given(costs)
def test_linear_assignment_is_optimal_like_scipy(cost):
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_assignment(cost)
    r2, c2 = linear_sum_assignment(cost)
    assert len(rows) == min(cost.shape)
    assert list(rows) == sorted(set(rows.tolist())) and len(set(cols.tolist())) == len(cols)
    assert cost[rows, cols].sum() == pytest.approx(cost[r2, c2].sum(), abs=1e-9)


def test_linear_assignment_refuses_bad_costs():
    with pytest.raises(ValueError, match="2-d"):
        linear_assignment(np.zeros(3))
    with pytest.raises(ValueError, match="not finite"):
        linear_assignment(np.array([[0.0, np.inf]]))


def test_js_distance_matrix_matches_scipy_and_the_scalar_form():
    from scipy.spatial.distance import jensenshannon

    rng = np.random.default_rng(0)
    p, q = rng.random((5, 40)), rng.random((3, 40))
    p[0, :10] = 0.0
    m = js_distance_matrix(p, q)
    expect = np.array([[jensenshannon(a, b, base=2) for b in q] for a in p])
    assert np.abs(m - expect).max() < 1e-12
    assert js_distance(p[1], q[2]) == pytest.approx(expect[1, 2], abs=1e-12)
    assert np.allclose(np.diagonal(js_distance_matrix(p, p)), 0.0, atol=1e-7)
    with pytest.raises(ValueError, match="no mass"):
        js_distance_matrix(np.zeros((1, 3)), np.ones((1, 3)))


def _topics(k: int, v: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet(np.full(v, 0.05), size=k)


@settings(max_examples=50, deadline=None)
@given(st.integers(2, 12), st.integers(0, 10_000))
def test_match_topics_recovers_any_permutation(k, seed):
    ref = _topics(k, 60, seed)
    perm = np.random.default_rng(seed + 1).permutation(k)
    noisy = ref[perm] * np.random.default_rng(seed + 2).uniform(0.9, 1.1, size=ref.shape)
    order = match_topics(ref, noisy)
    assert np.array_equal(perm[order], np.arange(k))  # noisy[order] is ref again, id by id
    assert topic_stability(ref, noisy[order]).changed == 0


def test_more_and_fewer_topics_give_new_and_retired_ids():
    ref = _topics(4, 50, 1)
    extra = _topics(2, 50, 2)
    grown = np.vstack([extra[:1], ref[::-1], extra[1:]])  # 6 topics, the 4 old ones reversed
    order = match_topics(ref, grown)
    assert sorted(order.tolist()) == list(range(6))
    aligned = grown[order]
    s = topic_stability(ref, aligned)
    assert s.new == [4, 5] and s.retired == [] and s.moved == []
    shrunk = ref[[2, 0]]
    order = match_topics(ref, shrunk)
    s = topic_stability(ref, shrunk[order])
    assert s.retired == [2, 3] and s.changed == 2 + len(s.moved)


def test_stability_by_id_counts_moved_and_replaced_topics():
    ref = _topics(5, 80, 3)
    other = ref.copy()
    other[[1, 3]] = ref[[3, 1]]  # two ids swapped: each now carries another topic
    s = topic_stability(ref, other, "champion v1", move_threshold=0.2)
    assert s.moved == [1, 3] and s.replaced == [1, 3] and s.changed == 2 and s.nearest == [0, 3, 2, 1, 4]
    assert s.distances[0] == pytest.approx(0.0, abs=1e-6)
    back = TopicStability.from_dict(json.loads(json.dumps(s.to_dict())))
    assert back.moved == [1, 3] and back.reference == "champion v1"
    assert "replaced" in s.table()
    assert "replaced (now nearest to 3)" in s.table()
    with pytest.raises(ValueError, match="use a JS distance in"):
        topic_stability(ref, other, move_threshold=1.5)
    # a topic that moved a little but is still nearest its old self is moved, not replaced
    drifted = ref.copy()
    drifted[2] = 0.6 * ref[2] + 0.4 * ref[4]
    s = topic_stability(ref, drifted, move_threshold=0.05)
    assert 2 in s.moved and s.replaced == [] and s.changed_ids == s.moved
    with pytest.raises(ValueError, match="format_version"):
        TopicStability.from_dict({"format_version": 99})


def test_vocabularies_are_put_on_their_union():
    a = np.array([[0.5, 0.5, 0.0]])
    b = np.array([[0.5, 0.25, 0.25]])
    a2, b2 = on_common_vocabulary(a, ["x", "y", "z"], b, ["y", "x", "new"])
    assert a2.shape == b2.shape == (1, 4)
    assert np.allclose(b2, [[0.25, 0.5, 0.0, 0.25]])  # x, y, z, new
    s = topic_stability(a, b, vocabs=(["x", "y", "z"], ["y", "x", "new"]), top_n=2)
    assert s.top_words[0]["before"][0] in ("x", "y") and s.top_words[0]["after"][0] == "y"
    with pytest.raises(ValueError, match="vocabulary"):
        on_common_vocabulary(a, ["x"], b, ["y", "x", "new"])


def test_gate_budget_is_a_fifth_of_the_topics_unless_set():
    assert max_moved_topics(20) == 4 and max_moved_topics(50) == 10 and max_moved_topics(4) == 0
    assert max_moved_topics(20, 7) == 7
