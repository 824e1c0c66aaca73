"""Benchmark the preprocessing job against the seed notebook's single-process path.

(a) ``python -m jobs.preprocess`` on ``local[2]`` over the full 20 Newsgroups archive,
    Spark start-up included (a subprocess, timed from launch to exit); once with a cold
    archive cache (the archive is unpacked), then warm.
(b) The notebook's path on the same documents as a program (``bench/seed_notebook.py``, a
    subprocess timed like (a)): NLTK's ``WordNetLemmatizer`` per token (no cache), then
    scikit-learn's ``CountVectorizer`` (``max_features``/``min_df``/``max_df``), the
    ``<= threshold`` filter, an 80/10/10 split, and the splits and vocabulary written. It reads
    the job's unpacked-archive cache, so its reading is no slower than (a)'s.
    (a) warm and (b) alternate ``--repeats`` times; the ratio is of their medians.
(b core) The same path timed inside this process, from reading to the split only: imports,
    interpreter start-up and writing excluded (the (b) of the earlier runs, kept for comparison).
(c) Scaling: the corpus replicated 1x/4x/16x (ids made unique) as a Parquet input.

Wall time, documents/s and peak RSS (the Python driver, and the whole process tree,
which in local mode includes the JVM running the executors) are printed as a Markdown table.

Usage:
    .venv/bin/python bench/bench_preprocess.py [--scales 1,4,16] [--repeats 2] [--skip-seed] [--workdir /tmp/bench_pre]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    out = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text().split()
            out += [int(c) for c in text]
    except OSError:
        pass
    return out


def _tree(pid: int) -> list[int]:
    pids, stack = [], [pid]
    while stack:
        p = stack.pop()
        pids.append(p)
        stack += _children(p)
    return pids


def run_job(args: list[str], env: dict, command: tuple[str, ...] = ("-m", "jobs.preprocess")) -> dict:
    """Run the job (or another Python ``command``) in a subprocess; return wall time and peak RSS in MiB."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, *command, *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    peak = {"driver": 0, "tree": 0}
    done = threading.Event()

    def poll():
        while not done.is_set():
            peak["driver"] = max(peak["driver"], _rss_kb(proc.pid))
            peak["tree"] = max(peak["tree"], sum(_rss_kb(p) for p in _tree(proc.pid)))
            time.sleep(0.2)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    output, _ = proc.communicate()
    wall = time.perf_counter() - start
    done.set()
    thread.join()
    if proc.returncode != 0:
        print(output[-4000:], file=sys.stderr)
        raise SystemExit(f"job failed with exit code {proc.returncode}")
    return {"wall_s": wall, "driver_mib": peak["driver"] / 1024, "tree_mib": peak["tree"] / 1024}


def read_archive(archive: Path) -> list[tuple[str, str, str]]:
    from ntm_spark.spark.io import _iter_archive_documents

    docs = []
    for doc_id, label, _split, raw in _iter_archive_documents(str(archive)):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
        docs.append((doc_id, label, text))
    return docs


def run_seed_path(archive: Path) -> dict:
    """(b core): per-token WordNet lemmas, sklearn CountVectorizer, threshold, 80/10/10 split, in this process."""
    import re

    import numpy as np
    from sklearn.feature_extraction.text import CountVectorizer

    start = time.perf_counter()
    docs = read_archive(archive)
    from ntm_spark.core.nltk_data import load_wordnet_lemmatizer
    from ntm_spark.core.text import ENGLISH_STOP_WORDS, strip_newsgroup_noise

    wnl = load_wordnet_lemmatizer(download=False)
    token_re = re.compile(r"(?u)\b\w\w+\b")

    class LemmaTokenizer:
        def __call__(self, doc):
            tokens = token_re.findall(strip_newsgroup_noise(doc).lower())
            return [wnl.lemmatize(t) for t in tokens if t[0].isalpha() and t not in ENGLISH_STOP_WORDS]

    vectorizer = CountVectorizer(tokenizer=LemmaTokenizer(), lowercase=False, token_pattern=None,
                                 stop_words=list(ENGLISH_STOP_WORDS), max_features=2000, max_df=0.95, min_df=2)  # fmt: skip
    vectors = vectorizer.fit_transform([d[2] for d in docs]).astype(np.float32)
    vectors = vectors[np.asarray(vectors.sum(axis=1) > 25).ravel()]
    order = np.random.default_rng(42).permutation(vectors.shape[0])
    n_train, n_val = int(0.8 * len(order)), int(0.1 * len(order))
    splits = [vectors[order[:n_train]], vectors[order[n_train : n_train + n_val]], vectors[order[n_train + n_val :]]]
    wall = time.perf_counter() - start
    return {"wall_s": wall, "docs": len(docs), "kept": sum(s.shape[0] for s in splits)}


