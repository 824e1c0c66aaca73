"""Shared fixtures: one local[2] Spark session and one real Kafka broker per test session."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", os.sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", os.sys.executable)
# Tests never download: NLTK data and the corpus must come from the project's files.
os.environ.setdefault("NTM_OFFLINE", "1")

from ntm_spark.corpus import locate_20newsgroups  # noqa: E402


@pytest.fixture(scope="session")
def spark():
    """A real local[2] Spark session with the Kafka connector jars, shared by all tests."""
    from ntm_spark.config import SparkConfig
    from ntm_spark.session import build_spark_session

    cfg = SparkConfig(
        master="local[2]",
        app_name="ntm-spark-tests",
        conf={"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "4", "spark.default.parallelism": "4"},
    )
    session = build_spark_session(cfg)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def newsgroups_archive() -> Path:
    """The 20 Newsgroups by-date archive (the shared copy, or $NTM_20NG)."""
    return locate_20newsgroups(download=False)


@pytest.fixture(scope="session")
def newsgroups_sample(tmp_path_factory, newsgroups_archive) -> Path:
    """A folder laid out like the corpus with a few files per group of both splits (~200 documents)."""
    root = tmp_path_factory.mktemp("20ng_sample")
    per_group = {"20news-bydate-train": 6, "20news-bydate-test": 4}
    seen: dict = {}
    with tarfile.open(newsgroups_archive) as tar:
        for member in tar:
            if not member.isfile():
                continue
            parts = member.name.split("/")
            if len(parts) != 3:
                continue
            split, group, _ = parts
            key = (split, group)
            if seen.get(key, 0) >= per_group.get(split, 0):
                continue
            seen[key] = seen.get(key, 0) + 1
            tar.extract(member, root, filter="data")
    return root


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory):
    """A real Apache Kafka broker (KRaft) on 127.0.0.1: reused if one is up, else started and stopped here.

    Reuse order: ``$NTM_KAFKA_BOOTSTRAP``, then a broker `ntm services up` started, else a fresh one
    on free ports in a temporary folder.
    """
    from ntm_spark.config import load_config
    from ntm_spark.services import KafkaBroker, free_port

    if os.environ.get("NTM_KAFKA_BOOTSTRAP"):
        yield os.environ["NTM_KAFKA_BOOTSTRAP"]
        return
    running = KafkaBroker(load_config("services"))
    if running.proc.pid() is not None and running.healthy():
        yield running.bootstrap_servers
        return
    cfg = load_config("services", overrides=[f"kafka_port={free_port()}", f"kafka_controller_port={free_port()}"])
    broker = KafkaBroker(cfg, workdir=tmp_path_factory.mktemp("kafka"))
    broker.up()
    try:
        yield broker.bootstrap_servers
    finally:
        broker.down()
