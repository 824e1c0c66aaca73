"""``ntm serve``: SageMaker's NTM routes, and MLflow's own scoring app behind a request guard, on one port.

:func:`build_app` puts :class:`~ntm_spark.serving.sagemaker_endpoint.SageMakerEndpoint` in front:
``GET /ping``, ``POST /invocations`` and ``POST /endpoints/<name>/invocations`` read SageMaker's
layouts (CSV, JSON instances, JSON Lines, RecordIO-protobuf; :mod:`ntm_spark.serving.sagemaker`)
and hand MLflow's layouts to MLflow's app, guarded as below. The rest of this docstring is that guard.

``mlflow models serve`` runs ``uvicorn mlflow.pyfunc.scoring_server.app:app``, the FastAPI app
that :func:`mlflow.pyfunc.scoring_server.init` builds around the model. MLflow 3.17 parses the
body there, before the model's ``predict`` runs, and answers 500 to some client mistakes:

* no ``Content-Type`` header (``'NoneType' object has no attribute 'split'``);
* JSON nested deeper than Python's recursion limit (``RecursionError``);
* a JSON integer of more than 4,300 digits (``ValueError`` from ``int``).

MLflow offers no hook for its app (no middleware option, no request-parsing plug-in), so these
cannot be fixed in the model. :class:`RequestGuard` is a small ASGI middleware in front of that
same app: it checks what MLflow does not, then hands the request over unchanged. Everything
else (``/ping``, ``/health``, ``/version``, the JSON layouts, ``params``, the error bodies, the
timeout) is MLflow's.

The guard's rules for ``POST /invocations``:

* ``Content-Type`` missing -> 415 ``missing_content_type``; a media type other than MLflow's
  (``application/json``, ``text/csv``, ``application/vnd.apache.parquet``) -> 415
  ``unsupported_content_type``;
* a body over ``max_body_bytes`` (default :data:`MAX_BODY_BYTES`, 32 MiB) -> 413 ``body_too_large``;
* a JSON or CSV body that is not UTF-8 is decoded as Latin-1 as a whole (the project's one rule
  for such bytes, as in preprocessing, the stream and backfill) and then served;
* JSON that does not parse -> 400 ``not_json``; JSON nested deeper than
  ``max_json_depth`` (default :data:`MAX_JSON_DEPTH`, 32 levels of arrays/objects) -> 400 ``too_deep``;
* ``text/csv`` whose first line is a document rather than a header (see
  :func:`ntm_spark.serving.pyfunc_model.is_model_header`) gets the header ``0,1,...,feature_dim-1``
  put in front, so that every line is scored (MLflow always reads the first line as a header).

Example:
    >>> serve_model("models:/ntm-20newsgroups@champion", port=5001)  # doctest: +SKIP

    or, with the settings in the environment (what :func:`serve_model` starts)::

        NTM_SERVE_MODEL_URI=/path/to/model uvicorn --factory ntm_spark.serving.endpoint:create_app --port 5001
"""

from __future__ import annotations

import asyncio
import csv
import json
import logging
import os
from typing import Any, Awaitable, Callable, Optional

from ntm_spark.core.text import decode_document_bytes
from ntm_spark.serving.asgi import replay_body, with_content_length
from ntm_spark.serving.scoring import NOT_JSON

log = logging.getLogger(__name__)

#: Largest request body accepted (413 ``body_too_large`` above it): 32 MiB.
MAX_BODY_BYTES = 32 * 1024 * 1024
#: Deepest JSON nesting accepted (400 ``too_deep`` above it). The deepest valid request,
#: ``{"dataframe_split": {"data": [[[...indices...]]]}}``, is 5 levels.
MAX_JSON_DEPTH = 32

MISSING_CONTENT_TYPE = "missing_content_type"
UNSUPPORTED_CONTENT_TYPE = "unsupported_content_type"
BODY_TOO_LARGE = "body_too_large"
TOO_DEEP = "too_deep"