def write_replicated(docs: list[tuple[str, str, str]], k: int, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.mkdir(parents=True, exist_ok=True)
    for r in range(k):
        table = pa.table({
            "id": [f"{d[0]}#{r}" for d in docs],
            "text": [d[2] for d in docs],
            "label": [d[1] for d in docs],
        })  # fmt: skip
        pq.write_table(table, path / f"part-{r:03d}.parquet", row_group_size=2048)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/bench_preprocess")
    parser.add_argument("--scales", default="1,4,16")
    parser.add_argument("--repeats", type=int, default=2, help="alternating (a) warm / (b) runs")
    parser.add_argument("--skip-seed", action="store_true")
    args = parser.parse_args(argv)

    from ntm_spark.spark.corpus import locate_20newsgroups

    archive = locate_20newsgroups(download=False)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable}
    common = ["--master", "local[2]", "--spark-conf", "spark.ui.showConsoleProgress=false", "--overwrite"]
    rows = []

    cache = work / "cache"
    subprocess.run(["rm", "-rf", str(cache)], check=True)
    job_args = ["--input", str(archive), "--output", str(work / "out_20ng"), "--set", f"cache_path={cache}", *common]
    rows.append(("(a) job, 20NG archive, cold cache", 18846, run_job(job_args, env)))
    cached = next(cache.glob("20newsgroups-*.parquet"))
    seed_cmd = (str(ROOT / "bench" / "seed_notebook.py"),)
    seed_args = ["--cache", str(cached), "--output", str(work / "out_seed")]
    warm, seed = [], []
    for r in range(max(1, args.repeats)):
        warm.append(run_job(job_args, env))
        rows.append((f"(a) job, 20NG archive, warm cache, run {r + 1}", 18846, warm[-1]))
        if not args.skip_seed:
            subprocess.run(["rm", "-rf", str(work / "out_seed")], check=True)
            seed.append(run_job(seed_args, env, command=seed_cmd))
            rows.append((f"(b) notebook path as a program, run {r + 1}", 18846, seed[-1]))
    if not args.skip_seed:
        core = run_seed_path(archive)
        nan = {"driver_mib": float("nan"), "tree_mib": float("nan")}
        rows.append(("(b core) notebook path in-process, no imports or writing", core["docs"], {"wall_s": core["wall_s"], **nan}))

    docs = read_archive(archive)
    for k in [int(s) for s in args.scales.split(",") if s]:
        data = work / f"rep{k}"
        if not data.exists():
            write_replicated(docs, k, data)
        res = run_job(["--input", str(data), "--format", "parquet", "--output", str(work / f"out_rep{k}"), *common], env)
        rows.append((f"(c) job, {k}x replicated Parquet", 18846 * k, res))

    print("| run | documents | wall (s) | docs/s | peak driver RSS (MiB) | peak tree RSS (MiB) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, n, res in rows:
        print(f"| {name} | {n:,} | {res['wall_s']:.1f} | {n / res['wall_s']:,.0f} | {res['driver_mib']:.0f} | {res['tree_mib']:.0f} |")
    if seed:
        a_med = statistics.median(r["wall_s"] for r in warm)
        b_med = statistics.median(r["wall_s"] for r in seed)
        print(f"\n(a) warm / (b), medians of {len(seed)} alternating runs: {a_med:.1f} s / {b_med:.1f} s = {a_med / b_med:.2f}x")
        print(f"(a) warm / (b core): {a_med:.1f} s / {core['wall_s']:.1f} s = {a_med / core['wall_s']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
