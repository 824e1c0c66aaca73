"""``ntm services up|down|status|reset``: a real local Kafka broker (KRaft), MLflow server and Spark cluster.

The broker runs from the Maven-resolved jars (``make jars``; a fresh ``$NTM_HOME`` uses
the ones in ``<repo>/.ntm/jars``) with storage formatted under ``<state>/services/kafka``; the MLflow server uses the same
SQLite store as the embedded default tracking URI, so the UI shows every run.
``--spark-workers N`` also starts a standalone Spark master and N workers (1 core each by
default) with pyspark's own ``bin/spark-class``; each worker runs its executors in their own
JVMs, so jobs submitted to ``spark://127.0.0.1:7077`` cross process boundaries as on a real
cluster. All bind to loopback only. ``down`` stops only the processes ``up`` started,
by the PIDs it recorded.

Usage:
    ntm services up [--mlflow] [--spark-workers N] [--kafka-port 9092] [--mlflow-port 5000] [--spark-master-port 7077]
    ntm services status
    ntm services down
    ntm services reset [--yes]
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ntm_spark.core.config import ServicesConfig, load_config
from ntm_spark.core.paths import INSTALL_DIR, install_hint, jars_dir, state_dir
from ntm_spark.core.uris import default_artifact_root, default_tracking_uri

log = logging.getLogger(__name__)

MIN_JAVA = 17


class ServiceError(RuntimeError):
    """A local service could not be started, checked or stopped; the message says how to fix it."""


# --------------------------------------------------------------------------- helpers


def services_dir() -> Path:
    """Return the folder holding the services' state, logs and PID files."""
    return state_dir() / "services"


def port_in_use(host: str, port: int) -> bool:
    """Return whether something already listens on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def create_topics(bootstrap: str, *names: str, partitions: int = 2) -> None:
    """Create Kafka topics (``replication_factor=1``, the local broker) with kafka-python's admin client."""
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names])
    finally:
        admin.close()


