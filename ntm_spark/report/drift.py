"""The report's drift page: the stream's drift windows against the training data the model carries.

``ntm stream`` writes one drift record per window (docs/streaming.md "Drift monitoring") to the
topic ``<output_topic>-drift`` and, with ``parquet_path``, to the folder ``<parquet_path>-drift``.
Both hold the same record shape; :func:`drift_history` turns records from either into one
:class:`DriftHistory` (read once, held in memory, oldest window first), and :func:`write_drift_files`
draws its figures and writes its table. The sources:

- the Parquet folder: :func:`read_drift_folder` (files read by the stream's own schema owner,
  :func:`ntm_spark.spark.drift_monitor.read_drift_parquet`);
- the topic: read by ``jobs/explore.py`` with :func:`ntm_spark.tools.tail.read_topic_records`
  (the Kafka client is the tools layer's, above this one) and passed in as records.

A record that lacks a field or holds a malformed one is skipped and counted, never raised; a
window read twice (a replayed record) keeps the last one read.

Example:
    >>> records, unreadable = read_drift_folder("/data/scored-drift")  # doctest: +SKIP
    >>> history = drift_history(records, "folder /data/scored-drift", DriftThresholds(), unreadable)  # doctest: +SKIP
    >>> len(history.windows), len(history.alerts)                      # doctest: +SKIP
    (42, 3)
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ntm_spark.core import storage
from ntm_spark.core.drift import DriftBaseline, DriftThresholds
from ntm_spark.report._base import ExploreError, PathLike

log = logging.getLogger(__name__)

#: The fields a drift record must carry to be drawn (values may be ``null`` where the stream writes ``null``).
REQUIRED_FIELDS = (
    "window_start", "window_end", "scored", "prevalence", "js_distance", "oov_rate", "empty_rate", "alert", "alert_reasons",
)  # fmt: skip
#: At most this many skip reasons are kept to show.
MAX_EXAMPLES = 3
_FOLDER_FIX = (
    "--drift takes the stream's drift folder, <parquet_path>-drift (written when stream.parquet_path is set), "
    "or read the drift topic with --drift-topic"
)


@dataclass
class DriftWindow:
    """One drift record, checked: the figures the page draws (docs/streaming.md "What is computed")."""

    start: datetime
    end: datetime
    scored: int
    prevalence: Optional[list[float]]
    js_distance: Optional[float]
    oov_rate: Optional[float]
    oov_rate_baseline: Optional[float]
    empty_rate: Optional[float]
    alert: bool
    alert_reasons: list[str]
    top_z: list[dict] = field(default_factory=list)
    model_name: Optional[str] = None
    model_version: Optional[str] = None
    partial: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass
class DriftHistory:
    """The drift windows of one source, oldest first, one per window start.

    Attributes:
        source: What was read (``folder PATH`` / ``topic T at SERVERS``), for the page.
        windows: The checked windows.
        thresholds: The alert thresholds the stream's config holds (drawn on the figures).
        skipped: Records (or files, messages) left out: a missing or malformed field, an unreadable file.
        skip_examples: Why, for the first few.
        replaced: Records of a window read before (a replay): the last one read is kept.
    """

    source: str
    windows: list[DriftWindow]
    thresholds: DriftThresholds
    skipped: int = 0
    skip_examples: list[str] = field(default_factory=list)
    replaced: int = 0

    @property
    def alerts(self) -> list[DriftWindow]:
        """The windows whose alert flag is up, oldest first."""
        return [w for w in self.windows if w.alert]


def _time(value: Any, name: str) -> datetime:
    if not isinstance(value, (str, datetime)):
        raise ValueError(f"{name}={value!r} is not an ISO time")
    try:
        dt = value if isinstance(value, datetime) else datetime.fromisoformat(value.replace("Z", "+00:00"))
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        return dt.astimezone(timezone.utc)
    except (ValueError, OverflowError):  # not ISO, or out of range once in UTC
        raise ValueError(f"{name}={value!r} is not an ISO time") from None


def _number(value: Any, name: str, share: bool = True) -> Optional[float]:
    """``None``, or ``value`` as a float; with ``share`` it must lie in ``[0, 1]`` (rates, distances, prevalences)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name}={value!r} is not a number")
    try:
        number = float(value)
    except OverflowError:
        raise ValueError(f"{name}={value!r} is out of range") from None
    if not math.isfinite(number) or (share and not 0.0 <= number <= 1.0):
        raise ValueError(f"{name}={value!r} is not a {'share in [0, 1]' if share else 'finite number'}")
    return number


