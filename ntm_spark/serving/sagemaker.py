"""SageMaker's NTM inference contract: request bodies in, topic mixtures out, around the one scorer.

``ntm serve`` answers SageMaker's routes with these functions (:mod:`ntm_spark.serving.endpoint`
is the HTTP side); the scoring is :class:`~ntm_spark.serving.scoring.TopicScorer`'s, this
module only turns SageMaker's request layouts into its inputs and its output into SageMaker's
responses.

Request ``Content-Type``:

* ``text/csv``: dense rows of ``feature_dim`` counts, no header, one document per line (what
  the SageMaker SDK's ``CSVSerializer`` sends);
* ``application/json``: ``{"instances": [...]}`` where each instance is
  ``{"features": [counts...]}`` (dense), ``{"data": {"features": {"keys": [...], "shape": [V],
  "values": [...]}}}`` (sparse; without ``keys``, ``values`` is a dense row), or the project's
  raw text ``{"text": "..."}``;
* ``application/jsonlines``: one such instance per line;
* ``application/x-recordio-protobuf``: MXNet RecordIO records of SageMaker's ``Record`` protobuf,
  the document a dense or sparse float32 (or float64, int32) tensor under ``features["values"]``
  (what the SDK's ``write_numpy_to_dense_tensor``/``write_spmatrix_to_sparse_tensor`` write; see
  :mod:`ntm_spark.core.recordio`).

Instances of different forms may share a request. Response by ``Accept`` (default JSON):

* ``application/json``: ``{"predictions": [{"topic_weights": [...]}, ...]}``;
* ``application/jsonlines``: one ``{"topic_weights": [...]}`` per line;
* ``application/x-recordio-protobuf``: one ``Record`` per document, the weights a float32 tensor
  under ``label["topic_weights"]``.

JSON weights carry 7 significant digits (float32's precision, as the MLflow pyfunc writes them);
RecordIO carries the float32 values themselves.

Bad input is a :class:`RequestError` with an HTTP status and a stable code: the scorer's
per-row codes (``bad_length``, ``bad_index``, ``count_not_number``, ``empty_counts``,
``text_not_string``...) with the pyfunc's wording (:func:`~ntm_spark.serving.scoring.describe_row_errors`),
plus this module's: ``not_json``/``not_csv``/``not_recordio`` (400, a body that does not parse),
``missing_features`` (400, an instance or record with no document), ``too_many_rows`` (413,
above ``max_rows``), ``unsupported_accept`` (406).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from ntm_spark.core.checks import RowError
from ntm_spark.core.recordio import RecordIOError, decode_records, encode_weights, feature_tensor
from ntm_spark.core.text import decode_document_bytes
from ntm_spark.serving.scoring import (
    BAD_LENGTH,
    NOT_JSON,
    ScoreResult,
    ScoringInputError,
    TopicScorer,
    describe_row_errors,
)

CONTENT_TYPE_JSON = "application/json"
CONTENT_TYPE_CSV = "text/csv"
CONTENT_TYPE_JSONLINES = "application/jsonlines"
CONTENT_TYPE_RECORDIO = "application/x-recordio-protobuf"
#: Media types read as JSON Lines (SageMaker writes ``application/jsonlines``).
JSONLINES_TYPES = (CONTENT_TYPE_JSONLINES, "application/x-jsonlines")
#: The request media types of SageMaker's routes.
CONTENT_TYPES = (CONTENT_TYPE_CSV, CONTENT_TYPE_JSON, *JSONLINES_TYPES, CONTENT_TYPE_RECORDIO)
#: The response media types, by ``Accept``.
ACCEPT_TYPES = (CONTENT_TYPE_JSON, CONTENT_TYPE_JSONLINES, CONTENT_TYPE_RECORDIO)

#: Most documents in one request (413 ``too_many_rows`` above it): the scorer holds a dense
#: ``(rows, feature_dim)`` float32 matrix per request, so this bounds its memory
#: (10,000 x 2,000 words = 80 MB).
MAX_ROWS = 10_000

NOT_CSV = "not_csv"
NOT_RECORDIO = "not_recordio"
MISSING_FEATURES = "missing_features"
TOO_MANY_ROWS = "too_many_rows"
UNSUPPORTED_ACCEPT = "unsupported_accept"

#: The keys of a SageMaker instance (anything else is one of MLflow's layouts).
INSTANCE_KEYS = frozenset({"features", "data", "text"})
#: ``error_code`` of a body refused before scoring, and of one the model refused (MLflow's names).
BAD_REQUEST = "BAD_REQUEST"
INVALID_PARAMETER_VALUE = "INVALID_PARAMETER_VALUE"


class RequestError(ValueError):
    """A request refused with ``status``; ``code`` is the stable error code.

    Args:
        status: The HTTP status.
        code: The stable code (``not_json``, ``bad_length``...).
        message: What is wrong and how to fix it.
        error_code: The category in the error body (MLflow's ``BAD_REQUEST`` or ``INVALID_PARAMETER_VALUE``).
        tagged: Whether the body's message starts with ``[code]`` (a row listing names each row's code instead).
    """

    def __init__(self, status: int, code: str, message: str, error_code: str = BAD_REQUEST, tagged: bool = True):
        super().__init__(message)
        self.status = status
        self.code = code
        self.error_code = error_code
        self.tagged = tagged

    def body(self) -> bytes:
        """The JSON error body, in the shape of MLflow's: ``{"error_code": ..., "message": ...}``."""
        message = f"[{self.code}] {self}" if self.tagged else str(self)
        return json.dumps({"error_code": self.error_code, "message": message}).encode()