#: The media types MLflow's scoring server parses (``scoring_server.CONTENT_TYPES``).
CONTENT_TYPES = ("application/json", "text/csv", "application/vnd.apache.parquet")
CONTENT_TYPE_JSON = "application/json"
CONTENT_TYPE_CSV = "text/csv"

#: Environment of :func:`create_app` (how :func:`serve_model` passes settings to uvicorn's workers).
ENV_MODEL_URI = "NTM_SERVE_MODEL_URI"
ENV_MAX_BODY_BYTES = "NTM_SERVE_MAX_BODY_BYTES"
ENV_MAX_JSON_DEPTH = "NTM_SERVE_MAX_JSON_DEPTH"
ENV_MAX_ROWS = "NTM_SERVE_MAX_ROWS"
ENV_REFRESH_S = "NTM_SERVE_REFRESH_S"
ENV_TRACKING_URI = "NTM_SERVE_TRACKING_URI"

ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


class RequestError(ValueError):
    """A request the guard refuses: ``status`` is the HTTP status, ``code`` the stable error code."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code


def json_depth(value: Any) -> int:
    """Return how deeply arrays and objects nest in a parsed JSON value (a scalar is 0)."""
    depth, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        depth = max(depth, level)
        stack.extend((child, level + 1) for child in children if isinstance(child, (dict, list)))
    return depth


def check_json_body(body: bytes, max_json_depth: int = MAX_JSON_DEPTH) -> None:
    """Refuse a JSON body that MLflow's parser would fail on with a 500, or that nests too deeply.

    Raises:
        RequestError: 400 ``not_json`` or ``too_deep``.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RequestError(400, NOT_JSON, f"the body is not UTF-8 ({err}): send JSON encoded as UTF-8.") from None
    try:
        value = json.loads(text)
    except RecursionError:
        raise RequestError(
            400, TOO_DEEP, f"the JSON body nests deeper than max_json_depth={max_json_depth}: send a flatter request."
        ) from None
    except ValueError as err:  # JSONDecodeError, and int() refusing a number of more than 4,300 digits
        raise RequestError(400, NOT_JSON, f"the body is not valid JSON ({err}): send a JSON object such as "
                           '{"dataframe_records": [{"text": "..."}]}.') from None  # fmt: skip
    depth = json_depth(value)
    if depth > max_json_depth:
        raise RequestError(
            400, TOO_DEEP, f"the JSON body nests {depth} levels deep, above max_json_depth={max_json_depth}: send a flatter request."
        )


