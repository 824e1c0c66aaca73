"""Streaming and backfill benchmark: end-to-end latency, sustained throughput, NTM vs the MLlib LDA peer.

Usage:
    PYSPARK_PYTHON=.venv/bin/python .venv/bin/python bench/bench_streaming.py \\
        [--bootstrap HOST:PORT] [--rates 100 1000] [--seconds 20] [--drain-docs 20000] \\
        [--backfill-scales 1 10] [--set KEY=JSON] [--spark-conf KEY=VALUE] [--json out.json]

Latency is measured from the producer's send time (carried in the message) to the
moment a consumer of the output topic receives the record. Throughput is the
time to drain a backlog with ``trigger=available_now`` (query start excluded via
the query's own progress durations). Everything runs on this machine: the real
KRaft broker (started on free ports unless ``--bootstrap``) and Spark ``local[2]`` (``--master``).

Each latency window also splits every record's path at the broker (the input topic is created with
``LogAppendTime``; the output record's ``CreateTime`` is the stream's sink send): ``stages`` gives
producer -> broker, the stream, and sink -> consumer, with what the slowest 1 % spent in each, and
``cores_used`` the CPU of the Spark JVM, the broker and the machine. ``--clients kcat`` offers and
reads with kcat (librdkafka) in their own processes instead of kafka-python threads of this one.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import sys
import tarfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

from ntm_spark.tools.services import create_topics  # noqa: E402


def read_docs(limit=None, split=None):
    from ntm_spark.spark.corpus import locate_20newsgroups

    docs = []
    with tarfile.open(locate_20newsgroups(download=False)) as tar:
        for m in tar:
            parts = m.name.split("/")
            if not m.isfile() or len(parts) != 3 or (split and parts[0] != split):
                continue
            docs.append(("/".join(parts), tar.extractfile(m).read().decode("utf-8", errors="replace")))
            if limit and len(docs) >= limit:
                break
    return docs


def build_models(work, docs, k=20, vocab_size=2000):
    """A (randomly initialised) NTM over the docs' vocabulary and an LDA peer trained on the same bag-of-words."""
    import torch

    from lightning_module.model import NTMModel
    from lightning_module.model_folder import save_model_folder
    from ntm_spark.core.text import get_normalizer
    from ntm_spark.core.vocab import Vocabulary
    from ntm_spark.serving.pyfunc_model import stage_model_folder

    norm = get_normalizer(clean=True, stop_words="english")
    tokens = [norm.normalize(t) for _, t in docs]
    df = Counter(w for toks in tokens for w in set(toks))
    words = sorted(w for w, _ in df.most_common(vocab_size))
    torch.manual_seed(0)
    raw = save_model_folder(work / "ntm-raw", NTMModel(vocab_size=len(words), num_topics=k), words)
    # As the registry stages it: with the lemma table closed over the vocabulary (no WordNet in the workers).
    ntm = stage_model_folder(raw, work / "ntm")
    vocab = Vocabulary(words)
    rows = []
    for (doc_id, _), toks in zip(docs, tokens):
        idx, val = vocab.to_bow(toks)
        if len(idx):
            rows.append((doc_id, None, int(val.sum()), [int(i) for i in idx], [float(v) for v in val]))
    return ntm, rows


def ensure_broker(bootstrap, work):
    if bootstrap:
        return bootstrap, None
    from ntm_spark.core.config import load_config
    from ntm_spark.tools.services import KafkaBroker, free_port

    cfg = load_config("services", overrides=[f"kafka_port={free_port()}", f"kafka_controller_port={free_port()}"])
    # A fresh log folder every run: each run creates its own topics, and a broker that carries
    # hundreds of old partitions does more background work beside the measured stream.
    shutil.rmtree(work / "kafka", ignore_errors=True)
    broker = KafkaBroker(cfg, workdir=work / "kafka")
    return broker.up(), broker


#: ``--set key=value`` stream-config overrides applied to every query (JSON values).
STREAM_OVERRIDES: dict = {}


def lda_score(folder, cfg):
    """The LDA peer as the stream's scorer (benchmark code: bench/lda_peer.py)."""
    from lda_peer import LdaPeer, score_batch_lda

    peer = LdaPeer.load(folder, max_text_bytes=cfg.max_message_bytes)
    return lambda parsed: score_batch_lda(parsed, peer, cfg.top_k, cfg.top_words)


