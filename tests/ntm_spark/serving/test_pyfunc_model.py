"""The MLflow pyfunc: round trip from a logged run, text vs bag-of-words, errors, no download on load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = [pytest.mark.mlflow]

DOCS = ["cars with a big engine and wheels", "the church and the bible of god", "space launch into orbit, space"]


@pytest.fixture(scope="module")
def pyfunc(logged_runs):
    import mlflow

    return mlflow.pyfunc.load_model(f"runs:/{logged_runs['base']}/model")


def test_text_and_bow_agree_and_sum_to_one(pyfunc):
    scorer = pyfunc.unwrap_python_model().scorer
    by_text = np.array(pyfunc.predict(pd.DataFrame({"text": DOCS}))["topic_weights"].tolist())
    dense, errors = scorer.vectorize_texts(DOCS)
    assert all(e is None for e in errors)
    by_counts = np.array(pyfunc.predict(pd.DataFrame({"counts": [row.tolist() for row in dense]}))["topic_weights"].tolist())
    idx = [np.nonzero(row)[0].tolist() for row in dense]
    val = [row[np.nonzero(row)[0]].tolist() for row in dense]
    by_sparse = np.array(pyfunc.predict(pd.DataFrame({"indices": idx, "values": val}))["topic_weights"].tolist())
    raw = pyfunc.unwrap_python_model()  # no signature enforcement: plain dense columns work too
    by_columns = np.array(raw.predict(None, pd.DataFrame(dense))["topic_weights"].tolist())
    assert by_text.shape == (3, scorer.num_topics)
    np.testing.assert_allclose(by_text, by_counts, atol=1e-6)
    np.testing.assert_allclose(by_text, by_sparse, atol=1e-6)
    np.testing.assert_allclose(by_text, by_columns, atol=1e-6)
    np.testing.assert_allclose(by_text.sum(axis=1), 1.0, atol=1e-5)
    direct = scorer.score_texts(DOCS).weights
    np.testing.assert_allclose(by_text, direct, atol=1e-6)


def test_top_topics_param(pyfunc):
    out = pyfunc.predict(pd.DataFrame({"text": DOCS[:1]}), params={"top_topics": 2, "top_words": 3})
    top = out["top_topics"][0]
    assert len(top) == 2 and len(top[0]["words"]) == 3
    assert top[0]["weight"] >= top[1]["weight"]


def test_bad_rows_raise_invalid_parameter(pyfunc):
    from mlflow.exceptions import MlflowException

    cases = {
        "empty_text": pd.DataFrame({"text": ["   "]}),
        "text_not_string": pd.DataFrame({"text": pd.Series([5], dtype=object)}),
        "bad_length": pd.DataFrame({"counts": [[1.0, 2.0]]}),
        "count_too_large": pd.DataFrame({"counts": [[1e308] + [0.0] * 29]}),
        "empty_counts": pd.DataFrame({"counts": [[0.0] * 30]}),
        "negative_count": pd.DataFrame({"counts": [[-1.0] + [0.0] * 29]}),
        "nan_count": pd.DataFrame({"counts": [[float("nan")] + [1.0] * 29]}),
        "unknown_column": pd.DataFrame({"body": ["car engine"]}),
    }
    for code, frame in cases.items():
        with pytest.raises(MlflowException) as info:
            pyfunc.predict(frame)
        assert info.value.error_code == "INVALID_PARAMETER_VALUE", code
        assert code in info.value.message, (code, info.value.message)


def test_batch_reports_row_errors_without_failing(pyfunc):
    out = pyfunc.predict(pd.DataFrame({"text": [DOCS[0], "", "xyzzy plugh"]}), params={"on_error": "column"})
    assert out["error_code"].tolist() == [None, "empty_text", "empty_after_normalization"]
    assert out["topic_weights"][1] is None and abs(sum(out["topic_weights"][0]) - 1) < 1e-5
    assert out["error"][1]


def test_lemma_table_is_closed_and_small(logged_runs, tmp_path):
    import mlflow

    from ntm_spark.core.text import TextNormalizer

    local = Path(mlflow.artifacts.download_artifacts(f"runs:/{logged_runs['base']}/model", dst_path=str(tmp_path)))
    table = json.loads((local / "artifacts" / "model_folder" / "lemmas.json").read_text())
    assert table["closed_over_vocab"] is True
    assert table["lemmas"]["churches"] == "church" and table["lemmas"]["cars"] == "car"
    # The closed table gives exactly WordNet's counts, including for words it does not hold.
    scorer = mlflow.pyfunc.load_model(str(local)).unwrap_python_model().scorer
    wordnet = TextNormalizer(clean=False)
    text = "Churches, cars, wheels and keys; the doctors' patients saw geese and mice"
    assert scorer.vocab.to_bow(scorer.normalizer.normalize(text))[1].tolist() == scorer.vocab.to_bow(wordnet.normalize(text))[1].tolist()


@pytest.mark.slow
def test_load_makes_no_download_attempt(logged_runs, tmp_path):
    """Load and score in a fresh process with no NLTK data anywhere and the network cut."""
    import mlflow

    local = mlflow.artifacts.download_artifacts(f"runs:/{logged_runs['base']}/model", dst_path=str(tmp_path / "m"))
    empty = tmp_path / "empty_nltk"
    empty.mkdir()
    script = textwrap.dedent(
        f"""
        import socket, sys
        calls = []
        def _no_net(*a, **k):
            calls.append(("socket", a))
            raise OSError("network disabled by the test")
        socket.socket.connect = _no_net
        socket.create_connection = _no_net
        import nltk
        def _no_download(*a, **k):
            calls.append(("nltk.download", a))
            raise RuntimeError("nltk.download called")
        nltk.download = _no_download
        import mlflow, pandas as pd
        model = mlflow.pyfunc.load_model({str(local)!r})
        out = model.predict(pd.DataFrame({{"text": ["churches and cars", "unseenword zorblax geese"]}}), params={{"on_error": "column"}})
        scorer = model.unwrap_python_model().scorer
        assert scorer.normalizer._wordnet is None, "WordNet was loaded"
        assert out["error_code"].tolist() == [None, "empty_after_normalization"], out
        assert not calls, calls
        print("OK", type(scorer.normalizer).__name__)
        """
    )
    env = {
        **os.environ,
        "NLTK_DATA": str(empty),
        "NTM_HOME": str(tmp_path / "ntm_home"),
        "HOME": str(tmp_path / "home"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'x.db'}",
    }
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "OK VocabularyLemmaNormalizer" in proc.stdout


# --------------------------------------------------------------------------- input rules (issue 15)


@pytest.fixture(scope="module")
def scorer(pyfunc):
    return pyfunc.unwrap_python_model().scorer


def _row(v, **cells):
    row = [0.0] * v
    for j, x in cells.items():
        row[int(j[1:])] = x
    return row


def _codes(result):
    return [e.code if e is not None else None for e in result.errors]


def test_counts_must_be_finite_sane_numbers(scorer):
    v = scorer.feature_dim
    rows = {
        None: _row(v, c0=2, c5=1),
        "count_too_large": _row(v, c0=1e308),
        "count_too_large ": _row(v, c0=10**400),  # a JSON integer beyond float64
        "count_not_number": _row(v, c0="1"),
        "count_not_number ": _row(v, c1=True),
        "count_not_number  ": _row(v, c2=None),
        "count_not_number   ": _row(v, c2=[1]),
        "nan_count": _row(v, c3=float("inf")),
        "negative_count": _row(v, c4=-1),
        "empty_counts": _row(v),
        "bad_length": [1.0, 2.0],
    }
    result = scorer.score_dense(list(rows.values()))
    assert _codes(result) == [k.strip() if k else None for k in rows]
    messages = [e.message for e in result.errors if e is not None]
    assert "counts[0] is 1e+308, above max_count=1e+06" in messages[0]
    assert "counts[0] is str '1'" in messages[2] and "counts[1] is bool True" in messages[3]
    # The limits themselves are accepted, and float32 inference stays a distribution there.
    at_limit = [scorer.max_count] * int(scorer.max_row_total // scorer.max_count) + [0.0] * (v - 10)
    ok = scorer.score_dense([at_limit])
    assert _codes(ok) == [None]
    assert np.isfinite(ok.weights).all() and abs(float(ok.weights.sum()) - 1) < 1e-5
    over = scorer.score_dense([[scorer.max_count] * v])
    assert _codes(over) == ["count_too_large"] and "max_row_total" in over.errors[0].message


def test_numpy_rows_follow_the_same_rules(scorer):
    v = scorer.feature_dim
    rows = [np.ones(v, dtype=np.int32), np.ones(v, dtype=bool), np.array(["1"] * v), np.zeros(v), np.ones((2, v))]
    assert _codes(scorer.score_dense(rows)) == [None, "count_not_number", "count_not_number", "empty_counts", "count_not_number"]


def test_sparse_indices_are_whole_numbers_and_values_counts(scorer):
    idx = [[1, 2], [1.0], [1.5], [True], ["1"], [30], [], [1, 1], np.array([3, 4], dtype=np.int32)]
    val = [[1, 2], [1], [1], [1], [1], [1], [], [6e5, 6e5], np.array([1, 2], dtype=np.float32)]
    result = scorer.score_sparse(idx, val)
    assert _codes(result) == [None, None, "bad_index", "bad_index", "bad_index", "bad_index", "empty_counts", "count_too_large", None]
    assert "indices[0] is 1.5: indices must be whole numbers" in result.errors[2].message
    np.testing.assert_allclose(result.weights[1], scorer.score_sparse([[1]], [[1]]).weights[0], atol=1e-6)


def test_zero_counts_are_one_rule_in_every_path(pyfunc, scorer):
    """All-zero bag-of-words rows are ``empty_counts`` as counts, sparse rows and dense columns."""
    v = scorer.feature_dim
    frames = [
        pd.DataFrame({"counts": [[0] * v]}),
        pd.DataFrame({"indices": [[]], "values": [[]]}),
        pd.DataFrame({"indices": [[3]], "values": [[0.0]]}),
        pd.DataFrame([[0] * v], columns=[str(i) for i in range(v)]),
    ]
    for frame in frames:
        out = pyfunc.predict(frame, params={"on_error": "column"})
        assert out["error_code"].tolist() == ["empty_counts"], frame
    # Text with no vocabulary word is the same empty row, named for its cause.
    assert _codes(scorer.score_texts(["zorblax plugh"])) == ["empty_after_normalization"]


def test_text_must_be_a_string_never_split(pyfunc):
    """A list in a ``text`` cell is one bad document, not several (as the stream dead-letters it)."""
    raw = pyfunc.unwrap_python_model()
    layouts = [
        pd.DataFrame({"text": [["car", "engine"]]}),
        {"text": np.array([["car", "engine"]])},  # MLflow's `instances` for [{"text": ["car", "engine"]}]
        [{"text": np.array(["car", "engine"])}],  # MLflow's `inputs` for [{"text": ["car", "engine"]}]
    ]
    for model_input in layouts:
        out = raw.predict(None, model_input, params={"on_error": "column"})
        assert out["error_code"].tolist() == ["text_not_string"], model_input
    # MLflow's column layouts are still rows: {column: array}, 0-d for a single document.
    two = raw.predict(None, {"text": np.array(["car engine", "church"])})
    one = raw.predict(None, {"text": np.array("car engine")})
    records = raw.predict(None, [{"text": np.array("car engine")}])
    assert len(two) == 2 and len(one) == 1 and len(records) == 1
    np.testing.assert_allclose(one["topic_weights"][0], two["topic_weights"][0], atol=1e-6)
    np.testing.assert_allclose(records["topic_weights"][0], two["topic_weights"][0], atol=1e-6)


def test_csv_header_rule(scorer):
    from ntm_spark.serving.pyfunc_model import is_model_header

    v = scorer.feature_dim
    assert is_model_header(["text"], scorer)
    assert is_model_header([str(i) for i in range(v)], scorer)
    assert is_model_header([str(i) for i in reversed(range(v))], scorer)  # each position once
    assert is_model_header(list(scorer.vocab.words), scorer)
    assert not is_model_header([f"w{i}" for i in range(v)], scorer)
    assert not is_model_header(["1"] + ["0"] * (v - 1), scorer)  # a document
    assert not is_model_header([str(i) for i in range(1, v + 1)], scorer)
    assert not is_model_header(["counts"], scorer)


def test_dense_columns_under_a_model_header(pyfunc, scorer):
    v = scorer.feature_dim
    raw = pyfunc.unwrap_python_model()
    rows = [_row(v, c0=1, c3=2), _row(v, c7=1)]
    by_counts = np.array(raw.predict(None, pd.DataFrame({"counts": rows}))["topic_weights"].tolist())
    by_words = raw.predict(None, pd.DataFrame(rows, columns=list(scorer.vocab.words)))
    np.testing.assert_allclose(np.array(by_words["topic_weights"].tolist()), by_counts, atol=1e-6)
    # A header that is not the model's column names is data (or an unknown column), never silently positional.
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException) as info:
        raw.predict(None, pd.DataFrame(rows, columns=[f"w{i}" for i in range(v)]))
    assert "[unknown_column]" in info.value.message and "first line must be a header" in info.value.message
    # CSV cells that are not numbers (pandas keeps strings and booleans) name the column.
    mixed = pd.DataFrame([["x"] + [0] * (v - 1), [True] + [1] * (v - 1)], columns=[str(i) for i in range(v)])
    out = raw.predict(None, mixed, params={"on_error": "column"})
    assert out["error_code"].tolist() == ["count_not_number", "count_not_number"]
    assert out["error"][0].startswith("columns[0] is str 'x'")


def test_weights_that_are_not_a_distribution_never_leave_the_scorer(scorer, monkeypatch):
    v = scorer.feature_dim
    real = scorer._infer

    def broken(dense):
        out = real(dense)
        out[0] = np.nan
        return out

    monkeypatch.setattr(scorer, "_infer", broken)
    result = scorer.score_dense([_row(v, c0=1), _row(v, c1=1)])
    assert _codes(result) == ["nonfinite_weights", None]
    assert np.isnan(result.weights[0]).all() and abs(float(result.weights[1].sum()) - 1) < 1e-5


@pytest.mark.parametrize("rules", ["notebook", "v1", "v2"])
def test_closed_lemma_table_counts_like_wordnet_for_every_rule_set(rules, newsgroups_test_docs):
    """The closed table stays exact under each rule set, v2's own lemma fixes included (issue 18)."""
    from collections import Counter

    from ntm_spark.core.text import TextNormalizer
    from ntm_spark.core.vocab import Vocabulary
    from ntm_spark.serving.pyfunc_model import build_lemma_table
    from ntm_spark.serving.scoring import VocabularyLemmaNormalizer

    wordnet = TextNormalizer(clean=True, rules=rules)
    texts = [t for _, t in newsgroups_test_docs[:300]]
    texts.append("DOS and MS uses DES; does it pass? The boss's arms, physics on Mars, it was us. We've seen it")
    counts = Counter(w for t in texts for w in wordnet.normalize(t))
    vocab = Vocabulary(sorted({w for w, _ in counts.most_common(1500)} | {"dos", "ms", "use", "pass", "arms", "mars"}))
    closed = VocabularyLemmaNormalizer(clean=True, rules=rules, lemma_table=build_lemma_table(vocab.words))
    for text in texts:
        got, want = vocab.to_bow(closed.normalize(text)), vocab.to_bow(wordnet.normalize(text))
        assert got[0].tolist() == want[0].tolist() and got[1].tolist() == want[1].tolist(), text[:200]
