"""Every Spark job on a real multi-JVM cluster, submitted with ``spark-submit`` as the README says (issue 17).

A standalone master and 2 workers x 1 core (``ntm services up --spark-workers 2``'s classes) run on
127.0.0.1; the package reaches the driver and executors only as the built wheel (``--py-files``)
and WordNet only as the ``ntm data archive`` archive (``--archives ...#nltk_data``). The workers
start without ``PYTHONPATH``, so nothing is read from the checkout on the executors.
"""

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ntm_spark.core.config import load_config
from ntm_spark.tools.services import SparkCluster, create_topics, free_port, spark_home

pytestmark = [pytest.mark.integration, pytest.mark.cluster, pytest.mark.slow, pytest.mark.spark]

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--set", "vocab_size=400", "--set", "threshold=5", "--set", "num_train_shards=3"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A standalone master and 2 workers (1 core, 1 GB each) on free loopback ports."""
    ports = [f"spark_master_port={free_port()}", f"spark_master_webui_port={free_port()}", "spark_workers=2"]
    cluster = SparkCluster(load_config("services", overrides=ports), workdir=tmp_path_factory.mktemp("spark_cluster"))
    cluster.up()
    try:
        yield cluster
    finally:
        cluster.down()


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """The wheel (``pip wheel --no-deps``) and the WordNet archive (``ntm data archive``), as a user builds them."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(ROOT)],
        check=True,
        cwd=ROOT,
    )
    subprocess.run([sys.executable, "-m", "jobs.cli", "data", "archive", "--out", str(out / "nltk_data.tar.gz")], check=True, cwd=ROOT)
    (wheel,) = out.glob("ntm_spark-*.whl")
    return {"wheel": wheel, "archive": out / "nltk_data.tar.gz"}


def submit_cmd(master, dist, job, args, extra=()):
    """The README's spark-submit line for ``jobs/<job>.py``."""
    return [
        str(spark_home() / "bin" / "spark-submit"),
        "--master", master,
        "--py-files", str(dist["wheel"]),
        "--archives", f"{dist['archive']}#nltk_data",
        "--conf", "spark.executorEnv.NLTK_DATA=./nltk_data",
        "--conf", "spark.ui.enabled=false",
        *extra,
        str(ROOT / "jobs" / f"{job}.py"),
        *args,
    ]  # fmt: skip


def submit_env(tmp_path):
    """The driver's environment: no PYTHONPATH (the wheel from --py-files is the code), the checkout's config and jars."""
    from ntm_spark.core.nltk_data import find_wordnet
    from ntm_spark.core.paths import conf_dir, jars_dir

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYSPARK_GATEWAY_PORT", "PYSPARK_GATEWAY_SECRET")}
    env.update(
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
        SPARK_LOCAL_IP="127.0.0.1",
        NTM_HOME=str(tmp_path / "ntm_home"),
        NTM_CONF_DIR=str(conf_dir()),
        NTM_JARS_DIR=str(jars_dir()),
        NLTK_DATA=str(find_wordnet()),
    )
    return env


def run_submit(cmd, env, timeout=300):
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=env["NTM_HOME"])
    assert proc.returncode == 0, f"{' '.join(cmd)}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-6000:]}"
    return proc


def connector_jars():
    from ntm_spark.spark.session import local_connector_jars

    return ",".join(str(j) for j in local_connector_jars())


def rows_by_id(folder):
    """Every row of every Parquet file under ``folder`` (committed partitions only), keyed by id."""
    table = pq.ParquetDataset(str(folder)).read()
    rows = table.to_pylist()
    return {r["id"]: r for r in rows}, len(rows)