def headerless_csv_header(body: bytes, is_header: Callable[[list], bool], width: int) -> bytes:
    """Return the header line to put before a CSV body whose first line is a document, else ``b""``.

    Args:
        body: The ``text/csv`` body.
        is_header: Whether a first line's cells are a header (the model's column names).
        width: ``feature_dim``: a first line of this many cells that is not a header is a document.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return b""  # MLflow answers 400 for a body that is not UTF-8
    # pandas skips blank lines, so the header is the first line that is not blank.
    first = next((line.rstrip("\r") for line in text.split("\n") if line.strip()), None)
    if first is None:
        return b""
    try:
        cells = next(csv.reader([first]), [])
    except csv.Error:
        return b""
    if is_header(cells) or len(cells) != width:
        return b""
    return (",".join(str(i) for i in range(width)) + "\n").encode()


class RequestGuard:
    """ASGI middleware: refuse bad ``POST /invocations`` requests with 4xx, pass the rest to ``app``.

    Args:
        app: The ASGI app to protect (MLflow's scoring app).
        max_body_bytes: Largest body accepted (413 above it).
        max_json_depth: Deepest JSON nesting accepted (400 above it).
        csv_header: ``body -> header line`` for ``text/csv`` bodies whose first line is a document
            (``b""`` when it has a header); ``None`` passes CSV unchanged.
        path: The route to guard.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_json_depth: int = MAX_JSON_DEPTH,
        csv_header: Optional[Callable[[bytes], bytes]] = None,
        path: str = "/invocations",
    ) -> None:
        if int(max_body_bytes) < 1:
            raise ValueError(f"max_body_bytes={max_body_bytes!r}: use a positive number of bytes.")
        if int(max_json_depth) < 5:
            raise ValueError(f"max_json_depth={max_json_depth!r}: use at least 5 (the depth of a dataframe_split request of sparse rows).")
        self.app = app
        self.max_body_bytes = int(max_body_bytes)
        self.max_json_depth = int(max_json_depth)
        self.csv_header = csv_header
        self.path = path

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]], send: Callable[[dict], Awaitable[None]]) -> None:
        """Serve one ASGI connection."""
        if scope["type"] != "http" or scope.get("method") != "POST" or scope.get("path") != self.path:
            await self.app(scope, receive, send)
            return
        headers = [(k.lower(), v) for k, v in scope.get("headers", [])]
        try:
            mime = self._check_content_type(headers)
            body = await self._read_body(headers, receive)
            if body is None:  # the client went away
                return
            if mime in (CONTENT_TYPE_JSON, CONTENT_TYPE_CSV):
                # The project's one rule for bytes that are not UTF-8 (as in preprocessing, the stream
                # and backfill): the whole body is decoded as Latin-1, then served as UTF-8.
                text, fallback = decode_document_bytes(body)
                if fallback:
                    log.info("a %s body of %d bytes is not UTF-8: decoded as Latin-1", mime, len(body))
                    body = text.encode("utf-8")
                    headers = with_content_length(headers, body)
            if mime == CONTENT_TYPE_JSON:
                await asyncio.to_thread(check_json_body, body, self.max_json_depth)
            elif mime == CONTENT_TYPE_CSV and self.csv_header is not None:
                header = await asyncio.to_thread(self.csv_header, body)
                if header:
                    body = header + body
                    headers = with_content_length(headers, body)
        except RequestError as err:
            await _send_error(send, err)
            return
        await self.app({**scope, "headers": headers}, replay_body(body, receive), send)

    @staticmethod
    def _check_content_type(headers: list) -> str:
        raw = next((v for k, v in headers if k == b"content-type"), None)
        value = raw.decode("latin-1").strip() if raw is not None else ""
        if not value:
            raise RequestError(
                415, MISSING_CONTENT_TYPE,
                f"the request has no Content-Type: send one of {', '.join(CONTENT_TYPES)} "
                "(e.g. -H 'Content-Type: application/json').",
            )  # fmt: skip
        mime = value.split(";", 1)[0].strip().lower()
        if mime not in CONTENT_TYPES:
            raise RequestError(
                415, UNSUPPORTED_CONTENT_TYPE, f"Content-Type {value[:100]!r} is not supported: send one of {', '.join(CONTENT_TYPES)}."
            )
        return mime

    async def _read_body(self, headers: list, receive: Callable[[], Awaitable[dict]]) -> Optional[bytes]:
        length = next((v for k, v in headers if k == b"content-length"), None)
        if length is not None and length.strip().isdigit() and int(length) > self.max_body_bytes:
            raise RequestError(413, BODY_TOO_LARGE, self._too_large(f"{int(length)} bytes"))
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise RequestError(413, BODY_TOO_LARGE, self._too_large(f"more than {self.max_body_bytes} bytes"))
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _too_large(self, size: str) -> str:
        return (
            f"the body has {size}, above max_body_bytes={self.max_body_bytes}: split the documents over several "
            "requests (or start the server with a larger --max-body-bytes)."
        )


