"""Preprocessing transforms: documents -> tokens -> vocabulary -> bag-of-words splits.

Every function but :func:`preprocess_corpus` is DataFrame in, DataFrame (or
:class:`~ntm_spark.core.vocab.Vocabulary`) out, with ``input_col``/``output_col``
parameters; reading and writing live in :mod:`ntm_spark.spark.io`.

The heavy step, text normalization, runs in the executors' Python workers through
``mapInArrow`` (Arrow batches, not row-at-a-time UDFs; ``mapInPandas``' Arrow-native form,
which hands the same batches over without building pandas frames, so the workers never
import pandas) and calls :func:`ntm_spark.core.text.get_normalizer`, so WordNet and the lemma
cache are built once per worker and the rules are the very ones the scorer applies. The
pipeline caches each document's tokens as one space-joined string (``joined=True``), which
is much cheaper for the JVM to cache and to hand back to Python than an array of strings.

Vocabulary (:func:`fit_vocabulary`) follows Spark ML ``CountVectorizer`` (and
scikit-learn's): keep the terms whose document frequency is within
``[min_df, max_df]`` (a value ``>= 1`` is a count, below 1 a fraction of the
documents; ``max_df`` of exactly ``1.0`` means all documents), then the
``vocab_size`` most frequent by total count. One intended difference: ties at the
cut-off are broken by the term, alphabetically. Spark's ``CountVectorizer.fit``
orders by count only (``RDD.top``), so which tied terms it keeps depends on the
partitioning, and ``vocab.txt`` and its sha256 could change from run to run.
Index order is by count (most frequent first), then by term.
:func:`to_count_vectorizer_model` turns the vocabulary into a Spark ML
``CountVectorizerModel`` for pipelines that want ``SparseVector`` features.

Documents are dropped, and counted by reason (:data:`DROP_REASONS`), when their id
is missing, their text is empty or blank, larger than ``max_doc_bytes``, or binary
junk, when their id repeats (one copy is kept), and when they have ``<= threshold``
in-vocabulary words (as in the notebook, which dropped them after vectorizing).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

from ntm_spark.core.checks import (
    BINARY,
    BINARY_CONTROL_FRACTION,
    CONTROL_CHARS,
    EMPTY_TEXT,
    MAX_TEXT_BYTES,
    MISSING_TEXT,
    TOO_LARGE,
)
from ntm_spark.core.contract import IN_VOCAB_TOKENS_KEY, TOKENS_KEY
from ntm_spark.core.schema import (
    ID_COL,
    INDICES_COL,
    N_WORDS_COL,
    SPLITS,
    TEXT_COL,
    TOKENS_COL,
    VALUES_COL,
)
from ntm_spark.core.vocab import Vocabulary
from ntm_spark.spark.io import DECODE_FALLBACK_COL, SOURCE_SPLIT_COL, bow_spark_schema

if TYPE_CHECKING:  # pragma: no cover
    import threading

    from pyspark.ml.feature import CountVectorizerModel
    from pyspark.sql import Column, DataFrame, SparkSession

    from ntm_spark.core.config import PreprocessConfig

log = logging.getLogger(__name__)

#: Why a document was dropped (null when it is kept).
DROP_REASON_COL = "drop_reason"
#: The split a document goes to: ``train``, ``validation`` or ``test``.
SPLIT_COL = "split"
#: A seeded hash of the id: assigns splits and orders documents in the output (the shuffle).
SHUFFLE_KEY_COL = "shuffle_key"

#: Drop reasons, in the order they are checked.
#: The reasons :func:`flag_documents` gives (the rest come later: repeated ids, too few counted words).
FLAG_REASONS = ("missing_id", MISSING_TEXT, EMPTY_TEXT, TOO_LARGE, BINARY)
DROP_REASONS = (*FLAG_REASONS, "duplicate_id", "too_short")

_HASH_SCALE = float(1 << 52)
_N_TOKENS_COL = "_n_tokens"


class EmptyCorpusError(ValueError):
    """No usable document (or no vocabulary word) is left to write."""


# ----------------------------------------------------------------------------- documents


def document_problem(text: "Column", max_text_bytes: int = MAX_TEXT_BYTES) -> "Column":
    """Return the document check's code for a string column (null when the text is fine), in the JVM.

    The same rules, order and codes as :func:`ntm_spark.core.checks.check_text` (the
    definition; a string column cannot be ``text_not_string``): ``missing_text``,
    ``empty_text``, ``too_large`` and ``binary``. ``tests/ntm_spark/core/test_checks.py`` pins the two.
    """
    from pyspark.sql import functions as F

    n_chars = F.length(text)
    # The rules are evaluated in order and short-circuit, so a clean text is scanned once (the
    # control-character regex). A whole-text regex first copies the text into a Java string: the
    # NUL search and the two regexes on every text were a quarter of the tokenizing tasks' JVM samples.
    n_control = n_chars - F.length(F.regexp_replace(text, CONTROL_CHARS, ""))
    return (
        F.when(text.isNull(), F.lit(MISSING_TEXT))
        .when(_is_blank(text), F.lit(EMPTY_TEXT))
        .when(F.octet_length(text) > F.lit(int(max_text_bytes)), F.lit(TOO_LARGE))
        .when(
            # A NUL is a control character: texts without any (nearly all) are settled by one scan.
            text.rlike(CONTROL_CHARS)
            & ((F.instr(text, "\x00") > 0) | (n_control > F.lit(BINARY_CONTROL_FRACTION) * n_chars)),
            F.lit(BINARY),
        )
    )


def flag_documents(
    df: "DataFrame",
    input_col: str = TEXT_COL,
    output_col: str = DROP_REASON_COL,
    id_col: str = ID_COL,
    max_doc_bytes: int = MAX_TEXT_BYTES,
) -> "DataFrame":
    """Add ``output_col``: why a document cannot be used (see :data:`DROP_REASONS`), else null.

    Runs in the JVM (no Python). Checks, in order: ``missing_id`` (null or blank id), then
    the document checks every path shares (:func:`document_problem`).
    """
    from pyspark.sql import functions as F

    if max_doc_bytes < 1:
        raise ValueError(f"max_doc_bytes={max_doc_bytes!r} must be >= 1.")
    reason = F.when(_is_blank(F.col(id_col)), F.lit("missing_id")).otherwise(document_problem(F.col(input_col), max_doc_bytes))
    return df.withColumn(output_col, reason)


def _is_blank(col: "Column") -> "Column":
    r"""Null, empty, or only whitespace (Java's ``\s``); only a text that starts with whitespace is scanned.

    ``\A``/``\z``, not ``^``/``$``: Java's ``$`` also matches before a final line terminator,
    and NEL (U+0085) is one, so ``^\s*$`` called ``"\f\x85"`` blank (found by the parity test).
    """
    from pyspark.sql import functions as F

    return col.isNull() | (F.octet_length(col) == 0) | (F.substring(col, 1, 1).rlike(r"\A\s\z") & col.rlike(r"\A\s*\z"))


def tokenize_documents(
    df: "DataFrame",
    input_col: str = TEXT_COL,
    output_col: str = TOKENS_COL,
    clean: bool = True,
    stop_words: Union[str, Sequence[str], None] = "english",
    joined: bool = False,
    count_col: Optional[str] = None,
    rules: Optional[str] = None,
) -> "DataFrame":
    """Add ``output_col``: each text normalized by :mod:`ntm_spark.core.text`.

    Runs as ``mapInArrow`` in the Python workers, each of which builds one
    :class:`~ntm_spark.core.text.TextNormalizer` (WordNet plus lemma cache) and reuses it.

    Args:
        df: Any DataFrame with a string column ``input_col`` (nulls give no tokens).
        input_col: The text column.
        output_col: The new tokens column: ``array<string>``, or a string when ``joined``.
        clean: Strip newsgroup header, quotes and signature first.
        stop_words: ``"english"``, ``"none"`` or a list of words.
        joined: Give each document's tokens as one string, separated by single spaces (a token
            never holds whitespace). One string per document is much cheaper than an array of
            about a hundred to cache and to move between the JVM and Python, which is why
            :func:`preprocess_corpus` uses it; :func:`count_terms` and
            :func:`vectorize_documents` take either form.
        count_col: Also add this ``int`` column, each document's number of tokens, so that
            totals need no pass over the tokens.
        rules: The text rule set (``ntm_spark.core.text.TEXT_RULE_SETS``); ``None``: the default.
    """
    from pyspark.sql import types as T

    from ntm_spark.core.text import resolve_stop_words, resolve_text_rules

    rules = resolve_text_rules(rules)  # fail on the driver for an unknown name

    _require_columns(df, input_col=input_col)
    for param, name in {"output_col": output_col, "count_col": count_col}.items():
        if name in df.columns:
            raise ValueError(f"{param}={name!r} already exists in the DataFrame: choose another name.")
    if count_col == output_col:
        raise ValueError(f"count_col={count_col!r} must differ from output_col.")
    resolve_stop_words(stop_words)  # fail here, on the driver, for a bad setting
    stop = stop_words if isinstance(stop_words, str) or stop_words is None else sorted(stop_words)
    tokens_type = T.StringType() if joined else T.ArrayType(T.StringType(), False)
    fields = [T.StructField(output_col, tokens_type, False)]
    if count_col:
        fields.append(T.StructField(count_col, T.IntegerType(), False))
    schema = T.StructType(df.schema.fields + fields)
    names = [*df.columns, output_col] + ([count_col] if count_col else [])

    def normalize_batches(batches):
        from itertools import chain

        import numpy as np
        import pyarrow as pa

        from ntm_spark.core.text import get_normalizer

        normalize = get_normalizer(clean=clean, stop_words=stop, rules=rules).normalize
        for batch in batches:
            docs = [normalize(t) for t in batch.column(input_col).to_pylist()]  # texts are str or None
            lengths = np.fromiter(map(len, docs), dtype=np.int32, count=len(docs))
            if joined:
                tokens = _string_array([" ".join(d) for d in docs])
            else:
                tokens = pa.ListArray.from_arrays(_offsets(lengths), _string_array(list(chain.from_iterable(docs))))
            columns = [*batch.columns, tokens] + ([_numpy_array(lengths)] if count_col else [])
            yield pa.RecordBatch.from_arrays(columns, names=names)

    return df.mapInArrow(normalize_batches, schema)


def _numpy_array(values):
    """Return a primitive Arrow array over a 1-D NumPy array's memory.

    The Python workers build Arrow arrays from buffers because ``pa.array`` imports pandas
    (about 0.3 s in each worker), which nothing here otherwise needs.
    """
    import numpy as np
    import pyarrow as pa

    values = np.ascontiguousarray(values)
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values), [None, pa.py_buffer(values)])


def _to_numpy(array):
    """Return a NumPy view of an Arrow integer array without nulls (``to_numpy`` imports pandas)."""
    import numpy as np
    import pyarrow as pa

    if not pa.types.is_signed_integer(array.type) or array.null_count:
        raise TypeError(f"expected a signed integer array without nulls, got {array.type} with {array.null_count} nulls.")
    dtype = np.dtype(f"int{array.type.bit_width}")
    return np.frombuffer(array.buffers()[1], dtype=dtype, count=len(array), offset=array.offset * dtype.itemsize)


def _offsets(lengths):
    """Return the ``int32`` Arrow offsets (a list or string array's first buffer) of items of ``lengths``."""
    import numpy as np

    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if offsets[-1] > np.iinfo(np.int32).max:
        raise ValueError(
            f"an Arrow batch holds {int(offsets[-1])} items or bytes, more than an int32 offset allows: "
            "lower spark.sql.execution.arrow.maxRecordsPerBatch."
        )
    return _numpy_array(offsets.astype(np.int32))


def _string_array(strings: Sequence[str]):
    """Return an Arrow ``string`` array (no nulls) built from its buffers (see :func:`_numpy_array`)."""
    import numpy as np
    import pyarrow as pa

    encoded = [s.encode("utf-8") for s in strings]
    offsets = _offsets(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)))
    return pa.Array.from_buffers(pa.string(), len(encoded), [None, offsets.buffers()[1], pa.py_buffer(b"".join(encoded))])


