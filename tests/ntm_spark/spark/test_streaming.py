"""score_batch and friends on static DataFrames shaped like Spark's Kafka source (no broker needed)."""

import json
import time

import pytest

pytestmark = [pytest.mark.spark]

GOOD = "Subject: engines\n\nThe car engine and the wheels of the car need a new drive. God bless the space launch."


def kafka_rows(spark, values, topic="documents"):
    """A static DataFrame with the Kafka source's columns."""
    import datetime as dt

    rows = []
    for i, (key, value) in enumerate(values):
        raw = value if (value is None or isinstance(value, bytes)) else value.encode("utf-8")
        rows.append((key.encode() if key else None, raw, topic, i % 2, i, dt.datetime(2026, 1, 1), 0))
    return spark.createDataFrame(
        rows, "key binary, value binary, topic string, partition int, offset long, timestamp timestamp, timestampType int"
    )


@pytest.fixture(scope="module")
def good_text(stream_model_folder):
    from ntm_spark.core.vocab import Vocabulary

    words = Vocabulary.from_file(stream_model_folder / "vocab.txt").words
    return "Subject: x\n\n" + " ".join(words[:40])


@pytest.fixture(scope="module")
def messages(good_text):
    big = json.dumps({"id": "big", "text": "word " * 400})
    return [
        ("g1", json.dumps({"id": "g1", "text": good_text, "lang": "en", "meta": {"n": 1}})),
        ("g2", json.dumps({"id": "g2", "text": good_text + " again"})),
        ("nj", "this is {not json"),
        ("arr", "[1, 2, 3]"),
        ("mt", json.dumps({"id": "mt", "body": "no text field"})),
        ("nl", json.dumps({"id": "nl", "text": None})),
        ("ns", json.dumps({"id": "ns", "text": 42})),
        ("big", big),
        ("emp", json.dumps({"id": "emp", "text": "   "})),
        ("ean", json.dumps({"id": "ean", "text": "Subject: hi\n\nthe of and zzzqqq"})),
        (None, json.dumps({"text": good_text})),
    ]


def test_parse_messages_classifies_each_malformed_kind(spark, messages):
    from ntm_spark.spark.streaming import parse_messages

    rows = {r["key"] or r["id"]: r for r in parse_messages(kafka_rows(spark, messages), max_message_bytes=1000, passthrough_fields=["lang"]).collect()}
    assert rows["g1"]["error_code"] is None and rows["g1"]["text"].startswith("Subject")
    assert json.loads(rows["g1"]["extra__lang"]) == "en"
    assert rows["g2"]["extra__lang"] is None
    assert rows["nj"]["error_code"] == "not_json"
    assert rows["arr"]["error_code"] == "not_json" and "not an object" in rows["arr"]["error_message"]
    assert rows["mt"]["error_code"] == "missing_text"
    assert rows["nl"]["error_code"] == "missing_text"
    assert rows["ns"]["error_code"] == "text_not_string" and "bigint" in rows["ns"]["error_message"]
    assert rows["big"]["error_code"] == "too_large" and "max_message_bytes=1000" in rows["big"]["error_message"]
    assert rows["emp"]["error_code"] is None  # empty text is the scorer's call
    # No id: the source coordinates stand in.
    assert rows["documents-0-10"]["error_code"] is None


