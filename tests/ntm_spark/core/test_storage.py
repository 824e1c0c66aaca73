from pathlib import Path

import pytest

from ntm_spark.core import storage
from ntm_spark.core.contract import read_manifest, read_vocabulary, split_files


@pytest.mark.parametrize(
    "path, scheme, remote",
    [
        ("/data/x", "", False), ("data/x", "", False), ("C:\\data\\x", "", False), ("file:///data/x", "file", False),
        ("s3://b/x", "s3", True), ("S3A://b/x", "s3a", True), ("gs://b/x", "gs", True),
        ("abfss://c@acct.dfs.core.windows.net/x", "abfss", True), ("hdfs://nn:8020/x", "hdfs", True),
    ],
)  # fmt: skip
def test_scheme_and_remote(path, scheme, remote):
    assert storage.scheme_of(path) == scheme
    assert storage.is_remote(path) is remote


def test_s3a_is_read_as_s3_and_join_keeps_the_query():
    assert storage.normalize_uri("s3a://bucket/data") == "s3://bucket/data"
    assert storage.join("s3a://bucket/data/", "train", "a.parquet") == "s3a://bucket/data/train/a.parquet"
    assert storage.join("s3://b/d?endpoint_override=h:9000", "vocab.txt") == "s3://b/d/vocab.txt?endpoint_override=h:9000"
    assert storage.join("/tmp/d", "vocab.txt") == str(Path("/tmp/d") / "vocab.txt")


def test_local_and_file_uri_round_trip(tmp_path):
    uri = f"file://{tmp_path}"
    storage.make_dirs(storage.join(uri, "a"))
    storage.write_text(storage.join(uri, "a", "x.txt"), "héllo")
    assert storage.read_text(tmp_path / "a" / "x.txt") == "héllo"
    assert storage.is_file(storage.join(uri, "a", "x.txt")) and storage.is_dir(uri)
    assert storage.list_files(tmp_path, ".txt") == [str(tmp_path / "a" / "x.txt")]
    fs, inner = storage.resolve(uri)
    assert type(fs).__name__ == "LocalFileSystem" and inner == str(tmp_path)


def test_contract_reads_a_dataset_folder_given_as_file_uri(bow_corpus):
    uri = f"file://{bow_corpus}"
    assert read_vocabulary(uri).words == read_vocabulary(bow_corpus).words
    assert read_manifest(uri) == read_manifest(bow_corpus)
    assert split_files(uri, "train") == split_files(bow_corpus, "train")


def test_unknown_scheme_names_the_setting_and_the_fix():
    with pytest.raises(storage.StorageError, match=r"data_dir='nope://x/y'.*pyarrow cannot open nope://.*s3://"):
        storage.resolve("nope://x/y", setting="data_dir")


def test_remote_path_is_not_a_local_path():
    with pytest.raises(storage.StorageError, match="stage_local"):
        storage.local_path("s3://b/x")
