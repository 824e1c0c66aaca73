"""Column names and schemas: the one place every stage takes them from.

The bag-of-words Parquet written by preprocessing and read by training, scoring
and backfill has these columns (see :data:`BOW_ARROW_SCHEMA`):

=========  ==============  ==============================================
column     type            meaning
=========  ==============  ==============================================
id         string          document id (``split/group/article`` for 20NG)
label      string, null    the document's label, when the corpus has one
n_words    int32           total counted words (sum of ``values``)
indices    list<int32>     vocabulary indices, ascending
values     list<float32>   counts for those indices
=========  ==============  ==============================================
"""

from __future__ import annotations

ID_COL = "id"
TEXT_COL = "text"
LABEL_COL = "label"
TOKENS_COL = "tokens"
N_WORDS_COL = "n_words"
INDICES_COL = "indices"
VALUES_COL = "values"

TOPIC_WEIGHTS_COL = "topic_weights"
TOP_TOPIC_COL = "top_topic"
TOP_TOPICS_COL = "top_topics"
MODEL_NAME_COL = "model_name"
MODEL_VERSION_COL = "model_version"
SCORED_AT_COL = "scored_at"
#: Why a row was not scored (null when it was): the dead-letter, backfill and pyfunc error code.
ERROR_CODE_COL = "error_code"
ERROR_MESSAGE_COL = "error_message"
#: A scored text's normalized tokens, and those outside the vocabulary (null: not normalized).
N_TOKENS_COL = "n_tokens"
N_OOV_TOKENS_COL = "n_oov_tokens"

SPLITS = ("train", "validation", "test")

VOCAB_FILE = "vocab.txt"
MANIFEST_FILE = "manifest.json"


def bow_arrow_schema():
    """Return the pyarrow schema of the bag-of-words Parquet (imports pyarrow lazily)."""
    import pyarrow as pa

    return pa.schema(
        [
            pa.field(ID_COL, pa.string(), nullable=False),
            pa.field(LABEL_COL, pa.string(), nullable=True),
            pa.field(N_WORDS_COL, pa.int32(), nullable=False),
            pa.field(INDICES_COL, pa.list_(pa.int32()), nullable=False),
            pa.field(VALUES_COL, pa.list_(pa.float32()), nullable=False),
        ]
    )