def stream_cfg(bootstrap, topic, model, kind, work, **kw):
    from ntm_spark.core.config import load_config

    out = f"{topic}-out-{uuid.uuid4().hex[:6]}"
    create_topics(bootstrap, out, out + "-dlq")
    values = {
        **STREAM_OVERRIDES,
        "bootstrap_servers": bootstrap, "input_topics": topic, "output_topic": out, "dead_letter_topic": out + "-dlq",
        "checkpoint_location": str(work / f"ckpt-{uuid.uuid4().hex[:8]}"), "model_uri": str(model),
        "status_file": str(work / "status.json"), **kw,
    }  # fmt: skip
    return load_config("stream", overrides=[f"{k}={json.dumps(v)}" for k, v in values.items()])


def percentiles(values):
    import numpy as np

    if not values:
        return {"n": 0}
    arr = np.asarray(values) * 1000.0
    return {"n": len(values), "p50_ms": float(np.percentile(arr, 50)), "p95_ms": float(np.percentile(arr, 95)), "p99_ms": float(np.percentile(arr, 99))}


def trigger_kwargs(trig: str) -> dict:
    """``"processing_time:100 milliseconds"`` -> the stream config's trigger fields.

    ``real_time:<duration>`` runs the Python scorer past Spark's allowlist; ``real_time_jvm:<duration>``
    is what ``trigger: real_time`` does by default, the JVM scorer.
    """
    mode, _, interval = trig.partition(":")
    extra = {"trigger": mode}
    if mode == "processing_time":
        extra["processing_time"] = interval
    elif mode == "real_time":
        extra.update(real_time_batch_duration=interval or "10 seconds", real_time_allow_python=True)
    elif mode == "real_time_jvm":
        extra.update(trigger="real_time", real_time_batch_duration=interval or "10 seconds", real_time_allow_python=False)
    return extra


#: Run the measured window's producer and consumer in their own processes (``--separate-processes``)
#: instead of threads of the driver's process (the default, as every figure in BENCHMARKS.md).
SEPARATE_PROCESSES = False
#: Partitions of the measured input topic (``--input-partitions``): one Spark task per partition per batch.
INPUT_PARTITIONS = 2
#: The model's K when drift monitoring's per-batch sums are on (``--drift on``), else None.
DRIFT_TOPICS = None


