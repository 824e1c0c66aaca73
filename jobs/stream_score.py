r"""Tag a Kafka stream of documents with topic mixtures: Kafka -> score_batch -> Kafka (+ dead letters, + Parquet).

Usage:
    spark-submit --packages org.apache.spark:spark-sql-kafka-0-10_2.13:4.2.0 --jars .ntm/jars/scorer/ntm-scorer.jar \\
        jobs/stream_score.py \\
        --bootstrap-servers HOST:PORT --input-topics documents --output-topic topic-mixtures \\
        --model models:/ntm-20newsgroups@champion [--trigger processing_time|available_now|real_time] \\
        [--scorer auto|jvm|python] [--max-tasks-per-batch N] [--set checkpoint_location=PATH] [--parquet-path PATH] [--timeout S] [--max-batches N]
    ntm stream [same flags]
    ntm stream --status          print the listener's latest progress (rates, dead letters, model version, drift window)

The checkpoint location always comes from config (``stream.checkpoint_location``):
restarting with the same one resumes where the query stopped. See docs/streaming.md
for the trigger/latency and delivery-semantics tables.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Optional

from ntm_spark.core.config import ConfigError, SparkConfig, StreamConfig, load_config
from ntm_spark.spark.session import (
    add_spark_args,
    build_spark_session,
    local_master_threads,
    local_master_with_slots,
    spark_config_from_args,
    stop_spark_session,
    submitted_spark_conf,
)
from ntm_spark.spark.stream_query import run_stream
from ntm_spark.spark.stream_supervisor import StreamFailedError

log = logging.getLogger(__name__)

#: CLI flag -> config key (flags are shorthands for ``--set key=value``).
FLAG_KEYS = {
    "bootstrap_servers": "bootstrap_servers",
    "input_topics": "input_topics",
    "input_pattern": "input_pattern",
    "output_topic": "output_topic",
    "dead_letter_topic": "dead_letter_topic",
    "starting_offsets": "starting_offsets",
    "max_offsets_per_trigger": "max_offsets_per_trigger",
    "max_tasks_per_batch": "max_tasks_per_batch",
    "trigger": "trigger",
    "processing_time": "processing_time",
    "scorer": "scorer",
    "model": "model_uri",
    "parquet_path": "parquet_path",
    "drift_window": "drift_window",
}


def _tasks_flag(value: str) -> str:
    """``--max-tasks-per-batch``: an integer >= 1, ``auto`` or ``none``, as the config value's JSON."""
    if value.lower() in ("auto", "none", "null"):
        return "auto" if value.lower() == "auto" else "null"
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: give an integer >= 1, auto or none") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value!r}: give an integer >= 1, auto or none")
    return str(n)


