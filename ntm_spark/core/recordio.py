"""SageMaker's RecordIO-protobuf: MXNet RecordIO framing around the ``aialgs.data.Record`` message.

The one codec of the project for SageMaker's binary format: ``ntm serve`` reads request bodies
and writes responses with it, ``ntm import-recordio`` reads training channels with it and
``ntm export-recordio`` writes them. Pure Python and numpy (the wire format is written by hand,
~ what ``protoc`` would generate for the five messages below), so it needs neither the
``protobuf`` package nor the SageMaker SDK, and it reads arrays with ``np.frombuffer``.

**Framing** (MXNet/dmlc ``RecordIOWriter``): each record is ``uint32 magic 0xCED7230A``,
``uint32 lrec`` (little-endian; the low 29 bits are the length, the top 3 a continuation flag),
the payload, then zero padding to a multiple of 4 bytes. Flags 1/2/3 mark the parts of a
payload that MXNet split where the magic number appeared inside it; the parts are joined with
the magic in between, as dmlc's reader does. The writer here, like the SageMaker SDK's, always
writes flag 0 (one part), which every reader accepts.

**Message** (``record.proto`` of SageMaker's built-in algorithms)::

    message Float32Tensor { repeated float  values = 1 [packed]; repeated uint64 keys = 2 [packed]; repeated uint64 shape = 3 [packed]; }
    message Float64Tensor { repeated double values = 1 [packed]; ... keys = 2; shape = 3; }
    message Int32Tensor   { repeated int32  values = 1 [packed]; ... keys = 2; shape = 3; }
    message Bytes  { repeated bytes value = 1; optional string content_type = 2; }
    message Value  { oneof value { Float32Tensor float32_tensor = 2; Float64Tensor float64_tensor = 3;
                                   Int32Tensor int32_tensor = 7; Bytes bytes = 9; } }
    message Record { map<string, Value> features = 1; map<string, Value> label = 2;
                     optional string uid = 3; optional string metadata = 4; optional string configuration = 5; }

A tensor with ``keys`` is sparse (``values[i]`` sits at position ``keys[i]`` of a vector of
``shape[0]``); without keys it is dense. The SageMaker SDK's ``write_spmatrix_to_sparse_tensor``
and ``write_numpy_to_dense_tensor`` put a document under ``features["values"]``; SageMaker's NTM
answers with the topic mixture under ``label["topic_weights"]``.

Bytes from users are decoded defensively: anything that is not this format raises
:class:`RecordIOError` (a ``ValueError``) naming the offset and the problem, never another error.

Dataset folders: :func:`import_recordio_channels` turns SageMaker training channels
(``train/``, ``validation/``, ``test/`` of RecordIO files, plus a ``vocab.txt``) into the
project's bag-of-words Parquet, ``vocab.txt`` and ``manifest.json``
(:mod:`ntm_spark.core.schema`); :func:`export_recordio_channels` does the reverse.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator, Optional, Union

import numpy as np

from ntm_spark.core.contract import ContractError, split_files
from ntm_spark.core.schema import (
    ID_COL,
    INDICES_COL,
    LABEL_COL,
    MANIFEST_FILE,
    N_WORDS_COL,
    SPLITS,
    VALUES_COL,
    VOCAB_FILE,
    bow_arrow_schema,
)
from ntm_spark.core.vocab import Vocabulary

PathLike = Union[str, "os.PathLike[str]"]

#: The MXNet RecordIO magic number (little-endian uint32 at the start of every record part).
RECORDIO_MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", RECORDIO_MAGIC)
#: The longest part one RecordIO header can describe (29 bits).
MAX_RECORD_BYTES = (1 << 29) - 1
#: The feature key the SageMaker SDK's writers use for a document.
FEATURES_KEY = "values"
#: The label key SageMaker's NTM answers with.
TOPIC_WEIGHTS_KEY = "topic_weights"
#: The media type of a RecordIO-protobuf body.
RECORDIO_CONTENT_TYPE = "application/x-recordio-protobuf"
#: The source format named in an imported dataset's manifest.
RECORDIO_FORMAT = "recordio-protobuf"

# Value's oneof field numbers -> tensor dtype.
_TENSOR_FIELDS = {2: np.dtype("<f4"), 3: np.dtype("<f8"), 7: np.dtype("<i4")}
_FIELD_OF_DTYPE = {np.dtype("<f4"): 2, np.dtype("<f8"): 3, np.dtype("<i4"): 7}
_BYTES_FIELD = 9
_WT_VARINT, _WT_64, _WT_LEN, _WT_32 = 0, 1, 2, 5


class RecordIOError(ValueError):
    """Bytes that are not RecordIO-protobuf, or a record that cannot be used; the message says where and why."""


@dataclass
class Tensor:
    """One SageMaker tensor: dense ``values``, or sparse ``values`` at ``keys`` of a vector of ``shape``.

    Attributes:
        values: float32, float64 or int32 values (the message type follows the dtype).
        keys: Positions of the values (uint64); empty for a dense tensor.
        shape: The tensor's shape; ``()`` when the message had none.
    """

    values: np.ndarray
    keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))
    shape: tuple = ()

    @property
    def is_sparse(self) -> bool:
        """Whether the values sit at ``keys`` (or the tensor is an all-zero sparse vector: no keys, no values, a shape)."""
        return len(self.keys) > 0 or (len(self.shape) > 0 and len(self.values) != int(np.prod(self.shape)))


@dataclass
class BytesValue:
    """A ``Bytes`` value: raw byte strings and their media type."""

    value: list
    content_type: Optional[str] = None


@dataclass
class Record:
    """One ``aialgs.data.Record``: named feature and label values (:class:`Tensor` or :class:`BytesValue`)."""

    features: dict = field(default_factory=dict)
    label: dict = field(default_factory=dict)
    uid: Optional[str] = None
    metadata: Optional[str] = None
    configuration: Optional[str] = None


# --------------------------------------------------------------------------- framing


def frame_record(payload: bytes) -> bytes:
    """Return one RecordIO record (header, payload, padding) around ``payload``.

    Raises:
        RecordIOError: for a payload longer than :data:`MAX_RECORD_BYTES`.
    """
    length = len(payload)
    if length > MAX_RECORD_BYTES:
        raise RecordIOError(f"a record of {length} bytes is longer than RecordIO's limit of {MAX_RECORD_BYTES}: split the document.")
    return b"".join((_MAGIC_BYTES, struct.pack("<I", length), payload, b"\0" * (-length % 4)))


def frame_records(payloads: Iterable[bytes]) -> bytes:
    """Return the RecordIO stream of several payloads (what a request body or a channel file holds)."""
    return b"".join(frame_record(p) for p in payloads)


def iter_recordio(stream: BinaryIO, name: str = "the body") -> Iterator[bytes]:
    """Yield the payloads of a RecordIO stream, joining the parts of split records.

    Args:
        stream: A binary file object positioned at the first record.
        name: What the stream is, for error messages (a file name).

    Raises:
        RecordIOError: for a bad magic number, a truncated record or a broken part sequence.
    """
    offset = 0
    parts: list[bytes] = []
    while True:
        header = stream.read(8)
        if not header:
            if parts:
                raise RecordIOError(f"{name} ends inside a multi-part record at byte {offset}: the stream is truncated.")
            return
        if len(header) < 8:
            raise RecordIOError(f"{name} ends with {len(header)} stray bytes at byte {offset}: a RecordIO header is 8 bytes.")
        magic, lrec = struct.unpack("<II", header)
        if magic != RECORDIO_MAGIC:
            raise RecordIOError(
                f"{name} has {magic:#010x} at byte {offset} where a RecordIO record starts with the magic number "
                f"{RECORDIO_MAGIC:#010x}: send application/x-recordio-protobuf written by a RecordIO writer "
                "(e.g. the SageMaker SDK's write_spmatrix_to_sparse_tensor)."
            )
        flag, length = lrec >> 29, lrec & MAX_RECORD_BYTES
        padded = length + (-length % 4)
        data = stream.read(padded)
        if len(data) < padded:
            raise RecordIOError(f"{name}: the record at byte {offset} announces {length} bytes but only {len(data)} follow.")
        offset += 8 + padded
        payload = data[:length]
        if flag == 0:
            if parts:
                raise RecordIOError(f"{name}: a whole record at byte {offset - 8 - padded} interrupts a multi-part record.")
            yield payload
        elif flag == 1:
            if parts:
                raise RecordIOError(f"{name}: a multi-part record starts at byte {offset - 8 - padded} before the previous one ended.")
            parts = [payload]
        elif flag in (2, 3):
            if not parts:
                raise RecordIOError(f"{name}: a continuation part at byte {offset - 8 - padded} has no first part.")
            parts.append(payload)
            if flag == 3:
                yield _MAGIC_BYTES.join(parts)
                parts = []
        else:
            raise RecordIOError(f"{name}: the record at byte {offset - 8 - padded} has continuation flag {flag} (0-3 are defined).")


def split_records(data: bytes) -> list[bytes]:
    """Return the payloads of a RecordIO byte string (see :func:`iter_recordio`)."""
    return list(iter_recordio(io.BytesIO(data)))


# --------------------------------------------------------------------------- protobuf wire format


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _tag(field_number: int, wire_type: int) -> bytes:
    return _varint((field_number << 3) | wire_type)


def _length_delimited(field_number: int, payload: bytes) -> bytes:
    return _tag(field_number, _WT_LEN) + _varint(len(payload)) + payload


def encode_varints(values: np.ndarray) -> bytes:
    """Return the concatenated base-128 varints of unsigned 64-bit ``values`` (vectorized)."""
    v = np.ascontiguousarray(values, dtype=np.uint64)
    if v.size == 0:
        return b""
    nbytes = np.ones(v.shape, dtype=np.int64)
    for k in range(1, 10):
        nbytes += v >= np.uint64(1 << (7 * k))
    out = np.zeros(int(nbytes.sum()), dtype=np.uint8)
    starts = np.cumsum(nbytes) - nbytes
    for k in range(int(nbytes.max())):
        has = nbytes > k
        byte = (v[has] >> np.uint64(7 * k)) & np.uint64(0x7F)
        more = (nbytes[has] > k + 1).astype(np.uint64) << np.uint64(7)
        out[starts[has] + k] = (byte | more).astype(np.uint8)
    return out.tobytes()


def decode_varints(buf: bytes, what: str = "a packed field") -> np.ndarray:
    """Return the unsigned 64-bit values of concatenated varints (vectorized).

    Raises:
        RecordIOError: for a truncated varint or one longer than 10 bytes.
    """
    if len(buf) <= 16:  # a shape, or a few keys: a Python loop beats numpy's per-call cost
        out, pos = [], 0
        while pos < len(buf):
            value, pos = _read_varint(buf, pos, len(buf), what)
            out.append(value)
        return np.array(out, dtype=np.uint64)
    b = np.frombuffer(buf, dtype=np.uint8)
    if b[-1] & 0x80:
        raise RecordIOError(f"{what} ends inside a varint: the record is truncated or not protobuf.")
    if b.max() < 0x80:  # every value below 128: one byte each
        return b.astype(np.uint64)
    ends = np.flatnonzero(b < 0x80)
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    if lengths.max() > 10:
        raise RecordIOError(f"{what} holds a varint of {int(lengths.max())} bytes (at most 10): the record is not protobuf.")
    pos = np.arange(b.size) - np.repeat(starts, lengths)
    contrib = (b & 0x7F).astype(np.uint64) << (7 * pos).astype(np.uint64)
    return np.add.reduceat(contrib, starts)


def _read_varint(buf: bytes, pos: int, end: int, what: str) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        if pos >= end:
            raise RecordIOError(f"{what} ends inside a varint at byte {pos}: the record is truncated or not protobuf.")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result & ((1 << 64) - 1), pos
        shift += 7
        if shift >= 70:
            raise RecordIOError(f"{what} holds a varint longer than 10 bytes at byte {pos}: the record is not protobuf.")


def _fields(buf: bytes, start: int, end: int, what: str) -> Iterator[tuple[int, int, Any]]:
    """Yield ``(field_number, wire_type, value)``: an int for varint/fixed fields, ``(start, end)`` for length-delimited ones."""
    pos = start
    while pos < end:
        key, pos = _read_varint(buf, pos, end, what)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise RecordIOError(f"{what} has field number 0 at byte {pos}: the record is not protobuf.")
        if wire_type == _WT_VARINT:
            value, pos = _read_varint(buf, pos, end, what)
        elif wire_type == _WT_64:
            if pos + 8 > end:
                raise RecordIOError(f"{what} ends inside a 64-bit field at byte {pos}: the record is truncated.")
            value, pos = (pos, pos + 8), pos + 8
        elif wire_type == _WT_32:
            if pos + 4 > end:
                raise RecordIOError(f"{what} ends inside a 32-bit field at byte {pos}: the record is truncated.")
            value, pos = (pos, pos + 4), pos + 4
        elif wire_type == _WT_LEN:
            length, pos = _read_varint(buf, pos, end, what)
            if pos + length > end:
                raise RecordIOError(f"{what}: field {number} announces {length} bytes at byte {pos} but only {end - pos} follow.")
            value, pos = (pos, pos + length), pos + length
        else:
            raise RecordIOError(f"{what} has wire type {wire_type} (field {number}) at byte {pos}: the record is not this protobuf.")
        yield number, wire_type, value


class _Pending:
    """Float tensors whose values and keys are still bytes: decoded for all records at once (numpy's cost per call, not per record)."""

    def __init__(self) -> None:
        self.items: list[tuple[Tensor, np.dtype, bytes, bytes]] = []

    def add(self, tensor: Tensor, dtype: np.dtype, values: bytes, keys: bytes) -> None:
        self.items.append((tensor, dtype, values, keys))

    def finish(self, what: str) -> None:
        """Fill every pending tensor's ``values`` and ``keys``."""
        if not self.items:
            return
        for dtype in {d for _, d, _, _ in self.items}:
            items = [(t, v) for t, d, v, _ in self.items if d == dtype]
            flat = np.frombuffer(b"".join(v for _, v in items), dtype=dtype)
            sizes = np.cumsum([len(v) // dtype.itemsize for _, v in items])[:-1]
            for (tensor, _), part in zip(items, np.split(flat, sizes)):
                tensor.values = part
        chunks = [k for _, _, _, k in self.items]
        joined = b"".join(chunks)
        if joined:
            keys = decode_varints(joined, what)
            ends = np.frombuffer(joined, dtype=np.uint8) < 0x80
            bounds = np.cumsum([0] + [len(c) for c in chunks])
            counts = np.concatenate(([0], np.cumsum(ends)))[bounds]
            for (tensor, _, _, _), lo, hi in zip(self.items, counts[:-1], counts[1:]):
                tensor.keys = keys[lo:hi]
        self.items = []


def _decode_tensor(buf: bytes, start: int, end: int, dtype: np.dtype, what: str, pending: Optional[_Pending] = None) -> Tensor:
    values: list = []
    keys: list = []
    shape: list[int] = []
    for number, wire_type, value in _fields(buf, start, end, what):
        if number == 1:
            if wire_type == _WT_LEN:
                chunk = buf[value[0] : value[1]]
                if dtype.kind == "f":
                    if len(chunk) % dtype.itemsize:
                        raise RecordIOError(f"{what}: packed values of {len(chunk)} bytes are not whole {dtype.itemsize}-byte floats.")
                    values.append(chunk)
                else:  # int32: sign-extended varints
                    values.append(decode_varints(chunk, what).view(np.int64).astype(np.int32))
            elif dtype.kind == "f" and wire_type == (_WT_32 if dtype.itemsize == 4 else _WT_64):
                values.append(buf[value[0] : value[1]])
            elif dtype.kind == "i" and wire_type == _WT_VARINT:
                values.append(np.array([value], dtype=np.uint64).view(np.int64).astype(np.int32))
            else:
                raise RecordIOError(f"{what}: 'values' has wire type {wire_type}, which a {dtype} tensor never uses.")
        elif number in (2, 3):
            if wire_type == _WT_LEN:
                chunk = buf[value[0] : value[1]]
                if chunk and chunk[-1] & 0x80:
                    raise RecordIOError(f"{what} ends inside a varint: the record is truncated or not protobuf.")
            elif wire_type == _WT_VARINT:
                chunk = _varint(value)
            else:
                raise RecordIOError(f"{what}: {'keys' if number == 2 else 'shape'} has wire type {wire_type}; uint64 fields are varints.")
            if number == 2:
                keys.append(chunk)
            else:
                shape.extend(int(x) for x in decode_varints(chunk, what).tolist())
    tensor = Tensor(values=np.zeros(0, dtype), shape=tuple(shape))
    if dtype.kind == "f":
        if pending is not None:
            pending.add(tensor, dtype, b"".join(values), b"".join(keys))
            return tensor
        tensor.values = np.frombuffer(b"".join(values), dtype=dtype)
    else:
        tensor.values = _joined(values, dtype)
    if keys:
        tensor.keys = decode_varints(b"".join(keys), what)
    return tensor


def _joined(chunks: list, dtype: np.dtype) -> np.ndarray:
    if len(chunks) == 1:
        return chunks[0]
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype)


def _decode_value(buf: bytes, start: int, end: int, what: str, pending: Optional[_Pending] = None) -> Any:
    decoded = None
    for number, wire_type, value in _fields(buf, start, end, what):
        if number in _TENSOR_FIELDS or number == _BYTES_FIELD:
            if wire_type != _WT_LEN:
                raise RecordIOError(f"{what}: field {number} of Value has wire type {wire_type}; a message is length-delimited.")
            if number == _BYTES_FIELD:
                decoded = _decode_bytes_value(buf, *value, what)
            else:
                decoded = _decode_tensor(buf, *value, _TENSOR_FIELDS[number], what, pending)
    return decoded


def _decode_bytes_value(buf: bytes, start: int, end: int, what: str) -> BytesValue:
    out = BytesValue(value=[])
    for number, wire_type, value in _fields(buf, start, end, what):
        if number in (1, 2) and wire_type != _WT_LEN:
            raise RecordIOError(f"{what}: field {number} of Bytes has wire type {wire_type}; it is length-delimited.")
        if number == 1:
            out.value.append(bytes(buf[value[0] : value[1]]))
        elif number == 2:
            out.content_type = _utf8(buf[value[0] : value[1]], what)
    return out


def _utf8(raw: bytes, what: str) -> str:
    try:
        return bytes(raw).decode("utf-8")
    except UnicodeDecodeError as err:
        raise RecordIOError(f"{what}: a string field is not UTF-8 ({err}).") from None


def _decode_map_entry(buf: bytes, start: int, end: int, what: str, pending: Optional[_Pending] = None) -> tuple[str, Any]:
    key, decoded = "", None
    for number, wire_type, value in _fields(buf, start, end, what):
        if number in (1, 2) and wire_type != _WT_LEN:
            raise RecordIOError(f"{what}: field {number} of a map entry has wire type {wire_type}; it is length-delimited.")
        if number == 1:
            key = _utf8(buf[value[0] : value[1]], what)
        elif number == 2:
            decoded = _decode_value(buf, *value, what, pending)
    return key, decoded


def decode_record(payload: bytes, what: str = "the record") -> Record:
    """Parse one ``Record`` message.

    Raises:
        RecordIOError: when the bytes are not a ``Record``.
    """
    pending = _Pending()
    record = _decode_record(payload, what, pending)
    pending.finish(what)
    return record


def _fast_record(payload: bytes, what: str, pending: _Pending) -> Optional[Record]:
    """The SDK's layout only (``features`` entries of packed float32 tensors, nothing else), without generators.

    Returns ``None`` at the first byte outside that layout; the general parser then reads the record.
    """
    end, pos, features = len(payload), 0, {}
    while pos < end:
        if payload[pos] != 0x0A:  # Record.features entry
            return None
        entry_len, pos = _read_varint(payload, pos + 1, end, what)
        entry_end = pos + entry_len
        if entry_end > end or pos >= entry_end or payload[pos] != 0x0A:  # MapEntry.key
            return None
        key_len, pos = _read_varint(payload, pos + 1, entry_end, what)
        key_end = pos + key_len
        if key_end >= entry_end or payload[key_end] != 0x12:  # MapEntry.value
            return None
        try:
            key = payload[pos:key_end].decode("utf-8")
        except UnicodeDecodeError:
            return None
        value_len, pos = _read_varint(payload, key_end + 1, entry_end, what)
        if pos + value_len != entry_end or pos >= entry_end or payload[pos] != 0x12:  # Value.float32_tensor
            return None
        tensor_len, pos = _read_varint(payload, pos + 1, entry_end, what)
        if pos + tensor_len != entry_end:
            return None
        parts: dict[int, bytes] = {}
        while pos < entry_end:
            tag = payload[pos]
            if tag not in (0x0A, 0x12, 0x1A) or tag in parts:  # packed values, keys, shape; each once
                return None
            length, pos = _read_varint(payload, pos + 1, entry_end, what)
            if pos + length > entry_end:
                return None
            parts[tag] = payload[pos : pos + length]
            pos += length
        values, keys, shape = parts.get(0x0A, b""), parts.get(0x12, b""), parts.get(0x1A, b"")
        if len(values) % 4 or (keys and keys[-1] & 0x80) or (shape and shape[-1] & 0x80):
            return None
        tensor = Tensor(values=np.zeros(0, np.float32), shape=tuple(int(x) for x in decode_varints(shape, what).tolist()) if shape else ())
        pending.add(tensor, np.dtype("<f4"), values, keys)
        features[key] = tensor
    return Record(features=features)


def _decode_record(payload: bytes, what: str, pending: _Pending) -> Record:
    mark = len(pending.items)
    fast = _fast_record(payload, what, pending)
    if fast is not None:
        return fast
    del pending.items[mark:]  # what the fast path queued before it gave up
    record = Record()
    for number, wire_type, value in _fields(payload, 0, len(payload), what):
        if number in (1, 2, 3, 4, 5) and wire_type != _WT_LEN:
            raise RecordIOError(f"{what}: field {number} of Record has wire type {wire_type}; it is length-delimited.")
        if number in (1, 2):
            key, decoded = _decode_map_entry(payload, *value, what, pending)
            (record.features if number == 1 else record.label)[key] = decoded
        elif number == 3:
            record.uid = _utf8(payload[value[0] : value[1]], what)
        elif number == 4:
            record.metadata = _utf8(payload[value[0] : value[1]], what)
        elif number == 5:
            record.configuration = _utf8(payload[value[0] : value[1]], what)
    return record


def decode_records(body: bytes, name: str = "the body") -> list[Record]:
    """Parse a RecordIO-protobuf byte string into its records.

    Raises:
        RecordIOError: naming the record that is not a ``Record``.
    """
    pending = _Pending()
    records = [_decode_record(p, f"record {i} of {name}", pending) for i, p in enumerate(iter_recordio(io.BytesIO(body), name))]
    pending.finish(name)
    return records


def _encode_tensor(tensor: Tensor) -> bytes:
    values = np.asarray(tensor.values)
    dtype = np.dtype(values.dtype).newbyteorder("<")
    if dtype not in _FIELD_OF_DTYPE:
        raise TypeError(f"tensor values of dtype {values.dtype!r} have no Record type: use float32, float64 or int32.")
    values = np.ascontiguousarray(values, dtype=dtype)
    parts = []
    if values.size:
        if dtype.kind == "f":
            packed = values.tobytes()
        else:
            packed = encode_varints(values.astype(np.int64).view(np.uint64))
        parts.append(_length_delimited(1, packed))
    if len(tensor.keys):
        parts.append(_length_delimited(2, encode_varints(np.asarray(tensor.keys, dtype=np.uint64))))
    if len(tensor.shape):
        parts.append(_length_delimited(3, encode_varints(np.asarray(tensor.shape, dtype=np.uint64))))
    return _length_delimited(_FIELD_OF_DTYPE[dtype], b"".join(parts))


def _encode_value(value: Any) -> bytes:
    if isinstance(value, Tensor):
        return _encode_tensor(value)
    if isinstance(value, BytesValue):
        body = b"".join(_length_delimited(1, bytes(v)) for v in value.value)
        if value.content_type is not None:
            body += _length_delimited(2, value.content_type.encode("utf-8"))
        return _length_delimited(_BYTES_FIELD, body)
    raise TypeError(f"a Record value must be a Tensor or BytesValue, got {type(value).__name__}.")


def encode_record(record: Record) -> bytes:
    """Serialize one ``Record`` (map entries in insertion order)."""
    parts = []
    for number, mapping in ((1, record.features), (2, record.label)):
        for key, value in mapping.items():
            entry = _length_delimited(1, key.encode("utf-8")) + _length_delimited(2, _encode_value(value))
            parts.append(_length_delimited(number, entry))
    for number, text in ((3, record.uid), (4, record.metadata), (5, record.configuration)):
        if text is not None:
            parts.append(_length_delimited(number, text.encode("utf-8")))
    return b"".join(parts)


def encode_records(records: Iterable[Record]) -> bytes:
    """Serialize records as one RecordIO-protobuf byte string."""
    return frame_records(encode_record(r) for r in records)


# --------------------------------------------------------------------------- documents


def feature_tensor(record: Record, key: Optional[str] = None) -> Optional[Tensor]:
    """Return a record's document tensor: ``features[key]``, else ``values`` (the SDK's), ``features``, or the only one.

    Returns ``None`` when the record has no such tensor (a missing key, a ``Bytes`` value, several
    unnamed features).
    """
    features = record.features
    if key is not None:
        value = features.get(key)
    elif FEATURES_KEY in features:
        value = features[FEATURES_KEY]
    elif "features" in features:
        value = features["features"]
    elif len(features) == 1:
        value = next(iter(features.values()))
    else:
        value = None
    return value if isinstance(value, Tensor) else None


def encode_weights(weights: np.ndarray, key: str = TOPIC_WEIGHTS_KEY) -> bytes:
    """Return SageMaker NTM's RecordIO answer: one record per row, the row under ``label[key]`` as float32."""
    weights = np.ascontiguousarray(weights, dtype="<f4")  # (N, K)
    head = _length_delimited(1, key.encode("utf-8"))
    out = []
    for row in weights:
        value = _length_delimited(2, _length_delimited(1, row.tobytes()))  # Value.float32_tensor.values
        out.append(frame_record(_length_delimited(2, head + _length_delimited(2, value))))
    return b"".join(out)


def encode_sparse_rows(
    indptr: np.ndarray, indices: np.ndarray, values: np.ndarray, n_cols: int,
    uids: Optional[list] = None, labels: Optional[list] = None,
) -> Iterator[bytes]:  # fmt: skip
    """Yield one framed record per CSR row, as the SDK's ``write_spmatrix_to_sparse_tensor`` writes it.

    Each row's counts are a float32 tensor under ``features["values"]`` with ``keys`` and
    ``shape [n_cols]``; ``uids`` become ``Record.uid`` and string ``labels`` a UTF-8
    ``label["values"]`` (the SDK writes numeric labels as a one-value tensor).
    """
    for i in range(len(indptr) - 1):
        lo, hi = int(indptr[i]), int(indptr[i + 1])
        record = Record(features={FEATURES_KEY: Tensor(np.asarray(values[lo:hi], np.float32), np.asarray(indices[lo:hi], np.uint64), (int(n_cols),))})
        if uids is not None:
            record.uid = str(uids[i])
        if labels is not None and labels[i] is not None:
            record.label[FEATURES_KEY] = BytesValue([str(labels[i]).encode("utf-8")], "text/plain")
        yield frame_record(encode_record(record))


def _label_text(value: Any) -> Optional[str]:
    if isinstance(value, BytesValue):
        return b"".join(value.value).decode("utf-8", errors="replace") if value.value else None
    if isinstance(value, Tensor) and value.values.size:
        x = float(value.values[0])
        return str(int(x)) if x.is_integer() else repr(x)
    return None


def record_counts(tensor: Tensor, feature_dim: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Return a document tensor as ascending ``(indices int32, counts float32)`` of its non-zero counts.

    Repeated keys add up, zeros are dropped (the bag-of-words schema holds non-zero counts only).

    Raises:
        RecordIOError: for a shape other than ``[feature_dim]``, keys outside it, keys and values
            of different lengths, or counts that are negative or not finite.
    """
    if tensor.shape and tensor.shape != (feature_dim,):
        raise RecordIOError(
            f"{what} has shape {list(tensor.shape)} but the vocabulary has {feature_dim} words: "
            "pass the vocab.txt the channels were written with."
        )
    values = tensor.values.astype(np.float64)
    if tensor.is_sparse:
        if len(tensor.keys) != len(values):
            raise RecordIOError(f"{what} has {len(tensor.keys)} keys but {len(values)} values: a sparse tensor has one value per key.")
        keys = tensor.keys
        if len(keys) and int(keys.max()) >= feature_dim:
            raise RecordIOError(f"{what} has key {int(keys.max())}, outside the vocabulary of {feature_dim} words.")
        keys = keys.astype(np.int64)
    else:
        if len(values) != feature_dim:
            raise RecordIOError(f"{what} is a dense tensor of {len(values)} values but the vocabulary has {feature_dim} words.")
        keys = np.arange(feature_dim, dtype=np.int64)
    if not np.isfinite(values).all() or (values < 0).any():
        raise RecordIOError(f"{what} holds counts that are negative or not finite: counts are >= 0.")
    if len(keys) and np.any(np.diff(keys) <= 0):  # unsorted or repeated keys: sum per key
        uniq, inverse = np.unique(keys, return_inverse=True)
        summed = np.zeros(len(uniq), np.float64)
        np.add.at(summed, inverse, values)
        keys, values = uniq, summed
    nz = values != 0
    return keys[nz].astype(np.int32), values[nz].astype(np.float32)


# --------------------------------------------------------------------------- dataset folders


def _channel_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith((".", "_")))


def _write_split(pa: Any, pq: Any, folder: Path, columns: dict, rows_per_file: int, row_group_size: int) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    schema = bow_arrow_schema()
    n = len(columns[ID_COL])
    files = 0
    for start in range(0, max(n, 1), rows_per_file):  # an empty split still gets its first file, holding the schema
        stop = min(start + rows_per_file, n)
        table = pa.table(
            {
                ID_COL: pa.array(columns[ID_COL][start:stop], pa.string()),
                LABEL_COL: pa.array(columns[LABEL_COL][start:stop], pa.string()),
                N_WORDS_COL: pa.array(columns[N_WORDS_COL][start:stop], pa.int32()),
                INDICES_COL: pa.array(columns[INDICES_COL][start:stop], pa.list_(pa.int32())),
                VALUES_COL: pa.array(columns[VALUES_COL][start:stop], pa.list_(pa.float32())),
            },
            schema=schema,
        )
        pq.write_table(table, folder / f"part-{files:05d}.parquet", row_group_size=row_group_size, compression="snappy")
        files += 1
    return files


def import_recordio_channels(
    channels_dir: PathLike,
    output_dir: PathLike,
    vocab_path: Optional[PathLike] = None,
    feature_key: Optional[str] = None,
    overwrite: bool = False,
    rows_per_file: int = 200_000,
    row_group_size: int = 1024,
    clean: bool = False,
    stop_words: Any = "english",
) -> dict[str, Any]:
    """Turn SageMaker RecordIO training channels into the project's dataset folder.

    Reads ``<channels_dir>/train/``, ``validation/`` and ``test/`` (every file in each, in name
    order; a missing channel is an empty split) and writes ``<output_dir>/<split>/part-*.parquet``
    (:func:`ntm_spark.core.schema.bow_arrow_schema`), ``vocab.txt`` and ``manifest.json``, first into
    a staging folder that replaces ``output_dir`` only when everything is written.

    Each record's document tensor (:func:`feature_tensor`) becomes one row: ``id`` is the record's
    ``uid``, else ``<split>/<file>/<n>``; ``label`` its ``label["values"]`` (text, or a number as
    text); ``indices``/``values`` its non-zero counts, ascending; ``n_words`` their rounded sum.
    Records with no count are dropped (an empty document), and counted in the manifest.

    Args:
        channels_dir: The folder holding the channel folders.
        output_dir: The dataset folder to write.
        vocab_path: The vocabulary (one word per line, index order); default
            ``<channels_dir>/auxiliary/vocab.txt`` (SageMaker NTM's auxiliary channel), else
            ``<channels_dir>/vocab.txt``.
        feature_key: The ``features`` key holding the document (default: see :func:`feature_tensor`).
        overwrite: Replace an existing ``output_dir``.
        rows_per_file: Most rows per Parquet file.
        row_group_size: Most rows per Parquet row group.
        clean: The text rules the vocabulary was built with, recorded for raw-text scoring
            (the channels hold counts, so they cannot say): strip 20 Newsgroups headers.
        stop_words: The stop-word rule, recorded likewise.

    Returns:
        The manifest written.

    Raises:
        ContractError: for a missing channel folder or vocabulary, an existing output without
            ``overwrite``, or no training document.
        RecordIOError: naming the file and record that cannot be read.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    channels, output = Path(channels_dir), Path(output_dir)
    if not channels.is_dir():
        raise ContractError(f"channels_dir={str(channels)!r} is not a folder: pass the folder holding train/ (and validation/, test/).")
    if vocab_path is None:
        candidates = [channels / "auxiliary" / VOCAB_FILE, channels / VOCAB_FILE]
        vocab_path = next((p for p in candidates if p.is_file()), None)
        if vocab_path is None:
            raise ContractError(
                f"no vocabulary in {str(channels)!r} (looked for auxiliary/{VOCAB_FILE} and {VOCAB_FILE}): pass --vocab FILE, "
                "the word list the channels were counted with, one word per line in index order."
            )
    vocab = Vocabulary.from_file(vocab_path)
    feature_dim = len(vocab)
    if int(rows_per_file) < 1 or int(row_group_size) < 1:
        raise ValueError(f"rows_per_file={rows_per_file!r}, row_group_size={row_group_size!r}: use positive numbers of rows.")
    if output.exists() and any(output.iterdir()) and not overwrite:
        raise ContractError(f"output_dir={str(output)!r} exists and is not empty: pass --overwrite to replace it.")
    if not _channel_files(channels / "train"):
        raise ContractError(f"no training channel: {str(channels / 'train')!r} holds no RecordIO file.")

    staging = output.with_name(f".{output.name}.staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    per_split: dict[str, int] = {}
    written: dict[str, dict] = {}
    files_read: dict[str, list] = {}
    read = dropped_empty = 0
    try:
        for split in SPLITS:
            columns: dict[str, list] = {ID_COL: [], LABEL_COL: [], N_WORDS_COL: [], INDICES_COL: [], VALUES_COL: []}
            files = _channel_files(channels / split)
            files_read[split] = [str(p.relative_to(channels)) for p in files]
            for path in files:
                name = str(path.relative_to(channels))
                with open(path, "rb") as fh:
                    for n, payload in enumerate(iter_recordio(fh, name)):
                        what = f"record {n} of {name}"
                        record = decode_record(payload, what)
                        tensor = feature_tensor(record, feature_key)
                        if tensor is None:
                            raise RecordIOError(
                                f"{what} has no document tensor (features: {sorted(record.features)}): pass --feature-key NAME."
                            )
                        read += 1
                        indices, values = record_counts(tensor, feature_dim, what)
                        if not len(indices):
                            dropped_empty += 1
                            continue
                        columns[ID_COL].append(record.uid if record.uid else f"{split}/{path.name}/{n}")
                        label = record.label.get(FEATURES_KEY, next(iter(record.label.values()), None))
                        columns[LABEL_COL].append(_label_text(label))
                        columns[N_WORDS_COL].append(int(round(float(values.sum(dtype=np.float64)))))
                        columns[INDICES_COL].append(indices)
                        columns[VALUES_COL].append(values)
            n_files = _write_split(pa, pq, staging / split, columns, int(rows_per_file), int(row_group_size))
            per_split[split] = len(columns[ID_COL])
            written[split] = {"path": split, "documents": per_split[split], "files": n_files}
        if per_split["train"] == 0:
            raise ContractError(f"no training document: every record of {str(channels / 'train')!r} is empty.")
        vocab.save(staging / VOCAB_FILE)
        import ntm_spark

        manifest: dict[str, Any] = {
            "format_version": 1,
            "started_at": started,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "code_version": {"ntm_spark": getattr(ntm_spark, "__version__", "unknown")},
            "source": {
                "path": str(channels),
                "format": RECORDIO_FORMAT,
                "vocabulary": str(vocab_path),
                "feature_key": feature_key,
                "files": files_read,
            },
            "params": {
                "input_format": RECORDIO_FORMAT,
                "clean": bool(clean),
                "stop_words": stop_words,
                "rows_per_file": int(rows_per_file),
                "row_group_size": int(row_group_size),
            },
            "text_rules": {
                "clean": bool(clean),
                "stop_words": stop_words,
                "module": "ntm_spark.core.text",
                "declared_by": "ntm import-recordio flags: the channels hold counts, not the text rules that made them",
            },
            "vocabulary": {"file": VOCAB_FILE, "size": feature_dim, "sha256": vocab.sha256},
            "documents": {
                "read": read,
                "kept": sum(per_split.values()),
                "per_split": per_split,
                "dropped": {"empty": dropped_empty},
            },
            "splits": written,
            "schema": [{"name": f.name, "type": str(f.type)} for f in bow_arrow_schema()],
            "row_group_size": int(row_group_size),
            "warnings": [f"split {s!r} is empty" for s in SPLITS if per_split[s] == 0],
        }
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        if output.exists():
            shutil.rmtree(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def export_recordio_channels(
    data_dir: PathLike, output_dir: PathLike, records_per_file: int = 100_000, overwrite: bool = False
) -> dict[str, int]:
    """Write a dataset folder as SageMaker NTM training channels (the reverse of :func:`import_recordio_channels`).

    Writes ``<output_dir>/<split>/part-<n>.pbr`` (sparse float32 tensors under ``features["values"]``
    with ``keys`` and ``shape [V]``, the id as ``uid``, the label as UTF-8 ``label["values"]``) and
    ``<output_dir>/auxiliary/vocab.txt``, so a SageMaker NTM estimator can train on the same data.

    Returns:
        ``{split: documents written}``.

    Raises:
        ContractError: for a folder without a vocabulary or Parquet, or an existing output without ``overwrite``.
    """
    import pyarrow.parquet as pq

    from ntm_spark.core.contract import read_vocabulary

    data, output = Path(data_dir), Path(output_dir)
    vocab = read_vocabulary(data)
    if output.exists() and any(output.iterdir()) and not overwrite:
        raise ContractError(f"output_dir={str(output)!r} exists and is not empty: pass --overwrite to replace it.")
    if int(records_per_file) < 1:
        raise ValueError(f"records_per_file={records_per_file!r}: use a positive number of records.")
    split_files(data, "train", required=True)
    if output.exists():
        shutil.rmtree(output)
    counts: dict[str, int] = {}
    for split in SPLITS:
        folder = output / split
        folder.mkdir(parents=True, exist_ok=True)
        part, in_part, total = 0, 0, 0
        fh = None
        try:
            for path in split_files(data, split):
                for batch in pq.ParquetFile(path).iter_batches(columns=[ID_COL, LABEL_COL, INDICES_COL, VALUES_COL]):
                    ids = batch.column(ID_COL).to_pylist()
                    labels = batch.column(LABEL_COL).to_pylist()
                    idx_offsets = np.asarray(batch.column(INDICES_COL).offsets, dtype=np.int64)
                    val_offsets = np.asarray(batch.column(VALUES_COL).offsets, dtype=np.int64)
                    if not np.array_equal(np.diff(idx_offsets), np.diff(val_offsets)):
                        raise ContractError(f"{str(path)!r} has rows whose indices and values differ in length: rewrite it with `ntm preprocess`.")
                    flat_idx = np.asarray(batch.column(INDICES_COL).values)[idx_offsets[0] : idx_offsets[-1]]
                    flat_val = np.asarray(batch.column(VALUES_COL).values)[val_offsets[0] : val_offsets[-1]]
                    indptr = idx_offsets - idx_offsets[0]
                    for framed in encode_sparse_rows(indptr, flat_idx, flat_val, len(vocab), ids, labels):
                        if fh is None or in_part >= records_per_file:
                            if fh is not None:
                                fh.close()
                            fh = open(folder / f"part-{part:05d}.pbr", "wb")
                            part, in_part = part + 1, 0
                        fh.write(framed)
                        in_part += 1
                        total += 1
        finally:
            if fh is not None:
                fh.close()
        counts[split] = total
    vocab.save(output / "auxiliary" / VOCAB_FILE)
    return counts