def media_type(value: Optional[str]) -> str:
    """Return a header value's media type, lower-cased and without parameters (``""`` for none)."""
    return (value or "").split(";", 1)[0].strip().lower()


def choose_accept(header: Optional[str]) -> str:
    """Return the response media type for an ``Accept`` header (JSON when absent or ``*/*``).

    The acceptable types are taken by ``q`` (highest first, then in order); one of
    :data:`ACCEPT_TYPES` or a wildcard wins.

    Raises:
        RequestError: 406 ``unsupported_accept`` when none is acceptable.
    """
    if not header or not header.strip():
        return CONTENT_TYPE_JSON
    offers = []
    for position, part in enumerate(header.split(",")):
        mime, *params = [p.strip() for p in part.split(";")]
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0 and mime:
            offers.append((-q, position, mime.lower()))
    for _, _, mime in sorted(offers):
        if mime in ACCEPT_TYPES:
            return mime
        if mime in ("application/x-jsonlines",):
            return CONTENT_TYPE_JSONLINES
        if mime in ("*/*", "application/*"):
            return CONTENT_TYPE_JSON
    raise RequestError(
        406, UNSUPPORTED_ACCEPT, f"Accept {header[:100]!r} names no type this endpoint writes: accept one of {', '.join(ACCEPT_TYPES)}."
    )


# --------------------------------------------------------------------------- request bodies


@dataclass
class ParsedRows:
    """A request's documents before scoring: per row its form, its input and any problem found while reading.

    Attributes:
        kinds: Per row ``"dense"``, ``"sparse"``, ``"text"``, or ``None`` for a row with an error.
        items: Per row the input: a dense row, ``(keys, values)``, or a text.
        errors: Per row a :class:`RowError` found while reading (``None`` when the row was read).
        dense: A ``(rows, columns)`` array when every row is dense and numeric (the CSV fast path).
        dense_field: What error messages call a dense row (``features``; ``columns`` for CSV, as the pyfunc does).
    """

    kinds: list = field(default_factory=list)
    items: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    dense: Optional[np.ndarray] = None
    dense_field: str = "features"

    def add(self, kind: Optional[str], item: Any = None, error: Optional[RowError] = None) -> None:
        """Append one row."""
        self.kinds.append(kind if error is None else None)
        self.items.append(item)
        self.errors.append(error)

    def __len__(self) -> int:
        return len(self.kinds) if self.dense is None else len(self.dense)


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_rows(n: int, max_rows: int) -> None:
    if n > max_rows:
        raise RequestError(
            413, TOO_MANY_ROWS, f"the request holds {n} documents, above max_rows={max_rows}: split it over several requests "
            "(or start the server with a larger --max-rows)."
        )  # fmt: skip


