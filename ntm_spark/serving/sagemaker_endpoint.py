"""``ntm serve``'s SageMaker routes: an ASGI app in front of MLflow's scoring app.

Routes (SageMaker's inference container contract and its runtime API):

* ``GET /ping``: 200 with the model being served, ``{"status": "healthy", "model": ..., "version": ...}``;
* ``POST /invocations``: the container route;
* ``POST /endpoints/<name>/invocations``: the runtime API's route, so a boto3 ``sagemaker-runtime``
  client with ``endpoint_url=http://127.0.0.1:<port>`` calls ``invoke_endpoint`` unchanged (any
  endpoint name; request signing headers are accepted and ignored).

SageMaker's request layouts (:mod:`ntm_spark.serving.sagemaker`) are scored here; MLflow's
(``dataframe_records``, ``dataframe_split``, ``inputs``, ``instances`` with other columns,
``params``, CSV under a header of the model's column names, Parquet) go to MLflow's app unchanged,
so ``mlflow models serve`` clients keep working against the same port. Every other route
(``/health``, ``/version``) is MLflow's.

The model comes from a :class:`~ntm_spark.serving.model_loader.ScorerLoader`: an alias
(``models:/name@champion``) is looked up again every ``refresh_interval_s``, and when it has moved
the new version serves the next request (MLflow's app is rebuilt for it); ``/ping`` and the
``X-Ntm-Model-Version`` / ``x-Amzn-Invoked-Production-Variant`` headers of every answer say which.

Errors are JSON ``{"error_code": ..., "message": "[code] ..."}`` with a 4xx status (see
:mod:`ntm_spark.serving.sagemaker`). On the runtime route they come back as the runtime API does
it: HTTP 424 ``ModelError`` with ``OriginalStatusCode`` and ``OriginalMessage`` (what boto3's
``client.exceptions.ModelError`` carries).
"""

from __future__ import annotations

import asyncio
import csv
import json
import re
import time
from typing import Any, Awaitable, Callable, Optional

from ntm_spark.core.text import decode_document_bytes
from ntm_spark.serving.asgi import replay_body
from ntm_spark.serving.sagemaker import (
    CONTENT_TYPE_CSV,
    CONTENT_TYPE_JSON,
    CONTENT_TYPES,
    MAX_ROWS,
    UNSUPPORTED_ACCEPT,
    RequestError,
    choose_accept,
    invoke,
    is_sagemaker_json,
    media_type,
)

ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]

#: The runtime API's invocation route.
RUNTIME_PATH = re.compile(r"^/endpoints/(?P<name>[^/]+)/invocations/?$")
CONTENT_TYPE_PARQUET = "application/vnd.apache.parquet"
#: Every request media type ``ntm serve`` reads (SageMaker's, plus MLflow's Parquet).
ALL_CONTENT_TYPES = (*CONTENT_TYPES, CONTENT_TYPE_PARQUET)
#: Largest request body accepted by default (413 ``body_too_large`` above it): 32 MiB.
MAX_BODY_BYTES = 32 * 1024 * 1024
#: Seconds one invocation may take before a 504 (SageMaker's and MLflow's 60).
TIMEOUT_S = 60.0

MISSING_CONTENT_TYPE = "missing_content_type"
UNSUPPORTED_CONTENT_TYPE = "unsupported_content_type"
BODY_TOO_LARGE = "body_too_large"
TIMEOUT = "timeout"
NO_MLFLOW_MODEL = "no_mlflow_model"

VERSION_HEADER = b"x-ntm-model-version"
VARIANT_HEADER = b"x-amzn-invoked-production-variant"


def model_header_rule(body: bytes, is_header: Callable[[list], bool]) -> bool:
    """Whether a CSV body's first non-blank line is a header of the model's column names (then MLflow reads it)."""
    start, first = 0, None
    while start < len(body):  # the first non-blank line (\n, \r\n or \r, as pandas reads), without decoding the rest
        ends = [e for e in (body.find(b"\n", start), body.find(b"\r", start)) if e >= 0]
        end = min(ends) if ends else len(body)
        if body[start:end].strip():
            first = decode_document_bytes(body[start:end])[0]
            break
        start = end + 1
    if first is None:
        return False
    try:
        cells = next(csv.reader([first]), [])
    except csv.Error:
        return False
    return is_header(cells)


