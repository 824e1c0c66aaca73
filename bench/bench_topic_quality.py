"""Topic quality you can trust (issue 18): NPMI, diversity and NMI of the NTM presets and the LDA peers, 3 seeds.

Protocol (the issue's): the 20 Newsgroups by-date split as ``ntm preprocess`` writes it by
default (train+validation from the train folder, test from the test folder, vocabulary fitted
on the training split, text rules ``v2``), K = 20 and 50, seeds 42, 1 and 2. In one run, on
the same Parquet and vocabulary:

* the NTM, ``train_model`` with each preset (1 torch thread; early stopping as configured);
* Spark MLlib's LDA with the EM optimizer and with the online optimizer, on the training split.

Each model is scored by the project's one set of definitions (:mod:`ntm_spark.core.topic_metrics`):

* ``npmi``: NPMI of the top 10 words with the kept by-date *test* documents of the full-length
  corpus as the reference (the issue's protocol; its size is printed), and ``npmi_ref`` over
  the corpus's own training default (``train+heldout``);
* ``diversity`` (top 25) and ``tu`` (top 10);
* ``nmi``: normalized mutual information between each test document's argmax topic and its
  newsgroup (scikit-learn's arithmetic-mean NMI). For the NTM the argmax of the encoder's
  ``softmax(mu)`` (what tagging returns); for LDA of ``transform``'s topic distribution.

``--short-data`` adds the short-document corpus (``bench/make_short_corpus.py``: each document
cut to its first 60 counted words), scored against the same full-length test reference.

Prints one JSON line per model and run, then a table of mean +- sd over the seeds.

Usage:
    python bench/bench_topic_quality.py --data .ntm/data/20newsgroups --short-data .ntm/data/20newsgroups-short60 \
        --k 20 50 --seeds 42 1 2 --json quality.json
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from ntm_spark.core.topic_metrics import CoherenceReference, top_words, topic_diversity, topic_uniqueness  # noqa: E402


def read_split(data: Path, split: str) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """A split's ``indices``, ``values`` and labels."""
    t = pq.read_table(data / split, columns=["indices", "values", "label"])
    return ([np.asarray(a, dtype=np.int64) for a in t["indices"].to_pylist()],
            [np.asarray(a, dtype=np.float32) for a in t["values"].to_pylist()], t["label"].to_pylist())


def dense(indices, values, vocab_size: int) -> np.ndarray:
    x = np.zeros((len(indices), vocab_size), dtype=np.float32)  # (N, V)
    for i, (a, b) in enumerate(zip(indices, values)):
        x[i, a] = b
    return x


def score(topic_word: np.ndarray, theta_test: np.ndarray, labels: list, refs: dict) -> dict:
    from sklearn.metrics import normalized_mutual_info_score

    top = top_words(topic_word, 10)
    out = {f"npmi{'' if name == 'test' else '_' + name}": float(ref.npmi_per_topic(top).mean()) for name, ref in refs.items()}
    out.update(tu=topic_uniqueness(top), diversity=topic_diversity(topic_word, 25),
               nmi=float(normalized_mutual_info_score(labels, theta_test.argmax(axis=1))))
    return out


def run_ntm(data: Path, k: int, preset: str, seed: int, x_test: np.ndarray, overrides: Optional[dict] = None) -> dict:
    import torch

    from lightning_module.model_folder import load_model_folder
    from lightning_module.train import train_model
    from ntm_spark.core.config import TrainConfig, from_dict

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as out:
        cfg = from_dict(TrainConfig, {"data_dir": str(data), "output_dir": out, "num_topics": k, "preset": preset, "seed": seed,
                                      "num_workers": 0, "accelerator": "cpu", "devices": 1, "progress_bar": False,
                                      "checkpoint": False, "threads_per_process": 1, **(overrides or {})})
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            result = train_model(cfg)
        wall = time.perf_counter() - t0
        model, _, _ = load_model_folder(out)
    with torch.no_grad():
        theta = model.infer_topics(torch.from_numpy(x_test)).numpy()
        topic_word = model.topic_word().numpy()
    return {"topic_word": topic_word, "theta": theta, "wall_s": round(wall, 1), "epochs": result.epochs_trained,
            "kl": result.metrics.get("val_kl"), "collapsed": result.metrics.get("collapsed")}