def _consume_process(bootstrap, topic, ready, done, results):
    """Child process: record each output record's receive time by key until ``done`` is set.

    Results: ``{key: receive time}`` and ``{key: the output record's Kafka timestamp (s)}``.
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, consumer_timeout_ms=200, fetch_max_wait_ms=CONSUMER_FETCH_MAX_WAIT_MS, enable_auto_commit=False)
    parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [0])]
    consumer.assign(parts)
    consumer.seek_to_end(*parts)
    for tp in parts:
        consumer.position(tp)  # resolve the end offsets now, before the producer starts
    ready.set()
    received, stamped = {}, {}
    while not done.is_set():
        for msg in consumer:
            received.setdefault(msg.key.decode(), time.time())
            stamped.setdefault(msg.key.decode(), msg.timestamp / 1000.0)
    for msg in consumer:  # what arrived while stopping
        received.setdefault(msg.key.decode(), time.time())
        stamped.setdefault(msg.key.decode(), msg.timestamp / 1000.0)
    consumer.close()
    results.put((received, stamped))


def offer(prod, topic, texts, rate, seconds, offset=0, prefix="", sent_at=None, stop=None, due_at=None) -> int:
    """Send ``rate`` messages/s of ``texts`` (from ``offset``) for ``seconds``; return how many.

    Keys are ``<prefix><n>:<doc id>``; with ``sent_at``, each send time is recorded by key, and with
    ``due_at`` the time the schedule wanted it sent (a late, bursty producer shows as the difference).
    """
    n, start = 0, time.monotonic()
    wall_start = time.time()
    while (stop is None or not stop.is_set()) and time.monotonic() - start < seconds:
        due = start + n / rate
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        doc_id, text = texts[(offset + n) % len(texts)]
        key = f"{prefix}{n}:{doc_id}"
        if due_at is not None:
            due_at[key] = wall_start + n / rate
        if sent_at is not None:
            sent_at[key] = time.time()
        prod.send(topic, key=key.encode(), value=json.dumps({"id": key, "text": text}).encode())
        n += 1
    prod.flush()
    return n


def _produce_process(bootstrap, topic, texts, rate, seconds, offset, results):
    """Child process: offer ``rate`` msgs/s for ``seconds``; send times by key."""
    from kafka import KafkaProducer

    prod = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    sent_at: dict = {}
    due_at: dict = {}
    offer(prod, topic, texts, rate, seconds, offset, sent_at=sent_at, due_at=due_at)
    prod.close()
    results.put((sent_at, due_at))


def _measure_in_processes(bootstrap, topic, output_topic, docs, rate, seconds, offset):
    """The measured window with the producer and the consumer each in its own process.

    Closer to a deployment, where they are other programs; by default they are threads of
    the driver's process and share its GIL. On this 2-core machine, separate processes
    compete for the cores at full speed and the stream got slower (BENCHMARKS.md).
    Returns the per-key times of :func:`stage_times`' ``times`` (without the input topic's).
    """
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    ready, done, results = ctx.Event(), ctx.Event(), ctx.Queue()
    consumer = ctx.Process(target=_consume_process, args=(bootstrap, output_topic, ready, done, results), daemon=True)
    consumer.start()
    if not ready.wait(60):
        raise RuntimeError("the benchmark's consumer process did not start")
    sent_results = ctx.Queue()
    producer = ctx.Process(target=_produce_process, args=(bootstrap, topic, docs, rate, seconds, offset, sent_results), daemon=True)
    producer.start()
    sent_at, due_at = sent_results.get(timeout=seconds + 120)
    producer.join()
    # Wait for the stream to catch up (or 30 s), then collect the receive times.
    time.sleep(min(30.0, 3.0 + seconds / 5))
    done.set()
    received, stamped = results.get(timeout=120)
    consumer.join()
    return {"due": due_at, "sent": sent_at, "out_ts": stamped, "recv": received}


#: kafka-python's ``fetch_max_wait_ms`` for the benchmark's output consumers (``--consumer-fetch-max-wait-ms``).
CONSUMER_FETCH_MAX_WAIT_MS = 10


def create_input_topic(bootstrap, topic, partitions):
    """The measured input topic, with ``LogAppendTime``: each record's timestamp is when the broker appended it.

    So a record's path splits at the broker: the producer's send -> the input append -> the
    stream's output record (whose ``CreateTime`` is the sink's send) -> the consumer's receive.
    """
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1,
                                      topic_configs={"message.timestamp.type": "LogAppendTime"})])  # fmt: skip
    finally:
        admin.close()


def read_timestamps(bootstrap, topic, keys, timeout_s=60.0):
    """``{key: record timestamp (s)}`` for ``keys``, read from the beginning of ``topic``."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, consumer_timeout_ms=1000, enable_auto_commit=False)
    parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [0])]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    wanted, found = set(keys), {}
    deadline = time.monotonic() + timeout_s
    while len(found) < len(wanted) and time.monotonic() < deadline:
        for msg in consumer:
            key = msg.key.decode()
            if key in wanted:
                found[key] = msg.timestamp / 1000.0
    consumer.close()
    return found


#: A record's path, stage by stage: (name, from, to) over the per-key times of :func:`stage_times`.
STAGES = (
    ("producer_late", "due", "sent"),  # the benchmark's producer behind its schedule (not in the latency)
    ("to_broker", "sent", "in_ts"),  # send() -> the broker appended it to the input topic
    ("stream", "in_ts", "out_ts"),  # input append -> the stream's sink sent the output record
    ("to_consumer", "out_ts", "recv"),  # the sink's send -> the benchmark's consumer has it
)


def stage_times(times):
    """Percentiles of each stage of a record's path, and what the slowest 1 % spent in each.

    ``times``: per-key dicts ``due``, ``sent``, ``in_ts`` (input LogAppendTime), ``out_ts`` (output
    record CreateTime), ``recv``; Kafka timestamps are in whole milliseconds.
    """
    import numpy as np

    keys = [k for k in times["sent"] if all(k in times[d] for d in ("due", "in_ts", "out_ts", "recv"))]
    if not keys:
        return {}
    total = np.array([times["recv"][k] - times["sent"][k] for k in keys])
    slow = total >= np.percentile(total, 99)
    out = {"n": len(keys)}
    for name, a, b in STAGES:
        d = np.array([times[b][k] - times[a][k] for k in keys]) * 1000.0
        out[name] = {"p50_ms": float(np.percentile(d, 50)), "p99_ms": float(np.percentile(d, 99)), "max_ms": float(d.max()),
                     "mean_ms_of_slowest_1pct": float(d[slow].mean())}  # fmt: skip
    return out