def test_preprocess_on_the_cluster_matches_local(spark, cluster, dist, newsgroups_sample, tmp_path):
    """A 2-worker standalone cluster writes the same vocab.txt and the same Parquet rows as local[2]."""
    from jobs.preprocess import main
    from ntm_spark.core.schema import SPLITS

    local_out, cluster_out = tmp_path / "local", tmp_path / "cluster"
    assert main(["--input", str(newsgroups_sample), "--output", str(local_out), *SMALL]) == 0
    env = submit_env(tmp_path)
    os.makedirs(env["NTM_HOME"])
    args = ["--input", str(newsgroups_sample), "--output", str(cluster_out), *SMALL]
    run_submit(submit_cmd(cluster.master_url, dist, "preprocess", args), env)
    assert (cluster_out / "vocab.txt").read_text() == (local_out / "vocab.txt").read_text()
    for split in SPLITS:
        local_rows, n_local = rows_by_id(local_out / split)
        cluster_rows, n_cluster = rows_by_id(cluster_out / split)
        assert n_cluster == n_local == len(local_rows) and cluster_rows == local_rows, split
    manifests = [json.loads((o / "manifest.json").read_text()) for o in (local_out, cluster_out)]
    assert manifests[0]["documents"] == manifests[1]["documents"]


@pytest.fixture(scope="module")
def jsonl_corpus(tmp_path_factory, newsgroups_test_docs):
    path = tmp_path_factory.mktemp("cluster_backfill_in") / "docs.jsonl"
    with open(path, "w") as fh:
        for doc_id, text in newsgroups_test_docs[:200]:
            fh.write(json.dumps({"doc": doc_id, "body": text}) + "\n")
    return path


def test_backfill_on_the_cluster_matches_local(spark, cluster, dist, jsonl_corpus, stream_model_folder, tmp_path):
    """The backfill submitted to the cluster writes exactly the rows the local[2] backfill writes."""
    from jobs.backfill import main

    common = ["--input", str(jsonl_corpus), "--input-format", "jsonl", "--model", str(stream_model_folder),
              "--set", "id_col=doc", "--set", "text_col=body", "--set", "num_partitions=2"]  # fmt: skip
    assert main([*common, "--output", str(tmp_path / "local")]) == 0
    env = submit_env(tmp_path)
    os.makedirs(env["NTM_HOME"])
    run_submit(submit_cmd(cluster.master_url, dist, "backfill", [*common, "--output", str(tmp_path / "cluster")]), env)
    local_rows, n_local = rows_by_id(tmp_path / "local")
    cluster_rows, n_cluster = rows_by_id(tmp_path / "cluster")
    assert n_local == n_cluster == 200 and len(cluster_rows) == 200
    assert cluster_rows == local_rows


def produce(bootstrap, topic, docs):
    from kafka import KafkaProducer

    prod = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    for doc_id, text in docs:
        prod.send(topic, key=doc_id.encode(), value=json.dumps({"id": doc_id, "text": text}).encode())
    prod.flush()
    prod.close()


def consume_keys(bootstrap, topic, expected, timeout=60.0):
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False,
        group_id=f"t-{uuid.uuid4().hex[:8]}", consumer_timeout_ms=3000,
    )  # fmt: skip
    keys, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and len(keys) < expected:
            keys.extend(msg.key.decode() for msg in consumer)
        keys.extend(msg.key.decode() for msg in consumer)  # duplicates, if any
    finally:
        consumer.close()
    return keys


