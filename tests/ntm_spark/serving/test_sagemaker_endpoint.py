"""SageMaker's routes in-process (no server): a training model folder served by ``build_app``, driven as ASGI."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ntm_spark.core import recordio
from ntm_spark.serving.endpoint import build_app
from ntm_spark.serving.sagemaker import choose_accept, is_sagemaker_json
from ntm_spark.serving.sagemaker_endpoint import SageMakerEndpoint
from ntm_spark.serving.scoring import TopicScorer
from tests.conftest import TINY_VOCAB, make_model_folder

V = len(TINY_VOCAB)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_model_folder(tmp_path_factory.mktemp("sm_endpoint") / "model")


@pytest.fixture(scope="module")
def app(folder):
    return build_app(str(folder), max_rows=3)


def call(app, path="/invocations", body=b"", content_type="text/csv", accept=None, method="POST"):
    headers = [(b"content-length", str(len(body)).encode())]
    if content_type is not None:
        headers.append((b"content-type", content_type.encode()))
    if accept is not None:
        headers.append((b"accept", accept.encode()))
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    asyncio.run(app({"type": "http", "method": method, "path": path, "headers": headers}, receive, send))
    return sent[0]["status"], dict(sent[0]["headers"]), sent[1]["body"]


def test_a_model_folder_is_served_on_sagemakers_routes(app, folder):
    assert isinstance(app, SageMakerEndpoint) and app.mlflow_app_for is None
    status, headers, body = call(app, "/ping", method="GET")
    assert status == 200 and json.loads(body)["feature_dim"] == V
    rows = np.eye(V)[:3] * 2
    expected = TopicScorer.from_model_folder(folder).score_dense(rows).weights
    csv = "\n".join(",".join(str(int(x)) for x in r) for r in rows).encode()
    status, headers, body = call(app, "/endpoints/any/invocations", csv, accept="application/x-recordio-protobuf")
    assert status == 200 and headers[b"x-ntm-model-version"] == headers[b"x-amzn-invoked-production-variant"]
    np.testing.assert_allclose([r.label["topic_weights"].values for r in recordio.decode_records(body)], expected, atol=1e-6)


@pytest.mark.parametrize(
    "body, content_type, status, code",
    [
        (b'{"dataframe_records": [{"text": "car"}]}', "application/json", 400, "missing_features"),  # no MLflow app here
        (b"PAR1", "application/vnd.apache.parquet", 415, "no_mlflow_model"),
        (b"1\n2\n3\n4", "text/csv", 413, "too_many_rows"),
        (b'{"instances": [{"features": [1]}, {"text": 5}]}', "application/json", 400, "bad_length"),
    ],
)
def test_folder_refusals(app, body, content_type, status, code):
    got, _, raw = call(app, body=body, content_type=content_type)
    assert got == status and f"[{code}]" in json.loads(raw)["message"]


def test_other_routes_are_404_without_mlflow(app):
    assert call(app, "/version", method="GET")[0] == 404


def test_accept_negotiation_and_routing_rules():
    assert choose_accept(None) == choose_accept("*/*") == "application/json"
    assert choose_accept("application/json;q=0.2, application/x-recordio-protobuf") == "application/x-recordio-protobuf"
    assert choose_accept("text/html, application/x-jsonlines;q=0.5") == "application/jsonlines"
    assert is_sagemaker_json({"instances": [{"features": [1]}, {"text": "a"}, {"data": {}}]})
    for mlflow_layout in ({"instances": [{"counts": [1]}]}, {"instances": [{"text": "a"}], "params": {}}, {"dataframe_records": []}, [1]):
        assert not is_sagemaker_json(mlflow_layout)


def test_limits_are_checked(folder):
    loader = object()
    for kwargs in ({"max_rows": 0}, {"max_body_bytes": 0}, {"timeout_s": 0}):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            SageMakerEndpoint(loader, **kwargs)


_CELL = st.one_of(st.integers(0, 5), st.floats(0, 3), st.integers(-1, V + 1), st.booleans(), st.floats(allow_nan=True), st.integers(10**5, 2 * 10**6))
_SPARSE_ROWS = st.lists(
    st.integers(0, 6).flatmap(lambda n: st.tuples(
        st.lists(st.one_of(st.integers(0, V - 1), st.integers(-2, V + 2), st.booleans(), st.floats(0, 5)), min_size=n, max_size=n),
        st.lists(_CELL, min_size=n, max_size=n),
    )),
    min_size=1, max_size=4,
)  # fmt: skip


@pytest.fixture(scope="module")
def scorer(folder):
    return TopicScorer.from_model_folder(folder)


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=_SPARSE_ROWS, as_arrays=st.booleans())
def test_sparse_fast_path_scores_as_row_by_row(scorer, rows, as_arrays):
    """score_sparse's vectorized path (SageMaker's sparse JSON and RecordIO) gives the row-by-row path's weights and codes."""
    indices, values = [list(r[0]) for r in rows], [list(r[1]) for r in rows]
    if as_arrays and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for r in indices for x in r):
        indices = [np.array(r, dtype=np.uint64) for r in indices]
    fast = scorer.score_sparse(indices, values)
    slow_scorer = TopicScorer(scorer.model, scorer.vocab, scorer.normalizer)
    slow_scorer._sparse_to_dense_fast = lambda *args: None
    slow = slow_scorer.score_sparse(indices, values)
    assert [e and e.code for e in fast.errors] == [e and e.code for e in slow.errors]
    np.testing.assert_array_equal(fast.weights, slow.weights)
