"""``ntm serve`` as a SageMaker NTM endpoint, driven from outside: boto3, the SageMaker SDK, raw HTTP, Hypothesis.

One real ``ntm serve`` process (the registered model's champion, alias looked up every second)
answers every test. The guarantees under test: every content type x every accept type gives the
in-process scorer's weights (within 1e-6); SageMaker's clients work unchanged; MLflow's layouts
still work on the same port; bad input is a 4xx with the scorer's codes, never a 5xx; a moved
alias is served without a restart and ``/ping`` says so.
"""

from __future__ import annotations

import http.client
import io
import json
import math
import subprocess
import sys
import time
import urllib.request
from typing import Optional

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from ntm_spark.core import recordio
from tests.conftest import TINY_VOCAB, stop_process_group
from tests.integration.test_ntm_serve import ANY_BODY, CONTENT_TYPES, DOCS, ROWS, json_requests
from tests.integration.test_sagemaker_sdk import load_sagemaker_sdk

pytestmark = [pytest.mark.integration, pytest.mark.mlflow]

NAME = "ntm-sagemaker-serve"
V = len(TINY_VOCAB)
K = 4
MAX_BODY = 2_000_000
MAX_ROWS = 50
JSON, CSV, JSONL, RECORDIO = "application/json", "text/csv", "application/jsonlines", "application/x-recordio-protobuf"
ACCEPTS = [JSON, JSONL, RECORDIO]
ROUTES = ["/invocations", "/endpoints/ntm-20newsgroups/invocations"]


@pytest.fixture(scope="module")
def server(mlflow_tracking, logged_runs, tmp_path_factory):
    """``ntm serve --name ntm-sagemaker-serve`` on a free port; yields its base URL."""
    from ntm_spark.core.config import MlflowConfig
    from ntm_spark.mlops.registry import register_run_model
    from ntm_spark.tools.services import free_port

    reg = register_run_model(logged_runs["base"], MlflowConfig(tracking_uri=mlflow_tracking, registered_model_name=NAME))
    assert reg.decision.promoted and reg.version == "1"
    port = free_port()
    log = tmp_path_factory.mktemp("sagemaker_serve") / "serve.log"
    cmd = [sys.executable, "-m", "jobs.cli", "serve", "--name", NAME, "--tracking-uri", mlflow_tracking, "-p", str(port),
           "--max-body-bytes", str(MAX_BODY), "--max-rows", str(MAX_ROWS), "--refresh-interval", "1"]  # fmt: skip
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"ntm serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{base}/ping", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"ntm serve did not answer /ping:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield base
        assert proc.poll() is None, f"ntm serve died during the tests:\n{log.read_text()[-3000:]}"
    finally:
        stop_process_group(proc)


@pytest.fixture(scope="module")
def sdk():
    return load_sagemaker_sdk()


def scorer_of(version: str):
    """The in-process scorer of a registered version (what the server must agree with)."""
    import mlflow

    return mlflow.pyfunc.load_model(f"models:/{NAME}/{version}").unwrap_python_model().scorer


@pytest.fixture(scope="module")
def reference(server):
    return scorer_of("1").score_dense(np.array(ROWS, dtype=np.float64)).weights  # (5, K)