def _shape_error(shape: Any, feature_dim: int) -> Optional[RowError]:
    """Why a sparse row's ``shape`` does not describe a vector of ``feature_dim`` words, or ``None``."""
    if shape is None:
        return None
    dims = list(shape) if isinstance(shape, (list, tuple, np.ndarray)) else None
    if dims is None or len(dims) != 1 or isinstance(dims[0], bool) or not isinstance(dims[0], (int, np.integer)) or int(dims[0]) != feature_dim:
        return RowError(
            BAD_LENGTH,
            f"'shape' is {_short(shape)}, but the model's feature_dim is {feature_dim}: send vectors over the model's "
            f"vocabulary (vocab.txt, {feature_dim} words), shape [{feature_dim}]",
        )
    return None


def read_instance(rows: ParsedRows, instance: Any, feature_dim: int) -> None:
    """Append one JSON instance (``features``, ``data.features`` or ``text``) to ``rows``."""
    if not isinstance(instance, dict) or not (INSTANCE_KEYS & instance.keys()):
        rows.add(None, error=RowError(
            MISSING_FEATURES, f"the instance is {type(instance).__name__} {_short(instance)}: each instance is an object with "
            "'features' (dense counts), 'data' ({\"features\": {\"keys\", \"shape\", \"values\"}}) or 'text'",
        ))  # fmt: skip
        return
    if "features" in instance:
        rows.add("dense", instance["features"])
        return
    if "data" in instance:
        data = instance["data"]
        tensor = data.get("features") if isinstance(data, dict) else None
        if not isinstance(tensor, dict) or "values" not in tensor:
            rows.add(None, error=RowError(
                MISSING_FEATURES, f"'data' is {_short(data)}: send {{\"features\": {{\"keys\": [...], \"shape\": [{feature_dim}], "
                "\"values\": [...]}} (sparse), or \"values\" alone for a dense row",
            ))  # fmt: skip
            return
        err = _shape_error(tensor.get("shape"), feature_dim)
        if err is not None:
            rows.add(None, error=err)
        elif tensor.get("keys") is None:
            rows.add("dense", tensor["values"])
        else:
            rows.add("sparse", (tensor["keys"], tensor["values"]))
        return
    rows.add("text", instance["text"])


def parse_json_text(text: str) -> Any:
    """Parse a JSON body.

    Raises:
        RequestError: 400 ``not_json`` (also for nesting past Python's recursion limit).
    """
    try:
        return json.loads(text)
    except RecursionError:
        raise RequestError(400, NOT_JSON, "the JSON body nests too deeply: send {\"instances\": [...]}.") from None
    except ValueError as err:
        raise RequestError(400, NOT_JSON, f"the body is not valid JSON ({err}): send {{\"instances\": [{{\"features\": [...]}}]}}.") from None


def is_sagemaker_json(payload: Any) -> bool:
    """Whether a parsed JSON body is SageMaker's ``{"instances": [...]}`` (every instance keyed by ``features``/``data``/``text``).

    Anything else (``dataframe_records``, ``inputs``, ``params``, instances with other keys) is one
    of MLflow's layouts, served by MLflow's app. ``{"instances": [{"text": ...}]}`` is both; its
    answer is the same either way.
    """
    if not isinstance(payload, dict) or set(payload) != {"instances"} or not isinstance(payload["instances"], list):
        return False
    return all(isinstance(i, dict) and i.keys() <= INSTANCE_KEYS for i in payload["instances"])


def rows_from_json(payload: Any, feature_dim: int, max_rows: int = MAX_ROWS) -> ParsedRows:
    """Read SageMaker's ``{"instances": [...]}`` (see :func:`is_sagemaker_json`)."""
    instances = payload["instances"]
    _check_rows(len(instances), max_rows)
    rows = ParsedRows()
    for instance in instances:
        read_instance(rows, instance, feature_dim)
    return rows


