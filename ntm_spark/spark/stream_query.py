"""The streaming query's wiring: Kafka source -> parse -> score -> Kafka sinks (+ Parquet), supervised.

``jobs/stream_score.py`` parses flags and calls :func:`run_stream`; the pure DataFrame
functions it wires live in :mod:`ntm_spark.spark.streaming`, and the supervision
(broker outages, missing topics) in :mod:`ntm_spark.spark.stream_supervisor`.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from ntm_spark.core.config import ConfigError

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming import StreamingQuery

    from ntm_spark.core.config import StreamConfig

#: Scores parsed messages (the output of ``parse_messages``) into ``score_batch``'s columns.
ScoreFn = Callable[["DataFrame"], "DataFrame"]


def kafka_options(cfg: "StreamConfig", role: Optional[str] = None) -> dict:
    """Return the ``kafka.*`` options of the source and sinks: ``bootstrap_servers`` plus ``cfg.kafka_options``.

    ``role="source"`` (the query's Kafka source) adds ``real_time_source_options`` with
    ``trigger: real_time``, else ``micro_batch_source_options``; ``role="sink"`` (its Kafka sink)
    ``real_time_sink_options`` or ``micro_batch_sink_options``; all under ``kafka_options``, which win.
    ``role=None`` (the broker probes, the drift sink) gets ``kafka_options`` alone.
    """
    extra: dict = {}
    if role is not None:
        if role not in ("source", "sink"):
            raise ValueError(f"role={role!r}: use 'source', 'sink' or None.")
        if cfg.trigger == "real_time":
            extra = (cfg.real_time_source_options if role == "source" else cfg.real_time_sink_options) or {}
        else:
            extra = (cfg.micro_batch_source_options if role == "source" else cfg.micro_batch_sink_options) or {}
    opts = {"kafka.bootstrap.servers": cfg.bootstrap_servers}
    for key, value in {**_prefixed(extra), **_prefixed(cfg.kafka_options)}.items():
        opts[key] = str(value)
    return opts


def _prefixed(options: dict) -> dict:
    return {key if key.startswith("kafka.") else f"kafka.{key}": value for key, value in options.items()}


def read_messages(spark: "SparkSession", cfg: "StreamConfig") -> "DataFrame":
    """``spark.readStream.format("kafka")`` with the configured subscription and options."""
    reader = spark.readStream.format("kafka").options(**kafka_options(cfg, "source"))
    if cfg.input_pattern:
        reader = reader.option("subscribePattern", cfg.input_pattern)
    else:
        reader = reader.option("subscribe", cfg.input_topics)
    reader = reader.option("startingOffsets", cfg.starting_offsets).option("failOnDataLoss", "true")
    if cfg.max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", str(cfg.max_offsets_per_trigger))
    messages = reader.load()
    tasks = max_tasks(spark, cfg)
    if tasks:
        # Fewer, larger tasks: each task's fixed cost (scheduling, a Python worker round trip, a
        # Kafka producer flush) is paid once per batch instead of once per Kafka partition.
        # coalesce never adds tasks: a topic with fewer partitions keeps one task per partition.
        messages = messages.coalesce(tasks)
    return messages


def max_tasks(spark: "SparkSession", cfg: "StreamConfig") -> Optional[int]:
    """Tasks per micro-batch at most: ``max_tasks_per_batch``, ``auto`` = Spark's cores, ``None`` = no limit.

    Real-time mode runs one long-running task per Kafka partition, so it gets no limit.
    """
    if cfg.trigger == "real_time" or cfg.max_tasks_per_batch is None:
        return None
    if cfg.max_tasks_per_batch == "auto":
        return max(1, int(spark.sparkContext.defaultParallelism))
    return int(cfg.max_tasks_per_batch)


def real_time_slots_problem(partitions: Optional[int], slots: int) -> Optional[str]:
    """Why real-time mode cannot serve every input partition with ``slots`` task slots, or ``None``.

    Real-time mode runs one long-running task per Kafka partition for the whole batch
    (``real_time_batch_duration``), each holding a task slot: with fewer slots than partitions
    the partitions left over wait for the next batch (measured: half of a 4-partition topic's
    records arrived within a 60 s batch on ``local[2]``; docs/streaming.md).
    """
    if partitions is None or partitions <= slots:
        return None
    return (
        f"trigger=real_time needs a task slot per input partition: the input topics have {partitions} partitions "
        f"but Spark has {slots} task slots, so {partitions - slots} partitions wait for the next real-time batch. "
        f"Give the stream at least {partitions} slots: --master local[{partitions}] (ntm stream sizes a local master "
        "itself), or on a cluster spark.executor.cores x executors >= partitions (docs/streaming.md)."
    )


def check_real_time_slots(spark: "SparkSession", cfg: "StreamConfig") -> Optional[str]:
    """Warn (and return the warning) when the session has fewer task slots than the input topics have partitions."""
    from ntm_spark.spark.session import local_master_threads
    from ntm_spark.spark.stream_supervisor import count_partitions

    topics = [t.strip() for t in (cfg.input_topics or "").split(",") if t.strip()]
    # A local master's slots are its threads (spark.default.parallelism may say otherwise); on a
    # cluster, defaultParallelism is the executors' cores unless it was set.
    slots = local_master_threads(spark.sparkContext.master) or int(spark.sparkContext.defaultParallelism)
    problem = real_time_slots_problem(count_partitions(spark, kafka_options(cfg), topics, cfg.broker_probe_timeout_s), slots)
    if problem:
        log.warning("%s", problem)
    return problem


def build_scored(
    spark: "SparkSession",
    messages: "DataFrame",
    cfg: "StreamConfig",
    score: Optional[ScoreFn] = None,
    drift_topics: Optional[int] = None,
) -> "DataFrame":
    """Kafka rows -> parsed -> scored, with observed metrics attached.

    Args:
        spark: The active session.
        messages: Rows of Spark's Kafka source.
        cfg: The stream config.
        score: Scores the parsed rows instead of the NTM (same output columns as
            :func:`~ntm_spark.spark.streaming.score_batch`); the benchmarks pass their LDA peer here.
        drift_topics: The model's number of topics: the observed metrics then carry the drift
            monitor's sums (:mod:`ntm_spark.spark.drift_monitor`); ``None``: no drift sums.
    """
    from ntm_spark.spark.drift_monitor import model_spec
    from ntm_spark.spark.streaming import observe_metrics, parse_messages, score_batch

    parsed = parse_messages(messages, cfg.max_message_bytes, cfg.passthrough_fields)
    if score is not None:
        scored = score(parsed)
    else:
        from ntm_spark.spark.jvm_scoring import JvmScorerError

        spec = model_spec(cfg)
        scored = None
        if uses_jvm_scorer(cfg):
            try:
                scored = score_with_jvm(spark, parsed, spec, cfg)
            except JvmScorerError as err:
                if cfg.scorer == "jvm" or cfg.trigger == "real_time":
                    raise
                log.warning("stream.scorer=auto: the JVM scorer cannot run, so the Python scorer scores instead: %s", err)
        if scored is None:
            # The Parquet sink keeps each document's text: the next warm start retrains on it (docs/train.md "Warm start").
            scored = score_batch(parsed, spec, cfg.top_k, cfg.top_words, cfg.scoring_udf, keep_input=bool(cfg.parquet_path))
    return observe_metrics(scored, drift_topics=drift_topics)


#: model_uri -> the version the running real-time query scores with (this driver's queries).
_JVM_VERSIONS: dict[str, str] = {}


def jvm_model_moved(cfg: "StreamConfig") -> Optional[str]:
    """Why the real-time query's model is stale (its alias moved, its folder's ``model.pt`` changed), or ``None``.

    A failed lookup (the registry is away) keeps the running version and logs a warning.
    """
    import logging

    from ntm_spark.serving.model_loader import parse_model_ref, resolve_version

    running = _JVM_VERSIONS.get(cfg.model_uri)
    if running is None:
        return None
    tracking_uri = cfg.tracking_uri
    if tracking_uri is None and cfg.model_uri.startswith("models:/"):
        from ntm_spark.core.uris import resolve_tracking_uri

        tracking_uri = resolve_tracking_uri()
    try:
        now = resolve_version(parse_model_ref(cfg.model_uri), tracking_uri)
    except Exception as err:  # noqa: BLE001 - keep scoring with the running version
        logging.getLogger(__name__).warning("cannot check %s for a new version (kept %s): %s", cfg.model_uri, running, err)
        return None
    return None if now == running else f"{cfg.model_uri} moved from version {running} to {now}"


def uses_jvm_scorer(cfg: "StreamConfig") -> bool:
    """Whether the stream tries the JVM scorer (``stream.scorer``).

    ``auto``: yes, except ``trigger: real_time`` with ``real_time_allow_python``. A micro-batch
    query under ``auto`` falls back to the Python scorer when the JVM one cannot run (no jar, a
    model without a usable ``jvm/`` export); ``jvm`` and real-time mode fail instead, naming the fix.
    """
    if cfg.scorer != "auto":
        return cfg.scorer == "jvm"
    return not (cfg.trigger == "real_time" and cfg.real_time_allow_python)


def score_with_jvm(spark: "SparkSession", parsed: "DataFrame", spec: Any, cfg: "StreamConfig") -> "DataFrame":
    """Score parsed messages with the JVM scorer (:mod:`ntm_spark.spark.jvm_scoring`), the model resolved once, now.

    Raises:
        ntm_spark.spark.jvm_scoring.JvmScorerError: when the jar or the model's JVM export is missing,
            or the JVM scorer refuses the model (e.g. its text rule set), naming the fix.
    """
    import logging

    from ntm_spark.serving.model_loader import jvm_model_folder
    from ntm_spark.spark.jvm_scoring import check_jvm_model, register_jvm_scorer, score_batch_jvm, ship_model_folder

    folder, name, version = jvm_model_folder(spec)
    register_jvm_scorer(spark)
    facts = check_jvm_model(spark, folder)
    ship_model_folder(spark, folder)  # executors on other hosts read this copy
    _JVM_VERSIONS[spec.model_uri] = version
    logging.getLogger(__name__).info(
        "the stream scores in the JVM: model %s version %s (%s topics, text rules %s, %s) from %s",
        name, version, facts["num_topics"], facts["text_rules"], facts["unicode"], folder,
    )  # fmt: skip
    return score_batch_jvm(
        parsed, folder, cfg.top_k, cfg.top_words, cfg.max_message_bytes, model_name=name, model_version=version,
        keep_input=bool(cfg.parquet_path),
    )


def write_batch(batch: "DataFrame", batch_id: int, cfg: "StreamConfig") -> None:
    """Write one micro-batch (the ``foreachBatch`` sink): Kafka records (at-least-once) and Parquet at ``batch_id=<n>`` (idempotent).

    The Parquet part of a replayed batch is written to a staging folder and renamed
    over ``<parquet_path>/batch_id=<n>``, so a replay replaces, never duplicates.
    """
    from pyspark.sql import functions as F

    from ntm_spark.core.schema import ERROR_CODE_COL
    from ntm_spark.spark.io import delete_path, path_exists, rename_path, staging_path
    from ntm_spark.spark.streaming import to_kafka_records

    batch.persist()
    try:
        to_kafka_records(batch, cfg.output_topic, cfg.dead_letter_topic).write.format("kafka").options(
            **kafka_options(cfg, "sink")
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


def start_stream(
    spark: "SparkSession",
    cfg: "StreamConfig",
    query_name: Optional[str] = None,
    score: Optional[ScoreFn] = None,
    drift_topics: Optional[int] = None,
) -> "StreamingQuery":
    """Start the streaming query described by ``cfg`` and return it (the caller waits and stops it).

    ``score`` replaces the NTM scorer, ``drift_topics`` adds the drift sums (see :func:`build_scored`).

    Raises:
        ConfigError: for a trigger the sinks cannot run with.
    """
    from ntm_spark.spark.streaming import to_kafka_records

    if cfg.trigger == "real_time":
        if cfg.parquet_path:
            raise ConfigError(
                f"invalid config value stream.parquet_path={cfg.parquet_path!r}: real-time mode only writes to Kafka; "
                "set parquet_path=null or use trigger=processing_time."
            )
        if cfg.real_time_allow_python:
            spark.conf.set("spark.sql.streaming.realTimeMode.allowlistCheck", "false")
        check_real_time_slots(spark, cfg)
    # Rows per Arrow batch: the unit between hot-swap checks and the scorer's batch.
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(cfg.arrow_batch_size))
    scored = build_scored(spark, read_messages(spark, cfg), cfg, score, drift_topics)
    if cfg.parquet_path:
        writer = scored.writeStream.foreachBatch(lambda df, batch_id: write_batch(df, batch_id, cfg))
    else:
        writer = (
            to_kafka_records(scored, cfg.output_topic, cfg.dead_letter_topic)
            .writeStream.format("kafka")
            .options(**kafka_options(cfg, "sink"))
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
    cfg: "StreamConfig",
    timeout: Optional[float] = None,
    max_batches: Optional[int] = None,
    listener: Any = None,
    drift_sinks: Sequence[Callable[[dict], None]] = (),
) -> dict:
    """Run the query until it ends (``available_now``), ``timeout`` passes or ``max_batches`` complete.

    Supervised (``stream.supervise``, on by default): broker outages and missing input
    topics are waited out and the query restarts from its checkpoint
    (:mod:`ntm_spark.spark.stream_supervisor`).

    ``drift_sinks`` also get every drift window record (``jobs/stream_score.py`` adds MLflow's).

    Returns:
        The listener's last progress summary plus ``batches`` (completed this run), and with drift
        on, ``drift`` (the last window), ``drift_windows`` and ``drift_alerts``.
    """
    from ntm_spark.spark.stream_supervisor import run_supervised
    from ntm_spark.spark.streaming import _progress_summary, make_listener, write_status

    monitor, drift_topics = start_drift_monitor(spark, cfg)
    if monitor is not None:
        monitor.sinks.extend(drift_sinks)

    def drift_status() -> dict:
        return {"drift": monitor.latest} if monitor is not None else {}

    listener = listener or make_listener(cfg.status_file, extra=drift_status)
    spark.streams.addListener(listener)
    drift_listener = None
    if monitor is not None:
        from ntm_spark.spark.drift_monitor import make_drift_listener

        drift_listener = make_drift_listener(monitor)
        spark.streams.addListener(drift_listener)
        if cfg.status_file:
            monitor.sinks.append(lambda _record: write_status(cfg.status_file, {**(getattr(listener, "last", None) or {}), **drift_status()}))

    def write_state(state: dict) -> None:
        if cfg.status_file:
            write_status(cfg.status_file, {**(getattr(listener, "last", None) or {}), **drift_status(), **state})

    try:
        moved = (lambda: jvm_model_moved(cfg)) if uses_jvm_scorer(cfg) else None
        progresses = run_supervised(
            spark, cfg, lambda: start_stream(spark, cfg, drift_topics=drift_topics), kafka_options(cfg), timeout, max_batches,
            write_state, model_moved=moved, model_check_s=cfg.model_refresh_interval_s,
        )  # fmt: skip
    finally:
        time.sleep(0.5)  # let the listener bus deliver the last progress events
        spark.streams.removeListener(listener)
        if monitor is not None:
            spark.streams.removeListener(drift_listener)
            monitor.stop()
            for sink in monitor.sinks:
                try:
                    getattr(sink, "close", lambda: None)()
                except Exception as err:  # noqa: BLE001 - closing a producer of an unreachable broker may fail
                    log.warning("drift: closing %s failed: %s", getattr(sink, "__name__", sink), err)
    # Summarize from the queries themselves: listener events are delivered asynchronously.
    totals: dict = {}
    summary: dict = {}
    for progress in progresses:
        summary = _progress_summary(progress, totals)
    summary["batches"] = sum(1 for p in progresses if p.numInputRows > 0)
    if monitor is not None:
        summary["drift"] = monitor.latest
        summary["drift_windows"] = len(monitor.records)
        summary["drift_alerts"] = sum(1 for r in monitor.records if r["alert"])
    if cfg.status_file:
        # The listener's last event may still be in flight: the final word is this summary.
        write_status(cfg.status_file, {**summary, "state": "stopped", "updated_at": time.time()})
    return summary


def start_drift_monitor(spark: "SparkSession", cfg: "StreamConfig") -> tuple[Any, Optional[int]]:
    """Start the drift monitor of ``cfg`` (``stream.drift``); return it and the model's number of topics.

    ``(None, None)`` when drift is off, or when the driver cannot load the model (logged; the stream
    runs on). With ``trigger: real_time`` the sums come from the JVM scorer's columns and arrive once
    per long-running batch (``real_time_batch_duration``), which is then the finest window (warned).
    """
    from ntm_spark.spark.drift_monitor import (
        DriftMonitor,
        drift_parquet_folder,
        kafka_sink,
        model_spec,
        parquet_sink,
        serving_model,
    )

    if not cfg.drift:
        return None, None
    if cfg.trigger == "real_time":
        from ntm_spark.core.config import parse_duration

        batch_s = parse_duration(cfg.real_time_batch_duration, "stream.real_time_batch_duration")
        if batch_s > cfg.drift_window_s:
            # Observed metrics come when a long-running batch ends, and a batch counts in one window.
            log.warning(
                "drift: with trigger=real_time each window record covers a whole real-time batch: "
                "real_time_batch_duration=%r is longer than drift_window=%r, so records come every %r "
                "(set drift_window to at least real_time_batch_duration; docs/streaming.md)",
                cfg.real_time_batch_duration, cfg.drift_window, cfg.real_time_batch_duration,
            )  # fmt: skip
    from ntm_spark.serving.model_loader import get_loader

    try:
        num_topics = int(get_loader(model_spec(cfg)).get().scorer.num_topics)
    except Exception as err:  # noqa: BLE001 - the workers report the same failure; the stream itself decides
        log.warning("drift monitoring is off: the driver cannot load model_uri=%r: %s", cfg.model_uri, err)
        return None, None
    sinks = [kafka_sink(spark, kafka_options(cfg), cfg.drift_topic_name)]
    if cfg.parquet_path:
        sinks.append(parquet_sink(drift_parquet_folder(cfg.parquet_path)))
    monitor = DriftMonitor(cfg.drift_window_s, cfg.drift_thresholds(), serving_model(cfg), tuple(sinks))
    return monitor.start(), num_topics