def cpu_ticks(pids):
    """``{name: user+system clock ticks}`` of each process (``/proc/<pid>/stat``) and the whole machine (``all``, busy ticks)."""
    out = {}
    for name, pid in pids.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[name] = int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    cpu = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    out["all"] = sum(cpu) - cpu[3] - cpu[4]  # minus idle and iowait
    return out


def cpu_share(before, after, seconds):
    """Cores used by each process between two :func:`cpu_ticks` snapshots."""
    hz = os.sysconf("SC_CLK_TCK")
    return {k: round((after[k] - before[k]) / hz / seconds, 3) for k in after if k in before}


#: Processes whose CPU use is reported beside each window: the Spark JVM and the broker (set in main).
PIDS: dict = {"bench_python": os.getpid()}


#: Which clients offer and read the measured window (``--clients``): ``kafka-python`` (threads of this
#: process, or processes with ``--separate-processes``) or ``kcat`` (librdkafka, in its own processes).
CLIENTS = "kafka-python"


def _measure_with_kcat(bootstrap, topic, output_topic, docs, rate, seconds, offset):
    """The measured window with kcat (librdkafka) as the producer and the consumer, each its own process.

    This process only writes ``key<TAB>json`` lines to the producer's stdin on the schedule (the send
    time is taken just before the write) and reads ``key<TAB>timestamp`` lines from the consumer's
    stdout (the receive time is taken when the line arrives): neither client shares this process's GIL.
    Returns the per-key times of :func:`stage_times` (without the input topic's).
    """
    import subprocess

    kcat = shutil.which("kcat") or shutil.which("kafkacat")
    if not kcat:
        raise RuntimeError("--clients kcat: kcat is not on PATH (apt-get install kcat)")
    consumer = subprocess.Popen(
        [kcat, "-C", "-b", bootstrap, "-t", output_topic, "-o", "beginning", "-u", "-q", "-f", "%k\t%T\n",
         "-X", f"fetch.wait.max.ms={CONSUMER_FETCH_MAX_WAIT_MS}"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1,
    )  # fmt: skip
    recv, out_ts = {}, {}

    def read():
        for line in consumer.stdout:
            now = time.time()
            key, _, stamp = line.rstrip("\n").partition("\t")
            recv.setdefault(key, now)
            out_ts.setdefault(key, int(stamp) / 1000.0)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    producer = subprocess.Popen([kcat, "-P", "-b", bootstrap, "-t", topic, "-K", "\t", "-X", "linger.ms=0"],
                                stdin=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)  # fmt: skip
    time.sleep(1.0)  # both clients connected
    sent_at, due_at = {}, {}

    class Pipe:  # offer()'s producer interface over kcat's stdin
        def send(self, _topic, key, value):
            producer.stdin.write(key.decode() + "\t" + value.decode() + "\n")

        def flush(self):
            producer.stdin.flush()

    offer(Pipe(), topic, docs, rate, seconds, offset, sent_at=sent_at, due_at=due_at)
    producer.stdin.close()
    producer.wait(60)
    deadline = time.monotonic() + min(30.0, 3.0 + seconds / 5)
    while time.monotonic() < deadline and len(recv.keys() & sent_at.keys()) < len(sent_at):
        time.sleep(0.2)
    consumer.terminate()
    consumer.wait(30)
    reader.join(5)
    return {"due": due_at, "sent": sent_at, "out_ts": out_ts, "recv": recv}


def measure_latency(spark, bootstrap, model, kind, docs, rate, seconds, work, warmup_seconds=0.0, **trigger):
    """Offer ``rate`` msgs/s for ``seconds`` to a running query; return latency percentiles.

    The first ``warmup_seconds`` at the same rate are not measured (the workers' model load
    and token tables, the JVM's JIT), and timing starts once the stream has caught up with
    them: the figures are the steady state.
    """
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.serializer import DefaultSerializer

    from ntm_spark.spark.stream_query import start_stream

    topic = f"lat-{uuid.uuid4().hex[:8]}"
    create_input_topic(bootstrap, topic, INPUT_PARTITIONS)
    cfg = stream_cfg(bootstrap, topic, model, kind, work, starting_offsets="latest", **trigger)
    query = start_stream(spark, cfg, score=lda_score(model, cfg) if kind == "lda" else None, drift_topics=DRIFT_TOPICS if kind == "ntm" else None)
    consumer = KafkaConsumer(cfg.output_topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=500,
                             group_id=f"b-{uuid.uuid4().hex[:6]}", fetch_max_wait_ms=CONSUMER_FETCH_MAX_WAIT_MS)  # fmt: skip
    sent_at, due_at, out_ts, recv = {}, {}, {}, {}
    warm = [f"warm-{i}" for i in range(20)]
    prod = KafkaProducer(bootstrap_servers=bootstrap, key_serializer=DefaultSerializer(), value_serializer=DefaultSerializer(), linger_ms=0)
    time.sleep(3)
    for i, w in enumerate(warm):  # load the model in the workers before timing
        prod.send(topic, key=w.encode(), value=json.dumps({"id": w, "text": docs[i][1]}).encode())
    prod.flush()
    deadline = time.monotonic() + 120
    seen = 0
    while seen < len(warm) and time.monotonic() < deadline:
        seen += sum(1 for _ in consumer)
    stop = threading.Event()

    def produce(duration, measured, offset=0):
        return offer(prod, topic, docs, rate, duration, offset, "" if measured else "w", sent_at if measured else None, stop,
                     due_at if measured else None)  # fmt: skip

    n_warm = 0
    if warmup_seconds:  # same rate, not timed; then let the stream catch up before measuring
        n_warm = produce(warmup_seconds, measured=False)
        deadline, last_new = time.monotonic() + 60, time.monotonic()
        while time.monotonic() - last_new < 1.5 and time.monotonic() < deadline:
            if sum(1 for _ in consumer):
                last_new = time.monotonic()

    ticks = cpu_ticks(PIDS)
    t_window = time.monotonic()
    load_before = os.getloadavg()
    if CLIENTS == "kcat":
        consumer.close()
        prod.close()
        times = _measure_with_kcat(bootstrap, topic, cfg.output_topic, docs, rate, seconds, n_warm)
    elif SEPARATE_PROCESSES:
        consumer.close()
        prod.close()
        times = _measure_in_processes(bootstrap, topic, cfg.output_topic, docs, rate, seconds, n_warm)
    else:
        thread = threading.Thread(target=produce, args=(seconds, True, n_warm))
        thread.start()
        end = time.monotonic() + seconds + 30
        while time.monotonic() < end:
            for msg in consumer:
                key = msg.key.decode()
                if key in sent_at:
                    recv.setdefault(key, time.time())
                    out_ts.setdefault(key, msg.timestamp / 1000.0)
            if not thread.is_alive() and len(recv) >= len(sent_at):
                break
        stop.set()
        thread.join()
        consumer.close()
        prod.close()
        times = {"due": due_at, "sent": sent_at, "out_ts": out_ts, "recv": recv}
    cpu = cpu_share(ticks, cpu_ticks(PIDS), time.monotonic() - t_window)
    batches = [p for p in query.recentProgress if p.numInputRows > 0]
    query.stop()
    latencies = [times["recv"][k] - t for k, t in times["sent"].items() if k in times["recv"]]
    offered = len(times["sent"])
    out = percentiles(latencies)
    times["in_ts"] = read_timestamps(bootstrap, topic, times["sent"])
    out["stages"] = stage_times(times)
    out["cores_used"] = cpu
    out["loadavg_1m"] = [round(load_before[0], 2), round(os.getloadavg()[0], 2)]
    if batches:  # where a micro-batch's time goes (medians over the last progress reports)
        import numpy as np

        keys = sorted({k for p in batches for k in p.durationMs})
        out["batch_ms_median"] = {k: float(np.median([p.durationMs.get(k, 0) for p in batches])) for k in keys}
        out["batch_rows_median"] = float(np.median([p.numInputRows for p in batches]))
    out.update({"offered": offered, "received": len(latencies), "clients": CLIENTS, "separate_processes": SEPARATE_PROCESSES, "input_partitions": INPUT_PARTITIONS, "rate": rate, "kind": kind, **{k: str(v) for k, v in trigger.items()}})
    return out


def measure_drain(spark, bootstrap, model, kind, docs, n, work, per_batch=5000, **kw):
    """Produce ``n`` messages, then drain them with available_now; docs/s over the batches' own durations."""
    from kafka import KafkaProducer
    from kafka.serializer import DefaultSerializer

    from ntm_spark.spark.stream_query import start_stream

    topic = f"drain-{uuid.uuid4().hex[:8]}"
    create_topics(bootstrap, topic)
    prod = KafkaProducer(bootstrap_servers=bootstrap, key_serializer=DefaultSerializer(), value_serializer=DefaultSerializer(), linger_ms=20)
    for i in range(n):
        doc_id, text = docs[i % len(docs)]
        prod.send(topic, key=f"{i}".encode(), value=json.dumps({"id": f"{i}:{doc_id}", "text": text}).encode())
    prod.flush()
    prod.close()
    cfg = stream_cfg(bootstrap, topic, model, kind, work, starting_offsets="earliest", trigger="available_now", max_offsets_per_trigger=per_batch, **kw)
    t0 = time.monotonic()
    query = start_stream(spark, cfg, score=lda_score(model, cfg) if kind == "lda" else None, drift_topics=DRIFT_TOPICS if kind == "ntm" else None)
    query.awaitTermination()
    wall = time.monotonic() - t0
    progress = [p for p in query.recentProgress if p.numInputRows > 0]
    rows = sum(p.numInputRows for p in progress)
    # Exclude the first batch (worker start, model load) from the sustained rate.
    steady = progress[1:] or progress
    steady_ms = sum(p.durationMs.get("triggerExecution", 0) for p in steady)
    return {"kind": kind, "messages": rows, "per_batch": per_batch, "wall_s": wall, "docs_per_s_wall": rows / wall,
            "docs_per_s_sustained": sum(p.numInputRows for p in steady) / (steady_ms / 1000.0) if steady_ms else None,
            "batches": [{"rows": p.numInputRows, **{k: p.durationMs.get(k) for k in ("triggerExecution", "addBatch", "queryPlanning", "latestOffset")}}
                        for p in progress]}  # fmt: skip


def measure_backfill(spark, model, work, scale):
    from ntm_spark.core.config import load_config
    from ntm_spark.spark.backfill import run_backfill

    src = work / "backfill_in" / f"x{scale}"
    if not src.exists():
        docs = read_docs()
        base = spark.createDataFrame(docs, "id string, text string")
        from pyspark.sql import functions as F

        copies = spark.range(scale).withColumnRenamed("id", "copy")
        base.crossJoin(copies).select(F.concat_ws("#", "id", F.col("copy").cast("string")).alias("id"), "text").write.parquet(str(src))
    cfg = load_config("backfill", overrides=[f"input_path={src}", "input_format=parquet", f"output_path={work / f'backfill_out_x{scale}_{uuid.uuid4().hex[:6]}'}", f"model_uri={model}"])
    report = run_backfill(spark, cfg, progress=lambda line: print(line, flush=True))
    return {"scale": scale, "documents": report.documents_written, "seconds": report.seconds, "docs_per_s": report.docs_per_second}


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", default=os.environ.get("NTM_KAFKA_BOOTSTRAP"))
    parser.add_argument("--work", default=str(ROOT / ".ntm" / "bench" / "streaming"))
    parser.add_argument("--rates", type=int, nargs="*", default=[100, 1000])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--warmup-seconds", type=float, default=10, help="offered at the same rate before measuring (not timed)")
    parser.add_argument("--warmup-run-seconds", type=float, default=20,
                        help="one discarded NTM run at the highest rate first (JIT, workers): the first run of a process is always slower")  # fmt: skip
    parser.add_argument("--triggers", nargs="*", default=["processing_time:100 milliseconds", "processing_time:500 milliseconds"])
    parser.add_argument("--vary", nargs="*", default=[{}], type=json.loads, metavar="JSON",
                        help="NTM stream-config overrides measured in turn, each a JSON object, e.g. '{}' "
                             "'{\"real_time_sink_options\": {}}'")  # fmt: skip
    parser.add_argument("--lda-set", nargs="*", default={}, metavar="KEY=JSON",
                        type=lambda kv: (kv.partition("=")[0], json.loads(kv.partition("=")[2])),
                        help="stream-config overrides for the LDA peer's queries only, e.g. max_tasks_per_batch=2 "
                             "(its best on 2 cores when --master gives the NTM more slots)")  # fmt: skip
    parser.add_argument("--lda-triggers", nargs="*", default=None,
                        help="the LDA peer's triggers when they differ from --triggers (its scorer is Python: no "
                             "real_time_jvm), e.g. 'processing_time:100 milliseconds'")  # fmt: skip
    parser.add_argument("--drain-docs", type=int, default=20000)
    parser.add_argument("--drain-batch", type=int, default=5000, help="maxOffsetsPerTrigger while draining")
    parser.add_argument("--arrow-batch", type=int, default=None, help="stream.arrow_batch_size (default: the config's)")
    parser.add_argument("--backfill-scales", type=int, nargs="*", default=[1])
    parser.add_argument("--kinds", nargs="*", default=["ntm", "lda"])
    parser.add_argument("--scoring-udfs", nargs="*", default=["map_in_pandas"], help="stream.scoring_udf values to measure for the NTM")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=JSON",
                        help="stream config override for every query, e.g. kafka_options='{\"linger.ms\": 0}'")  # fmt: skip
    parser.add_argument("--spark-conf", action="append", default=[], metavar="KEY=VALUE", help="extra Spark setting")
    parser.add_argument("--json", default=None)
    parser.add_argument("--drift", nargs="*", default=["off"], choices=["off", "on"],
                        help="measure with drift monitoring's per-batch sums off and/or on, in this order (e.g. off on off on)")
    parser.add_argument("--separate-processes", action="store_true",
                        help="produce and consume the measured window in their own processes, not the driver's")
    parser.add_argument("--input-partitions", type=int, nargs="*", default=[2],
                        help="partitions of the measured input topic (each value measured in turn)")  # fmt: skip
    parser.add_argument("--max-tasks-per-batch", nargs="*", default=[None], type=lambda v: v if v == "auto" else int(v),
                        help="stream.max_tasks_per_batch values measured in turn (auto; 0: null, one task per Kafka "
                             "partition); none given: the config's default")  # fmt: skip
    parser.add_argument("--consumer-fetch-max-wait-ms", type=int, default=10,
                        help="the benchmark's output consumer's fetch_max_wait_ms (kafka-python; its default is 500)")  # fmt: skip
    parser.add_argument("--master", default="local[2]", help="the benchmark's Spark master")
    parser.add_argument("--kafka-options", nargs="*", default=[None], type=json.loads, metavar="JSON",
                        help="stream.kafka_options values measured in turn, e.g. '{}' '{\"linger.ms\": 5}'; none given: "
                             "the config's")  # fmt: skip
    parser.add_argument("--clients", default="kafka-python", choices=["kafka-python", "kcat"],
                        help="the measured window's producer and consumer: kafka-python (threads of the driver's "
                             "process) or kcat (librdkafka, each in its own process)")  # fmt: skip
    parser.add_argument("--scoring-threads", type=int, nargs="*", default=[None],
                        help="stream.scoring_threads values measured in turn (give each explicitly, e.g. 2 1: a Python "
                             "worker keeps the last count it was set to); none given: the config's default")  # fmt: skip
    args = parser.parse_args(argv)
    args.lda_set = dict(args.lda_set)
    global SEPARATE_PROCESSES, INPUT_PARTITIONS, DRIFT_TOPICS, CONSUMER_FETCH_MAX_WAIT_MS, CLIENTS
    CLIENTS = args.clients
    SEPARATE_PROCESSES = args.separate_processes
    CONSUMER_FETCH_MAX_WAIT_MS = args.consumer_fetch_max_wait_ms
    INPUT_PARTITIONS = args.input_partitions[0]
    for item in args.overrides:
        key, _, value = item.partition("=")
        try:
            STREAM_OVERRIDES[key] = json.loads(value)
        except json.JSONDecodeError:
            STREAM_OVERRIDES[key] = value

    from lda_peer import train_lda_peer

    from ntm_spark.core.config import SparkConfig
    from ntm_spark.spark.io import bow_spark_schema
    from ntm_spark.spark.session import build_spark_session

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    bootstrap, broker = ensure_broker(args.bootstrap, work)
    spark = build_spark_session(SparkConfig(master=args.master, conf={"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false", **dict(c.split("=", 1) for c in args.spark_conf)}))
    PIDS["spark_jvm"] = int(spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid())
    if broker is not None and broker.proc.pid():
        PIDS["broker"] = broker.proc.pid()
    results = {"machine": f"{os.cpu_count()} cores", "master": args.master, "overrides": STREAM_OVERRIDES, "spark_conf": args.spark_conf, "latency": [], "drain": [], "backfill": []}
    try:
        spark.sparkContext.addPyFile(str(ROOT / "bench" / "lda_peer.py"))  # the Python workers import it
        train_docs = read_docs(limit=3000, split="20news-bydate-train")
        test_docs = read_docs(limit=3000, split="20news-bydate-test")
        ntm, rows = build_models(work, train_docs)
        models = {"ntm": ntm}
        if "lda" in args.kinds:
            bow = spark.createDataFrame(rows, bow_spark_schema())
            models["lda"] = train_lda_peer(spark, bow, ntm, work / "lda", max_iter=10)
        if args.warmup_run_seconds and args.rates:
            kw = {**trigger_kwargs(args.triggers[0]), **({"scoring_udf": args.scoring_udfs[0]} if args.scoring_udfs else {})}
            r = measure_latency(spark, bootstrap, models["ntm"], "ntm", test_docs, max(args.rates), args.warmup_run_seconds, work, **kw)
            print(json.dumps({"discarded_warmup_run": True, **r}), flush=True)
        for drift in args.drift:
            DRIFT_TOPICS = 20 if drift == "on" else None  # build_models' K
            for kind in args.kinds:
                udfs = args.scoring_udfs if kind == "ntm" else [None]  # the LDA peer has no scoring UDF choice
                for trig in args.lda_triggers if kind == "lda" and args.lda_triggers else args.triggers:
                    extra = trigger_kwargs(trig)
                    for udf in udfs:
                        kw = {**extra, "scoring_udf": udf} if udf else extra
                        combos = itertools.product(args.rates, args.input_partitions, args.kafka_options, args.vary if kind == "ntm" else [{}],
                                                   args.max_tasks_per_batch, args.scoring_threads)  # fmt: skip
                        for rate, parts, kafka_opts, varied, tasks, threads in combos:
                            INPUT_PARTITIONS = parts
                            tasks_kw = {} if tasks is None else {"max_tasks_per_batch": tasks or None}
                            if kafka_opts is not None:
                                tasks_kw["kafka_options"] = kafka_opts
                            tasks_kw.update(varied)
                            if kind == "lda":
                                tasks_kw.update(args.lda_set)
                            if threads is not None:
                                tasks_kw["scoring_threads"] = threads
                            r = measure_latency(spark, bootstrap, models[kind], kind, test_docs, rate, args.seconds, work,
                                                warmup_seconds=args.warmup_seconds, **kw, **tasks_kw)  # fmt: skip
                            r["scoring_udf"] = udf
                            r["max_tasks_per_batch"] = tasks_kw.get("max_tasks_per_batch", STREAM_OVERRIDES.get("max_tasks_per_batch", "config"))
                            r["scoring_threads"] = tasks_kw.get("scoring_threads", STREAM_OVERRIDES.get("scoring_threads", "config"))
                            r["drift"] = drift
                            r["kafka_options"] = kafka_opts if kafka_opts is not None else STREAM_OVERRIDES.get("kafka_options", "config")
                            r["varied"] = varied
                            print(json.dumps(r), flush=True)
                            results["latency"].append(r)
                drains = itertools.product(udfs if args.drain_docs else [], args.vary if kind == "ntm" else [{}])
                for udf, varied in drains:
                    extra = {"arrow_batch_size": args.arrow_batch} if args.arrow_batch and kind == "ntm" else {}
                    if udf:
                        extra["scoring_udf"] = udf
                    extra.update(varied)
                    if kind == "lda":
                        extra.update(args.lda_set)
                    r = measure_drain(spark, bootstrap, models[kind], kind, test_docs, args.drain_docs, work, args.drain_batch, **extra)
                    r["scoring_udf"] = udf
                    r["drift"] = drift
                    r["varied"] = varied
                    print(json.dumps(r), flush=True)
                    results["drain"].append(r)
        for scale in args.backfill_scales:
            r = measure_backfill(spark, ntm, work, scale)
            print(json.dumps(r), flush=True)
            results["backfill"].append(r)
    finally:
        spark.stop()
        if broker is not None:
            broker.down()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