def rows_from_jsonlines(text: str, feature_dim: int, max_rows: int = MAX_ROWS) -> ParsedRows:
    """Read JSON Lines: one instance per non-blank line.

    Raises:
        RequestError: 400 ``not_json`` naming the line that does not parse.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    _check_rows(len(lines), max_rows)
    rows = ParsedRows()
    for number, line in enumerate(lines):
        try:
            instance = json.loads(line)
        except RecursionError:
            raise RequestError(400, NOT_JSON, f"line {number} of the JSON Lines body nests too deeply.") from None
        except ValueError as err:
            raise RequestError(400, NOT_JSON, f"line {number} of the JSON Lines body is not JSON ({err}): send one "
                               '{"features": [...]} object per line.') from None  # fmt: skip
        read_instance(rows, instance, feature_dim)
    return rows


def rows_from_csv(text: str, max_rows: int = MAX_ROWS) -> ParsedRows:
    """Read headerless CSV: one dense row of counts per line (blank lines skipped).

    Numbers take numpy's fast reader; anything else is read with pandas, as MLflow reads CSV,
    so each odd cell reaches the scorer and is named in its row's error.

    Raises:
        RequestError: 400 ``not_csv`` for CSV that does not parse (e.g. a row longer than the first).
    """
    import warnings

    n_lines = sum(1 for line in text.splitlines() if line.strip())
    _check_rows(n_lines, max_rows)
    rows = ParsedRows(dense_field="columns")
    if n_lines == 0:
        rows.dense = np.zeros((0, 0))
        return rows
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # loadtxt warns on empty input; handled above
            rows.dense = np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.float64, ndmin=2, comments=None, quotechar='"')
        return rows
    except ValueError:
        pass
    import pandas as pd

    try:
        frame = pd.read_csv(io.StringIO(text), header=None, skip_blank_lines=True)
    except (ValueError, OverflowError, pd.errors.ParserError) as err:
        raise RequestError(400, NOT_CSV, f"the CSV body does not parse ({str(err)[:200]}): send one row of feature_dim "
                           "comma-separated counts per line, no header.") from None  # fmt: skip
    for row in frame.to_numpy():
        rows.add("dense", row)
    return rows


def rows_from_recordio(body: bytes, feature_dim: int, max_rows: int = MAX_ROWS) -> ParsedRows:
    """Read RecordIO-protobuf records: each record's document tensor (:func:`~ntm_spark.core.recordio.feature_tensor`).

    Raises:
        RequestError: 400 ``not_recordio`` for bytes that are not RecordIO-protobuf.
    """
    try:
        records = decode_records(body)
    except RecordIOError as err:
        raise RequestError(400, NOT_RECORDIO, str(err)) from None
    _check_rows(len(records), max_rows)
    rows = ParsedRows()
    for record in records:
        tensor = feature_tensor(record)
        if tensor is None:
            rows.add(None, error=RowError(
                MISSING_FEATURES, f"the record has no document tensor under features['values'] (features: {sorted(record.features)}): "
                "write it with the SageMaker SDK's write_spmatrix_to_sparse_tensor or write_numpy_to_dense_tensor",
            ))  # fmt: skip
            continue
        if not tensor.is_sparse:
            rows.add("dense", tensor.values)
            continue
        err = _shape_error(tensor.shape if tensor.shape else None, feature_dim)
        if err is not None:
            rows.add(None, error=err)
        else:
            rows.add("sparse", (tensor.keys, tensor.values))
    return rows


def read_body(body: bytes, content_type: str, feature_dim: int, max_rows: int = MAX_ROWS, payload: Any = None) -> ParsedRows:
    """Read a request body of one of :data:`CONTENT_TYPES` into rows.

    Args:
        body: The raw body (JSON and CSV that are not UTF-8 are read as Latin-1, the project's one rule).
        content_type: Its media type.
        feature_dim: The model's vocabulary size.
        max_rows: Most documents accepted.
        payload: The already parsed JSON of an ``application/json`` body, if the caller has it.

    Raises:
        RequestError: for a body that does not parse, too many rows, or an unsupported media type.
    """
    mime = media_type(content_type)
    if mime == CONTENT_TYPE_RECORDIO:
        return rows_from_recordio(body, feature_dim, max_rows)
    if mime not in (CONTENT_TYPE_JSON, CONTENT_TYPE_CSV, *JSONLINES_TYPES):
        raise RequestError(415, "unsupported_content_type", f"Content-Type {content_type!r} is not supported: send one of {', '.join(CONTENT_TYPES)}.")
    if mime == CONTENT_TYPE_JSON and payload is not None:
        return rows_from_json(payload, feature_dim, max_rows)
    text, _ = decode_document_bytes(body)
    if mime == CONTENT_TYPE_CSV:
        return rows_from_csv(text, max_rows)
    if mime in JSONLINES_TYPES:
        return rows_from_jsonlines(text, feature_dim, max_rows)
    payload = parse_json_text(text)
    if not isinstance(payload, dict) or "instances" not in payload:
        raise RequestError(400, MISSING_FEATURES, f"the JSON body is {_short(payload)}: send {{\"instances\": [{{\"features\": [...]}}, ...]}}.")
    if not isinstance(payload["instances"], list):
        raise RequestError(400, MISSING_FEATURES, "'instances' must be a list: send {\"instances\": [{\"features\": [...]}, ...]}.")
    return rows_from_json(payload, feature_dim, max_rows)


# --------------------------------------------------------------------------- scoring and answers


def score_rows(scorer: TopicScorer, rows: ParsedRows) -> ScoreResult:
    """Score every row with the one scorer, each form with its method; rows read with an error keep it."""
    if rows.dense is not None:
        if rows.dense.shape[0] == 0:
            return ScoreResult(np.zeros((0, scorer.num_topics), np.float32), [])
        if rows.dense.shape[1] != scorer.feature_dim:  # every row has the wrong length: let the scorer say so per row
            return scorer.score_dense(list(rows.dense), field="columns")
        return scorer.score_dense(rows.dense, field="columns")
    n = len(rows.kinds)
    weights = np.full((n, scorer.num_topics), np.nan, dtype=np.float32)
    errors: list = list(rows.errors)
    for kind in ("dense", "sparse", "text"):
        at = [i for i, k in enumerate(rows.kinds) if k == kind]
        if not at:
            continue
        items = [rows.items[i] for i in at]
        if kind == "dense":
            part = scorer.score_dense(items, field=rows.dense_field)
        elif kind == "sparse":
            part = scorer.score_sparse([k for k, _ in items], [v for _, v in items])
        else:
            part = scorer.score_texts(items)
        weights[at] = part.weights
        for j, i in enumerate(at):
            errors[i] = part.errors[j]
    return ScoreResult(weights, errors)


def round_weights(weights: np.ndarray) -> list:
    """Return the rows as lists of floats with 7 significant digits (float32's; the pyfunc writes the same)."""
    return [[float(f"{x:.7g}") for x in row] for row in weights.tolist()]


def encode_predictions(weights: np.ndarray, accept: str) -> bytes:
    """Return the response body for ``(N, K)`` topic weights in the ``accept`` media type."""
    if accept == CONTENT_TYPE_RECORDIO:
        return encode_weights(weights)
    rows = round_weights(weights)
    if accept == CONTENT_TYPE_JSONLINES:
        return "".join(json.dumps({"topic_weights": r}) + "\n" for r in rows).encode()
    return json.dumps({"predictions": [{"topic_weights": r} for r in rows]}).encode()


def invoke(
    scorer: TopicScorer, body: bytes, content_type: str, accept: str = CONTENT_TYPE_JSON,
    max_rows: int = MAX_ROWS, payload: Any = None,
) -> bytes:  # fmt: skip
    """Answer one SageMaker invocation: read the body, score every document, write the response.

    Args:
        scorer: The model's scorer.
        body: The request body.
        content_type: The request's ``Content-Type``.
        accept: The response media type (see :func:`choose_accept`).
        max_rows: Most documents accepted.
        payload: The parsed JSON of an ``application/json`` body, when the caller already parsed it.

    Raises:
        RequestError: 400 with the scorer's codes for bad documents (every bad row listed, in the
            pyfunc's words), or the status of a body that cannot be read.
    """
    rows = read_body(body, content_type, scorer.feature_dim, max_rows, payload)
    try:
        result = score_rows(scorer, rows)
    except ScoringInputError as err:
        raise RequestError(400, err.code, str(err), error_code=INVALID_PARAMETER_VALUE) from None
    described = describe_row_errors(result)
    if described is not None:
        first = next(e for e in result.errors if e is not None)
        raise RequestError(400, first.code, f"{described}. Fix those rows and send the request again.",
                           error_code=INVALID_PARAMETER_VALUE, tagged=False)  # fmt: skip
    return encode_predictions(result.weights, accept)
