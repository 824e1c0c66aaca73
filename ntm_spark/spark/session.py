"""The one Spark session builder every job uses, and its shared CLI flags.

In local mode it adds Spark's Kafka connector from the Maven-resolved jars
under ``.ntm/jars/spark`` (``make jars``); on a cluster it can instead set
``spark.jars.packages`` coordinates (``spark.kafka_connector: packages``).
It also points executors at the NLTK data (``NLTK_DATA``) so that the one
text-normalization function runs the same everywhere.

In local mode the driver JVM maps its classes from a class-data-sharing archive
(the JDK's AppCDS, ``spark.class_data_sharing``): the first session that finds
none writes it when its JVM exits, beside the jars (``.ntm/jars/cds``), keyed by the JVM and
the jars, and every later session starts a few seconds faster (class loading is
most of a local session's start-up).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from ntm_spark.core.config import ConfigError, SparkConfig, load_config
from ntm_spark.core.paths import INSTALL_DIR, install_hint, jars_dir, state_dir

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

#: The connector artifacts, versioned like the installed pyspark.
KAFKA_CONNECTOR_ARTIFACTS = (
    "org.apache.spark:spark-sql-kafka-0-10_2.13",
    "org.apache.spark:spark-token-provider-kafka-0-10_2.13",
)


class MissingJarsError(RuntimeError):
    """The Maven-resolved jars are not in the project's jar folder."""


