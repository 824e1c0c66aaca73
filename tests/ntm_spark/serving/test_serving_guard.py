"""The request guard of ``ntm serve`` on its own: an ASGI app in front of a recording stand-in for MLflow's."""

from __future__ import annotations

import asyncio
import json

import pytest

from ntm_spark.serving.endpoint import (
    MAX_BODY_BYTES,
    MAX_JSON_DEPTH,
    RequestGuard,
    check_json_body,
    headerless_csv_header,
    json_depth,
)


class Recorder:
    """Stands in for MLflow's scoring app: records what reached it and answers 200."""

    def __init__(self):
        self.calls = []

    async def __call__(self, scope, receive, send):
        message = await receive()
        self.calls.append((scope, message["body"]))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


def _call(app, body=b"", content_type="application/json", path="/invocations", method="POST", chunks=None, length=True):
    headers = [] if content_type is None else [(b"content-type", content_type.encode())]
    if length:
        headers.append((b"content-length", str(len(body)).encode()))
    parts = chunks or [body]
    messages = [{"type": "http.request", "body": p, "more_body": i < len(parts) - 1} for i, p in enumerate(parts)]
    sent = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": headers}
    asyncio.run(app(scope, receive, send))
    status = sent[0]["status"]
    payload = json.loads(sent[1]["body"]) if sent[1]["body"] else {}
    return status, payload


def test_good_requests_reach_the_app_unchanged():
    inner = Recorder()
    guard = RequestGuard(inner)
    body = b'{"dataframe_records": [{"text": "car engine"}]}'
    assert _call(guard, body)[0] == 200
    assert _call(guard, b"text\ncar\n", "text/csv; charset=utf-8")[0] == 200
    assert _call(guard, b"", None, path="/ping", method="GET")[0] == 200  # other routes are MLflow's
    assert [b for _, b in inner.calls] == [body, b"text\ncar\n", b""]
    assert _call(guard, b'{"a": 1}', chunks=[b'{"a"', b": 1}"])[0] == 200
    assert inner.calls[-1][1] == b'{"a": 1}'


@pytest.mark.parametrize(
    "content_type, status, code",
    [(None, 415, "missing_content_type"), ("", 415, "missing_content_type"), ("text/plain", 415, "unsupported_content_type"),
     ("application/x-www-form-urlencoded", 415, "unsupported_content_type")],
)  # fmt: skip
def test_content_type_is_required(content_type, status, code):
    inner = Recorder()
    got, payload = _call(RequestGuard(inner), b'{"dataframe_records": []}', content_type)
    assert (got, inner.calls) == (status, [])
    assert payload["message"].startswith(f"[{code}]") and "application/json" in payload["message"]


def test_bodies_over_the_limit_are_413_with_or_without_content_length():
    inner = Recorder()
    guard = RequestGuard(inner, max_body_bytes=10)
    assert _call(guard, b"x" * 11)[0] == 413
    status, payload = _call(guard, chunks=[b"x" * 6, b"x" * 6], length=False)
    assert status == 413 and "max_body_bytes=10" in payload["message"] and not inner.calls
    assert MAX_BODY_BYTES == 32 * 1024 * 1024


def test_json_that_mlflow_would_500_on_is_a_400():
    deep = b"[" * 10_000 + b"]" * 10_000
    for body, code in [
        (deep, "too_deep"),
        (b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1), "too_deep"),
        (b"1" * 5000, "not_json"),  # int() refuses more than 4,300 digits: ValueError, not JSONDecodeError
        (b'{"a": 1} trailing', "not_json"),
        (b"\xff\xfe", "not_json"),
        (b"", "not_json"),
    ]:
        inner = Recorder()
        status, payload = _call(RequestGuard(inner), body)
        assert (status, inner.calls) == (400, []), body[:20]
        assert payload["message"].startswith(f"[{code}]"), payload
    check_json_body(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH)  # the limit itself is fine
    assert json_depth({"dataframe_split": {"data": [[[1, 2]]]}}) == 5 and json_depth(3) == 0


def test_headerless_csv_gets_a_header_of_positions():
    def is_header(cells):
        return cells == ["text"] or cells == ["0", "1", "2"]

    assert headerless_csv_header(b"1,0,2\n0,1,0\n", is_header, 3) == b"0,1,2\n"
    assert headerless_csv_header(b"\n\r\n1,0,2", is_header, 3) == b"0,1,2\n"
    assert headerless_csv_header(b"0,1,2\n1,0,2\n", is_header, 3) == b""
    assert headerless_csv_header(b"text\ncar\n", is_header, 3) == b""
    assert headerless_csv_header(b"1,0\n", is_header, 3) == b""  # not feature_dim cells: left to the model's 400
    assert headerless_csv_header(b"", is_header, 3) == b""
    inner = Recorder()
    guard = RequestGuard(inner, csv_header=lambda body: headerless_csv_header(body, is_header, 3))
    assert _call(guard, b"1,0,2\n", "text/csv")[0] == 200
    scope, body = inner.calls[0]
    assert body == b"0,1,2\n1,0,2\n" and dict(scope["headers"])[b"content-length"] == str(len(body)).encode()


def test_limits_are_checked():
    with pytest.raises(ValueError, match="max_json_depth=4"):
        RequestGuard(Recorder(), max_json_depth=4)
    with pytest.raises(ValueError, match="max_body_bytes=0"):
        RequestGuard(Recorder(), max_body_bytes=0)


def test_a_body_that_is_not_utf8_follows_the_one_rule_latin1():
    """The same rule as preprocessing, the stream and backfill: decoded as Latin-1 as a whole, then served."""
    inner = Recorder()
    guard = RequestGuard(inner)
    body = b'{"dataframe_records": [{"text": "caf\xe9 engine car"}]}'
    assert _call(guard, body)[0] == 200
    scope, forwarded = inner.calls[-1]
    assert json.loads(forwarded)["dataframe_records"][0]["text"] == "café engine car"
    assert dict(scope["headers"])[b"content-length"] == str(len(forwarded)).encode()
    assert _call(guard, b"text\ncaf\xe9 car\n", "text/csv")[0] == 200
    assert inner.calls[-1][1] == "text\ncafé car\n".encode()