def _request(base: str, path: str, body: bytes, content_type: Optional[str], accept: Optional[str] = None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", int(base.rsplit(":", 1)[1]), timeout=120)
    sent = dict(headers or {})
    if content_type is not None:
        sent["Content-Type"] = content_type
    if accept is not None:
        sent["Accept"] = accept
    try:
        conn.request("POST", path, body=body, headers=sent)
        resp = conn.getresponse()
        return resp.status, resp.read(), {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


def decode_weights(raw: bytes, accept: str) -> np.ndarray:
    """Weights from an answer in any accept type (RecordIO through the codec; the SDK reads it in test_boto3_*)."""
    if accept == RECORDIO:
        return np.array([r.label["topic_weights"].values for r in recordio.decode_records(raw)], dtype=np.float64)
    if accept == JSONL:
        return np.array([json.loads(line)["topic_weights"] for line in raw.decode().splitlines()])
    return np.array([p["topic_weights"] for p in json.loads(raw)["predictions"]])


def request_bodies(sdk) -> dict:
    """The five documents in every request layout, the RecordIO ones written by the SDK's writers."""
    dense = np.array(ROWS, dtype=np.float32)
    matrix = sp.csr_matrix(dense)
    sparse_instances = [{"keys": matrix.getrow(i).indices.tolist(), "shape": [V], "values": matrix.getrow(i).data.tolist()} for i in range(len(ROWS))]
    dense_rec, sparse_rec = io.BytesIO(), io.BytesIO()
    sdk.serializer_utils.write_numpy_to_dense_tensor(dense_rec, dense)
    sdk.serializer_utils.write_spmatrix_to_sparse_tensor(sparse_rec, matrix)
    return {
        "csv": (CSV, sdk.serializers.CSVSerializer().serialize(dense).encode()),
        "json_dense": (JSON, json.dumps({"instances": [{"features": r} for r in ROWS]}).encode()),
        "json_sparse": (JSON, json.dumps({"instances": [{"data": {"features": f}} for f in sparse_instances]}).encode()),
        "json_data_dense": (JSON, json.dumps({"instances": [{"data": {"features": {"values": r}}} for r in ROWS]}).encode()),
        "jsonlines_dense": (JSONL, "\n".join(json.dumps({"features": r}) for r in ROWS).encode()),
        "jsonlines_sparse": (JSONL, "\n".join(json.dumps({"data": {"features": f}}) for f in sparse_instances).encode()),
        "recordio_dense": (RECORDIO, dense_rec.getvalue()),
        "recordio_sparse": (RECORDIO, sparse_rec.getvalue()),
        "recordio_serializer": (RECORDIO, sdk.serializers.RecordSerializer().serialize(dense).read()),
    }


# --------------------------------------------------------------------------- the contract


def test_ping_reports_the_model_and_version(server):
    with urllib.request.urlopen(f"{server}/ping", timeout=10) as resp:
        payload = json.loads(resp.read())
        assert resp.headers["X-Ntm-Model-Version"] == "1"
    assert payload["status"] == "healthy" and payload["model"] == NAME and payload["version"] == "1"
    assert payload["feature_dim"] == V and payload["num_topics"] == K


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("accept", ACCEPTS)
def test_every_content_type_and_accept_type_gives_the_scorers_weights(server, sdk, reference, route, accept):
    for name, (content_type, body) in request_bodies(sdk).items():
        status, raw, headers = _request(server, route, body, content_type, accept)
        assert status == 200, (name, raw[:500])
        assert headers["content-type"] == accept and headers["x-amzn-invoked-production-variant"] == "1"
        np.testing.assert_allclose(decode_weights(raw, accept), reference, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("accept", ACCEPTS)
def test_raw_text_instances_give_the_scorers_weights(server, accept):
    expected = scorer_of("1").score_texts(DOCS).weights
    for content_type, body in [
        (JSON, json.dumps({"instances": [{"text": d} for d in DOCS]}).encode()),
        (JSONL, "\n".join(json.dumps({"text": d}) for d in DOCS).encode()),
    ]:
        status, raw, _ = _request(server, ROUTES[1], body, content_type, accept)
        assert status == 200, raw
        np.testing.assert_allclose(decode_weights(raw, accept), expected, atol=1e-6)


def test_mlflow_layouts_still_work_on_the_same_port(server, reference):
    """`mlflow models serve`'s request shapes and answers, unchanged (MLflow's own app behind the routes)."""
    for body in (
        {"dataframe_records": [{"counts": r} for r in ROWS]},
        {"dataframe_split": {"columns": ["counts"], "data": [[r] for r in ROWS]}},
        {"instances": [{"counts": r} for r in ROWS]},
        {"inputs": {"counts": ROWS}},
    ):
        status, raw, headers = _request(server, "/invocations", json.dumps(body).encode(), JSON)
        assert status == 200, (body, raw[:300])
        assert headers["x-ntm-model-version"] == "1"
        np.testing.assert_allclose(decode_weights(raw, JSON), reference, atol=1e-6)
    status, raw, _ = _request(server, "/invocations", json.dumps({"dataframe_records": [{"text": DOCS[0]}], "params": {"top_topics": 2}}).encode(), JSON)
    assert status == 200 and len(json.loads(raw)["predictions"][0]["top_topics"]) == 2
    header = ",".join(str(i) for i in range(V))
    status, raw, _ = _request(server, "/invocations", (header + "\n" + "\n".join(",".join(map(str, r)) for r in ROWS)).encode(), CSV)
    np.testing.assert_allclose(decode_weights(raw, JSON), reference, atol=1e-6)
    with urllib.request.urlopen(f"{server}/version", timeout=10) as resp:
        assert resp.status == 200  # MLflow's route


# --------------------------------------------------------------------------- clients nobody here wrote


def _runtime_client(server):
    import boto3

    return boto3.client(
        "sagemaker-runtime", endpoint_url=server, region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="not-a-secret",
    )  # fmt: skip


def test_seed_notebook_request_through_the_sdks_serializers(server, sdk, reference):
    """The notebook's inference cell: CSVSerializer in, JSONDeserializer out, `predictions[i]["topic_weights"]`."""
    serializer, deserializer = sdk.serializers.CSVSerializer(), sdk.deserializers.JSONDeserializer()
    response = _runtime_client(server).invoke_endpoint(
        EndpointName="ntm-20newsgroups", ContentType=serializer.CONTENT_TYPE, Accept=deserializer.ACCEPT[0],
        Body=serializer.serialize(np.array(ROWS, dtype=np.float32)),
    )  # fmt: skip
    results = deserializer.deserialize(response["Body"], response["ContentType"])
    predictions = np.array([prediction["topic_weights"] for prediction in results["predictions"]])
    np.testing.assert_allclose(predictions, reference, atol=1e-6)


def test_boto3_invoke_endpoint_recordio_in_and_out(server, sdk, reference):
    buf = io.BytesIO()
    sdk.serializer_utils.write_spmatrix_to_sparse_tensor(buf, sp.csr_matrix(np.array(ROWS, dtype=np.float32)))
    response = _runtime_client(server).invoke_endpoint(EndpointName="ntm", ContentType=RECORDIO, Accept=RECORDIO, Body=buf.getvalue())
    assert response["ContentType"] == RECORDIO and response["InvokedProductionVariant"] == "1"
    records = sdk.deserializers.RecordDeserializer().deserialize(response["Body"], response["ContentType"])
    got = np.array([r.label["topic_weights"].float32_tensor.values for r in records])
    np.testing.assert_allclose(got, reference, atol=1e-6)


def test_boto3_sees_bad_input_as_the_runtimes_model_error(server):
    client = _runtime_client(server)
    with pytest.raises(client.exceptions.ModelError) as caught:
        client.invoke_endpoint(EndpointName="ntm", ContentType=CSV, Body=b"1,2,3\n")
    error = caught.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 424 and error["OriginalStatusCode"] == 400
    assert "[bad_length] 'columns' must have feature_dim=30 values, got 3" in error["OriginalMessage"]


# --------------------------------------------------------------------------- bad input: 4xx with the scorer's codes

SPARSE_WRONG_SHAPE = {"instances": [{"data": {"features": {"keys": [0], "shape": [V + 1], "values": [1]}}}]}
BAD_CASES = [
    # (id, content type, accept, body, status, code)
    ("dense_feature_dim", JSON, None, {"instances": [{"features": [1, 2]}]}, 400, "bad_length"),
    ("sparse_feature_dim", JSON, None, SPARSE_WRONG_SHAPE, 400, "bad_length"),
    ("sparse_bad_key", JSON, None, {"instances": [{"data": {"features": {"keys": [V], "shape": [V], "values": [1]}}}]}, 400, "bad_index"),
    ("string_count", JSONL, None, '{"features": ["1"]}', 400, "count_not_number"),
    ("text_not_string", JSON, None, {"instances": [{"text": ["car"]}]}, 400, "text_not_string"),
    ("empty_counts", CSV, None, ",".join(["0"] * V), 400, "empty_counts"),
    ("no_features", JSONL, None, '{"other": 1}', 400, "missing_features"),
    ("not_recordio", RECORDIO, None, "not recordio at all", 400, "not_recordio"),
    ("not_jsonlines", JSONL, None, "{", 400, "not_json"),
    ("too_many_rows", CSV, None, "\n".join([",".join(["1"] * V)] * (MAX_ROWS + 1)), 413, "too_many_rows"),
    ("bad_accept", CSV, "text/html", ",".join(["1"] * V), 406, "unsupported_accept"),
    ("mlflow_layout_recordio_accept", JSON, RECORDIO, {"dataframe_records": [{"text": "car"}]}, 406, "unsupported_accept"),
    ("no_content_type", None, None, "{}", 415, "missing_content_type"),
    ("other_content_type", "text/plain", None, "car", 415, "unsupported_content_type"),
    ("too_large", CSV, None, "1," * (MAX_BODY // 2 + 10), 413, "body_too_large"),
]  # fmt: skip


@pytest.mark.parametrize("case", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_input_is_a_4xx_with_the_code(server, case):
    _, content_type, accept, body, expect_status, code = case
    raw_body = (json.dumps(body) if isinstance(body, dict) else body).encode()
    status, raw, _ = _request(server, "/invocations", raw_body, content_type, accept)
    assert status == expect_status, raw[:500]
    assert f"[{code}]" in json.loads(raw)["message"]
    # the runtime route: the same answer, wrapped as the runtime API's ModelError
    status, raw, headers = _request(server, ROUTES[1], raw_body, content_type, accept)
    assert status == 424 and headers["x-amzn-errortype"] == "ModelError"
    wrapped = json.loads(raw)
    assert wrapped["OriginalStatusCode"] == expect_status and f"[{code}]" in wrapped["OriginalMessage"]


def test_row_errors_use_the_pyfuncs_words(server):
    """The same bad row through MLflow's layout and SageMaker's: the same code and message for the row."""
    row = [1.5e7] + [0] * (V - 1)
    status_m, raw_m, _ = _request(server, "/invocations", json.dumps({"dataframe_records": [{"counts": row}]}).encode(), JSON)
    status_s, raw_s, _ = _request(server, "/invocations", json.dumps({"instances": [{"features": row}]}).encode(), JSON)
    assert status_m == status_s == 400
    mlflow_message, sagemaker_message = json.loads(raw_m)["message"], json.loads(raw_s)["message"]
    assert "row 0: [count_too_large] counts[0] is 15000000.0, above max_count=1e+06" in mlflow_message
    assert "row 0: [count_too_large] features[0] is 15000000.0, above max_count=1e+06" in sagemaker_message


# --------------------------------------------------------------------------- Hypothesis: no 5xx on the new routes


def _check(status: int, raw: bytes, headers: dict, accept: Optional[str], what) -> None:
    """No 5xx (also not behind a runtime ModelError); a 200 holds finite weights summing to 1 per document."""
    if status == 424:
        original = json.loads(raw)["OriginalStatusCode"]
        assert original < 500, (what, raw[:2000])
        status = original
    assert status < 500, (what, status, raw[:2000])
    if currently_in_test_context():
        event(f"HTTP {status}")
    if status != 200:
        return
    mime = (headers.get("content-type") or "").split(";")[0]
    if mime == JSON:  # SageMaker's answer or MLflow's (whose per-row errors have null weights and an error_code)
        predictions = json.loads(raw)["predictions"]
        assert all(p["topic_weights"] is not None or p.get("error_code") for p in predictions), (what, raw[:2000])
        rows = [p["topic_weights"] for p in predictions]
    else:
        rows = decode_weights(raw, mime).tolist()
    for weights in rows:
        if weights is None:
            continue
        assert len(weights) == K and all(math.isfinite(w) for w in weights), (what, weights)
        assert abs(sum(weights) - 1.0) <= 1e-5, (what, weights)


FUZZ_CONTENT_TYPES = st.one_of(st.sampled_from([CSV, JSON, JSONL, RECORDIO, "application/x-jsonlines", "application/x-recordio-protobuf; charset=x"]), CONTENT_TYPES)
FUZZ_ACCEPTS = st.one_of(st.none(), st.sampled_from([*ACCEPTS, "*/*", "text/html", "application/json;q=0.1, application/jsonlines", ""]),
                         st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30))  # fmt: skip
NUMBERS = st.one_of(st.integers(0, 5), st.integers(-(10**6), 10**9), st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([1e308, -0.0, 1e7]))
ODD = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=8), st.lists(st.integers(0, 3), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))
VECTOR = st.one_of(st.lists(st.integers(0, 3), min_size=V, max_size=V), st.lists(st.one_of(NUMBERS, ODD), max_size=V + 2), ODD)
INSTANCE = st.one_of(
    st.fixed_dictionaries({"features": VECTOR}),
    st.fixed_dictionaries({"data": st.one_of(ODD, st.fixed_dictionaries({"features": st.one_of(ODD, st.fixed_dictionaries(
        {"keys": st.one_of(st.lists(st.integers(-2, V + 2), max_size=5), ODD), "values": st.one_of(st.lists(NUMBERS, max_size=5), ODD)},
        optional={"shape": st.one_of(st.just([V]), st.lists(st.integers(-1, 2**70), max_size=2), ODD)}))}))}),
    st.fixed_dictionaries({"text": st.one_of(st.sampled_from(DOCS), st.text(max_size=40), ODD)}),
    st.dictionaries(st.sampled_from(["features", "data", "text", "counts", "x"]), ODD, max_size=2),
    ODD,
)  # fmt: skip


@st.composite
def sagemaker_bodies(draw) -> tuple[str, bytes]:
    """SageMaker layouts with odd values: JSON instances, JSON Lines, CSV rows, RecordIO (valid, mutated, random)."""
    kind = draw(st.sampled_from(["json", "jsonl", "csv", "recordio", "recordio", "mlflow"]))
    if kind == "json":
        return JSON, json.dumps({"instances": draw(st.lists(INSTANCE, max_size=4))}).encode()
    if kind == "jsonl":
        lines = [json.dumps(i) for i in draw(st.lists(INSTANCE, max_size=4))] + draw(st.lists(st.sampled_from(["", "{", "[1]", "null"]), max_size=1))
        return JSONL, "\n".join(lines).encode()
    if kind == "csv":
        cells = st.one_of(st.integers(0, 3).map(str), st.sampled_from(["", "nan", "x", "1e400", '"1"', "-1", "1_0"]))
        rows = draw(st.lists(st.lists(cells, min_size=V - 1, max_size=V + 1), max_size=3))
        return CSV, "\n".join(",".join(r) for r in rows).encode()
    if kind == "mlflow":
        return JSON, draw(json_requests())
    tensors = draw(st.lists(st.one_of(
        st.builds(lambda k, v, s: recordio.Tensor(np.array(v, np.float32), np.array(k, np.uint64), tuple(s)),
                  st.lists(st.integers(0, V + 3), max_size=4), st.lists(st.floats(width=32), max_size=4), st.lists(st.integers(0, 2 * V), max_size=2)),
        st.builds(lambda v: recordio.Tensor(np.array(v, np.float64)), st.lists(st.floats(), max_size=V + 1)),
        st.builds(lambda v: recordio.Tensor(np.array(v, np.int32)), st.lists(st.integers(-(2**31), 2**31 - 1), min_size=V, max_size=V)),
    ), max_size=3))  # fmt: skip
    key = draw(st.sampled_from(["values", "features", "other"]))
    body = bytearray(recordio.encode_records([recordio.Record(features={key: t}) for t in tensors]))
    if body and draw(st.booleans()):
        at = draw(st.integers(0, len(body) - 1))
        body[at] ^= draw(st.integers(1, 255))
    return RECORDIO, bytes(body)


def _fuzz_settings(examples: int):
    return settings(max_examples=examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])  # fmt: skip


@_fuzz_settings(150)
@given(request=sagemaker_bodies(), accept=FUZZ_ACCEPTS, route=st.sampled_from(ROUTES))
def test_fuzz_sagemaker_layouts(server, request, accept, route):
    content_type, body = request
    status, raw, headers = _request(server, route, body, content_type, accept)
    _check(status, raw, headers, accept, (route, content_type, accept, body[:300]))


@_fuzz_settings(80)
@given(body=ANY_BODY, content_type=st.one_of(FUZZ_CONTENT_TYPES, st.none()), accept=FUZZ_ACCEPTS)
def test_fuzz_any_body_on_the_runtime_route(server, body, content_type, accept):
    """The hardening suite's bodies (tests/integration/test_ntm_serve.py) against the runtime route."""
    status, raw, headers = _request(server, ROUTES[1], body, content_type, accept, headers={"Authorization": "AWS4-HMAC-SHA256 x"})
    _check(status, raw, headers, accept, (content_type, accept, body[:300]))


@pytest.mark.slow
@_fuzz_settings(2000)
@given(request=sagemaker_bodies(), accept=FUZZ_ACCEPTS, route=st.sampled_from(ROUTES))
def test_fuzz_sagemaker_layouts_large(server, request, accept, route):
    content_type, body = request
    status, raw, headers = _request(server, route, body, content_type, accept)
    _check(status, raw, headers, accept, (route, content_type, accept, body[:300]))


# --------------------------------------------------------------------------- last: the alias moves


def test_a_moved_alias_is_served_without_a_restart(server, mlflow_tracking, logged_runs, reference):
    """Register a better run; the gate moves @champion to version 2; /ping and the answers follow within seconds."""
    from ntm_spark.core.config import MlflowConfig
    from ntm_spark.mlops.registry import promote_version, register_run_model

    cfg = MlflowConfig(tracking_uri=mlflow_tracking, registered_model_name=NAME)
    reg = register_run_model(logged_runs["better"], cfg)
    if not reg.decision.promoted:
        promote_version(NAME, reg.version, cfg, force=True, reason="test: move the alias")
    deadline = time.monotonic() + 60
    while True:
        with urllib.request.urlopen(f"{server}/ping", timeout=10) as resp:
            if json.loads(resp.read())["version"] == reg.version:
                break
        assert time.monotonic() < deadline, "ntm serve never picked up the moved alias"
        time.sleep(0.5)
    expected = scorer_of(reg.version).score_dense(np.array(ROWS, dtype=np.float64)).weights
    assert not np.allclose(expected, reference, atol=1e-4)  # a different model
    for route in ROUTES:
        status, raw, headers = _request(server, route, json.dumps({"instances": [{"features": r} for r in ROWS]}).encode(), JSON)
        assert status == 200 and headers["x-ntm-model-version"] == reg.version
        np.testing.assert_allclose(decode_weights(raw, JSON), expected, atol=1e-6)
    status, raw, headers = _request(server, "/invocations", json.dumps({"dataframe_records": [{"counts": r} for r in ROWS]}).encode(), JSON)
    assert status == 200 and headers["x-ntm-model-version"] == reg.version  # MLflow's app, rebuilt for the new version
    np.testing.assert_allclose(decode_weights(raw, JSON), expected, atol=1e-6)
