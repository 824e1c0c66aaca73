"""The stream's drift monitor: per processing-time window, the scored messages against the training data.

How (docs/streaming.md "Drift monitoring"): each micro-batch already reports observed metrics
(:func:`ntm_spark.spark.streaming.observe_metrics`); with drift on they also carry the batch's
topic-weight sums, token and OOV counts (:func:`~ntm_spark.spark.streaming.drift_metric_columns`),
computed in the same pass as the scoring, with no extra Spark job and no state store. The driver
adds the batches up per window of ``stream.drift_window`` (by the batch's start time) and, once
the window has ended, compares it with the model's :class:`~ntm_spark.core.drift.DriftBaseline`
(:func:`ntm_spark.core.drift.evaluate_window`) and writes one record to ``<output_topic>-drift``
(the driver JVM's Kafka producer) and, with ``parquet_path``, one file to ``<parquet_path>-drift``.
In real-time mode the JVM scorer gives the same columns, and a long-running batch reports its
metrics when it ends: one real-time batch counts in one window.

A failure to write a record is logged and counted, never raised: the monitor must not stop the stream.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Optional

from ntm_spark.core import storage
from ntm_spark.core.drift import DriftThresholds, WindowCounts, evaluate_window, sums_from_lists, window_bounds
from ntm_spark.spark.streaming import METRICS_NAME

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession

    from ntm_spark.core.config import StreamConfig

log = logging.getLogger(__name__)

#: Seconds after a window's end before it is closed, so a batch that started inside it can report.
CLOSE_GRACE_S = 1.0


def window_counts_from_metrics(metrics: dict) -> Optional[WindowCounts]:
    """One micro-batch's :class:`WindowCounts` from its observed metrics (``None`` without drift sums)."""
    if metrics.get("drift_weight_sum") is None:
        return None
    scored = int(metrics.get("scored") or 0)
    sums = (
        sums_from_lists(scored, metrics["drift_weight_sum"], metrics["drift_weight_sumsq"], metrics["drift_argmax"])
        if scored
        else None
    )
    return WindowCounts(
        records=int(metrics.get("records") or 0),
        normalized=int(metrics.get("drift_normalized") or 0),
        empty=int(metrics.get("drift_empty") or 0),
        tokens=int(metrics.get("drift_tokens") or 0),
        oov_tokens=int(metrics.get("drift_oov_tokens") or 0),
        sums=sums,
    )


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _epoch(timestamp: Any) -> float:
    if isinstance(timestamp, (int, float)):
        return float(timestamp)
    return datetime.fromisoformat(str(timestamp).replace("Z", "+00:00")).timestamp()


def drift_parquet_schema() -> Any:
    """The pyarrow schema of the drift Parquet files (one row per window)."""
    import pyarrow as pa

    top = pa.struct([("topic", pa.int32()), ("z", pa.float64()), ("prevalence", pa.float64()), ("baseline", pa.float64())])
    return pa.schema(
        [
            ("window_start", pa.timestamp("ms", tz="UTC")), ("window_end", pa.timestamp("ms", tz="UTC")),
            ("model_name", pa.string()), ("model_version", pa.string()), ("baseline_model_version", pa.string()),
            ("records", pa.int64()), ("scored", pa.int64()), ("normalized", pa.int64()), ("empty", pa.int64()),
            ("tokens", pa.int64()), ("oov_tokens", pa.int64()), ("prevalence", pa.list_(pa.float64())),
            ("js_distance", pa.float64()), ("top_z", pa.list_(top)), ("oov_rate", pa.float64()),
            ("oov_rate_baseline", pa.float64()), ("empty_rate", pa.float64()), ("alert", pa.bool_()),
            ("alert_reasons", pa.list_(pa.string())), ("notes", pa.list_(pa.string())), ("partial", pa.bool_()),
        ]
    )  # fmt: skip