async def _send_error(send: Callable[[dict], Awaitable[None]], err: RequestError) -> None:
    # The shape of MLflow's own error bodies: {"error_code": ..., "message": ...}.
    body = json.dumps({"error_code": "BAD_REQUEST", "message": f"[{err.code}] {err}"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": err.status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def build_guarded_app(model_uri: str, max_body_bytes: int = MAX_BODY_BYTES, max_json_depth: int = MAX_JSON_DEPTH) -> RequestGuard:
    """Load a pyfunc model and return MLflow's scoring app for it behind a :class:`RequestGuard`.

    For the project's model (:class:`~ntm_spark.serving.pyfunc_model.NTMPyfuncModel`) the guard also
    reads headerless CSV; any other pyfunc is served as ``mlflow models serve`` would, guarded.
    (:func:`build_app` serves the project's models; this is what it serves any other pyfunc with.)

    Args:
        model_uri: Any MLflow model URI (``models:/name@champion``, ``runs:/...``, a local folder).
        max_body_bytes: Largest body accepted (413 above it).
        max_json_depth: Deepest JSON nesting accepted (400 above it).
    """
    from mlflow.pyfunc import scoring_server

    return _guard_pyfunc(scoring_server.load_model_with_mlflow_config(model_uri), max_body_bytes, max_json_depth)


def _guard_pyfunc(model: Any, max_body_bytes: int, max_json_depth: int) -> RequestGuard:
    from mlflow.pyfunc import scoring_server

    app = scoring_server.init(model)
    csv_header = None
    try:
        scorer = getattr(model.unwrap_python_model(), "scorer", None)
    except Exception:  # noqa: BLE001 - not a PythonModel: no scorer, serve CSV as MLflow does
        scorer = None
    if scorer is not None:
        from ntm_spark.serving.pyfunc_model import is_model_header

        def csv_header(body: bytes) -> bytes:
            return headerless_csv_header(body, lambda cells: is_model_header(cells, scorer), scorer.feature_dim)

    return RequestGuard(app, max_body_bytes=max_body_bytes, max_json_depth=max_json_depth, csv_header=csv_header)


def build_app(
    model_uri: str,
    max_body_bytes: int = MAX_BODY_BYTES,
    max_json_depth: int = MAX_JSON_DEPTH,
    max_rows: Optional[int] = None,
    refresh_interval_s: float = 30.0,
    tracking_uri: Optional[str] = None,
    timeout_s: Optional[float] = None,
) -> ASGIApp:
    """Return ``ntm serve``'s app: SageMaker's routes (:mod:`ntm_spark.serving.sagemaker_endpoint`) in front of MLflow's, guarded.

    The model is loaded (and an alias re-resolved every ``refresh_interval_s``) by
    :class:`~ntm_spark.serving.model_loader.ScorerLoader`; MLflow's scoring app, behind a
    :class:`RequestGuard`, answers MLflow's layouts with the same version. A training model folder
    (``model.pt``) is served on SageMaker's routes only; an MLflow pyfunc that is not the project's
    is served by MLflow's app alone, guarded (:func:`build_guarded_app`).

    Args:
        model_uri: ``models:/name@alias``, ``models:/name/version``, any MLflow model URI, or a model folder.
        max_body_bytes: Largest body accepted (413 above it).
        max_json_depth: Deepest JSON nesting accepted on MLflow's layouts (400 above it).
        max_rows: Most documents per SageMaker request (413 above it; default
            :data:`ntm_spark.serving.sagemaker.MAX_ROWS`).
        refresh_interval_s: How often an alias is looked up for a new version.
        tracking_uri: The MLflow registry; ``None`` uses MLflow's default resolution.
        timeout_s: Seconds a SageMaker invocation may take (504 after; default MLflow's request timeout, 60).
    """
    from ntm_spark.serving.model_loader import ModelSpec, NoScorerError, get_loader
    from ntm_spark.serving.pyfunc_model import is_model_header
    from ntm_spark.serving.sagemaker import MAX_ROWS
    from ntm_spark.serving.sagemaker_endpoint import TIMEOUT_S, SageMakerEndpoint

    loader = get_loader(ModelSpec(model_uri, refresh_interval_s=float(refresh_interval_s), tracking_uri=tracking_uri))
    try:
        loaded = loader.get()
    except NoScorerError:
        return build_guarded_app(model_uri, max_body_bytes=max_body_bytes, max_json_depth=max_json_depth)
    mlflow_app = None
    if loaded.pyfunc is not None:

        def mlflow_app(current: Any) -> RequestGuard:
            return _guard_pyfunc(current.pyfunc, max_body_bytes, max_json_depth)

    if timeout_s is None:
        timeout_s = float(os.environ.get("MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT", TIMEOUT_S))
    return SageMakerEndpoint(
        loader,
        mlflow_app,
        max_body_bytes=max_body_bytes,
        max_rows=MAX_ROWS if max_rows is None else max_rows,
        timeout_s=timeout_s,
        is_header=is_model_header,
    )


def create_app() -> ASGIApp:
    """Build the app from the environment (``uvicorn --factory ntm_spark.serving.endpoint:create_app``).

    Raises:
        ValueError: when ``NTM_SERVE_MODEL_URI`` is not set.
    """
    uri = os.environ.get(ENV_MODEL_URI)
    if not uri:
        raise ValueError(f"{ENV_MODEL_URI} is not set: set it to the model URI to serve (or run `ntm serve`).")
    max_rows = os.environ.get(ENV_MAX_ROWS)
    return build_app(
        uri,
        max_body_bytes=int(os.environ.get(ENV_MAX_BODY_BYTES, MAX_BODY_BYTES)),
        max_json_depth=int(os.environ.get(ENV_MAX_JSON_DEPTH, MAX_JSON_DEPTH)),
        max_rows=int(max_rows) if max_rows else None,
        refresh_interval_s=float(os.environ.get(ENV_REFRESH_S, 30.0)),
        tracking_uri=os.environ.get(ENV_TRACKING_URI) or None,
    )


def serve_model(
    model_uri: str,
    host: str = "127.0.0.1",
    port: int = 5001,
    workers: int = 1,
    timeout: Optional[int] = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    max_json_depth: int = MAX_JSON_DEPTH,
    max_rows: Optional[int] = None,
    refresh_interval_s: float = 30.0,
    tracking_uri: Optional[str] = None,
) -> None:
    """Serve a model over REST until interrupted: SageMaker's routes and ``mlflow models serve``'s, on one port.

    The model is loaded here first, so a reference that does not load fails before the server
    starts; each uvicorn worker then loads its own copy (one worker reuses this one).

    Args:
        model_uri: ``models:/name@alias`` (followed when the alias moves), any MLflow model URI, or a model folder.
        host: Interface to bind (loopback by default).
        port: TCP port.
        workers: uvicorn worker processes.
        timeout: Seconds a request may take before a 504 (MLflow's ``--timeout``; default MLflow's 60).
        max_body_bytes: Largest body accepted (413 above it).
        max_json_depth: Deepest JSON nesting accepted (400 above it).
        max_rows: Most documents per SageMaker request (413 above it).
        refresh_interval_s: How often an alias is looked up for a new version.
        tracking_uri: The MLflow registry; ``None`` uses MLflow's default resolution.

    Raises:
        ModelLoadError: when the model cannot be resolved or loaded.
    """
    import uvicorn

    from ntm_spark.serving.model_loader import ModelSpec, NoScorerError, get_loader

    try:
        get_loader(ModelSpec(model_uri, refresh_interval_s=float(refresh_interval_s), tracking_uri=tracking_uri)).get()
    except NoScorerError:
        pass  # any other pyfunc: MLflow's app alone (build_app), which loads it itself
    os.environ[ENV_MODEL_URI] = model_uri
    os.environ[ENV_MAX_BODY_BYTES] = str(int(max_body_bytes))
    os.environ[ENV_MAX_JSON_DEPTH] = str(int(max_json_depth))
    os.environ[ENV_REFRESH_S] = str(float(refresh_interval_s))
    if max_rows is not None:
        os.environ[ENV_MAX_ROWS] = str(int(max_rows))
    if tracking_uri:
        os.environ[ENV_TRACKING_URI] = tracking_uri
    if timeout is not None:
        os.environ["MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT"] = str(int(timeout))
    uvicorn.run("ntm_spark.serving.endpoint:create_app", factory=True, host=host, port=int(port), workers=int(workers))
