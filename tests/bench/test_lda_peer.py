"""The benchmarks' Spark LDA peer (bench/lda_peer.py): trained, saved, loaded, and scoring parsed messages like the NTM."""

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
pytestmark = [pytest.mark.spark]


def kafka_rows(spark, values):
    import datetime as dt

    rows = [(k.encode(), v.encode(), "documents", 0, i, dt.datetime(2026, 1, 1), 0) for i, (k, v) in enumerate(values)]
    return spark.createDataFrame(
        rows, "key binary, value binary, topic string, partition int, offset long, timestamp timestamp, timestampType int"
    )


@pytest.fixture(scope="module")
def lda_peer(spark):
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spark.sparkContext.addPyFile(str(BENCH / "lda_peer.py"))  # the Python workers import it
    import lda_peer

    return lda_peer


def test_the_lda_peer_scores_the_stream_like_the_ntm(spark, lda_peer, stream_model_folder, newsgroups_test_docs, tmp_path):
    from ntm_spark.core.contract import read_manifest, read_vocabulary, text_rules_from_manifest
    from ntm_spark.core.text import get_normalizer
    from ntm_spark.spark.io import bow_spark_schema
    from ntm_spark.spark.streaming import parse_messages

    vocab = read_vocabulary(stream_model_folder)
    norm = get_normalizer(**text_rules_from_manifest(read_manifest(stream_model_folder, required=False)))
    rows = []
    for doc_id, text in newsgroups_test_docs[:200]:
        idx, val = vocab.to_bow(norm.normalize(text))
        if len(idx):
            rows.append((doc_id, None, int(val.sum()), [int(i) for i in idx], [float(v) for v in val]))
    folder = lda_peer.train_lda_peer(spark, spark.createDataFrame(rows, bow_spark_schema()), stream_model_folder, tmp_path / "lda", num_topics=5, max_iter=3)
    peer = lda_peer.LdaPeer.load(folder)
    good = newsgroups_test_docs[0][1]
    messages = [("g", json.dumps({"id": "g", "text": good})), ("nj", "{not json"), ("tr", json.dumps({"id": "tr", "text": good}) + " x"),
                ("mt", json.dumps({"id": "mt"}))]  # fmt: skip
    scored = lda_peer.score_batch_lda(parse_messages(kafka_rows(spark, messages)), peer, top_k=2, top_words=3).collect()
    by_key = {r["key"]: r for r in scored}
    assert abs(sum(by_key["g"]["topic_weights"]) - 1) < 1e-4 and len(by_key["g"]["top_topics"]) == 2
    assert by_key["g"]["error_code"] is None and by_key["g"]["model_name"] == peer.name
    assert by_key["nj"]["error_code"] == "not_json" and by_key["tr"]["error_code"] == "not_json"
    assert by_key["mt"]["error_code"] == "missing_text"
