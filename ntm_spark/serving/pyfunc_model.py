"""The registered model: an MLflow pyfunc around the shared :class:`~ntm_spark.serving.scoring.TopicScorer`.

:class:`NTMPyfuncModel` loads everything in ``load_context`` from
``context.artifacts["model_folder"]`` (weights, ``vocab.txt``, the preprocessing
manifest with its text rules, and ``lemmas.json``) and never downloads anything.
Normalization, vectorization and inference are the scorer's; this module only
adapts MLflow's pandas input and output.

Input (one kind per request; the signature has no input schema, so the model checks the columns):

* ``text``: raw documents, normalized with the model's text rules and vocabulary;
* ``counts``: dense bag-of-words rows (arrays of length ``feature_dim``);
* ``indices`` + ``values``: sparse bag-of-words rows;
* columns ``"0"`` .. ``"<feature_dim - 1>"``, or the vocabulary's words in ``vocab.txt``
  order: dense rows as plain columns (``text/csv`` with that header line).

Each input row is one document. MLflow's column layouts (``instances``, ``inputs``) reach
the model as ``{column: array}``, whose first axis is the rows; a ``text`` value that is not
a string (a list, a number) is ``text_not_string``, never split into several documents.

A ``text/csv`` body's first line is a header only when it is the model's column names
(:func:`is_model_header`); ``ntm serve`` (:mod:`ntm_spark.serving.endpoint`) reads any other first
line as the first document, while ``mlflow models serve`` always takes it as a header, so
there such a CSV is refused with ``unknown_column`` instead of losing its first document.

Output: a DataFrame with ``topic_weights`` per document (served as
``{"predictions": [{"topic_weights": [...]}, ...]}``), plus ``top_topics`` when
the ``top_topics`` param is > 0, plus ``error_code``/``error`` with
``on_error="column"``.

Bad input raises :class:`mlflow.exceptions.MlflowException` with
``INVALID_PARAMETER_VALUE`` (HTTP 400 from ``mlflow models serve``), naming the
problem, unless ``params={"on_error": "column"}`` asks for per-row errors (batch
use: ``pyfunc.predict``, ``spark_udf``).

Example:
    >>> model = mlflow.pyfunc.load_model("models:/ntm-20newsgroups@champion")  # doctest: +SKIP
    >>> model.predict(pd.DataFrame({"text": [doc]}))["topic_weights"][0]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Union

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from ntm_spark.core import storage
from ntm_spark.core.contract import (
    LEMMAS_FILE,
    MODEL_FOLDER_FILES,
    is_model_folder,
    read_manifest,
    read_topic_word,
    read_vocabulary,
    text_rules_from_manifest,
    top_words,
)
from ntm_spark.core.schema import ERROR_CODE_COL
from ntm_spark.core.vocab import Vocabulary
from ntm_spark.serving.jvm_export import JvmExportError, export_jvm_scorer
from ntm_spark.serving.scoring import (
    MISSING_COLUMN,
    MIXED_INPUT,
    UNKNOWN_COLUMN,
    ScoreResult,
    ScoringInputError,
    TopicScorer,
    describe_row_errors,
)

log = logging.getLogger(__name__)

#: The one pyfunc artifact: a copy of the training model folder plus ``lemmas.json``.
MODEL_FOLDER_ARTIFACT = "model_folder"

TEXT_COL = "text"
COUNTS_COL = "counts"
INDICES_COL = "indices"
VALUES_COL = "values"
WEIGHTS_COL = "topic_weights"
TOP_TOPICS_COL = "top_topics"
ERROR_COL = "error"

ON_ERROR_CHOICES = ("raise", "column")
#: Predict params and their defaults (also the model's params schema).
DEFAULT_PARAMS: dict[str, Any] = {"on_error": "raise", "top_topics": 0, "top_words": 5}
#: Most bad rows listed in one error message.
MAX_LISTED_ERRORS = 5


class NTMPyfuncModel(mlflow.pyfunc.PythonModel):
    """An MLflow ``PythonModel`` that scores documents with the shared :class:`TopicScorer`.

    After ``load_context``, :attr:`scorer` is the scorer (the streaming job uses
    ``mlflow.pyfunc.load_model(uri).unwrap_python_model().scorer``).
    """

    scorer: Optional[TopicScorer] = None

    def load_context(self, context: Any) -> None:
        """Build the scorer from the ``model_folder`` artifact only (no download, no network)."""
        folder = context.artifacts.get(MODEL_FOLDER_ARTIFACT) if context.artifacts else None
        if not folder:
            raise MlflowException(
                f"the model has no {MODEL_FOLDER_ARTIFACT!r} artifact (artifacts: {sorted(context.artifacts or {})!r}): "
                "log it with ntm_spark.serving.pyfunc_model.log_pyfunc_model."
            )
        self.scorer = TopicScorer.from_model_folder(folder)

    # No type hints on predict: MLflow would try (and fail) to derive a signature from them,
    # while this model's signature is explicit (model_signature).
    def predict(self, context, model_input, params=None):  # noqa: ANN001
        """Return ``topic_weights`` (and optionally ``top_topics``, ``error_code``/``error``) per input row.

        Args:
            context: The MLflow context (unused: everything was loaded in ``load_context``).
            model_input: A DataFrame with one kind of input column (see the module docstring);
                a list of strings or a 2-D array also works when called directly.
            params: ``on_error`` (``"raise"`` or ``"column"``), ``top_topics`` (int, 0 = none),
                ``top_words`` (words per top topic).

        Raises:
            MlflowException: ``INVALID_PARAMETER_VALUE`` (HTTP 400) for a request that cannot be
                scored, or for bad rows when ``on_error="raise"``.
        """
        if self.scorer is None:
            raise MlflowException("the model is not loaded: load it with mlflow.pyfunc.load_model(uri).")
        opts = resolve_params(params)
        try:
            result = score_frame(self.scorer, model_input)
        except ScoringInputError as err:
            raise MlflowException(f"[{err.code}] {err}", error_code=INVALID_PARAMETER_VALUE) from None
        if opts["on_error"] == "raise":
            raise_row_errors(result)
        return build_output(self.scorer, result, opts)


# --------------------------------------------------------------------------- input


def resolve_params(params: Optional[dict[str, Any]]) -> dict[str, Any]:
    """Merge ``params`` over :data:`DEFAULT_PARAMS` and check them.

    Raises:
        MlflowException: ``INVALID_PARAMETER_VALUE`` naming the bad param.
    """
    opts = dict(DEFAULT_PARAMS)
    unknown = sorted(set(params or {}) - set(DEFAULT_PARAMS))
    if unknown:
        raise MlflowException(
            f"unknown param {unknown[0]!r}: valid params are {sorted(DEFAULT_PARAMS)}.", error_code=INVALID_PARAMETER_VALUE
        )
    opts.update({k: v for k, v in (params or {}).items() if v is not None})
    if opts["on_error"] not in ON_ERROR_CHOICES:
        raise MlflowException(
            f"param on_error={opts['on_error']!r}: use 'raise' (fail the request on a bad row) or "
            "'column' (report per-row errors in the error_code/error columns).",
            error_code=INVALID_PARAMETER_VALUE,
        )
    for key, low in (("top_topics", 0), ("top_words", 1)):
        try:
            opts[key] = int(opts[key])
        except (TypeError, ValueError):
            opts[key] = None
        if opts[key] is None or opts[key] < low:
            raise MlflowException(
                f"param {key}={params.get(key)!r}: use an integer >= {low}.", error_code=INVALID_PARAMETER_VALUE
            )
    return opts


def _dense_column_index(name: Any, feature_dim: int) -> Optional[int]:
    """Return the position a dense column stands for (``"12"`` or ``12``), or ``None``."""
    if isinstance(name, (int, np.integer)) and not isinstance(name, bool):
        idx = int(name)
    elif isinstance(name, str) and name.isdigit() and (name == "0" or not name.startswith("0")):
        idx = int(name)
    else:
        return None
    return idx if 0 <= idx < feature_dim else None


def _to_frame(model_input: Any, feature_dim: int) -> pd.DataFrame:
    if isinstance(model_input, pd.DataFrame):
        return model_input
    if isinstance(model_input, pd.Series):
        return model_input.to_frame(name=model_input.name if model_input.name is not None else TEXT_COL)
    if isinstance(model_input, dict):
        # MLflow's ``instances``/``inputs`` arrive as {column: array}: the first axis is the rows
        # (2-D arrays hold one row per document), and 0-d values are one document.
        if model_input and all(np.ndim(v) == 0 for v in model_input.values()):
            model_input = {k: [_unwrap_scalar(v)] for k, v in model_input.items()}
        cols = {k: list(v) if isinstance(v, np.ndarray) and v.ndim > 1 else v for k, v in model_input.items()}
        try:
            return pd.DataFrame(cols)
        except ValueError as err:
            raise ScoringInputError(UNKNOWN_COLUMN, f"the input's columns could not form a table ({err}): send {_expected_columns(feature_dim)}.") from err
    if isinstance(model_input, str):
        return pd.DataFrame({TEXT_COL: [model_input]})
    if isinstance(model_input, np.ndarray) and model_input.ndim == 2:
        return pd.DataFrame({COUNTS_COL: list(model_input)})
    if isinstance(model_input, (list, tuple, np.ndarray)):
        items = list(model_input)
        if all(isinstance(x, dict) for x in items):
            # ``inputs`` as a list of records: MLflow turns each value into a numpy array (0-d for a scalar).
            return pd.DataFrame([{k: _unwrap_scalar(v) for k, v in x.items()} for x in items])
        if items and all(isinstance(x, (list, tuple, np.ndarray)) for x in items):
            return pd.DataFrame({COUNTS_COL: items})
        return pd.DataFrame({TEXT_COL: items})
    raise ScoringInputError(
        UNKNOWN_COLUMN,
        f"model input of type {type(model_input).__name__} is not supported: send a DataFrame with a "
        f"{TEXT_COL!r} column, a {COUNTS_COL!r} column, or {INDICES_COL!r} and {VALUES_COL!r} columns.",
    )


def _unwrap_scalar(x: Any) -> Any:
    return x.item() if isinstance(x, np.ndarray) and x.ndim == 0 else x


def is_model_header(cells: Sequence[Any], scorer: TopicScorer) -> bool:
    """Whether a CSV first line (or a frame's columns) is a header of the model's column names.

    The rule that tells a header from a document: ``text`` alone, each of ``0`` ..
    ``feature_dim - 1`` once (any order), or the vocabulary's ``feature_dim`` words in
    ``vocab.txt`` order. Anything else (``w0,w1,...``, numbers, a typo) is data.
    """
    cells = [str(c) for c in cells]
    if cells == [TEXT_COL]:
        return True
    v = scorer.feature_dim
    if len(cells) != v:
        return False
    positions = {_dense_column_index(c, v) for c in cells}
    return (None not in positions and len(positions) == v) or cells == list(scorer.vocab.words)


def _expected_columns(feature_dim: int) -> str:
    return (
        f"one of: {TEXT_COL!r} (raw documents), {COUNTS_COL!r} (dense rows of feature_dim={feature_dim} counts), "
        f"or {INDICES_COL!r} + {VALUES_COL!r} (sparse rows)"
    )


def score_frame(scorer: TopicScorer, model_input: Any) -> ScoreResult:
    """Score a request with the kind of input its columns hold; per-row problems stay in ``errors``.

    Raises:
        ScoringInputError: for an unknown or missing column, or several kinds of input at once.
    """
    v = scorer.feature_dim
    frame = _to_frame(model_input, v)
    columns = list(frame.columns)
    if len(columns) == v and [str(c) for c in columns] == list(scorer.vocab.words):
        # Dense rows under a header of the vocabulary's words (CSV), in vocab.txt order.
        return scorer.score_dense(frame.to_numpy(), field="columns")
    dense_cols = {c: _dense_column_index(c, v) for c in columns}
    dense_cols = {c: i for c, i in dense_cols.items() if i is not None}
    named = {TEXT_COL, COUNTS_COL, INDICES_COL, VALUES_COL}
    unknown = [c for c in columns if c not in named and c not in dense_cols]
    if unknown:
        listed = f"{unknown[:MAX_LISTED_ERRORS]!r}" + (f" (and {len(unknown) - MAX_LISTED_ERRORS} more)" if len(unknown) > MAX_LISTED_ERRORS else "")
        raise ScoringInputError(
            UNKNOWN_COLUMN,
            f"unknown column(s) {listed}: send {_expected_columns(v)}. For text/csv the first line must be a header "
            f"of the model's column names ('text', '0'..'{v - 1}', or the vocabulary's words in vocab.txt order); "
            "`mlflow models serve` always reads the first line as a header, `ntm serve` also takes CSV with no "
            f"header line (every line a document of feature_dim={v} counts).",
        )
    if not columns:
        raise ScoringInputError(
            UNKNOWN_COLUMN,
            f"the input has none of the model's columns (columns outside the model signature are dropped): "
            f"send {_expected_columns(v)}.",
        )
    kinds = [
        k
        for k, present in (
            (TEXT_COL, TEXT_COL in columns),
            (COUNTS_COL, COUNTS_COL in columns),
            ("indices/values", INDICES_COL in columns or VALUES_COL in columns),
            ("dense columns", bool(dense_cols)),
        )
        if present
    ]
    if len(kinds) > 1:
        raise ScoringInputError(MIXED_INPUT, f"the input mixes {kinds!r}: send one kind per request, {_expected_columns(v)}.")
    if TEXT_COL in columns:
        return scorer.score_texts(frame[TEXT_COL].tolist())
    if COUNTS_COL in columns:
        return scorer.score_dense(frame[COUNTS_COL].tolist(), field=COUNTS_COL)
    if INDICES_COL in columns or VALUES_COL in columns:
        missing = VALUES_COL if INDICES_COL in columns and VALUES_COL not in columns else INDICES_COL
        if missing not in columns:
            raise ScoringInputError(MISSING_COLUMN, f"sparse rows need both {INDICES_COL!r} and {VALUES_COL!r}: add the {missing!r} column.")
        return scorer.score_sparse(
            [_as_list(x) for x in frame[INDICES_COL].tolist()], [_as_list(x) for x in frame[VALUES_COL].tolist()]
        )
    if len(dense_cols) != v:
        from ntm_spark.serving.scoring import BAD_LENGTH

        raise ScoringInputError(
            BAD_LENGTH,
            f"dense rows as columns need feature_dim={v} columns named '0'..'{v - 1}', got {len(dense_cols)}: "
            "send every position (zeros included).",
        )
    ordered = sorted(dense_cols, key=dense_cols.get)
    return scorer.score_dense(frame[ordered].to_numpy(), field="columns")


def _as_list(x: Any) -> Any:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return []
    return x


# --------------------------------------------------------------------------- output


def raise_row_errors(result: ScoreResult) -> None:
    """Raise one ``INVALID_PARAMETER_VALUE`` listing the bad rows, if any."""
    described = describe_row_errors(result, MAX_LISTED_ERRORS)
    if described is None:
        return
    raise MlflowException(
        f"{described}. Fix those rows, or pass "
        'params {"on_error": "column"} to score the others and get per-row error_code/error columns.',
        error_code=INVALID_PARAMETER_VALUE,
    )


def _round_row(row: np.ndarray) -> list[float]:
    # float32 carries ~7 significant digits; printing more only bloats the JSON.
    return [float(f"{x:.7g}") for x in row.tolist()]


def build_output(scorer: TopicScorer, result: ScoreResult, opts: dict[str, Any]) -> pd.DataFrame:
    """Turn a :class:`ScoreResult` into the output DataFrame (``None`` weights for bad rows)."""
    ok = result.ok
    out = pd.DataFrame({WEIGHTS_COL: [(_round_row(w) if good else None) for w, good in zip(result.weights, ok)]})
    if opts["top_topics"] > 0:
        out[TOP_TOPICS_COL] = [
            (scorer.top_topics(w, k=opts["top_topics"], words=opts["top_words"]) if good else None)
            for w, good in zip(result.weights, ok)
        ]
    if opts["on_error"] == "column":
        out[ERROR_CODE_COL] = [e.code if e is not None else None for e in result.errors]
        out[ERROR_COL] = [e.message if e is not None else None for e in result.errors]
    return out


# --------------------------------------------------------------------------- lemma table


def build_lemma_table(words: Iterable[str], lemmatizer: Any = None) -> dict[str, str]:
    """Return a token -> lemma table closed over the vocabulary ``words``.

    It holds every vocabulary word and every surface form WordNet's noun
    lemmatizer maps to a vocabulary word: the inverse of WordNet's noun
    substitution rules (``s``, ``ses``, ``ves``...) and of its exception list,
    each candidate checked with the real lemmatizer. Any token outside the table
    has a lemma outside the vocabulary, which is why the scorer needs no WordNet
    at serving time (:class:`ntm_spark.serving.scoring.VocabularyLemmaNormalizer`).

    Args:
        words: The vocabulary (lemmas, as preprocessing wrote them).
        lemmatizer: An NLTK ``WordNetLemmatizer``; default: the project's offline one.

    Raises:
        ntm_spark.core.nltk_data.NltkDataError: when WordNet is not installed (run ``ntm data wordnet``).
    """
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    if lemmatizer is None:
        from ntm_spark.core.nltk_data import load_wordnet_lemmatizer

        lemmatizer = load_wordnet_lemmatizer(download=False)
    from nltk.corpus import wordnet as wn

    vocab = set(words)
    inverse_exc: dict[str, list[str]] = {}
    exc_map = getattr(wn, "_exception_map", {}).get("n") or {}
    for inflected, bases in exc_map.items():
        for base in bases:
            if base in vocab:
                inverse_exc.setdefault(base, []).append(inflected)
    rules = WordNetCorpusReader.MORPHOLOGICAL_SUBSTITUTIONS["n"]
    table: dict[str, str] = {}
    for w in vocab:
        candidates = {w, *inverse_exc.get(w, ())}
        for old, new in rules:
            if w.endswith(new):
                candidates.add(w[: len(w) - len(new)] + old)
        for token in candidates:
            lemma = lemmatizer.lemmatize(token)
            if lemma in vocab or token in vocab:
                table[token] = lemma
    return dict(sorted(table.items()))


def write_lemma_table(folder: Union[str, Path], words: Sequence[str], lemmatizer: Any = None) -> Path:
    """Write ``lemmas.json`` (closed over ``words``) into a model folder and return its path."""
    table = build_lemma_table(words, lemmatizer)
    path = Path(folder) / LEMMAS_FILE
    payload = {
        "format_version": 1,
        "closed_over_vocab": True,
        "vocab_sha256": Vocabulary(words).sha256,
        "source": "WordNet 3.0 noun lemmatizer (NLTK WordNetLemmatizer), inverse morphy over the vocabulary",
        "lemmas": table,
    }
    path.write_text(json.dumps(payload, separators=(",", ":"), ensure_ascii=False), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- logging


def stage_model_folder(model_dir: Union[str, Path], dest: Union[str, Path], lemmatizer: Any = None) -> Path:
    """Copy a model folder's serving files to the local folder ``dest`` and add ``lemmas.json`` and ``jvm/``.

    ``jvm/`` is the JVM scorer's export (:func:`ntm_spark.serving.jvm_export.export_jvm_scorer`),
    written once here; a model it cannot export is still staged, without it (a warning says why).

    ``model_dir`` may be a URI (``s3://...``): MLflow logs artifacts from local files, so
    this local copy is what the registry uploads.

    Raises:
        FileNotFoundError: when ``model_dir`` is not a model folder.
    """
    src, dest = (model_dir if storage.is_remote(model_dir) else Path(model_dir)), Path(dest)
    if not is_model_folder(src):
        raise FileNotFoundError(
            f"model_dir={str(src)!r} is not a model folder (no model.pt/vocab.txt): pass the output_dir of `ntm train`."
        )
    storage.stage_local(src, dest, MODEL_FOLDER_FILES)
    words = read_vocabulary(dest).words
    write_lemma_table(dest, words, lemmatizer)
    try:
        export_jvm_scorer(dest)
    except JvmExportError as err:
        # Registration never fails for the JVM scorer's sake: only --trigger real_time needs it,
        # and it refuses a model without the export, naming this reason's fix.
        log.warning("no JVM scorer export for %s: %s", src, err)
    return dest


def model_signature(feature_dim: int, num_topics: int) -> Any:
    """Return the pyfunc signature: the outputs and the params, with no input schema.

    The accepted inputs (``text``, ``counts``, ``indices`` + ``values``, or ``feature_dim``
    plain dense columns, e.g. CSV) are checked by :func:`score_frame`, which names each
    problem. An input schema would need array columns for ``counts`` and sparse rows, and
    MLflow 3.17's scoring server cannot parse ``text/csv`` for a signature with any array
    column (``Schema.pandas_types`` raises), so CSV of dense rows would be refused. The
    input columns are described in the version's description and shown by the input example.
    """
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, ParamSchema, ParamSpec, Schema

    outputs = [
        ColSpec(Array("double"), WEIGHTS_COL),
        ColSpec("string", ERROR_CODE_COL, required=False),
        ColSpec("string", ERROR_COL, required=False),
    ]
    params = ParamSchema(
        [
            ParamSpec("on_error", "string", DEFAULT_PARAMS["on_error"]),
            ParamSpec("top_topics", "long", DEFAULT_PARAMS["top_topics"]),
            ParamSpec("top_words", "long", DEFAULT_PARAMS["top_words"]),
        ]
    )
    return ModelSignature(inputs=None, outputs=Schema(outputs), params=params)


def example_text(folder: Union[str, Path], words_per_topic: int = 3, topics: int = 3) -> str:
    """Return a small document made of a few topics' top words (with a header when the rules strip one)."""
    folder = Path(folder)
    vocab = read_vocabulary(folder).words
    tw = read_topic_word(folder, len(vocab))
    picked = [w for ws in top_words(tw[:topics], vocab, words_per_topic) for w in ws] if tw is not None else []
    picked = picked or list(vocab[: words_per_topic * topics])
    body = " ".join(picked)
    manifest = read_manifest(folder, required=False)
    if text_rules_from_manifest(manifest)["clean"]:
        # 20 Newsgroups rules strip everything up to the first blank line (the header).
        return f"Subject: example\n\n{body}"
    return body


def pip_requirements() -> list[str]:
    """Return the serving environment: the installed versions of what the scorer imports."""
    from importlib.metadata import PackageNotFoundError, version

    reqs = []
    for dist in ("mlflow", "torch", "numpy", "pandas", "pyyaml", "nltk"):
        try:
            reqs.append(f"{dist}=={version(dist)}")
        except PackageNotFoundError:
            reqs.append(dist)
    return reqs


def log_pyfunc_model(
    model_dir: Union[str, Path],
    name: str = "model",
    registered_model_name: Optional[str] = None,
    lemmatizer: Any = None,
) -> Any:
    """Log a model folder as the pyfunc model of the active MLflow run.

    The folder's serving files and a closed ``lemmas.json`` become the
    ``model_folder`` artifact; ``ntm_spark`` and ``lightning_module`` travel as
    ``code_paths``, so the model loads wherever MLflow, torch and numpy are installed.

    Args:
        model_dir: The model folder written by training.
        name: The logged model's name (``runs:/<run_id>/<name>``).
        registered_model_name: Also register it under this name (usually left to
            :func:`ntm_spark.mlops.registry.register_run_model`, which applies the gate).
        lemmatizer: An NLTK ``WordNetLemmatizer`` for the lemma table (default: the offline one).

    Returns:
        MLflow's ``ModelInfo``.
    """
    import tempfile

    from lightning_module import model_folder as _model_folder_module

    # Module files, not package __file__: under pytest a tests/ folder of the same name can
    # make the package a namespace package with no __file__.
    code_paths = [str(Path(__file__).resolve().parents[1]), str(Path(_model_folder_module.__file__).resolve().parent)]
    with tempfile.TemporaryDirectory(prefix="ntm-pyfunc-") as tmp:
        staged = stage_model_folder(model_dir, Path(tmp) / MODEL_FOLDER_ARTIFACT, lemmatizer)
        scorer = TopicScorer.from_model_folder(staged)
        example = pd.DataFrame({TEXT_COL: [example_text(staged)]})
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=NTMPyfuncModel(),
            artifacts={MODEL_FOLDER_ARTIFACT: str(staged)},
            code_paths=code_paths,
            signature=model_signature(scorer.feature_dim, scorer.num_topics),
            input_example=example,
            pip_requirements=pip_requirements(),
            registered_model_name=registered_model_name,
            metadata={
                "feature_dim": scorer.feature_dim,
                "num_topics": scorer.num_topics,
                "vocab_sha256": scorer.vocab.sha256,
                "lemma_table_entries": len(scorer.normalizer.lemma_table),
                "lemma_table_bytes": (staged / LEMMAS_FILE).stat().st_size,
            },
        )
