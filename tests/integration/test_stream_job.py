"""The streaming job against the real broker and real Spark: every message scored or dead-lettered, restarts, hot swap."""

import json
import time
import uuid

import pytest

from ntm_spark.tools.services import create_topics

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.spark, pytest.mark.slow]

N_GOOD = 2000
N_BAD = 50
BAD_KINDS = ("not_json", "missing_text", "text_not_string", "too_large", "empty_after_normalization")
MAX_BYTES = 400_000


def producer(bootstrap):
    from kafka import KafkaProducer
    from kafka.serializer import DefaultSerializer

    return KafkaProducer(bootstrap_servers=bootstrap, key_serializer=DefaultSerializer(), value_serializer=DefaultSerializer(), acks="all", linger_ms=5)


def bad_message(kind, i):
    """(key, raw value) of a malformed message of ``kind``."""
    key = f"bad-{kind}-{i}"
    if kind == "not_json":
        return key, f"{{not json {i}".encode()
    if kind == "missing_text":
        return key, json.dumps({"id": key, "body": "no text"}).encode()
    if kind == "text_not_string":
        return key, json.dumps({"id": key, "text": [i, "x"]}).encode()
    if kind == "too_large":
        return key, json.dumps({"id": key, "text": "car " * (MAX_BYTES // 4 + 10)}).encode()
    return key, json.dumps({"id": key, "text": "Subject: none\n\nthe of and qqqzzz xxyyzz"}).encode()


def consume(bootstrap, topic, expected, timeout=120.0):
    """Every record of ``topic`` as (key, value dict), waiting until at least ``expected`` arrived."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False,
        group_id=f"t-{uuid.uuid4().hex[:8]}", consumer_timeout_ms=3000,
    )  # fmt: skip
    out, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for msg in consumer:
                out.append((msg.key.decode() if msg.key else None, json.loads(msg.value)))
            if len(out) >= expected:
                break
        # Drain what is already there (duplicates, if any).
        for msg in consumer:
            out.append((msg.key.decode() if msg.key else None, json.loads(msg.value)))
    finally:
        consumer.close()
    return out


@pytest.fixture(scope="module")
def good_docs(newsgroups_test_docs, stream_model_folder):
    """2,000 20NG test documents that keep at least one vocabulary word (the rest would be dead letters)."""
    from ntm_spark.serving.scoring import TopicScorer

    scorer = TopicScorer.from_model_folder(stream_model_folder)
    _, errors = scorer.vectorize_texts([t for _, t in newsgroups_test_docs])
    docs = [d for d, e in zip(newsgroups_test_docs, errors) if e is None and len(d[1].encode()) < MAX_BYTES // 2][:N_GOOD]
    assert len(docs) == N_GOOD
    return docs


@pytest.fixture(scope="module")
def input_topic(kafka_bootstrap, good_docs):
    """2,000 20NG test documents and 50 malformed messages of each kind, interleaved."""
    topic = f"docs-{uuid.uuid4().hex[:8]}"
    create_topics(kafka_bootstrap, topic)
    prod = producer(kafka_bootstrap)
    bad = [bad_message(kind, i) for i in range(N_BAD) for kind in BAD_KINDS]
    for i, (doc_id, text) in enumerate(good_docs):
        prod.send(topic, key=doc_id.encode(), value=json.dumps({"id": doc_id, "text": text}).encode())
        if i % 8 == 0 and bad:
            key, value = bad.pop()
            prod.send(topic, key=key.encode(), value=value)
    for key, value in bad:
        prod.send(topic, key=key.encode(), value=value)
    prod.flush()
    prod.close()
    return topic


def stream_cfg(tmp_path, kafka_bootstrap, input_topic, model, **kw):
    from ntm_spark.core.config import load_config

    out = f"out-{uuid.uuid4().hex[:8]}"
    overrides = {
        "bootstrap_servers": kafka_bootstrap, "input_topics": input_topic, "output_topic": out, "dead_letter_topic": out + "-dlq",
        "starting_offsets": "earliest", "trigger": "available_now", "checkpoint_location": str(tmp_path / "ckpt"),
        "model_uri": str(model), "max_message_bytes": MAX_BYTES, "status_file": str(tmp_path / "status.json"),
        **kw,
    }  # fmt: skip
    create_topics(kafka_bootstrap, out, out + "-dlq")
    return load_config("stream", overrides=[f"{k}={json.dumps(v)}" for k, v in overrides.items()])


def check_outputs(kafka_bootstrap, cfg, expect_exact):
    good = consume(kafka_bootstrap, cfg.output_topic, N_GOOD)
    dead = consume(kafka_bootstrap, cfg.dead_letter_topic, N_BAD * len(BAD_KINDS), timeout=30)
    by_id = {}
    for key, rec in good:
        assert key == rec["id"]
        assert abs(sum(rec["topic_weights"]) - 1.0) < 1e-5
        if rec["id"] in by_id:  # a documented at-least-once duplicate: same id, same output
            assert by_id[rec["id"]]["topic_weights"] == rec["topic_weights"]
        by_id[rec["id"]] = rec
    assert len(by_id) == N_GOOD
    codes = {}
    for key, rec in dead:
        codes.setdefault(rec["error_code"], set()).add(rec["source_offset"] * 10 + rec["source_partition"])
        assert rec["key"] == key and key.startswith("bad-" + rec["error_code"]), rec
        assert rec["raw_value"] and rec["error_message"] and rec["failed_at"]
    assert {k: len(v) for k, v in codes.items()} == {k: N_BAD for k in BAD_KINDS}
    if expect_exact:
        assert len(good) == N_GOOD and len(dead) == N_BAD * len(BAD_KINDS)
    return good, dead


def test_stream_scores_every_message_and_dead_letters_the_malformed(spark, kafka_bootstrap, input_topic, stream_model_folder, good_docs, tmp_path):
    from ntm_spark.spark.stream_query import run_stream

    cfg = stream_cfg(tmp_path, kafka_bootstrap, input_topic, stream_model_folder, max_offsets_per_trigger=1000)
    start = time.monotonic()
    summary = run_stream(spark, cfg, timeout=300)
    print(f"stream drained {N_GOOD + N_BAD * len(BAD_KINDS)} messages in {time.monotonic() - start:.1f}s")
    good, dead = check_outputs(kafka_bootstrap, cfg, expect_exact=True)
    assert {r["id"] for _, r in good} == {d for d, _ in good_docs}
    assert summary["total_scored"] == N_GOOD and summary["total_dead_letters"] == N_BAD * len(BAD_KINDS)
    assert summary["model_version"] == good[0][1]["model_version"]
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["total_dead_letters"] == N_BAD * len(BAD_KINDS)


def test_stream_stopped_midway_resumes_from_the_checkpoint(spark, kafka_bootstrap, input_topic, stream_model_folder, good_docs, tmp_path):
    from jobs.stream_score import main
    from ntm_spark.spark.stream_query import run_stream

    # One task per micro-batch for the 2-partition topic (max_tasks_per_batch), in both runs.
    cfg = stream_cfg(tmp_path, kafka_bootstrap, input_topic, stream_model_folder, max_offsets_per_trigger=500,
                     max_tasks_per_batch=1)  # fmt: skip
    first = run_stream(spark, cfg, max_batches=2)
    assert 1 <= first["batches"] < 5  # stopped before the backlog was drained
    # Restart through the CLI with the same checkpoint (from config): it drains the rest.
    sets = [f"{k}={json.dumps(getattr(cfg, k))}" for k in (
        "bootstrap_servers", "input_topics", "output_topic", "dead_letter_topic", "starting_offsets",
        "checkpoint_location", "model_uri", "max_message_bytes", "status_file", "max_offsets_per_trigger",
    )]  # fmt: skip
    assert main(["--trigger", "available_now", "--max-tasks-per-batch", "1", *[a for s in sets for a in ("--set", s)]]) == 0
    good, _ = check_outputs(kafka_bootstrap, cfg, expect_exact=False)
    assert {r["id"] for _, r in good} == {d for d, _ in good_docs}
    # At-least-once: at most the batch in flight at the stop is repeated.
    assert len(good) - N_GOOD <= 500


def test_max_tasks_per_batch_coalesces_the_kafka_partitions(spark, kafka_bootstrap, input_topic, tmp_path):
    from ntm_spark.spark.stream_query import read_messages

    def plan(**kw):
        cfg = stream_cfg(tmp_path, kafka_bootstrap, input_topic, "unused", **kw)
        return read_messages(spark, cfg)._jdf.queryExecution().logical().toString()

    assert "Repartition 1, false" in plan(max_tasks_per_batch=1)  # coalesce: no shuffle
    cores = spark.sparkContext.defaultParallelism  # auto, the default: Spark's cores
    assert f"Repartition {cores}, false" in plan()
    assert "Repartition" not in plan(max_tasks_per_batch=None)  # one task per Kafka partition
    assert "Repartition" not in plan(trigger="real_time", max_tasks_per_batch="auto")


@pytest.mark.mlflow
def test_moving_champion_swaps_the_model_without_a_restart(spark, kafka_bootstrap, stream_model_folder, newsgroups_test_docs, good_docs, mlflow_tracking, tmp_path):
    """The Python scorer (``scorer: python``) re-resolves the alias in its workers: the swap needs no restart (the JVM scorer's restarts, below)."""
    import mlflow
    from conftest import make_stream_model_folder
    from mlflow import MlflowClient

    from ntm_spark.serving.pyfunc_model import log_pyfunc_model
    from ntm_spark.spark.stream_query import start_stream

    name = f"ntm-swap-{uuid.uuid4().hex[:6]}"
    second = make_stream_model_folder(tmp_path / "v2", newsgroups_test_docs[:300], seed=5)
    client = MlflowClient(mlflow_tracking, mlflow_tracking)
    mlflow.set_experiment("ntm-stream-tests")
    for folder in (stream_model_folder, second):
        with mlflow.start_run():
            log_pyfunc_model(folder, registered_model_name=name)
    client.set_registered_model_alias(name, "champion", "1")

    topic = f"swap-{uuid.uuid4().hex[:8]}"
    create_topics(kafka_bootstrap, topic)
    cfg = stream_cfg(
        tmp_path, kafka_bootstrap, topic, f"models:/{name}@champion", trigger="processing_time",
        processing_time="300 milliseconds", model_refresh_interval_s=1.0, tracking_uri=mlflow_tracking, scorer="python",
    )  # fmt: skip
    query = start_stream(spark, cfg)
    prod = producer(kafka_bootstrap)
    docs = good_docs[:300]
    try:
        for i, (doc_id, text) in enumerate(docs):
            if i == 150:
                prod.flush()
                deadline = time.monotonic() + 90
                while len(consume(kafka_bootstrap, cfg.output_topic, 150, timeout=5)) < 150 and time.monotonic() < deadline:
                    pass
                client.set_registered_model_alias(name, "champion", "2")
                time.sleep(2.5)  # > model_refresh_interval_s
            prod.send(topic, key=doc_id.encode(), value=json.dumps({"id": doc_id, "text": text}).encode())
        prod.flush()
        good = consume(kafka_bootstrap, cfg.output_topic, len(docs), timeout=120)
    finally:
        prod.close()
        query.stop()
    assert query.exception() is None
    by_id = {r["id"]: r for _, r in good}
    assert set(by_id) == {d for d, _ in docs}  # none lost across the swap
    versions = [by_id[d]["model_version"] for d, _ in docs]
    assert versions[0] == "1" and versions[-1] == "2"
    assert set(versions[:150]) == {"1"} and set(versions[-100:]) == {"2"}


def test_parquet_sink_writes_every_good_record_once_per_batch(spark, kafka_bootstrap, input_topic, stream_model_folder, good_docs, tmp_path):
    from pyspark.sql import functions as F

    from ntm_spark.spark.stream_query import run_stream, write_batch

    parquet = tmp_path / "scored"
    cfg = stream_cfg(tmp_path, kafka_bootstrap, input_topic, stream_model_folder, max_offsets_per_trigger=1000, parquet_path=str(parquet))
    summary = run_stream(spark, cfg, timeout=300)
    check_outputs(kafka_bootstrap, cfg, expect_exact=True)  # the Kafka records of the same batches
    batches = sorted(p.name for p in parquet.iterdir() if p.name.startswith("batch_id="))
    assert len(batches) == summary["batches"] >= 2
    rows = spark.read.parquet(str(parquet)).select("id", "topic_weights", "model_version", "error_code").collect()
    assert sorted(r["id"] for r in rows) == sorted(d for d, _ in good_docs)  # good records only, each once
    assert all(r["error_code"] is None and abs(sum(r["topic_weights"]) - 1) < 1e-5 for r in rows)
    # ... with each document's text, which `ntm train --warm-start --data <sink>` retrains on
    texts = {r["id"]: r["text"] for r in spark.read.parquet(str(parquet)).select("id", "text").collect()}
    assert texts == dict(good_docs)

    # A replayed batch (same batch_id, as after a failure) replaces its folder instead of adding rows.
    first = spark.read.parquet(str(parquet / batches[0]))
    before = first.count()
    replay = first.withColumn("raw_value", F.lit(None).cast("string")).withColumn("raw_value_truncated", F.lit(False))
    write_batch(replay.localCheckpoint(), int(batches[0].split("=")[1]), cfg)
    assert spark.read.parquet(str(parquet / batches[0])).count() == before
    assert spark.read.parquet(str(parquet)).count() == len(rows)


def test_real_time_trigger_scores_in_the_jvm(spark, kafka_bootstrap, input_topic, stream_model_folder, good_docs, tmp_path, monkeypatch):
    """`trigger: real_time` scores with the JVM scorer (no Python operator): every message scored or dead-lettered, as the Python scorer would.

    Drift monitoring runs too: its windows count every message, and the JVM scorer's token and OOV
    counts add up to the Python scorer's.
    """
    import numpy as np

    monkeypatch.setenv("NTM_HOME", str(tmp_path / "home"))  # the staged jvm-models/ copy goes there, not into the user's state

    from ntm_spark.serving.model_loader import ModelSpec, folder_version, jvm_model_folder
    from ntm_spark.serving.scoring import TopicScorer
    from ntm_spark.spark.stream_query import run_stream

    cfg = stream_cfg(
        tmp_path, kafka_bootstrap, input_topic, stream_model_folder, trigger="real_time", real_time_batch_duration="20 seconds"
    )
    start = time.monotonic()
    windows: list = []
    summary = run_stream(spark, cfg, timeout=75, drift_sinks=[windows.append])
    print(f"real-time stream ran {time.monotonic() - start:.1f}s; drift windows {len(windows)}")
    good, dead = check_outputs(kafka_bootstrap, cfg, expect_exact=False)
    assert {r["id"] for _, r in good} == {d for d, _ in good_docs}
    assert {r["model_version"] for _, r in good} == {folder_version(stream_model_folder)}
    # scored_at is each record's scoring time, not the long-running batch's start (current_timestamp()).
    assert len({r["scored_at"] for _, r in good}) > 100 and all(r["failed_at"] for _, r in dead)
    # The records are the Python scorer's: weights within 1e-5, the same top topics' words.
    scorer = TopicScorer.from_model_folder(stream_model_folder)
    texts = dict(good_docs)
    sample = sorted({r["id"]: r for _, r in good}.values(), key=lambda r: r["id"])[:300]
    result = scorer.score_texts([texts[r["id"]] for r in sample])
    for rec, weights in zip(sample, result.weights):
        assert np.abs(np.asarray(rec["topic_weights"]) - weights).max() <= 1e-5
        assert [t["words"] for t in rec["top_topics"]] == [t["words"] for t in scorer.top_topics(weights, k=3, words=5)]
    # Drift: every message was read in the first real-time batch (the topic was full), so the windows
    # count each once; the texts that reached normalization are the good ones and the
    # empty_after_normalization ones, and their token and OOV counts are the Python scorer's on the
    # folder the stream scored with (staged as the registry stages it: its closed lemma table keeps
    # a token whose WordNet lemma is a stop word, so the training folder's WordNet counts differ).
    assert summary["drift_windows"] == len(windows) >= 1
    staged, _, _ = jvm_model_folder(ModelSpec(str(stream_model_folder)))
    normalized = [t for _, t in good_docs] + [json.loads(bad_message("empty_after_normalization", i)[1])["text"] for i in range(N_BAD)]
    counted = TopicScorer.from_model_folder(staged).score_texts(normalized)
    total = {key: sum(w[key] for w in windows) for key in ("records", "scored", "normalized", "empty", "tokens", "oov_tokens")}
    assert total == {
        "records": N_GOOD + N_BAD * len(BAD_KINDS), "scored": N_GOOD, "normalized": len(normalized), "empty": N_BAD,
        "tokens": int(counted.tokens.sum()), "oov_tokens": int(counted.oov_tokens.sum()),
    }  # fmt: skip
    assert all(w["oov_rate"] is not None and len(w["prevalence"]) == scorer.num_topics for w in windows if w["scored"])


@pytest.mark.parametrize("trigger", ["real_time", "processing_time"])
def test_jvm_scorer_moving_champion_restarts_with_the_new_version(spark, kafka_bootstrap, stream_model_folder, newsgroups_test_docs, good_docs, mlflow_tracking, tmp_path, monkeypatch, trigger):
    """The JVM scorer (real-time mode, and micro-batches by default) resolves the alias per query: when it moves, the query restarts from its checkpoint with the new version, losing nothing."""
    import threading

    import mlflow
    from conftest import make_stream_model_folder
    from mlflow import MlflowClient

    from ntm_spark.serving.pyfunc_model import log_pyfunc_model
    from ntm_spark.spark.stream_query import run_stream

    monkeypatch.setenv("NTM_HOME", str(tmp_path / "home"))
    name = f"ntm-rt-swap-{uuid.uuid4().hex[:6]}"
    second = make_stream_model_folder(tmp_path / "v2", newsgroups_test_docs[:300], seed=5)
    client = MlflowClient(mlflow_tracking, mlflow_tracking)
    mlflow.set_experiment("ntm-stream-tests")
    for folder in (stream_model_folder, second):
        with mlflow.start_run():
            log_pyfunc_model(folder, registered_model_name=name)
    client.set_registered_model_alias(name, "champion", "1")
    topic = f"rt-swap-{uuid.uuid4().hex[:8]}"
    create_topics(kafka_bootstrap, topic, partitions=1)
    timing = {"real_time_batch_duration": "30 seconds"} if trigger == "real_time" else {"processing_time": "300 milliseconds"}
    cfg = stream_cfg(
        tmp_path, kafka_bootstrap, topic, f"models:/{name}@champion", trigger=trigger, **timing,
        model_refresh_interval_s=1.0, tracking_uri=mlflow_tracking, scorer="jvm",
    )  # fmt: skip
    runner = threading.Thread(target=run_stream, args=(spark, cfg), kwargs={"timeout": 100}, daemon=True)
    runner.start()
    prod = producer(kafka_bootstrap)
    docs = good_docs[:300]
    try:
        for i, (doc_id, text) in enumerate(docs):
            if i == 150:
                prod.flush()
                deadline = time.monotonic() + 90
                while len(consume(kafka_bootstrap, cfg.output_topic, 150, timeout=5)) < 150 and time.monotonic() < deadline:
                    pass
                client.set_registered_model_alias(name, "champion", "2")
                time.sleep(3)  # > model_refresh_interval_s: the supervisor sees the move and restarts
            prod.send(topic, key=doc_id.encode(), value=json.dumps({"id": doc_id, "text": text}).encode())
        prod.flush()
        good = consume(kafka_bootstrap, cfg.output_topic, len(docs), timeout=120)
    finally:
        prod.close()
        runner.join(timeout=150)
    by_id = {}
    for _, r in good:
        by_id.setdefault(r["id"], r)  # a replayed record (at-least-once) comes later with the same id
    assert set(by_id) == {d for d, _ in docs}  # none lost across the restart
    versions = [by_id[d]["model_version"] for d, _ in docs]
    assert set(versions[:150]) == {"1"} and set(versions[-100:]) == {"2"}


def test_real_time_warns_when_the_input_has_more_partitions_than_task_slots(spark, kafka_bootstrap, tmp_path):
    # Real-time mode holds a task slot per partition: on local[2], 2 of 3 partitions would be served.
    from ntm_spark.core.config import load_config
    from ntm_spark.spark.stream_query import check_real_time_slots

    wide, narrow = f"rt-wide-{uuid.uuid4().hex[:6]}", f"rt-narrow-{uuid.uuid4().hex[:6]}"
    create_topics(kafka_bootstrap, wide, partitions=3)
    create_topics(kafka_bootstrap, narrow, partitions=2)

    def cfg(topics):
        return load_config("stream", overrides=[f"bootstrap_servers={json.dumps(kafka_bootstrap)}", f"input_topics={json.dumps(topics)}",
                                                "trigger=real_time", f"checkpoint_location={json.dumps(str(tmp_path / 'ckpt'))}"])  # fmt: skip

    assert spark.sparkContext.master == "local[2]"
    problem = check_real_time_slots(spark, cfg(wide))
    assert problem and "3 partitions but Spark has 2 task slots" in problem and "--master local[3]" in problem
    assert check_real_time_slots(spark, cfg(narrow)) is None
    assert check_real_time_slots(spark, cfg(f"{narrow},{wide}")) is not None  # 5 partitions together
    assert check_real_time_slots(spark, cfg(f"rt-missing-{uuid.uuid4().hex[:6]}")) is None  # not there yet: the supervisor waits
