"""A real ``ntm serve`` process on 127.0.0.1, driven over HTTP: curl, and a Hypothesis fuzz suite.

The README's guarantee under test: no 5xx for anything a client sends, and every 200 carries
finite topic weights that sum to 1 (within 1e-5).
"""

from __future__ import annotations

import http.client
import json
import math
import subprocess
import sys
import time
import urllib.request
from typing import Optional
from urllib.parse import urlparse

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from tests.conftest import TINY_VOCAB, stop_process_group

pytestmark = [pytest.mark.integration, pytest.mark.mlflow]

NAME = "ntm-serve-guarded"
V = len(TINY_VOCAB)
K = 4
#: The server's body limit in these tests (the default is 32 MiB): small, so a 413 is cheap to provoke.
MAX_BODY = 2_000_000
DOCS = ["cars with a big engine and wheels", "the church and the bible of god"]
CURL = "/usr/bin/curl"


@pytest.fixture(scope="module")
def guarded(mlflow_tracking, logged_runs, tmp_path_factory):
    """``ntm serve --name ntm-serve-guarded`` (its champion), as a user starts it; yields the /invocations URL."""
    from ntm_spark.core.config import MlflowConfig
    from ntm_spark.mlops.registry import register_run_model
    from ntm_spark.tools.services import free_port

    reg = register_run_model(logged_runs["base"], MlflowConfig(tracking_uri=mlflow_tracking, registered_model_name=NAME))
    assert reg.decision.promoted
    port = free_port()
    log = tmp_path_factory.mktemp("ntm_serve") / "serve.log"
    cmd = [sys.executable, "-m", "jobs.cli", "serve", "--name", NAME, "--tracking-uri", mlflow_tracking,
           "-p", str(port), "--max-body-bytes", str(MAX_BODY)]  # fmt: skip
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
        yield f"{base}/invocations"
        assert proc.poll() is None, f"ntm serve died during the tests:\n{log.read_text()[-3000:]}"
    finally:
        stop_process_group(proc)