def build_parser() -> argparse.ArgumentParser:
    """Build the job's flags (each a shorthand for a ``stream.*`` config key)."""
    parser = argparse.ArgumentParser(prog="ntm stream", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap-servers", default=None, help="Kafka bootstrap servers, e.g. 127.0.0.1:9092")
    parser.add_argument("--input-topics", default=None, help="comma-separated input topics")
    parser.add_argument("--input-pattern", default=None, help="subscribe to topics matching this Java regex instead")
    parser.add_argument("--output-topic", default=None)
    parser.add_argument("--dead-letter-topic", default=None)
    parser.add_argument("--starting-offsets", default=None, help="earliest | latest | per-partition JSON (first start only)")
    parser.add_argument("--max-offsets-per-trigger", type=int, default=None)
    parser.add_argument("--max-tasks-per-batch", type=_tasks_flag, default=None, metavar="N|auto|none",
                        help="coalesce the Kafka partitions into at most N tasks per micro-batch; auto (default): Spark's "
                             "cores; none: one task per partition (see docs/streaming.md)")  # fmt: skip
    parser.add_argument("--trigger", choices=["processing_time", "available_now", "real_time"], default=None)
    parser.add_argument("--processing-time", default=None, help="micro-batch interval, e.g. '100 milliseconds' (the default)")
    parser.add_argument("--scorer", choices=["auto", "jvm", "python"], default=None,
                        help="auto (default): the JVM scorer (make jars), the Python one if it cannot run; see docs/streaming.md")
    parser.add_argument("--model", default=None, help="models:/<name>@<alias>, models:/<name>/<version>, a model folder, runs:/...")
    parser.add_argument("--parquet-path", default=None, help="also write scored records as Parquet (idempotent per batch_id)")
    parser.add_argument("--drift-window", default=None, help="drift monitoring window, e.g. '1 minute' (see docs/streaming.md)")
    parser.add_argument("--no-drift", action="store_true", help="turn drift monitoring off (stream.drift=false)")
    parser.add_argument("--timeout", type=float, default=None, help="stop after this many seconds")
    parser.add_argument("--max-batches", type=int, default=None, help="stop after this many completed micro-batches")
    parser.add_argument("--status", action="store_true", help="print the latest progress written by a running job and exit")
    return add_spark_args(parser)


def stream_config_from_args(args: argparse.Namespace) -> StreamConfig:
    """Resolve ``conf/base/stream.yaml`` + ``--config`` + ``--set`` + the shorthand flags."""
    overrides = list(args.overrides or [])
    for flag, key in FLAG_KEYS.items():
        value = getattr(args, flag, None)
        if value is not None:
            if flag == "max_tasks_per_batch":  # already the value's JSON: 2, "auto" or null
                value = json.dumps(value) if value == "auto" else value
                overrides.append(f"{key}={value}")
                continue
            overrides.append(f"{key}={json.dumps(value) if isinstance(value, str) else value}")
    if args.input_pattern is not None and args.input_topics is None:
        overrides.append("input_topics=null")
    if getattr(args, "no_drift", False):
        overrides.append("drift=false")
    return load_config("stream", overrides=overrides, config_file=args.config)


def drift_sinks(cfg: StreamConfig) -> list:
    """MLflow's drift sink for a registered model (each window's figures on the serving version's run)."""
    if not cfg.drift or not cfg.model_uri.startswith("models:/"):
        return []
    from ntm_spark.core.uris import resolve_tracking_uri
    from ntm_spark.mlops.tracking import drift_metrics_sink

    return [drift_metrics_sink(cfg.tracking_uri or resolve_tracking_uri())]


def size_real_time_master(cfg: StreamConfig, spark_cfg: SparkConfig) -> Optional[str]:
    """``trigger: real_time`` on a local master: at least one task slot per input partition.

    Real-time mode holds a slot per Kafka partition for the whole batch; the tasks mostly wait on
    Kafka, so more slots than cores is fine (docs/streaming.md, "Task slots"). A master given to
    spark-submit, or a cluster master, is left alone (the stream warns at start instead).
    Returns the new master, or ``None`` when it was left as it was.
    """
    if cfg.trigger != "real_time" or submitted_spark_conf().get("spark.master") or local_master_threads(spark_cfg.master) is None:
        return None
    topics = [t.strip() for t in (cfg.input_topics or "").split(",") if t.strip()]
    if not topics:  # input_pattern: the topics are not known before the query starts
        return None
    from ntm_spark.tools.kafka_client import (
        KafkaClientConfigError,
        bootstrap_timeout,
        count_partitions,
        options_from_config,
    )

    try:
        options = options_from_config(cfg)
    except KafkaClientConfigError as err:
        log.info("real-time task slots: the partitions cannot be counted from Python (%s); the stream checks at start", err)
        return None
    sized = local_master_with_slots(spark_cfg.master, count_partitions({**options, **bootstrap_timeout(cfg, options)}, topics) or 0)
    if sized == spark_cfg.master:
        return None
    log.warning("trigger=real_time: --master %s -> %s, one task slot per input partition (docs/streaming.md)", spark_cfg.master, sized)
    spark_cfg.master = sized
    return sized


def main(argv: Optional[list[str]] = None) -> int:
    """Run ``ntm stream``; return the exit code."""
    from pyspark.sql import SparkSession

    from ntm_spark.spark.streaming import read_status

    args = build_parser().parse_args(argv)
    try:
        cfg = stream_config_from_args(args)
    except ConfigError as err:
        print(f"ntm stream: {err}", file=sys.stderr)
        return 2
    if args.status:
        status = read_status(cfg.status_file)
        if status is None:
            print(f"ntm stream: no status at {cfg.status_file!r} yet: is a stream running with this config?", file=sys.stderr)
            return 3
        print(json.dumps(status, indent=2))
        return 0
    spark_cfg = spark_config_from_args(args)
    size_real_time_master(cfg, spark_cfg)
    created = SparkSession.getActiveSession() is None
    spark = build_spark_session(spark_cfg, app_name="ntm-stream")
    try:
        summary = run_stream(spark, cfg, timeout=args.timeout, max_batches=args.max_batches, drift_sinks=drift_sinks(cfg))
        print(json.dumps(summary, indent=2, default=str))
    except ConfigError as err:
        print(f"ntm stream: {err}", file=sys.stderr)
        return 2
    except StreamFailedError as err:
        print(f"ntm stream: {err}", file=sys.stderr)
        return 1
    finally:
        if created:
            stop_spark_session(spark)
    return 0


if __name__ == "__main__":  # pragma: no cover
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(main())
