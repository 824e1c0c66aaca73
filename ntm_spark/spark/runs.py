"""Whole runs of a Spark job's library: read, transform, write (the I/O stays here and in io.py, not in the transforms).

``jobs/preprocess.py`` parses flags and builds the session, then calls :func:`run_preprocess`;
notebooks and tests call it with their own session.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ntm_spark.spark.io import check_output_path, write_preprocess_output
from ntm_spark.spark.preprocess import preprocess_corpus

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession

    from ntm_spark.core.config import PreprocessConfig


def run_preprocess(spark: "SparkSession", cfg: "PreprocessConfig") -> dict:
    """Preprocess with an existing session and write the output (checked first, published atomically); return the manifest."""
    check_output_path(spark, cfg.output_path, cfg.overwrite)  # fail before any work
    result = preprocess_corpus(spark, cfg)
    try:
        return write_preprocess_output(
            spark,
            result.bow,
            result.partitions,
            result.vocabulary,
            cfg.output_path,
            overwrite=cfg.overwrite,
            row_group_size=cfg.row_group_size,
            finalize_manifest=result.finalize_manifest,
        )
    finally:
        result.unpersist()
