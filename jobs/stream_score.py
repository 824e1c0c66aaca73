r"""Tag a Kafka stream of documents with topic mixtures: Kafka -> score_batch -> Kafka (+ dead letters, + Parquet).

Usage:
    spark-submit --packages org.apache.spark:spark-sql-kafka-0-10_2.13:4.2.0 jobs/stream_score.py \\
        --bootstrap-servers HOST:PORT --input-topics documents --output-topic topic-mixtures \\
        --model models:/ntm-20newsgroups@champion [--trigger processing_time|available_now|real_time] \\
        [--max-tasks-per-batch N] [--set checkpoint_location=PATH] [--parquet-path PATH] [--timeout S] [--max-batches N]
    ntm stream [same flags]
    ntm stream --status          print the listener's latest progress (rates, dead letters, model version)

The checkpoint location always comes from config (``stream.checkpoint_location``):
restarting with the same one resumes where the query stopped. See docs/streaming.md
for the trigger/latency and delivery-semantics tables.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import TYPE_CHECKING, Any, Optional

from ntm_spark.config import ConfigError, StreamConfig, load_config
from ntm_spark.session import add_spark_args, build_spark_session, spark_config_from_args, stop_spark_session
from ntm_spark.stream_supervisor import StreamFailedError

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming import StreamingQuery

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
    "model": "model_uri",
    "model_kind": "model_kind",
    "parquet_path": "parquet_path",
}


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
    parser.add_argument("--max-tasks-per-batch", type=int, default=None,
                        help="coalesce the Kafka partitions into at most this many tasks per micro-batch (see docs/streaming.md)")  # fmt: skip
    parser.add_argument("--trigger", choices=["processing_time", "available_now", "real_time"], default=None)
    parser.add_argument("--processing-time", default=None, help="micro-batch interval, e.g. '500 milliseconds'")
    parser.add_argument("--model", default=None, help="models:/<name>@<alias>, models:/<name>/<version>, a model folder, runs:/...")
    parser.add_argument("--model-kind", choices=["ntm", "lda"], default=None)
    parser.add_argument("--parquet-path", default=None, help="also write scored records as Parquet (idempotent per batch_id)")
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
            overrides.append(f"{key}={json.dumps(value) if isinstance(value, str) else value}")
    if args.input_pattern is not None and args.input_topics is None:
        overrides.append("input_topics=null")
    return load_config("stream", overrides=overrides, config_file=args.config)


def _kafka_options(cfg: StreamConfig) -> dict:
    opts = {"kafka.bootstrap.servers": cfg.bootstrap_servers}
    for key, value in cfg.kafka_options.items():
        opts[key if key.startswith("kafka.") else f"kafka.{key}"] = str(value)
    return opts


def read_messages(spark: "SparkSession", cfg: StreamConfig) -> "DataFrame":
    """``spark.readStream.format("kafka")`` with the configured subscription and options."""
    reader = spark.readStream.format("kafka").options(**_kafka_options(cfg))
    if cfg.input_pattern:
        reader = reader.option("subscribePattern", cfg.input_pattern)
    else:
        reader = reader.option("subscribe", cfg.input_topics)
    reader = reader.option("startingOffsets", cfg.starting_offsets).option("failOnDataLoss", "true")
    if cfg.max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", str(cfg.max_offsets_per_trigger))
    messages = reader.load()
    if cfg.max_tasks_per_batch:
        # Fewer, larger tasks: each task's fixed cost (scheduling, a Python worker round trip, a
        # Kafka producer flush) is paid once per batch instead of once per Kafka partition.
        messages = messages.coalesce(cfg.max_tasks_per_batch)
    return messages


def build_scored(spark: "SparkSession", messages: "DataFrame", cfg: StreamConfig) -> "DataFrame":
    """Kafka rows -> parsed -> scored (NTM or the LDA peer), with observed metrics attached."""
    from ntm_spark.model_loader import ModelSpec
    from ntm_spark.streaming import observe_metrics, parse_messages, score_batch, score_batch_lda

    parsed = parse_messages(messages, cfg.max_message_bytes, cfg.passthrough_fields)
    if cfg.model_kind == "lda":
        from ntm_spark.lda_peer import LdaPeer

        peer = LdaPeer.load(cfg.model_uri, max_text_bytes=cfg.max_message_bytes)
        scored = score_batch_lda(parsed, peer, cfg.top_k, cfg.top_words)
    else:
        tracking_uri = cfg.tracking_uri
        if tracking_uri is None and cfg.model_uri.startswith("models:/"):
            from ntm_spark.tracking import resolve_tracking_uri

            tracking_uri = resolve_tracking_uri()
        spec = ModelSpec(cfg.model_uri, cfg.model_refresh_interval_s, tracking_uri, cfg.max_message_bytes)
        scored = score_batch(parsed, spec, cfg.top_k, cfg.top_words, cfg.scoring_udf)
    return observe_metrics(scored)


def write_batch(batch: "DataFrame", batch_id: int, cfg: StreamConfig) -> None:
    """Write one micro-batch (the ``foreachBatch`` sink): Kafka records (at-least-once) and Parquet at ``batch_id=<n>`` (idempotent).

    The Parquet part of a replayed batch is written to a staging folder and renamed
    over ``<parquet_path>/batch_id=<n>``, so a replay replaces, never duplicates.
    """
    from pyspark.sql import functions as F

    from ntm_spark.io import delete_path, path_exists, rename_path, staging_path
    from ntm_spark.streaming import ERROR_CODE_COL, to_kafka_records

    batch.persist()
    try:
        to_kafka_records(batch, cfg.output_topic, cfg.dead_letter_topic).write.format("kafka").options(
            **_kafka_options(cfg)
        ).save()
        target = f"{cfg.parquet_path.rstrip('/')}/batch_id={batch_id}"
        staged = staging_path(target)
        batch.filter(F.col(ERROR_CODE_COL).isNull()).drop("raw_value", "raw_value_truncated").write.parquet(staged)
        spark = batch.sparkSession
        if path_exists(spark, target):
            delete_path(spark, target)
        rename_path(spark, staged, target)
    finally:
        batch.unpersist()


def start_stream(spark: "SparkSession", cfg: StreamConfig, query_name: Optional[str] = None) -> "StreamingQuery":
    """Start the streaming query described by ``cfg`` and return it (the caller waits and stops it).

    Raises:
        ConfigError: for a trigger the sinks cannot run with.
    """
    from ntm_spark.streaming import to_kafka_records

    if cfg.trigger == "real_time":
        if cfg.parquet_path:
            raise ConfigError(
                f"invalid config value stream.parquet_path={cfg.parquet_path!r}: real-time mode only writes to Kafka; "
                "set parquet_path=null or use trigger=processing_time."
            )
        if cfg.real_time_allow_python:
            spark.conf.set("spark.sql.streaming.realTimeMode.allowlistCheck", "false")
    # Rows per Arrow batch: the unit between hot-swap checks and the scorer's batch.
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(cfg.arrow_batch_size))
    scored = build_scored(spark, read_messages(spark, cfg), cfg)
    if cfg.parquet_path:
        writer = scored.writeStream.foreachBatch(lambda df, batch_id: write_batch(df, batch_id, cfg))
    else:
        writer = (
            to_kafka_records(scored, cfg.output_topic, cfg.dead_letter_topic)
            .writeStream.format("kafka")
            .options(**_kafka_options(cfg))
        )
    writer = writer.option("checkpointLocation", cfg.checkpoint_location)
    if query_name:
        writer = writer.queryName(query_name)
    if cfg.trigger == "available_now":
        writer = writer.trigger(availableNow=True)
    elif cfg.trigger == "real_time":
        writer = writer.outputMode("update").trigger(realTime=cfg.real_time_batch_duration)
    else:
        writer = writer.trigger(processingTime=cfg.processing_time)
        if cfg.async_progress_tracking and not cfg.parquet_path:
            # Spark supports it for the Kafka sink with a processing-time trigger: the offset and
            # commit logs no longer hold up each micro-batch; a restart may replay the last
            # async_progress_interval_ms of input (still at-least-once, keyed by id).
            writer = writer.option("asyncProgressTrackingEnabled", "true").option(
                "asyncProgressTrackingCheckpointIntervalMs", str(cfg.async_progress_interval_ms)
            )
    return writer.start()


def run_stream(
    spark: "SparkSession",
    cfg: StreamConfig,
    timeout: Optional[float] = None,
    max_batches: Optional[int] = None,
    listener: Any = None,
) -> dict:
    """Run the query until it ends (``available_now``), ``timeout`` passes or ``max_batches`` complete.

    Supervised (``stream.supervise``, on by default): broker outages and missing input
    topics are waited out and the query restarts from its checkpoint
    (:mod:`ntm_spark.stream_supervisor`).

    Returns:
        The listener's last progress summary plus ``batches`` (completed this run).
    """
    from ntm_spark.stream_supervisor import run_supervised
    from ntm_spark.streaming import _progress_summary, make_listener, write_status

    listener = listener or make_listener(cfg.status_file)
    spark.streams.addListener(listener)

    def write_state(state: dict) -> None:
        if cfg.status_file:
            write_status(cfg.status_file, {**(getattr(listener, "last", None) or {}), **state})

    try:
        progresses = run_supervised(
            spark, cfg, lambda: start_stream(spark, cfg), _kafka_options(cfg), timeout, max_batches, write_state
        )
    finally:
        time.sleep(0.5)  # let the listener bus deliver the last progress events
        spark.streams.removeListener(listener)
    # Summarize from the queries themselves: listener events are delivered asynchronously.
    totals: dict = {}
    summary: dict = {}
    for progress in progresses:
        summary = _progress_summary(progress, totals)
    summary["batches"] = sum(1 for p in progresses if p.numInputRows > 0)
    return summary


def main(argv: Optional[list[str]] = None) -> int:
    """Run ``ntm stream``; return the exit code."""
    from pyspark.sql import SparkSession

    from ntm_spark.streaming import read_status

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
    created = SparkSession.getActiveSession() is None
    spark = build_spark_session(spark_cfg, app_name="ntm-stream")
    try:
        summary = run_stream(spark, cfg, timeout=args.timeout, max_batches=args.max_batches)
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
