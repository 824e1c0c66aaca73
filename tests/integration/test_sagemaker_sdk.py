"""The RecordIO codec against the SageMaker Python SDK's own writer and reader (a client nobody here wrote).

The SDK cannot be installed into .venv (every release pins protobuf<7; 3.x stubs the RecordIO
writer and reader out), so ``make test`` installs the last 2.x wheel without dependencies into
``.venv/sagemaker-sdk`` (conf/test-requirements.txt). :func:`load_sagemaker_sdk` loads the four
modules needed from there, unchanged: ``sagemaker.amazon.record_pb2`` (the ``Record`` protobuf),
``sagemaker.serializer_utils`` (``write_spmatrix_to_sparse_tensor``, ``write_numpy_to_dense_tensor``,
``read_records``), ``sagemaker.base_serializers`` (``CSVSerializer``...) and
``sagemaker.base_deserializers`` (``JSONDeserializer``...). Only the package's ``__init__`` (which
imports the whole SDK) and ``sagemaker.utils`` (for one helper class) are stood in for.
"""

from __future__ import annotations

import importlib
import io
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse as sp

from ntm_spark.core import recordio

#: Where `make test` puts the SDK (conf/test-requirements.txt).
SDK_DIR = Path(sys.prefix) / "sagemaker-sdk"


class _DeferredError:
    """sagemaker.utils.DeferredError: raise a stored import error when used."""

    def __init__(self, exception):
        self.exc = exception

    def __getattr__(self, name):
        raise self.exc


def load_sagemaker_sdk() -> SimpleNamespace:
    """Load the SDK's RecordIO, serializer and deserializer modules from ``.venv/sagemaker-sdk``."""
    package = SDK_DIR / "sagemaker"
    if not (package / "serializer_utils.py").is_file():
        pytest.skip(f"the SageMaker SDK is not in {SDK_DIR}: run `make test` (it installs conf/test-requirements.txt)")
    existing = sys.modules.get("sagemaker")
    if existing is None or list(getattr(existing, "__path__", [])) != [str(package)]:
        stub = types.ModuleType("sagemaker")
        stub.__path__ = [str(package)]  # submodules load from the wheel; its __init__ never runs
        utils = types.ModuleType("sagemaker.utils")
        utils.DeferredError = _DeferredError
        for name in [m for m in sys.modules if m == "sagemaker" or m.startswith("sagemaker.")]:
            del sys.modules[name]
        sys.modules["sagemaker"] = stub
        sys.modules["sagemaker.utils"] = utils
    return SimpleNamespace(
        record_pb2=importlib.import_module("sagemaker.amazon.record_pb2"),
        serializer_utils=importlib.import_module("sagemaker.serializer_utils"),
        serializers=importlib.import_module("sagemaker.base_serializers"),
        deserializers=importlib.import_module("sagemaker.base_deserializers"),
    )


@pytest.fixture(scope="module")
def sdk():
    return load_sagemaker_sdk()


def _sparse_matrix(seed=0, rows=7, cols=40, dtype=np.float32):
    rng = np.random.default_rng(seed)
    dense = (rng.random((rows, cols)) < 0.2) * rng.integers(1, 6, (rows, cols))
    dense[3] = 0  # an empty document
    return sp.csr_matrix(dense.astype(dtype))


def test_the_sdk_loads_from_its_wheel(sdk):
    assert sdk.serializer_utils.__file__.startswith(str(SDK_DIR))
    assert sdk.record_pb2.Record.DESCRIPTOR.full_name == "aialgs.data.Record"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sdk_sparse_writer_is_read_by_the_codec(sdk, dtype):
    matrix = _sparse_matrix(dtype=dtype)
    buf = io.BytesIO()
    sdk.serializer_utils.write_spmatrix_to_sparse_tensor(buf, matrix, labels=np.arange(7, dtype=np.float32))
    records = recordio.decode_records(buf.getvalue())
    assert len(records) == 7
    for i, record in enumerate(records):
        tensor = recordio.feature_tensor(record)
        assert tensor.is_sparse and tensor.shape == (40,) and tensor.values.dtype == np.dtype(dtype)
        row = matrix.getrow(i)
        np.testing.assert_array_equal(tensor.keys, row.indices.astype(np.uint64))
        np.testing.assert_array_equal(tensor.values, row.data)
        assert float(record.label["values"].values[0]) == i
        indices, counts = recordio.record_counts(tensor, 40, f"row {i}")
        np.testing.assert_array_equal(indices, np.sort(row.indices))
        assert counts.sum() == row.sum()


def test_sdk_dense_writer_is_read_by_the_codec(sdk):
    array = _sparse_matrix().toarray()
    buf = io.BytesIO()
    sdk.serializer_utils.write_numpy_to_dense_tensor(buf, array)
    records = recordio.decode_records(buf.getvalue())
    assert [not recordio.feature_tensor(r).is_sparse for r in records] == [True] * 7
    np.testing.assert_array_equal(np.stack([recordio.feature_tensor(r).values for r in records]), array)


def test_codec_writer_is_read_by_the_sdk(sdk):
    matrix = _sparse_matrix(seed=3)
    ids = [f"doc-{i}" for i in range(7)]
    body = b"".join(recordio.encode_sparse_rows(matrix.indptr, matrix.indices, matrix.data, 40, uids=ids, labels=["a"] * 7))
    records = sdk.serializer_utils.read_records(io.BytesIO(body))
    assert [r.uid for r in records] == ids
    for i, record in enumerate(records):
        tensor = record.features["values"].float32_tensor
        np.testing.assert_array_equal(np.array(tensor.keys), matrix.getrow(i).indices)
        np.testing.assert_array_equal(np.array(tensor.values, dtype=np.float32), matrix.getrow(i).data)
        assert list(tensor.shape) == [40]
        assert record.label["values"].bytes.value == [b"a"]
    # the answer's format: label["topic_weights"], read by the SDK's RecordDeserializer
    weights = np.random.default_rng(0).dirichlet(np.ones(5), size=4).astype(np.float32)
    deserialized = sdk.deserializers.RecordDeserializer().deserialize(io.BytesIO(recordio.encode_weights(weights)), recordio.RECORDIO_CONTENT_TYPE)
    np.testing.assert_array_equal(np.array([r.label["topic_weights"].float32_tensor.values for r in deserialized]), weights)


def test_every_record_the_sdk_writes_round_trips_byte_for_byte(sdk):
    """Decoding then encoding an SDK record gives the SDK's own bytes (map order, packed fields, padding)."""
    buf = io.BytesIO()
    sdk.serializer_utils.write_spmatrix_to_sparse_tensor(buf, _sparse_matrix(seed=5, rows=20, cols=3000))
    body = buf.getvalue()
    assert recordio.encode_records(recordio.decode_records(body)) == body
    for payload in sdk.serializer_utils.read_recordio(io.BytesIO(body)):
        parsed = sdk.record_pb2.Record()
        parsed.ParseFromString(recordio.encode_record(recordio.decode_record(payload)))
        assert parsed.SerializeToString() == payload


def test_record_serializer_body_is_read_by_the_codec(sdk):
    """The SDK's RecordSerializer (a Predictor's RecordIO request body) decodes to the same rows."""
    array = _sparse_matrix(seed=9).toarray()
    body = sdk.serializers.RecordSerializer().serialize(array).read()
    np.testing.assert_array_equal(np.stack([recordio.feature_tensor(r).values for r in recordio.decode_records(body)]), array)