@pytest.mark.parametrize("scoring_udf", ["map_in_pandas", "pandas_udf"])
def test_score_batch_scores_good_rows_and_dead_letters_the_rest(spark, stream_model_folder, messages, scoring_udf):
    from ntm_spark.serving.model_loader import ModelSpec
    from ntm_spark.spark.streaming import (
        parse_messages,
        score_batch,
        to_dead_letters,
        to_kafka_records,
        to_output_records,
    )

    parsed = parse_messages(kafka_rows(spark, messages), max_message_bytes=1000, passthrough_fields=["lang"])
    scored = score_batch(parsed, ModelSpec(str(stream_model_folder)), top_k=2, top_words=3, scoring_udf=scoring_udf).cache()
    out = {json.loads(r["value"])["id"]: (r["key"], json.loads(r["value"])) for r in to_output_records(scored).collect()}
    assert set(out) == {"g1", "g2", "documents-0-10"}
    key, rec = out["g1"]
    assert key == "g1"
    assert abs(sum(rec["topic_weights"]) - 1) < 1e-5 and len(rec["topic_weights"]) == 10
    assert len(rec["top_topics"]) == 2 and len(rec["top_topics"][0]["words"]) == 3
    assert rec["top_topics"][0]["weight"] >= rec["top_topics"][1]["weight"]
    assert rec["top_topics"][0]["weight"] == pytest.approx(max(rec["topic_weights"]), rel=1e-6)
    assert rec["model_name"] == "ntm" and len(rec["model_version"]) == 12
    assert rec["lang"] == "en" and rec["source_topic"] == "documents" and rec["source_offset"] == 0
    assert "scored_at" in rec and "raw_value" not in rec

    dead = {json.loads(r["value"])["source_offset"]: (r["key"], json.loads(r["value"])) for r in to_dead_letters(scored).collect()}
    codes = {v["key"]: v["error_code"] for _, v in dead.values()}
    assert codes == {
        "nj": "not_json", "arr": "not_json", "mt": "missing_text", "nl": "missing_text", "ns": "text_not_string",
        "big": "too_large", "emp": "empty_text", "ean": "empty_after_normalization",
    }  # fmt: skip
    key, nj = dead[2]
    assert key == "nj" and nj["raw_value"] == "this is {not json" and nj["source_partition"] == 0
    assert nj["error_message"] and nj["failed_at"] and nj["raw_value_truncated"] is False

    both = to_kafka_records(scored, "out", "dlq").groupBy("topic").count().collect()
    assert {r["topic"]: r["count"] for r in both} == {"out": 3, "dlq": 8}


def test_score_batch_rejects_bad_arguments(spark, stream_model_folder):
    from ntm_spark.spark.streaming import parse_messages, score_batch

    parsed = parse_messages(kafka_rows(spark, [("a", '{"text": "x"}')]))
    with pytest.raises(ValueError, match="scoring_udf='arrow'"):
        score_batch(parsed, str(stream_model_folder), scoring_udf="arrow")
    with pytest.raises(ValueError, match="needs a 'text' column"):
        score_batch(parsed.drop("text"), str(stream_model_folder))
    with pytest.raises(ValueError, match="max_message_bytes=0"):
        parse_messages(kafka_rows(spark, []), max_message_bytes=0)


def test_loader_hot_swaps_a_replaced_folder_and_keeps_the_old_model_on_failure(tmp_path, newsgroups_test_docs):
    import shutil

    from conftest import make_stream_model_folder

    from ntm_spark.serving.model_loader import ModelSpec, ScorerLoader

    folder = make_stream_model_folder(tmp_path / "m", newsgroups_test_docs[:50], vocab_size=200, seed=1)
    clock = [0.0]
    loader = ScorerLoader(ModelSpec(str(folder), refresh_interval_s=5), clock=lambda: clock[0])
    v1 = loader.get().version
    other = make_stream_model_folder(tmp_path / "m2", newsgroups_test_docs[:50], vocab_size=200, seed=2)
    time.sleep(0.01)
    shutil.copyfile(other / "model.pt", folder / "model.pt")
    assert loader.get().version == v1  # within the interval: no check
    clock[0] = 6.0
    v2 = loader.get().version
    assert v2 != v1
    (folder / "model.pt").write_bytes(b"corrupt")  # a broken new version: keep serving v2
    clock[0] = 12.0
    assert loader.get().version == v2
    assert loader.failed_reloads == 1 and "model.pt" in (loader.last_error or "") or loader.failed_reloads == 1