def _top_z(value: Any) -> list[dict]:
    """The well-formed ``top_z`` entries (an int topic and finite numbers); others are dropped."""
    if not isinstance(value, list):
        return []
    out = []
    for entry in value:
        if not isinstance(entry, dict) or isinstance(entry.get("topic"), bool) or not isinstance(entry.get("topic"), int):
            continue
        try:
            z = _number(entry.get("z"), "z", share=False)
            base = _number(entry.get("baseline"), "baseline")
        except ValueError:
            continue
        if z is not None:
            out.append({"topic": entry["topic"], "z": z, "baseline": base})
    return out


def _strings(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{name}={value!r} is not a list")
    return [str(v) for v in value]


def parse_window(record: Any) -> DriftWindow:
    """Check one drift record (the topic's JSON object or a Parquet row) and return its :class:`DriftWindow`.

    Raises:
        ValueError: naming the first missing or malformed field.
    """
    if not isinstance(record, dict):
        raise ValueError(f"not a JSON object: {type(record).__name__}")
    missing = [name for name in REQUIRED_FIELDS if name not in record]
    if missing:
        raise ValueError(f"missing field(s) {missing}")
    scored = record["scored"]
    if isinstance(scored, bool) or not isinstance(scored, int) or not 0 <= scored < 2**63:
        raise ValueError(f"scored={scored!r} is not a count")
    prevalence = record["prevalence"]
    if prevalence is not None:
        if not isinstance(prevalence, list) or not prevalence:
            raise ValueError(f"prevalence={prevalence!r} is not a list of numbers")
        prevalence = [_number(p, "prevalence") for p in prevalence]
        if any(p is None for p in prevalence):
            raise ValueError("prevalence holds a null")
    if not isinstance(record["alert"], bool):
        raise ValueError(f"alert={record['alert']!r} is not true/false")
    start, end = _time(record["window_start"], "window_start"), _time(record["window_end"], "window_end")
    if end < start:
        raise ValueError(f"window_end {record['window_end']!r} is before window_start {record['window_start']!r}")
    version = record.get("model_version")
    return DriftWindow(
        start=start,
        end=end,
        scored=scored,
        prevalence=prevalence,
        js_distance=_number(record["js_distance"], "js_distance"),
        oov_rate=_number(record["oov_rate"], "oov_rate"),
        oov_rate_baseline=_number(record.get("oov_rate_baseline"), "oov_rate_baseline"),
        empty_rate=_number(record["empty_rate"], "empty_rate"),
        alert=record["alert"],
        alert_reasons=_strings(record["alert_reasons"], "alert_reasons"),
        top_z=_top_z(record.get("top_z")),
        model_name=None if record.get("model_name") is None else str(record["model_name"]),
        model_version=None if version is None else str(version),
        partial=bool(record.get("partial")),
        notes=_strings(record.get("notes"), "notes"),
    )


def drift_history(
    records: Sequence[Any], source: str, thresholds: DriftThresholds, unreadable: Sequence[str] = ()
) -> DriftHistory:
    """Check drift records from either source and keep one per window, oldest first.

    Args:
        records: Drift records: the topic's JSON objects or the Parquet folder's rows.
        source: What they were read from, for the page (``folder PATH`` / ``topic T at SERVERS``).
        thresholds: The stream's alert thresholds (``StreamConfig.drift_thresholds()``).
        unreadable: Why each item that could not even be read as a record was left out
            (a file that is not Parquet, a message that is not JSON); counted with the skipped.

    Returns:
        The :class:`DriftHistory`; a record that fails :func:`parse_window` is skipped and counted.
    """
    by_start: dict[datetime, DriftWindow] = {}
    examples = list(unreadable[:MAX_EXAMPLES])
    skipped, replaced = len(unreadable), 0
    for i, rec in enumerate(records):
        try:
            window = parse_window(rec)
        except ValueError as err:
            skipped += 1
            if len(examples) < MAX_EXAMPLES:
                examples.append(f"record {i}: {err}")
            continue
        replaced += window.start in by_start
        by_start[window.start] = window
    if skipped:
        log.warning("drift: %d record(s) of %s left out (%s)", skipped, source, "; ".join(examples))
    windows = [by_start[s] for s in sorted(by_start)]
    return DriftHistory(source, windows, thresholds, skipped, examples, replaced)


def read_drift_folder(path: PathLike) -> tuple[list[dict], list[str]]:
    """Read the stream's drift Parquet folder (``<parquet_path>-drift``, or one of its files).

    Returns:
        The records of every readable file, and why each unreadable file was left out.

    Raises:
        ExploreError: naming ``path`` and the fix, when it does not exist, holds no Parquet file,
            or none of its files holds drift records (the scored records' folder, say).
    """
    from ntm_spark.spark.drift_monitor import drift_parquet_folder, read_drift_parquet

    shown = storage.display(path)
    sibling = drift_parquet_folder(str(path))
    hint = f"; did you mean {storage.display(sibling)}?" if storage.is_dir(sibling) else ""
    if not storage.exists(path):
        raise ExploreError(f"--drift {shown!r} does not exist: {_FOLDER_FIX}{hint}")
    files = [str(path)] if storage.is_file(path) else storage.list_files(path, ".parquet")
    if not files:
        raise ExploreError(f"--drift {shown!r} holds no drift records (no .parquet file): {_FOLDER_FIX}{hint}")
    records: list[dict] = []
    unreadable: list[str] = []
    for name in files:
        try:
            records.extend(read_drift_parquet(name))
        except (OSError, ValueError) as err:
            unreadable.append(f"{Path(name).name}: {err}")
    if not records:
        why = f" ({unreadable[0]})" if unreadable else ""
        raise ExploreError(
            f"--drift {shown!r} holds no drift records: none of its {len(files)} .parquet file(s) is a drift "
            f"window file{why}. {_FOLDER_FIX}{hint}"
        )
    return records, unreadable


def training_prevalence(baseline: Optional[DriftBaseline], windows: Sequence[DriftWindow], num_topics: int) -> tuple[np.ndarray, str]:
    """The training prevalence to draw, ``(K,)`` (NaN where unknown), and where it came from.

    The model's ``drift_baseline.json`` when it has one over K topics; else the per-topic
    ``baseline`` the records list in ``top_z`` (only the topics some window listed).
    """
    if baseline is not None and baseline.num_topics == num_topics:
        return np.asarray(baseline.prevalence, dtype=np.float64), "the model's drift_baseline.json"
    out = np.full(num_topics, np.nan)
    for window in windows:
        for z in window.top_z:
            topic, value = z.get("topic"), z.get("baseline")
            if 0 <= topic < num_topics and value is not None:
                out[topic] = value
    return out, "the records' top_z baselines (the model has no drift_baseline.json over its topics)"


def prevalence_matrix(windows: Sequence[DriftWindow], num_topics: int) -> tuple[np.ndarray, int]:
    """``(W, K)`` window prevalences (NaN rows for a window with none or with another K), and the count of the latter."""
    out = np.full((len(windows), num_topics), np.nan)
    other_k = 0
    for i, window in enumerate(windows):
        if window.prevalence is None:
            continue
        if len(window.prevalence) != num_topics:
            other_k += 1
            continue
        out[i] = window.prevalence
    return out, other_k


def write_drift_files(
    history: DriftHistory,
    baseline: Optional[DriftBaseline],
    names: Sequence[str],
    out_dir: PathLike,
    columns: int = 5,
) -> dict[str, Path]:
    """Draw the drift figures and write ``drift_windows.csv``; return the files by role (none without windows).

    Args:
        history: From :func:`drift_history`.
        baseline: The model's drift baseline (``None``: the records' ``top_z`` baselines are drawn).
        names: A short name per topic (``"T3: a b c"``).
        out_dir: The report folder.
        columns: Topics per row of the prevalence grid.
    """
    from ntm_spark.report.plots import plot_drift_prevalence, plot_drift_rates
    from ntm_spark.report.writers import write_drift_windows

    if not history.windows:
        return {}
    out_dir = Path(out_dir)
    windows = history.windows
    k = len(names)
    prev, _ = prevalence_matrix(windows, k)
    training, _ = training_prevalence(baseline, windows, k)
    starts = [w.start.replace(tzinfo=None) for w in windows]  # naive UTC for matplotlib
    ends = [w.end.replace(tzinfo=None) for w in windows]
    alerts = np.array([w.alert for w in windows], dtype=bool)

    def series(attr: str) -> np.ndarray:
        return np.array([np.nan if getattr(w, attr) is None else getattr(w, attr) for w in windows], dtype=np.float64)

    files = {
        "drift_prevalence": plot_drift_prevalence(
            starts, ends, prev, training, alerts, names, out_dir / "drift_prevalence.png", columns
        ),
        "drift_rates": plot_drift_rates(
            starts, ends, series("scored"), series("js_distance"), series("oov_rate"), series("oov_rate_baseline"),
            series("empty_rate"), alerts, history.thresholds, out_dir / "drift_rates.png",
        ),  # fmt: skip
        "drift_csv": write_drift_windows(out_dir / "drift_windows.csv", windows, k),
    }
    return files


def drift_info(history: DriftHistory) -> dict[str, Any]:
    """The drift part of ``report.json``."""
    return {
        "source": history.source,
        "windows": len(history.windows),
        "alerts": len(history.alerts),
        "skipped": history.skipped,
        "replaced": history.replaced,
        "first_window": history.windows[0].start.isoformat() if history.windows else None,
        "last_window": history.windows[-1].end.isoformat() if history.windows else None,
    }
