"""The JVM scorer as Spark SQL functions: scoring with no Python worker, as real-time mode requires.

``ntm-scorer.jar`` (``conf/jvm/src/io/github/ntmspark/scorer``, built by ``make jars``) holds the
Java twin of :class:`~ntm_spark.serving.scoring.TopicScorer`: the document checks, the model's
text rules, the vocabulary and the encoder's forward pass, read from the registered model
folder's ``jvm/`` export (:mod:`ntm_spark.serving.jvm_export`). The Python scorer stays the
definition; ``tests/ntm_spark/spark/test_jvm_scoring.py`` checks the two on 20 Newsgroups.

:func:`register_jvm_scorer` registers two Java UDFs in a session:

* ``ntm_score(text, model_folder, max_text_bytes, top_k, top_words)``: the struct of
  ``error_code``, ``error_message``, ``topic_weights``, ``top_topics``, ``n_tokens``, ``n_oov_tokens``
  (the drift monitor's token counts, as :meth:`~ntm_spark.serving.scoring.TopicScorer.score_texts`
  gives them: null for a document that failed a document check);
* ``ntm_bow(text, model_folder)``: the vocabulary indices of the document's lemmas, in order;
* ``ntm_single_json(raw_value)``: why a value Spark parsed as a JSON object has trailing data
  (:func:`~ntm_spark.spark.streaming.check_single_json`'s ``not_json``), or null;
* ``ntm_now()``: the time, read per row (``current_timestamp()`` is fixed per batch, and a
  real-time batch lasts minutes), for ``scored_at``.

:func:`score_batch_jvm` is :func:`ntm_spark.spark.streaming.score_batch` with it: the same output
columns, computed in the JVM.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union

from ntm_spark.core.checks import MAX_TEXT_BYTES, TOO_LARGE
from ntm_spark.core.contract import read_jvm_export
from ntm_spark.core.schema import (
    ERROR_CODE_COL,
    ERROR_MESSAGE_COL,
    MODEL_NAME_COL,
    MODEL_VERSION_COL,
    N_OOV_TOKENS_COL,
    N_TOKENS_COL,
    SCORED_AT_COL,
    TEXT_COL,
    TOP_TOPICS_COL,
    TOPIC_WEIGHTS_COL,
)

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession

#: The SQL names of the JVM scorer's functions.
SCORE_FUNCTION = "ntm_score"
BOW_FUNCTION = "ntm_bow"
JSON_FUNCTION = "ntm_single_json"
NOW_FUNCTION = "ntm_now"
SCORE_CLASS = "io.github.ntmspark.scorer.ScoreUdf"
BOW_CLASS = "io.github.ntmspark.scorer.BowUdf"
JSON_CLASS = "io.github.ntmspark.scorer.JsonCheckUdf"
NOW_CLASS = "io.github.ntmspark.scorer.NowUdf"
SCORER_CLASS = "io.github.ntmspark.scorer.NtmScorer"
#: ``ScoreUdf.apiVersion()`` of the jar this code needs (2: the struct carries ``n_tokens`` and ``n_oov_tokens``).
SCORER_API_VERSION = 2


class JvmScorerError(RuntimeError):
    """The JVM scorer cannot run: its jar is missing or the model has no usable JVM export; the message says the fix."""


def score_struct_type() -> Any:
    """The Spark type ``ntm_score`` returns (the streaming output's scored columns, minus model and time)."""
    from pyspark.sql import types as T

    top = T.StructType(
        [
            T.StructField("topic", T.IntegerType()),
            T.StructField("weight", T.FloatType()),
            T.StructField("words", T.ArrayType(T.StringType())),
        ]
    )
    return T.StructType(
        [
            T.StructField(ERROR_CODE_COL, T.StringType()),
            T.StructField(ERROR_MESSAGE_COL, T.StringType()),
            T.StructField(TOPIC_WEIGHTS_COL, T.ArrayType(T.FloatType())),
            T.StructField(TOP_TOPICS_COL, T.ArrayType(top)),
            T.StructField(N_TOKENS_COL, T.IntegerType()),
            T.StructField(N_OOV_TOKENS_COL, T.IntegerType()),
        ]
    )


def _java_error(err: Exception) -> str:
    """The Java exception's own message (py4j wraps it in a stack trace)."""
    java = getattr(err, "java_exception", None)
    if java is not None:
        cause = java
        while cause.getCause() is not None:
            cause = cause.getCause()
        return str(cause.getMessage() or cause.toString())
    return str(err)


def register_jvm_scorer(spark: "SparkSession") -> None:
    """Register ``ntm_score`` and ``ntm_bow`` (Java UDFs from ``ntm-scorer.jar``) in ``spark``.

    Raises:
        JvmScorerError: when the jar is not on the session's class path, or was built from an older
            ntm-spark (its ``ntm_score`` struct differs), naming the fix.
    """
    from py4j.java_gateway import JavaClass
    from pyspark.sql import types as T

    udf_class = spark.sparkContext._jvm.io.github.ntmspark.scorer.ScoreUdf
    if isinstance(udf_class, JavaClass):  # else the jar is not on the class path: reported below
        try:
            version: Optional[int] = int(udf_class.apiVersion())
        except Exception:  # noqa: BLE001 - py4j: no such method, a jar built before the version existed
            version = None
        if version != SCORER_API_VERSION:
            raise JvmScorerError(
                f"ntm-scorer.jar on the class path is the JVM scorer of another ntm-spark (API version {version!r}, "
                f"this code needs {SCORER_API_VERSION}): rebuild it with `make jars` and restart the session."
            )
    try:
        spark.udf.registerJavaFunction(SCORE_FUNCTION, SCORE_CLASS, score_struct_type())
        spark.udf.registerJavaFunction(BOW_FUNCTION, BOW_CLASS, T.ArrayType(T.IntegerType()))
        spark.udf.registerJavaFunction(JSON_FUNCTION, JSON_CLASS, T.StringType())
        # Non-deterministic, so that Spark evaluates it per row (registerJavaFunction cannot say so).
        spark.sparkContext._jvm.io.github.ntmspark.scorer.NowUdf.register(spark._jsparkSession)
    except Exception as err:  # py4j/AnalysisException: the class is not on the class path
        from ntm_spark.spark.session import scorer_jar

        jar = scorer_jar()
        raise JvmScorerError(
            f"cannot register the JVM scorer ({SCORE_CLASS}): {_java_error(err)[:300]}. "
            + (
                f"Under spark-submit, pass the jar to the driver: --jars {jar} (a session started by "
                "ntm_spark.spark.session.build_spark_session adds it itself)."
                if jar is not None
                else "Build ntm-scorer.jar with `make jars` (it needs a JDK) and start the session with "
                "ntm_spark.spark.session.build_spark_session, which adds it to spark.jars (under spark-submit: --jars)."
            )
        ) from err


def ship_model_folder(spark: "SparkSession", model_dir: Union[str, Path], force: bool = False) -> Optional[str]:
    """Ship the model folder to the executors as ``<folder name>.zip`` (``SparkContext.addArchive``); return the archive.

    The JVM scorer reads the folder by its driver path; an executor on another host has no such
    folder and reads this unpacked copy instead (``NtmScorer.resolveFolder``). A ``local[...]`` or
    ``local-cluster[...]`` master shares the driver's disk, so nothing is shipped unless ``force``.
    The archive is written once beside the folder (a new model version is a new folder).
    """
    master = str(spark.sparkContext.master)
    if master.startswith("local") and not force:
        return None
    folder = Path(model_dir).resolve()
    archive = folder.with_name(f"{folder.name}.zip")
    if not archive.is_file():
        work = folder.with_name(f".{folder.name}.{os.getpid()}.zipping")
        shutil.make_archive(str(work), "zip", root_dir=str(folder))
        os.replace(f"{work}.zip", archive)
    spark.sparkContext.addArchive(str(archive))
    return str(archive)


def check_jvm_model(spark: "SparkSession", model_dir: Union[str, Path]) -> dict:
    """Load the model folder in the driver's JVM scorer, so a bad model fails before a query starts.

    Returns:
        ``{"num_topics", "feature_dim", "text_rules", "unicode"}`` as the JVM scorer read them.

    Raises:
        JvmScorerError: when the folder has no ``jvm/`` export, or the JVM scorer refuses it
            (an unsupported rule set, a layer it lacks, a damaged file), with the JVM's reason.
    """
    folder = str(Path(model_dir).resolve())
    if read_jvm_export(folder) is None:
        raise JvmScorerError(
            f"model folder {folder!r} has no jvm/scorer.json: it was registered before the JVM scorer existed, or "
            "its export failed (see the registration's warning). Register it again, or use the Python scorer "
            "(stream.trigger=processing_time)."
        )
    try:
        scorer = spark.sparkContext._jvm.io.github.ntmspark.scorer.NtmScorer.load(folder)
    except Exception as err:
        raise JvmScorerError(f"the JVM scorer cannot load {folder!r}: {_java_error(err)}") from err
    return {
        "num_topics": int(scorer.numTopics()),
        "feature_dim": int(scorer.featureDim()),
        "text_rules": str(scorer.textRules()),
        "unicode": str(scorer.unicodeSource()),
    }


def score_batch_jvm(
    df: "DataFrame",
    model_dir: Union[str, Path],
    top_k: int = 3,
    top_words: int = 5,
    max_text_bytes: int = MAX_TEXT_BYTES,
    input_col: str = TEXT_COL,
    model_name: Optional[str] = None,
    model_version: Optional[str] = None,
    keep_input: bool = False,
) -> "DataFrame":
    """:func:`~ntm_spark.spark.streaming.score_batch` with the JVM scorer: the same columns, no Python worker.

    Call :func:`register_jvm_scorer` on the session first (and :func:`check_jvm_model` to fail early).
    With a ``raw_value`` column, a value holding more than one JSON object becomes ``not_json``,
    as in the Python path (``ntm_single_json``).

    Args:
        df: The output of :func:`~ntm_spark.spark.streaming.parse_messages` (or any frame with
            ``input_col``, ``error_code`` and ``error_message``).
        model_dir: The registered model folder (local; every executor must see the same path).
        top_k: Topics listed in ``top_topics``.
        top_words: Words listed per top topic.
        max_text_bytes: Texts larger than this are ``too_large``.
        input_col: The text column; it is dropped from the result unless ``keep_input``.
        model_name: The model's name for the output records.
        model_version: The model's version for the output records.
        keep_input: Keep ``input_col`` (the stream's Parquet sink does: the next warm start retrains on it).

    Returns:
        ``df`` without ``input_col`` (unless ``keep_input``); ``raw_value`` kept only for dead letters; ``error_code`` and
        ``error_message`` updated; ``topic_weights``, ``top_topics``, ``model_name``,
        ``model_version``, ``scored_at``, ``n_tokens`` and ``n_oov_tokens`` added (in
        :func:`~ntm_spark.spark.streaming.score_batch`'s order).
    """
    from pyspark.sql import functions as F

    from ntm_spark.serving.scoring import NOT_JSON
    from ntm_spark.spark.streaming import RAW_VALUE_COL

    for name in (input_col, ERROR_CODE_COL, ERROR_MESSAGE_COL):
        if name not in df.columns:
            raise ValueError(f"score_batch_jvm needs a {name!r} column, got {df.columns!r}: pass the output of parse_messages.")
    for name, value, low in (("top_k", top_k, 0), ("top_words", top_words, 0), ("max_text_bytes", max_text_bytes, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name}={value!r} must be an integer >= {low}.")
    folder = str(Path(model_dir).resolve())
    new_names = {ERROR_CODE_COL, ERROR_MESSAGE_COL, TOPIC_WEIGHTS_COL, TOP_TOPICS_COL, MODEL_NAME_COL, MODEL_VERSION_COL, SCORED_AT_COL}
    keep = [c for c in df.columns if (keep_input or c != input_col) and c not in new_names]
    code, message = F.col(ERROR_CODE_COL), F.col(ERROR_MESSAGE_COL)
    if RAW_VALUE_COL in df.columns:
        trailing = F.when(~code.isin(NOT_JSON, TOO_LARGE) | code.isNull(), F.call_function(JSON_FUNCTION, F.col(RAW_VALUE_COL)))
        df = df.select("*", trailing.alias("_trailing"))
        code = F.when(F.col("_trailing").isNotNull(), F.lit(NOT_JSON)).otherwise(code)
        message = F.coalesce(F.col("_trailing"), message)
    scored = F.call_function(
        SCORE_FUNCTION, F.col("_text"), F.lit(folder), F.lit(int(max_text_bytes)).cast("long"), F.lit(int(top_k)), F.lit(int(top_words))
    )
    # Rows parsing already failed keep their code; only well-formed ones reach the scorer. Each step
    # is its own projection: Spark does not collapse one that would call the UDF once per field.
    out = df.select(*keep, F.col(input_col).alias("_text"), code.alias("_code"), message.alias("_message"))
    out = out.select(*keep, "_code", "_message", F.when(F.col("_code").isNull(), scored).alias("_s"))
    out = out.select(
        *keep,
        F.coalesce(F.col("_code"), F.col("_s.error_code")).alias(ERROR_CODE_COL),
        F.when(F.col("_code").isNotNull(), F.col("_message")).otherwise(F.col("_s.error_message")).alias(ERROR_MESSAGE_COL),
        F.col("_s.topic_weights").alias(TOPIC_WEIGHTS_COL),
        F.col("_s.top_topics").alias(TOP_TOPICS_COL),
        F.lit(model_name).cast("string").alias(MODEL_NAME_COL),
        F.lit(model_version).cast("string").alias(MODEL_VERSION_COL),
        F.call_function(NOW_FUNCTION).alias(SCORED_AT_COL),
        # The drift monitor's per-document token counts (null where the scorer never ran: a parse error).
        F.col(f"_s.{N_TOKENS_COL}").alias(N_TOKENS_COL),
        F.col(f"_s.{N_OOV_TOKENS_COL}").alias(N_OOV_TOKENS_COL),
    )
    if RAW_VALUE_COL in out.columns:
        out = out.withColumn(RAW_VALUE_COL, F.when(F.col(ERROR_CODE_COL).isNotNull(), F.col(RAW_VALUE_COL)))
    return out