@pytest.mark.parametrize(("threads", "expected"), [(None, 2), (1, 1)])
def test_loader_sets_the_scoring_processes_torch_threads(stream_model_folder, threads, expected):
    # In a fresh process, as a Spark Python worker is: torch's default there is OMP_NUM_THREADS.
    import os
    import subprocess
    import sys

    code = (
        "import torch; from ntm_spark.serving.model_loader import ModelSpec, ScorerLoader; "
        f"ScorerLoader(ModelSpec({str(stream_model_folder)!r}, threads={threads!r})).get(); print(torch.get_num_threads())"
    )
    # Every *_NUM_THREADS set to 2: an in-process job earlier in the suite may have exported MKL_NUM_THREADS=1.
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    env.update(OMP_NUM_THREADS="2", MKL_NUM_THREADS="2")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=True)
    assert int(out.stdout.strip().splitlines()[-1]) == expected


def test_parse_model_ref_errors_name_the_value(tmp_path):
    from ntm_spark.serving.model_loader import parse_model_ref

    assert parse_model_ref("models:/ntm@champion").alias == "champion"
    assert parse_model_ref("models:/ntm/3").version == "3"
    with pytest.raises(ValueError, match="models:/ntm"):
        parse_model_ref("models:/ntm")
    with pytest.raises(ValueError, match="not a model folder"):
        parse_model_ref(str(tmp_path))


# --------------------------------------------------------------------------- hardening (issue 15)


def _poison_messages(good_text):
    """Keys and values a stranger might send: invalid UTF-8 (key, value, text), trailing data, odd JSON."""
    latin = b'{"id": "lat", "text": "caf\xe9 ' + json.dumps(good_text)[1:-1].encode() + b'"}'
    return [
        ("lat", latin),
        ("badkey\xff", json.dumps({"id": "bk", "text": good_text})),
        ("trail", json.dumps({"id": "trail", "text": good_text}) + " trailing"),
        ("brace", "{}}"),
        ("two", json.dumps({"id": "two", "text": good_text}) + json.dumps({"id": "x"})),
        ("ws", "  " + json.dumps({"id": "ws", "text": good_text}) + " \n"),
        ("nul", json.dumps({"id": "nul", "text": good_text + "\u0000"})),
        ("bin", bytes(range(256))),
        ("empty", b""),
        ("tomb", None),
    ]


def _kafka_rows_raw(spark, values):
    import datetime as dt

    rows = []
    for i, (key, value) in enumerate(values):
        raw_key = key.encode("latin-1") if key is not None else None
        raw = value if (value is None or isinstance(value, bytes)) else value.encode("utf-8")
        rows.append((raw_key, raw, "documents", 0, i, dt.datetime(2026, 1, 1), 0))
    return spark.createDataFrame(
        rows, "key binary, value binary, topic string, partition int, offset long, timestamp timestamp, timestampType int"
    )


def _records(spark, df):
    from ntm_spark.spark.streaming import to_kafka_records

    out = {}
    for r in to_kafka_records(df, "out", "dlq").collect():
        value = json.loads(r["value"])
        out[value["source_offset"]] = (r["topic"], value)
    return out


def test_poison_pills_end_as_one_record_each_and_both_udf_paths_agree(spark, stream_model_folder, good_text):
    """Invalid UTF-8 keys/values are decoded as Latin-1 (flagged); trailing JSON is not_json; nothing fails the batch."""
    from ntm_spark.spark.streaming import parse_messages, score_batch

    msgs = _poison_messages(good_text)
    parsed = parse_messages(_kafka_rows_raw(spark, msgs), max_message_bytes=100_000)
    by_path = {}
    for udf in ("map_in_pandas", "pandas_udf"):
        by_path[udf] = _records(spark, score_batch(parsed, str(stream_model_folder), scoring_udf=udf))
    a, b = by_path["map_in_pandas"], by_path["pandas_udf"]
    assert sorted(a) == list(range(len(msgs)))  # one record per message, whatever its bytes
    for offset in a:
        ta, va = a[offset]
        tb, vb = b[offset]
        for v in (va, vb):
            v.pop("scored_at", None)
            v.pop("failed_at", None)
        assert (ta, va) == (tb, vb), f"the two scoring paths differ at offset {offset}"
    topic, lat = a[0]
    assert topic == "out" and lat["id"] == "lat" and lat["decode_fallback"] is True
    assert abs(sum(lat["topic_weights"]) - 1) < 1e-5
    topic, bk = a[1]
    assert topic == "out" and bk["id"] == "bk" and bk["decode_fallback"] is True
    for offset in (2, 3, 4):
        topic, dl = a[offset]
        assert topic == "dlq" and dl["error_code"] == "not_json", dl
    assert "trailing data" in a[2][1]["error_message"]
    assert a[5][0] == "out" and "decode_fallback" not in a[5][1]  # surrounding whitespace is fine
    assert a[6][0] == "dlq" and a[6][1]["error_code"] == "binary"  # a NUL: the shared document checks call it binary
    topic, binary = a[7]
    assert topic == "dlq" and binary["error_code"] == "not_json" and binary["decode_fallback"] is True
    assert binary["raw_value"].encode("latin-1") == bytes(range(256))  # the raw bytes are kept
    assert a[8][1]["error_code"] == "not_json" and a[9][1]["error_code"] == "not_json"


