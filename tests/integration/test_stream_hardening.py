"""The stream tried from outside (issue 15): fuzzed bytes through a real broker, a kill -9 broker outage, a missing topic.

* A Hypothesis suite sends arbitrary keys and values (invalid UTF-8, empty, huge, deeply nested,
  trailing garbage, odd JSON) to a real topic while the query runs; afterwards every produced
  offset is exactly one output record or one dead letter, and the query is still active.
  ``NTM_FUZZ_EXAMPLES`` sets the number of examples (the ``slow`` run uses more).
* The broker is killed with -9 under a running ``ntm stream`` process and kept down longer
  than the (shortened) client timeouts; once it is back, every message produced before and
  after is scored once, with no manual restart. The records are read back with ``kcat``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Optional

import pytest

from ntm_spark.tools.services import create_topics
from tests.conftest import stop_process_group

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.spark]

KCAT = shutil.which("kcat")
MAX_BYTES = 20_000
ROOT = Path(__file__).resolve().parents[2]


def kcat_consume(bootstrap: str, topic: str, expected: int, timeout: float = 90.0) -> list:
    """Every record of ``topic`` read with kcat (a client this project did not write), as parsed JSON values."""
    deadline = time.monotonic() + timeout
    records: list = []
    while True:
        out = subprocess.run(
            # The value only: it is one line of JSON (keys may hold any byte, newlines included).
            [KCAT, "-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%s\n"],
            capture_output=True, timeout=60, check=False,
        )  # fmt: skip
        records = [json.loads(line) for line in out.stdout.decode("utf-8").split("\n") if line.strip()]  # not splitlines(): \x85 is not a line end
        if len(records) >= expected or time.monotonic() > deadline:
            return [{"value": r} for r in records]
        time.sleep(1.0)


def decoded(raw):
    """The project's decoding rule, as the stream applies it to keys: UTF-8, else Latin-1."""
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


# --------------------------------------------------------------------------- fuzz


