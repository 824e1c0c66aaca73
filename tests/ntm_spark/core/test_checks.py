"""The document checks: the Python definition and the preprocessing job's JVM expression agree on every text."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ntm_spark.core.checks import BINARY, EMPTY_TEXT, MISSING_TEXT, TEXT_NOT_STRING, TOO_LARGE, check_text


def _code(text, limit=1000):
    err = check_text(text, limit)
    return err.code if err else None


def test_the_rules_in_order():
    assert _code(None) == MISSING_TEXT and _code(float("nan")) == MISSING_TEXT
    assert _code(["car", "engine"]) == TEXT_NOT_STRING and _code(42) == TEXT_NOT_STRING
    assert _code("") == EMPTY_TEXT and _code(" \t\n\r\x0b\x0c") == EMPTY_TEXT
    assert _code("\u3000") is None  # not ASCII whitespace: normalization decides (empty_after_normalization)
    assert _code("word " * 300) == TOO_LARGE
    assert _code("é" * 501) == TOO_LARGE and _code("é" * 500) is None  # bytes, not characters
    assert _code("engines\x00") == BINARY
    assert _code("a long enough text about engines with one bell \x07 in it") is None
    assert _code("\x01\x02\x03 abc") == BINARY
    assert "max_text_bytes=1000" in check_text("x" * 1001, 1000).message


TEXTS = st.one_of(
    st.none(),
    st.text(max_size=60),
    st.text(alphabet=st.sampled_from(list(" \t\n\r\x0b\x0c\u3000\x85\xa0ab\x00\x01\x07\x1f\x7f\x9fé€")), max_size=40),
    st.integers(min_value=0, max_value=1300).map(lambda n: "é" * n),
)


@pytest.mark.spark
def test_the_jvm_expression_matches_the_python_definition(spark):
    from pyspark.sql import functions as F

    from ntm_spark.spark.preprocess import document_problem

    texts = []

    @settings(max_examples=400, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(TEXTS)
    def collect(text):
        texts.append(text)

    collect()
    texts += [None, "", " ", "\x00", "ok text", "\u3000", "a\x85b"]
    df = spark.createDataFrame([(i, t) for i, t in enumerate(texts)], "i int, text string")
    jvm = {r["i"]: r["code"] for r in df.select("i", document_problem(F.col("text"), 1000).alias("code")).collect()}
    diff = [(t, jvm[i], _code(t)) for i, t in enumerate(texts) if jvm[i] != _code(t)]
    assert not diff, diff[:5]
