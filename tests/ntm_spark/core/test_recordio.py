"""The RecordIO-protobuf codec on its own: framing, the Record message, and bytes from users (Hypothesis)."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ntm_spark.core import recordio
from ntm_spark.core.recordio import BytesValue, Record, RecordIOError, Tensor

MAGIC = struct.pack("<I", recordio.RECORDIO_MAGIC)


def test_framing_pads_to_four_bytes_and_round_trips():
    payloads = [b"", b"a", b"ab", b"abc", b"abcd", b"x" * 1001]
    body = recordio.frame_records(payloads)
    assert len(body) % 4 == 0
    assert recordio.frame_record(b"abc") == MAGIC + struct.pack("<I", 3) + b"abc\0"
    assert recordio.split_records(body) == payloads


def test_mxnet_multipart_records_are_joined_with_the_magic():
    """dmlc's writer splits a payload where the magic appears at an aligned offset (flags 1, 2, 3)."""
    payload = b"head" + MAGIC + b"midl" + MAGIC + b"tail!"
    parts = [(1, b"head"), (2, b"midl"), (3, b"tail!")]
    body = b"".join(MAGIC + struct.pack("<I", (flag << 29) | len(p)) + p + b"\0" * (-len(p) % 4) for flag, p in parts)
    assert recordio.split_records(body + recordio.frame_record(b"next")) == [payload, b"next"]


@pytest.mark.parametrize(
    "body, problem",
    [
        (b"\x00\x01\x02", "stray bytes"),
        (b"\x01\x02\x03\x04\x00\x00\x00\x00", "magic number"),
        (MAGIC + struct.pack("<I", 10) + b"abc", "only"),
        (MAGIC + struct.pack("<I", (1 << 29) | 4) + b"abcd", "truncated"),
        (MAGIC + struct.pack("<I", (2 << 29) | 4) + b"abcd", "no first part"),
        (MAGIC + struct.pack("<I", (5 << 29) | 0), "continuation flag 5"),
    ],
)
def test_bad_framing_is_a_recordio_error(body, problem):
    with pytest.raises(RecordIOError, match=problem):
        recordio.split_records(body)


def test_varints_round_trip_at_every_width():
    values = np.array([0, 1, 127, 128, 16383, 16384, 2**32, 2**56, 2**63, 2**64 - 1], dtype=np.uint64)
    encoded = recordio.encode_varints(values)
    np.testing.assert_array_equal(recordio.decode_varints(encoded), values)
    assert encoded[:4] == b"\x00\x01\x7f\x80"
    long = b"\x01" * 20  # past the short-buffer loop: the vectorized path
    for prefix in (b"", long):
        with pytest.raises(RecordIOError, match="ends inside a varint"):
            recordio.decode_varints(prefix + b"\x80")
        with pytest.raises(RecordIOError, match="at most 10|longer than 10 bytes"):
            recordio.decode_varints(prefix + b"\xff" * 10 + b"\x01")
    np.testing.assert_array_equal(recordio.decode_varints(recordio.encode_varints(np.repeat(values, 5))), np.repeat(values, 5))
    np.testing.assert_array_equal(recordio.decode_varints(bytes(range(100))), np.arange(100, dtype=np.uint64))


def test_records_round_trip_every_value_type():
    record = Record(
        features={
            "values": Tensor(np.array([1.5, 2.0], np.float32), np.array([3, 2**40], np.uint64), (2**41,)),
            "dense64": Tensor(np.array([0.25, -1.0], np.float64)),
            "ints": Tensor(np.array([-5, 0, 2**31 - 1], np.int32), shape=(3,)),
            "raw": BytesValue([b"\x00\xff", b""], "application/octet-stream"),
        },
        label={"topic_weights": Tensor(np.array([0.5, 0.5], np.float32))},
        uid="doc-1",
        metadata="m",
        configuration="{}",
    )
    back = recordio.decode_record(recordio.encode_record(record))
    assert back.uid == "doc-1" and back.metadata == "m" and back.configuration == "{}"
    assert list(back.features) == ["values", "dense64", "ints", "raw"]
    for key in ("values", "dense64", "ints"):
        np.testing.assert_array_equal(back.features[key].values, record.features[key].values)
        assert back.features[key].values.dtype == record.features[key].values.dtype
        np.testing.assert_array_equal(back.features[key].keys, record.features[key].keys)
        assert back.features[key].shape == record.features[key].shape
    assert back.features["raw"] == record.features["raw"]
    assert back.features["values"].is_sparse and not back.features["dense64"].is_sparse
    np.testing.assert_array_equal(back.label["topic_weights"].values, [0.5, 0.5])


def test_unpacked_repeated_fields_and_unknown_fields_are_read():
    """Protobuf writers may send repeated scalars unpacked, and fields this schema does not know."""
    value_f32 = b"\x0d" + struct.pack("<f", 2.5) + b"\x0d" + struct.pack("<f", 1.0)  # values, wire type 5, twice
    keys = b"\x10\x07\x10\x09"  # keys 7 and 9, unpacked varints
    unknown = b"\x60\x01" + b"\x6a\x02hi"  # field 12 (varint) and 13 (bytes)
    tensor = value_f32 + keys + b"\x1a\x01\x0a" + unknown  # shape [10]
    value = b"\x12" + bytes([len(tensor)]) + tensor
    entry = b"\x0a\x06values" + b"\x12" + bytes([len(value)]) + value
    record = recordio.decode_record(b"\x0a" + bytes([len(entry)]) + entry + b"\x78\x05")  # + unknown field 15
    t = record.features["values"]
    np.testing.assert_array_equal(t.values, [2.5, 1.0])
    np.testing.assert_array_equal(t.keys, [7, 9])
    assert t.shape == (10,)


