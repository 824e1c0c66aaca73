"""The comparison peer: a Spark MLlib ``LocalLDAModel`` on the NTM's vocabulary and text rules.

Benchmark code, not part of the product: ``bench/bench_streaming.py`` scores the stream
with it (``start_stream(..., score=lambda parsed: score_batch_lda(parsed, peer))``), so
the NTM is compared like for like: same messages, same normalization (the shared
:class:`~ntm_spark.core.text.TextNormalizer`), same vocabulary, same output records.
Spark's Python workers import this module, so a driver that uses it ships it first
(``spark.sparkContext.addPyFile(".../bench/lda_peer.py")``).

An LDA peer folder::

    <folder>/
      lda/             LocalLDAModel.save()
      vocab.txt        the vocabulary (the NTM model folder's)
      manifest.json    the preprocessing manifest (text rules), when the NTM folder has one
      lemmas.json      the NTM folder's lemma table, when it has one
      peer.json        {"format_version": 1, "version", "num_topics", "topic_words": [[...], ...]}

Example:
    >>> train_lda_peer(spark, bow_df, "models/ntm-1", "models/lda-1", num_topics=20)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional, Sequence, Union

from ntm_spark.core.checks import RowError
from ntm_spark.core.contract import read_lemma_table, read_manifest, read_vocabulary, text_rules_from_manifest
from ntm_spark.core.schema import (
    ERROR_CODE_COL,
    ERROR_MESSAGE_COL,
    INDICES_COL,
    MODEL_NAME_COL,
    MODEL_VERSION_COL,
    SCORED_AT_COL,
    TEXT_COL,
    TOP_TOPICS_COL,
    TOPIC_WEIGHTS_COL,
    VALUES_COL,
)
from ntm_spark.core.text import get_normalizer
from ntm_spark.core.vocab import Vocabulary
from ntm_spark.serving.scoring import EMPTY_AFTER_NORMALIZATION, TopicScorer
from ntm_spark.spark.streaming import RAW_VALUE_COL, apply_single_json_check

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

PEER_FILE = "peer.json"
LDA_DIR = "lda"


def train_lda_peer(
    spark: "SparkSession",
    bow: "DataFrame",
    ntm_folder: Union[str, Path],
    output_dir: Union[str, Path],
    num_topics: Optional[int] = None,
    max_iter: int = 20,
    seed: int = 0,
) -> Path:
    """Train an online-LDA peer on a bag-of-words DataFrame and save an LDA peer folder.

    Args:
        spark: The active session.
        bow: Preprocessed rows with ``indices``/``values`` (:func:`ntm_spark.spark.io.bow_spark_schema`).
        ntm_folder: The NTM model folder whose vocabulary and text rules the peer shares.
        output_dir: The peer folder to write (replaced if it exists).
        num_topics: K; default: the NTM's K.
        max_iter: LDA iterations.
        seed: LDA seed.

    Returns:
        The peer folder.
    """
    from pyspark.ml.clustering import LDA
    from pyspark.ml.linalg import SparseVector, VectorUDT
    from pyspark.sql import functions as F

    ntm_folder, output_dir = Path(ntm_folder), Path(output_dir)
    words = Vocabulary.from_file(ntm_folder / "vocab.txt").words
    if num_topics is None:
        hparams = json.loads((ntm_folder / "hparams.json").read_text())
        num_topics = int(hparams["model"]["num_topics"])
    size = len(words)

    @F.udf(VectorUDT())
    def to_vector(indices: list, values: list) -> Any:
        order = sorted(range(len(indices)), key=lambda i: indices[i])
        return SparseVector(size, [int(indices[i]) for i in order], [float(values[i]) for i in order])

    data = bow.select(to_vector(F.col(INDICES_COL), F.col(VALUES_COL)).alias("features")).cache()
    model = LDA(k=int(num_topics), maxIter=int(max_iter), optimizer="online", seed=int(seed)).fit(data)
    data.unpersist()
    if output_dir.exists():
        shutil.rmtree(output_dir)
    output_dir.mkdir(parents=True)
    model.save(str(output_dir / LDA_DIR))
    shutil.copyfile(ntm_folder / "vocab.txt", output_dir / "vocab.txt")
    for name in ("manifest.json", "lemmas.json"):
        if (ntm_folder / name).is_file():
            shutil.copyfile(ntm_folder / name, output_dir / name)
    topics = model.describeTopics(10).orderBy("topic").collect()
    topic_words = [[words[i] for i in row.termIndices] for row in topics]
    digest = hashlib.sha256()
    for path in sorted((output_dir / LDA_DIR).rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            digest.update(path.read_bytes())
    peer = {"format_version": 1, "version": f"lda-{digest.hexdigest()[:12]}", "num_topics": int(num_topics), "topic_words": topic_words}
    (output_dir / PEER_FILE).write_text(json.dumps(peer, indent=2))
    return output_dir


@dataclass
class LdaPeer:
    """A loaded LDA peer folder (driver side)."""

    folder: Path
    spark_model: Any
    words: tuple
    topic_words: list
    name: str
    version: str
    max_text_bytes: int = 1_000_000

    @classmethod
    def load(cls, folder: Union[str, Path], max_text_bytes: int = 1_000_000) -> "LdaPeer":
        """Load a peer folder written by :func:`train_lda_peer`.

        Raises:
            FileNotFoundError: when ``folder`` is not an LDA peer folder.
        """
        from pyspark.ml.clustering import LocalLDAModel

        folder = Path(folder)
        if not (folder / PEER_FILE).is_file() or not (folder / LDA_DIR).is_dir():
            raise FileNotFoundError(
                f"model_uri={str(folder)!r} is not an LDA peer folder (no {PEER_FILE} and {LDA_DIR}/): "
                "make one with bench/lda_peer.py's train_lda_peer (bench/bench_streaming.py does)."
            )
        peer = json.loads((folder / PEER_FILE).read_text())
        words = Vocabulary.from_file(folder / "vocab.txt").words
        return cls(
            folder=folder,
            spark_model=LocalLDAModel.load(str(folder / LDA_DIR)),
            words=words,
            topic_words=peer["topic_words"],
            name=f"lda:{folder.resolve().name}",
            version=str(peer["version"]),
            max_text_bytes=int(max_text_bytes),
        )


class LdaVectorizer:
    """Text -> in-vocabulary tokens with the NTM's rules (executor side, one per worker)."""

    #: The scorer's own pre-normalization checks (missing, non-string, too large, empty).
    check_text = TopicScorer.check_text

    def __init__(self, folder: Union[str, Path], max_text_bytes: int = 1_000_000) -> None:
        folder = Path(folder)
        self.max_text_bytes = int(max_text_bytes)
        self.vocab = read_vocabulary(folder)
        rules = text_rules_from_manifest(read_manifest(folder, required=False))
        lemma_table, _closed = read_lemma_table(folder, self.vocab)
        self.normalizer = get_normalizer(**rules, lemma_table=lemma_table)

    def tokens(self, text: Any) -> tuple[list, Optional[RowError]]:
        """Return the in-vocabulary tokens of ``text`` (repeats kept), or an error."""
        err = self.check_text(text)
        if err is not None:
            return [], err
        vocab = self.vocab
        toks = [t for t in self.normalizer.normalize(text) if t in vocab]
        if not toks:
            return [], RowError(EMPTY_AFTER_NORMALIZATION, "no vocabulary word is left after normalization")
        return toks, None


