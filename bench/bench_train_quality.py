"""Topic quality on 20 Newsgroups: the NTM vs Spark MLlib LDA (online) on the same Parquet and vocabulary.

For each K, trains the NTM (``train_model``, each preset asked for) and, in the same run,
``pyspark.ml.clustering.LDA(optimizer="online")`` on the training split; scores both
topic-word matrices with the same numpy functions (:mod:`ntm_spark.core.topic_metrics`):
NPMI of the top 10 words with the *test* documents as reference, TU (top 10),
diversity (top 25), plus wall time.

Usage:
    python bench/bench_train_quality.py --data .ntm/data/20newsgroups --k 20 50 --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from ntm_spark.core.topic_metrics import npmi_per_topic, top_words, topic_diversity, topic_uniqueness  # noqa: E402


def reference_docs(data: Path, split: str = "test") -> list[np.ndarray]:
    """The split's documents as arrays of vocabulary indices."""
    return [np.asarray(d) for d in pq.read_table(data / split, columns=["indices"])["indices"].to_pylist()]


def score(topic_word: np.ndarray, ref: list[np.ndarray]) -> dict:
    top10 = top_words(topic_word, 10)
    return {
        "npmi": float(npmi_per_topic(top10, ref).mean()),
        "tu": topic_uniqueness(top10),
        "diversity": topic_diversity(topic_word, 25),
    }


def run_ntm(data: Path, k: int, preset: str, out: Path, epochs: int, overrides: dict) -> dict:
    from lightning_module.train import train_model
    from ntm_spark.core.config import TrainConfig, from_dict

    cfg = from_dict(
        TrainConfig,
        {"data_dir": str(data), "output_dir": str(out), "num_topics": k, "preset": preset, "epochs": epochs,
         "num_workers": 0, "accelerator": "cpu", "devices": 1, "progress_bar": False, **overrides},
    )
    t0 = time.perf_counter()
    result = train_model(cfg)
    wall = time.perf_counter() - t0
    return {"topic_word": np.load(out / "topic_word.npy"), "wall_s": wall, "epochs": result.epochs_trained,
            "val_perplexity": result.metrics.get("val_perplexity")}


def run_lda(spark, data: Path, k: int, vocab_size: int, max_iter: int, seed: int) -> dict:
    from pyspark.ml.clustering import LDA
    from pyspark.ml.linalg import SparseVector, VectorUDT
    from pyspark.sql import functions as F

    # useArrow=False: Arrow-backed Python UDFs cannot return the vector UDT.
    to_vec = F.udf(lambda idx, val: SparseVector(vocab_size, idx, val), VectorUDT(), useArrow=False)
    df = spark.read.parquet(str(data / "train")).select(to_vec("indices", "values").alias("features")).cache()
    df.count()
    t0 = time.perf_counter()
    model = LDA(k=k, maxIter=max_iter, optimizer="online", seed=seed, featuresCol="features").fit(df)
    wall = time.perf_counter() - t0
    tm = model.topicsMatrix().toArray().T  # (K, V)
    df.unpersist()
    return {"topic_word": tm / tm.sum(axis=1, keepdims=True), "wall_s": wall, "epochs": max_iter}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT / ".ntm/data/20newsgroups"))
    parser.add_argument("--k", type=int, nargs="+", default=[20, 50])
    parser.add_argument("--presets", nargs="*", default=["default", "sagemaker"])
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--lda-iter", type=int, default=100)
    parser.add_argument("--no-lda", action="store_true")
    parser.add_argument("--fixed-epochs", type=int, default=0, help="also train the default preset for exactly N epochs (no early stop)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra TrainConfig key=value for the NTM")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    import yaml

    data = Path(args.data)
    vocab_size = len((data / "vocab.txt").read_text().splitlines())
    ref = reference_docs(data)
    overrides = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.overrides)}
    spark = None
    if not args.no_lda:
        import os

        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # workers need this venv's numpy
        from ntm_spark.core.config import SparkConfig
        from ntm_spark.spark.session import build_spark_session

        spark = build_spark_session(SparkConfig(master="local[2]", kafka_connector="none", conf={"spark.ui.enabled": "false"}), app_name="bench-lda")
    rows = []
    try:
        for k in args.k:
            def report(name, r):
                row = {"k": k, "model": name, **score(r.pop("topic_word"), ref), **r}
                rows.append(row)
                print(json.dumps(row), flush=True)

            with tempfile.TemporaryDirectory() as tmp:
                for preset in args.presets:
                    report(f"ntm_{preset}", run_ntm(data, k, preset, Path(tmp) / preset, args.epochs, overrides))
                if args.fixed_epochs:
                    fixed = {**overrides, "num_patience_epochs": args.fixed_epochs}
                    report(f"ntm_default_{args.fixed_epochs}ep", run_ntm(data, k, "default", Path(tmp) / "fixed", args.fixed_epochs, fixed))
            if spark is not None:
                report("spark_lda_online", run_lda(spark, data, k, vocab_size, args.lda_iter, 42))
    finally:
        if spark is not None:
            spark.stop()
    print("\n| K | model | NPMI (test ref) | TU | diversity | wall s | epochs/iters |\n|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['k']} | {r['model']} | {r['npmi']:.3f} | {r['tu']:.3f} | {r['diversity']:.3f} | {r['wall_s']:.1f} | {r['epochs']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