def _post(url: str, body: bytes, content_type: Optional[str]) -> tuple[int, bytes]:
    """POST with exactly the given Content-Type (``None``: no such header at all), any bytes."""
    parsed = urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=120)
    headers = {} if content_type is None else {"Content-Type": content_type}
    try:
        conn.request("POST", parsed.path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _check_answer(status: int, raw: bytes, what: str) -> None:
    """The guarantee: no 5xx; a 200 holds, per row, finite weights summing to 1 (or a per-row error)."""
    assert status < 500, f"{what} -> {status}: {raw[:2000]!r}"
    if currently_in_test_context():
        event(f"HTTP {status}")  # --hypothesis-show-statistics shows how often each status came back
    if status != 200:
        return
    payload = json.loads(raw)
    for row in payload["predictions"]:
        weights = row["topic_weights"]
        if weights is None:
            assert row.get("error_code"), (what, row)
            continue
        assert len(weights) == K and all(isinstance(w, float) and math.isfinite(w) for w in weights), (what, row)
        assert abs(sum(weights) - 1.0) <= 1e-5, (what, row)


def _weights(raw: bytes) -> list:
    return [p["topic_weights"] for p in json.loads(raw)["predictions"]]


def _dense(words: list) -> list:
    row = [0] * V
    for w in words:
        row[TINY_VOCAB.index(w)] += 1
    return row


ROWS = [_dense(w) for w in (["car", "engine"], ["church", "bible", "god"], ["space", "orbit"], ["gun", "law", "law"], ["disk"])]


# --------------------------------------------------------------------------- the model's requests


def test_requests_and_headerless_csv(guarded):
    import numpy as np

    status, raw = _post(guarded, json.dumps({"dataframe_records": [{"counts": r} for r in ROWS]}).encode(), "application/json")
    assert status == 200, raw
    ref = np.array(_weights(raw))
    assert ref.shape == (5, K)
    # SageMaker's CSVSerializer: dense rows, no header line, one document per line.
    headerless = "\n".join(",".join(map(str, r)) for r in ROWS) + "\n"
    status, raw = _post(guarded, headerless.encode(), "text/csv")
    assert status == 200, raw
    np.testing.assert_allclose(np.array(_weights(raw)), ref, atol=1e-6)
    status, raw = _post(guarded, ",".join(map(str, ROWS[0])).encode(), "text/csv")  # one row, no newline
    assert status == 200 and np.allclose(_weights(raw), ref[:1], atol=1e-6), raw
    for header in (",".join(str(i) for i in range(V)), ",".join(TINY_VOCAB)):  # the model's column names
        status, raw = _post(guarded, (header + "\n" + headerless).encode(), "text/csv")
        assert status == 200 and np.allclose(_weights(raw), ref, atol=1e-6), (header, raw)
    status, raw = _post(guarded, ("text\n" + "\n".join(DOCS) + "\n").encode(), "text/csv")
    assert status == 200 and len(_weights(raw)) == 2
    # Any other first line is a document: here a bad one, named, never silently dropped.
    status, raw = _post(guarded, (",".join(f"w{i}" for i in range(V)) + "\n" + headerless).encode(), "text/csv")
    assert status == 400 and b"row 0: [count_not_number] columns[0] is str 'w0'" in raw, raw


# --------------------------------------------------------------------------- curl: a client we did not write

ZEROS = [0] * V


def _records(**cells) -> str:
    return json.dumps({"dataframe_records": [cells]})


CURL_CASES = [
    # (id, body or @file-marker, curl header args, status, code in the message)
    ("deep_nesting", "DEEP", ["-H", "Content-Type: application/json"], 400, "too_deep"),
    ("no_content_type", _records(text=DOCS[0]), ["-H", "Content-Type:"], 415, "missing_content_type"),
    ("form_default", _records(text=DOCS[0]), [], 415, "unsupported_content_type"),
    ("huge_integer", "1" * 5000, ["-H", "Content-Type: application/json"], 400, "not_json"),
    ("too_large", "BIG", ["-H", "Content-Type: application/json"], 413, "body_too_large"),
    ("count_1e308", _records(counts=[1e308] + ZEROS[1:]), ["-H", "Content-Type: application/json"], 400, "count_too_large"),
    ("list_text", _records(text=["car", "engine"]), ["-H", "Content-Type: application/json"], 400, "text_not_string"),
    ("list_text_instances", json.dumps({"instances": [{"text": ["car", "engine"]}]}), ["-H", "Content-Type: application/json"], 400, "text_not_string"),
    ("fractional_index", _records(indices=[1.5], values=[1]), ["-H", "Content-Type: application/json"], 400, "bad_index"),
    ("string_count", _records(counts=["1"] + ZEROS[1:]), ["-H", "Content-Type: application/json"], 400, "count_not_number"),
    ("bool_count", _records(counts=[True] + ZEROS[1:]), ["-H", "Content-Type: application/json"], 400, "count_not_number"),
    ("zero_counts", _records(counts=ZEROS), ["-H", "Content-Type: application/json"], 400, "empty_counts"),
    ("zero_sparse", _records(indices=[], values=[]), ["-H", "Content-Type: application/json"], 400, "empty_counts"),
    ("headerless_csv", "\n".join(",".join(map(str, r)) for r in ROWS), ["-H", "Content-Type: text/csv"], 200, None),
]  # fmt: skip


@pytest.mark.parametrize("case", CURL_CASES, ids=[c[0] for c in CURL_CASES])
def test_curl_regressions(guarded, tmp_path, case):
    name, body, header_args, expect_status, expect_code = case
    if body == "DEEP":
        body = "[" * 10_000 + "]" * 10_000
    elif body == "BIG":
        body = _records(text="car " * (MAX_BODY // 4 + 10))
    path = tmp_path / "body"
    path.write_text(body)
    out = tmp_path / "out"
    proc = subprocess.run(
        [CURL, "-sS", "-o", str(out), "-w", "%{http_code}", "-X", "POST", guarded, *header_args, "--data-binary", f"@{path}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    status, raw = int(proc.stdout), out.read_bytes()
    assert status == expect_status, (name, raw[:1000])
    if expect_code:
        message = json.loads(raw)["message"]
        assert f"[{expect_code}]" in message, message
        if status == 400 and expect_code not in ("too_deep", "not_json"):
            assert "row 0" in message, message  # the row, the field and the problem
    else:
        assert len(_weights(raw)) == len(ROWS)
        _check_answer(status, raw, name)


# --------------------------------------------------------------------------- Hypothesis fuzz

CONTENT_TYPES = st.one_of(
    st.sampled_from(
        [None, "", "application/json", "text/csv", "application/vnd.apache.parquet", "application/json; charset=utf-8",
         "application/json; charset=latin-1", "application/json; foo=bar", "APPLICATION/JSON", "text/plain",
         "multipart/form-data; boundary=x", "application/x-www-form-urlencoded", "text/csv;", ";"]
    ),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
)  # fmt: skip
NUMBERS = st.one_of(
    st.integers(0, 5), st.integers(-(10**6), 10**7), st.integers(10**15, 10**400),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([1e308, -0.0, 5e-324, 1e6, 1e7]),
)  # fmt: skip
JSON_LEAF = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=20))
JSON_ANY = st.recursive(JSON_LEAF, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4), max_leaves=25)
CELLS = st.one_of(NUMBERS, st.booleans(), st.none(), st.text(max_size=8), st.lists(st.integers(0, 3), max_size=3))
COUNT_ROWS = st.one_of(
    st.lists(st.integers(0, 3), min_size=V, max_size=V),
    st.lists(CELLS, min_size=V, max_size=V),
    st.lists(NUMBERS, max_size=V + 2),
    JSON_ANY,
)
TEXTS = st.one_of(st.sampled_from(DOCS + TINY_VOCAB), st.text(max_size=60), st.lists(st.sampled_from(TINY_VOCAB), max_size=3), NUMBERS, st.none(), JSON_ANY)
INDICES = st.one_of(st.lists(st.integers(0, V - 1), max_size=5), st.lists(st.one_of(NUMBERS, st.booleans(), st.text(max_size=3)), max_size=5), JSON_ANY)
RECORD = st.one_of(
    st.fixed_dictionaries({"text": TEXTS}),
    st.fixed_dictionaries({"counts": COUNT_ROWS}),
    st.fixed_dictionaries({"indices": INDICES, "values": st.one_of(st.lists(NUMBERS, max_size=5), JSON_ANY)}),
    st.dictionaries(st.sampled_from(["text", "counts", "indices", "values", "0", "29", "body", ""]), JSON_ANY, max_size=3),
)
RECORDS = st.lists(RECORD, min_size=0, max_size=4)
PARAMS = st.dictionaries(
    st.sampled_from(["on_error", "top_topics", "top_words", "other"]),
    st.one_of(st.sampled_from(["column", "raise", 0, 1, 3, -1]), JSON_LEAF),
    max_size=3,
)


VALID_ROW = st.lists(st.integers(0, 3), min_size=V, max_size=V).filter(any)
VALID_RECORD = st.one_of(
    st.fixed_dictionaries({"text": st.one_of(st.sampled_from(DOCS), st.lists(st.sampled_from(TINY_VOCAB), min_size=1, max_size=8).map(" ".join))}),
    st.fixed_dictionaries({"counts": VALID_ROW}),
    st.lists(st.integers(0, V - 1), min_size=1, max_size=5, unique=True).flatmap(
        lambda idx: st.fixed_dictionaries({"indices": st.just(idx), "values": st.lists(st.integers(1, 9), min_size=len(idx), max_size=len(idx))})
    ),
)


@st.composite
def nearly_valid_records(draw) -> list:
    """Records of one kind, mostly valid, perhaps with one cell swapped for an odd value."""
    records = draw(st.lists(VALID_RECORD, min_size=1, max_size=4))
    key = next(iter(records[0]))
    records = [r for r in records if key in r]
    if draw(st.booleans()):
        row = records[draw(st.integers(0, len(records) - 1))]
        if isinstance(row[key], list) and row[key]:
            row[key][draw(st.integers(0, len(row[key]) - 1))] = draw(CELLS)
        else:
            row[key] = draw(TEXTS)
    return records


@st.composite
def json_requests(draw) -> bytes:
    """JSON bodies: the model's layouts with odd values, odd layouts, odd JSON, deep nesting, raw bytes."""
    kind = draw(st.sampled_from(["records", "split", "instances", "inputs", "any", "deep", "bytes", "nearly_valid", "nearly_valid"]))
    if kind == "nearly_valid":
        layout = draw(st.sampled_from(["dataframe_records", "instances", "inputs"]))
        payload = {layout: draw(nearly_valid_records())}
        if draw(st.booleans()):
            payload["params"] = {"on_error": "column", **draw(st.sampled_from([{}, {"top_topics": 2}]))}
        return json.dumps(payload).encode()
    if kind == "deep":
        depth = draw(st.integers(1, 3000))
        opening, closing = draw(st.sampled_from([("[", "]"), ('{"a":', "}"), ('{"dataframe_records":[', "]")]))
        return (opening * depth + "0" + closing * draw(st.sampled_from([depth, 0, 1]))).encode()
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "any":
        return json.dumps(draw(JSON_ANY)).encode()
    records = draw(RECORDS)
    if kind == "records":
        payload = {"dataframe_records": records}
    elif kind == "split":
        columns = sorted({k for r in records for k in r})
        payload = {"dataframe_split": {"columns": columns, "data": [[r.get(c) for c in columns] for r in records]}}
    elif kind == "instances":
        payload = {"instances": records}
    else:
        payload = {"inputs": draw(st.one_of(st.just(records), st.dictionaries(st.sampled_from(["text", "counts"]), JSON_ANY, max_size=2)))}
    if draw(st.booleans()):
        payload["params"] = draw(st.one_of(PARAMS, JSON_LEAF))
    return json.dumps(payload).encode()


CSV_CELLS = st.one_of(
    st.integers(0, 3).map(str), st.integers(-5, 10**9).map(str), st.floats().map(repr),
    st.sampled_from(["", "true", "False", "nan", "inf", "1e308", "abc", '"1,2"', '"', "1.5", " 1", "0x10"]),
)  # fmt: skip


@st.composite
def csv_requests(draw) -> bytes:
    """CSV bodies: headerless dense rows, the model's headers, odd headers and cells, odd line endings."""
    rows = draw(st.lists(st.one_of(st.lists(st.integers(0, 3).map(str), min_size=V, max_size=V),
                                   st.lists(CSV_CELLS, min_size=V, max_size=V),
                                   st.lists(CSV_CELLS, max_size=V + 2)), max_size=4))  # fmt: skip
    header = draw(st.sampled_from([None, "text", ",".join(str(i) for i in range(V)), ",".join(TINY_VOCAB), "counts", "a,b"]))
    lines = ([header] if header else []) + [",".join(r) for r in rows]
    if header == "text":
        lines = ["text"] + draw(st.lists(st.one_of(st.sampled_from(DOCS), st.text(max_size=30)), max_size=3))
    return draw(st.sampled_from(["\n", "\r\n", "\r"])).join(lines).encode("utf-8", errors="surrogatepass")


ANY_BODY = st.one_of(json_requests(), csv_requests(), st.binary(max_size=500))


def _fuzz_settings(examples: int):
    return settings(max_examples=examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])  # fmt: skip


@_fuzz_settings(150)
@given(body=json_requests())
def test_fuzz_json(guarded, body):
    _check_answer(*_post(guarded, body, "application/json"), what=body[:300])


@_fuzz_settings(80)
@given(body=csv_requests())
def test_fuzz_csv(guarded, body):
    _check_answer(*_post(guarded, body, "text/csv"), what=body[:300])


@_fuzz_settings(80)
@given(body=ANY_BODY, content_type=CONTENT_TYPES)
def test_fuzz_any_content_type(guarded, body, content_type):
    _check_answer(*_post(guarded, body, content_type), what=(content_type, body[:300]))


@pytest.mark.slow
@_fuzz_settings(3000)
@given(body=ANY_BODY, content_type=st.one_of(st.sampled_from(["application/json", "text/csv"]), CONTENT_TYPES))
def test_fuzz_large(guarded, body, content_type):
    _check_answer(*_post(guarded, body, content_type), what=(content_type, body[:300]))


def test_server_still_answers(guarded):
    """After everything above (module order), the same process still scores."""
    status, raw = _post(guarded, _records(text=DOCS[0]).encode(), "application/json")
    _check_answer(status, raw, "after the fuzz")
    assert status == 200


def test_cli_fails_in_one_line_for_an_unknown_model(mlflow_tracking, capsys):
    from jobs.serve import main

    assert main(["--name", "no-such-model", "--tracking-uri", mlflow_tracking, "-p", "1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ntm serve: cannot serve 'models:/no-such-model@champion'") and err.count("\n") == 1, err
    assert main(["--tracking-uri", "http://127.0.0.1:9", "-p", "1"]) == 3
    assert "cannot reach the MLflow tracking server" in capsys.readouterr().err
