r"""Score a whole corpus to Parquet with the streaming scorer: resumable, partition by partition.

Usage:
    spark-submit jobs/backfill.py --input PATH [--input-format 20newsgroups|text|csv|jsonl|parquet|bow] \\
        --output PATH --model models:/ntm-20newsgroups@champion [--set num_partitions=16] [--max-partitions N]
    ntm backfill [same flags]

Rerun the same command after an interruption: committed partitions are skipped
and the model version pinned by the first run is reused (``<output>/_backfill.json``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Optional

from ntm_spark.core.config import BackfillConfig, ConfigError, load_config
from ntm_spark.spark.session import add_spark_args, build_spark_session, spark_config_from_args, stop_spark_session

FLAG_KEYS = {"input": "input_path", "input_format": "input_format", "output": "output_path", "model": "model_uri"}


def build_parser() -> argparse.ArgumentParser:
    """Build the job's flags (each a shorthand for a ``backfill.*`` config key)."""
    parser = argparse.ArgumentParser(prog="ntm backfill", description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", default=None, help="corpus path (default: the 20 Newsgroups archive)")
    parser.add_argument("--input-format", default=None, choices=["20newsgroups", "text", "csv", "jsonl", "parquet", "bow"])
    parser.add_argument("--output", default=None, help="output folder (default .ntm/backfill)")
    parser.add_argument("--model", default=None, help="models:/<name>@<alias>, models:/<name>/<version> or a model folder")
    parser.add_argument("--max-partitions", type=int, default=None, help="stop after committing this many partitions")
    return add_spark_args(parser)


def backfill_config_from_args(args: argparse.Namespace) -> BackfillConfig:
    """Resolve ``conf/base/backfill.yaml`` + ``--config`` + ``--set`` + the shorthand flags."""
    overrides = list(args.overrides or [])
    for flag, key in FLAG_KEYS.items():
        value = getattr(args, flag, None)
        if value is not None:
            overrides.append(f"{key}={json.dumps(value)}")
    return load_config("backfill", overrides=overrides, config_file=args.config)


def main(argv: Optional[list[str]] = None) -> int:
    """Run ``ntm backfill``; return 0 when every partition is committed, 1 when stopped early."""
    from pyspark.sql import SparkSession

    from ntm_spark.spark.backfill import run_backfill

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        cfg = backfill_config_from_args(args)
        spark_cfg = spark_config_from_args(args)
    except ConfigError as err:
        print(f"ntm backfill: {err}", file=sys.stderr)
        return 2
    owned = SparkSession.getActiveSession() is None
    spark = build_spark_session(spark_cfg, app_name="ntm-backfill")
    try:
        report = run_backfill(spark, cfg, max_partitions=args.max_partitions)
    except (ValueError, FileNotFoundError) as err:
        print(f"ntm backfill: {err}", file=sys.stderr)
        return 2
    finally:
        if owned:
            stop_spark_session(spark)
    print(
        f"backfill {report.output_path}: model version {report.model_version}; wrote {len(report.partitions_written)} "
        f"partitions ({report.documents_written} documents, {report.docs_per_second:.0f} docs/s), skipped "
        f"{len(report.partitions_skipped)}; {'complete' if report.complete else 'incomplete: rerun to finish'}"
    )
    return 0 if report.complete else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
