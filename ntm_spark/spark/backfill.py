"""Score a whole corpus to Parquet with the streaming scorer, resumably.

The corpus (raw text in any format the preprocessing readers accept, or an
already preprocessed bag-of-words Parquet) is split into ``num_partitions``
buckets by ``pmod(xxhash64(id), N)``. Each bucket is scored and written to a
staging folder, then renamed to ``<output>/bucket=<b>/`` (with Spark's
``_SUCCESS`` marker) -- so readers never see a partial bucket, and a rerun skips
buckets that are already committed. A run that was killed (``kill -9``) leaves its
``.bucket=<b>.staging-*`` folder behind; the next run deletes such folders first, so
only one backfill may write an output folder at a time. The model version is pinned in
``<output>/_backfill.json`` on the first run, so a resumed run scores with the
same version even if ``champion`` moved in between.

Output columns: ``id``, ``topic_weights`` (array<float>), ``top_topic`` (int),
``model_name``, ``model_version``, ``error_code`` (null when scored), and the
partition column ``bucket``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator, Optional

from ntm_spark.core.schema import (
    ERROR_CODE_COL,
    ID_COL,
    INDICES_COL,
    MODEL_NAME_COL,
    MODEL_VERSION_COL,
    TEXT_COL,
    TOP_TOPIC_COL,
    TOPIC_WEIGHTS_COL,
    VALUES_COL,
)
from ntm_spark.serving.model_loader import ModelSpec, get_loader, parse_model_ref, resolve_version

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

    from ntm_spark.core.config import BackfillConfig

log = logging.getLogger(__name__)

BUCKET_COL = "bucket"
STATE_FILE = "_backfill.json"


def score_documents(df: "DataFrame", model: ModelSpec, input_col: str = TEXT_COL) -> "DataFrame":
    """Score documents with the shared scorer: raw text (``input_col``) or ``indices``/``values`` rows.

    Args:
        df: Documents with ``id`` and either ``input_col`` or ``indices`` + ``values``.
        model: The model to load in each Python worker (pin a version for reproducible output).
        input_col: The raw-text column; ignored when ``df`` has ``indices`` and ``values``.

    Returns:
        ``id``, ``topic_weights``, ``top_topic``, ``model_name``, ``model_version``, ``error_code``.
    """
    from pyspark.sql import types as T

    bow = INDICES_COL in df.columns and VALUES_COL in df.columns
    if not bow and input_col not in df.columns:
        raise ValueError(
            f"input_col={input_col!r} is not a column of {df.columns!r}: pass raw text or indices/values rows."
        )
    cols = [ID_COL, INDICES_COL, VALUES_COL] if bow else [ID_COL, input_col]
    schema = T.StructType(
        [
            T.StructField(ID_COL, T.StringType()),
            T.StructField(TOPIC_WEIGHTS_COL, T.ArrayType(T.FloatType())),
            T.StructField(TOP_TOPIC_COL, T.IntegerType()),
            T.StructField(MODEL_NAME_COL, T.StringType()),
            T.StructField(MODEL_VERSION_COL, T.StringType()),
            T.StructField(ERROR_CODE_COL, T.StringType()),
        ]
    )

    def score_partition(batches: Iterator["pd.DataFrame"]) -> Iterator["pd.DataFrame"]:
        import pandas as pd

        loader = get_loader(model)
        for pdf in batches:
            loaded = loader.get()
            if bow:
                result = loaded.scorer.score_sparse(
                    [list(x) for x in pdf[INDICES_COL]], [list(x) for x in pdf[VALUES_COL]]
                )
            else:
                result = loaded.scorer.score_texts(pdf[input_col].tolist())
            ok = result.ok
            yield pd.DataFrame(
                {
                    ID_COL: pdf[ID_COL].astype(str).tolist(),
                    TOPIC_WEIGHTS_COL: [w if good else None for w, good in zip(result.weights, ok)],
                    TOP_TOPIC_COL: [int(w.argmax()) if good else None for w, good in zip(result.weights, ok)],
                    MODEL_NAME_COL: loaded.name,
                    MODEL_VERSION_COL: loaded.version,
                    ERROR_CODE_COL: [e.code if e is not None else None for e in result.errors],
                }
            )

    return df.select(*cols).mapInPandas(score_partition, schema)


def assign_buckets(df: "DataFrame", num_partitions: int, id_col: str = ID_COL) -> "DataFrame":
    """Add ``bucket = pmod(xxhash64(id), num_partitions)``: stable across runs and machines."""
    from pyspark.sql import functions as F

    if int(num_partitions) < 1:
        raise ValueError(f"num_partitions={num_partitions!r} must be >= 1.")
    return df.withColumn(BUCKET_COL, F.pmod(F.xxhash64(F.col(id_col)), F.lit(int(num_partitions))).cast("int"))


@dataclass
class BackfillReport:
    """What one backfill run did."""

    output_path: str
    model_version: str
    partitions_total: int
    partitions_written: list = field(default_factory=list)
    partitions_skipped: list = field(default_factory=list)
    documents_written: int = 0
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        """Whether every partition is committed."""
        return len(self.partitions_written) + len(self.partitions_skipped) == self.partitions_total

    @property
    def docs_per_second(self) -> float:
        """Scored documents per second of this run."""
        return self.documents_written / self.seconds if self.seconds else 0.0


def _read_small_file(spark: "SparkSession", path: str) -> str:
    # Spark's file sources skip names starting with "_", so read through Hadoop's FileSystem.
    from ntm_spark.spark.io import _hadoop_path

    fs, hpath = _hadoop_path(spark, path)
    stream = fs.open(hpath)
    try:
        return spark.sparkContext._jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")
    finally:
        stream.close()


def _pin_model(spark: "SparkSession", cfg: "BackfillConfig", output: str) -> tuple[str, str]:
    """Return ``(model_uri pinned to one version, version)``, recorded in ``_backfill.json`` on first use."""
    from ntm_spark.spark.io import path_exists, write_text_file

    state_path = f"{output}/{STATE_FILE}"
    if path_exists(spark, state_path):
        state = json.loads(_read_small_file(spark, state_path))
        if state.get("num_partitions") != cfg.num_partitions:
            raise ValueError(
                f"num_partitions={cfg.num_partitions!r} differs from the {state.get('num_partitions')!r} the backfill at "
                f"{output!r} started with: rerun with --set num_partitions={state.get('num_partitions')}, or use a new output_path."
            )
        return state["model_uri_pinned"], state["model_version"]
    ref = parse_model_ref(cfg.model_uri)
    version = resolve_version(ref, cfg.tracking_uri)
    pinned = f"models:/{ref.name}/{version}" if ref.kind == "alias" else ref.uri
    state = {"model_uri": cfg.model_uri, "model_uri_pinned": pinned, "model_version": version, "num_partitions": cfg.num_partitions}
    write_text_file(spark, state_path, json.dumps(state, indent=2))
    return pinned, version


def run_backfill(
    spark: "SparkSession",
    cfg: "BackfillConfig",
    max_partitions: Optional[int] = None,
    progress: Optional[Callable[[str], None]] = None,
) -> BackfillReport:
    """Score ``cfg.input_path`` into ``cfg.output_path``, skipping committed partitions.

    Args:
        spark: The active session.
        cfg: The backfill config.
        max_partitions: Stop after writing this many partitions (an intentional interruption).
        progress: Called with one line per committed partition (default: the logger).

    Returns:
        A :class:`BackfillReport`.
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from ntm_spark.spark.io import (
        delete_path,
        delete_stale_staging,
        path_exists,
        qualify_path,
        read_corpus,
        rename_path,
        staging_path,
    )

    progress = progress or log.info
    started = time.monotonic()
    output = qualify_path(spark, cfg.output_path.rstrip("/"))
    if cfg.input_format == "bow":
        if not cfg.input_path or not path_exists(spark, cfg.input_path):
            raise FileNotFoundError(f"input_path={cfg.input_path!r} does not exist: point at a preprocessed Parquet folder.")
        docs = spark.read.parquet(cfg.input_path).select(ID_COL, INDICES_COL, VALUES_COL)
    else:
        path = cfg.input_path
        if path is None and cfg.input_format == "20newsgroups":
            from ntm_spark.spark.corpus import locate_20newsgroups

            path = str(locate_20newsgroups(download=False))
        docs = read_corpus(spark, path, cfg.input_format, text_col=cfg.text_col, id_col=cfg.id_col).select(ID_COL, TEXT_COL)
    pinned, version = _pin_model(spark, cfg, output)
    # Staging folders of a killed run: never renamed into place, so never read; only disk to reclaim.
    stale = delete_stale_staging(spark, output, rf"{BUCKET_COL}=\d+")
    if stale:
        progress(f"backfill {output}: removed {len(stale)} staging folder(s) left by an interrupted run")
    spec = ModelSpec(
        pinned, refresh_interval_s=1e9, tracking_uri=cfg.tracking_uri, max_text_bytes=cfg.max_text_bytes, threads=cfg.scoring_threads
    )
    report = BackfillReport(output, version, cfg.num_partitions)
    done = [b for b in range(cfg.num_partitions) if path_exists(spark, f"{output}/{BUCKET_COL}={b}/_SUCCESS")]
    report.partitions_skipped = done
    todo = [b for b in range(cfg.num_partitions) if b not in done]
    if done:
        progress(f"backfill {output}: {len(done)}/{cfg.num_partitions} partitions already committed, skipped")
    if not todo:
        report.seconds = time.monotonic() - started
        return report
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(cfg.arrow_batch_size))
    bucketed = assign_buckets(docs, cfg.num_partitions).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        for b in todo:
            if max_partitions is not None and len(report.partitions_written) >= max_partitions:
                break
            target = f"{output}/{BUCKET_COL}={b}"
            if path_exists(spark, target):  # a partition without _SUCCESS: never committed
                delete_path(spark, target)
            t0 = time.monotonic()
            staged = staging_path(target)
            score_documents(bucketed.filter(F.col(BUCKET_COL) == b), spec).write.parquet(staged)
            rename_path(spark, staged, target)
            n = spark.read.parquet(target).count()
            report.partitions_written.append(b)
            report.documents_written += n
            dt = time.monotonic() - t0
            committed = len(report.partitions_written) + len(done)
            progress(
                f"backfill {output}: partition {b} committed ({committed}/{cfg.num_partitions}): "
                f"{n} documents in {dt:.1f}s ({n / dt if dt else 0:.0f} docs/s)"
            )
    finally:
        bucketed.unpersist()
    report.seconds = time.monotonic() - started
    return report