async def read_limited_body(headers: list, receive: Callable[[], Awaitable[dict]], max_body_bytes: int) -> Optional[bytes]:
    """Read the whole body, refusing it past ``max_body_bytes``; ``None`` when the client went away.

    Raises:
        RequestError: 413 ``body_too_large``.
    """
    def too_large(size: str) -> RequestError:
        return RequestError(413, BODY_TOO_LARGE, f"the body has {size}, above max_body_bytes={max_body_bytes}: split the "
                            "documents over several requests (or start the server with a larger --max-body-bytes).")  # fmt: skip

    length = next((v for k, v in headers if k == b"content-length"), None)
    if length is not None and length.strip().isdigit() and int(length) > max_body_bytes:
        raise too_large(f"{int(length)} bytes")
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_body_bytes:
            raise too_large(f"more than {max_body_bytes} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class SageMakerEndpoint:
    """The ``ntm serve`` ASGI app: SageMaker's routes, MLflow's app for the rest.

    Args:
        loader: The model (a :class:`~ntm_spark.serving.model_loader.ScorerLoader`; anything with
            ``get() -> LoadedModel`` and ``failed_reloads``/``last_error``).
        mlflow_app: ``LoadedModel -> ASGI app`` for MLflow's layouts and routes (called again when
            the version changes); ``None`` serves SageMaker's routes only (a model folder).
        max_body_bytes: Largest body accepted (413 above it).
        max_rows: Most documents per request (413 ``too_many_rows`` above it).
        timeout_s: Seconds a SageMaker invocation may take (504 after; MLflow's app keeps its own).
        is_header: ``(cells, scorer) -> bool``: whether a CSV first line is the model's column
            names (then the body is MLflow's, not SageMaker's headerless CSV).
    """

    def __init__(
        self,
        loader: Any,
        mlflow_app: Optional[Callable[[Any], ASGIApp]] = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_rows: int = MAX_ROWS,
        timeout_s: float = TIMEOUT_S,
        is_header: Optional[Callable[[list, Any], bool]] = None,
    ) -> None:
        if int(max_body_bytes) < 1:
            raise ValueError(f"max_body_bytes={max_body_bytes!r}: use a positive number of bytes.")
        if int(max_rows) < 1:
            raise ValueError(f"max_rows={max_rows!r}: use a positive number of documents.")
        if float(timeout_s) <= 0:
            raise ValueError(f"timeout_s={timeout_s!r}: use a positive number of seconds.")
        self.loader = loader
        self.mlflow_app_for = mlflow_app
        self.max_body_bytes = int(max_body_bytes)
        self.max_rows = int(max_rows)
        self.timeout_s = float(timeout_s)
        self.is_header = is_header
        self._mlflow: tuple[Optional[str], Optional[ASGIApp]] = (None, None)

    # ------------------------------------------------------------------ ASGI

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]], send: Callable[[dict], Awaitable[None]]) -> None:
        """Serve one ASGI connection."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope.get("path", ""), scope.get("method", "")
        if path == "/ping" and method in ("GET", "HEAD"):
            await self._ping(send, head=method == "HEAD")
            return
        runtime = RUNTIME_PATH.match(path) is not None
        if method == "POST" and (path == "/invocations" or runtime):
            await self._invocations(scope, receive, send, runtime)
            return
        app = await self._current_mlflow_app()
        if app is None:
            await _send_json(send, 404, {"error_code": "NOT_FOUND", "message": f"no route {method} {path[:100]}: use GET /ping or POST /invocations."})
            return
        await app(scope, receive, send)

    async def _lifespan(self, receive: Callable[[], Awaitable[dict]], send: Callable[[dict], Awaitable[None]]) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _ping(self, send: Callable[[dict], Awaitable[None]], head: bool = False) -> None:
        loaded = await asyncio.to_thread(self.loader.get)
        payload = {
            "status": "healthy",
            "model": loaded.name,
            "version": loaded.version,
            "uri": loaded.uri,
            "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(loaded.loaded_at)),
            "feature_dim": loaded.scorer.feature_dim,
            "num_topics": loaded.scorer.num_topics,
            "failed_reloads": getattr(self.loader, "failed_reloads", 0),
            "last_error": getattr(self.loader, "last_error", None),
        }
        await _send_json(send, 200, payload, _version_headers(loaded), head=head)

    async def _current_mlflow_app(self, loaded: Any = None) -> Optional[ASGIApp]:
        if self.mlflow_app_for is None:
            return None
        if loaded is None:
            loaded = await asyncio.to_thread(self.loader.get)
        version, app = self._mlflow
        if app is None or version != loaded.version:
            app = self.mlflow_app_for(loaded)
            self._mlflow = (loaded.version, app)
        return app

    async def _invocations(self, scope: dict, receive: Callable[[], Awaitable[dict]], send: Callable[[dict], Awaitable[None]], runtime: bool) -> None:
        headers = [(k.lower(), v) for k, v in scope.get("headers", [])]
        loaded = await asyncio.to_thread(self.loader.get)
        extra = _version_headers(loaded)
        try:
            raw_type = next((v for k, v in headers if k == b"content-type"), b"").decode("latin-1").strip()
            mime = media_type(raw_type)
            if not mime:
                raise RequestError(415, MISSING_CONTENT_TYPE, f"the request has no Content-Type: send one of {', '.join(ALL_CONTENT_TYPES)} "
                                   "(e.g. -H 'Content-Type: text/csv').")  # fmt: skip
            if mime not in ALL_CONTENT_TYPES:
                raise RequestError(415, UNSUPPORTED_CONTENT_TYPE, f"Content-Type {raw_type[:100]!r} is not supported: send one of "
                                   f"{', '.join(ALL_CONTENT_TYPES)}.")  # fmt: skip
            accept = choose_accept(next((v for k, v in headers if k == b"accept"), b"").decode("latin-1"))
            body = await read_limited_body(headers, receive, self.max_body_bytes)
            if body is None:
                return
            try:
                answer = await asyncio.wait_for(
                    asyncio.to_thread(self._answer, loaded, mime, raw_type, accept, body), timeout=self.timeout_s
                )
            except (asyncio.TimeoutError, TimeoutError):
                raise RequestError(504, TIMEOUT, f"scoring took longer than timeout={self.timeout_s:g} s: send fewer documents per request.") from None
            if answer is None:  # one of MLflow's layouts
                if accept != CONTENT_TYPE_JSON:
                    raise RequestError(406, UNSUPPORTED_ACCEPT, f"MLflow's request layouts are answered in {CONTENT_TYPE_JSON} only, not {accept}: "
                                       "send SageMaker's layouts for JSON Lines or RecordIO answers.")  # fmt: skip
                await self._forward(scope, headers, body, send, loaded, extra, runtime)
                return
        except RequestError as err:
            await _send_error(send, err.status, err.body(), extra, runtime)
            return
        await _send(send, 200, answer, accept, extra)

    def _answer(self, loaded: Any, mime: str, raw_type: str, accept: str, body: bytes) -> Optional[bytes]:
        """Score a SageMaker request; ``None`` when the body is one of MLflow's layouts (and MLflow's app is there)."""
        payload = None
        if self.mlflow_app_for is not None:
            if mime == CONTENT_TYPE_PARQUET:
                return None
            if mime == CONTENT_TYPE_JSON:
                text, _ = decode_document_bytes(body)
                try:
                    payload = json.loads(text)
                except (ValueError, RecursionError):
                    return None  # MLflow's guard names the problem (not_json, too_deep)
                if not is_sagemaker_json(payload):
                    return None
            elif mime == CONTENT_TYPE_CSV and self.is_header is not None:
                if model_header_rule(body, lambda cells: self.is_header(cells, loaded.scorer)):
                    return None
        elif mime == CONTENT_TYPE_PARQUET:
            raise RequestError(415, NO_MLFLOW_MODEL, "this server serves a model folder, not an MLflow model: Parquet bodies "
                               "need MLflow's app (serve a registered model), or send text/csv, JSON or RecordIO.")  # fmt: skip
        return invoke(loaded.scorer, body, raw_type, accept, self.max_rows, payload)

    async def _forward(
        self, scope: dict, headers: list, body: bytes, send: Callable[[dict], Awaitable[None]], loaded: Any, extra: list, runtime: bool
    ) -> None:
        app = await self._current_mlflow_app(loaded)
        async def disconnect() -> dict:
            return {"type": "http.disconnect"}

        replay = replay_body(body, disconnect)

        forward_scope = {**scope, "path": "/invocations", "raw_path": b"/invocations", "headers": list(scope.get("headers", []))}
        if not runtime:
            async def send_with_version(message: dict) -> None:
                if message["type"] == "http.response.start":
                    message = {**message, "headers": list(message.get("headers", [])) + extra}
                await send(message)

            await app(forward_scope, replay, send_with_version)
            return
        # The runtime route answers an error as the runtime API does (424 ModelError): hold MLflow's answer first.
        start: dict = {}
        parts: list[bytes] = []

        async def hold(message: dict) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                parts.append(message.get("body", b""))

        await app(forward_scope, replay, hold)
        status = int(start.get("status", 500))
        body_out = b"".join(parts)
        if status >= 400:
            await _send_error(send, status, body_out, extra, runtime=True)
            return
        content_type = next((v for k, v in start.get("headers", []) if k.lower() == b"content-type"), b"application/json")
        await _send(send, status, body_out, content_type.decode("latin-1"), extra)


def _version_headers(loaded: Any) -> list:
    version = str(loaded.version).encode("latin-1", errors="replace")
    return [(VERSION_HEADER, version), (VARIANT_HEADER, version)]


async def _send(send: Callable[[dict], Awaitable[None]], status: int, body: bytes, content_type: str, extra: list = (), head: bool = False) -> None:
    headers = [(b"content-type", content_type.encode("latin-1")), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def _send_json(send: Callable[[dict], Awaitable[None]], status: int, payload: dict, extra: list = (), head: bool = False) -> None:
    await _send(send, status, json.dumps(payload).encode(), CONTENT_TYPE_JSON, extra, head=head)


async def _send_error(send: Callable[[dict], Awaitable[None]], status: int, body: bytes, extra: list, runtime: bool) -> None:
    if not runtime:
        await _send(send, status, body, CONTENT_TYPE_JSON, extra)
        return
    original = body.decode("utf-8", errors="replace")
    kind = "client" if status < 500 else "server"
    payload = {
        "message": f'Received {kind} error ({status}) from primary with message "{original}".',
        "OriginalStatusCode": status,
        "OriginalMessage": original,
    }
    await _send(send, 424, json.dumps(payload).encode(), CONTENT_TYPE_JSON, [*extra, (b"x-amzn-errortype", b"ModelError")])
