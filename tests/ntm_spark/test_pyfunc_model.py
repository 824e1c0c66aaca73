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

    from ntm_spark.text import TextNormalizer

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
