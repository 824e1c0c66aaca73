import math

import numpy as np
import pytest

from ntm_spark.core.topic_metrics import (
    cooccurrence_counts,
    format_topics,
    npmi_coherence,
    npmi_from_counts,
    npmi_per_topic,
    top_words,
    topic_diversity,
    topic_uniqueness,
)

DOCS = [np.array([0, 1]), np.array([0, 1, 2]), np.array([2, 3]), np.array([4])]


def test_top_words_sorted_best_first():
    tw = np.array([[0.1, 0.5, 0.2, 0.2], [0.4, 0.0, 0.1, 0.5]])
    assert top_words(tw, 2).tolist() == [[1, 2], [3, 0]]
    with pytest.raises(ValueError, match="n=9"):
        top_words(tw, 9)


def test_npmi_matches_hand_computation():
    # topic [0, 1]: P(0)=P(1)=P(0,1)=2/4 -> NPMI 1; topic [2, 3]: P2=1/2, P3=1/4, P23=1/4
    expected_23 = math.log(0.25 / (0.5 * 0.25)) / -math.log(0.25)
    per_topic = npmi_per_topic(np.array([[0, 1], [2, 3]]), DOCS)
    assert per_topic == pytest.approx([1.0, expected_23])
    assert npmi_coherence(np.array([[0, 1], [2, 3]]), DOCS) == pytest.approx((1 + expected_23) / 2)


def test_npmi_never_cooccurring_pair_is_minus_one():
    assert npmi_per_topic(np.array([[0, 4]]), DOCS) == pytest.approx([-1.0])


def test_cooccurrence_counts_ignore_repeats_and_other_words():
    df, co, n = cooccurrence_counts(np.array([0, 2]), [np.array([0, 0, 2]), np.array([2, 5])])
    assert n == 2 and df.tolist() == [1, 2] and co.tolist() == [[1, 1], [1, 2]]
    assert npmi_from_counts(np.array([[0, 2]]), np.array([0, 2]), df, co, n).shape == (1,)


def test_topic_uniqueness_sagemaker_definition():
    top = np.array([[0, 1], [0, 2]])  # word 0 shared by both topics
    assert topic_uniqueness(top, per_topic=True).tolist() == [0.75, 0.75]
    assert topic_uniqueness(np.array([[0, 1], [2, 3]])) == 1.0
    assert topic_uniqueness(np.array([[0, 1], [0, 1]])) == 0.5


def test_topic_diversity_from_ids_and_weights():
    assert topic_diversity(np.array([[0, 1], [0, 2]]), n=2) == 0.75
    tw = np.eye(4)[:2] + 0.01  # topics peak on different words
    assert topic_diversity(tw, n=1) == 1.0


def test_format_topics_sagemaker_line():
    lines = format_topics(np.array([[0.9, 0.1], [0.2, 0.8]]), ["a", "b"], n=2, npmi=np.array([0.5, 0.1]), tu=np.array([1.0, 1.0]))
    assert lines[0] == "[tu 1.00, npmi 0.50] a b"
