"""Run every benchmark in ``bench/`` one after the other, or list them.

Usage:
    .venv/bin/python bench/run_all.py                   # all of them, in order (hours on 2 cores)
    .venv/bin/python bench/run_all.py --dry-run         # each benchmark, what it measures and its command
    .venv/bin/python bench/run_all.py --only bench_serving bench_train_cpu
    make bench | make bench-list | make bench ARGS="--only bench_serving"

Each benchmark runs from the repository root with this interpreter and the command listed
(the one behind its row in BENCHMARKS.md's "Current figures" where it has one). The GPU ones
are skipped, with a line saying so, where CUDA is absent. A benchmark that is only part of
another (``seed_notebook.py`` is ``bench_preprocess.py``'s baseline (b)) is listed but runs
only when ``--only`` names it. The training benchmarks read ``.ntm/data/20newsgroups``; when it
is missing, ``python -m jobs.preprocess`` writes it first.

Every ``bench/*.py`` must appear here, as a benchmark or as a helper module: ``--dry-run``
exits 1 naming any file it does not know (``tests/bench/test_run_all.py`` runs it).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
DATA = ROOT / ".ntm" / "data" / "20newsgroups"
ARCHIVE = Path(os.environ.get("NTM_20NG", ROOT.parent / "shared" / "data" / "20newsgroups" / "20news-bydate.tar.xz"))


@dataclass(frozen=True)
class Benchmark:
    """One benchmark script and the command ``run_all`` gives it."""

    name: str
    description: str
    args: tuple[str, ...] = ()
    gpu: bool = False
    needs_data: bool = False
    in_all: bool = True
    env: tuple[tuple[str, str], ...] = ()  # shown in the command; the run sets PYSPARK_PYTHON itself

    @property
    def script(self) -> str:
        return f"{self.name}.py"

    def command(self, python: str = ".venv/bin/python") -> str:
        """The command as a person would type it from the repository root."""
        prefix = "".join(f"{k}={shlex.quote(v)} " for k, v in self.env)
        return prefix + shlex.join([python, f"bench/{self.script}", *self.args])


#: Every benchmark, in the order the full run takes them (cheapest first).
BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark(
        "bench_serving",
        "serving: REST (mlflow models serve) vs in-process pyfunc, text and BoW, batch 1/32/256: p50/p99, docs/s, load",
    ),
    Benchmark(
        "bench_sagemaker_serving",
        "serving: ntm serve (SageMaker layouts, RecordIO) vs mlflow models serve, CSV/JSON dense/sparse/text, batch 1/32/256",
    ),
    Benchmark(
        "bench_preprocess",
        "preprocessing: the Spark job (a) vs the seed notebook's path (b), 1x/4x/16x scaling, driver memory",
        ("--scales", "1,4,16", "--repeats", "3"),
    ),
    Benchmark(
        "seed_notebook",
        "the seed notebook's preprocessing as one program: bench_preprocess's baseline (b), run there",
        ("--archive", os.path.relpath(ARCHIVE, ROOT), "--output", "/tmp/bench_seed_notebook"),
        in_all=False,
    ),
    Benchmark(
        "bench_streaming",
        "streaming: end-to-end p50/p95/p99 at 1,000 and 100 msgs/s, drain docs/s, backfill 1x/10x; NTM vs LDA peer",
        (
            "--seconds", "15", "--warmup-seconds", "10", "--warmup-run-seconds", "20",
            "--triggers", "processing_time:100 milliseconds", "--rates", "1000", "100", "--input-partitions", "1", "2",
            "--drain-docs", "40000", "--drain-batch", "10000", "--backfill-scales", "1", "10", "--kinds", "ntm", "lda",
        ),
        env=(("PYSPARK_PYTHON", ".venv/bin/python"),),
    ),
    Benchmark(
        "bench_drift",
        "drift thresholds (issue 21): JS distance, OOV rate and alert share of in-domain vs out-of-domain 20NG windows",
        ("--work", "/tmp/bench_drift", "--trials", "500"),
    ),
    Benchmark(
        "bench_cluster",
        "standalone cluster (issue 17): preprocess + backfill of the 16x corpus, 1 worker x 1 core vs 2 workers x 1 core",
        ("--scale", "16"),
    ),
    Benchmark(
        "bench_hardening_cost",
        "the stream hardening's cost (issue 15): p50/p99 and drain of this tree vs a base commit, alternating",
    ),
    Benchmark(
        "bench_train_cpu",
        "training throughput on CPU: 1 process vs 2-process DDP (gloo), docs/s and epoch time",
        ("--epochs", "3"),
        needs_data=True,
    ),
    Benchmark(
        "bench_petastorm",
        "readers (issue 22): training epoch docs/s, Arrow loader vs Petastorm make_batch_reader vs its Spark converter "
        "(runs in .venv-petastorm)",
        ("--epochs", "4", "--repeats", "3", "--threads", "1"),
        needs_data=True,
    ),
    Benchmark(
        "bench_ddp_cluster",
        "DDP on 2 CPU nodes (TorchDistributor cluster mode, local-cluster) vs 1 process: docs/s per process, all-reduce share",
        ("--docs", "6000", "--epochs", "3"),
    ),
    Benchmark(
        "bench_train_quality",
        "topic quality: NTM vs Spark MLlib LDA (online), NPMI / TU / diversity at K=20 and 50",
        ("--k", "20", "50", "--presets", "default"),
        needs_data=True,
    ),
    Benchmark(
        "make_short_corpus",
        "the short-document corpus for bench_topic_quality (issue 18): each 20 Newsgroups document cut to its first 60 counted words",
        ("--data", ".ntm/data/20newsgroups", "--out", ".ntm/data/20newsgroups-short60", "--words", "60"),
        needs_data=True,
    ),
    Benchmark(
        "bench_topic_quality",
        "topic quality (issue 18): NPMI / diversity / NMI of both presets vs Spark LDA (EM, online), full and short "
        "documents, K=20 and 50, 3 seeds",
        ("--data", ".ntm/data/20newsgroups", "--short-data", ".ntm/data/20newsgroups-short60", "--k", "20", "50",
         "--seeds", "42", "1", "2", "--json", "/tmp/bench_topic_quality.json"),
        needs_data=True,
    ),
    Benchmark(
        "bench_warm_start",
        "warm start (issue 21): a champion on half the training split warm-started on the other half (replay 0, 0.5, 1) "
        "vs a fresh run on all of it: NPMI, NMI, topic ids kept, time; 3 seeds",
        ("--data", ".ntm/data/20newsgroups", "--k", "20", "--seeds", "42", "1", "2", "--replay", "0", "0.5", "1",
         "--json", "/tmp/bench_warm_start.json"),
        needs_data=True,
    ),
    Benchmark(
        "bench_threads",
        "training threads under load (issue 18): epoch time, 2 spinning threads vs the default (cores free // ranks, "
        "PASSIVE) vs 1 thread, beside a busy process",
        ("--epochs", "3", "--rounds", "2", "--load", "1"),
        needs_data=True,
    ),
    Benchmark(
        "sweep_ntm_quality",
        "quality sweep: a plain loop over NTMModel for ablations (add --set KEY=VALUE), 3 seeds",
        ("--k", "20", "50", "--seeds", "42", "1", "2", "--tag", "baseline"),
        needs_data=True,
    ),
    Benchmark(
        "gpu_bench",
        "GPU throughput: Lightning + Arrow loader (resident, streamed) vs a pure PyTorch loop, default preset",
        ("--decoder", "embedding", "--skip-large", "--no-spe1"),
        gpu=True,
    ),
    Benchmark(
        "gpu_smoke",
        "GPU smoke check: train_model end to end on CUDA (streamed, resident, in-process, sagemaker + clipping)",
        gpu=True,
    ),
)

#: Modules in bench/ that are not benchmarks themselves.
HELPERS: dict[str, str] = {
    "lda_peer.py": "the Spark MLlib LDA peer that bench_streaming compares against (a module, not run)",
    "run_all.py": "this runner",
}


def unlisted_scripts() -> list[str]:
    """The ``bench/*.py`` files that are neither a benchmark nor a helper here."""
    known = {b.script for b in BENCHMARKS} | set(HELPERS)
    return sorted(p.name for p in BENCH.glob("*.py") if p.name not in known)


def select(only: Optional[Sequence[str]]) -> list[Benchmark]:
    """The benchmarks ``--only`` names (``.py`` optional), or every one the full run takes."""
    if not only:
        return [b for b in BENCHMARKS if b.in_all]
    by_name = {b.name: b for b in BENCHMARKS}
    picked = []
    for name in only:
        key = name.removesuffix(".py").removeprefix("bench/")
        if key not in by_name:
            raise ValueError(f"--only {name!r} is not a benchmark here; choose from: {', '.join(by_name)}")
        picked.append(by_name[key])
    return picked


def print_list(benchmarks: Sequence[Benchmark]) -> None:
    """One entry per benchmark: name, what it measures, its command; then the helper modules."""
    width = max(len(b.script) for b in BENCHMARKS)
    for b in benchmarks:
        tags = [t for t, on in (("GPU", b.gpu), ("reads .ntm/data/20newsgroups", b.needs_data),
                                ("only with --only", not b.in_all)) if on]
        print(f"{b.script:<{width}}  {b.description}" + (f" [{'; '.join(tags)}]" if tags else ""))
        print(f"{'':<{width}}  $ {b.command()}")
    print()
    print("helper modules (not run):")
    for name, what in HELPERS.items():
        print(f"{name:<{width}}  {what}")


def cuda_available() -> bool:
    """Whether this interpreter's torch sees a CUDA device (asked in a child, so this process stays light)."""
    probe = "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"
    try:
        return subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, timeout=300).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def ensure_data() -> bool:
    """Write ``.ntm/data/20newsgroups`` with the preprocessing defaults when it is missing."""
    if (DATA / "manifest.json").exists():
        return True
    print(f"run_all: {DATA.relative_to(ROOT)} is missing; writing it with the preprocessing defaults", flush=True)
    cmd = [sys.executable, "-m", "jobs.preprocess", "--output", str(DATA)]
    return subprocess.run(cmd, cwd=ROOT, env=child_env()).returncode == 0


def child_env() -> dict:
    """This environment, with Spark on loopback and its Python workers on this interpreter unless set."""
    env = dict(os.environ)
    env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    return env


def run(benchmarks: Sequence[Benchmark]) -> int:
    """Run each benchmark in turn; a failure is reported and the next one still runs."""
    has_cuda = cuda_available() if any(b.gpu for b in benchmarks) else False
    results: list[tuple[str, str]] = []
    for b in benchmarks:
        if b.gpu and not has_cuda:
            print(f"run_all: skipping {b.script}: it needs a CUDA GPU and torch sees none here", flush=True)
            results.append((b.script, "skipped (no CUDA)"))
            continue
        if b.needs_data and not ensure_data():
            results.append((b.script, "failed (preprocessing its data failed)"))
            continue
        print(f"\n=== {b.script}: {b.description}\n$ {b.command(python=sys.executable)}", flush=True)
        start = time.monotonic()
        rc = subprocess.run([sys.executable, str(BENCH / b.script), *b.args], cwd=ROOT, env=child_env()).returncode
        took = time.monotonic() - start
        results.append((b.script, f"ok in {took:.0f} s" if rc == 0 else f"failed (exit {rc}) after {took:.0f} s"))
    print("\nrun_all summary:")
    for script, outcome in results:
        print(f"  {script}: {outcome}")
    return 0 if all(not o.startswith("failed") for _, o in results) else 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/run_all.py", description="Run or list the benchmarks in bench/.")
    parser.add_argument("--dry-run", action="store_true", help="list the benchmarks and their commands; run nothing")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run these benchmarks only (e.g. bench_serving)")
    args = parser.parse_args(argv)
    try:
        chosen = select(args.only)
    except ValueError as err:
        parser.error(str(err))
    missing = unlisted_scripts()
    if args.dry_run:
        print_list(chosen if args.only else BENCHMARKS)
        if missing:
            print(f"run_all: bench/run_all.py does not list {', '.join(missing)}: add each to BENCHMARKS "
                  "(or HELPERS) in bench/run_all.py", file=sys.stderr)
            return 1
        return 0
    if missing:
        print(f"run_all: not listed, so not run: {', '.join(missing)} (add them to bench/run_all.py)", file=sys.stderr)
    return run(chosen)


if __name__ == "__main__":
    sys.exit(main())
