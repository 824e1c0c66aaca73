import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize("decoder", ["linear", "embedding"])
def test_gpu_bench_quick_runs_on_cpu(tmp_path, decoder):
    out = tmp_path / "gpu.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_bench.py"), "--quick", "--json", str(out), "--decoder", decoder],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["card"] and len(result["runs"]) == 2 and result["decoder"] == decoder
    for row in result["runs"]:
        assert row["pure"]["docs_per_s"] > 0 and row["lightning_stream"]["docs_per_s"] > 0 and row["peak_host_rss_mb"] > 0
