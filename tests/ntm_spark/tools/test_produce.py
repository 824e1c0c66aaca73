"""The ``ntm produce`` input readers: JSON lines, CSV, text files; any bytes give documents or a clear error."""

import io
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ntm_spark.tools.produce import (
    Document,
    InputProblem,
    ProduceInputError,
    count_inputs,
    detect_format,
    encode_key,
    encode_value,
    read_csv,
    read_documents,
    read_jsonl,
)


def docs(items):
    return [i for i in items if isinstance(i, Document)]


def problems(items):
    return [i for i in items if isinstance(i, InputProblem)]


# --------------------------------------------------------------------------- JSON lines


def test_jsonl_keys_by_id_derives_stable_keys_and_keeps_other_fields(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(
        b'{"id": "a", "text": "car engine", "label": "autos"}\n'
        b"\n"
        b'{"text": "no id here"}\n'
        b'{"id": 7, "text": "numeric id"}\n'
    )
    items = list(read_documents(str(path)))
    assert [(d.key, d.value) for d in items] == [
        ("a", {"id": "a", "label": "autos", "text": "car engine"}),
        (f"{path}:3", {"id": f"{path}:3", "text": "no id here"}),
        ("7", {"id": "7", "text": "numeric id"}),
    ]
    # The same file gives the same keys again (derived keys are stable).
    assert [d.key for d in read_documents(str(path))] == [d.key for d in items]


def test_jsonl_reports_bad_lines_with_file_and_line_and_keeps_going(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"id": "a", "text": "ok"}\n{not json\n[1, 2]\n{"id": "b", "body": "x"}\n{"id": "c", "text": "ok too"}\n')
    items = list(read_documents(str(path)))
    assert [d.key for d in docs(items)] == ["a", "c"]
    bad = problems(items)
    assert [p.line for p in bad] == [2, 3, 4]
    assert "not valid JSON" in bad[0].message
    assert "not an object" in bad[1].message and "list" in bad[1].message
    assert "no 'text' field" in bad[2].message and "--text-col" in bad[2].message
    assert str(bad[0]).startswith(f"{path}:2: ")


def test_jsonl_other_text_and_id_fields_and_stdin():
    stdin = io.BytesIO(b'{"doc": "d1", "body": "engine", "text": "ignored"}\n')
    (doc,) = read_documents("-", text_col="body", id_col="doc", stdin=stdin)
    assert doc.key == "d1" and doc.value["text"] == "engine" and doc.value["id"] == "d1" and doc.value["doc"] == "d1"
    (doc,) = read_documents("-", stdin=io.BytesIO(b'{"text": "x"}'))
    assert doc.key == "stdin:1"


def test_jsonl_bytes_that_are_not_utf8_follow_the_one_rule(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"id": "bom", "text": "ok"}\n{"id": "l1", "text": "caf\xe9"}\n')
    items = list(read_documents(str(path)))
    assert [(d.key, d.value["text"]) for d in items] == [("bom", "ok"), ("l1", "café")]


def test_the_stream_checks_stay_the_streams(tmp_path):
    """Empty or non-string texts are sent: the stream dead-letters them with the shared codes."""
    items = list(read_jsonl([b'{"id": "e", "text": ""}', b'{"id": "n", "text": 5}'], "x"))
    assert [d.value["text"] for d in items] == ["", 5]


# --------------------------------------------------------------------------- CSV


def test_csv_rows_with_quoted_newlines_ids_and_derived_keys(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text('id,text,label\nr1,"car\nengine",autos\n,no id,x\n\nr3,"say ""hi""",y\n')
    items = list(read_documents(str(path)))
    assert [(d.key, d.value) for d in items] == [
        ("r1", {"id": "r1", "label": "autos", "text": "car\nengine"}),
        (f"{path}:4", {"id": f"{path}:4", "label": "x", "text": "no id"}),
        ("r3", {"id": "r3", "label": "y", "text": 'say "hi"'}),
    ]


def test_csv_without_the_text_column_is_a_clear_error_naming_the_fix(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("id,body\n1,x\n")
    with pytest.raises(ProduceInputError, match=r"no 'text' column \(columns: \['id', 'body'\]\).*--text-col"):
        list(read_documents(str(path)))
    (doc,) = read_documents(str(path), text_col="body")
    assert doc.value == {"id": "1", "text": "x"}
    with pytest.raises(ProduceInputError, match="no 'doc' column"):
        list(read_documents(str(path), text_col="body", id_col="doc"))
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(ProduceInputError, match="empty"):
        list(read_documents(str(empty)))


def test_csv_short_rows_are_reported_and_large_fields_are_read(tmp_path):
    path = tmp_path / "in.csv"
    big = "engine " * 40_000  # 280 KB: over the csv module's default field limit
    path.write_text(f"id,label,text\na,x\nb,y,{big}\n")
    items = list(read_documents(str(path)))
    assert [p.line for p in problems(items)] == [2]
    assert "none in column 'text'" in problems(items)[0].message
    assert [d.value["text"] for d in docs(items)] == [big]


# --------------------------------------------------------------------------- text files and formats


def test_text_files_one_document_per_file_folder_recursive_sorted(tmp_path):
    root = tmp_path / "corpus"
    (root / "b").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"first")
    (root / "b" / "c").write_bytes(b"caf\xe9")
    (root / ".hidden").write_bytes(b"skip me")
    items = list(read_documents(str(root)))
    assert [(d.key, d.value) for d in items] == [("a.txt", {"id": "a.txt", "text": "first"}), ("b/c", {"id": "b/c", "text": "café"})]
    assert count_inputs(str(root), "text") == 2
    (doc,) = read_documents(str(root / "a.txt"))
    assert doc.key == "a.txt"


def test_formats_by_extension_and_clear_errors(tmp_path):
    assert detect_format("x.jsonl") == "jsonl" and detect_format("x.NDJSON") == "jsonl" and detect_format("x.csv") == "csv"
    assert detect_format("-") == "jsonl" and detect_format(str(tmp_path)) == "text" and detect_format("x.bin", "text") == "text"
    with pytest.raises(ProduceInputError, match=r"cannot tell the format of 'x.parquet'.*--format jsonl"):
        detect_format("x.parquet")
    with pytest.raises(ProduceInputError, match="unknown"):
        detect_format("x.csv", "xml")
    with pytest.raises(ProduceInputError, match="does not exist"):
        list(read_documents(str(tmp_path / "missing.jsonl")))
    with pytest.raises(ProduceInputError, match="is a folder"):
        list(read_documents(str(tmp_path), "jsonl"))
    with pytest.raises(ProduceInputError, match=r"cannot read '/proc/self/mem' \(.*\): check the path"):
        list(read_documents("/proc/self/mem", "text"))  # an OSError even for root


def test_values_and_keys_encode_even_with_lone_surrogates():
    (doc,) = read_jsonl([b'{"id": "\\ud800", "text": "\\udfff x"}'], "s")
    assert json.loads(encode_value(doc.value)) == {"id": "\ud800", "text": "\udfff x"}
    assert encode_key(doc.key) == b"\\ud800"
    assert encode_value({"id": "é", "text": "ü"}) == '{"id":"é","text":"ü"}'.encode()


# --------------------------------------------------------------------------- any bytes: documents or a clear error


def _check_items(read):
    try:
        items = list(read())
    except ProduceInputError as err:
        assert str(err)
        return
    for item in items:
        assert isinstance(item, (Document, InputProblem))
        if isinstance(item, Document):
            value = json.loads(encode_value(item.value))
            assert isinstance(value, dict) and "text" in value and value["id"] == item.key
            assert isinstance(encode_key(item.key), bytes)
        else:
            assert item.message and item.line >= 0


LINE_BYTES = st.one_of(
    st.binary(max_size=200),
    st.builds(lambda d: json.dumps(d).encode(), st.dictionaries(st.sampled_from(["id", "text", "x"]), st.one_of(st.none(), st.integers(), st.text(max_size=20), st.lists(st.integers(), max_size=2)))),
)  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.lists(LINE_BYTES, max_size=8).map(lambda parts: b"\n".join(parts)))
def test_any_bytes_as_json_lines_give_documents_or_problems(data, tmp_path):
    path = tmp_path / "fuzz.jsonl"
    path.write_bytes(data)
    _check_items(lambda: read_documents(str(path)))
    _check_items(lambda: read_documents("-", "jsonl", stdin=io.BytesIO(data)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=300), st.binary(max_size=200).map(lambda b: b"id,text\n" + b)))
def test_any_bytes_as_csv_or_text_give_documents_or_a_clear_error(data, tmp_path):
    path = tmp_path / "fuzz.csv"
    path.write_bytes(data)
    _check_items(lambda: read_documents(str(path)))
    _check_items(lambda: read_csv(data, "x", id_required=True))
    text = tmp_path / "fuzz.txt"
    text.write_bytes(data)
    _check_items(lambda: read_documents(str(text)))
