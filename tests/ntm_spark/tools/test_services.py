import json
import os
import socket

import pytest

from ntm_spark.core.config import load_config
from ntm_spark.tools import services
from ntm_spark.tools.services import KafkaBroker, ServiceError, free_port, java_version


def test_java_is_new_enough():
    assert java_version() >= 17


def test_java_missing_is_reported(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(ServiceError, match="Java was not found"):
        java_version()


def test_port_in_use_is_named(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        cfg = load_config("services", overrides=[f"kafka_port={port}", f"kafka_controller_port={free_port()}"])
        with pytest.raises(ServiceError, match=rf"127.0.0.1:{port} \(kafka_port\) is already in use"):
            KafkaBroker(cfg, workdir=tmp_path / "k").up()


def test_relative_workdir_is_made_absolute(tmp_path, monkeypatch):
    # The broker runs with cwd=workdir: a relative path would point at workdir/workdir/server.properties.
    monkeypatch.chdir(tmp_path)
    broker = KafkaBroker(load_config("services"), workdir="rel/k")
    assert broker.workdir == tmp_path / "rel" / "k" and broker.workdir.is_absolute()


def test_missing_jars_say_make_jars(tmp_path, monkeypatch):
    monkeypatch.setenv("NTM_JARS_DIR", str(tmp_path))
    cfg = load_config("services")
    with pytest.raises(ServiceError, match=r"`make -C \S+ jars`"):
        KafkaBroker(cfg, workdir=tmp_path / "k").classpath()


def test_reset_refuses_without_yes_when_not_interactive(tmp_path, monkeypatch):
    monkeypatch.setenv("NTM_HOME", str(tmp_path))
    monkeypatch.setattr("sys.stdin", open(os.devnull))
    assert services.main(["reset"]) == 2


@pytest.mark.integration
@pytest.mark.kafka
@pytest.mark.slow
def test_up_status_down_leaves_nothing_behind(tmp_path, monkeypatch, capsys, live_processes):
    from ntm_spark.core.paths import jars_dir

    monkeypatch.setenv("NTM_JARS_DIR", str(jars_dir()))
    monkeypatch.setenv("NTM_HOME", str(tmp_path))
    ports = [f"--kafka-port={free_port()}", f"--kafka-controller-port={free_port()}", f"--mlflow-port={free_port()}"]
    try:
        assert services.main(["up", "--mlflow", *ports]) == 0
        assert services.main(["up", "--mlflow", *ports]) == 0  # idempotent
        out = capsys.readouterr().out
        assert "kafka: 127.0.0.1:" in out and "mlflow: http://127.0.0.1:" in out
        assert services.main(["up", *ports]) == 0  # without --mlflow: reports the server that runs
        assert "is running (UI and tracking URI; started by `ntm services up --mlflow`" in capsys.readouterr().out
        assert services.main(["status", *ports]) == 0
        assert '"healthy": true' in capsys.readouterr().out
        assert live_processes(str(tmp_path))  # the broker runs with our marker
    finally:
        assert services.main(["down", *ports]) == 0
    assert "stopped: kafka, mlflow" in capsys.readouterr().out
    assert live_processes(str(tmp_path)) == []
    assert services.main(["status", *ports]) == 3
    assert services.main(["reset", "--yes", *ports]) == 0
    assert not (tmp_path / "services").exists()


@pytest.mark.integration
@pytest.mark.kafka
def test_corrupted_storage_suggests_reset(tmp_path, monkeypatch):
    cfg = load_config("services", overrides=[f"kafka_port={free_port()}", f"kafka_controller_port={free_port()}", "start_timeout_s=40"])
    broker = KafkaBroker(cfg, workdir=tmp_path / "k")
    broker.data_dir.mkdir(parents=True)
    (broker.data_dir / "meta.properties").write_text("version=1\ncluster.id=broken\nnode.id=7\n")
    try:
        with pytest.raises(ServiceError, match="ntm services reset"):
            broker.up()
    finally:
        broker.down()


def test_cluster_id_never_starts_with_a_dash(monkeypatch):
    import uuid

    # The first draw encodes to "-" + 21 chars (it would read as an option to kafka-storage); the next does not.
    draws = iter([uuid.UUID(bytes=b"\xfb" + b"\x00" * 15), uuid.UUID(int=1)])
    monkeypatch.setattr(services.uuid, "uuid4", lambda: next(draws))
    cluster_id = services.new_cluster_id()
    assert cluster_id == "AAAAAAAAAAAAAAAAAAAAAQ" and len(cluster_id) == 22
    monkeypatch.undo()
    assert all(not services.new_cluster_id().startswith("-") for _ in range(2000))


@pytest.fixture()
def health_server():
    """An HTTP server answering GET /health with 200 on a free loopback port, as `mlflow server` does."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Health(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_up_without_mlflow_reports_a_running_ui(tmp_path, monkeypatch, capsys, health_server):
    """Issue 15: `up` without --mlflow said the UI was not running when one answered on the port."""
    monkeypatch.setenv("NTM_HOME", str(tmp_path))
    assert services.main(["up", "--no-kafka", f"--mlflow-port={health_server}"]) == 0
    out = capsys.readouterr().out
    assert f"mlflow: http://127.0.0.1:{health_server} is running" in out
    assert "not started from this state folder" in out and "start the UI" not in out
    assert services.main(["status", "--mlflow-port", str(health_server), "--kafka-port", str(free_port())]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["mlflow_server"] == {
        "pid": None, "managed": False, "url": f"http://127.0.0.1:{health_server}", "healthy": True,
    }  # fmt: skip
    assert report["kafka"]["healthy"] is False


def test_up_without_mlflow_reports_no_ui_when_none_answers(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NTM_HOME", str(tmp_path))
    port = free_port()
    assert services.main(["up", "--no-kafka", f"--mlflow-port={port}"]) == 0
    out = capsys.readouterr().out
    assert f"mlflow: no server on http://127.0.0.1:{port}" in out and "ntm services up --mlflow" in out
    assert services.main(["status", "--mlflow-port", str(port), "--kafka-port", str(free_port())]) == 3


def test_spark_cluster_settings_are_checked():
    from ntm_spark.core.config import ConfigError

    with pytest.raises(ConfigError, match="services.spark_worker_memory"):
        load_config("services", overrides=["spark_worker_memory=lots"])
    with pytest.raises(ConfigError, match="services.spark_workers"):
        load_config("services", overrides=["spark_workers=-1"])


def test_spark_master_port_in_use_is_named(tmp_path):
    from ntm_spark.tools.services import SparkCluster

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        cfg = load_config("services", overrides=[f"spark_master_port={port}", f"spark_master_webui_port={free_port()}"])
        with pytest.raises(ServiceError, match=rf"127.0.0.1:{port} \(spark_master_port\) is already in use.*--spark-master-port"):
            SparkCluster(cfg, workdir=tmp_path / "s").up(workers=1)
        with pytest.raises(ServiceError, match="spark-workers 2"):
            SparkCluster(cfg, workdir=tmp_path / "s").up(workers=0)


@pytest.mark.integration
@pytest.mark.cluster
@pytest.mark.slow
def test_spark_workers_up_status_down_leaves_nothing_behind(tmp_path, monkeypatch, capsys, live_processes):
    """`ntm services up --spark-workers 2` starts a master and 2 one-core workers on loopback; `down` stops them all."""
    monkeypatch.setenv("NTM_HOME", str(tmp_path))
    ports = [f"--spark-master-port={free_port()}", f"--spark-master-webui-port={free_port()}"]
    try:
        assert services.main(["up", "--no-kafka", "--spark-workers", "2", *ports]) == 0
        assert "(2 workers x 1 core" in capsys.readouterr().out
        assert services.main(["status", *ports]) == 0
        report = json.loads(capsys.readouterr().out)["spark_cluster"]
        assert report["healthy"] and report["alive_workers"] == 2 and len(report["managed_workers"]) == 2
        assert len(live_processes(str(tmp_path / "services" / "spark"))) == 3  # the master and 2 workers
    finally:
        assert services.main(["down", *ports]) == 0
    assert "stopped: spark" in capsys.readouterr().out
    assert live_processes(str(tmp_path / "services" / "spark")) == []
