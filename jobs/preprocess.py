r"""Preprocess a corpus into lemmatized bag-of-words Parquet splits, ``vocab.txt`` and ``manifest.json``.

Usage:
    spark-submit [--master local[2]] jobs/preprocess.py [--input PATH] [--format FORMAT] [--output DIR] [--overwrite]
        [--spark-conf KEY=VALUE ...] [--config YAML] [--set KEY=VALUE ...]

    ntm preprocess [same flags]

    # 20 Newsgroups (the shared copy, or $NTM_20NG, when --input is not given)
    ntm preprocess --output .ntm/data/20newsgroups --overwrite

    # a CSV file with "body" and "doc_id" columns, on a cluster
    spark-submit --master yarn --py-files ntm_spark.zip \
        --archives nltk_data.tar.gz#nltk_data --conf spark.executorEnv.NLTK_DATA=./nltk_data \
        jobs/preprocess.py --input hdfs:///corpora/docs.csv --format csv \
        --set text_col=body --set id_col=doc_id --output hdfs:///ntm/data/docs

Flags override ``conf/base/preprocess.yaml`` (then ``conf/local/preprocess.yaml``,
``--config``, ``--set``). Output: ``<output>/{train,validation,test}/`` Parquet
(``id``, ``label``, ``n_words``, ``indices``, ``values``), ``vocab.txt`` and
``manifest.json``. An existing output is refused unless ``--overwrite`` is given.
Exit codes: 0 done, 1 bad input or output, 2 bad flags or config.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Optional

log = logging.getLogger("jobs.preprocess")

#: Driver JVM options for a local master (issue 3's benchmark, BENCHMARKS.md): a short batch job
#: on a few cores. The JIT's optimizing compiler (C2) would take CPU from the job for code that
#: runs only seconds, so C1 alone; the parallel collector has less start-up and bookkeeping than
#: G1 for a heap this size; no hsperfdata file (``jps``/``jstat`` do not see the driver).
LOCAL_JAVA_OPTIONS = ("-XX:TieredStopAtLevel=1", "-XX:+UseParallelGC", "-XX:-UsePerfData")


def build_parser() -> argparse.ArgumentParser:
    """Return the job's flags (plus the shared ``--master``/``--spark-conf``/``--config``/``--set``)."""
    from ntm_spark.spark.io import INPUT_FORMATS
    from ntm_spark.spark.session import add_spark_args

    parser = argparse.ArgumentParser(
        prog="ntm preprocess", description="Raw corpus -> bag-of-words Parquet splits, vocab.txt and manifest.json."
    )
    parser.add_argument("--input", default=None, metavar="PATH", help="corpus file or folder (preprocess.input_path)")
    parser.add_argument("--format", default=None, choices=INPUT_FORMATS, help="input format (preprocess.input_format)")
    parser.add_argument("--output", default=None, metavar="DIR", help="output folder (preprocess.output_path)")
    parser.add_argument("--overwrite", action="store_true", default=None, help="replace an existing output folder")
    return add_spark_args(parser)


def resolve_config(args: argparse.Namespace):
    """Lay the flags over the layered preprocess config and validate the result."""
    from ntm_spark.core.config import load_config
    from ntm_spark.core.paths import resolve_state_path

    cfg = load_config("preprocess", overrides=list(args.overrides or []), config_file=args.config)
    # Flags follow the config's path rule: a leading .ntm/ is the state folder ($NTM_HOME).
    if args.input is not None:
        cfg.input_path = resolve_state_path(args.input)
    if args.format is not None:
        cfg.input_format = args.format
    if args.output is not None:
        cfg.output_path = resolve_state_path(args.output)
    if args.overwrite:
        cfg.overwrite = True
    cfg.validate()
    return cfg


def main(argv: Optional[list[str]] = None) -> int:
    """Run the preprocessing job; return its exit code."""
    from ntm_spark.core.config import ConfigError
    from ntm_spark.core.nltk_data import NltkDataError
    from ntm_spark.spark.io import InputNotFoundError, OutputExistsError
    from ntm_spark.spark.preprocess import EmptyCorpusError, resolve_clean, warm_up_python_workers
    from ntm_spark.spark.runs import run_preprocess
    from ntm_spark.spark.session import build_spark_session, is_local_master, spark_config_from_args, stop_spark_session

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        cfg = resolve_config(args)
        spark_cfg = spark_config_from_args(args)
    except ConfigError as err:
        print(f"ntm preprocess: {err}", file=sys.stderr)
        return 2

    from pyspark.sql import SparkSession


    start = time.perf_counter()
    # A session that already exists (a notebook, a test) belongs to its creator: reuse it, don't stop it.
    owned = SparkSession.getActiveSession() is None
    spark = build_spark_session(  # logs the Spark UI URL when local
        spark_cfg, app_name="ntm-preprocess", local_java_options=LOCAL_JAVA_OPTIONS
    )
    if owned and spark.conf.get("spark.sql.files.minPartitionNum", None) is None:
        # Two input partitions per core: the corpus' files differ in size, and with one partition
        # per core the largest decides when the tokenizing stage ends.
        spark.conf.set("spark.sql.files.minPartitionNum", str(2 * spark.sparkContext.defaultParallelism))
    warm_up = None
    if owned and is_local_master(spark.sparkContext.master):
        warm_up = warm_up_python_workers(spark, clean=resolve_clean(cfg), stop_words=cfg.stop_words, rules=cfg.text_rules)
    try:
        manifest = run_preprocess(spark, cfg)
    except (InputNotFoundError, OutputExistsError, EmptyCorpusError, NltkDataError, ValueError) as err:
        print(f"ntm preprocess: {err}", file=sys.stderr)
        return 1
    finally:
        if warm_up is not None:
            warm_up.join()
        if owned:
            stop_spark_session(spark)
    docs = manifest["documents"]
    log.info(
        "done in %.1f s: %s documents written to %s (%s), vocabulary %d words",
        time.perf_counter() - start,
        docs["kept"],
        cfg.output_path,
        ", ".join(f"{s} {n}" for s, n in docs["per_split"].items()),
        manifest["vocabulary"]["size"],
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