_VECTORIZERS: dict = {}
_LOCK = threading.Lock()


def get_vectorizer(folder: str, max_text_bytes: int) -> LdaVectorizer:
    """Return this process's cached :class:`LdaVectorizer` for ``folder``."""
    key = (str(folder), int(max_text_bytes))
    with _LOCK:
        if key not in _VECTORIZERS:
            _VECTORIZERS[key] = LdaVectorizer(folder, max_text_bytes)
        return _VECTORIZERS[key]


# ----------------------------------------------------------------------------- streaming (bench/bench_streaming.py)


def score_batch_lda(
    df: "DataFrame",
    peer: Any,
    top_k: int = 3,
    top_words: int = 5,
    input_col: str = TEXT_COL,
) -> "DataFrame":
    """Score parsed messages with the Spark MLlib LDA peer (:class:`LdaPeer`).

    Same normalization and vocabulary as the NTM (the shared normalizer in a
    ``mapInPandas``), then ``CountVectorizerModel`` and ``LocalLDAModel.transform``
    in the JVM. Returns the same columns as :func:`score_batch`.
    """
    from pyspark.ml.feature import CountVectorizerModel
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    for name in (input_col, ERROR_CODE_COL, ERROR_MESSAGE_COL):
        if name not in df.columns:
            raise ValueError(f"score_batch_lda needs a {name!r} column, got {df.columns!r}: pass the output of parse_messages.")
    keep = [c for c in df.columns if c != input_col]
    tokens_col = "_tokens"
    schema = T.StructType([df.schema[c] for c in keep] + [T.StructField(tokens_col, T.ArrayType(T.StringType()))])
    folder = str(peer.folder)
    max_text_bytes = int(peer.max_text_bytes)

    def tokenize_partition(batches: Iterator["pd.DataFrame"]) -> Iterator["pd.DataFrame"]:
        vectorizer = get_vectorizer(folder, max_text_bytes)
        for pdf in batches:
            codes = pdf[ERROR_CODE_COL].tolist()
            messages = pdf[ERROR_MESSAGE_COL].tolist()
            if RAW_VALUE_COL in pdf.columns:
                apply_single_json_check(pdf[RAW_VALUE_COL].tolist(), codes, messages)
            tokens = []
            for i, text in enumerate(pdf[input_col].tolist()):
                if isinstance(codes[i], str):
                    tokens.append([])
                    continue
                toks, err = vectorizer.tokens(text)
                if err is not None:
                    codes[i], messages[i] = err.code, err.message
                tokens.append(toks)
            out = pdf[keep].reset_index(drop=True)
            out[ERROR_CODE_COL] = [c if isinstance(c, str) else None for c in codes]
            out[ERROR_MESSAGE_COL] = [m if isinstance(m, str) else None for m in messages]
            out[tokens_col] = tokens
            yield out

    tokenized = df.mapInPandas(tokenize_partition, schema)
    counts = CountVectorizerModel.from_vocabulary(list(peer.words), inputCol=tokens_col, outputCol="_features")
    lda = peer.spark_model.copy()
    lda.setFeaturesCol("_features").setTopicDistributionCol("_dist")
    scored = lda.transform(counts.transform(tokenized))
    ok = F.col(ERROR_CODE_COL).isNull()
    weights = vector_to_array(F.col("_dist"), dtype="float32")
    scored = scored.select(
        *[c for c in keep if c not in (ERROR_CODE_COL, ERROR_MESSAGE_COL)],
        ERROR_CODE_COL,
        ERROR_MESSAGE_COL,
        F.when(ok, weights).alias(TOPIC_WEIGHTS_COL),
        F.when(ok, top_topics_expr(weights, peer.topic_words, top_k, top_words)).alias(TOP_TOPICS_COL),
        F.lit(peer.name).alias(MODEL_NAME_COL),
        F.lit(peer.version).alias(MODEL_VERSION_COL),
        F.current_timestamp().alias(SCORED_AT_COL),
    )
    if RAW_VALUE_COL in scored.columns:
        scored = scored.withColumn(RAW_VALUE_COL, F.when(~ok, F.col(RAW_VALUE_COL)))
    return scored


def top_topics_expr(weights: Any, topic_words: Sequence[Sequence[str]], k: int, words: int) -> Any:
    """Return a Spark expression for the ``k`` heaviest topics of an ``array<float>`` column (JVM only)."""
    from pyspark.sql import functions as F

    words_lit = F.array(*[F.array(*[F.lit(w) for w in list(ws)[:words]] or [F.lit(None).cast("string")]) for ws in topic_words])
    pairs = F.transform(weights, lambda w, i: F.struct(w.alias("weight"), i.alias("topic")))
    ordered = F.slice(F.reverse(F.array_sort(pairs)), 1, int(k))
    return F.transform(
        ordered,
        lambda p: F.struct(
            p["topic"].alias("topic"),
            p["weight"].alias("weight"),
            F.filter(F.element_at(words_lit, p["topic"] + 1), lambda x: x.isNotNull()).alias("words"),
        ),
    )
