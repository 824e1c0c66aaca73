"""bench/bench_streaming.py with tiny settings, so that the benchmark behind BENCHMARKS.md cannot rot (issue 20).

It asserts that every stage ran and delivered, never a speed: speed is measured by the
benchmark itself, not by tests.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.spark, pytest.mark.slow]


def test_bench_streaming_tiny_run_measures_every_stage(kafka_bootstrap, tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable, str(ROOT / "bench" / "bench_streaming.py"), "--bootstrap", kafka_bootstrap,
            "--work", str(tmp_path / "work"), "--seconds", "3", "--warmup-seconds", "1", "--warmup-run-seconds", "0",
            "--triggers", "processing_time:100 milliseconds", "--rates", "100", "--input-partitions", "1", "4",
            "--drain-docs", "600", "--drain-batch", "300", "--backfill-scales", "1", "--kinds", "ntm", "lda",
            "--json", str(out),
        ],
        capture_output=True, text=True, timeout=1800, env=env, cwd=ROOT,  # a hang guard: 256 s idle, 620 s on a loaded 2-core box
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(out.read_text())
    latency = {(r["kind"], r["input_partitions"]): r for r in result["latency"]}
    assert set(latency) == {("ntm", 1), ("ntm", 4), ("lda", 1), ("lda", 4)}
    for key, row in latency.items():
        # Every offered message came back through the query (the window closes after the last one arrives or times out).
        assert row["offered"] > 0 and row["received"] >= 0.9 * row["offered"], (key, row["received"], row["offered"])
        assert 0 < row["p50_ms"] <= row["p99_ms"], key
    drains = {r["kind"]: r for r in result["drain"]}
    assert set(drains) == {"ntm", "lda"} and all(d["messages"] == 600 and d["docs_per_s_wall"] > 0 for d in drains.values())
    (backfill,) = result["backfill"]
    assert backfill["documents"] > 0 and backfill["docs_per_s"] > 0
