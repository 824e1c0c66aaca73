import os

import pytest

from ntm_spark.core.config import ConfigError
from ntm_spark.spark.session import (
    MissingJarsError,
    _class_archive_options,
    add_spark_args,
    class_archive_path,
    connector_packages,
    is_local_master,
    local_connector_jars,
    local_master_threads,
    local_master_with_slots,
    spark_config_from_args,
)


def test_local_connector_jars_resolved():
    names = [j.name for j in local_connector_jars()]
    assert any(n.startswith("spark-sql-kafka-0-10_2.13-4.2.0") for n in names)
    assert any(n.startswith("kafka-clients") for n in names)
    assert any(n.startswith("commons-pool2") for n in names)


def test_missing_jars_say_which_command(tmp_path, monkeypatch):
    monkeypatch.setenv("NTM_JARS_DIR", str(tmp_path))
    with pytest.raises(MissingJarsError, match=r"`make -C \S+ jars`"):
        local_connector_jars()


def test_packages_match_pyspark_version():
    import pyspark

    assert connector_packages().startswith(f"org.apache.spark:spark-sql-kafka-0-10_2.13:{pyspark.__version__}")


def test_class_archive_is_written_once_then_mapped(tmp_path, monkeypatch):
    monkeypatch.setenv("NTM_JARS_DIR", str(tmp_path))
    archive = class_archive_path(["a.jar"])
    assert archive.parent == tmp_path / "cds" and archive != class_archive_path(["b.jar"])
    stale = tmp_path / "cds" / f"{archive.name}.999999999.tmp"  # a killed driver's partial dump
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"partial")
    options, writing = _class_archive_options(archive)
    assert options[0] == f"-XX:ArchiveClassesAtExit={writing}" and writing.parent == archive.parent
    assert not stale.exists()
    archive.write_bytes(b"archive")
    options, writing = _class_archive_options(archive)
    assert options[0] == f"-XX:SharedArchiveFile={archive}" and writing is None


def test_cli_flags_override_spark_config():
    import argparse

    parser = add_spark_args(argparse.ArgumentParser())
    args = parser.parse_args(["--master", "local[1]", "--spark-conf", "spark.sql.shuffle.partitions=3"])
    cfg = spark_config_from_args(args)
    assert cfg.master == "local[1]"
    assert cfg.conf["spark.sql.shuffle.partitions"] == "3"
    with pytest.raises(ConfigError, match="--spark-conf"):
        spark_config_from_args(parser.parse_args(["--spark-conf", "nokey"]))


def test_local_master_threads():
    assert local_master_threads("local") == 1
    assert local_master_threads("local[2]") == 2 and local_master_threads("local[3,4]") == 3
    assert local_master_threads("local[*]") == (os.cpu_count() or 1)
    for other in (None, "yarn", "local-cluster[2,1,1024]", "spark://127.0.0.1:7077", "local[x]"):
        assert local_master_threads(other) is None, other


def test_local_master_with_slots_only_grows_a_local_master():
    assert local_master_with_slots("local[2]", 4) == "local[4]"
    assert local_master_with_slots("local", 3) == "local[3]"
    assert local_master_with_slots("local[2,3]", 4) == "local[4,3]"  # task retries kept
    assert local_master_with_slots("local[4]", 2) == "local[4]"  # never fewer slots
    assert local_master_with_slots("local[2]", 0) == "local[2]"  # partitions unknown
    assert local_master_with_slots("yarn", 8) == "yarn" and local_master_with_slots(None, 8) is None


def test_is_local_master():
    assert is_local_master("local[2]") and is_local_master(None) and is_local_master("local")
    assert not is_local_master("yarn")
    # Issue 17: local-cluster starts worker JVMs without the driver's class path.
    assert not is_local_master("local-cluster[2,1,1024]")
    assert not is_local_master("spark://127.0.0.1:7077")


def test_is_loopback_master():
    from ntm_spark.spark.session import is_loopback_master

    assert is_loopback_master("local[2]") and is_loopback_master("local-cluster[2,1,1024]")
    assert is_loopback_master("spark://127.0.0.1:7077") and is_loopback_master("spark://localhost:7077")
    assert not is_loopback_master("spark://10.0.0.5:7077") and not is_loopback_master("yarn")


@pytest.mark.spark
def test_session_has_connector_and_loopback(spark):
    conf = spark.sparkContext.getConf()
    assert "spark-sql-kafka-0-10" in conf.get("spark.jars")
    assert conf.get("spark.driver.host") == "127.0.0.1"
    assert spark.range(10).count() == 10


def test_local_file_system_sets_permissions_in_process(spark, tmp_path):
    import os
    import stat

    from ntm_spark.spark.session import NIO_LOCAL_FILESYSTEM, local_filesystem_jar

    if local_filesystem_jar() is None:
        pytest.skip("ntm-hadoop-fs.jar is not built (no javac here): `make jars` builds it with a JDK")
    jvm = spark.sparkContext._jvm
    fs = jvm.org.apache.hadoop.fs.FileSystem.get(jvm.java.net.URI("file:///"), spark.sparkContext._jsc.hadoopConfiguration())
    assert fs.getClass().getName() == NIO_LOCAL_FILESYSTEM

    target = tmp_path / "file.txt"
    target.write_text("x")
    os.chmod(target, 0o600)
    fs.setPermission(jvm.org.apache.hadoop.fs.Path(str(target)), jvm.org.apache.hadoop.fs.permission.FsPermission("640"))
    assert stat.S_IMODE(target.stat().st_mode) == 0o640

    # A Spark write gets Hadoop's default modes under its umask (022): 755 folders, 644 files.
    out = tmp_path / "out"
    spark.range(3).write.parquet(str(out))
    parts = list(out.glob("part-*.parquet"))
    assert parts and all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in parts)
    assert stat.S_IMODE(out.stat().st_mode) == 0o755


def test_stop_spark_session_stops_the_context_and_closes_the_accumulator_server():
    # Its own process: the tests' shared session must stay up.
    import subprocess
    import sys

    script = """
from pyspark import SparkContext
from ntm_spark.core.config import SparkConfig
from ntm_spark.spark.session import build_spark_session, stop_spark_session

cfg = SparkConfig(master="local[1]", kafka_connector="none", class_data_sharing=False, conf={"spark.ui.enabled": "false"})
spark = build_spark_session(cfg)

def passthrough(batches):
    yield from batches

assert spark.range(3).mapInArrow(passthrough, "id long").count() == 3  # a Python task: the JVM connects to the server
sc = spark.sparkContext
server = sc._accumulatorServer
closer = stop_spark_session(spark)
assert SparkContext._active_spark_context is None and sc._jsc is None, "the context is still active"
closer.join(10)
assert not closer.is_alive() and server.socket.fileno() == -1, "the accumulator server is still open"
print("STOPPED")
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "STOPPED" in out.stdout, out.stderr[-3000:]


def test_no_new_jvm_under_spark_submit(monkeypatch):
    # spark-submit starts the JVM first: class path and JVM options set by the builder cannot reach it.
    from pyspark import SparkContext

    from ntm_spark.spark.session import starts_new_jvm

    monkeypatch.setattr(SparkContext, "_gateway", None)
    monkeypatch.delenv("PYSPARK_GATEWAY_PORT", raising=False)
    assert starts_new_jvm()
    monkeypatch.setenv("PYSPARK_GATEWAY_PORT", "41234")
    assert not starts_new_jvm()
