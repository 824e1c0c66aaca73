"""NTM_HOME owns every default path: preprocess, train, backfill and stream write under it, never the working directory."""

import json
import os
import uuid

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.spark, pytest.mark.kafka, pytest.mark.slow]


def _tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_default_paths_live_under_ntm_home(spark, kafka_bootstrap, newsgroups_sample, tmp_path, monkeypatch, capsys):
    from kafka import KafkaProducer

    from jobs import backfill, preprocess, stream_score, train
    from ntm_spark.core.config import load_config
    from ntm_spark.core.paths import PROJECT_ROOT
    from ntm_spark.tools.services import create_topics

    home, cwd = tmp_path / "home", tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.setenv("NTM_HOME", str(home))
    monkeypatch.chdir(cwd)
    repo_before = set(os.listdir(PROJECT_ROOT))

    # Every step on its defaults: no --output, no --data.
    small = ["--set", "vocab_size=300", "--set", "threshold=5", "--set", "num_train_shards=2"]
    assert preprocess.main(["--input", str(newsgroups_sample), *small]) == 0
    assert (home / "data" / "20newsgroups" / "manifest.json").is_file()

    assert train.main(["--num-topics", "4", "--epochs", "1", "--devices", "1", "--no-mlflow",
                       "--set", "num_workers=0", "--set", "mini_batch_size=64", "--set", "accelerator=cpu",
                       "--set", "threads_per_process=1", "--set", "progress_bar=false"]) == 0  # fmt: skip
    assert (home / "models" / "ntm" / "model.pt").is_file()

    corpus = home / "in" / "docs.jsonl"  # the input lives under NTM_HOME too, so the cwd stays empty
    corpus.parent.mkdir()
    corpus.write_bytes(b'{"id": "a", "text": "engine car wheel"}\n{"id": "b", "text": "caf\xe9 god church"}\n')
    # A flag value starting with .ntm/ follows the same rule as the config's defaults.
    assert backfill.main(["--input", str(corpus), "--input-format", "jsonl", "--model", ".ntm/models/ntm",
                          "--set", "num_partitions=2"]) == 0  # fmt: skip
    assert (home / "backfill" / "_backfill.json").is_file()
    assert json.loads((home / "backfill" / "_backfill.json").read_text())["model_uri"] == str(home / "models" / "ntm")

    # The stream on its default checkpoint and status file (a real broker; the model by its .ntm/ path).
    stream = load_config("stream")
    assert stream.checkpoint_location.startswith(str(home)) and stream.status_file.startswith(str(home))
    topic = f"home-{uuid.uuid4().hex[:6]}"
    create_topics(kafka_bootstrap, topic, topic + "-out", topic + "-dlq", partitions=1)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    producer.send(topic, json.dumps({"id": "s1", "text": "engine car wheel god church"}).encode()).get(timeout=30)
    producer.close()
    assert stream_score.main(["--bootstrap-servers", kafka_bootstrap, "--input-topics", topic, "--output-topic", topic + "-out",
                              "--dead-letter-topic", topic + "-dlq", "--model", ".ntm/models/ntm", "--starting-offsets",
                              "earliest", "--trigger", "available_now", "--timeout", "120"]) == 0  # fmt: skip
    assert (home / "checkpoints" / "stream" / "offsets").is_dir()
    status = json.loads((home / "stream" / "status.json").read_text())
    assert status["state"] == "stopped" and status["total_scored"] + status["total_dead_letters"] == 1

    written = _tree(home)
    print("written under NTM_HOME:\n  " + "\n  ".join(p for p in written if p.count("/") < 2))
    assert os.listdir(cwd) == [], f"written to the working directory: {_tree(cwd)}"
    # jvm-models: the stream's JVM scorer (stream.scorer auto) stages the model folder there.
    assert {p.split("/")[0] for p in written} == {"data", "models", "backfill", "in", "checkpoints", "stream", "jvm-models"}, written
    new_in_repo = set(os.listdir(PROJECT_ROOT)) - repo_before
    assert not new_in_repo & {"spark-warehouse", "metastore_db", "derby.log", "lightning_logs", "mlruns"}, new_in_repo