class DriftMonitor:
    """Adds micro-batches up per window and writes one drift record per window.

    Args:
        window_s: The window width in seconds.
        thresholds: The alert thresholds.
        model: Returns ``(baseline, model_name, model_version)`` of the model now serving (called per window).
        sinks: Each gets every record (Kafka, Parquet, the status file...); a failing sink is logged.
        clock: Wall-clock seconds (tests may pass their own).
    """

    def __init__(
        self,
        window_s: float,
        thresholds: DriftThresholds,
        model: Callable[[], tuple[Any, Optional[str], Optional[str]]],
        sinks: tuple[Callable[[dict], None], ...] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        if window_s <= 0:
            raise ValueError(f"window_s={window_s!r} must be positive: set stream.drift_window, e.g. '1 minute'.")
        self.window_s = float(window_s)
        self.thresholds = thresholds
        self._model = model
        self.sinks = list(sinks)
        self._clock = clock
        self._lock = threading.Lock()
        self._window: Optional[tuple[float, float]] = None
        #: The end of the last window closed: a batch that started before it counts in the next window.
        self._closed_until = float("-inf")
        self._counts = WindowCounts()
        self._versions: set = set()
        #: The last record written, and every record (oldest first) of this run.
        self.latest: Optional[dict] = None
        self.records: list[dict] = []
        self.failed_writes = 0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    # ------------------------------------------------------------------ input

    def add_batch(self, timestamp: Any, metrics: dict) -> None:
        """Add one micro-batch (its start time and observed metrics); closes the windows that ended before it."""
        counts = window_counts_from_metrics(metrics)
        if counts is None or counts.records == 0:
            self.tick(_epoch(timestamp))
            return
        closed = []
        with self._lock:
            # A batch that started in a window already closed counts in the next one (it reported late),
            # so a window is never written twice.
            t = max(_epoch(timestamp), self._closed_until)
            if self._window is not None and t >= self._window[1]:
                closed.append(self._take())
            if self._window is None:
                self._window = window_bounds(t, self.window_s)
            self._counts = self._counts.merge(counts)
            if metrics.get("model_version") is not None:
                self._versions.add(str(metrics["model_version"]))
        for window in closed:
            self._emit(*window)

    def add_progress(self, progress: Any) -> None:
        """Add a ``StreamingQueryProgress`` (what the listener receives)."""
        observed = getattr(progress, "observedMetrics", None) or {}
        row = observed.get(METRICS_NAME)
        metrics = (row.asDict() if hasattr(row, "asDict") else dict(row)) if row is not None else {}
        self.add_batch(progress.timestamp, metrics)

    def tick(self, now: Optional[float] = None) -> Optional[dict]:
        """Close the open window when ``now`` is past its end (plus a grace); return its record."""
        now = self._clock() if now is None else now
        with self._lock:
            if self._window is None or now < self._window[1] + min(CLOSE_GRACE_S, self.window_s / 2):
                return None
            window = self._take()
        return self._emit(*window)

    def flush(self) -> Optional[dict]:
        """Close the open window now (at the end of a run), marked ``partial`` when it has not ended."""
        with self._lock:
            if self._window is None:
                return None
            window = self._take()
        return self._emit(*window, partial=window[1] > self._clock())

    def _take(self) -> tuple:
        start, end = self._window
        self._closed_until = max(self._closed_until, end)
        out = (start, end, self._counts, set(self._versions))
        self._window, self._counts, self._versions = None, WindowCounts(), set()
        return out

    # ------------------------------------------------------------------ output

    def _emit(self, start: float, end: float, counts: WindowCounts, versions: set, partial: bool = False) -> Optional[dict]:
        if counts.records == 0:
            return None
        try:
            baseline, name, baseline_version = self._model()
        except Exception as err:  # noqa: BLE001 - the record says why it has no baseline
            log.warning("drift: cannot read the serving model's baseline: %s", err)
            baseline, name, baseline_version = None, None, None
        figures = evaluate_window(counts, baseline, self.thresholds)
        version = max(versions) if versions else baseline_version
        if len(versions) > 1:
            figures["notes"].append(f"the window was scored by model versions {sorted(versions)} (a hot swap)")
        record = {
            "window_start": _iso(start),
            "window_end": _iso(end),
            "model_name": name,
            "model_version": version,
            "baseline_model_version": baseline_version,
            **figures,
            "partial": bool(partial),
        }
        self.latest = record
        self.records.append(record)
        level = logging.WARNING if record["alert"] else logging.INFO
        log.log(
            level,
            "drift window %s..%s: %d scored, JS %s, OOV rate %s (baseline %s), empty rate %s%s",
            record["window_start"], record["window_end"], record["scored"], _fmt(record["js_distance"]),
            _fmt(record["oov_rate"]), _fmt(record["oov_rate_baseline"]), _fmt(record["empty_rate"]),
            f"; ALERT: {'; '.join(record['alert_reasons'])}" if record["alert"] else "",
        )  # fmt: skip
        for sink in self.sinks:
            try:
                sink(record)
            except Exception as err:  # noqa: BLE001 - a sink outage must never stop the stream
                self.failed_writes += 1
                log.error("drift: writing the window record with %s failed: %s", getattr(sink, "__name__", sink), err)
        return record

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> "DriftMonitor":
        """Start the thread that closes windows on time even when no batch arrives."""
        period = max(0.1, min(1.0, self.window_s / 4))

        def run() -> None:
            while not self._stop.wait(period):
                try:
                    self.tick()
                except Exception:  # noqa: BLE001 - keep closing windows
                    log.exception("drift: closing a window failed")

        self._thread = threading.Thread(target=run, name="ntm-drift-monitor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> Optional[dict]:
        """Stop the thread and write the open window (``partial`` when it has not ended)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        return self.flush()


def _fmt(x: Optional[float]) -> str:
    return "n/a" if x is None else f"{x:.3f}"


# ----------------------------------------------------------------------------- sinks


def kafka_sink(spark: "SparkSession", options: dict, topic: str, timeout_s: float = 10.0) -> Callable[[dict], None]:
    """Write records to ``topic`` with the driver JVM's Kafka producer (the connector's client; key = window start)."""
    jvm = spark.sparkContext._jvm
    props = jvm.java.util.Properties()
    for key, value in options.items():
        props.put(key[len("kafka."):] if key.startswith("kafka.") else key, str(value))
    serializer = "org.apache.kafka.common.serialization.StringSerializer"
    props.put("key.serializer", serializer)
    props.put("value.serializer", serializer)
    props.put("max.block.ms", str(int(timeout_s * 1000)))
    props.put("acks", "all")
    producer = jvm.org.apache.kafka.clients.producer.KafkaProducer(props)
    unit = jvm.java.util.concurrent.TimeUnit.MILLISECONDS

    def write_kafka(record: dict) -> None:
        message = jvm.org.apache.kafka.clients.producer.ProducerRecord(topic, record["window_start"], json.dumps(record))
        producer.send(message).get(int(timeout_s * 1000), unit)

    def close() -> None:
        producer.close(jvm.java.time.Duration.ofMillis(int(timeout_s * 1000)))

    write_kafka.close = close  # type: ignore[attr-defined]
    return write_kafka


def parquet_sink(folder: str) -> Callable[[dict], None]:
    """Write each record as ``<folder>/window-<start ms>.parquet`` (a replayed window replaces its file)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = drift_parquet_schema()
    storage.make_dirs(folder)

    def write_parquet(record: dict) -> None:
        row = {name: record.get(name) for name in schema.names}
        for key in ("window_start", "window_end"):
            row[key] = datetime.fromisoformat(record[key].replace("Z", "+00:00"))
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pylist([row], schema=schema), buf)
        millis = int(datetime.fromisoformat(record["window_start"].replace("Z", "+00:00")).timestamp() * 1000)
        storage.write_bytes(storage.join(folder, f"window-{millis}.parquet"), buf.getvalue())

    return write_parquet


