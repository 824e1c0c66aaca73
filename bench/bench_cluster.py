"""Preprocessing and backfill on a standalone cluster: 1 worker x 1 core against 2 workers x 1 core (issue 17).

Both clusters are started here on 127.0.0.1 (``ntm services up --spark-workers N``'s
:class:`~ntm_spark.tools.services.SparkCluster`), in one run, one after the other. Every job is
submitted with ``spark-submit`` as the README says: the wheel in ``--py-files``, WordNet as the
``ntm data archive`` archive. The corpus is 20 Newsgroups replicated ``--scale`` times as Parquet
(``bench_preprocess.write_replicated``); the backfill scores it with a randomly initialised NTM over
the vocabulary the preprocessing wrote (scoring time does not depend on trained weights).

Where the time goes comes from Spark's event log of each application: the submit-to-app
start-up (driver JVM, Python, SparkContext), the wait for the first executor, the job span,
and within it the executors' task time (run, deserialize, GC) against the cores x span available.

Usage:
    PYTHONPATH=. .venv/bin/python bench/bench_cluster.py --scale 16 [--workdir /tmp/bench_cluster] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))


def build_dist(out: Path) -> dict:
    """The wheel and the WordNet archive, as a user builds them for spark-submit."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("ntm_spark-*.whl"):
        old.unlink()
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(ROOT)], check=True)
    archive = out / "nltk_data.tar.gz"
    subprocess.run([sys.executable, "-m", "jobs.cli", "data", "archive", "--out", str(archive)], check=True, cwd=ROOT)
    return {"wheel": next(out.glob("ntm_spark-*.whl")), "archive": archive}


def submit(master: str, dist: dict, job: str, args: list[str], event_dir: Path, home: Path) -> float:
    """Run ``spark-submit jobs/<job>.py`` on ``master``; return its wall time in seconds."""
    from ntm_spark.core.nltk_data import find_wordnet
    from ntm_spark.core.paths import conf_dir, jars_dir
    from ntm_spark.tools.services import spark_home

    event_dir.mkdir(parents=True, exist_ok=True)
    home.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(spark_home() / "bin" / "spark-submit"), "--master", master,
        "--py-files", str(dist["wheel"]), "--archives", f"{dist['archive']}#nltk_data",
        "--conf", "spark.executorEnv.NLTK_DATA=./nltk_data", "--conf", "spark.ui.enabled=false",
        "--conf", "spark.eventLog.enabled=true", "--conf", f"spark.eventLog.dir={event_dir.as_uri()}",
        "--conf", "spark.eventLog.compress=false", "--conf", "spark.eventLog.rolling.enabled=false",
        str(ROOT / "jobs" / f"{job}.py"), *args,
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(
        PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable, SPARK_LOCAL_IP="127.0.0.1",
        NTM_HOME=str(home), NTM_CONF_DIR=str(conf_dir()), NTM_JARS_DIR=str(jars_dir()), NLTK_DATA=str(find_wordnet()),
    )  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=home)
    wall = time.perf_counter() - start
    if proc.returncode not in (0,):
        print(proc.stdout[-2000:], proc.stderr[-6000:], file=sys.stderr)
        raise SystemExit(f"spark-submit {job} failed with exit code {proc.returncode}")
    return wall


def read_event_log(event_dir: Path) -> dict:
    """Split an application's time from its event log: start-up, first executor, job span, task time."""
    # One uncompressed file per application (submit() turns Spark 4's rolling, compressed default off).
    files = [p for p in event_dir.rglob("*") if p.is_file() and not p.name.startswith((".", "appstatus"))]
    app_start = app_end = None
    executors, jobs_start, jobs_end = [], [], []
    run = deser = gc = 0
    for line in (line for f in files for line in f.read_text().splitlines() if line.strip()):
        event = json.loads(line)
        kind = event["Event"]
        if kind == "SparkListenerApplicationStart":
            app_start = event["Timestamp"]
        elif kind == "SparkListenerApplicationEnd":
            app_end = event["Timestamp"]
        elif kind == "SparkListenerExecutorAdded":
            executors.append(event["Timestamp"])
        elif kind == "SparkListenerJobStart":
            jobs_start.append(event["Submission Time"])
        elif kind == "SparkListenerJobEnd":
            jobs_end.append(event["Completion Time"])
        elif kind == "SparkListenerTaskEnd":
            metrics = event.get("Task Metrics") or {}
            run += metrics.get("Executor Run Time", 0)
            deser += metrics.get("Executor Deserialize Time", 0)
            gc += metrics.get("JVM GC Time", 0)
    return {
        "app_s": (app_end - app_start) / 1000,
        "first_executor_s": (min(executors) - app_start) / 1000 if executors else float("nan"),
        "jobs_span_s": (max(jobs_end) - min(jobs_start)) / 1000,
        "task_run_s": run / 1000,
        "task_deserialize_s": deser / 1000,
        "task_gc_s": gc / 1000,
    }


