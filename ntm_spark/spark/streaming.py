r"""Streaming scoring as pure DataFrame functions: Kafka rows in, output and dead-letter records out.

The streaming job (``jobs/stream_score.py``) only wires
``readStream.format("kafka")`` -> :func:`parse_messages` -> :func:`score_batch`
-> :func:`to_kafka_records` -> ``writeStream``; every function here also works on
a static DataFrame, which is how they are tested.

Input messages are JSON objects ``{"id": str, "text": str, ...}``. A message that
is not JSON (or not a JSON object), lacks ``text``, has a non-string ``text``, is
larger than ``max_message_bytes``, is empty, or is empty after normalization is
*dead-lettered* with its raw value, key, source topic/partition/offset, error
code and message, and the time; it never fails the batch.

Output record (JSON, Kafka key = ``id``)::

    {"id": "d1", "topic_weights": [...K floats, sum 1...],
     "top_topics": [{"topic": 3, "weight": 0.41, "words": ["car", ...]}, ...],
     "model_name": "ntm-20newsgroups", "model_version": "7",
     "scored_at": "2026-01-01T00:00:00.000Z",
     "source_topic": "documents", "source_partition": 0, "source_offset": 42,
     ...passthrough fields...}

Dead-letter record (JSON, Kafka key = the input key)::

    {"id": "d2", "error_code": "missing_text", "error_message": "...",
     "raw_value": "{\"id\": \"d2\"}", "raw_value_truncated": false, "key": "d2",
     "source_topic": "documents", "source_partition": 1, "source_offset": 7,
     "source_timestamp": "...", "failed_at": "...", "model_version": "7"}
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional, Sequence, Union

from ntm_spark.core.checks import MISSING_TEXT, TEXT_NOT_STRING, TOO_LARGE
from ntm_spark.core.schema import (
    ERROR_CODE_COL,
    ERROR_MESSAGE_COL,
    ID_COL,
    MODEL_NAME_COL,
    MODEL_VERSION_COL,
    N_OOV_TOKENS_COL,
    N_TOKENS_COL,
    SCORED_AT_COL,
    TEXT_COL,
    TOP_TOPICS_COL,
    TOPIC_WEIGHTS_COL,
)
from ntm_spark.serving.model_loader import LoadedModel, ModelSpec, get_loader
from ntm_spark.serving.scoring import NOT_JSON

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from pyspark.sql import DataFrame

log = logging.getLogger(__name__)

KEY_COL = "key"
RAW_VALUE_COL = "raw_value"
RAW_TRUNCATED_COL = "raw_value_truncated"
SOURCE_TOPIC_COL = "source_topic"
SOURCE_PARTITION_COL = "source_partition"
SOURCE_OFFSET_COL = "source_offset"
SOURCE_TIMESTAMP_COL = "source_timestamp"
FAILED_AT_FIELD = "failed_at"
#: True when the message's key or value was not valid UTF-8 and was decoded as Latin-1.
DECODE_FALLBACK_COL = "decode_fallback"
#: Passthrough field ``f`` travels as JSON text in column ``extra__f``.
EXTRA_PREFIX = "extra__"
#: A dead letter carries at most this many characters of a too-large raw value.
DEAD_LETTER_MAX_RAW_CHARS = 65_536
#: The name of the observed metrics each micro-batch reports (``StreamingQueryProgress.observedMetrics``).
METRICS_NAME = "ntm_stream"

SCORING_UDFS = ("map_in_pandas", "pandas_udf")


# ----------------------------------------------------------------------------- parsing


def parse_messages(
    df: "DataFrame",
    max_message_bytes: int = 1_000_000,
    passthrough_fields: Sequence[str] = (),
) -> "DataFrame":
    """Turn Kafka rows (``key``, ``value``, ``topic``, ``partition``, ``offset``, ``timestamp``) into documents.

    Malformed messages are classified, not dropped: ``error_code`` is ``not_json``,
    ``too_large``, ``missing_text`` or ``text_not_string`` (null for a well-formed one).

    Args:
        df: Rows shaped like Spark's Kafka source (static or streaming).
        max_message_bytes: Values larger than this are ``too_large`` (not parsed).
        passthrough_fields: Top-level input fields copied to the output record.

    Returns:
        ``id`` (the message's ``id``, else ``<topic>-<partition>-<offset>``), ``key``, ``text``,
        ``raw_value``, ``raw_value_truncated``, the ``source_*`` columns, ``error_code``,
        ``error_message`` and one ``extra__<field>`` JSON column per passthrough field.
    """
    from pyspark.sql import functions as F

    if int(max_message_bytes) < 1:
        raise ValueError(f"max_message_bytes={max_message_bytes!r} must be >= 1: use e.g. 1000000.")
    bad = [f for f in passthrough_fields if not isinstance(f, str) or not f or f in (ID_COL, TEXT_COL)]
    if bad:
        raise ValueError(f"passthrough_fields holds {bad!r}: list other top-level field names (not 'id' or 'text').")
    # Parse each value once: the variant and the derived fields are materialized by a first
    # projection (Spark does not collapse projections that would repeat expensive expressions),
    # then the classification below only reads columns.
    from ntm_spark.spark.io import decode_bytes_expr

    value = F.col("value")
    # Keys and values are bytes: the project's one decoding rule (UTF-8, else Latin-1 as a whole,
    # flagged) keeps invalid UTF-8 from reaching Arrow, where it would fail the whole query.
    value_text, value_fallback = decode_bytes_expr(value)
    key_text, key_fallback = decode_bytes_expr(F.col("key"))
    df = df.select(
        "*",
        F.octet_length(value).alias("_nbytes"),
        value_text.alias("_value_text"),
        key_text.alias("_key_text"),
        (value_fallback | key_fallback).alias("_fallback"),
    )
    nbytes = F.col("_nbytes")
    too_large = nbytes > F.lit(int(max_message_bytes))
    as_text = F.col("_value_text")
    df = df.select("*", F.when(value.isNotNull() & ~too_large, F.try_parse_json(as_text)).alias("_v"))
    df = df.select("*", F.schema_of_variant(F.col("_v")).alias("_v_type"), F.try_variant_get(F.col("_v"), "$.text", "variant").alias("_t"))
    df = df.select("*", F.schema_of_variant(F.col("_t")).alias("_t_type"))
    v, v_type, t, t_type = F.col("_v"), F.col("_v_type"), F.col("_t"), F.col("_t_type")
    code = (
        F.when(value.isNull(), F.lit(NOT_JSON))
        .when(too_large, F.lit(TOO_LARGE))
        .when(v.isNull(), F.lit(NOT_JSON))
        .when(~v_type.startswith("OBJECT"), F.lit(NOT_JSON))
        .when(t.isNull() | F.is_variant_null(t), F.lit(MISSING_TEXT))
        .when(t_type != F.lit("STRING"), F.lit(TEXT_NOT_STRING))
    )
    message = (
        F.when(value.isNull(), F.lit("the message has no value (a tombstone)"))
        .when(
            too_large,
            F.format_string(f"the message is %d bytes, larger than max_message_bytes={int(max_message_bytes)}", nbytes),
        )
        .when(v.isNull(), F.lit("the message value is not valid JSON"))
        .when(
            ~v_type.startswith("OBJECT"),
            F.concat(F.lit('the message is JSON but not an object (send {"id": ..., "text": ...}); got '), F.lower(v_type)),
        )
        .when(t.isNull() | F.is_variant_null(t), F.lit("the message has no 'text' field"))
        .when(t_type != F.lit("STRING"), F.concat(F.lit("'text' must be a string, got "), F.lower(t_type)))
    )
    fallback_id = F.concat_ws("-", F.col("topic"), F.col("partition").cast("string"), F.col("offset").cast("string"))
    raw = F.when(too_large, F.substring(as_text, 1, DEAD_LETTER_MAX_RAW_CHARS)).otherwise(as_text)
    cols = [
        F.coalesce(F.try_variant_get(v, "$.id", "string"), fallback_id).alias(ID_COL),
        F.col("_key_text").alias(KEY_COL),
        F.when(code.isNull(), F.try_variant_get(t, "$", "string")).alias(TEXT_COL),
        raw.alias(RAW_VALUE_COL),
        F.coalesce(too_large & (nbytes > DEAD_LETTER_MAX_RAW_CHARS), F.lit(False)).alias(RAW_TRUNCATED_COL),
        F.col("topic").alias(SOURCE_TOPIC_COL),
        F.col("partition").alias(SOURCE_PARTITION_COL),
        F.col("offset").alias(SOURCE_OFFSET_COL),
        F.col("timestamp").alias(SOURCE_TIMESTAMP_COL),
        code.alias(ERROR_CODE_COL),
        message.alias(ERROR_MESSAGE_COL),
        F.col("_fallback").alias(DECODE_FALLBACK_COL),
    ]
    for field_name in passthrough_fields:
        path = "$['" + field_name.replace("'", "\\'") + "']"
        cols.append(F.to_json(F.try_variant_get(v, path, "variant")).alias(EXTRA_PREFIX + field_name))
    return df.select(*cols)


# ----------------------------------------------------------------------------- scoring


def _scored_fields() -> list:
    from pyspark.sql import types as T

    top = T.StructType(
        [
            T.StructField("topic", T.IntegerType()),
            T.StructField("weight", T.FloatType()),
            T.StructField("words", T.ArrayType(T.StringType())),
        ]
    )
    return [
        T.StructField(ERROR_CODE_COL, T.StringType()),
        T.StructField(ERROR_MESSAGE_COL, T.StringType()),
        T.StructField(TOPIC_WEIGHTS_COL, T.ArrayType(T.FloatType())),
        T.StructField(TOP_TOPICS_COL, T.ArrayType(top)),
        T.StructField(MODEL_NAME_COL, T.StringType()),
        T.StructField(MODEL_VERSION_COL, T.StringType()),
        T.StructField(SCORED_AT_COL, T.TimestampType()),
        T.StructField(N_TOKENS_COL, T.IntegerType()),
        T.StructField(N_OOV_TOKENS_COL, T.IntegerType()),
    ]


_JSON_DECODER = json.JSONDecoder(strict=False)


def check_single_json(raw: Any) -> Optional[str]:
    """Return why ``raw`` is not exactly one JSON value, or ``None`` when it is.

    Spark's JSON functions (``try_parse_json``, ``from_json``, ``get_json_object``) stop
    at the end of the first value and ignore what follows, so ``{"id": "a", "text": "b"}
    trailing`` and ``{}}`` would pass; this check, run in the Python worker before
    scoring, makes them ``not_json``. Python's :mod:`json` is the definition.
    """
    if not isinstance(raw, str):
        return None
    try:
        _value, end = _JSON_DECODER.raw_decode(raw, len(raw) - len(raw.lstrip()))
    except ValueError as err:
        return f"the message value is not valid JSON ({err})"
    except RecursionError:
        # Spark's parser accepts nesting that Python's recursive one cannot follow: such a value
        # cannot be checked, so it is a dead letter, never a failed batch (found by the fuzz suite).
        return "the message value nests too deeply to check: send a flatter JSON object"
    rest = raw[end:]
    if rest.strip():
        return f"the message value has {len(rest.strip())} characters of trailing data after its JSON object (at character {end})"
    return None


def apply_single_json_check(raw_values: Sequence[Any], codes: list, messages: list) -> None:
    """Turn rows the JVM parsed as JSON but that carry trailing data into ``not_json``, in place."""
    for i, raw in enumerate(raw_values):
        if codes[i] in (NOT_JSON, TOO_LARGE):
            continue
        problem = check_single_json(raw)
        if problem is not None:
            codes[i], messages[i] = NOT_JSON, problem


def score_texts_frame(
    texts: Sequence[Any],
    codes: Sequence[Any],
    messages: Sequence[Any],
    loaded: LoadedModel,
    top_k: int = 3,
    top_words: int = 5,
    raw_values: Optional[Sequence[Any]] = None,
) -> "pd.DataFrame":
    """Score the rows that have no error yet with ``loaded.scorer``; the pandas core of :func:`score_batch`.

    Args:
        texts: Raw documents (``None`` where ``codes`` has an error).
        codes: Error codes from parsing (``None`` for a well-formed row).
        messages: Error messages from parsing.
        loaded: The model to score with (its name and version go into every row).
        top_k: Topics listed in ``top_topics``.
        top_words: Words listed per top topic.
        raw_values: The messages' raw values; when given, a row whose value is more than one
            JSON value (trailing data) becomes ``not_json`` (:func:`check_single_json`).

    Returns:
        A pandas DataFrame with the columns of :func:`_scored_fields`, one row per input row.
    """
    import pandas as pd

    n = len(texts)
    codes = [c if isinstance(c, str) else None for c in codes]
    messages = [m if isinstance(m, str) else None for m in messages]
    if raw_values is not None:
        apply_single_json_check(raw_values, codes, messages)
    todo = [i for i, c in enumerate(codes) if c is None]
    weights: list = [None] * n
    tops: list = [None] * n
    n_tokens: list = [None] * n
    n_oov: list = [None] * n
    scorer = loaded.scorer
    if todo:
        result = scorer.score_texts([texts[i] for i in todo])
        for j, i in enumerate(todo):
            if result.tokens is not None and result.tokens[j] >= 0:  # the drift monitor's OOV counts
                n_tokens[i], n_oov[i] = int(result.tokens[j]), int(result.oov_tokens[j])
            err = result.errors[j]
            if err is not None:
                codes[i], messages[i] = err.code, err.message
            else:
                row = result.weights[j]  # (K,)
                weights[i] = row
                tops[i] = scorer.top_topics(row, k=top_k, words=top_words)
    now = pd.Timestamp.now(tz="UTC")
    return pd.DataFrame(
        {
            ERROR_CODE_COL: codes,
            ERROR_MESSAGE_COL: messages,
            TOPIC_WEIGHTS_COL: weights,
            TOP_TOPICS_COL: tops,
            MODEL_NAME_COL: [loaded.name] * n,
            MODEL_VERSION_COL: [loaded.version] * n,
            SCORED_AT_COL: [now] * n,
            N_TOKENS_COL: pd.array(n_tokens, dtype="Int32"),
            N_OOV_TOKENS_COL: pd.array(n_oov, dtype="Int32"),
        }
    )


def _as_spec(model: Union[str, ModelSpec]) -> ModelSpec:
    if isinstance(model, ModelSpec):
        return model
    if isinstance(model, str):
        return ModelSpec(model)
    raise TypeError(f"model={model!r} must be a model reference string or a ModelSpec.")


def score_batch(
    df: "DataFrame",
    model: Union[str, ModelSpec],
    top_k: int = 3,
    top_words: int = 5,
    scoring_udf: str = "map_in_pandas",
    input_col: str = TEXT_COL,
    keep_input: bool = False,
) -> "DataFrame":
    """Score parsed messages with the shared :class:`~ntm_spark.serving.scoring.TopicScorer`.

    The model is loaded once per Python worker (:func:`~ntm_spark.serving.model_loader.get_loader`)
    and re-checked for a new version between Arrow batches (hot swap).

    Args:
        df: The output of :func:`parse_messages` (or any frame with ``input_col``,
            ``error_code`` and ``error_message``).
        model: A model reference or a :class:`~ntm_spark.serving.model_loader.ModelSpec`.
        top_k: Topics listed in ``top_topics``.
        top_words: Words listed per top topic.
        scoring_udf: ``map_in_pandas`` (default) or ``pandas_udf`` (a scalar Arrow UDF).
        input_col: The text column; it is dropped from the result unless ``keep_input``.
        keep_input: Keep ``input_col`` (the stream's Parquet sink does, so that ``ntm train
            --warm-start --data <sink>`` retrains on what the stream saw).

    Returns:
        ``df`` without ``input_col`` (unless ``keep_input``), ``raw_value`` kept only for dead letters, and
        ``error_code``/``error_message`` updated plus ``topic_weights``, ``top_topics``,
        ``model_name``, ``model_version`` and ``scored_at``.
    """
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    spec = _as_spec(model)
    if scoring_udf not in SCORING_UDFS:
        raise ValueError(f"scoring_udf={scoring_udf!r}: choose one of {list(SCORING_UDFS)}.")
    for name in (input_col, ERROR_CODE_COL, ERROR_MESSAGE_COL):
        if name not in df.columns:
            raise ValueError(f"score_batch needs a {name!r} column, got {df.columns!r}: pass the output of parse_messages.")
    top_k, top_words = int(top_k), int(top_words)
    new_fields = _scored_fields()
    new_names = {f.name for f in new_fields}
    keep = [c for c in df.columns if (keep_input or c != input_col) and c not in new_names]
    has_raw = RAW_VALUE_COL in df.columns

    if scoring_udf == "map_in_pandas":
        schema = T.StructType([df.schema[c] for c in keep] + new_fields)

        def score_partition(batches: Iterator["pd.DataFrame"]) -> Iterator["pd.DataFrame"]:
            loader = get_loader(spec)
            for pdf in batches:
                scored = score_texts_frame(
                    pdf[input_col].tolist(),
                    pdf[ERROR_CODE_COL].tolist(),
                    pdf[ERROR_MESSAGE_COL].tolist(),
                    loader.get(),
                    top_k,
                    top_words,
                    pdf[RAW_VALUE_COL].tolist() if has_raw else None,
                )
                out = pdf[keep].reset_index(drop=True)
                for name in scored.columns:
                    out[name] = scored[name]
                yield out

        scored_df = df.mapInPandas(score_partition, schema)
    else:
        import pandas as pd
        from pyspark.sql.functions import pandas_udf

        def score_series(texts, codes, messages, raws):  # noqa: ANN001, ANN202 - hints set below
            loaded = get_loader(spec).get()
            return score_texts_frame(
                texts.tolist(), codes.tolist(), messages.tolist(), loaded, top_k, top_words, raws.tolist() if has_raw else None
            )

        # Real classes, not the postponed strings of this module, so Spark can infer the UDF kind.
        score_series.__annotations__ = {
            "texts": pd.Series, "codes": pd.Series, "messages": pd.Series, "raws": pd.Series, "return": pd.DataFrame,
        }  # fmt: skip
        score_udf = pandas_udf(score_series, T.StructType(new_fields))
        raw_arg = F.col(RAW_VALUE_COL) if has_raw else F.lit(None).cast("string")

        scored_df = df.select(
            *keep, score_udf(F.col(input_col), F.col(ERROR_CODE_COL), F.col(ERROR_MESSAGE_COL), raw_arg).alias("_scored")
        )
        scored_df = scored_df.select(*[c for c in keep if c not in (ERROR_CODE_COL, ERROR_MESSAGE_COL)], "_scored.*")
    if RAW_VALUE_COL in scored_df.columns:
        # The raw value only matters for dead letters; dropping it keeps output rows small.
        scored_df = scored_df.withColumn(
            RAW_VALUE_COL, F.when(F.col(ERROR_CODE_COL).isNotNull(), F.col(RAW_VALUE_COL))
        )
    return scored_df


# ----------------------------------------------------------------------------- records


def _passthrough_cols(df: "DataFrame") -> list:
    from pyspark.sql import functions as F

    return [F.parse_json(F.col(c)).alias(c[len(EXTRA_PREFIX) :]) for c in df.columns if c.startswith(EXTRA_PREFIX)]


def _decode_fallback_field(df: "DataFrame") -> list:
    """``decode_fallback: true`` for a message whose bytes were decoded as Latin-1 (absent otherwise)."""
    from pyspark.sql import functions as F

    if DECODE_FALLBACK_COL not in df.columns:
        return []
    return [F.when(F.col(DECODE_FALLBACK_COL), F.lit(True)).alias(DECODE_FALLBACK_COL)]


def _output_value(df: "DataFrame") -> Any:
    from pyspark.sql import functions as F

    return F.to_json(
        F.struct(
            F.col(ID_COL),
            F.col(TOPIC_WEIGHTS_COL),
            F.col(TOP_TOPICS_COL),
            F.col(MODEL_NAME_COL),
            F.col(MODEL_VERSION_COL),
            F.col(SCORED_AT_COL),
            F.col(SOURCE_TOPIC_COL),
            F.col(SOURCE_PARTITION_COL),
            F.col(SOURCE_OFFSET_COL),
            *_decode_fallback_field(df),
            *_passthrough_cols(df),
        )
    )


def _dead_letter_value(df: "DataFrame") -> Any:
    from pyspark.sql import functions as F

    return F.to_json(
        F.struct(
            F.col(ID_COL),
            F.col(ERROR_CODE_COL),
            F.col(ERROR_MESSAGE_COL),
            F.col(RAW_VALUE_COL),
            F.col(RAW_TRUNCATED_COL),
            F.col(KEY_COL),
            F.col(SOURCE_TOPIC_COL),
            F.col(SOURCE_PARTITION_COL),
            F.col(SOURCE_OFFSET_COL),
            F.col(SOURCE_TIMESTAMP_COL),
            F.col(SCORED_AT_COL).alias(FAILED_AT_FIELD),
            F.col(MODEL_VERSION_COL),
            *(
                [F.coalesce(F.col(DECODE_FALLBACK_COL), F.lit(False)).alias(DECODE_FALLBACK_COL)]
                if DECODE_FALLBACK_COL in df.columns
                else []
            ),
        ),
        {"ignoreNullFields": "false"},
    )


def to_output_records(scored: "DataFrame") -> "DataFrame":
    """Kafka records (``key`` = id, ``value`` = output JSON) for the scored rows of :func:`score_batch`."""
    from pyspark.sql import functions as F

    good = scored.filter(F.col(ERROR_CODE_COL).isNull())
    return good.select(F.col(ID_COL).alias("key"), _output_value(scored).alias("value"))


def to_dead_letters(scored: "DataFrame") -> "DataFrame":
    """Kafka records (``key`` = input key, ``value`` = dead-letter JSON) for the failed rows of :func:`score_batch`."""
    from pyspark.sql import functions as F

    bad = scored.filter(F.col(ERROR_CODE_COL).isNotNull())
    return bad.select(F.col(KEY_COL).alias("key"), _dead_letter_value(scored).alias("value"))


def to_kafka_records(scored: "DataFrame", output_topic: str, dead_letter_topic: str) -> "DataFrame":
    """One Kafka sink for both: ``topic`` is the output or the dead-letter topic per row.

    A single projection (no union) so the scorer runs once per row.
    """
    from pyspark.sql import functions as F

    for name, value in (("output_topic", output_topic), ("dead_letter_topic", dead_letter_topic)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name}={value!r} must be a Kafka topic name.")
    ok = F.col(ERROR_CODE_COL).isNull()
    return scored.select(
        F.when(ok, F.lit(output_topic)).otherwise(F.lit(dead_letter_topic)).alias("topic"),
        F.when(ok, F.col(ID_COL)).otherwise(F.col(KEY_COL)).alias("key"),
        F.when(ok, _output_value(scored)).otherwise(_dead_letter_value(scored)).alias("value"),
    )


def drift_metric_columns(scored: "DataFrame", num_topics: int) -> list:
    """The drift monitor's per-batch sums, as observed-metric aggregates (one pass, no extra Spark job).

    ``drift_normalized``, ``drift_empty``, ``drift_tokens``, ``drift_oov_tokens`` (longs) and, over the
    scored rows, ``drift_weight_sum`` / ``drift_weight_sumsq`` (``num_topics`` doubles) and
    ``drift_argmax`` (``num_topics`` longs): what :class:`ntm_spark.core.drift.WindowCounts` adds up.
    A row whose weights are shorter than ``num_topics`` (a hot swap to a model with fewer topics)
    adds nothing to the missing topics: ``get`` gives null, never an error.
    """
    from pyspark.sql import functions as F

    from ntm_spark.serving.scoring import EMPTY_AFTER_NORMALIZATION

    if int(num_topics) < 1:
        raise ValueError(f"num_topics={num_topics!r} must be >= 1.")

    def col_or_null(name: str) -> Any:
        return F.col(name) if name in scored.columns else F.lit(None).cast("int")

    def total(expr: Any) -> Any:  # a long sum, 0 for a batch without such rows
        return F.coalesce(F.sum(expr), F.lit(0).cast("long"))

    w = F.col(TOPIC_WEIGHTS_COL)
    argmax = F.array_position(w, F.array_max(w))  # 1-based; 0 or null for a dead letter
    n_tokens = col_or_null(N_TOKENS_COL)
    return [
        total(n_tokens.isNotNull().cast("long")).alias("drift_normalized"),
        total((F.col(ERROR_CODE_COL) == F.lit(EMPTY_AFTER_NORMALIZATION)).cast("long")).alias("drift_empty"),
        total(n_tokens.cast("long")).alias("drift_tokens"),
        total(col_or_null(N_OOV_TOKENS_COL).cast("long")).alias("drift_oov_tokens"),
        F.array(*[F.coalesce(F.sum(F.get(w, k).cast("double")), F.lit(0.0)) for k in range(num_topics)]).alias("drift_weight_sum"),
        F.array(*[F.coalesce(F.sum(F.pow(F.get(w, k).cast("double"), 2)), F.lit(0.0)) for k in range(num_topics)]).alias(
            "drift_weight_sumsq"
        ),
        F.array(*[total((argmax == F.lit(k + 1)).cast("long")) for k in range(num_topics)]).alias("drift_argmax"),
    ]


def observe_metrics(scored: "DataFrame", name: str = METRICS_NAME, drift_topics: Optional[int] = None) -> "DataFrame":
    """Attach per-batch counts (records, scored, dead letters) and the model version as observed metrics.

    With ``drift_topics`` (the model's K), also the drift monitor's sums (:func:`drift_metric_columns`).
    """
    from pyspark.sql import functions as F

    ok = F.col(ERROR_CODE_COL).isNull()
    return scored.observe(
        name,
        F.count(F.lit(1)).alias("records"),
        F.coalesce(F.sum(ok.cast("long")), F.lit(0)).alias("scored"),
        F.coalesce(F.sum((~ok).cast("long")), F.lit(0)).alias("dead_letters"),
        F.max(F.col(MODEL_VERSION_COL)).alias("model_version"),
        *(
            [F.coalesce(F.sum(F.col(DECODE_FALLBACK_COL).cast("long")), F.lit(0)).alias("decoded_latin1")]
            if DECODE_FALLBACK_COL in scored.columns
            else []
        ),
        *(drift_metric_columns(scored, drift_topics) if drift_topics else []),
    )


# ----------------------------------------------------------------------------- observability


def _progress_summary(progress: Any, totals: dict) -> dict:
    metrics = {}
    observed = getattr(progress, "observedMetrics", None) or {}
    row = observed.get(METRICS_NAME)
    if row is not None:
        metrics = row.asDict() if hasattr(row, "asDict") else dict(row)
    totals["scored"] = totals.get("scored", 0) + int(metrics.get("scored") or 0)
    totals["dead_letters"] = totals.get("dead_letters", 0) + int(metrics.get("dead_letters") or 0)
    totals["decoded_latin1"] = totals.get("decoded_latin1", 0) + int(metrics.get("decoded_latin1") or 0)
    if metrics.get("model_version") is not None:
        totals["model_version"] = metrics["model_version"]
    duration = getattr(progress, "durationMs", None) or {}
    return {
        "query_id": str(progress.id),
        "name": progress.name,
        "batch_id": progress.batchId,
        "timestamp": progress.timestamp,
        "num_input_rows": progress.numInputRows,
        "input_rows_per_second": progress.inputRowsPerSecond,
        "processed_rows_per_second": progress.processedRowsPerSecond,
        "batch_duration_ms": getattr(progress, "batchDuration", None) or duration.get("triggerExecution"),
        "scored": int(metrics.get("scored") or 0),
        "dead_letters": int(metrics.get("dead_letters") or 0),
        "model_version": totals.get("model_version"),
        "total_scored": totals["scored"],
        "total_dead_letters": totals["dead_letters"],
        "total_decoded_latin1": totals["decoded_latin1"],
        "state": "running",
        "updated_at": time.time(),
    }


def make_listener(status_file: Optional[str] = None, extra: Optional[Any] = None) -> Any:
    """Return a ``StreamingQueryListener`` that logs each batch and writes the latest to ``status_file``.

    Logged per batch: input rate, processing rate, batch duration, scored and
    dead-letter counts (and running totals), and the model version. ``ntm stream
    --status`` prints ``status_file``; ``extra()`` (e.g. the latest drift window) is added to it.
    """
    from pyspark.sql.streaming import StreamingQueryListener

    class StreamMetricsListener(StreamingQueryListener):
        """Logs the progress of the ntm streaming queries."""

        def __init__(self) -> None:
            self.totals: dict = {}
            self.last: Optional[dict] = None
            self.batches = 0

        def onQueryStarted(self, event: Any) -> None:  # noqa: N802 - Spark's API
            log.info("stream query started: id=%s name=%s", event.id, event.name)

        def onQueryProgress(self, event: Any) -> None:  # noqa: N802
            summary = _progress_summary(event.progress, self.totals)
            self.last = summary
            self.batches += 1
            log.info(
                "batch %s: %s rows, input %.1f rows/s, processed %.1f rows/s, %s ms; scored %d, dead letters %d "
                "(total %d / %d); model version %s",
                summary["batch_id"],
                summary["num_input_rows"],
                summary["input_rows_per_second"] or 0.0,
                summary["processed_rows_per_second"] or 0.0,
                summary["batch_duration_ms"],
                summary["scored"],
                summary["dead_letters"],
                summary["total_scored"],
                summary["total_dead_letters"],
                summary["model_version"],
            )
            if status_file:
                write_status(status_file, {**summary, **(extra() if extra is not None else {})})

        def onQueryIdle(self, event: Any) -> None:  # noqa: N802
            pass  # idle triggers carry no data; the last progress stays in the status file

        def onQueryTerminated(self, event: Any) -> None:  # noqa: N802
            if event.exception:
                log.error("stream query %s terminated with an error: %s", event.id, event.exception)
            else:
                log.info("stream query %s stopped", event.id)

    return StreamMetricsListener()


def write_status(path: Union[str, os.PathLike], summary: dict) -> None:
    """Write ``summary`` as JSON, atomically (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(summary, indent=2, default=str))
    os.replace(tmp, path)


def read_status(path: Union[str, os.PathLike]) -> Optional[dict]:
    """Return the last status written by the listener, or ``None`` when there is none."""
    path = Path(path)
    if not path.is_file():
        return None
    return json.loads(path.read_text())