def run_lda(spark, data: Path, k: int, seed: int, optimizer: str, max_iter: int, vocab_size: int) -> dict:
    from pyspark.ml.clustering import LDA
    from pyspark.ml.linalg import SparseVector, VectorUDT
    from pyspark.sql import functions as F

    # useArrow=False: Arrow-backed Python UDFs cannot return the vector UDT.
    to_vec = F.udf(lambda idx, val: SparseVector(vocab_size, idx, val), VectorUDT(), useArrow=False)
    train = spark.read.parquet(str(data / "train")).select(to_vec("indices", "values").alias("features")).cache()
    train.count()
    test = spark.read.parquet(str(data / "test")).select("id", to_vec("indices", "values").alias("features"))
    t0 = time.perf_counter()
    model = LDA(k=k, maxIter=max_iter, optimizer=optimizer, seed=seed, featuresCol="features").fit(train)
    wall = time.perf_counter() - t0
    if optimizer == "em":
        model = model.toLocal()
    tm = model.topicsMatrix().toArray().T  # (K, V)
    rows = model.transform(test).select("id", "topicDistribution").collect()
    order = {r["id"]: i for i, r in enumerate(rows)}
    ids = pq.read_table(data / "test", columns=["id"])["id"].to_pylist()
    theta = np.stack([rows[order[i]]["topicDistribution"].toArray() for i in ids])
    train.unpersist()
    return {"topic_word": tm / tm.sum(axis=1, keepdims=True), "theta": theta, "wall_s": round(wall, 1), "epochs": max_iter}


def summarize(rows: list[dict]) -> str:
    keys = sorted({(r["corpus"], r["k"], r["model"]) for r in rows}, key=lambda t: (t[0], t[1], t[2]))
    metrics = ("npmi", "npmi_ref", "diversity", "tu", "nmi", "wall_s")
    lines = ["| corpus | K | model | seeds | NPMI (test ref) | NPMI (train+heldout) | diversity | TU | NMI | wall s |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for corpus, k, model in keys:
        sel = [r for r in rows if (r["corpus"], r["k"], r["model"]) == (corpus, k, model)]
        cells = []
        for m in metrics:
            vals = [r[m] for r in sel if r.get(m) is not None]
            if not vals:
                cells.append("")
                continue
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            cells.append(f"{statistics.mean(vals):.3f} ± {sd:.3f}" if m != "wall_s" else f"{statistics.mean(vals):.0f}")
        lines.append(f"| {corpus} | {k} | {model} | {len(sel)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT / ".ntm/data/20newsgroups"), help="the full-length by-date dataset")
    parser.add_argument("--short-data", default=None, help="the short-document dataset (bench/make_short_corpus.py)")
    parser.add_argument("--corpora", nargs="+", default=["full", "short"], help="which of the two corpora to run")
    parser.add_argument("--k", type=int, nargs="+", default=[20, 50])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--presets", nargs="*", default=["default", "sagemaker"])
    parser.add_argument("--lda", nargs="*", default=["em", "online"], help="Spark LDA optimizers to run as peers")
    parser.add_argument("--lda-iter", type=int, default=50)
    parser.add_argument("--json", default=None)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=JSON",
                        help="a training-config override for every NTM run, e.g. --set ecr_weight=250 (value parsed as JSON, else a string)")
    args = parser.parse_args(argv)
    overrides = {}
    for item in args.overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            parser.error(f"--set {item!r}: write KEY=VALUE, e.g. --set ecr_weight=250")
        try:
            overrides[key] = json.loads(raw)
        except json.JSONDecodeError:
            overrides[key] = raw

    from lightning_module.data import read_coherence_reference

    full = Path(args.data)
    vocab_size = len((full / "vocab.txt").read_text().splitlines())
    test_ref = CoherenceReference(read_split(full, "test")[0], vocab_size, "full-length by-date test")
    corpora = {"full": full, **({"short": Path(args.short_data)} if args.short_data else {})}
    corpora = {name: path for name, path in corpora.items() if name in args.corpora}
    print(json.dumps({"reference": test_ref.describe(), "overrides": overrides, "corpora": {k: str(v) for k, v in corpora.items()}}), flush=True)
    spark = None
    if args.lda:
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        from ntm_spark.core.config import SparkConfig
        from ntm_spark.spark.session import build_spark_session

        spark = build_spark_session(
            SparkConfig(master="local[2]", kafka_connector="none", conf={"spark.ui.enabled": "false"}), app_name="bench-topic-quality"
        )
    rows: list[dict] = []
    try:
        for corpus, data in corpora.items():
            idx, val, labels = read_split(data, "test")
            x_test = dense(idx, val, vocab_size)
            refs = {"test": test_ref, "ref": read_coherence_reference(data, "train+heldout", vocab_size)}
            for k in args.k:
                for seed in args.seeds:
                    runs = [(f"ntm_{p}", lambda p=p: run_ntm(data, k, p, seed, x_test, overrides)) for p in args.presets]
                    runs += [(f"spark_lda_{o}", lambda o=o: run_lda(spark, data, k, seed, o, args.lda_iter, vocab_size)) for o in args.lda]
                    for name, fn in runs:
                        r = fn()
                        row = {"corpus": corpus, "k": k, "seed": seed, "model": name,
                               **score(r.pop("topic_word"), r.pop("theta"), labels, refs), **r}
                        rows.append(row)
                        print(json.dumps(row), flush=True)
    finally:
        if spark is not None:
            spark.stop()
    table = summarize(rows)
    print(f"\nNPMI reference: {test_ref.describe()}\n{table}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "reference": test_ref.describe(), "table": table}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
