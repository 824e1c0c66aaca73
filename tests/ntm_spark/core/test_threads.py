"""Thread defaults (issue 18): cores available / processes, load taken into account, passive OpenMP waits."""

import os

import pytest

from ntm_spark.core import threads


def test_default_threads_divides_the_available_cores(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7})
    monkeypatch.setattr(os, "getloadavg", lambda: (0.4, 0.4, 0.4))
    monkeypatch.setattr(threads, "_cgroup_quota_cores", lambda: None)
    assert threads.available_cores() == 8 and threads.default_threads(1) == 8 and threads.default_threads(3) == 2
    assert threads.default_threads(16) == 1  # at least 1
    with pytest.raises(ValueError, match="processes=0"):
        threads.default_threads(0)


def test_busy_cores_and_a_cgroup_quota_are_left_out(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(threads, "_cgroup_quota_cores", lambda: None)
    monkeypatch.setattr(os, "getloadavg", lambda: (1.7, 1.0, 1.0))  # another process holds a core
    assert threads.default_threads(1) == 1
    monkeypatch.setattr(os, "getloadavg", lambda: (9.0, 9.0, 9.0))
    assert threads.default_threads(1) == 1
    assert threads.available_cores(busy=False) == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    monkeypatch.setattr(threads, "_cgroup_quota_cores", lambda: 3.5)  # a container limited to 3.5 CPUs
    assert threads.available_cores() == 3


def test_cgroup_quota_is_read_from_cpu_max(tmp_path):
    (tmp_path / "cpu.max").write_text("250000 100000\n")
    assert threads._cgroup_quota_cores(tmp_path) == 2.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert threads._cgroup_quota_cores(tmp_path) is None
    assert threads._cgroup_quota_cores(tmp_path / "absent") is None


def test_thread_env_keeps_what_the_user_set(monkeypatch):
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY"):
        monkeypatch.delenv(key, raising=False)
    assert threads.set_thread_env(3) == 3
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE" and os.environ["OMP_NUM_THREADS"] == "3"
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert threads.set_thread_env(2) == 5 and os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_ntm_sets_the_passive_wait_policy_before_torch_loads(tmp_path):
    """`ntm train --help` in a fresh process: OpenMP's policy is in the environment before any torch import."""
    import subprocess
    import sys

    code = (
        "import os, sys; os.environ.pop('OMP_WAIT_POLICY', None)\n"
        "import jobs.cli as cli\n"
        "assert 'torch' not in sys.modules\n"
        "try:\n    cli.main(['train', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(os.environ.get('OMP_WAIT_POLICY'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "PASSIVE"