def _is_joined(df: "DataFrame", col: str) -> bool:
    """Return whether ``col`` holds joined tokens (a string, see :func:`tokenize_documents`) rather than an array."""
    from pyspark.sql import types as T

    return isinstance(df.schema[col].dataType, T.StringType)


def flag_duplicate_ids(df: "DataFrame", id_col: str = ID_COL) -> tuple["DataFrame", int]:
    """Keep one row per id (the one with the smallest hash of the whole row) and count the others.

    Returns:
        ``(deduplicated DataFrame, number of rows removed)``; the input itself when no id repeats.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    repeats = df.groupBy(id_col).count().filter(F.col("count") > 1).agg(F.sum(F.col("count") - 1)).collect()[0][0]
    if not repeats:
        return df, 0
    order = F.xxhash64(*[F.col(c) for c in df.columns])
    window = Window.partitionBy(id_col).orderBy(order)
    deduped = df.withColumn("_row", F.row_number().over(window)).filter(F.col("_row") == 1).drop("_row")
    return deduped, int(repeats)


# ----------------------------------------------------------------------------- vocabulary


def count_terms(df: "DataFrame", input_col: str = TOKENS_COL) -> "DataFrame":
    """Return each term's corpus count and document count: ``term``, ``tf``, ``df`` (longs).

    Each partition is counted in its Python worker (``mapInArrow``: no Python object per
    token): Arrow dictionary-encodes the terms and NumPy counts the codes, so only one row per
    distinct term and partition is shuffled, and one aggregation sums them. A worker holds
    one partition's distinct terms at a time (tens of MB for a few hundred thousand terms),
    never the corpus. ``input_col`` is an ``array<string>`` or a joined tokens string (see
    :func:`tokenize_documents`). Null token lists and null or empty tokens are not counted
    (an empty string cannot be a vocabulary word).
    """
    from pyspark.sql import functions as F

    _require_columns(df, input_col=input_col)
    joined = _is_joined(df, input_col)

    def partial_counts(batches):
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        terms, tfs, dfs = [], [], []
        for batch in batches:
            tokens = batch.column(0)
            if joined:
                tokens = pc.split_pattern(tokens, " ")  # "" gives [""]: dropped below with the nulls
            flat = pc.list_flatten(tokens)
            # Null and empty terms have no (or zero) length: a null or false mask drops them.
            keep = pc.cast(pc.binary_length(flat), pa.bool_())
            flat, docs = flat.filter(keep), pc.list_parent_indices(tokens).filter(keep)
            if not len(flat):
                continue
            encoded = pc.dictionary_encode(flat)
            codes = _to_numpy(encoded.indices).astype(np.int64)
            n_terms = len(encoded.dictionary)
            # Distinct (document, term) pairs: a document lies within one batch, so the
            # per-batch document counts add up.
            pairs = np.unique(_to_numpy(docs).astype(np.int64) * n_terms + codes)
            terms.append(encoded.dictionary)
            tfs.append(np.bincount(codes, minlength=n_terms))
            dfs.append(np.bincount(pairs % n_terms, minlength=n_terms))
        if terms:
            encoded = pc.dictionary_encode(pa.concat_arrays(terms))
            codes, n_terms = _to_numpy(encoded.indices), len(encoded.dictionary)
            tf = np.bincount(codes, weights=np.concatenate(tfs), minlength=n_terms)
            df = np.bincount(codes, weights=np.concatenate(dfs), minlength=n_terms)
            columns = [encoded.dictionary, _numpy_array(tf.astype(np.int64)), _numpy_array(df.astype(np.int64))]
            yield pa.RecordBatch.from_arrays(columns, names=["term", "tf", "df"])

    partial = df.select(input_col).mapInArrow(partial_counts, "term string, tf long, df long")
    return partial.groupBy("term").agg(F.sum("tf").alias("tf"), F.sum("df").alias("df"))


def select_vocabulary(
    counts: "DataFrame",
    n_docs: int,
    vocab_size: int = 2000,
    min_df: float = 2.0,
    max_df: float = 0.95,
) -> Vocabulary:
    """Pick the vocabulary from :func:`count_terms` output with ``CountVectorizer`` semantics.

    Args:
        counts: ``term``, ``tf``, ``df`` rows (one per term).
        n_docs: The number of documents counted (fractional ``min_df``/``max_df`` refer to it).
        vocab_size: The most words kept.
        min_df: Least documents a word appears in: a count if ``>= 1``, else a fraction.
        max_df: Most documents a word appears in: a fraction if ``<= 1``, else a count.

    Returns:
        The vocabulary, most frequent word first (ties alphabetical). It may be
        smaller than ``vocab_size``.

    Raises:
        EmptyCorpusError: when there are no documents or no word passes the document-frequency limits.
        ValueError: for out-of-range settings.
    """
    from pyspark.sql import functions as F

    if vocab_size < 1:
        raise ValueError(f"vocab_size={vocab_size!r} must be >= 1.")
    if min_df < 0 or max_df <= 0:
        raise ValueError(f"min_df={min_df!r} and max_df={max_df!r} must be positive (counts or fractions).")
    if n_docs == 0:
        raise EmptyCorpusError("cannot fit a vocabulary on 0 documents: check the input and the drop counts.")
    min_count = float(min_df) if min_df >= 1 else float(min_df) * n_docs
    max_count = float(max_df) * n_docs if max_df <= 1 else float(max_df)
    if max_count < min_count:
        raise ValueError(
            f"max_df={max_df!r} allows at most {max_count:g} documents, fewer than min_df={min_df!r} "
            f"({min_count:g} documents) over {n_docs} documents: raise max_df or lower min_df."
        )
    rows = (
        counts.filter((F.col("df") >= F.lit(min_count)) & (F.col("df") <= F.lit(max_count)))
        .orderBy(F.desc("tf"), F.asc("term"))
        .limit(int(vocab_size))
        .collect()
    )
    if not rows:
        raise EmptyCorpusError(
            f"the vocabulary is empty: no word appears in at least min_df={min_df!r} and at most "
            f"max_df={max_df!r} of {n_docs} documents. Lower min_df or raise max_df."
        )
    return Vocabulary(r["term"] for r in rows)


def fit_vocabulary(
    df: "DataFrame",
    input_col: str = TOKENS_COL,
    vocab_size: int = 2000,
    min_df: float = 2.0,
    max_df: float = 0.95,
    n_docs: Optional[int] = None,
) -> Vocabulary:
    """Fit the vocabulary with ``CountVectorizer`` semantics (see the module docstring).

    :func:`count_terms`, then :func:`select_vocabulary`.

    Args:
        df: Documents with a tokens column.
        input_col: The tokens column.
        vocab_size: The most words kept.
        min_df: Least documents a word appears in: a count if ``>= 1``, else a fraction.
        max_df: Most documents a word appears in: a fraction if ``<= 1``, else a count.
        n_docs: ``df.count()`` when already known (saves a pass).

    Returns:
        The vocabulary, most frequent word first (ties alphabetical). It may be
        smaller than ``vocab_size``.

    Raises:
        EmptyCorpusError: when ``df`` is empty or no word passes the document-frequency limits.
        ValueError: for out-of-range settings.
    """
    _require_columns(df, input_col=input_col)
    n_docs = df.count() if n_docs is None else n_docs
    return select_vocabulary(count_terms(df, input_col), n_docs, vocab_size=vocab_size, min_df=min_df, max_df=max_df)


def to_count_vectorizer_model(
    vocabulary: Vocabulary, input_col: str = TOKENS_COL, output_col: str = "features"
) -> "CountVectorizerModel":
    """Return a Spark ML ``CountVectorizerModel`` over ``vocabulary`` (``SparseVector`` features)."""
    from pyspark.ml.feature import CountVectorizerModel

    return CountVectorizerModel.from_vocabulary(list(vocabulary.words), inputCol=input_col, outputCol=output_col)


def vectorize_documents(
    df: "DataFrame",
    vocabulary: Vocabulary,
    input_col: str = TOKENS_COL,
    indices_col: str = INDICES_COL,
    values_col: str = VALUES_COL,
    n_words_col: str = N_WORDS_COL,
    n_tokens_col: Optional[str] = None,
) -> "DataFrame":
    """Add the bag-of-words columns: ascending ``int32`` indices, ``float32`` counts and their sum.

    Uses :meth:`Vocabulary.to_bow`, the same code the scorer runs, in ``mapInArrow``.
    ``input_col`` is an ``array<string>`` or a joined tokens string (see
    :func:`tokenize_documents`); it is dropped. With ``n_tokens_col``, also add each
    document's number of normalized tokens (in the vocabulary or not), so that
    ``n_tokens - n_words`` are its out-of-vocabulary tokens.
    """
    from pyspark.sql import types as T

    _require_columns(df, input_col=input_col)
    joined = _is_joined(df, input_col)
    bow_fields = {f.name: f for f in bow_spark_schema().fields}
    kept = [f for f in df.schema.fields if f.name != input_col]
    schema = T.StructType(
        kept
        + [
            T.StructField(n_words_col, bow_fields[N_WORDS_COL].dataType, False),
            T.StructField(indices_col, bow_fields[INDICES_COL].dataType, False),
            T.StructField(values_col, bow_fields[VALUES_COL].dataType, False),
        ]
        + ([T.StructField(n_tokens_col, T.IntegerType(), False)] if n_tokens_col else [])
    )
    names = [f.name for f in kept]
    out_names = [*names, n_words_col, indices_col, values_col] + ([n_tokens_col] if n_tokens_col else [])

    def vectorize_batches(batches):
        import numpy as np
        import pyarrow as pa

        for batch in batches:
            docs = batch.column(input_col).to_pylist()
            if joined:
                docs = [d.split(" ") if d else () for d in docs]
            bows = [vocabulary.to_bow(tokens or ()) for tokens in docs]
            offsets = _offsets(np.fromiter((len(i) for i, _ in bows), dtype=np.int64, count=len(bows)))
            indices = np.concatenate([i for i, _ in bows]) if bows else np.empty(0, np.int32)
            values = np.concatenate([v for _, v in bows]) if bows else np.empty(0, np.float32)
            n_words = np.fromiter((int(v.sum()) for _, v in bows), dtype=np.int32, count=len(bows))
            columns = [batch.column(name) for name in names]
            columns += [
                _numpy_array(n_words),
                pa.ListArray.from_arrays(offsets, _numpy_array(indices)),
                pa.ListArray.from_arrays(offsets, _numpy_array(values)),
            ]
            if n_tokens_col:
                columns.append(_numpy_array(np.fromiter((len(t or ()) for t in docs), dtype=np.int32, count=len(docs))))
            yield pa.RecordBatch.from_arrays(columns, names=out_names)

    return df.mapInArrow(vectorize_batches, schema)


# ----------------------------------------------------------------------------- splits


def assign_splits(
    df: "DataFrame",
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 42,
    id_col: str = ID_COL,
    output_col: str = SPLIT_COL,
    key_col: str = SHUFFLE_KEY_COL,
    source_split_col: Optional[str] = None,
) -> "DataFrame":
    """Add a seeded split (``train``/``validation``/``test``) and shuffle key per document.

    Each document's split comes from a seeded hash of its id, so it does not depend on
    partitioning and a document keeps its split when the corpus grows; the sizes are
    ``fractions`` of the documents up to sampling noise (not exact counts, which would
    need a global sort).

    Args:
        df: Documents with a unique ``id_col``.
        fractions: ``[train, validation, test]`` summing to 1.
        seed: The shuffle seed.
        id_col: The id column.
        output_col: The new split column.
        key_col: The new shuffle key column (a long); sort by it for a seeded shuffle.
        source_split_col: Keep the corpus's own split: documents whose value is ``test`` go to
            test, the others are split between train and validation in the ratio of
            ``fractions[0]:fractions[1]``.
    """
    from pyspark.sql import functions as F

    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions={list(fractions)!r} must be three non-negative numbers summing to 1.")
    train, validation, _ = (float(f) for f in fractions)
    key = F.xxhash64(F.lit(int(seed)), F.col(id_col))
    u = F.pmod(key, F.lit(1 << 52)).cast("double") / F.lit(_HASH_SCALE)  # uniform in [0, 1)
    random_split = (
        F.when(u < F.lit(train), F.lit("train"))
        .when(u < F.lit(train + validation), F.lit("validation"))
        .otherwise("test")
    )
    if source_split_col:
        share = validation / (train + validation) if train + validation > 0 else 0.0
        official = (
            F.when(F.col(source_split_col) == "test", F.lit("test"))
            .when(u < F.lit(share), F.lit("validation"))
            .otherwise(F.lit("train"))
        )
        split = F.when(F.col(source_split_col).isNull(), random_split).otherwise(official)
    else:
        split = random_split
    return df.withColumn(key_col, key).withColumn(output_col, split)


def drop_short_documents(df: "DataFrame", threshold: int, input_col: str = N_WORDS_COL) -> "DataFrame":
    """Keep the documents with more than ``threshold`` counted words (the notebook's rule)."""
    from pyspark.sql import functions as F

    return df.filter(F.col(input_col) > F.lit(int(threshold)))


def split_partitions(shards: dict[str, int]) -> dict[str, range]:
    """Return the partition ids of each split when all splits share one DataFrame (in ``shards`` order).

    Raises:
        ValueError: for a shard count below 1.
    """
    ranges, start = {}, 0
    for split, n in shards.items():
        if n < 1:
            raise ValueError(f"the number of shards of split {split!r} is {n!r}: it must be >= 1.")
        ranges[split] = range(start, start + int(n))
        start += int(n)
    return ranges


def shard_splits(
    df: "DataFrame",
    partitions: dict[str, range],
    split_col: str = SPLIT_COL,
    key_col: str = SHUFFLE_KEY_COL,
) -> "DataFrame":
    """Shard every split at once: partition ``partitions[split][k]`` holds shard ``k`` of ``split``.

    A document of a split with ``n`` shards goes to shard ``pmod(hash(key), n)`` (Spark's
    hash partitioning, as ``repartition(n, key)`` of that split alone would place it) and
    each partition is sorted by ``key_col``, so one write job produces the same part files,
    in the same order, as one write per split. Rows of a split missing from ``partitions``
    are dropped.
    """
    from pyspark.sql import functions as F

    partition_id = None
    for split, ids in partitions.items():
        shard = F.pmod(F.hash(F.col(key_col)), F.lit(len(ids))) + F.lit(ids.start)
        partition_id = (F.when if partition_id is None else partition_id.when)(F.col(split_col) == split, shard)
    if partition_id is None:
        raise ValueError("partitions is empty: give at least one split and its partition ids.")
    total = max(ids.stop for ids in partitions.values())
    tagged = df.filter(F.col(split_col).isin(list(partitions))).withColumn("_partition", partition_id)
    # The split leads the sort so that a write partitioned by split needs no sort of its own.
    return tagged.repartitionById(total, "_partition").drop("_partition").sortWithinPartitions(split_col, key_col)


# ----------------------------------------------------------------------------- orchestration


@dataclass
class PreprocessResult:
    """What :func:`preprocess_corpus` produces, before anything is written.

    Attributes:
        bow: Every split's bag-of-words documents (``bow_spark_schema`` columns plus
            :data:`SPLIT_COL`), one partition per part file (see :func:`shard_splits`).
            Lazy: writing runs it.
        partitions: Split name -> the partition ids of ``bow`` that hold it, in shard order.
        vocabulary: The fitted vocabulary.
        manifest: The manifest so far; :meth:`finalize_manifest` completes it with the
            written counts.
        documents: The cached token table (release with :meth:`unpersist`).
    """

    bow: "DataFrame"
    partitions: dict[str, range]
    vocabulary: Vocabulary
    manifest: dict[str, Any]
    documents: "DataFrame"
    candidates: dict[str, int] = field(default_factory=dict)
    #: A ``pyspark.sql.Observation`` of each split's ``<split>_tokens`` and ``<split>_in_vocab``
    #: (filled by the write); :meth:`finalize_manifest` records them per split.
    token_counts: Any = None

    def finalize_manifest(self, written: dict[str, dict]) -> dict[str, Any]:
        """Complete the manifest with the per-split counts read back from the written Parquet.

        Raises:
            EmptyCorpusError: when no training document is left, so nothing empty is published.
        """
        manifest = self.manifest
        docs = manifest["documents"]
        too_short = {s: self.candidates.get(s, 0) - written[s]["documents"] for s in written}
        docs["dropped"]["too_short"] = sum(too_short.values())
        docs["too_short_per_split"] = too_short
        docs["per_split"] = {s: written[s]["documents"] for s in written}
        docs["kept"] = sum(docs["per_split"].values())
        if self.token_counts is not None:
            observed = self.token_counts.get
            for split, info in written.items():
                if f"{split}_tokens" in observed:
                    info[TOKENS_KEY] = int(observed[f"{split}_tokens"])
                    info[IN_VOCAB_TOKENS_KEY] = int(observed[f"{split}_in_vocab"])
        manifest["splits"] = written
        threshold = manifest["params"]["threshold"]
        if written.get("train", {}).get("documents", 0) == 0:
            raise EmptyCorpusError(
                f"no training document is left: {docs['dropped']['too_short']} of {docs['read']} documents "
                f"have <= threshold={threshold!r} vocabulary words (dropped: {docs['dropped']}). "
                "Lower --set threshold=..., raise vocab_size, or check the input."
            )
        fractions = dict(zip(SPLITS, manifest["params"]["split"]))
        for split, info in written.items():
            if info["documents"] == 0 and fractions.get(split, 0) > 0:
                manifest["warnings"].append(f"split {split!r} is empty: the corpus is too small for its fraction")
        manifest["finished_at"] = _now()
        for message in manifest["warnings"]:
            log.warning("%s", message)
        return manifest

    def unpersist(self) -> None:
        """Release the cached token table."""
        self.documents.unpersist()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _require_columns(df: "DataFrame", **params: str) -> None:
    for param, name in params.items():
        if name not in df.columns:
            raise ValueError(f"{param}={name!r} is not a column of the DataFrame (columns: {df.columns}).")


def resolve_clean(cfg: "PreprocessConfig") -> bool:
    """Return whether to strip newsgroup noise: ``cfg.clean``, else on for 20 Newsgroups only."""
    return cfg.clean if cfg.clean is not None else cfg.input_format == "20newsgroups"


def resolve_keep_official_split(cfg: "PreprocessConfig") -> bool:
    """Return whether to keep the corpus's own split: ``cfg.keep_official_split``, else on for 20 Newsgroups.

    20 Newsgroups' by-date version splits by posting date (train folder, then test folder);
    mixing the folders puts later posts of a thread in training and earlier ones in test, and
    makes the figures incomparable with published ones, so it is kept by default.
    """
    if cfg.keep_official_split is not None:
        return cfg.keep_official_split
    return cfg.input_format == "20newsgroups"


#: Normalized once by each warmed-up worker, so that WordNet is loaded before the first real batch.
_WARM_UP_TEXT = "Lemmatizing warms up the workers: parliaments, cars and wolves."


def warm_up_python_workers(
    spark: "SparkSession",
    clean: bool = True,
    stop_words: Union[str, Sequence[str], None] = "english",
    rules: Optional[str] = None,
) -> "threading.Thread":
    """Ready a Python worker per local core in the background, while the driver plans; return the thread.

    On a local master, a job's first Python tasks wait for Spark to start its Python worker
    daemon (which imports pyspark), then for each worker's imports and WordNet: about 1 s,
    while planning the job keeps only one of the driver's cores busy. This runs one small
    ``mapInArrow`` job (the same kind of Python runner as :func:`tokenize_documents`, so the
    same daemon and workers serve both) that does that work ahead of time; Spark reuses the
    workers for the tasks that follow. Failures are only logged: the real job reports them.
    Call :meth:`threading.Thread.join` before stopping the session.
    """
    import threading

    n = spark.sparkContext.defaultParallelism
    stop = stop_words if isinstance(stop_words, str) or stop_words is None else sorted(stop_words)

    def warm_up(batches):
        import numpy  # noqa: F401 - imported for the tasks that follow
        import pyarrow as pa
        import pyarrow.compute  # noqa: F401

        from ntm_spark.core.text import get_normalizer

        error = ""
        try:
            get_normalizer(clean=clean, stop_words=stop, rules=rules).normalize(_WARM_UP_TEXT)
        except Exception as err:  # noqa: BLE001 - e.g. no WordNet: returned, and the real tasks raise it
            error = f"{type(err).__name__}: {err}"
        for _ in batches:
            pass
        yield pa.RecordBatch.from_arrays([_string_array([error])], names=["error"])

    # Built here, on the calling thread: the background thread only waits for the result.
    df = spark.range(0, n, numPartitions=n).mapInArrow(warm_up, "error string")

    def run() -> None:
        try:
            spark.sparkContext.setJobDescription("ntm: warm up the Python workers")
            errors = {row["error"] for row in df.collect() if row["error"]}
        except Exception as err:  # noqa: BLE001 - best effort: the job's own tasks report real problems
            errors = {str(err)}
        for error in errors:
            log.debug("warming up the Python workers failed (the tokenizing tasks will say why): %s", error)

    thread = threading.Thread(target=run, name="ntm-warm-up-python-workers", daemon=True)
    thread.start()
    return thread


def resolve_input_path(cfg: "PreprocessConfig") -> str:
    """Return the input path: ``cfg.input_path``, or for 20 Newsgroups the located corpus."""
    if cfg.input_path or cfg.input_format != "20newsgroups":
        return cfg.input_path or ""
    from ntm_spark.spark.corpus import locate_20newsgroups

    return str(locate_20newsgroups(download=os.environ.get("NTM_OFFLINE") != "1"))


def preprocess_corpus(spark: "SparkSession", cfg: "PreprocessConfig") -> PreprocessResult:
    """Read a corpus and build its vocabulary and bag-of-words splits (nothing is written).

    Args:
        spark: The active session.
        cfg: The preprocessing config.

    Returns:
        A :class:`PreprocessResult`; pass it to :func:`ntm_spark.spark.io.write_preprocess_output`.

    Raises:
        ntm_spark.spark.io.InputNotFoundError: when the input path does not exist.
        EmptyCorpusError: when nothing is read, everything is dropped, or the vocabulary is empty.
    """
    from pyspark import StorageLevel
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    import ntm_spark
    from ntm_spark.core.config import to_dict
    from ntm_spark.core.paths import git_commit
    from ntm_spark.core.text import resolve_stop_words
    from ntm_spark.spark import io as ntm_io

    started = _now()
    clean = resolve_clean(cfg)
    stop_words = cfg.stop_words
    resolve_stop_words(stop_words)
    path = resolve_input_path(cfg)
    docs = ntm_io.read_corpus(
        spark,
        path,
        cfg.input_format,
        text_col=cfg.text_col,
        id_col=cfg.id_col,
        label_col=cfg.label_col,
        cache_path=cfg.cache_path,
    )
    if cfg.sample_fraction < 1:
        docs = docs.sample(withReplacement=False, fraction=cfg.sample_fraction, seed=cfg.seed)

    flagged = flag_documents(docs, max_doc_bytes=cfg.max_doc_bytes)
    usable = F.col(DROP_REASON_COL).isNull()
    flagged = flagged.withColumn(TEXT_COL, F.when(usable, F.col(TEXT_COL)))
    source_split = SOURCE_SPLIT_COL if resolve_keep_official_split(cfg) else None
    documents = assign_splits(
        tokenize_documents(
            flagged, clean=clean, stop_words=stop_words, joined=True, count_col=_N_TOKENS_COL, rules=cfg.text_rules
        ).drop(TEXT_COL),
        cfg.split,
        cfg.seed,
        source_split_col=source_split,
    ).persist(StorageLevel.MEMORY_AND_DISK)

    # One pass over the data for every count (it also fills the cache).
    aggs = [F.count(F.lit(1)).alias("read"), F.sum(F.col(DECODE_FALLBACK_COL).cast("long")).alias("decode_fallback")]
    aggs += [F.sum((F.col(DROP_REASON_COL) == r).cast("long")).alias(r) for r in FLAG_REASONS]
    aggs += [F.sum(F.when(usable, F.col(_N_TOKENS_COL)).otherwise(0)).alias("tokens")]
    aggs += [F.sum((usable & (F.col(SPLIT_COL) == s)).cast("long")).alias(f"split_{s}") for s in SPLITS]
    stats = documents.agg(*aggs).collect()[0].asDict()
    stats = {k: int(v or 0) for k, v in stats.items()}
    if stats["read"] == 0:
        documents.unpersist()
        raise EmptyCorpusError(
            f"no documents were read from input_path={path!r} (input_format={cfg.input_format!r}): "
            "check the path and --format."
        )
    dropped = {r: stats[r] for r in FLAG_REASONS}
    n_usable = stats["read"] - sum(dropped.values())
    log.info(
        "read %d documents (%d decoded with a fallback); dropped %s; %d tokens",
        stats["read"],
        stats["decode_fallback"],
        {k: v for k, v in dropped.items() if v},
        stats["tokens"],
    )
    kept = documents.filter(usable).drop(DROP_REASON_COL, _N_TOKENS_COL)
    candidates = {s: stats[f"split_{s}"] for s in SPLITS}
    dropped["duplicate_id"] = 0
    ids_unique = cfg.input_format in ntm_io.UNIQUE_ID_FORMATS
    if not ids_unique and n_usable:
        kept, dropped["duplicate_id"] = flag_duplicate_ids(kept)
    if dropped["duplicate_id"]:
        candidates = {r[SPLIT_COL]: int(r["count"]) for r in kept.groupBy(SPLIT_COL).count().collect()}
    n_kept = n_usable - dropped["duplicate_id"]
    if n_kept <= 0:
        documents.unpersist()
        raise EmptyCorpusError(
            f"all {stats['read']} documents read from {path!r} were dropped ({dropped}): check the input "
            "(empty, binary or oversized documents), text_col, or max_doc_bytes."
        )

    # The splits are assigned above, so the vocabulary (and min_df/max_df) counts only the fitting
    # splits: by default the training split, so no word is chosen by looking at the test documents.
    fit_splits = [s for s in SPLITS if s in cfg.vocab_fit_splits]
    n_fit = sum(candidates.get(s, 0) for s in fit_splits)
    if n_fit == 0:
        documents.unpersist()
        raise EmptyCorpusError(
            f"vocab_fit_splits={list(cfg.vocab_fit_splits)!r} holds no document (documents per split: {candidates}): "
            "fit on splits that have documents, e.g. --set 'vocab_fit_splits=[train, validation, test]'."
        )
    fit_docs = kept if len(fit_splits) == len(SPLITS) else kept.filter(F.col(SPLIT_COL).isin(fit_splits))
    vocabulary = fit_vocabulary(fit_docs, vocab_size=cfg.vocab_size, min_df=cfg.min_df, max_df=cfg.max_df, n_docs=n_fit)
    warnings: list[str] = []
    if dropped["duplicate_id"]:
        warnings.append(f"{dropped['duplicate_id']} documents repeat an id already seen: one copy of each id was kept")
    if len(vocabulary) < cfg.vocab_size:
        warnings.append(
            f"vocabulary has {len(vocabulary)} words, fewer than vocab_size={cfg.vocab_size}: only that many "
            f"words pass min_df={cfg.min_df:g} and max_df={cfg.max_df:g} over the {n_fit} documents of {fit_splits}"
        )
    log.info("vocabulary: %d words (sha256 %s)", len(vocabulary), vocabulary.sha256[:12])

    # All splits in one DataFrame (one vectorizing pass, one write job), partitioned by split and shard.
    partitions = split_partitions({s: cfg.num_train_shards if s == "train" else cfg.num_eval_shards for s in SPLITS})
    vectors = vectorize_documents(kept, vocabulary, n_tokens_col=_N_TOKENS_COL)
    # The OOV baseline of the stream's drift monitor (docs/streaming.md): each split's normalized and
    # in-vocabulary tokens, before short documents are dropped, observed during the one write pass.
    token_counts = Observation("split_tokens")
    vectors = vectors.observe(
        token_counts,
        *[
            agg
            for s in SPLITS
            for agg in (
                F.coalesce(F.sum(F.when(F.col(SPLIT_COL) == s, F.col(_N_TOKENS_COL).cast("long"))), F.lit(0)).alias(f"{s}_tokens"),
                F.coalesce(F.sum(F.when(F.col(SPLIT_COL) == s, F.col(N_WORDS_COL).cast("long"))), F.lit(0)).alias(f"{s}_in_vocab"),
            )
        ],
    )
    bow = drop_short_documents(vectors, cfg.threshold)
    bow = shard_splits(bow, partitions).select(*[f.name for f in bow_spark_schema().fields], SPLIT_COL)

    manifest: dict[str, Any] = {
        "format_version": 1,
        "started_at": started,
        "finished_at": None,
        "code_version": {"git_commit": git_commit(), "ntm_spark": getattr(ntm_spark, "__version__", "unknown")},
        "source": {
            "path": path,
            "format": cfg.input_format,
            "sha256": ntm_io.local_file_sha256(path),
        },
        "params": to_dict(cfg),
        "text_rules": {
            "rules": cfg.text_rules,
            "clean": clean,
            "stop_words": stop_words,
            "module": "ntm_spark.core.text",
        },
        "vocabulary": {
            "file": "vocab.txt",
            "size": len(vocabulary),
            "requested_size": cfg.vocab_size,
            "sha256": vocabulary.sha256,
            "order": "by corpus count, most frequent first; ties alphabetical",
            "fit_on": f"the {n_fit} kept documents of the splits {fit_splits}, after the split",
            "fit_splits": fit_splits,
            "fit_documents": n_fit,
        },
        "documents": {
            "read": stats["read"],
            "kept": None,
            "per_split": {},
            "dropped": dropped,
            "decode_fallback": stats["decode_fallback"],
            "tokens": stats["tokens"],
            "duplicate_id_check": "skipped: ids are file paths, unique by construction" if ids_unique else "checked",
        },
        "split": {
            "method": (
                "official train/test folders (20 Newsgroups by date), validation carved from train by a seeded hash of id"
                if source_split
                else "seeded hash of id"
            ),
            "keep_official_split": bool(source_split),
            "seed": cfg.seed,
            "fractions": list(cfg.split),
        },
        "schema": [{"name": f.name, "type": f.dataType.simpleString()} for f in bow_spark_schema().fields],
        "row_group_size": cfg.row_group_size,
        "warnings": warnings,
    }
    return PreprocessResult(
        bow=bow,
        partitions=partitions,
        vocabulary=vocabulary,
        manifest=manifest,
        documents=documents,
        candidates=candidates,
        token_counts=token_counts,
    )