def read_drift_parquet(path: str) -> list[dict]:
    """The records of one drift Parquet file (:func:`parquet_sink`'s), in the drift topic's JSON shape.

    Timestamps come back as the topic's ISO strings (``2026-12-07T13:01:00.000Z``). A column the
    file lacks is a key the record lacks: the reader (the report) counts and skips such records.

    Raises:
        OSError: for a file that cannot be read (pyarrow's ``ArrowInvalid`` is a ``ValueError``: also raised).
    """
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(storage.open_input_file(path))
    if "window_start" not in parquet.schema_arrow.names:  # the scored records' sink, say: do not read it all
        raise ValueError(f"{path} is not a drift window file: it has no window_start column")
    rows = parquet.read().to_pylist()
    for row in rows:
        for key in ("window_start", "window_end"):
            if isinstance(row.get(key), datetime):
                row[key] = _iso(row[key].timestamp())
    return rows


def drift_parquet_folder(parquet_path: str) -> str:
    """Where the drift records of a stream with ``parquet_path`` go: ``<parquet_path>-drift``."""
    return f"{str(parquet_path).rstrip('/')}-drift"


def make_drift_listener(monitor: DriftMonitor) -> Any:
    """A ``StreamingQueryListener`` that feeds each micro-batch's observed metrics to ``monitor``."""
    from pyspark.sql.streaming import StreamingQueryListener

    class DriftListener(StreamingQueryListener):
        """Feeds the drift monitor."""

        def onQueryStarted(self, event: Any) -> None:  # noqa: N802 - Spark's API
            pass

        def onQueryProgress(self, event: Any) -> None:  # noqa: N802
            try:
                monitor.add_progress(event.progress)
            except Exception:  # noqa: BLE001 - never let the monitor disturb the query
                log.exception("drift: adding a micro-batch failed")

        def onQueryIdle(self, event: Any) -> None:  # noqa: N802
            pass

        def onQueryTerminated(self, event: Any) -> None:  # noqa: N802
            pass

    return DriftListener()


def serving_model(cfg: "StreamConfig") -> Callable[[], tuple[Any, Optional[str], Optional[str]]]:
    """``() -> (baseline, name, version)`` of the model the stream serves, loaded in the driver (re-resolved like the workers)."""
    from ntm_spark.serving.model_loader import get_loader

    spec = model_spec(cfg)

    def current() -> tuple[Any, Optional[str], Optional[str]]:
        loaded = get_loader(spec).get()
        return loaded.scorer.drift_baseline, loaded.name, loaded.version

    return current


def model_spec(cfg: "StreamConfig") -> Any:
    """The :class:`~ntm_spark.serving.model_loader.ModelSpec` of the stream's model (the workers' and the monitor's)."""
    from ntm_spark.serving.model_loader import ModelSpec

    tracking_uri = cfg.tracking_uri
    if tracking_uri is None and cfg.model_uri.startswith("models:/"):
        from ntm_spark.core.uris import resolve_tracking_uri

        tracking_uri = resolve_tracking_uri()
    return ModelSpec(cfg.model_uri, cfg.model_refresh_interval_s, tracking_uri, cfg.max_message_bytes, cfg.scoring_threads)
