"""The one Spark session builder every job uses, and its shared CLI flags.

In local mode it adds Spark's Kafka connector from the Maven-resolved jars
under ``.ntm/jars/spark`` (``make jars``); on a cluster it can instead set
``spark.jars.packages`` coordinates (``spark.kafka_connector: packages``).
It also points executors at the NLTK data (``NLTK_DATA``) so that the one
text-normalization function runs the same everywhere.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from ntm_spark.config import ConfigError, SparkConfig, load_config
from ntm_spark.paths import jars_dir

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
            "Resolve them with `make jars` (mvn -f conf/jvm/pom.xml package), "
            "or set spark.kafka_connector=packages to fetch them by coordinates."
        )
    return jars


def connector_packages() -> str:
    """Return ``spark.jars.packages`` coordinates matching the installed pyspark."""
    import pyspark

    version = pyspark.__version__
    return ",".join(f"{a}:{version}" for a in KAFKA_CONNECTOR_ARTIFACTS)


def is_local_master(master: Optional[str]) -> bool:
    """Return whether ``master`` runs Spark in this process's machine (``local``, ``local[*]``...)."""
    return master is None or master.startswith("local")


def build_spark_session(cfg: Optional[SparkConfig] = None, app_name: Optional[str] = None) -> "SparkSession":
    """Build (or reuse) the Spark session configured for ntm-spark.

    Args:
        cfg: The Spark config; defaults to ``conf/base/spark.yaml``.
        app_name: Overrides ``cfg.app_name``.

    Returns:
        An active :class:`pyspark.sql.SparkSession`.
    """
    from ntm_spark.nltk_data import nltk_data_env

    cfg = cfg or load_config("spark")
    try:
        from pyspark.sql import SparkSession
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError("pyspark is not installed: run `pip install -e .[spark]` (or `make install`).") from err

    local = is_local_master(cfg.master)
    if local:
        # Bind the driver, the block manager and the UI to loopback only.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        # Local Python workers run this interpreter (its venv has pandas, pyarrow, NLTK, torch).
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    # Executors (local Python workers inherit the driver's environment) find the NLTK data here.
    env = nltk_data_env()
    os.environ.update(env)

    builder = SparkSession.builder.appName(app_name or cfg.app_name)
    if cfg.master:
        builder = builder.master(cfg.master)
    defaults = {
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.session.timeZone": "UTC",
        # Stage progress bars only on a terminal; batch logs stay concise.
        "spark.ui.showConsoleProgress": "true" if sys.stderr.isatty() else "false",
    }
    if local:
        defaults.update(
            {
                "spark.driver.host": "127.0.0.1",
                "spark.driver.bindAddress": "127.0.0.1",
                "spark.sql.shuffle.partitions": "8",
                "spark.driver.memory": "2g",
            }
        )
    for key, value in env.items():
        defaults[f"spark.executorEnv.{key}"] = value
    if cfg.kafka_connector == "local":
        defaults["spark.jars"] = ",".join(str(j) for j in local_connector_jars())
    elif cfg.kafka_connector == "packages":
        defaults["spark.jars.packages"] = connector_packages()
    for key, value in {**defaults, **{k: str(v) for k, v in cfg.conf.items()}}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(cfg.log_level)
    if local:
        url = spark.sparkContext.uiWebUrl
        if url:
            log.info("Spark UI: %s", url)
    return spark
