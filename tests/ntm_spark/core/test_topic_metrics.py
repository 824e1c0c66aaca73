import math

import numpy as np
import pytest

from ntm_spark.core.topic_metrics import (
    NPMI_EPSILON,
    CoherenceReference,
    collapse_reason,
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


def _npmi(p_ij, p_i, p_j):
    return math.log((p_ij + NPMI_EPSILON) / (p_i * p_j)) / -math.log(p_ij + NPMI_EPSILON)


def test_npmi_matches_hand_computation():
    # topic [0, 1]: P(0)=P(1)=P(0,1)=2/4 -> NPMI 1; topic [2, 3]: P2=1/2, P3=1/4, P23=1/4
    expected_23 = _npmi(0.25, 0.5, 0.25)
    per_topic = npmi_per_topic(np.array([[0, 1], [2, 3]]), DOCS)
    assert per_topic == pytest.approx([1.0, expected_23])
    assert npmi_coherence(np.array([[0, 1], [2, 3]]), DOCS) == pytest.approx((1 + expected_23) / 2)


def test_npmi_never_cooccurring_pair_uses_the_epsilon_not_minus_one():
    # gensim's c_npmi: log(eps / (1/4 * 1/4)) / -log(eps), about -0.80 here; no special case
    assert npmi_per_topic(np.array([[0, 4]]), DOCS) == pytest.approx([_npmi(0.0, 0.5, 0.25)])
    assert -1.0 < npmi_per_topic(np.array([[0, 4]]), DOCS)[0] < -0.5


def test_npmi_word_missing_from_the_reference_scores_minus_one():
    assert npmi_per_topic(np.array([[0, 7]]), DOCS) == pytest.approx([-1.0])


def test_coherence_reference_agrees_with_the_counting_path():
    rng = np.random.default_rng(0)
    docs = [rng.choice(40, size=rng.integers(1, 15), replace=True) for _ in range(300)]
    top = np.stack([rng.choice(40, size=10, replace=False) for _ in range(6)])
    ref = CoherenceReference(docs, 40, "random")
    assert ref.n_docs == 300 and ref.describe() == "random, 300 documents"
    assert ref.npmi_per_topic(top) == pytest.approx(npmi_per_topic(top, docs), abs=1e-12)


def test_coherence_reference_rejects_words_outside_the_vocabulary():
    with pytest.raises(ValueError, match="outside the vocabulary of 3 words"):
        CoherenceReference([np.array([0, 5])], 3)
    with pytest.raises(ValueError, match="no documents"):
        CoherenceReference([], 3).npmi_per_topic(np.array([[0, 1]]))


def test_npmi_equals_gensim_c_npmi():
    """The one definition is gensim's c_npmi with one window per document (a window as long as the longest)."""
    pytest.importorskip("gensim", reason="gensim is a test-only package (conf/test-requirements.txt)")
    from gensim.corpora import Dictionary
    from gensim.models.coherencemodel import CoherenceModel

    rng = np.random.default_rng(7)
    vocab = [f"w{i}" for i in range(60)]
    # Topical documents: words of one of 4 blocks, plus noise, so NPMI spreads over (-1, 1).
    docs = []
    for _ in range(400):
        block = rng.integers(4)
        words = list(rng.choice(np.arange(block * 15, block * 15 + 15), size=rng.integers(2, 12)))
        words += list(rng.choice(60, size=rng.integers(0, 4)))
        docs.append([vocab[w] for w in words])
    top = np.stack([rng.choice(60, size=10, replace=False) for _ in range(5)] + [np.arange(b * 15, b * 15 + 10) for b in range(4)])
    dictionary = Dictionary(docs)
    cm = CoherenceModel(
        topics=[[vocab[w] for w in row] for row in top], texts=docs, dictionary=dictionary,
        coherence="c_npmi", topn=10, window_size=max(len(d) for d in docs),
    )
    ours = CoherenceReference([np.array([vocab.index(w) for w in d]) for d in docs], 60, "toy").npmi_per_topic(top)
    assert np.asarray(cm.get_coherence_per_topic()) == pytest.approx(ours, abs=1e-6)
    assert cm.get_coherence() == pytest.approx(float(ours.mean()), abs=1e-6)
    assert ours.min() < 0 < ours.max()  # the comparison covers both signs


def test_collapse_reason_flags_same_topics_and_names_posterior_collapse():
    assert collapse_reason(0.9, 12.0, 20, 2000) is None
    assert "diversity 0.050" in collapse_reason(0.05, 5.0, 20, 2000)
    both = collapse_reason(0.05, 0.004, 20, 2000)
    assert "posterior collapse" in both and "diversity 0.050" in both
    # KL near 0 alone is enough: untrained weight columns look diverse, the encoder says nothing
    assert "posterior collapse" in collapse_reason(0.91, 0.0024, 20, 2000)
    # A vocabulary too small for K distinct top-25 lists lowers the bar: 50 words, 10 topics
    assert collapse_reason(0.19, 5.0, 10, 50) is None


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
