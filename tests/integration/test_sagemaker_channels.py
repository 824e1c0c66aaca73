"""SageMaker RecordIO training channels in and out: ``ntm import-recordio`` / ``ntm export-recordio``.

The channels are written by the SageMaker SDK's own ``write_spmatrix_to_sparse_tensor`` from the
project's bag-of-words data (the ``bow_corpus`` fixture, in the preprocessing output format); the
import must give back the same documents (counts, order, per-split numbers) through the
dataset-folder contract, and ``ntm train``'s data module must read it.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp

from jobs.export_recordio import main as export_main
from jobs.import_recordio import main as import_main
from ntm_spark.core import recordio
from ntm_spark.core.contract import read_manifest, read_vocabulary, split_files
from ntm_spark.core.schema import SPLITS, bow_arrow_schema
from tests.integration.test_sagemaker_sdk import load_sagemaker_sdk


def read_split(data_dir, split) -> pa.Table:
    files = split_files(data_dir, split)
    return pa.concat_tables([pq.read_table(f, schema=bow_arrow_schema()) for f in files]) if files else bow_arrow_schema().empty_table()


def to_csr(table: pa.Table, feature_dim: int) -> sp.csr_matrix:
    indices = table.column("indices").to_pylist()
    values = table.column("values").to_pylist()
    indptr = np.cumsum([0] + [len(i) for i in indices])
    return sp.csr_matrix((np.concatenate(values or [[]]).astype(np.float32), np.concatenate(indices or [[]]).astype(np.int64), indptr),
                         shape=(len(indices), feature_dim))  # fmt: skip


@pytest.fixture(scope="module")
def sdk_channels(bow_corpus, tmp_path_factory):
    """The bow_corpus splits as SageMaker channels, written by the SDK (two files per channel), plus auxiliary/vocab.txt."""
    sdk = load_sagemaker_sdk()
    root = tmp_path_factory.mktemp("channels")
    vocab = read_vocabulary(bow_corpus)
    for split in SPLITS:
        matrix = to_csr(read_split(bow_corpus, split), len(vocab))
        (root / split).mkdir()
        half = matrix.shape[0] // 2
        for n, part in enumerate((matrix[:half], matrix[half:])):  # the notebook's data_part{n}.pbr
            buf = io.BytesIO()
            sdk.serializer_utils.write_spmatrix_to_sparse_tensor(buf, part, labels=None)
            (root / split / f"data_part{n}.pbr").write_bytes(buf.getvalue())
    vocab.save(root / "auxiliary" / "vocab.txt")
    return root


def test_sdk_channels_import_to_the_projects_rows_and_counts(bow_corpus, sdk_channels, tmp_path):
    out = tmp_path / "imported"
    assert import_main(["--channels", str(sdk_channels), "--output", str(out), "--rows-per-file", "150"]) == 0
    theirs, ours = read_manifest(out), read_manifest(bow_corpus)
    assert read_vocabulary(out).words == read_vocabulary(bow_corpus).words
    assert theirs["vocabulary"]["sha256"] == read_vocabulary(bow_corpus).sha256
    for split in SPLITS:
        mine, original = read_split(out, split), read_split(bow_corpus, split)
        assert mine.schema == bow_arrow_schema()
        assert mine.num_rows == original.num_rows == theirs["documents"]["per_split"][split] == theirs["splits"][split]["documents"]
        for column in ("n_words", "indices", "values"):
            assert mine.column(column).to_pylist() == original.column(column).to_pylist(), (split, column)
        assert mine.column("id").to_pylist()[0] == f"{split}/data_part0.pbr/0"
    assert theirs["documents"]["kept"] == sum(n for n in ours["n_docs"]) and theirs["documents"]["dropped"] == {"empty": 0}
    assert theirs["source"]["format"] == "recordio-protobuf" and theirs["text_rules"]["clean"] is False


def test_trainings_data_module_reads_the_import(sdk_channels, tmp_path):
    from lightning_module.data import BowDataModule

    out = tmp_path / "imported"
    assert import_main(["--channels", str(sdk_channels), "--output", str(out)]) == 0
    dm = BowDataModule(data_dir=str(out), batch_size=64)
    assert dm.vocab_size == len(read_vocabulary(out))
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch, dict) and len(batch) > 0  # the same batches as from `ntm preprocess` output


def test_export_then_import_keeps_ids_labels_and_counts(bow_corpus, tmp_path):
    channels, back = tmp_path / "channels", tmp_path / "back"
    assert export_main(["--data", str(bow_corpus), "--output", str(channels), "--records-per-file", "100"]) == 0
    assert sorted(p.name for p in (channels / "train").iterdir())[:2] == ["part-00000.pbr", "part-00001.pbr"]
    sdk = load_sagemaker_sdk()  # the SDK reads what we export
    records = sdk.serializer_utils.read_records(io.BytesIO((channels / "test" / "part-00000.pbr").read_bytes()))
    first = read_split(bow_corpus, "test").slice(0, 1).to_pylist()[0]
    assert records[0].uid == first["id"]
    assert list(records[0].features["values"].float32_tensor.keys) == first["indices"]
    assert import_main(["--channels", str(channels), "--output", str(back)]) == 0
    for split in SPLITS:
        assert read_split(back, split).to_pylist() == read_split(bow_corpus, split).to_pylist()


def test_import_refuses_what_it_cannot_use(sdk_channels, tmp_path, capsys):
    assert import_main(["--channels", str(tmp_path / "nope"), "--output", str(tmp_path / "o")]) == 1
    assert "is not a folder" in capsys.readouterr().err
    bad = tmp_path / "bad"
    (bad / "train").mkdir(parents=True)
    (bad / "train" / "part.pbr").write_bytes(b"definitely not recordio")
    (bad / "vocab.txt").write_text("a\nb\n")
    assert import_main(["--channels", str(bad), "--output", str(tmp_path / "o")]) == 1
    assert "train/part.pbr" in capsys.readouterr().err
    (bad / "train" / "part.pbr").write_bytes(recordio.encode_records([recordio.Record(features={"values": recordio.Tensor(np.ones(3, np.float32))})]))
    assert import_main(["--channels", str(bad), "--output", str(tmp_path / "o")]) == 1
    assert "dense tensor of 3 values but the vocabulary has 2 words" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing half-written
    out = tmp_path / "taken"
    out.mkdir()
    (out / "x").write_text("keep me")
    assert import_main(["--channels", str(sdk_channels), "--output", str(out)]) == 1
    assert "--overwrite" in capsys.readouterr().err and (out / "x").read_text() == "keep me"
    assert import_main(["--channels", str(sdk_channels), "--output", str(out), "--overwrite"]) == 0
    assert json.loads(capsys.readouterr().out)["vocabulary"] == 120