def make_model(vocab_file: Path, path: Path) -> Path:
    """A randomly initialised NTM over the preprocessing's vocabulary (real ``save_model_folder``)."""
    import torch

    from lightning_module.model import NTMModel
    from lightning_module.model_folder import save_model_folder
    from ntm_spark.core.vocab import Vocabulary

    words = list(Vocabulary.from_file(vocab_file))
    torch.manual_seed(0)
    return save_model_folder(path, NTMModel(vocab_size=len(words), num_topics=20), words)


def main(argv=None) -> int:
    """Run the benchmark and print the table (and ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=16, help="20 Newsgroups replicated this many times")
    parser.add_argument("--workdir", default="/tmp/bench_cluster")
    parser.add_argument("--workers", default="1,2", help="cluster sizes to compare, 1 core each")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    from bench_preprocess import read_archive, write_replicated

    from ntm_spark.core.config import load_config
    from ntm_spark.spark.corpus import locate_20newsgroups
    from ntm_spark.tools.services import SparkCluster, free_port

    work = Path(args.workdir)
    subprocess.run(["rm", "-rf", str(work / "runs")], check=True)
    data = work / f"rep{args.scale}"
    if not data.exists():
        write_replicated(read_archive(locate_20newsgroups(download=False)), args.scale, data)
    n_docs = 18846 * args.scale
    dist = build_dist(work / "dist")
    results = []
    model = None
    for workers in [int(w) for w in args.workers.split(",")]:
        overrides = [f"spark_workers={workers}", f"spark_master_port={free_port()}", f"spark_master_webui_port={free_port()}"]
        cluster = SparkCluster(load_config("services", overrides=overrides), workdir=work / "runs" / f"cluster{workers}")
        cluster.up()
        try:
            runs = work / "runs" / f"w{workers}"
            out = runs / "preprocessed"
            pre_args = ["--input", str(data), "--format", "parquet", "--output", str(out)]
            wall = submit(cluster.master_url, dist, "preprocess", pre_args, runs / "events_pre", runs / "home")
            results.append({"job": "preprocess", "workers": workers, "wall_s": wall, **read_event_log(runs / "events_pre")})
            model = model or make_model(out / "vocab.txt", work / "runs" / "model")
            back_args = ["--input", str(data), "--input-format", "parquet", "--output", str(runs / "backfill"),
                         "--model", str(model), "--set", "num_partitions=4"]  # fmt: skip
            wall = submit(cluster.master_url, dist, "backfill", back_args, runs / "events_back", runs / "home")
            results.append({"job": "backfill", "workers": workers, "wall_s": wall, **read_event_log(runs / "events_back")})
        finally:
            cluster.down()

    print(f"{n_docs:,} documents (20 Newsgroups x {args.scale})")
    print("| job | workers x 1 core | wall (s) | docs/s | submit→app (s) | app→1st executor (s) | job span (s) | task run (s) | busy share of cores x span | deserialize + GC (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        busy = r["task_run_s"] / (r["workers"] * r["jobs_span_s"])
        print(
            f"| {r['job']} | {r['workers']} | {r['wall_s']:.1f} | {n_docs / r['wall_s']:,.0f} | {r['wall_s'] - r['app_s']:.1f} | "
            f"{r['first_executor_s']:.1f} | {r['jobs_span_s']:.1f} | {r['task_run_s']:.1f} | {busy:.0%} | "
            f"{r['task_deserialize_s'] + r['task_gc_s']:.1f} |"
        )
    for job in ("preprocess", "backfill"):
        by = {r["workers"]: r for r in results if r["job"] == job}
        if 1 in by and 2 in by:
            print(
                f"{job}: 2 workers / 1 worker wall = {by[2]['wall_s'] / by[1]['wall_s']:.2f}x "
                f"(speed-up {by[1]['wall_s'] / by[2]['wall_s']:.2f}x); job span speed-up {by[1]['jobs_span_s'] / by[2]['jobs_span_s']:.2f}x"
            )
    if args.json:
        Path(args.json).write_text(json.dumps({"docs": n_docs, "scale": args.scale, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