def add_spark_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the flags every job shares: ``--master``, ``--spark-conf``, ``--config``, ``--set``."""
    group = parser.add_argument_group("spark and config")
    group.add_argument("--master", default=None, help="Spark master URL, e.g. local[2] or yarn (default from conf/base/spark.yaml)")
    group.add_argument(
        "--spark-conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra Spark setting, repeatable (e.g. --spark-conf spark.sql.shuffle.partitions=8)",
    )
    group.add_argument("--config", default=None, metavar="YAML", help="a YAML file laid over conf/base and conf/local")
    group.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config value, repeatable (e.g. --set vocab_size=500)",
    )
    return parser


def spark_config_from_args(args: argparse.Namespace) -> SparkConfig:
    """Resolve the Spark section from ``conf/base/spark.yaml`` plus ``--master``/``--spark-conf``."""
    cfg = load_config("spark")
    if getattr(args, "master", None):
        cfg.master = args.master
    for item in getattr(args, "spark_conf", []) or []:
        if "=" not in item:
            raise ConfigError(f"invalid --spark-conf {item!r}: write it as key=value, e.g. spark.sql.shuffle.partitions=8.")
        key, value = item.split("=", 1)
        cfg.conf[key.strip()] = value
    return cfg


def local_connector_jars() -> list[Path]:
    """Return the connector jars resolved by ``make jars``.

    Raises:
        MissingJarsError: when they are missing, naming the command that resolves them.
    """
    folder = jars_dir() / "spark"
    jars = sorted(folder.glob("*.jar"))
    if not any("spark-sql-kafka" in j.name for j in jars):
        raise MissingJarsError(
            f"Spark's Kafka connector jars are missing from {folder}. "
            f"Resolve them with `{install_hint('jars')}` (mvn -f conf/jvm/pom.xml package into "
            f"{INSTALL_DIR / 'jars'}, which every NTM_HOME without its own jars uses), "
            "or set spark.kafka_connector=packages to fetch them by coordinates."
        )
    return jars


def starts_new_jvm() -> bool:
    """Return whether building a session now starts a new driver JVM.

    Not when one is running in this process, nor under ``spark-submit``, whose JVM started
    first and hands its address over in ``PYSPARK_GATEWAY_PORT``: options and class path set
    now would not reach it.
    """
    from pyspark import SparkContext

    return SparkContext._gateway is None and "PYSPARK_GATEWAY_PORT" not in os.environ


#: The local file system class in ``ntm-hadoop-fs.jar`` (``conf/jvm/src``).
NIO_LOCAL_FILESYSTEM = "io.github.ntmspark.hadoop.NioLocalFileSystem"


def local_filesystem_jar() -> Optional[Path]:
    """Return ``ntm-hadoop-fs.jar`` (built by ``make jars``), or None when it was not built (no JDK)."""
    jar = jars_dir() / "hadoop" / "ntm-hadoop-fs.jar"
    return jar if jar.is_file() else None


def scorer_jar() -> Optional[Path]:
    """Return ``ntm-scorer.jar``, the JVM scorer of ``--trigger real_time`` (built by ``make jars``), or None."""
    jar = jars_dir() / "scorer" / "ntm-scorer.jar"
    return jar if jar.is_file() else None


def connector_packages() -> str:
    """Return ``spark.jars.packages`` coordinates matching the installed pyspark."""
    import pyspark

    version = pyspark.__version__
    return ",".join(f"{a}:{version}" for a in KAFKA_CONNECTOR_ARTIFACTS)


def is_local_master(master: Optional[str]) -> bool:
    """Return whether ``master`` runs driver and executors in one JVM (``local``, ``local[*]``, ``local[2,3]``).

    ``local-cluster[N,cores,mem]`` is not: it starts N worker JVMs, which lack the driver's class
    path (the NIO file system class) and its JVM options.
    """
    return master is None or master == "local" or master.startswith("local[")


def local_master_threads(master: Optional[str]) -> Optional[int]:
    """Return the task slots of a local master (``local``: 1, ``local[N]``/``local[N,F]``: N, ``local[*]``: the cores).

    ``None`` for any other master (its slots are its executors' cores) and for ``None`` itself.
    """
    if master == "local":
        return 1
    if master is None or not master.startswith("local[") or not master.endswith("]"):
        return None
    threads = master[len("local[") : -1].split(",")[0].strip()
    if threads == "*":
        return os.cpu_count() or 1
    try:
        return int(threads)
    except ValueError:
        return None


def local_master_with_slots(master: Optional[str], slots: int) -> Optional[str]:
    """``master`` with at least ``slots`` task slots when it is local (``local[2]`` -> ``local[4]``), else unchanged.

    A ``local[N,F]`` master keeps its ``F`` (task retries).
    """
    threads = local_master_threads(master)
    if threads is None or threads >= slots:
        return master
    inside = master[len("local[") : -1] if master and master.startswith("local[") else ""
    retries = inside.split(",", 1)[1] if "," in inside else None
    return f"local[{slots},{retries}]" if retries else f"local[{slots}]"


def is_loopback_master(master: Optional[str]) -> bool:
    """Return whether every JVM of ``master`` runs on this machine: local, ``local-cluster[...]``, a loopback ``spark://``.

    For these the driver binds to 127.0.0.1 and Python workers run this interpreter.
    """
    if is_local_master(master) or master.startswith("local-cluster["):
        return True
    if master.startswith("spark://"):
        hosts = [h.rsplit(":", 1)[0] for h in master[len("spark://") :].split(",")]
        return all(h in ("127.0.0.1", "localhost") for h in hosts)
    return False


def submitted_spark_conf() -> dict[str, str]:
    """Return the Spark settings ``spark-submit`` gave the JVM it started (empty outside ``spark-submit``).

    Under ``spark-submit`` the JVM starts first, with ``--master``, ``--jars``, ``--packages``,
    ``--archives`` and ``--conf`` as its system properties; these win over the project's
    config defaults (``conf/base/spark.yaml``), so the submitted command means what it says.
    """
    if "PYSPARK_GATEWAY_PORT" not in os.environ:
        return {}
    from pyspark import SparkConf, SparkContext

    SparkContext._ensure_initialized()
    return dict(SparkConf(loadDefaults=True).getAll())


def class_archive_path(jars: Sequence[str] = ()) -> Path:
    """Return where the driver JVM's class-data-sharing archive is kept for this JVM and these jars.

    The name hashes the ``java`` that ``spark-submit`` runs (path and modification time),
    Spark's own jars and ``jars``: an archive only maps into the JVM and classpath that wrote it.
    """
    import pyspark

    java_home = os.environ.get("JAVA_HOME")
    java = os.path.join(java_home, "bin", "java") if java_home else shutil.which("java") or "java"
    java = os.path.realpath(java)
    spark_jars = Path(pyspark.__file__).parent / "jars"
    parts = [java, str(os.path.getmtime(java)) if os.path.exists(java) else "", pyspark.__version__]
    parts += sorted(p.name for p in spark_jars.glob("*.jar")) + [str(j) for j in jars]
    key = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    # Beside the jars, not in the state folder: runs with their own NTM_HOME (tests, demos) share it.
    return jars_dir() / "cds" / f"spark-{key}.jsa"


def _class_archive_options(archive: Path) -> tuple[list[str], Optional[Path]]:
    """Return the JVM options that use ``archive``, or that write it, and the file being written."""
    # The JVM's notes on classes it cannot archive (signed jars, old class files) are noise here.
    quiet = "-Xlog:cds*=error"
    if archive.is_file():
        # Its age tells unused archives (older JVMs or jars) apart; a read-only folder only loses that.
        with contextlib.suppress(OSError):
            os.utime(archive)
        return [f"-XX:SharedArchiveFile={archive}", quiet], None
    archive.parent.mkdir(parents=True, exist_ok=True)
    for stale in archive.parent.glob("*.jsa.*.tmp"):  # left by a driver that was killed while writing
        pid = stale.name.rsplit(".", 2)[-2]
        if not pid.isdigit() or not Path(f"/proc/{pid}").exists():
            stale.unlink(missing_ok=True)
    writing = archive.with_name(f"{archive.name}.{os.getpid()}.tmp")
    return [f"-XX:ArchiveClassesAtExit={writing}", quiet], writing


def _publish_class_archive(proc: "subprocess.Popen", writing: Path, archive: Path) -> None:
    """At the driver's exit: let the JVM exit (it writes the archive then) and publish the archive."""
    try:
        # The JVM exits when its stdin closes, as at any driver exit, and only then writes the archive.
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(timeout=180)
        if writing.is_file() and writing.stat().st_size > 0:
            os.replace(writing, archive)
            for old in archive.parent.glob("spark-*.jsa"):  # unused for a week: an older JVM or jars
                if time.time() - old.stat().st_mtime > 7 * 86400:
                    old.unlink(missing_ok=True)
            log.info("saved the JVM class archive %s: later sessions start faster", archive)
    except (OSError, subprocess.TimeoutExpired) as err:
        log.warning("could not save the JVM class archive %s (%s): sessions start without it", archive, err)
    finally:
        writing.unlink(missing_ok=True)


def build_spark_session(
    cfg: Optional[SparkConfig] = None,
    app_name: Optional[str] = None,
    local_java_options: Sequence[str] = (),
) -> "SparkSession":
    """Build (or reuse) the Spark session configured for ntm-spark.

    Args:
        cfg: The Spark config; defaults to ``conf/base/spark.yaml``.
        app_name: The job's own name, used unless ``cfg.app_name`` (``spark.app_name``) is set.
        local_java_options: Extra driver JVM options for a local master (a job's own
            tuning); ``spark.driver.extraJavaOptions`` in ``cfg.conf`` replaces them all.

    Returns:
        An active :class:`pyspark.sql.SparkSession`.
    """
    from ntm_spark.core.nltk_data import nltk_data_env

    cfg = cfg or load_config("spark")
    try:
        from pyspark.sql import SparkSession
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError("pyspark is not installed: run `pip install -e .[spark]` (or `make install`).") from err

    submitted = submitted_spark_conf()
    # spark-submit --master wins over the config's default master (local[2] for `ntm <job>`).
    master = submitted.get("spark.master") or cfg.master
    local = is_local_master(master)  # one JVM: driver-only class path and JVM options reach the executors
    loopback = is_loopback_master(master)
    if loopback:
        # Bind the driver, the block manager and the UI to loopback only.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        # Python workers on this machine run this interpreter (its venv has pandas, pyarrow, NLTK, torch).
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    # Executors (local Python workers inherit the driver's environment) find the NLTK data here.
    env = nltk_data_env()
    os.environ.update(env)

    builder = SparkSession.builder.appName(cfg.app_name or app_name or "ntm-spark")
    if master:
        builder = builder.master(master)
    defaults = {
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.session.timeZone": "UTC",
        # Stage progress bars only on a terminal; batch logs stay concise.
        "spark.ui.showConsoleProgress": "true" if sys.stderr.isatty() else "false",
    }
    if loopback:
        defaults.update(
            {
                "spark.driver.host": "127.0.0.1",
                "spark.driver.bindAddress": "127.0.0.1",
                "spark.sql.shuffle.partitions": "8",
                "spark.driver.memory": "2g",
                # Spark's default is ./spark-warehouse: the state folder, never the working directory.
                "spark.sql.warehouse.dir": (state_dir() / "spark-warehouse").as_uri(),
            }
        )
    for key, value in env.items():
        defaults[f"spark.executorEnv.{key}"] = value
    if cfg.kafka_connector == "local":
        defaults["spark.jars"] = ",".join(str(j) for j in local_connector_jars())
    elif cfg.kafka_connector == "packages":
        defaults["spark.jars.packages"] = connector_packages()
    jvm_scorer = scorer_jar()
    if jvm_scorer is not None:
        # The JVM scorer's UDFs (ntm_spark.spark.jvm_scoring): shipped to executors like the connector.
        defaults["spark.jars"] = ",".join(filter(None, [defaults.get("spark.jars"), str(jvm_scorer)]))
    from pyspark import SparkContext

    new_jvm = starts_new_jvm()  # JVM options and class path only apply to a JVM this call starts
    fs_jar = local_filesystem_jar() if local and new_jvm and cfg.nio_local_filesystem else None
    if fs_jar and not {"spark.driver.extraClassPath", "spark.hadoop.fs.file.impl"} & set(cfg.conf):
        # Only for a JVM started here, with the jar on its class path: the class must load.
        defaults["spark.driver.extraClassPath"] = str(fs_jar)
        defaults["spark.hadoop.fs.file.impl"] = NIO_LOCAL_FILESYSTEM
    java_options, writing = list(local_java_options) if local else [], None
    if local and new_jvm and cfg.class_data_sharing:
        archive = class_archive_path(
            [defaults.get(k, "") for k in ("spark.jars", "spark.jars.packages", "spark.driver.extraClassPath")]
        )
        cds_options, writing = _class_archive_options(archive)
        java_options += cds_options
    if java_options:
        defaults["spark.driver.extraJavaOptions"] = " ".join(java_options)
    if submitted:
        # What spark-submit was given (--jars, --packages, --conf spark.executorEnv.NLTK_DATA=...) stays.
        defaults = {k: v for k, v in defaults.items() if k not in submitted}
        if {"spark.jars", "spark.jars.packages"} & set(submitted) and any(
            "spark-sql-kafka" in submitted.get(k, "") for k in ("spark.jars", "spark.jars.packages")
        ):
            defaults.pop("spark.jars", None)
            defaults.pop("spark.jars.packages", None)
    for key, value in {**defaults, **{k: str(v) for k, v in cfg.conf.items()}}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    proc = getattr(SparkContext._gateway, "proc", None)
    if writing is not None and "spark.driver.extraJavaOptions" not in cfg.conf and proc is not None:
        atexit.register(_publish_class_archive, proc, writing, archive)
    spark.sparkContext.setLogLevel(cfg.log_level)
    if loopback:
        url = spark.sparkContext.uiWebUrl
        if url:
            log.info("Spark UI: %s", url)
    return spark


def stop_spark_session(spark: "SparkSession") -> Optional[threading.Thread]:
    """Stop ``spark`` as ``spark.stop()`` does, without its idle wait of about a second at the end.

    After stopping the JVM's context, pyspark's ``SparkContext.stop`` shuts down the driver's
    accumulator server and waits for it: its connection handler polls the JVM's socket once a
    second and its accept loop every half second, so a job that ran Python tasks waited about
    1 s with nothing to do (0.97 s against 0.07 s measured, issue 3's benchmark). Here the
    server is told to stop and closes itself in a background thread; the JVM side stops exactly
    as before. With a pyspark whose context lacks that server, this is ``spark.stop()``.

    Returns:
        The thread that shuts the accumulator server down (a daemon), or None.
    """
    sc = spark.sparkContext
    server = getattr(sc, "_accumulatorServer", None)
    closer = None
    if server is not None and hasattr(server, "server_shutdown") and hasattr(server, "shutdown"):
        server.server_shutdown = True  # the request handler returns at its next poll
        closer = threading.Thread(target=server.shutdown, name="ntm-accumulator-server-shutdown", daemon=True)
        closer.start()
        sc._accumulatorServer = None  # so that SparkContext.stop() does not wait for it
    spark.stop()
    return closer
