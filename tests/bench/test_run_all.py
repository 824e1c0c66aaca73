"""bench/run_all.py lists every script in bench/, so a new benchmark cannot be left out of `make bench`."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def dry_run(*args):
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run_all.py"), "--dry-run", *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )


def listed_names(stdout):
    """The script named by each entry line (entries start in column 0; their commands are indented)."""
    return {line.split()[0] for line in stdout.splitlines() if line[:1].strip() and line.split()[0].endswith(".py")}


def test_dry_run_lists_every_bench_script():
    proc = dry_run()
    assert proc.returncode == 0, proc.stderr
    listed = listed_names(proc.stdout)
    scripts = {p.name for p in (ROOT / "bench").glob("*.py")}
    assert scripts - listed == set(), f"bench/run_all.py does not list {sorted(scripts - listed)}"
    assert "$ .venv/bin/python bench/bench_preprocess.py" in proc.stdout


def test_only_narrows_the_list_and_unknown_names_are_refused():
    proc = dry_run("--only", "bench_serving")
    assert proc.returncode == 0, proc.stderr
    assert "bench/bench_serving.py" in proc.stdout and "bench/bench_streaming.py" not in proc.stdout
    bad = dry_run("--only", "bench_nothing")
    assert bad.returncode == 2 and "'bench_nothing'" in bad.stderr