def test_stream_on_the_cluster_survives_a_killed_worker(cluster, dist, kafka_bootstrap, stream_model_folder, newsgroups_test_docs, tmp_path):
    """1,000 messages give 1,000 records; kill -9 of one worker (and its executor) mid-stream loses nothing."""
    from ntm_spark.serving.scoring import TopicScorer

    scorer = TopicScorer.from_model_folder(stream_model_folder)
    texts = [(d, t[:4000]) for d, t in newsgroups_test_docs]
    _, errors = scorer.vectorize_texts([t for _, t in texts])
    docs = [(f"c{i}-{d}", t) for i, ((d, t), e) in enumerate(zip(texts, errors)) if e is None][:1000]
    assert len(docs) == 1000  # each keeps a vocabulary word: 1,000 records, no dead letters
    topic, out = f"cl-{uuid.uuid4().hex[:8]}", f"cl-out-{uuid.uuid4().hex[:8]}"
    create_topics(kafka_bootstrap, topic, out, out + "-dlq", partitions=4)
    produce(kafka_bootstrap, topic, docs)
    env = submit_env(tmp_path)
    os.makedirs(env["NTM_HOME"])
    sets = {
        "bootstrap_servers": kafka_bootstrap, "input_topics": topic, "output_topic": out, "dead_letter_topic": out + "-dlq",
        "starting_offsets": "earliest", "trigger": "processing_time", "max_offsets_per_trigger": 80,
        "checkpoint_location": str(tmp_path / "ckpt"), "model_uri": str(stream_model_folder),
        "status_file": str(tmp_path / "status.json"),
    }  # fmt: skip
    args = [a for k, v in sets.items() for a in ("--set", f"{k}={json.dumps(v)}")] + ["--timeout", "240"]
    # Kafka's connector and the JVM scorer reach the driver's class path only through spark-submit (--jars).
    from ntm_spark.spark.session import scorer_jar

    jars = ",".join(filter(None, [connector_jars(), str(scorer_jar() or "")]))
    cmd = submit_cmd(cluster.master_url, dist, "stream_score", args, extra=["--jars", jars])
    log = open(tmp_path / "stream.log", "w")  # noqa: SIM115 - the child's output
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=env["NTM_HOME"])
    try:
        # Kill a worker (and its executor) once a micro-batch is done, while the stream still works.
        deadline, status = time.monotonic() + 180, {}
        while time.monotonic() < deadline and proc.poll() is None and status.get("batch_id", -1) < 1:
            time.sleep(0.2)
            try:
                status = json.loads((tmp_path / "status.json").read_text())
            except (OSError, ValueError):
                continue
        assert proc.poll() is None, (tmp_path / "stream.log").read_text()[-5000:]
        cluster.kill_worker(2)
        assert status["total_scored"] < len(docs)  # the worker died mid-stream
        keys = consume_keys(kafka_bootstrap, out, len(docs), timeout=180)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        cluster.up(workers=2)  # the killed worker comes back for later tests
    assert set(keys) == {d for d, _ in docs}, (tmp_path / "stream.log").read_text()[-5000:]
    assert not consume_keys(kafka_bootstrap, out + "-dlq", 0, timeout=3)
    # The default scorer (auto) ran in the executors' JVMs, from the model folder the driver shipped
    # (a spark:// master: addArchive), and the executor that replaced the killed one scored too.
    text = (tmp_path / "stream.log").read_text()
    if scorer_jar() is not None:
        assert "the stream scores in the JVM" in text and "the JVM scorer cannot run" not in text, text[-5000:]


def test_train_submitted_to_the_cluster_runs_one_rank_per_executor(cluster, dist, bow_corpus, tmp_path):
    """``spark-submit jobs/train.py --launcher spark`` on the 2-worker cluster: 2 ranks on 2 executors (cluster mode).

    The weights of such a run against a 1-process run are compared in test_train_cluster.py (on
    ``local-cluster``); here the README's own command runs on a standalone master from the wheel.
    """
    import torch

    out = tmp_path / "model"
    env = submit_env(tmp_path)
    os.makedirs(env["NTM_HOME"])
    env["OMP_NUM_THREADS"] = "1"
    args = ["--launcher", "spark", "--num-nodes", "2", "--devices", "1", "--no-mlflow", "--data", str(bow_corpus),
            "--output", str(out), "--num-topics", "4", "--epochs", "1", "--set", "mini_batch_size=64",
            "--set", "num_workers=0", "--set", "threads_per_process=1", "--set", "progress_bar=false"]  # fmt: skip
    run_submit(submit_cmd(cluster.master_url, dist, "train", args), env, timeout=420)
    hparams = json.loads((out / "hparams.json").read_text())
    training = hparams["training"]
    assert training["world_size"] == 2 and training["ranks_per_instance"] == 1 and training["per_device_batch_size"] == 64
    state = torch.load(out / "model.pt", map_location="cpu")
    assert all(torch.isfinite(t).all() for t in state.values() if torch.is_tensor(t) and t.is_floating_point())
