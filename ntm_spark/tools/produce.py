"""``ntm produce``: send documents from files to Kafka as the messages ``ntm stream`` reads.

Each document becomes one message, keyed by its id, whose value is the stream's input shape
(docs/streaming.md, "Messages")::

    {"id": "<id>", "text": "<the document>", ...the record's other fields...}

Inputs (``input_format``; ``auto`` picks by extension):

* ``jsonl`` (``.jsonl``, ``.ndjson``, ``.json``; and ``-``, standard input): one JSON object per
  line. The text is the ``text_col`` field (default ``text``), the id the ``id_col`` field
  (default ``id``); the other fields travel along (the stream copies those listed in
  ``passthrough_fields``). Blank lines are skipped.
* ``csv`` (``.csv``): a header row, then one document per row; columns as for JSON lines.
  A quoted field may span lines.
* ``text`` (``.txt``, any file of a folder): one document per file. A folder is read
  recursively (hidden files and folders skipped) in path order.

Keys: the id field or column when the record has one; else a stable key derived from where
the document came from: ``<file>:<line>`` (JSON lines), ``<file>:<row line>`` (CSV), the path
relative to the folder (text files), ``stdin:<line>``. The derived key is also written as the
value's ``id``, so the stream's output record is keyed the same.

Bytes follow the project's one rule (:func:`ntm_spark.core.text.decode_document_bytes`): UTF-8
when valid, else Latin-1. A line, row or file that cannot become a document (a JSON line that is
not an object, a record without the text field) is *reported and skipped*, and the rest is sent;
a problem with the whole input (an unknown format, a CSV header without the text column)
raises :class:`ProduceInputError` before anything is sent. The document checks themselves
(empty, too large, binary, a non-string text) are the stream's: such records are sent and
come back as dead letters with the shared error codes.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Optional, Union

from ntm_spark.core.schema import ID_COL, TEXT_COL
from ntm_spark.core.text import decode_document_bytes
from ntm_spark.tools.kafka_client import error_text

log = logging.getLogger(__name__)

INPUT_FORMATS = ("auto", "jsonl", "csv", "text")
#: Extension -> format for ``auto``.
EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".txt": "text", ".text": "text"}
#: A CSV field may hold a whole document: the csv module's default limit (128 KiB) is too small.
CSV_FIELD_LIMIT = 64 * 1024 * 1024
STDIN = "-"


class ProduceInputError(ValueError):
    """The input as a whole cannot be read (unknown format, no text column, a missing file)."""


@dataclass(frozen=True)
class Document:
    """One message to send: ``key`` and ``value`` (the stream's input JSON object)."""

    key: str
    value: dict
    source: str
    line: int


@dataclass(frozen=True)
class InputProblem:
    """A line, row or file that was skipped, with where it is and why."""

    source: str
    line: int
    message: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return f"{where}: {self.message}"


Item = Union[Document, InputProblem]


# ----------------------------------------------------------------------------- encoding


def encode_value(value: dict) -> bytes:
    """The message value: compact JSON in UTF-8 (JSON escapes only for what UTF-8 cannot hold)."""
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a JSON "\ud800" escape: keep it escaped
        return json.dumps(value, separators=(",", ":")).encode("ascii")


def encode_key(key: str) -> bytes:
    """The message key in UTF-8 (a lone surrogate, which UTF-8 cannot hold, as its JSON escape)."""
    try:
        return key.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(key)[1:-1].encode("ascii")


# ----------------------------------------------------------------------------- readers


def detect_format(path: str, input_format: str = "auto") -> str:
    """Return the format of ``path``: ``input_format`` unless ``auto``, else from the extension.

    Raises:
        ProduceInputError: for an unknown format, or an extension ``auto`` cannot place.
    """
    if input_format not in INPUT_FORMATS:
        raise ProduceInputError(f"input format {input_format!r} is unknown: choose one of {', '.join(INPUT_FORMATS)}.")
    if input_format != "auto":
        return input_format
    if path == STDIN:
        return "jsonl"
    if Path(path).is_dir():
        return "text"
    suffix = Path(path).suffix.lower()
    if suffix in EXTENSIONS:
        return EXTENSIONS[suffix]
    raise ProduceInputError(
        f"cannot tell the format of {path!r} from its extension {suffix or '(none)'!r}: "
        "pass --format jsonl (one JSON object per line), csv (a header row) or text (the whole file is one document)."
    )


def _with_id(value: dict, key: Any, derived: str) -> tuple[str, dict]:
    if key is None or (isinstance(key, str) and not key.strip()) or isinstance(key, (dict, list)):
        key = derived
    key = key if isinstance(key, str) else json.dumps(key)
    value[ID_COL] = key
    return key, value


def read_jsonl(lines: Iterator[bytes], source: str, text_col: str = TEXT_COL, id_col: Optional[str] = ID_COL) -> Iterator[Item]:
    """Documents from JSON lines (raw bytes per line): one :class:`Document` or :class:`InputProblem` per non-blank line."""
    for number, raw in enumerate(lines, start=1):
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        text, _ = decode_document_bytes(raw)
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except ValueError as err:
            yield InputProblem(source, number, f"not valid JSON ({err}): write one JSON object per line")
            continue
        if not isinstance(obj, dict):
            yield InputProblem(source, number, f'JSON but not an object (a {type(obj).__name__}): write {{"id": ..., "{text_col}": ...}}')
            continue
        if text_col not in obj:
            yield InputProblem(source, number, f"no {text_col!r} field (fields: {sorted(obj)[:8]}): pass --text-col NAME for another field")
            continue
        value = {k: v for k, v in obj.items() if k not in (text_col, ID_COL)}
        value[TEXT_COL] = obj[text_col]
        key, value = _with_id(value, obj.get(id_col) if id_col else None, f"{source}:{number}")
        yield Document(key, {ID_COL: value.pop(ID_COL), **value}, source, number)


def read_csv(data: bytes, source: str, text_col: str = TEXT_COL, id_col: Optional[str] = ID_COL, id_required: bool = False) -> Iterator[Item]:
    """Documents from a CSV file's bytes (a header row, then one document per row).

    Raises:
        ProduceInputError: when the header lacks ``text_col`` (or a required ``id_col``), or the file is empty.
    """
    text, _ = decode_document_bytes(data)
    text = text.removeprefix("\ufeff")
    previous = csv.field_size_limit(CSV_FIELD_LIMIT)
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        try:
            header = next(reader, None)
        except csv.Error as err:
            raise ProduceInputError(f"{source}: cannot read the CSV header ({err}): check the file is CSV with a header row.") from err
        if not header:
            raise ProduceInputError(f"{source}: the CSV file is empty: it needs a header row naming a {text_col!r} column.")
        header = [h.strip() for h in header]
        if text_col not in header:
            raise ProduceInputError(
                f"{source}: the CSV header has no {text_col!r} column (columns: {header[:12]}): "
                "pass --text-col NAME naming the column that holds the documents."
            )
        if id_required and id_col not in header:
            raise ProduceInputError(f"{source}: the CSV header has no {id_col!r} column (columns: {header[:12]}): pass --id-col NAME, or leave it out for derived keys.")
        t_index = header.index(text_col)
        i_index = header.index(id_col) if id_col in header else None
        while True:
            line = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as err:
                yield InputProblem(source, line, f"not valid CSV ({err}): the rest of the file is skipped; fix the quoting")
                return
            if not row or all(not c.strip() for c in row):
                continue
            if t_index >= len(row):
                yield InputProblem(source, line, f"the row has {len(row)} fields, none in column {text_col!r} (column {t_index + 1})")
                continue
            value = {h: row[i] for i, h in enumerate(header) if i < len(row) and i not in (t_index, i_index) and h not in (ID_COL, TEXT_COL)}
            value[TEXT_COL] = row[t_index]
            key, value = _with_id(value, row[i_index] if i_index is not None and i_index < len(row) else None, f"{source}:{line}")
            yield Document(key, {ID_COL: value.pop(ID_COL), **value}, source, line)
    finally:
        csv.field_size_limit(previous)


def read_text_file(data: bytes, doc_id: str) -> Item:
    """One document from a whole text file's bytes, with ``doc_id`` as its id and key."""
    text, _ = decode_document_bytes(data)
    return Document(doc_id, {ID_COL: doc_id, TEXT_COL: text}, doc_id, 0)


def _folder_files(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name


def count_inputs(path: str, input_format: str) -> Optional[int]:
    """The number of documents when it is known before reading (a folder or a text file), else ``None``."""
    if path != STDIN and input_format == "text":
        p = Path(path)
        return sum(1 for _ in _folder_files(p)) if p.is_dir() else 1
    return None


def read_documents(
    path: str,
    input_format: str = "auto",
    text_col: str = TEXT_COL,
    id_col: Optional[str] = None,
    stdin: Optional[IO[bytes]] = None,
) -> Iterator[Item]:
    """Documents (and skipped lines) from a file, a folder of text files, or ``-`` (standard input).

    Args:
        path: A file, a folder (text files) or ``-``.
        input_format: ``auto``, ``jsonl``, ``csv`` or ``text``.
        text_col: The field or column holding the text.
        id_col: The field or column holding the id; ``None``: ``id`` when present, else derived keys.
        stdin: Where ``-`` reads from (default: ``sys.stdin.buffer``).

    Raises:
        ProduceInputError: for a missing or unreadable path, an unknown format or a CSV without the text column.
    """
    fmt = detect_format(path, input_format)
    if path != STDIN and not Path(path).exists():
        raise ProduceInputError(f"input {path!r} does not exist: check the path (or pass - to read standard input).")
    if path != STDIN and Path(path).is_dir() and fmt != "text":
        raise ProduceInputError(f"input {path!r} is a folder: a folder is read as text files (--format text), one document per file.")
    try:
        yield from _read_items(path, fmt, text_col, id_col, stdin if stdin is not None else sys.stdin.buffer)
    except OSError as err:
        raise ProduceInputError(f"cannot read {path!r} ({err.strerror or err}): check the path and its permissions.") from err


def _read_items(path: str, fmt: str, text_col: str, id_col: Optional[str], stream: IO[bytes]) -> Iterator[Item]:
    source = "stdin" if path == STDIN else path
    if fmt == "jsonl":
        if path == STDIN:
            yield from read_jsonl(iter(stream.readline, b""), source, text_col, id_col or ID_COL)
        else:
            with open(path, "rb") as fh:
                yield from read_jsonl(fh, source, text_col, id_col or ID_COL)
    elif fmt == "csv":
        data = stream.read() if path == STDIN else Path(path).read_bytes()
        yield from read_csv(data, source, text_col, id_col or ID_COL, id_required=id_col is not None)
    elif path == STDIN:
        yield read_text_file(stream.read(), "stdin")
    elif Path(path).is_dir():
        root = Path(path)
        for file in _folder_files(root):
            try:
                data = file.read_bytes()
            except OSError as err:
                yield InputProblem(str(file), 0, f"cannot be read ({err.strerror}): check its permissions")
                continue
            yield read_text_file(data, file.relative_to(root).as_posix())
    else:
        yield read_text_file(Path(path).read_bytes(), Path(path).name)


# ----------------------------------------------------------------------------- sending


@dataclass
class ProduceSummary:
    """What :func:`produce_documents` did."""

    topic: str
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    bytes: int = 0


def produce_documents(
    producer: Any,
    topic: str,
    items: Iterator[Item],
    report: Callable[[str], None],
    progress: Optional[Any] = None,
    max_problems_shown: int = 20,
) -> ProduceSummary:
    """Send every :class:`Document` of ``items`` to ``topic``; report each :class:`InputProblem` and failed send.

    Args:
        producer: A kafka-python ``KafkaProducer`` of raw bytes.
        topic: The stream's input topic.
        items: From :func:`read_documents`.
        report: Called with one line per problem (the first ``max_problems_shown``, then a count).
        progress: A tqdm-like object with ``update(n)``, or ``None``.
        max_problems_shown: How many problem lines to show before only counting.

    Returns:
        The counts; ``failed`` are documents the broker did not acknowledge.
    """
    from kafka.errors import KafkaError

    summary = ProduceSummary(topic)
    shown = 0

    def problem(text: str) -> None:
        nonlocal shown
        shown += 1
        if shown <= max_problems_shown:
            report(text)
        elif shown == max_problems_shown + 1:
            report(f"... more problems are not shown (the first {max_problems_shown} are above)")

    def on_error(doc: Document) -> Callable[[Exception], None]:
        def errback(err: Exception) -> None:
            summary.failed += 1
            summary.sent -= 1
            problem(f"{doc.source}{':' + str(doc.line) if doc.line else ''}: id {doc.key!r} was not delivered: {error_text(err)}")

        return errback

    for item in items:
        if isinstance(item, InputProblem):
            summary.skipped += 1
            problem(f"{item}; skipped")
            continue
        value = encode_value(item.value)
        try:
            future = producer.send(topic, key=encode_key(item.key), value=value)
        except KafkaError as err:  # e.g. MessageSizeTooLargeError, raised before sending
            summary.skipped += 1
            problem(
                f"{item.source}{':' + str(item.line) if item.line else ''}: id {item.key!r} ({len(value)} bytes) "
                f"was not sent: {error_text(err)}; skipped"
            )
            continue
        summary.sent += 1
        summary.bytes += len(value)
        future.add_errback(on_error(item))
        if progress is not None:
            progress.update(1)
    producer.flush()
    return summary
