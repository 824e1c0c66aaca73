"""All reading and writing of the preprocessing stage: corpora in, bag-of-words Parquet out.

Readers return one DataFrame shape, whatever the source (:data:`DOCUMENT_COLUMNS`):
``id`` (string), ``label`` (string, nullable), ``source_split`` (the corpus's own
split, e.g. 20 Newsgroups' ``train``/``test``, else null), ``text`` (string) and
``decode_fallback`` (bool: the bytes were not valid UTF-8).

Sources (``input_format``):

* ``20newsgroups``: the by-date archive (``.tar.xz``, ``.tar.gz``, ``.tgz``,
  ``.tar.bz2``, ``.tar``) or its unpacked folder ``<root>/20news-bydate-<split>/<group>/<article>``.
  ``label`` is the group and ``id`` is ``<split>/<group>/<article>`` (article
  numbers repeat across groups). An archive is one compressed stream, which
  cannot be read in parallel, so the driver streams it once, in bounded batches,
  into a Parquet cache keyed by the archive's sha256 (``cache_path``, default
  ``<state>/cache``); every later run reads that cache in parallel. On a cluster,
  set ``cache_path`` to shared storage (``hdfs://...``), or pass the unpacked folder.
* ``text``: a folder of text files, read recursively; ``id`` is the path relative to the folder.
* ``csv`` (with a header row), ``jsonl`` (one JSON object per line) and ``parquet``:
  ``text_col``, ``id_col`` and an optional ``label_col`` (a ``label`` column is used when present).

Bytes that are not UTF-8 follow the project's one rule, in the JVM (:func:`decode_bytes_expr`;
:func:`ntm_spark.core.text.decode_document_bytes` is its pure-Python twin): a value is decoded as
UTF-8 when it is valid UTF-8, else as a whole as Latin-1 (which maps every byte to a
character, so no document and no id is lost), and flagged in ``decode_fallback``. The value
is the unit the format's records come in:

* ``20newsgroups`` and ``text``: each file, read as bytes with Spark's ``binaryFile`` source
  (which, like every Spark file source, skips zero-byte files: they are not counted);
* ``jsonl``: each line, read as raw bytes (Spark's ``text`` source), decoded, then parsed
  with ``from_json`` (the schema is inferred from the decoded lines), so a row with a
  Latin-1 byte keeps its id and its other fields;
* ``csv``: each file (a quoted field may span lines, so records cannot be split before
  parsing): a file that is not valid UTF-8 is parsed by Spark's CSV reader as ISO-8859-1;
* ``parquet`` holds strings already: nothing is decoded or flagged.

Writers go through Hadoop's ``FileSystem``, so ``hdfs://`` and ``s3a://`` outputs
work like local folders. Output is staged beside the target and renamed into
place when complete, so a failed run never leaves a half-written dataset.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import re
import tarfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional

from ntm_spark.core.schema import (
    ID_COL,
    LABEL_COL,
    MANIFEST_FILE,
    TEXT_COL,
    VOCAB_FILE,
    bow_arrow_schema,
)

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession

    from ntm_spark.core.vocab import Vocabulary

log = logging.getLogger(__name__)

#: The corpus's own split (20 Newsgroups ``train``/``test``), null for other sources.
SOURCE_SPLIT_COL = "source_split"
#: True when the document's bytes were not valid UTF-8 (decoded as Latin-1 or with replacements).
DECODE_FALLBACK_COL = "decode_fallback"
#: The columns every reader returns, in order.
DOCUMENT_COLUMNS = (ID_COL, LABEL_COL, SOURCE_SPLIT_COL, TEXT_COL, DECODE_FALLBACK_COL)

INPUT_FORMATS = ("20newsgroups", "text", "csv", "jsonl", "parquet")
#: Formats whose ids are file paths (``split/group/article``, a path relative to the folder), so
#: unique by construction: preprocessing checks the others for repeated ids.
UNIQUE_ID_FORMATS = ("20newsgroups", "text")
ARCHIVE_SUFFIXES = (".tar.xz", ".txz", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar")

#: Documents per batch when the driver streams an archive into the cache (bounds driver memory).
ARCHIVE_BATCH_DOCS = 2000


class InputNotFoundError(FileNotFoundError):
    """The input path does not exist."""


def bow_spark_schema():
    """Return the bag-of-words schema as a Spark ``StructType``, derived from :func:`~ntm_spark.core.schema.bow_arrow_schema`.

    One declaration (the core's Arrow schema) serves the Spark writers, the Arrow loader and
    Petastorm; arrays are declared without null elements, as every writer produces them.
    """
    from pyspark.sql import types as T
    from pyspark.sql.pandas.types import from_arrow_type

    fields = []
    for f in bow_arrow_schema():
        dtype = from_arrow_type(f.type)
        if isinstance(dtype, T.ArrayType):
            dtype = T.ArrayType(dtype.elementType, False)
        fields.append(T.StructField(f.name, dtype, f.nullable))
    return T.StructType(fields)


class OutputExistsError(FileExistsError):
    """The output folder exists and ``--overwrite`` was not given."""


# ----------------------------------------------------------------------------- file system


def _hadoop_path(spark: "SparkSession", path: str):
    jvm = spark.sparkContext._jvm
    hpath = jvm.org.apache.hadoop.fs.Path(str(path))
    fs = hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    return fs, hpath


def qualify_path(spark: "SparkSession", path: str) -> str:
    """Return ``path`` fully qualified (``file:/tmp/x``, ``hdfs://nn/x``), as Spark reports file paths."""
    fs, hpath = _hadoop_path(spark, path)
    return fs.makeQualified(hpath).toString()


def path_exists(spark: "SparkSession", path: str) -> bool:
    """Return whether ``path`` exists on its file system."""
    fs, hpath = _hadoop_path(spark, path)
    return bool(fs.exists(hpath))


def is_nonempty_path(spark: "SparkSession", path: str) -> bool:
    """Return whether ``path`` is a file, or a folder holding anything."""
    fs, hpath = _hadoop_path(spark, path)
    if not fs.exists(hpath):
        return False
    if fs.getFileStatus(hpath).isFile():
        return True
    return len(fs.listStatus(hpath)) > 0


def delete_path(spark: "SparkSession", path: str) -> None:
    """Delete ``path`` recursively when it exists."""
    fs, hpath = _hadoop_path(spark, path)
    if fs.exists(hpath):
        fs.delete(hpath, True)


def rename_path(spark: "SparkSession", src: str, dest: str) -> None:
    """Rename ``src`` to ``dest`` (same file system), raising ``OSError`` when it fails."""
    fs, hsrc = _hadoop_path(spark, src)
    _, hdest = _hadoop_path(spark, dest)
    parent = hdest.getParent()
    if parent is not None and not fs.exists(parent):
        fs.mkdirs(parent)
    if not fs.rename(hsrc, hdest):
        raise OSError(f"could not rename {src!r} to {dest!r}: check permissions and that the parent exists.")


def write_text_file(spark: "SparkSession", path: str, text: str) -> None:
    """Write a small UTF-8 text file (``vocab.txt``, ``manifest.json``) from the driver."""
    fs, hpath = _hadoop_path(spark, path)
    stream = fs.create(hpath, True)
    try:
        stream.write(bytearray(text.encode("utf-8")))
    finally:
        stream.close()


def require_input(spark: "SparkSession", path: Optional[str], param: str = "input_path") -> str:
    """Return ``path`` when it exists; otherwise raise :class:`InputNotFoundError` naming it."""
    if not path:
        raise InputNotFoundError(f"{param} is not set: pass --input PATH (or --set {param}=PATH).")
    if not path_exists(spark, path):
        raise InputNotFoundError(f"{param}={path!r} does not exist: check the path passed with --input.")
    return path


# ----------------------------------------------------------------------------- readers


def read_corpus(
    spark: "SparkSession",
    path: str,
    input_format: str,
    text_col: str = TEXT_COL,
    id_col: str = ID_COL,
    label_col: Optional[str] = None,
    cache_path: Optional[str] = None,
) -> "DataFrame":
    """Read a corpus into the common document shape (:data:`DOCUMENT_COLUMNS`).

    Args:
        spark: The active session.
        path: A file or folder (any Hadoop file system).
        input_format: One of :data:`INPUT_FORMATS`.
        text_col: The text column (``csv``, ``jsonl``, ``parquet``).
        id_col: The id column (``csv``, ``jsonl``, ``parquet``).
        label_col: The label column; ``None`` uses a ``label`` column when there is one.
        cache_path: Where a 20 Newsgroups archive is unpacked once (default ``<state>/cache``).

    Raises:
        InputNotFoundError: when ``path`` does not exist.
        ValueError: for an unknown format or a missing column.
    """
    if input_format not in INPUT_FORMATS:
        raise ValueError(f"input_format={input_format!r} is not supported: choose one of {list(INPUT_FORMATS)}.")
    require_input(spark, path)
    if input_format == "20newsgroups":
        return read_20newsgroups(spark, path, cache_path=cache_path)
    if input_format == "text":
        return read_text_folder(spark, path)
    return read_table(spark, path, input_format, text_col=text_col, id_col=id_col, label_col=label_col)


def is_archive(path: str) -> bool:
    """Return whether ``path`` names a tar archive (by its suffix)."""
    return str(path).lower().endswith(ARCHIVE_SUFFIXES)


def _split_name(col):
    from pyspark.sql import functions as F

    return (
        F.when(col.contains("train"), F.lit("train")).when(col.contains("test"), F.lit("test")).otherwise(col)
    )


def decode_content(df: "DataFrame", input_col: str = "content", output_col: str = TEXT_COL) -> "DataFrame":
    """Decode a binary column in the JVM: UTF-8 when valid, else Latin-1; flag the fallbacks.

    Adds ``output_col`` (string) and :data:`DECODE_FALLBACK_COL` (bool) and drops ``input_col``.
    """
    text, fallback = decode_bytes_expr(input_col)
    return df.withColumn(output_col, text).withColumn(DECODE_FALLBACK_COL, fallback).drop(input_col)


def decode_bytes_expr(col: Any) -> tuple:
    """Return ``(text, fallback)`` Spark expressions for a binary column: the project's one decoding rule.

    Bytes that are valid UTF-8 are decoded as UTF-8; any other value is decoded as
    Latin-1 as a whole (every byte maps to one character, so nothing is lost and the
    original bytes can be recovered), and ``fallback`` is true. Null stays null
    (``fallback`` false). Preprocessing, backfill and the stream all call this; the
    Python twin for non-Spark paths is :func:`ntm_spark.core.text.decode_document_bytes`.

    Args:
        col: A binary column or its name.
    """
    from pyspark.sql import functions as F

    raw = F.col(col) if isinstance(col, str) else col
    as_utf8 = raw.cast("string")
    valid = F.coalesce(F.is_valid_utf8(as_utf8), F.lit(True))
    return F.when(valid, as_utf8).otherwise(F.decode(raw, "ISO-8859-1")), ~valid


def read_20newsgroups(spark: "SparkSession", path: str, cache_path: Optional[str] = None) -> "DataFrame":
    """Read the 20 Newsgroups by-date corpus from its archive or unpacked folder.

    Returns:
        Documents with ``id = <split>/<group>/<article>``, ``label = <group>`` and
        ``source_split`` ``train`` or ``test``.
    """
    from pyspark.sql import functions as F

    if is_archive(path):
        cached = cache_20newsgroups_archive(spark, path, cache_path=cache_path)
        # The cache's schema is known: giving it saves the Spark job that would read it from a footer.
        raw = spark.read.schema(_archive_cache_schema()).parquet(cached)
    else:
        files = spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(path)
        parts = F.split(F.col("path"), "/")
        split = _split_name(F.element_at(parts, -3))
        raw = files.select(
            F.concat_ws("/", split, F.element_at(parts, -2), F.element_at(parts, -1)).alias(ID_COL),
            F.element_at(parts, -2).alias(LABEL_COL),
            split.alias(SOURCE_SPLIT_COL),
            F.col("content"),
        )
    return decode_content(raw).select(*DOCUMENT_COLUMNS)


def local_file_sha256(path: str) -> Optional[str]:
    """Return the sha256 of a local file (the source's identity in the manifest), or None for folders."""
    local = Path(str(path).removeprefix("file://").removeprefix("file:"))
    if not local.is_file():
        return None
    digest = hashlib.sha256()
    with open(local, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _local_path(path: str) -> Optional[Path]:
    """Return ``path`` as a local ``Path`` when it has no scheme or ``file:``, else None."""
    text = str(path)
    if text.startswith("file:"):
        return Path(text.removeprefix("file://").removeprefix("file:"))
    return None if "://" in text else Path(text)


def _iter_archive_documents(archive: str):
    """Yield ``(id, label, split, bytes)`` for each ``<split>/<group>/<article>`` file of the archive."""
    with tarfile.open(archive, mode="r|*") as tar:
        for member in tar:
            if not member.isfile():
                continue
            parts = [p for p in member.name.split("/") if p not in ("", ".")]
            if len(parts) < 3 or any(p.startswith(".") for p in parts):
                continue
            split_dir, group, article = parts[-3:]
            split = "train" if "train" in split_dir else "test" if "test" in split_dir else split_dir
            fh = tar.extractfile(member)
            if fh is None:  # pragma: no cover - regular files always have content
                continue
            yield f"{split}/{group}/{article}", group, split, fh.read()


def _archive_cache_schema():
    """Return the columns of the unpacked-archive cache (``content`` holds the article's bytes)."""
    from pyspark.sql import types as T

    return T.StructType(
        [
            T.StructField(ID_COL, T.StringType(), False),
            T.StructField(LABEL_COL, T.StringType(), True),
            T.StructField(SOURCE_SPLIT_COL, T.StringType(), True),
            T.StructField("content", T.BinaryType(), False),
        ]
    )


def cache_20newsgroups_archive(
    spark: "SparkSession",
    archive: str,
    cache_path: Optional[str] = None,
    batch_docs: int = ARCHIVE_BATCH_DOCS,
) -> str:
    """Stream a 20 Newsgroups archive once into a Parquet cache and return the cache's path.

    The driver holds at most ``batch_docs`` documents at a time. The cache is keyed by
    the archive's sha256 and published by a rename, so a crash never leaves a partial cache.

    Raises:
        InputNotFoundError: when the archive is not a local file (the driver must open it).
        ValueError: when the archive holds no ``<split>/<group>/<article>`` files.
    """
    import pandas as pd

    from ntm_spark.core.paths import state_dir

    local = Path(str(archive).removeprefix("file://").removeprefix("file:"))
    if not local.is_file():
        raise InputNotFoundError(
            f"input_path={str(archive)!r}: a 20 Newsgroups archive must be a file the driver can open; "
            "for an archive on HDFS or S3, unpack it there and pass the folder."
        )
    root = cache_path or str(state_dir() / "cache")
    sha = local_file_sha256(str(local))
    target = posixpath.join(str(root).rstrip("/"), f"20newsgroups-{sha[:16]}.parquet")
    if path_exists(spark, target):
        log.info("reading the unpacked archive from its cache %s", target)
        return target
    staging = f"{target}.staging-{uuid.uuid4().hex[:8]}"
    schema = _archive_cache_schema()
    log.info("unpacking %s once into %s", local, target)
    local_target = _local_path(staging)
    total = 0
    batch: list[tuple] = []

    def flush() -> None:
        columns = list(zip(*batch))
        if local_target is not None:
            # The common case, a driver-local cache: pyarrow writes it without a Spark job per batch.
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.table(
                [pa.array(columns[0], pa.string()), pa.array(columns[1], pa.string()),
                 pa.array(columns[2], pa.string()), pa.array(columns[3], pa.binary())],
                names=[f.name for f in schema.fields],
            )  # fmt: skip
            local_target.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, local_target / f"part-{total:08d}.parquet", compression="snappy")
        else:
            pdf = pd.DataFrame(batch, columns=[f.name for f in schema.fields])
            spark.createDataFrame(pdf, schema).coalesce(1).write.mode("append").parquet(staging)
        batch.clear()

    try:
        for doc in _iter_archive_documents(str(local)):
            batch.append(doc)
            total += 1
            if len(batch) >= batch_docs:
                flush()
        if batch:
            flush()
        if total == 0:
            raise ValueError(
                f"input_path={str(archive)!r} holds no <split>/<group>/<article> files: "
                "is it the 20 Newsgroups by-date archive? Use --format text for other folders."
            )
        rename_path(spark, staging, target)
    finally:
        delete_path(spark, staging)
    log.info("cached %d documents from the archive", total)
    return target


def read_text_folder(spark: "SparkSession", path: str) -> "DataFrame":
    """Read every file under ``path`` (recursively) as one document; ``id`` is its relative path."""
    from pyspark.sql import functions as F

    prefix = qualify_path(spark, path).rstrip("/") + "/"
    files = spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(path)
    rel = F.when(F.col("path").startswith(prefix), F.expr(f"substring(path, {len(prefix) + 1})")).otherwise(
        F.element_at(F.split(F.col("path"), "/"), -1)
    )
    raw = files.select(
        rel.alias(ID_COL),
        F.lit(None).cast("string").alias(LABEL_COL),
        F.lit(None).cast("string").alias(SOURCE_SPLIT_COL),
        F.col("content"),
    )
    return decode_content(raw).select(*DOCUMENT_COLUMNS)


def read_table(
    spark: "SparkSession",
    path: str,
    input_format: str,
    text_col: str = TEXT_COL,
    id_col: str = ID_COL,
    label_col: Optional[str] = None,
) -> "DataFrame":
    """Read CSV (header row), JSON lines or Parquet with a text, an id and an optional label column.

    Raises:
        ValueError: naming a missing column and the columns the input has.
    """
    from pyspark.sql import functions as F

    if input_format == "csv":
        df = read_csv_files(spark, path)
    elif input_format == "jsonl":
        df = read_json_lines(spark, path)
    elif input_format == "parquet":
        df = spark.read.parquet(path).withColumn(DECODE_FALLBACK_COL, F.lit(False))
    else:
        raise ValueError(f"input_format={input_format!r} is not a table format: use csv, jsonl or parquet.")
    columns = [c for c in df.columns if c != DECODE_FALLBACK_COL]
    for param, name in (("text_col", text_col), ("id_col", id_col)):
        if name not in columns:
            raise ValueError(
                f"{param}={name!r} is not a column of the {input_format} input {path!r}; its columns are "
                f"{columns}. Set --set {param}=<column>."
            )
    if label_col and label_col not in columns:
        raise ValueError(
            f"label_col={label_col!r} is not a column of the {input_format} input {path!r}; its columns are "
            f"{columns}. Set --set label_col=<column>, or null for no label."
        )
    if label_col is None and LABEL_COL in columns:
        label_col = LABEL_COL
    return df.select(
        F.col(id_col).cast("string").alias(ID_COL),
        (F.col(label_col).cast("string") if label_col else F.lit(None).cast("string")).alias(LABEL_COL),
        F.lit(None).cast("string").alias(SOURCE_SPLIT_COL),
        F.col(text_col).cast("string").alias(TEXT_COL),
        F.col(DECODE_FALLBACK_COL),
    )


#: Spark's hidden per-file metadata column: the file each row came from.
_FILE_PATH = "_metadata.file_path"
_CSV_OPTIONS = {"header": "true", "multiLine": "true", "escape": '"', "mode": "PERMISSIVE"}


def read_json_lines(spark: "SparkSession", path: str) -> "DataFrame":
    """Read JSON lines: each line's bytes decoded by :func:`decode_content`, then parsed with ``from_json``.

    A line that is not valid UTF-8 is decoded as Latin-1 and parsed like any other, so its
    id and fields survive (Spark's JSON reader would make it a corrupt record of nulls).
    Blank lines are skipped, as Spark's JSON reader does.

    Returns:
        The JSON fields (types inferred from the decoded lines, as ``spark.read.json`` infers
        them) plus :data:`DECODE_FALLBACK_COL`.
    """
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    # The text source keeps each line's raw bytes (it does not decode): cast back to binary to decode.
    raw = spark.read.text(path).select(F.col("value").cast("binary").alias("content"))
    lines = decode_content(raw, output_col="_line").where(F.trim(F.col("_line")) != "")
    # Infer the schema from the decoded lines, in the JVM (spark.read.json of a Dataset[String]).
    jvm = spark.sparkContext._jvm
    as_strings = getattr(lines.select("_line")._jdf, "as")(jvm.org.apache.spark.sql.Encoders.STRING())
    inferred = T.StructType.fromJson(json.loads(spark._jsparkSession.read().json(as_strings).schema().json()))
    schema = T.StructType([f for f in inferred.fields if f.name != "_corrupt_record"])
    return lines.select(F.from_json("_line", schema).alias("_row"), DECODE_FALLBACK_COL).select(
        "_row.*", DECODE_FALLBACK_COL
    )


def read_csv_files(spark: "SparkSession", path: str) -> "DataFrame":
    """Read CSV files with a header row, each file decoded as UTF-8 when valid, else as Latin-1 (flagged).

    The value the decoding rule applies to is the file: a quoted field may span lines, so a
    record cannot be cut out before parsing. One JVM pass over the lines' raw bytes finds
    the files that are not valid UTF-8 (:func:`decode_bytes_expr`'s test); only those are
    parsed again, by Spark's CSV reader with ``encoding=ISO-8859-1``.

    Returns:
        The CSV columns (strings) plus :data:`DECODE_FALLBACK_COL`.
    """
    from pyspark.sql import functions as F

    _, fallback = decode_bytes_expr(F.col("value").cast("binary"))
    bad_lines = spark.read.text(path).where(fallback)
    latin1_files = [r[0] for r in bad_lines.select(F.col(_FILE_PATH)).distinct().collect()]
    utf8 = spark.read.options(**_CSV_OPTIONS).csv(path)
    if not latin1_files:
        return utf8.withColumn(DECODE_FALLBACK_COL, F.lit(False))
    log.info("%d CSV file(s) are not valid UTF-8: decoded as Latin-1 and flagged", len(latin1_files))
    latin1 = spark.read.options(**_CSV_OPTIONS, encoding="ISO-8859-1").csv(path)
    return (
        utf8.where(~F.col(_FILE_PATH).isin(latin1_files))
        .withColumn(DECODE_FALLBACK_COL, F.lit(False))
        .unionByName(
            latin1.where(F.col(_FILE_PATH).isin(latin1_files)).withColumn(DECODE_FALLBACK_COL, F.lit(True)),
            allowMissingColumns=True,
        )
    )


# ----------------------------------------------------------------------------- writers


def check_output_path(spark: "SparkSession", path: str, overwrite: bool) -> None:
    """Refuse an existing, non-empty output unless ``overwrite`` is set.

    Raises:
        OutputExistsError: naming the path and the ``--overwrite`` flag.
    """
    if not path:
        raise ValueError("output_path is empty: pass --output PATH.")
    if is_nonempty_path(spark, path) and not overwrite:
        raise OutputExistsError(
            f"output_path={path!r} already exists: pass --overwrite to replace it, or choose another --output."
        )


def staging_path(path: str) -> str:
    """Return a fresh sibling path where an output is built before it is renamed into place."""
    parent, name = posixpath.split(str(path).rstrip("/"))
    return posixpath.join(parent, f".{name}.staging-{uuid.uuid4().hex[:8]}")


#: The name :func:`staging_path` gives: ``.<name>.staging-<8 hex digits>``.
_STAGING_NAME_RE = re.compile(r"^\.(?P<name>.+)\.staging-[0-9a-f]{8}$")


def delete_stale_staging(spark: "SparkSession", parent: str, name_pattern: str) -> list[str]:
    r"""Delete the staging folders a killed run left in ``parent`` for outputs named like ``name_pattern``.

    A run removes its own staging folder when it fails (``finally``), but not when it is
    killed (``kill -9``, a lost node): the folder of :func:`staging_path` stays. The next run
    of the same output calls this first. Only one run may write an output at a time: a
    concurrent run's staging folder would be deleted too.

    Args:
        spark: The active session.
        parent: The folder holding the outputs (and their staging siblings).
        name_pattern: A regular expression the output's name must match in full,
            e.g. ``bucket=\d+``, or ``re.escape(name)`` for one output.

    Returns:
        The paths deleted.
    """
    fs, hparent = _hadoop_path(spark, parent)
    if not fs.exists(hparent) or not fs.getFileStatus(hparent).isDirectory():
        return []
    wanted = re.compile(name_pattern)
    deleted = []
    for status in fs.listStatus(hparent):
        match = _STAGING_NAME_RE.match(status.getPath().getName())
        if match and wanted.fullmatch(match.group("name")):
            fs.delete(status.getPath(), True)
            deleted.append(status.getPath().toString())
    if deleted:
        log.info("deleted %d staging folder(s) left by a killed run: %s", len(deleted), ", ".join(deleted))
    return deleted


def write_bow_splits(
    df: "DataFrame",
    path: str,
    partitions: Mapping[str, range],
    row_group_size: int,
    split_col: str = "split",
) -> dict[str, dict]:
    """Write every split of a bag-of-words DataFrame in one Spark job, as ``<path>/<split>/`` Parquet.

    ``df`` has the columns of :func:`bow_spark_schema` plus ``split_col``,
    and partition ``partitions[split][k]`` holds shard ``k`` of ``split`` (see
    :func:`ntm_spark.spark.preprocess.shard_splits`). Each partition becomes the part file
    ``part-<k>-...`` of its split, as if each split had been written on its own: the
    first shard always has a file (an empty one carries the schema of an empty split),
    the others only when they hold documents, and each split folder has its
    ``_SUCCESS`` marker. Parquet row groups hold at most ``row_group_size`` rows.

    Returns:
        ``{split: {"path": split, "documents": rows, "files": part files}}``, the rows
        counted from the Parquet footers.
    """
    from pyspark.sql import functions as F

    spark = df.sparkSession
    schema = bow_spark_schema()
    out = df.select(*[F.col(f.name).cast(f.dataType) for f in schema.fields], F.col(split_col))
    by_split = posixpath.join(path, "_by_split")
    (
        out.write.mode("errorifexists")
        .partitionBy(split_col)
        .option("compression", "snappy")
        .option("parquet.block.row.count.limit", str(int(row_group_size)))
        .parquet(by_split)
    )
    fs, _ = _hadoop_path(spark, path)
    written: dict[str, dict] = {}
    for split, ids in partitions.items():
        split_dir = posixpath.join(path, split)
        _, hdir = _hadoop_path(spark, split_dir)
        fs.mkdirs(hdir)
        shards = {}
        _, hsrc = _hadoop_path(spark, posixpath.join(by_split, f"{split_col}={split}"))
        for status in fs.listStatus(hsrc) if fs.exists(hsrc) else []:
            match = _PART_FILE_RE.match(status.getPath().getName())
            if match and int(match.group(1)) in ids:
                shards[int(match.group(1)) - ids.start] = (status.getPath(), _unpartitioned_name(match.group(2)))
        if 0 not in shards:  # a split written alone always has its first part file, holding the schema
            empty = posixpath.join(path, f"_empty_{split}")
            out.drop(split_col).where(F.lit(False)).coalesce(1).write.option("compression", "snappy").parquet(empty)
            _, hempty = _hadoop_path(spark, empty)
            first = next(s.getPath() for s in fs.listStatus(hempty) if s.getPath().getName().endswith(".parquet"))
            shards[0] = (first, _PART_FILE_RE.match(first.getName()).group(2))
        rows = 0
        for shard, (src, rest) in sorted(shards.items()):
            _, dest = _hadoop_path(spark, posixpath.join(split_dir, f"part-{shard:05d}-{rest}"))
            if not fs.rename(src, dest):
                raise OSError(
                    f"could not move {src.toString()!r} to {dest.toString()!r}: check the output file system."
                )
            rows += parquet_file_rows(spark, dest)
        write_text_file(spark, posixpath.join(split_dir, "_SUCCESS"), "")
        written[split] = {"path": split, "documents": rows, "files": len(shards)}
    for leftover in [by_split] + [posixpath.join(path, f"_empty_{s}") for s in partitions]:
        delete_path(spark, leftover)
    return written


#: A part file Spark writes: ``part-<partition>-<job uuid and the rest of the name>``.
_PART_FILE_RE = re.compile(r"^part-(\d+)-(.+\.parquet)$")


def _unpartitioned_name(rest: str) -> str:
    # A partitioned write names its files "<uuid>.c000..." where a plain one writes "<uuid>-c000...".
    return re.sub(r"^([0-9a-f-]{36})\.c(\d+)", r"\1-c\2", rest)


def parquet_file_rows(spark: "SparkSession", hpath) -> int:
    """Return the rows of one Parquet file (a Hadoop ``Path``) from its footer, without a Spark job."""
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    reader = jvm.org.apache.parquet.hadoop.ParquetFileReader.open(
        jvm.org.apache.parquet.hadoop.util.HadoopInputFile.fromPath(hpath, conf)
    )
    try:
        return int(reader.getRecordCount())
    finally:
        reader.close()


def write_vocabulary(spark: "SparkSession", vocabulary: "Vocabulary", path: str) -> None:
    """Write ``vocab.txt`` (one word per line, in index order)."""
    write_text_file(spark, path, vocabulary.to_text())


def write_manifest(spark: "SparkSession", manifest: dict[str, Any], path: str) -> None:
    """Write ``manifest.json`` (indented, keys in insertion order)."""
    write_text_file(spark, path, json.dumps(manifest, indent=2, default=str) + "\n")


def write_preprocess_output(
    spark: "SparkSession",
    bow: "DataFrame",
    partitions: Mapping[str, range],
    vocabulary: "Vocabulary",
    output_path: str,
    overwrite: bool,
    row_group_size: int,
    finalize_manifest: Callable[[dict[str, dict]], dict[str, Any]],
) -> dict[str, Any]:
    """Write the split datasets, ``vocab.txt`` and ``manifest.json``, then publish them atomically.

    Everything is written to a staging folder beside ``output_path``; only when the
    manifest is complete does it replace ``output_path`` (a rename), so a failure leaves
    the previous output untouched and never a partial or silently empty one.

    Args:
        spark: The active session.
        bow: Every split's bag-of-words documents, with a ``split`` column; each partition
            becomes a part file (see :func:`write_bow_splits`).
        partitions: Split name -> the partition ids of ``bow`` holding it, in shard order.
        vocabulary: The fitted vocabulary.
        output_path: The output folder.
        overwrite: Replace an existing output.
        row_group_size: Most rows per Parquet row group.
        finalize_manifest: Called with ``{split: {"path", "documents", "files"}}`` (counted from
            the written Parquet); returns the manifest, or raises to abort the write.

    Returns:
        The manifest written.
    """
    check_output_path(spark, output_path, overwrite)
    parent, name = posixpath.split(str(output_path).rstrip("/"))
    delete_stale_staging(spark, parent or ".", re.escape(name))
    staging = staging_path(output_path)
    try:
        written = write_bow_splits(bow, staging, partitions, row_group_size)
        for split, info in written.items():
            log.info("wrote %s: %d documents in %d files", split, info["documents"], info["files"])
        manifest = finalize_manifest(written)
        write_vocabulary(spark, vocabulary, posixpath.join(staging, VOCAB_FILE))
        write_manifest(spark, manifest, posixpath.join(staging, MANIFEST_FILE))
        if path_exists(spark, output_path):
            check_output_path(spark, output_path, overwrite)
            delete_path(spark, output_path)
        rename_path(spark, staging, output_path)
    finally:
        delete_path(spark, staging)
    return manifest
