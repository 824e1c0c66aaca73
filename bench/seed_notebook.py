"""The seed notebook's preprocessing path as one program: issue 3's baseline (b).

What the SageMaker NTM notebook does, in one Python process, on the same documents and
rules as ``jobs/preprocess.py``: NLTK's ``WordNetLemmatizer`` per token (no cache), scikit-learn's
``CountVectorizer`` (``max_features``/``max_df``/``min_df``), the ``<= threshold`` filter, a
seeded 80/10/10 shuffle-split, and the splits written out (the notebook wrote 8 training shards
as RecordIO-protobuf; here the same Parquet columns and shard counts as the job, plus
``vocab.txt``). Run as its own process so that its wall time, like the Spark job's, counts
interpreter start-up and imports.

The documents are read from the job's unpacked-archive cache (a Parquet of the raw bytes) when
it is given, which is faster than decompressing the archive: the baseline is not handicapped by
reading.

Usage:
    .venv/bin/python bench/seed_notebook.py --output DIR (--archive PATH | --cache PARQUET) \
        [--train-shards 8] [--eval-shards 2]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

START = time.perf_counter()

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from nltk.stem import WordNetLemmatizer  # noqa: E402
from sklearn.feature_extraction.text import CountVectorizer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ntm_spark.core.nltk_data import find_wordnet  # noqa: E402
from ntm_spark.core.schema import bow_arrow_schema  # noqa: E402
from ntm_spark.core.text import ENGLISH_STOP_WORDS, strip_newsgroup_noise  # noqa: E402

TOKEN_RE = re.compile(r"(?u)\b\w\w+\b")


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def read_documents(archive: str | None, cache: str | None) -> list[tuple[str, str, str]]:
    """Return ``(id, label, text)`` for every article, from the Parquet cache or the archive."""
    if cache:
        table = pq.read_table(cache, columns=["id", "label", "content"])
        return [(i, g, _decode(c)) for i, g, c in zip(*(table.column(n).to_pylist() for n in ("id", "label", "content")))]
    from ntm_spark.spark.io import _iter_archive_documents

    return [(doc_id, label, _decode(raw)) for doc_id, label, _split, raw in _iter_archive_documents(archive)]


class LemmaTokenizer:
    """The notebook's tokenizer: clean, lowercase, token pattern, letter first, stop words, lemma per token."""

    def __init__(self) -> None:
        self.wnl = WordNetLemmatizer()

    def __call__(self, doc: str) -> list[str]:
        tokens = TOKEN_RE.findall(strip_newsgroup_noise(doc).lower())
        return [self.wnl.lemmatize(t) for t in tokens if t[0].isalpha() and t not in ENGLISH_STOP_WORDS]


def write_split(rows: np.ndarray, vectors, ids: list[str], labels: list[str], out: Path, shards: int) -> None:
    """Write one split's rows as ``shards`` Parquet files with the job's bag-of-words columns."""
    out.mkdir(parents=True, exist_ok=True)
    schema = bow_arrow_schema()
    for k, part in enumerate(np.array_split(rows, shards)):
        sub = vectors[part]
        indptr = sub.indptr.astype(np.int32)
        table = pa.table(
            {
                "id": [ids[i] for i in part],
                "label": [labels[i] for i in part],
                "n_words": np.asarray(sub.sum(axis=1)).ravel().astype(np.int32),
                "indices": pa.ListArray.from_arrays(indptr, sub.indices.astype(np.int32)),
                "values": pa.ListArray.from_arrays(indptr, sub.data.astype(np.float32)),
            },
            schema=schema,
        )
        pq.write_table(table, out / f"part-{k:05d}.parquet")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--archive", help="the 20 Newsgroups by-date archive")
    src.add_argument("--cache", help="the job's unpacked-archive cache (Parquet of id, label, content)")
    parser.add_argument("--output", required=True)
    parser.add_argument("--train-shards", type=int, default=8)
    parser.add_argument("--eval-shards", type=int, default=2)
    args = parser.parse_args(argv)

    import nltk

    nltk.data.path.insert(0, str(find_wordnet()))
    docs = read_documents(args.archive, args.cache)
    vectorizer = CountVectorizer(tokenizer=LemmaTokenizer(), lowercase=False, token_pattern=None,
                                 stop_words=list(ENGLISH_STOP_WORDS), max_features=2000, max_df=0.95, min_df=2)  # fmt: skip
    vectors = vectorizer.fit_transform([d[2] for d in docs]).astype(np.float32).tocsr()
    keep = np.flatnonzero(np.asarray(vectors.sum(axis=1)).ravel() > 25)
    order = keep[np.random.default_rng(42).permutation(len(keep))]
    n_train, n_val = int(0.8 * len(order)), int(0.1 * len(order))
    splits = {
        "train": (order[:n_train], args.train_shards),
        "validation": (order[n_train : n_train + n_val], args.eval_shards),
        "test": (order[n_train + n_val :], args.eval_shards),
    }
    out = Path(args.output)
    ids, labels = [d[0] for d in docs], [d[1] for d in docs]
    for name, (rows, shards) in splits.items():
        write_split(rows, vectors, ids, labels, out / name, shards)
    (out / "vocab.txt").write_text("\n".join(vectorizer.get_feature_names_out()) + "\n")
    print(f"read {len(docs)} documents, kept {len(keep)}, vocabulary {len(vectorizer.vocabulary_)} words, "
          f"{time.perf_counter() - START:.1f} s after imports began")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