def test_record_counts_sorts_sums_and_drops_zeros():
    tensor = Tensor(np.array([1, 2, 0, 4], np.float32), np.array([9, 3, 5, 3], np.uint64), (10,))
    indices, counts = recordio.record_counts(tensor, 10, "r")
    assert indices.tolist() == [3, 9] and counts.tolist() == [6.0, 1.0]
    dense = Tensor(np.array([0, 2, 0, 1], np.float32))
    assert recordio.record_counts(dense, 4, "r")[0].tolist() == [1, 3]
    for bad, fix in [
        (Tensor(np.ones(2, np.float32), np.array([1, 2], np.uint64), (11,)), "shape"),
        (Tensor(np.ones(2, np.float32), np.array([1, 20], np.uint64), (10,)), "outside"),
        (Tensor(np.ones(2, np.float32), np.array([1], np.uint64), (10,)), "one value per key"),
        (Tensor(np.array([-1.0], np.float32), np.array([1], np.uint64), (10,)), "negative"),
        (Tensor(np.ones(3, np.float32)), "dense tensor of 3"),
    ]:
        with pytest.raises(RecordIOError, match=fix):
            recordio.record_counts(bad, 10, "r")


def test_weights_answer_is_one_record_per_row_under_topic_weights():
    weights = np.array([[0.25, 0.75], [1.0, 0.0]], np.float32)
    records = recordio.decode_records(recordio.encode_weights(weights))
    assert [list(r.label) for r in records] == [["topic_weights"]] * 2
    np.testing.assert_array_equal(np.stack([r.label["topic_weights"].values for r in records]), weights)


# --------------------------------------------------------------------------- bytes from users

_SETTINGS = settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def _valid_body(draw) -> bytes:
    rows = draw(st.lists(st.lists(st.integers(0, 30), max_size=6, unique=True), min_size=1, max_size=4))
    return b"".join(
        recordio.encode_sparse_rows(
            np.cumsum([0] + [len(r) for r in rows]), np.array(sum(rows, []), np.int64), np.ones(sum(map(len, rows)), np.float32), 31
        )
    )


@st.composite
def user_bodies(draw) -> bytes:
    """Arbitrary bytes, framed arbitrary bytes, and valid bodies with bytes flipped, cut or inserted."""
    kind = draw(st.sampled_from(["raw", "framed", "mutated", "mutated"]))
    if kind == "raw":
        return draw(st.binary(max_size=200))
    if kind == "framed":
        return recordio.frame_records(draw(st.lists(st.binary(max_size=60), max_size=4)))
    body = bytearray(_valid_body(draw))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert"]))
        at = draw(st.integers(0, max(len(body) - 1, 0)))
        if op == "flip" and body:
            body[at] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del body[at : at + draw(st.integers(1, 8))]
        else:
            body[at:at] = draw(st.binary(min_size=1, max_size=8))
    return bytes(body)


@_SETTINGS
@given(body=user_bodies())
def test_any_bytes_decode_or_raise_recordio_error(body):
    try:
        records = recordio.decode_records(body)
    except RecordIOError:
        return
    for record in records:  # what decodes is well-formed: every tensor is usable as counts or refused by name
        tensor = recordio.feature_tensor(record)
        if tensor is not None:
            try:
                recordio.record_counts(tensor, 31, "r")
            except RecordIOError:
                pass


@_SETTINGS
@given(rows=st.lists(st.lists(st.floats(0, 1e6, width=32), max_size=20), max_size=5))
def test_dense_float32_rows_round_trip_exactly(rows):
    records = [Record(features={"values": Tensor(np.array(r, np.float32))}) for r in rows]
    back = recordio.decode_records(recordio.encode_records(records))
    assert [b.features["values"].values.tolist() for b in back] == [np.array(r, np.float32).tolist() for r in rows]


def test_iter_recordio_reads_a_file_in_pieces(tmp_path):
    path = tmp_path / "part.pbr"
    path.write_bytes(recordio.frame_records([b"one", b"two!", b"three"]))
    with open(path, "rb") as fh:
        assert list(recordio.iter_recordio(fh, "part.pbr")) == [b"one", b"two!", b"three"]
    with pytest.raises(RecordIOError, match="part.pbr"):
        list(recordio.iter_recordio(io.BytesIO(b"junkjunk"), "part.pbr"))


@_SETTINGS
@given(
    rows=st.lists(
        st.tuples(st.lists(st.integers(0, 2**40), max_size=6), st.lists(st.floats(width=32, allow_nan=False), max_size=6), st.lists(st.integers(0, 2**40), max_size=2)),
        max_size=5,
    ),
    key=st.sampled_from(["values", "features", "é"]),
    with_label=st.booleans(),
)
def test_sparse_records_decode_the_same_on_the_fast_and_general_paths(rows, key, with_label):
    """The SDK's layout takes a fast path; a label (or any other field) takes the general one: same tensors."""
    records = []
    for keys, values, shape in rows:
        record = Record(features={key: Tensor(np.array(values, np.float32), np.array(keys, np.uint64), tuple(shape))})
        if with_label:
            record.label["values"] = Tensor(np.array([1.0], np.float32))
        records.append(record)
    for back, original in zip(recordio.decode_records(recordio.encode_records(records)), records):
        got, want = back.features[key], original.features[key]
        assert got.values.tolist() == want.values.tolist() and got.keys.tolist() == want.keys.tolist() and got.shape == want.shape
