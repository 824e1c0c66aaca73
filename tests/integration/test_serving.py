"""A real ``mlflow models serve`` process on 127.0.0.1 serving ``models:/<name>@champion``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import TINY_VOCAB

pytestmark = [pytest.mark.integration, pytest.mark.mlflow, pytest.mark.slow]

NAME = "ntm-serve"
DOCS = ["cars with a big engine and wheels", "the church and the bible of god"]


def _post(url: str, body, content_type: "str | None" = "application/json") -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else (body.encode() if isinstance(body, str) else json.dumps(body).encode())
    if content_type is None:  # urllib would add application/x-www-form-urlencoded: send no Content-Type at all
        import http.client
        from urllib.parse import urlparse

        parsed = urlparse(url)
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
        try:
            conn.request("POST", parsed.path, body=data)
            resp = conn.getresponse()
            return resp.status, {"message": resp.read().decode(errors="replace")}
        finally:
            conn.close()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        raw = err.read()
        try:
            return err.code, json.loads(raw)
        except ValueError:
            return err.code, {"message": raw.decode(errors="replace")}


@pytest.fixture(scope="module")
def endpoint(mlflow_tracking, logged_runs, tmp_path_factory):
    from ntm_spark.core.config import MlflowConfig
    from ntm_spark.mlops.registry import register_run_model
    from ntm_spark.tools.services import free_port

    reg = register_run_model(logged_runs["base"], MlflowConfig(tracking_uri=mlflow_tracking, registered_model_name=NAME))
    assert reg.decision.promoted
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    exe = Path(sys.executable).with_name("mlflow")
    cmd = [str(exe), "models", "serve", "-m", f"models:/{NAME}@champion", "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
    # `mlflow models serve` execs `uvicorn` from PATH: put the venv's bin first, as an activated venv does.
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_tracking, "PATH": f"{exe.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlflow models serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow models serve did not answer /ping:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield f"{url}/invocations"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait(timeout=10)


def _weights(payload: dict) -> list:
    return [p["topic_weights"] for p in payload["predictions"]]


def test_valid_requests(endpoint):
    import numpy as np

    status, records = _post(endpoint, {"dataframe_records": [{"text": d} for d in DOCS]})
    assert status == 200, records
    ref = np.array(_weights(records))
    assert ref.shape == (2, 4) and np.allclose(ref.sum(axis=1), 1, atol=1e-5)
    status, split = _post(endpoint, {"dataframe_split": {"columns": ["text"], "data": [[d] for d in DOCS]}})
    assert status == 200 and np.allclose(_weights(split), ref, atol=1e-6)
    status, inst = _post(endpoint, {"instances": [{"text": d} for d in DOCS]})
    assert status == 200 and np.allclose(_weights(inst), ref, atol=1e-6), inst

    counts = [[0.0] * 30 for _ in DOCS]
    for row, words in zip(counts, [["car", "engine", "wheel"], ["church", "bible", "god"]]):
        for w in words:
            row[TINY_VOCAB.index(w)] += 1
    status, dense = _post(endpoint, {"dataframe_records": [{"counts": c} for c in counts]})
    assert status == 200 and np.allclose(_weights(dense), ref, atol=1e-6), dense
    status, dense_inst = _post(endpoint, {"instances": [{"counts": c} for c in counts]})
    assert status == 200 and np.allclose(_weights(dense_inst), ref, atol=1e-6), dense_inst
    sparse = [{"indices": [i for i, v in enumerate(c) if v], "values": [v for v in c if v]} for c in counts]
    status, sp = _post(endpoint, {"dataframe_records": sparse})
    assert status == 200 and np.allclose(_weights(sp), ref, atol=1e-6), sp
    # CSV of dense rows, as pandas' to_csv(index=False) writes it: a header of the model's column
    # names (positions, or the vocabulary's words), then one row per document.
    body = "\n".join(",".join(str(int(v)) for v in c) for c in counts) + "\n"
    for header in (",".join(str(i) for i in range(30)), ",".join(TINY_VOCAB)):
        status, from_csv = _post(endpoint, header + "\n" + body, "text/csv")
        assert status == 200 and np.allclose(_weights(from_csv), ref, atol=1e-6), from_csv
    status, text_csv = _post(endpoint, "text\n" + "\n".join(f'"{d}"' for d in DOCS) + "\n", "text/csv")
    assert status == 200 and np.allclose(_weights(text_csv), ref, atol=1e-6), text_csv
    status, top = _post(endpoint, {"dataframe_records": [{"text": DOCS[0]}], "params": {"top_topics": 2}})
    assert status == 200 and len(top["predictions"][0]["top_topics"]) == 2
    status, per_row = _post(endpoint, {"dataframe_records": [{"text": DOCS[0]}, {"text": ""}], "params": {"on_error": "column"}})
    assert status == 200 and per_row["predictions"][1]["error_code"] == "empty_text", per_row


@pytest.mark.parametrize(
    "body, content_type, expect",
    [
        ({"dataframe_records": [{"counts": [1.0, 2.0]}]}, "application/json", "bad_length"),
        ("a,b,c\n1,2,3\n", "text/csv", "unknown_column"),
        # A CSV with no header line: MLflow reads its first document as the header; the model
        # refuses it (first line must be a header) rather than answering N-1 predictions.
        ("\n".join(",".join(["1"] + ["0"] * 29) for _ in range(5)) + "\n", "text/csv", "first line must be a header"),
        ({"dataframe_records": [{"counts": [1e308] + [0.0] * 29}]}, "application/json", "count_too_large"),
        ({"dataframe_records": [{"counts": ["1"] + [0.0] * 29}]}, "application/json", "count_not_number"),
        ({"dataframe_records": [{"counts": [True] + [0.0] * 29}]}, "application/json", "count_not_number"),
        ({"dataframe_records": [{"counts": [0.0] * 30}]}, "application/json", "empty_counts"),
        ({"dataframe_records": [{"indices": [1.5], "values": [1.0]}]}, "application/json", "bad_index"),
        ({"dataframe_records": [{"text": ["car", "engine"]}]}, "application/json", "text_not_string"),
        ({"instances": [{"text": ["car", "engine"]}]}, "application/json", "text_not_string"),
        ({"dataframe_records": [{"counts": [-1.0] + [0.0] * 29}]}, "application/json", "negative_count"),
        ('{"dataframe_records": [{"counts": [NaN' + ", 1.0" * 29 + "]}]}", "application/json", "nan_count"),
        ({"dataframe_records": [{"text": ""}]}, "application/json", "empty_text"),
        ({"dataframe_records": [{"text": 42}]}, "application/json", "text"),
        ({"dataframe_records": [{"body": "car engine"}]}, "application/json", "unknown_column"),
        ({"dataframe_records": [{"text": "car"}], "params": {"on_error": "ignore"}}, "application/json", "on_error"),
    ],
    ids=["short_row", "short_csv", "headerless_csv", "count_1e308", "string_count", "bool_count", "zero_counts",
         "fractional_index", "list_text", "list_text_instances", "negative", "nan", "empty_text", "non_string_text",
         "unknown_column", "bad_param"],  # fmt: skip
)
def test_bad_input_is_a_clear_4xx(endpoint, body, content_type, expect):
    status, payload = _post(endpoint, body, content_type)
    assert 400 <= status < 500, (status, payload)
    assert expect in payload.get("message", ""), payload


def test_plain_mlflow_models_serve_still_answers_500_before_the_model_runs(endpoint):
    """MLflow 3.17's scoring server fails on these before the model's predict runs, and has no hook.

    This is why docs/mlflow.md and the README point at ``ntm serve`` (tests/integration/test_ntm_serve.py
    checks its 415/400 answers). When this test fails, MLflow has fixed it: update both documents.
    """
    status, _ = _post(endpoint, "[" * 10_000 + "]" * 10_000)
    assert status == 500
    status, _ = _post(endpoint, json.dumps({"dataframe_records": [{"text": DOCS[0]}]}), content_type=None)
    assert status == 500