def _strategies(good_text):
    from hypothesis import strategies as st

    json_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
    json_any = st.recursive(json_leaf, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4), max_leaves=12)
    doc = st.fixed_dictionaries({"id": st.text(max_size=20) | st.integers() | st.none(), "text": st.text(max_size=200) | st.just(good_text)})
    deep = st.integers(min_value=1, max_value=20_000).map(lambda n: ("[" * n + "]" * n).encode())
    deep_obj = st.integers(min_value=1, max_value=5_000).map(lambda n: ('{"a":' * n + "1" + "}" * n).encode())
    value = st.one_of(
        st.none(),
        st.binary(max_size=400),
        json_any.map(lambda v: json.dumps(v).encode()),
        doc.map(lambda d: json.dumps(d).encode()),
        st.tuples(doc, st.binary(min_size=1, max_size=20)).map(lambda t: json.dumps(t[0]).encode() + t[1]),
        doc.map(lambda d: json.dumps(d, ensure_ascii=False).encode("latin-1", errors="replace")),
        deep,
        deep_obj,
        st.integers(min_value=MAX_BYTES - 50, max_value=MAX_BYTES * 3).map(lambda n: json.dumps({"id": "big", "text": "car " * (n // 4)}).encode()),
        st.just(b""),
        st.just(b'{"id":"a","text":"b"} trailing'),
        st.just(b"{}}"),
    )
    key = st.none() | st.binary(max_size=40)
    # A Kafka record needs a key or a value: a keyless tombstone is not sendable.
    pair = st.tuples(key, value).map(lambda kv: (b"tombstone", None) if kv == (None, None) else kv)
    return st.lists(pair, min_size=3, max_size=40)


@pytest.fixture(scope="module")
def fuzz_stream(spark, kafka_bootstrap, stream_model_folder, tmp_path_factory):
    """A running query (processing-time trigger) on a fresh topic; yields (cfg, query)."""
    from ntm_spark.core.config import load_config
    from ntm_spark.spark.stream_query import start_stream

    tmp = tmp_path_factory.mktemp("fuzz")
    topic = f"fuzz-{uuid.uuid4().hex[:8]}"
    create_topics(kafka_bootstrap, topic, topic + "-out", topic + "-dlq", partitions=1)
    overrides = {
        "bootstrap_servers": kafka_bootstrap, "input_topics": topic, "output_topic": topic + "-out",
        "dead_letter_topic": topic + "-dlq", "starting_offsets": "earliest", "processing_time": "200 milliseconds",
        "checkpoint_location": str(tmp / "ckpt"), "model_uri": str(stream_model_folder), "max_message_bytes": MAX_BYTES,
        "status_file": str(tmp / "status.json"),
    }  # fmt: skip
    cfg = load_config("stream", overrides=[f"{k}={json.dumps(v)}" for k, v in overrides.items()])
    query = start_stream(spark, cfg)
    try:
        yield cfg, query
    finally:
        query.stop()


def test_fuzzed_kafka_messages_each_end_as_one_record_and_the_query_lives(fuzz_stream, kafka_bootstrap, stream_model_folder):
    from hypothesis import HealthCheck, given, settings
    from kafka import KafkaProducer

    cfg, query = fuzz_stream
    good_text = "Subject: x\n\n" + " ".join((stream_model_folder / "vocab.txt").read_text().split()[:30])
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", max_request_size=MAX_BYTES * 4)
    produced: dict = {}  # offset -> key bytes
    examples = int(os.environ.get("NTM_FUZZ_EXAMPLES", "20"))

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(_strategies(good_text))
    def send_batch(messages):
        for key, value in messages:
            meta = producer.send(cfg.input_topics, key=key, value=value).get(timeout=30)
            produced[meta.offset] = key
        producer.flush()

    send_batch()
    producer.close()
    out = kcat_consume(kafka_bootstrap, cfg.output_topic, 0, timeout=0)
    dead: list = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        out = kcat_consume(kafka_bootstrap, cfg.output_topic, 0, timeout=0)
        dead = kcat_consume(kafka_bootstrap, cfg.dead_letter_topic, 0, timeout=0)
        if len(out) + len(dead) >= len(produced):
            break
        time.sleep(1.0)
    seen: dict = {}
    for rec in out + dead:
        offset = rec["value"]["source_offset"]
        seen[offset] = seen.get(offset, 0) + 1
    assert query.isActive and query.exception() is None, query.exception()
    assert set(seen) == set(produced), f"missing offsets {sorted(set(produced) - set(seen))[:10]}"
    assert all(n == 1 for n in seen.values()), {o: n for o, n in seen.items() if n > 1}
    for rec in out:
        value = rec["value"]
        weights = value["topic_weights"]
        assert abs(sum(weights) - 1) < 1e-5 and all(w == w for w in weights)
    for rec in dead:
        value = rec["value"]
        assert value["error_code"] and value["error_message"]
        assert value["key"] == decoded(produced[value["source_offset"]])  # every key is accounted for
    print(f"fuzz: {len(produced)} messages -> {len(out)} scored + {len(dead)} dead letters")


# --------------------------------------------------------------------------- broker outage


@pytest.fixture()
def own_broker(tmp_path):
    """A broker of this test's own (it gets killed), on free ports."""
    from ntm_spark.core.config import load_config
    from ntm_spark.tools.services import KafkaBroker, free_port

    cfg = load_config("services", overrides=[f"kafka_port={free_port()}", f"kafka_controller_port={free_port()}"])
    broker = KafkaBroker(cfg, workdir=tmp_path / "kafka")
    broker.up()
    try:
        yield broker
    finally:
        broker.down()


def kcat_produce(bootstrap: str, topic: str, docs: list) -> None:
    lines = "".join(f"{d}\t{json.dumps({'id': d, 'text': t})}\n" for d, t in docs)
    subprocess.run([KCAT, "-b", bootstrap, "-P", "-t", topic, "-K", "\t"], input=lines.encode(), check=True, timeout=60)


def read_status(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def start_stream_process(bootstrap: str, topic: str, sets: dict, log: Path, timeout_s: int = 400, env: Optional[dict] = None):
    """``ntm stream`` (``python -m jobs.stream_score``) as a subprocess in its own process group, output to ``log``.

    Reads ``topic``, writes ``<topic>-out`` / ``<topic>-dlq``; ``sets`` are ``--set`` overrides (JSON values).
    The caller ends it with :func:`stop_process_group` (or ``os.killpg``).
    """
    cmd = [sys.executable, "-m", "jobs.stream_score", "--bootstrap-servers", bootstrap, "--input-topics", topic,
           "--output-topic", topic + "-out", "--dead-letter-topic", topic + "-dlq", "--timeout", str(timeout_s)]  # fmt: skip
    for k, v in sets.items():
        cmd += ["--set", f"{k}={json.dumps(v)}"]
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "SPARK_LOCAL_IP": "127.0.0.1", **(env or {})}
    with open(log, "ab") as fh:
        return subprocess.Popen(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, env=full_env, start_new_session=True)


def scorable_docs(model_folder: Path, newsgroups_test_docs: list, n: int) -> list:
    """``n`` (id, text) 20NG test documents the model scores (no dead letter), ids ``d<i>``."""
    from ntm_spark.serving.scoring import TopicScorer

    candidates = [text for _, text in newsgroups_test_docs[: 4 * n] if len(text) < 20_000]
    _, errors = TopicScorer.from_model_folder(model_folder).vectorize_texts(candidates)
    docs = [(f"d{i}", text) for i, (text, err) in enumerate(zip(candidates, errors)) if err is None][:n]
    assert len(docs) == n
    return docs


def wait_for(predicate, timeout: float, what: str, proc=None, log=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the stream exited ({proc.returncode}) while waiting for {what}:\n{log.read_text()[-4000:]}")
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout}s waiting for {what}" + (f":\n{log.read_text()[-4000:]}" if log else ""))


@pytest.mark.slow
@pytest.mark.skipif(KCAT is None, reason="kcat is installed by `make test` (Debian's kcat package)")
def test_stream_waits_for_its_topic_and_outlives_a_kill_9_broker_outage(own_broker, stream_model_folder, newsgroups_test_docs, tmp_path):
    bootstrap = own_broker.bootstrap_servers
    topic = f"docs-{uuid.uuid4().hex[:6]}"
    create_topics(bootstrap, topic + "-out", topic + "-dlq", partitions=1)
    status = tmp_path / "status.json"
    short = {"request.timeout.ms": 2000, "default.api.timeout.ms": 3000, "delivery.timeout.ms": 5000, "max.block.ms": 3000,
             "reconnect.backoff.max.ms": 1000}  # fmt: skip
    sets = {
        "starting_offsets": "earliest", "processing_time": "300 milliseconds", "checkpoint_location": str(tmp_path / "ckpt"),
        "model_uri": str(stream_model_folder), "status_file": str(status), "kafka_options": short,
        "restart_backoff_initial_s": 0.5, "restart_backoff_max_s": 2, "broker_probe_timeout_s": 2,
    }  # fmt: skip
    log = tmp_path / "stream.log"
    proc = start_stream_process(bootstrap, topic, sets, log)
    docs = scorable_docs(stream_model_folder, newsgroups_test_docs, 120)
    before, after = docs[:60], docs[60:]
    try:
        # 1. The input topic does not exist yet: one clear line per attempt, no stack trace, state waiting_for_topics.
        wait_for(lambda: read_status(status).get("state") == "waiting_for_topics", 120, "waiting_for_topics", proc, log)
        text = log.read_text(errors="replace")
        assert "do not exist" in text and topic in text
        assert "Traceback" not in text and "UnknownTopicOrPartitionException" not in text
        create_topics(bootstrap, topic, partitions=1)
        kcat_produce(bootstrap, topic, before)
        got = kcat_consume(bootstrap, topic + "-out", len(before), timeout=120)
        assert len(got) >= len(before), log.read_text()[-3000:]

        # 2. kill -9 the broker; keep it down well past the client timeouts.
        pid = own_broker.proc.pid()
        os.kill(pid, signal.SIGKILL)
        down_at = time.monotonic()
        wait_for(lambda: read_status(status).get("state") == "waiting_for_broker", 90, "waiting_for_broker", proc, log)
        time.sleep(max(0.0, 20 - (time.monotonic() - down_at)))
        assert proc.poll() is None, log.read_text()[-3000:]

        # 3. The broker comes back on the same storage and ports; the stream resumes by itself.
        own_broker.up()
        kcat_produce(bootstrap, topic, after)
        got = kcat_consume(bootstrap, topic + "-out", len(docs), timeout=180)
        ids = [r["value"]["id"] for r in got]
        assert sorted(set(ids)) == sorted(d for d, _ in docs), log.read_text()[-3000:]
        assert len(ids) == len(set(ids)), "a message was scored twice"
        assert proc.poll() is None
        wait_for(lambda: read_status(status).get("state") == "running", 60, "state running again", proc, log)
        assert "is ready after" in log.read_text(errors="replace")
    finally:
        stop_process_group(proc)


# --------------------------------------------------------------------------- kill -9 of the stream (real-time mode)


@pytest.mark.slow
@pytest.mark.skipif(KCAT is None, reason="kcat is installed by `make test` (Debian's kcat package)")
def test_real_time_stream_killed_with_kill_9_restarts_from_its_checkpoint_losing_nothing(
    kafka_bootstrap, stream_model_folder, newsgroups_test_docs, tmp_path
):
    """``ntm stream --trigger real_time`` (the JVM scorer) killed with -9 in the middle of a long-running batch.

    Real-time mode writes its offset and commit logs when a batch ends. The first batch (messages A)
    ends and is committed; messages B are scored in the second, and the whole process group is
    killed with -9 before it ends; messages C arrive while the job is down. The restart on the same
    checkpoint resumes after the committed batch: every message is in the output topic at least
    once, A exactly once (not read again), B again (the cut batch is replayed: at-least-once, the
    same records), and there are no dead letters. One input partition: real-time mode holds a core
    per partition, and this machine has two.
    """
    bootstrap, topic = kafka_bootstrap, f"rt-kill-{uuid.uuid4().hex[:6]}"
    create_topics(bootstrap, topic, topic + "-out", topic + "-dlq", partitions=1)
    ckpt = tmp_path / "ckpt"
    sets = {
        "trigger": "real_time", "real_time_batch_duration": "20 seconds", "starting_offsets": "earliest",
        "checkpoint_location": str(ckpt), "model_uri": str(stream_model_folder), "status_file": str(tmp_path / "status.json"),
        "drift": False,
    }  # fmt: skip
    env = {"NTM_HOME": str(tmp_path / "home")}  # the JVM scorer's staged model goes there, not into the user's state
    docs = scorable_docs(stream_model_folder, newsgroups_test_docs, 60)
    a, b, c = docs[:20], docs[20:40], docs[40:]
    log = tmp_path / "stream.log"

    def records() -> list:
        return kcat_consume(bootstrap, topic + "-out", 0, timeout=0)

    proc = start_stream_process(bootstrap, topic, sets, log, timeout_s=300, env=env)
    try:
        # 1. A is scored as it arrives, and its batch ends and is committed.
        kcat_produce(bootstrap, topic, a)
        wait_for(lambda: len(records()) >= len(a), 240, "A's records", proc, log)
        wait_for(lambda: (ckpt / "commits" / "0").is_file(), 60, "the first real-time batch's commit", proc, log)
        # 2. B is scored inside the second batch; kill -9 of the process group (driver, JVM) before it ends.
        kcat_produce(bootstrap, topic, b)
        wait_for(lambda: len(records()) >= len(a) + len(b), 60, "B's records", proc, log)
        assert not (ckpt / "commits" / "1").exists(), "the second batch ended before the kill: the kill must land mid-batch"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        assert proc.returncode == -signal.SIGKILL
        before_restart = len(records())
        # 3. C arrives while the job is down; the same command restarts on the same checkpoint.
        kcat_produce(bootstrap, topic, c)
        proc = start_stream_process(bootstrap, topic, sets, log, timeout_s=300, env=env)
        want = {d for d, _ in docs}
        out: list = []

        def all_scored() -> bool:
            out[:] = records()
            return {r["value"]["id"] for r in out} >= want

        wait_for(all_scored, 240, "every message's record after the restart", proc, log)
    finally:
        stop_process_group(proc)
    counts: dict = {}
    weights: dict = {}
    for r in out:  # a replayed record is the same record (same model version), scored_at aside
        value = r["value"]
        counts[value["id"]] = counts.get(value["id"], 0) + 1
        assert weights.setdefault(value["id"], value["topic_weights"]) == value["topic_weights"]
    assert set(counts) == want, log.read_text(errors="replace")[-3000:]  # nothing lost
    assert all(counts[d] == 1 for d, _ in a), "the committed batch was read again after the restart"
    assert all(counts[d] <= 2 for d, _ in b) and all(counts[d] == 1 for d, _ in c)
    dead = kcat_consume(bootstrap, topic + "-dlq", 0, timeout=0)
    duplicates = sum(n - 1 for n in counts.values())
    print(f"real-time kill -9: {len(docs)} messages, {before_restart} records before the kill, {len(out)} after the restart "
          f"({duplicates} duplicates, all of B's {len(b)}: {sum(counts[d] - 1 for d, _ in b)}), {len(dead)} dead letters")  # fmt: skip
    assert dead == []
