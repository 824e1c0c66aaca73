"""The drift monitor's windows and sinks, fed observed metrics as a micro-batch reports them (no broker)."""

import numpy as np
import pyarrow.parquet as pq
import pytest

from ntm_spark.core.drift import DriftBaseline, DriftThresholds, TopicSums
from ntm_spark.spark.drift_monitor import DriftMonitor, drift_parquet_folder, parquet_sink


def metrics(weights, tokens=100, oov=5, empty=0, version="3"):
    w = np.asarray(weights, dtype=float)
    return {
        "records": len(w) + empty, "scored": len(w), "dead_letters": empty, "model_version": version,
        "drift_normalized": len(w) + empty, "drift_empty": empty, "drift_tokens": tokens, "drift_oov_tokens": oov,
        "drift_weight_sum": w.sum(axis=0).tolist(), "drift_weight_sumsq": (w * w).sum(axis=0).tolist(),
        "drift_argmax": np.bincount(w.argmax(axis=1), minlength=w.shape[1]).tolist(),
    }  # fmt: skip


BASE = DriftBaseline.from_sums(TopicSums.from_weights([[0.5, 0.5]] * 10 + [[0.6, 0.4]] * 10), 1000, 950)


def monitor(clock, sinks=()):
    return DriftMonitor(10.0, DriftThresholds(js_distance=0.2, min_documents=5), lambda: (BASE, "ntm", "3"), sinks, clock=clock)


def test_batches_add_up_per_window_and_a_window_closes_when_the_next_begins_or_time_passes():
    now = [0.0]
    got = []
    mon = monitor(lambda: now[0], sinks=(got.append,))
    mon.add_batch(1001.0, metrics([[0.5, 0.5]] * 6))
    mon.add_batch(1005.0, metrics([[0.55, 0.45]] * 4, tokens=50, oov=10))
    assert got == []  # the window [1000, 1010) is still open
    mon.add_batch(1012.0, metrics([[0.95, 0.05]] * 8, tokens=80, oov=40))
    first = got[0]
    assert (first["window_start"], first["window_end"]) == ("1970-01-01T00:16:40.000Z", "1970-01-01T00:16:50.000Z")
    assert first["scored"] == 10 and first["tokens"] == 150 and first["oov_tokens"] == 15
    assert first["prevalence"] == pytest.approx([0.52, 0.48]) and not first["alert"]
    assert (first["model_name"], first["model_version"]) == ("ntm", "3")
    now[0] = 1021.5  # past the end of [1010, 1020) plus the grace: the timer thread's tick closes it
    second = mon.tick()
    assert second is got[1] and second["alert"] and second["oov_rate"] == pytest.approx(0.5)
    assert second["oov_rate_baseline"] == pytest.approx(0.05)
    assert mon.tick() is None and mon.latest is second


def test_flush_marks_an_unfinished_window_partial_and_a_failing_sink_is_counted_not_raised(tmp_path):
    def broken(record):
        raise ConnectionError("broker down")

    out = drift_parquet_folder(str(tmp_path / "scored"))
    mon = monitor(lambda: 1003.0, sinks=(broken, parquet_sink(out)))
    mon.add_batch("1970-01-01T00:16:41.000Z", metrics([[0.5, 0.5]] * 6, version="3"))
    mon.add_batch(1002.0, metrics([[0.5, 0.5]] * 6, version="4"))  # a hot swap inside the window
    rec = mon.flush()
    assert rec["partial"] and mon.failed_writes == 1
    assert rec["model_version"] == "4" and any("hot swap" in n for n in rec["notes"])
    table = pq.read_table(out)
    assert table.num_rows == 1 and table.column("scored").to_pylist() == [12]
    assert table.column("top_z").to_pylist()[0][0]["topic"] in (0, 1)
    assert mon.flush() is None


def test_a_batch_without_drift_sums_or_rows_changes_nothing():
    got = []
    mon = monitor(lambda: 0.0, sinks=(got.append,))
    mon.add_batch(1001.0, {"records": 3, "scored": 3})
    mon.add_batch(1001.0, metrics(np.zeros((0, 2))))
    assert mon.flush() is None and got == []
    with pytest.raises(ValueError, match="drift_window"):
        DriftMonitor(0, DriftThresholds(), lambda: (None, None, None))


def test_a_batch_reporting_after_its_window_closed_counts_in_the_next_and_no_window_is_written_twice(tmp_path):
    out = drift_parquet_folder(str(tmp_path / "scored"))
    got = []
    now = [1011.5]
    mon = monitor(lambda: now[0], sinks=(got.append, parquet_sink(out)))
    mon.add_batch(1001.0, metrics([[0.5, 0.5]] * 6))
    assert mon.tick()["window_start"].endswith("16:40.000Z")  # [1000, 1010) closed on time
    mon.add_batch(1009.0, metrics([[0.5, 0.5]] * 4))  # started in the closed window, reported late
    now[0] = 1021.5
    late = mon.tick()
    assert late["window_start"].endswith("16:50.000Z") and late["scored"] == 4
    assert [r["window_start"] for r in got] == sorted({r["window_start"] for r in got})
    assert pq.read_table(out).num_rows == 2