def java_version(java: str = "java") -> int:
    """Return the major version of ``java``.

    Raises:
        ServiceError: when Java is missing or older than 17.
    """
    exe = shutil.which(java) or (Path(os.environ["JAVA_HOME"]) / "bin" / "java" if os.environ.get("JAVA_HOME") else None)
    if not exe:
        raise ServiceError("Java was not found on PATH: install Java 17+ (apt-get install openjdk-17-jre-headless) or set JAVA_HOME.")
    out = subprocess.run([str(exe), "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        raise ServiceError(f"cannot read the Java version from {exe!s} -version: {out.stderr.strip()!r}.")
    major = int(match.group(1))
    if major == 1 and match.group(2):  # "1.8" style
        major = int(match.group(2))
    if major < MIN_JAVA:
        raise ServiceError(f"Java {major} at {exe} is too old: the Kafka 4 broker needs Java {MIN_JAVA}+; install it or set JAVA_HOME.")
    return major


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0): treat it as gone.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        return state != "Z"
    except OSError:
        return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@dataclass
class ManagedProcess:
    """A background process ``up`` started, recorded in ``<dir>/pid`` with a marker in its command line."""

    name: str
    workdir: Path
    marker: str

    @property
    def pid_file(self) -> Path:
        """The PID file."""
        return self.workdir / "pid"

    @property
    def log_file(self) -> Path:
        """The process's combined stdout/stderr log."""
        return self.workdir / f"{self.name}.log"

    def pid(self) -> Optional[int]:
        """Return the recorded PID if that process is alive and is ours, else ``None``."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if _pid_alive(pid) and self.marker in _cmdline(pid):
            return pid
        return None

    def start(self, cmd: list[str], env: Optional[dict] = None, unset: tuple[str, ...] = ()) -> int:
        """Start ``cmd`` detached in its own session, logging to :attr:`log_file` (without the ``unset`` variables)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        logf = open(self.log_file, "ab")  # noqa: SIM115 - handed to the child
        child_env = {k: v for k, v in os.environ.items() if k not in unset}
        proc = subprocess.Popen(
            cmd,
            stdout=logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.workdir,
            env={**child_env, **(env or {})},
            start_new_session=True,
        )
        logf.close()
        self.pid_file.write_text(str(proc.pid))
        self._proc = proc
        return proc.pid

    def exited(self) -> Optional[int]:
        """Return the exit code if the process started by :meth:`start` already ended."""
        proc = getattr(self, "_proc", None)
        return proc.poll() if proc is not None else None

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the recorded process group (SIGTERM, then SIGKILL); return whether one was running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _pid_alive(pid):
            self._reap(pid)
            time.sleep(0.2)
        if _pid_alive(pid):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            time.sleep(0.5)
        self._reap(pid)
        self.pid_file.unlink(missing_ok=True)
        return True

    def _reap(self, pid: Optional[int] = None) -> None:
        proc = getattr(self, "_proc", None)
        if proc is not None:
            proc.poll()
        if pid is not None:
            # The process may be our child even when another ManagedProcess started it.
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass

    def log_tail(self, lines: int = 30) -> str:
        """Return the last lines of the log, for error messages."""
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


# --------------------------------------------------------------------------- Kafka


LOG4J2 = """Configuration:
  status: warn
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: WARN
      AppenderRef:
        - ref: STDOUT
    Logger:
      - name: kafka.server.KafkaRaftServer
        level: INFO
      - name: kafka.server.BrokerServer
        level: INFO
"""


def new_cluster_id() -> str:
    """Return a KRaft cluster id: a random UUID in URL-safe base64 (22 characters), as Kafka makes them.

    Like Kafka's ``Uuid.randomUuid``, an id that starts with ``-`` is drawn again: ``kafka-storage
    format -t -abc...`` would read it as an option (1 start in 64 failed that way).
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class KafkaBroker:
    """A single-node KRaft broker+controller on loopback, from the project's jars."""

    def __init__(self, cfg: ServicesConfig, workdir: Optional[Path] = None):
        self.cfg = cfg
        self.workdir = Path(workdir or services_dir() / "kafka").resolve()  # the broker runs with cwd=workdir
        self.proc = ManagedProcess("kafka", self.workdir, marker=str(self.workdir / "server.properties"))

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` clients connect to."""
        return f"{self.cfg.host}:{self.cfg.kafka_port}"

    @property
    def data_dir(self) -> Path:
        """The broker's log (data) directory."""
        return self.workdir / "data"

    def classpath(self) -> str:
        """Return the broker classpath, or raise naming the command that resolves the jars."""
        folder = jars_dir() / "kafka"
        if not list(folder.glob("kafka_2.13-*.jar")):
            raise ServiceError(
                f"the Kafka broker jars are missing from {folder}: resolve them with `{install_hint('jars')}` "
                f"(it installs into {INSTALL_DIR / 'jars'}, which every NTM_HOME without its own jars uses), "
                "or point NTM_JARS_DIR at a folder holding kafka/."
            )
        return str(folder / "*")

    def write_properties(self) -> Path:
        """Write ``server.properties`` for a KRaft combined broker/controller on loopback."""
        c = self.cfg
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"{c.host}:{c.kafka_controller_port}",
            "listeners": f"PLAINTEXT://{c.host}:{c.kafka_port},CONTROLLER://{c.host}:{c.kafka_controller_port}",
            "advertised.listeners": f"PLAINTEXT://{c.host}:{c.kafka_port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "2",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            "delete.topic.enable": "true",
        }
        self.workdir.mkdir(parents=True, exist_ok=True)
        path = self.workdir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.workdir / "log4j2.yaml").write_text(LOG4J2)
        return path

    def _java(self, main: str, *args: str) -> list[str]:
        return [
            "java",
            f"-Xmx{self.cfg.kafka_heap}",
            "-Xms128m",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.yaml'}",
            "-cp",
            self.classpath(),
            main,
            *args,
        ]

    def format_storage(self, props: Path) -> None:
        """Format KRaft storage once (a new cluster id); skipped when already formatted."""
        if (self.data_dir / "meta.properties").exists():
            return
        cluster_id = new_cluster_id()
        out = subprocess.run(
            self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props), "--standalone"),
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            raise ServiceError(
                f"formatting Kafka storage in {self.data_dir} failed: {(out.stdout + out.stderr).strip()[-800:]}. "
                "If the storage is corrupted, wipe it with `ntm services reset`."
            )

    def healthy(self, timeout: float = 5.0) -> bool:
        """Return whether the broker answers a metadata request."""
        if not port_in_use(self.cfg.host, self.cfg.kafka_port):
            return False
        try:
            from kafka import KafkaAdminClient

            admin = KafkaAdminClient(bootstrap_servers=self.bootstrap_servers, request_timeout_ms=int(timeout * 1000))
            try:
                admin.list_topics()
            finally:
                admin.close()
            return True
        except Exception:  # noqa: BLE001 - any client error means "not healthy yet"
            return False

    def up(self) -> str:
        """Start the broker if it is not running, wait until it answers, and return its address."""
        if self.proc.pid() is not None:
            if not self.healthy():
                self._wait_healthy()
            return self.bootstrap_servers
        java_version()
        for name in ("kafka_port", "kafka_controller_port"):
            port = getattr(self.cfg, name)
            if port_in_use(self.cfg.host, port):
                raise ServiceError(
                    f"port {self.cfg.host}:{port} ({name}) is already in use by another process: stop it, "
                    f"or choose another port (ntm services up --{name.replace('_', '-')} N, or services.{name} in conf/local/services.yaml)."
                )
        props = self.write_properties()
        self.format_storage(props)
        self.proc.start(self._java("kafka.Kafka", str(props)))
        self._wait_healthy()
        return self.bootstrap_servers

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.cfg.start_timeout_s
        while time.monotonic() < deadline:
            code = self.proc.exited()
            if code is not None or (self.proc.pid() is None and not self.proc.pid_file.exists()):
                tail = self.proc.log_tail()
                hint = (
                    " The broker storage looks corrupted or from another cluster: wipe it with `ntm services reset`."
                    if re.search(r"meta\.properties|InconsistentClusterId|corrupt|Invalid cluster|directory id", tail, re.I)
                    else ""
                )
                self.proc.pid_file.unlink(missing_ok=True)
                raise ServiceError(f"the Kafka broker exited (code {code}) while starting.{hint} Log {self.proc.log_file}:\n{tail}")
            if self.healthy():
                return
            time.sleep(0.5)
        tail = self.proc.log_tail()
        self.proc.stop()
        raise ServiceError(f"the Kafka broker did not answer within {self.cfg.start_timeout_s}s; log {self.proc.log_file}:\n{tail}")

    def down(self) -> bool:
        """Stop the broker ``up`` started; return whether one was running."""
        return self.proc.stop()


# --------------------------------------------------------------------------- MLflow


class MlflowServer:
    """``mlflow server`` on loopback over the project's SQLite store and artifact root."""

    def __init__(self, cfg: ServicesConfig, workdir: Optional[Path] = None):
        self.cfg = cfg
        self.workdir = Path(workdir or services_dir() / "mlflow").resolve()
        self.proc = ManagedProcess("mlflow", self.workdir, marker="mlflow")

    @property
    def url(self) -> str:
        """The server's base URL (the tracking URI clients use)."""
        return f"http://{self.cfg.host}:{self.cfg.mlflow_port}"

    def healthy(self) -> bool:
        """Return whether ``GET /health`` answers OK."""
        import urllib.request

        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as resp:  # noqa: S310 - loopback
                return resp.status == 200
        except OSError:
            return False

    def up(self) -> str:
        """Start the server if it is not running, wait for ``/health``, and return its URL."""
        if self.proc.pid() is not None:
            self._wait_healthy()
            return self.url
        if port_in_use(self.cfg.host, self.cfg.mlflow_port):
            raise ServiceError(
                f"port {self.cfg.host}:{self.cfg.mlflow_port} (mlflow_port) is already in use: stop that process or "
                "choose another port (ntm services up --mlflow-port N, or services.mlflow_port in conf/local/services.yaml)."
            )
        state_dir().mkdir(parents=True, exist_ok=True)
        mlflow_exe = Path(sys.executable).with_name("mlflow")
        cmd = [
            str(mlflow_exe) if mlflow_exe.exists() else "mlflow",
            "server",
            "--host",
            self.cfg.host,
            "--port",
            str(self.cfg.mlflow_port),
            "--backend-store-uri",
            default_tracking_uri(),
            "--default-artifact-root",
            default_artifact_root(),
            "--no-serve-artifacts",
            "--workers",
            "1",
        ]
        self.proc.start(cmd, env={"MLFLOW_TRACKING_URI": default_tracking_uri()})
        self._wait_healthy()
        return self.url

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + max(self.cfg.start_timeout_s, 90)
        while time.monotonic() < deadline:
            code = self.proc.exited()
            if code is not None:
                raise ServiceError(f"mlflow server exited (code {code}) while starting; log {self.proc.log_file}:\n{self.proc.log_tail()}")
            if self.healthy():
                return
            time.sleep(0.5)
        tail = self.proc.log_tail()
        self.proc.stop()
        raise ServiceError(f"mlflow server did not answer /health within the timeout; log {self.proc.log_file}:\n{tail}")

    def down(self) -> bool:
        """Stop the server ``up`` started; return whether one was running."""
        return self.proc.stop()


# --------------------------------------------------------------------------- Spark standalone


def spark_home() -> Path:
    """Return pyspark's install folder, which holds ``bin/spark-class`` and Spark's jars."""
    try:
        import pyspark
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ServiceError("pyspark is not installed: run `pip install -e .[spark]` (or `make install`).") from err
    return Path(pyspark.__file__).resolve().parent


class SparkCluster:
    """A standalone Spark master and ``cfg.spark_workers`` workers on loopback, from pyspark's ``bin/spark-class``.

    Each process is a :class:`ManagedProcess` with its own folder under ``<state>/services/spark``
    (``master``, ``worker-1``...); the marker in its command line is its ``--properties-file``.
    Workers start without ``PYTHONPATH``: the code reaches executors as on a real cluster,
    through ``spark-submit --py-files`` or the installed package.
    """

    MASTER_CLASS = "org.apache.spark.deploy.master.Master"
    WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"

    def __init__(self, cfg: ServicesConfig, workdir: Optional[Path] = None):
        self.cfg = cfg
        self.workdir = Path(workdir or services_dir() / "spark").resolve()
        self.master = self._managed("master")

    def _managed(self, name: str) -> ManagedProcess:
        folder = self.workdir / name
        return ManagedProcess(name, folder, marker=str(folder / "spark.properties"))

    def worker(self, index: int) -> ManagedProcess:
        """The ``index``-th worker (1-based)."""
        return self._managed(f"worker-{index}")

    def recorded_workers(self) -> list[ManagedProcess]:
        """Every worker with a folder here, started or not (``down`` stops them all)."""
        folders = sorted(self.workdir.glob("worker-*"), key=lambda f: int(f.name.split("-")[1]) if f.name.split("-")[1].isdigit() else 0)
        return [self._managed(f.name) for f in folders]

    @property
    def master_url(self) -> str:
        """The URL jobs are submitted to (``--master``)."""
        return f"spark://{self.cfg.host}:{self.cfg.spark_master_port}"

    @property
    def webui_url(self) -> str:
        """The master's web UI (and its ``/json`` status)."""
        return f"http://{self.cfg.host}:{self.cfg.spark_master_webui_port}"

    def _spark_class(self, proc: ManagedProcess, main: str, *args: str) -> list[str]:
        proc.workdir.mkdir(parents=True, exist_ok=True)
        props = Path(proc.marker)
        # Executors of a dead application are cleaned from the worker's folder; nothing listens beyond loopback.
        props.write_text("spark.worker.cleanup.enabled=true\nspark.ui.reverseProxy=false\n")
        spark_class = spark_home() / "bin" / "spark-class"
        if not spark_class.is_file():
            raise ServiceError(f"{spark_class} is missing: reinstall pyspark (`pip install --force-reinstall pyspark`).")
        return [str(spark_class), main, "--host", self.cfg.host, "--properties-file", str(props), *args]

    def _env(self) -> dict:
        home = spark_home()
        return {
            "SPARK_HOME": str(home),
            "SPARK_LOCAL_IP": self.cfg.host,
            "SPARK_LOG_DIR": str(self.workdir / "logs"),
            # Executors' Python workers run this interpreter unless the job says otherwise.
            "PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON", sys.executable),
        }

    def status(self) -> dict:
        """Return the master's ``/json`` report (``status``, ``workers``, ``aliveworkers``...), or ``{}`` when it does not answer."""
        import urllib.request

        try:
            with urllib.request.urlopen(f"{self.webui_url}/json/", timeout=2) as resp:  # noqa: S310 - loopback
                return json.loads(resp.read())
        except (OSError, ValueError):
            return {}

    def alive_workers(self) -> int:
        """Return how many workers the master counts as alive."""
        report = self.status()
        return sum(1 for w in report.get("workers", []) if w.get("state") == "ALIVE")

    def up(self, workers: Optional[int] = None) -> str:
        """Start the master and the workers not yet running, wait until all are registered, and return the master URL."""
        workers = self.cfg.spark_workers if workers is None else workers
        if workers < 1:
            raise ServiceError(f"spark_workers={workers!r}: start at least one worker (ntm services up --spark-workers 2).")
        java_version()
        if self.master.pid() is None:
            for name in ("spark_master_port", "spark_master_webui_port"):
                port = getattr(self.cfg, name)
                if port_in_use(self.cfg.host, port):
                    raise ServiceError(
                        f"port {self.cfg.host}:{port} ({name}) is already in use by another process: stop it, or choose "
                        f"another port (ntm services up --{name.replace('_', '-')} N, or services.{name} in conf/local/services.yaml)."
                    )
            cmd = self._spark_class(
                self.master, self.MASTER_CLASS, "--port", str(self.cfg.spark_master_port),
                "--webui-port", str(self.cfg.spark_master_webui_port),
            )  # fmt: skip
            self.master.start(cmd, env=self._env())
            self._wait(lambda: bool(self.status()), "the Spark master", [self.master])
        started = []
        for index in range(1, workers + 1):
            proc = self.worker(index)
            if proc.pid() is not None:
                continue
            cmd = self._spark_class(
                proc, self.WORKER_CLASS, "--cores", str(self.cfg.spark_worker_cores), "--memory", self.cfg.spark_worker_memory,
                "--webui-port", "0", "--work-dir", str(proc.workdir / "work"), self.master_url,
            )  # fmt: skip
            proc.start(cmd, env=self._env(), unset=("PYTHONPATH",))
            started.append(proc)
        running = sum(1 for p in self.recorded_workers() if p.pid() is not None)
        self._wait(lambda: self.alive_workers() >= running, f"{workers} Spark worker(s)", [self.master, *started])
        return self.master_url

    def _wait(self, ready, what: str, procs: list[ManagedProcess]) -> None:
        deadline = time.monotonic() + self.cfg.start_timeout_s
        while time.monotonic() < deadline:
            for proc in procs:
                code = proc.exited()
                if code is not None:
                    raise ServiceError(f"{what}: {proc.name} exited (code {code}) while starting; log {proc.log_file}:\n{proc.log_tail()}")
            if ready():
                return
            time.sleep(0.5)
        tails = "\n".join(f"--- {p.log_file}\n{p.log_tail(15)}" for p in procs)
        raise ServiceError(
            f"{what} did not come up within services.start_timeout_s={self.cfg.start_timeout_s}s "
            f"(master UI {self.webui_url}); raise it in conf/local/services.yaml, or read the logs:\n{tails}"
        )

    def kill_worker(self, index: int) -> int:
        """Kill worker ``index`` and its executors at once (SIGKILL to its process group), as a lost node; return its PID."""
        proc = self.worker(index)
        pid = proc.pid()
        if pid is None:
            raise ServiceError(f"Spark worker {index} is not running (folder {proc.workdir}).")
        os.killpg(pid, signal.SIGKILL)
        proc._reap(pid)
        return pid

    def down(self) -> bool:
        """Stop every worker, then the master; return whether any was running."""
        stopped = [p.stop() for p in self.recorded_workers()]
        return self.master.stop() or any(stopped)


# --------------------------------------------------------------------------- CLI


def services_status(cfg: ServicesConfig) -> dict:
    """Return a JSON-able health report of both services: what answers on their ports right now.

    ``healthy`` probes the port (a Kafka metadata request, MLflow's ``/health``), whoever
    started the process; ``managed`` says whether it is the one ``up`` started from this
    state folder (``pid``), which ``down`` would stop.
    """
    kafka, mlf, cluster = KafkaBroker(cfg), MlflowServer(cfg), SparkCluster(cfg)
    kpid, mpid, spid = kafka.proc.pid(), mlf.proc.pid(), cluster.master.pid()
    master = cluster.status()
    return {
        "kafka": {"pid": kpid, "managed": kpid is not None, "bootstrap_servers": kafka.bootstrap_servers, "healthy": kafka.healthy()},
        "mlflow_server": {"pid": mpid, "managed": mpid is not None, "url": mlf.url, "healthy": mlf.healthy()},
        "spark_cluster": {
            "pid": spid,
            "managed": spid is not None,
            "master_url": cluster.master_url,
            "webui": cluster.webui_url,
            "healthy": master.get("status") == "ALIVE",
            "alive_workers": sum(1 for w in master.get("workers", []) if w.get("state") == "ALIVE"),
            "managed_workers": [p.pid() for p in cluster.recorded_workers() if p.pid() is not None],
        },
        "tracking_uri_default": default_tracking_uri(),
        "state_dir": str(state_dir()),
    }


def describe_mlflow(server: MlflowServer) -> str:
    """Return the ``mlflow:`` line of ``up`` when it was not asked to start the server: what actually runs."""
    if server.healthy():
        who = (
            f"started by `ntm services up --mlflow`, pid {server.proc.pid()}"
            if server.proc.pid() is not None
            else "not started from this state folder: `ntm services down` leaves it running"
        )
        return f"mlflow: {server.url} is running (UI and tracking URI; {who})"
    return (
        f"mlflow: no server on {server.url}; runs go to the embedded store {default_tracking_uri()} "
        "(start the UI with `ntm services up --mlflow`)"
    )


def main(argv: Optional[list[str]] = None) -> int:
    """Run ``ntm services up|down|status|reset``."""
    parser = argparse.ArgumentParser(prog="ntm services", description="Local Kafka broker (KRaft) and MLflow server on 127.0.0.1.")
    parser.add_argument("action", choices=["up", "down", "status", "reset"])
    parser.add_argument("--mlflow", action="store_true", help="also start `mlflow server` (up)")
    parser.add_argument("--no-kafka", action="store_true", help="do not start the broker (up)")
    parser.add_argument("--kafka-port", type=int, default=None)
    parser.add_argument("--kafka-controller-port", type=int, default=None)
    parser.add_argument("--mlflow-port", type=int, default=None)
    parser.add_argument("--spark-workers", type=int, default=None, metavar="N", help="also start a standalone Spark master and N workers (up)")
    parser.add_argument("--spark-master-port", type=int, default=None)
    parser.add_argument("--spark-master-webui-port", type=int, default=None)
    parser.add_argument("--yes", action="store_true", help="reset without asking")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    overrides = list(args.overrides)
    for flag in ("kafka_port", "kafka_controller_port", "mlflow_port", "spark_workers", "spark_master_port", "spark_master_webui_port"):
        if getattr(args, flag) is not None:
            overrides.append(f"{flag}={getattr(args, flag)}")
    cfg = load_config("services", overrides=overrides)
    kafka, mlf, cluster = KafkaBroker(cfg), MlflowServer(cfg), SparkCluster(cfg)
    try:
        if args.action == "up":
            if not args.no_kafka:
                print(f"kafka: {kafka.up()} (KRaft, log {kafka.proc.log_file})")
            if cfg.spark_workers:
                url = cluster.up()
                print(
                    f"spark: {url} ({cluster.alive_workers()} workers x {cfg.spark_worker_cores} core, "
                    f"UI {cluster.webui_url}, logs {cluster.workdir})"
                )
            if args.mlflow or cfg.mlflow_server:
                print(f"mlflow: {mlf.up()} (UI and tracking URI; store {default_tracking_uri()})")
            else:
                print(describe_mlflow(mlf))
        elif args.action == "down":
            stopped = [name for name, svc in (("spark", cluster), ("kafka", kafka), ("mlflow", mlf)) if svc.down()]
            print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")
        elif args.action == "status":
            report = services_status(cfg)
            print(json.dumps(report, indent=2))
            healthy = report["kafka"]["healthy"] or report["mlflow_server"]["healthy"] or report["spark_cluster"]["healthy"]
            return 0 if healthy else 3
        else:
            if not args.yes:
                if not sys.stdin.isatty():
                    print("ntm services reset: refusing to wipe state without --yes (stdin is not a terminal).", file=sys.stderr)
                    return 2
                answer = input(f"Wipe {services_dir()} (Kafka data, logs) and stop services? [y/N] ")
                if answer.strip().lower() not in ("y", "yes"):
                    print("aborted")
                    return 1
            cluster.down()
            kafka.down()
            mlf.down()
            shutil.rmtree(services_dir(), ignore_errors=True)
            print(f"wiped {services_dir()}")
    except ServiceError as err:
        print(f"ntm services {args.action}: {err}", file=sys.stderr)
        return 1
    return 0