def test_check_single_json_rules():
    from ntm_spark.spark.streaming import check_single_json

    assert check_single_json('{"a": 1}') is None
    assert check_single_json(' {"a": 1}\n') is None
    assert "trailing" in check_single_json('{"a": 1} x')
    assert "trailing" in check_single_json("{}}")
    assert "not valid JSON" in check_single_json("{")
    assert check_single_json(None) is None
    deep = '{"text": "car", "a": ' + "[" * 100_000 + "]" * 100_000 + "}"
    assert "nests too deeply" in check_single_json(deep)


@pytest.mark.parametrize("scoring_udf", ["map_in_pandas", "pandas_udf"])
def test_drift_sums_agree_with_the_scorer(spark, stream_model_folder, messages, scoring_udf):
    """The drift monitor's per-batch aggregates equal the scorer's own weights, token and OOV counts."""
    import numpy as np

    from ntm_spark.serving.model_loader import ModelSpec
    from ntm_spark.serving.scoring import TopicScorer
    from ntm_spark.spark.drift_monitor import window_counts_from_metrics
    from ntm_spark.spark.streaming import drift_metric_columns, parse_messages, score_batch

    parsed = parse_messages(kafka_rows(spark, messages), max_message_bytes=1000)
    scored = score_batch(parsed, ModelSpec(str(stream_model_folder)), scoring_udf=scoring_udf).cache()
    row = scored.agg(*drift_metric_columns(scored, 10)).collect()[0].asDict()
    counts = scored.groupBy().agg({"*": "count"}).collect()[0][0]
    scored_n = scored.filter("error_code IS NULL").count()
    window = window_counts_from_metrics({**row, "records": counts, "scored": scored_n})

    scorer = TopicScorer.from_model_folder(stream_model_folder)
    texts = {k: json.loads(v)["text"] for k, v in messages if k in ("g1", "g2", "emp", "ean") or k is None}
    result = scorer.score_texts(list(texts.values()))
    ok = result.ok
    # "emp" (blank) never reaches normalization; "ean" does, and is empty after it.
    assert window.normalized == 4 and window.empty == 1 and window.scored == 3 and window.records == len(messages)
    assert window.tokens == int(result.tokens[result.tokens >= 0].sum())
    assert window.oov_tokens == int(result.oov_tokens[result.oov_tokens >= 0].sum()) > 0
    np.testing.assert_allclose(window.sums.weight_sum, result.weights[ok].sum(axis=0), rtol=1e-5)
    np.testing.assert_allclose(window.sums.weight_sumsq, (result.weights[ok].astype(float) ** 2).sum(axis=0), rtol=1e-5)
    assert window.sums.argmax_count.tolist() == np.bincount(result.weights[ok].argmax(axis=1), minlength=10).tolist()
    # Per row: the scorer's token counts travel as columns (they also reach the Parquet sink).
    g1 = scored.filter("key = 'g1'").select("n_tokens", "n_oov_tokens").collect()[0]
    assert g1["n_tokens"] == result.tokens[0] and g1["n_oov_tokens"] == result.oov_tokens[0]
    assert scored.filter("key = 'nj'").select("n_tokens").collect()[0][0] is None
