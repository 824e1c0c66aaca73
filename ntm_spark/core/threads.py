"""CPU threads: how many a process should use, and an OpenMP that yields a contended core.

On a shared machine (a 2-core CI box, a Spark executor beside others) two mistakes cost
more than any model choice: more torch threads than free cores, and OpenMP threads that
spin while they wait for each other. With 2 threads per process on a busy 2-core box, epochs
took 20-190 s against 2-5 s with 1 thread (issue 18; ``bench/bench_threads.py`` measures it).

* :func:`available_cores` counts the cores this process may run on: the CPU affinity mask
  (``taskset``, YARN and Kubernetes pin it), capped by a cgroup v2 CPU quota, less the cores
  other processes keep busy (the 1-minute load average, rounded down).
* :func:`default_threads` shares them between the processes of one machine: cores
  available / processes, at least 1. Under load that is 1 thread per process: 2.3x faster
  epochs than 2 threads with the passive wait policy, and 6x faster than 2 spinning threads,
  on the 2-core box (BENCHMARKS.md).
* :func:`set_thread_env` sets ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` and
  ``OMP_WAIT_POLICY=PASSIVE`` (threads sleep instead of spinning when they wait), without
  overriding what the user set. OpenMP reads the wait policy once, when torch loads it, so the
  entry points (``ntm``, ``jobs/*.py``) call it before importing torch; children (DataLoader
  workers, DDP ranks, Spark's Python workers) inherit the environment.

No torch import here: :mod:`lightning_module.train` applies the count to torch.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Optional

#: What an OpenMP thread does while it waits: sleep (PASSIVE), not spin, so a core shared with
#: other processes is not burnt by threads that have nothing to do.
WAIT_POLICY = "PASSIVE"


def _cgroup_quota_cores(root: Path = Path("/sys/fs/cgroup")) -> Optional[float]:
    """Return the cgroup v2 CPU quota in cores (``cpu.max``), or ``None`` when there is none."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return float(quota) / float(period)
    except (ValueError, ZeroDivisionError):
        return None


def available_cores(busy: bool = True) -> int:
    """Return the cores this process may use: its CPU affinity, capped by a cgroup quota; at least 1.

    Args:
        busy: Leave out the cores other processes keep busy: the 1-minute load average, rounded down
            (a process that starts while a Spark job or a test run holds a core gets the rest).
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_quota_cores()
    if quota is not None:
        cores = min(cores, max(1, math.floor(quota)))
    if busy:
        try:
            cores -= math.floor(os.getloadavg()[0])
        except (AttributeError, OSError):  # no load average on this platform
            pass
    return max(1, cores)


def default_threads(processes: int = 1) -> int:
    """Return the threads per process when ``processes`` share this machine: cores available / processes, at least 1."""
    if processes < 1:
        raise ValueError(f"processes={processes!r} must be >= 1: count the training ranks on this machine.")
    return max(1, available_cores() // processes)


def set_thread_env(threads: Optional[int] = None) -> int:
    """Set the thread environment for this process and its children, keeping what the user set.

    Args:
        threads: ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``; default :func:`default_threads` for one process.

    Returns:
        The thread count now in ``OMP_NUM_THREADS``.
    """
    n = threads or default_threads(1)
    os.environ.setdefault("OMP_WAIT_POLICY", WAIT_POLICY)
    os.environ.setdefault("OMP_NUM_THREADS", str(n))
    os.environ.setdefault("MKL_NUM_THREADS", str(n))
    try:
        return int(os.environ["OMP_NUM_THREADS"])
    except ValueError:
        return n
