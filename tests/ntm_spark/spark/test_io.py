"""The readers' one rule for bytes that are not UTF-8, and the staging folders a killed run leaves."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ntm_spark.core.text import decode_document_bytes
from ntm_spark.spark.io import decode_content, delete_stale_staging, read_table, staging_path, write_text_file

LATIN1_ROW = b'{"id": "x", "text": "caf\xe9 engine car", "label": "autos"}'


def test_decode_document_bytes_utf8_else_latin1():
    assert decode_document_bytes("café".encode()) == ("café", False)
    assert decode_document_bytes(b"caf\xe9") == ("café", True)
    assert decode_document_bytes(bytearray(b"\xff\xfe")) == ("\xff\xfe", True)
    assert decode_document_bytes(memoryview(b"")) == ("", False)
    with pytest.raises(TypeError, match=r"raw='café' is a str, not bytes"):
        decode_document_bytes("café")


@given(st.binary(max_size=64))
def test_decode_document_bytes_loses_no_byte(raw):
    text, fallback = decode_document_bytes(raw)
    assert (text.encode("latin-1") if fallback else text.encode("utf-8")) == raw


@pytest.mark.spark
@settings(max_examples=5, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=24), st.text(max_size=12).map(str.encode)), min_size=1, max_size=40))
def test_the_jvm_rule_and_its_python_twin_agree(spark, values):
    """decode_content (JVM) and decode_document_bytes (Python) decode any bytes alike."""
    df = spark.createDataFrame([(i, bytearray(v)) for i, v in enumerate(values)], "i int, content binary")
    rows = sorted(decode_content(df).collect())
    assert [(r["text"], r["decode_fallback"]) for r in rows] == [decode_document_bytes(v) for v in values]


@pytest.mark.spark
def test_jsonl_row_with_a_latin1_byte_keeps_its_id(spark, tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_bytes(
        b'{"id": 1, "text": "plain engine"}\n' + LATIN1_ROW + b'\n\n{"id": "u", "text": "caf\xc3\xa9 wheel"}\n'
    )
    rows = {r["id"]: r for r in read_table(spark, str(path), "jsonl").collect()}
    assert sorted(rows) == ["1", "u", "x"]  # the blank line is skipped, as Spark's JSON reader does
    assert (rows["x"]["text"], rows["x"]["label"], rows["x"]["decode_fallback"]) == ("café engine car", "autos", True)
    assert (rows["u"]["text"], rows["u"]["decode_fallback"]) == ("café wheel", False)
    assert rows["1"]["decode_fallback"] is False and rows["1"]["label"] is None


@pytest.mark.spark
def test_jsonl_all_rows_latin1_still_has_its_columns(spark, tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_bytes(LATIN1_ROW + b"\n")
    (row,) = read_table(spark, str(path), "jsonl").collect()
    assert (row["id"], row["text"], row["decode_fallback"]) == ("x", "café engine car", True)
    with pytest.raises(ValueError, match=r"id_col='doc' is not a column .* its columns are \['id', 'label', 'text'\]"):
        read_table(spark, str(path), "jsonl", id_col="doc")


@pytest.mark.spark
def test_csv_file_that_is_not_utf8_is_read_as_latin1(spark, tmp_path):
    folder = tmp_path / "csv"
    folder.mkdir()
    (folder / "latin1.csv").write_bytes(b'id,text\nx1,"caf\xe9\nengine"\nx2,wheel\n')
    (folder / "utf8.csv").write_bytes('id,text\ny1,"café car"\n'.encode())
    rows = {r["id"]: (r["text"], r["decode_fallback"]) for r in read_table(spark, str(folder), "csv").collect()}
    # The value the rule applies to is the file: every row of latin1.csv is flagged.
    assert rows == {"x1": ("café\nengine", True), "x2": ("wheel", True), "y1": ("café car", False)}


@pytest.mark.spark
def test_stale_staging_folders_are_deleted_and_nothing_else(spark, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    keep = ["bucket=0", ".bucket=x.staging-0123abcd", ".other.staging-0123abcd", "bucket=1.staging-0123abcd"]
    for name in keep:
        (out / name).mkdir()
    stale = [staging_path(str(out / "bucket=3")), staging_path(str(out / "bucket=12"))]
    for path in stale:
        write_text_file(spark, f"{path}/part-0.parquet", "half-written")
    deleted = delete_stale_staging(spark, str(out), r"bucket=\d+")
    assert sorted(p.rsplit("/", 1)[1] for p in deleted) == sorted(p.rsplit("/", 1)[1] for p in stale)
    assert sorted(p.name for p in out.iterdir()) == sorted(keep)
    assert delete_stale_staging(spark, str(tmp_path / "missing"), r"bucket=\d+") == []
    assert json.dumps(deleted)  # plain strings
