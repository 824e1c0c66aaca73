"""The topic exploration report: word clouds, plots, an intertopic map and one HTML page.

:func:`write_report` takes a loaded model (:func:`load_model`: a model folder, an
MLflow ``models:/`` URI or a run id) and a preprocessed corpus, and writes::

    <out>/
      index.html               one self-contained page: every table and image below,
                               images embedded as base64 data URIs, no external CSS/JS/fonts
      top_words.csv            topic, rank, word, weight
      top_words.md             per topic: prevalence, NPMI, TU and the top words with weights
      wordclouds.png           a word cloud per topic, in a grid
      sample_assignments.png   stacked bars of the topic weights of sample documents
      sample_documents.csv     id, label and topic weights of those documents
      topic_prevalence.png     mean topic weight over the scored split
      topic_prevalence.csv
      topic_map.png            2-D intertopic distance map (Jensen-Shannon + classical MDS),
                               bubble area = prevalence
      topic_map.csv
      topic_label_heatmap.png  mean topic weight per label (labelled corpora only)
      topic_label.csv
      report.json              what was scored and the summary numbers

Topic mixtures come from the shared :class:`~ntm_spark.serving.scoring.TopicScorer`. The
corpus split is streamed from Parquet a batch at a time (with a seeded sample of
whole row groups when ``max_docs`` caps it), so memory stays bounded by one batch
plus ``O(K * labels)`` sums. Plots use matplotlib's Agg backend and the font the
``wordcloud`` package ships: nothing is fetched at render time. matplotlib and
wordcloud are the ``explore`` extra, imported only when a report is written.

Example:
    >>> model = load_model("runs/ntm-k20")                      # doctest: +SKIP
    >>> report = write_report(model, ".ntm/data/20newsgroups", "report")  # doctest: +SKIP
    >>> report.files["html"]                                     # doctest: +SKIP
    PosixPath('report/index.html')
"""

from __future__ import annotations

import base64
import contextlib
import csv
import html
import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import numpy as np

from ntm_spark.core.contract import check_vocabulary_matches, read_topic_word
from ntm_spark.core.contract import split_files as contract_split_files
from ntm_spark.core.schema import ID_COL, INDICES_COL, LABEL_COL, VALUES_COL

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

#: The folder (under the MLflow run's artifacts) the report is logged to.
ARTIFACT_PATH = "report"
#: At most this many distinct labels are tracked for the topic x label heatmap.
MAX_LABELS = 200
#: At most this many labels (the most frequent) are drawn in the heatmap.
MAX_HEATMAP_LABELS = 40

_RUN_ID_RE = re.compile(r"^[0-9a-f]{32}$")
_EXTRA_HINT = "install the report extra with `pip install -e .[explore]`"


class ExploreError(ValueError):
    """The model or the data given to the exploration report cannot be used."""


# --------------------------------------------------------------------------- model


@dataclass
class LoadedModel:
    """A trained model ready for the report.

    Attributes:
        scorer: The shared scorer (inference and vocabulary).
        topic_word: Each topic's word distribution, shape ``(K, V)``.
        words: The vocabulary words, in index order.
        source: What ``--model`` named (folder path, URI or run id).
        run_id: The MLflow run the model came from, when known (the report is logged there).
        name: A short name for titles and the default output folder.
    """

    scorer: Any
    topic_word: np.ndarray
    words: list[str]
    source: str
    run_id: Optional[str] = None
    name: str = "model"

    @property
    def num_topics(self) -> int:
        """K."""
        return int(self.topic_word.shape[0])


def _topic_word_of(scorer: Any, folder: Optional[Path] = None) -> np.ndarray:
    tw = read_topic_word(folder, scorer.feature_dim) if folder is not None else None
    if tw is not None and tw.shape[0] == scorer.num_topics:
        return tw.astype(np.float64)
    return scorer.model.topic_word().double().cpu().numpy()  # (K, V)


def load_model(spec: str, tracking_uri: Optional[str] = None) -> LoadedModel:
    """Load the model to explore from a model folder, an MLflow model URI or a run id.

    Args:
        spec: A model folder written by ``ntm train``; ``models:/<name>@<alias>``,
            ``models:/<name>/<version>`` or ``runs:/<run_id>/<path>``; or a 32-hex MLflow run id.
        tracking_uri: The MLflow tracking URI for URIs and run ids (``None``: MLflow's default).

    Returns:
        The :class:`LoadedModel`.

    Raises:
        ExploreError: when ``spec`` is none of these or names nothing that exists.
    """
    from ntm_spark.serving.scoring import TopicScorer

    spec = str(spec)
    path = Path(spec).expanduser()
    if path.is_dir():
        log.info("loading the model folder %s", path)
        scorer = TopicScorer.from_model_folder(path)
        return LoadedModel(scorer, _topic_word_of(scorer, path), list(scorer.vocab.words), spec, None, path.resolve().name)
    if spec.startswith(("models:/", "runs:/")):
        return _load_mlflow_uri(spec, tracking_uri)
    if _RUN_ID_RE.match(spec):
        return _load_run(spec, tracking_uri)
    if os.sep in spec or spec.startswith("."):
        raise ExploreError(
            f"model folder {str(path.resolve())!r} does not exist: pass the output_dir of `ntm train`, "
            "`models:/<name>@champion`, or a run id."
        )
    raise ExploreError(
        f"model={spec!r} is not a model folder, an MLflow model URI or a run id: pass a folder written by "
        "`ntm train` (it holds model.pt and vocab.txt), `models:/<name>@champion`, or a 32-character run id."
    )


@contextlib.contextmanager
def _tracking(tracking_uri: Optional[str]) -> Iterator[None]:
    """Point MLflow's fluent API (``pyfunc.load_model``, downloads) at ``tracking_uri`` for a while."""
    import mlflow

    if not tracking_uri:
        yield
        return
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking_uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


def _mlflow_client(tracking_uri: Optional[str]):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def _load_mlflow_uri(uri: str, tracking_uri: Optional[str]) -> LoadedModel:
    with _tracking(tracking_uri):
        return _load_mlflow_uri_here(uri, tracking_uri)


def _load_mlflow_uri_here(uri: str, tracking_uri: Optional[str]) -> LoadedModel:
    import mlflow

    client = _mlflow_client(tracking_uri)
    run_id: Optional[str] = None
    name = uri.split(":/", 1)[1].strip("/").replace("/", "-").replace("@", "-")
    try:
        if uri.startswith("runs:/"):
            run_id = uri[len("runs:/") :].split("/", 1)[0]
        else:
            ref = uri[len("models:/") :].strip("/")
            if "@" in ref:
                model_name, alias = ref.split("@", 1)
                mv = client.get_model_version_by_alias(model_name, alias)
                run_id, name = mv.run_id, f"{model_name}-v{mv.version}"
            elif "/" in ref:
                model_name, version = ref.rsplit("/", 1)
                mv = client.get_model_version(model_name, version)
                run_id, name = mv.run_id, f"{model_name}-v{mv.version}"
            else:
                run_id = getattr(mlflow.get_logged_model(ref), "source_run_id", None)
        log.info("loading %s from MLflow (%s)", uri, mlflow.get_tracking_uri())
        pyfunc = mlflow.pyfunc.load_model(uri)
    except Exception as err:  # MLflow raises its own MlflowException and OSError subclasses
        raise ExploreError(
            f"cannot load model={uri!r} from the MLflow tracking server {mlflow.get_tracking_uri()!r}: {err}. "
            "Check the name and alias with `ntm registry list`, or set --tracking-uri."
        ) from err
    return _from_pyfunc(pyfunc, uri, run_id, name)


def _from_pyfunc(pyfunc: Any, source: str, run_id: Optional[str], name: str) -> LoadedModel:
    python_model = pyfunc.unwrap_python_model()
    scorer = getattr(python_model, "scorer", None)
    if scorer is None:
        raise ExploreError(f"model={source!r} is not an ntm-spark topic model (its python model has no scorer).")
    return LoadedModel(scorer, _topic_word_of(scorer), list(scorer.vocab.words), source, run_id, name)


def _load_run(run_id: str, tracking_uri: Optional[str]) -> LoadedModel:
    with _tracking(tracking_uri):
        return _load_run_here(run_id, tracking_uri)


def _load_run_here(run_id: str, tracking_uri: Optional[str]) -> LoadedModel:
    import mlflow

    client = _mlflow_client(tracking_uri)
    try:
        run = client.get_run(run_id)
    except Exception as err:
        raise ExploreError(
            f"model={run_id!r}: no such MLflow run on {mlflow.get_tracking_uri()!r} ({err}). "
            "Pass a run id from `ntm registry list` or the MLflow UI, or set --tracking-uri."
        ) from err
    # A model folder logged as plain run artifacts is the cheapest to load.
    top = {a.path for a in client.list_artifacts(run_id)}
    if "model_folder" in top:
        from ntm_spark.serving.scoring import TopicScorer

        local = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="model_folder"))
        scorer = TopicScorer.from_model_folder(local)
        return LoadedModel(scorer, _topic_word_of(scorer, local), list(scorer.vocab.words), run_id, run_id, f"run-{run_id[:8]}")
    models = list(
        client.search_logged_models(
            experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'", max_results=100
        )
    )
    if not models:
        raise ExploreError(
            f"model={run_id!r}: the run logged no model (no logged model and no 'model_folder' artifact). "
            "Pass the training run's id, or a model folder."
        )
    latest = max(models, key=lambda m: m.creation_timestamp or 0)
    log.info("loading logged model %s of run %s", latest.model_id, run_id)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{latest.model_id}")
    return _from_pyfunc(pyfunc, run_id, run_id, f"run-{run_id[:8]}")


# --------------------------------------------------------------------------- data


def split_files(data_dir: PathLike, split: str) -> list[Path]:
    """Return the Parquet files of one split of a preprocessing output (the contract's, required)."""
    return contract_split_files(data_dir, split, required=True)


def iter_split_batches(
    files: Sequence[PathLike],
    max_docs: int = 0,
    batch_size: int = 1024,
    seed: int = 0,
    columns: Sequence[str] = (ID_COL, LABEL_COL, INDICES_COL, VALUES_COL),
) -> Iterator[Any]:
    """Stream a split as pyarrow ``RecordBatch`` es, one row group at a time.

    Args:
        files: The split's Parquet files.
        max_docs: Cap on the rows read; ``0`` reads everything. With a cap, a seeded
            random set of whole row groups is read (in file order), so a sorted split
            is not sampled from its head only.
        batch_size: Most rows per batch.
        seed: Seed of the row-group sample.
        columns: Columns to read (those missing from the files are skipped).

    Yields:
        Record batches; the last one is cut so that at most ``max_docs`` rows are yielded.
    """
    import pyarrow.parquet as pq

    groups: list[tuple[int, int, int]] = []  # (file, row group, rows)
    for f_idx, path in enumerate(files):
        meta = pq.ParquetFile(path).metadata
        groups += [(f_idx, g, meta.row_group(g).num_rows) for g in range(meta.num_row_groups)]
    total = sum(g[2] for g in groups)
    chosen = groups
    if max_docs and total > max_docs:
        order = np.random.default_rng(seed).permutation(len(groups))
        picked, rows = [], 0
        for i in order:
            picked.append(groups[i])
            rows += groups[i][2]
            if rows >= max_docs:
                break
        chosen = sorted(picked)
    left = max_docs or total
    for f_idx in sorted({g[0] for g in chosen}):
        pf = pq.ParquetFile(files[f_idx])
        names = set(pf.schema_arrow.names)
        cols = [c for c in columns if c in names]
        row_groups = [g for (f, g, _) in chosen if f == f_idx]
        for batch in pf.iter_batches(batch_size=batch_size, row_groups=row_groups, columns=cols):
            if left <= 0:
                return
            if batch.num_rows > left:
                batch = batch.slice(0, left)
            left -= batch.num_rows
            yield batch


@dataclass
class SplitSummary:
    """What scoring a corpus split found.

    Attributes:
        n_docs: Documents scored.
        n_failed: Documents the scorer rejected (not counted in the means).
        prevalence: Mean topic weight over the scored documents, shape ``(K,)``.
        labels: The tracked labels, most frequent first.
        label_counts: Documents per label, shape ``(L,)``.
        label_means: Mean topic weight per label, shape ``(L, K)``.
        sample_ids: Ids of the sample documents.
        sample_labels: Their labels (``None`` when unlabelled).
        sample_weights: Their topic weights, shape ``(S, K)``.
        npmi: Per-topic NPMI of the top words over the scored documents, shape ``(K,)``.
    """

    n_docs: int
    n_failed: int
    prevalence: np.ndarray
    labels: list[str] = field(default_factory=list)
    label_counts: np.ndarray = field(default_factory=lambda: np.zeros(0))
    label_means: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    sample_ids: list[str] = field(default_factory=list)
    sample_labels: list[Optional[str]] = field(default_factory=list)
    sample_weights: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    npmi: Optional[np.ndarray] = None


def summarize_split(
    scorer: Any,
    files: Sequence[PathLike],
    top_ids: Optional[np.ndarray] = None,
    max_docs: int = 20000,
    sample_docs: int = 10,
    batch_size: int = 1024,
    seed: int = 0,
) -> SplitSummary:
    """Score a split batch by batch and accumulate prevalence, per-label means, samples and NPMI.

    Args:
        scorer: A :class:`~ntm_spark.serving.scoring.TopicScorer`.
        files: The split's Parquet files (:func:`split_files`).
        top_ids: Each topic's top words ``(K, n)``; when given, their NPMI over the split is computed.
        max_docs: Cap on documents scored (``0``: all).
        sample_docs: Documents kept for the assignment plot, one per label first.
        batch_size: Rows scored at a time (a dense ``(batch, V)`` block is built).
        seed: Seed of the row-group sample.

    Returns:
        The :class:`SplitSummary`.

    Raises:
        ExploreError: when no document could be scored.
    """
    from ntm_spark.core.topic_metrics import cooccurrence_counts, npmi_from_counts

    k = scorer.num_topics
    total = np.zeros(k, dtype=np.float64)
    n_docs = n_failed = 0
    label_sums: dict[str, np.ndarray] = {}
    label_n: dict[str, int] = {}
    samples: list[tuple[str, Optional[str], np.ndarray]] = []
    spare: list[tuple[str, Optional[str], np.ndarray]] = []
    word_ids = np.unique(top_ids) if top_ids is not None else None
    df = co = None
    n_ref = 0
    for batch in iter_split_batches(files, max_docs=max_docs, batch_size=batch_size, seed=seed):
        cols = batch.schema.names
        indices = batch.column(cols.index(INDICES_COL)).to_pylist()
        values = batch.column(cols.index(VALUES_COL)).to_pylist()
        ids = batch.column(cols.index(ID_COL)).to_pylist() if ID_COL in cols else [None] * batch.num_rows
        labels = batch.column(cols.index(LABEL_COL)).to_pylist() if LABEL_COL in cols else [None] * batch.num_rows
        result = scorer.score_sparse(indices, values)
        ok = result.ok
        weights = result.weights.astype(np.float64)  # (b, K)
        n_failed += int((~ok).sum())
        n_docs += int(ok.sum())
        total += weights[ok].sum(axis=0)
        for i in np.flatnonzero(ok):
            label = labels[i]
            if label is not None:
                if label in label_sums:
                    label_sums[label] += weights[i]
                    label_n[label] += 1
                elif len(label_sums) < MAX_LABELS:
                    label_sums[label] = weights[i].copy()
                    label_n[label] = 1
            if len(samples) < sample_docs:
                doc = (str(ids[i]), label, weights[i].copy())
                if label is None or all(s[1] != label for s in samples):
                    samples.append(doc)
                elif len(spare) < sample_docs:
                    spare.append(doc)
        if word_ids is not None:
            d, c, n = cooccurrence_counts(word_ids, (np.asarray(ix) for ix, good in zip(indices, ok) if good))
            df, co = (d, c) if df is None else (df + d, co + c)
            n_ref += n
    if n_docs == 0:
        raise ExploreError(
            f"no document of {[str(f) for f in files][:3]} could be scored ({n_failed} rejected): "
            "check the data was preprocessed with the model's vocabulary."
        )
    samples += spare[: sample_docs - len(samples)]
    labels_sorted = sorted(label_sums, key=lambda lab: (-label_n[lab], lab))
    npmi = npmi_from_counts(top_ids, word_ids, df, co, n_ref) if word_ids is not None and n_ref else None
    return SplitSummary(
        n_docs=n_docs,
        n_failed=n_failed,
        prevalence=total / n_docs,
        labels=labels_sorted,
        label_counts=np.array([label_n[lab] for lab in labels_sorted], dtype=np.int64),
        label_means=(
            np.stack([label_sums[lab] / label_n[lab] for lab in labels_sorted]) if labels_sorted else np.zeros((0, k))
        ),
        sample_ids=[s[0] for s in samples],
        sample_labels=[s[1] for s in samples],
        sample_weights=np.stack([s[2] for s in samples]) if samples else np.zeros((0, k)),
        npmi=npmi,
    )


# --------------------------------------------------------------------------- topic geometry


def js_distances(topic_word: np.ndarray) -> np.ndarray:
    """Return the Jensen-Shannon distance between every pair of topics.

    Args:
        topic_word: Topic-word distributions, shape ``(K, V)`` (rows are renormalized).

    Returns:
        A symmetric ``(K, K)`` matrix with a zero diagonal, values in ``[0, 1]`` (base-2 logs).
    """
    p = np.asarray(topic_word, dtype=np.float64)
    p = np.clip(p, 0, None)
    p = p / np.clip(p.sum(axis=1, keepdims=True), 1e-300, None)  # (K, V)
    k = p.shape[0]
    out = np.zeros((k, k))
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = np.where(p > 0, np.log2(p), 0.0)  # (K, V)
        for i in range(k):
            m = 0.5 * (p[i] + p)  # (K, V)
            logm = np.where(m > 0, np.log2(m), 0.0)
            kl_i = (p[i] * (logp[i] - logm)).sum(axis=1)  # (K,)
            kl_j = (p * (logp - logm)).sum(axis=1)  # (K,)
            out[i] = np.sqrt(np.clip(0.5 * (kl_i + kl_j), 0, 1))
    out = 0.5 * (out + out.T)
    np.fill_diagonal(out, 0.0)
    return out


def classical_mds(dist: np.ndarray, dims: int = 2) -> np.ndarray:
    """Embed points in ``dims`` dimensions so Euclidean distances approximate ``dist`` (Torgerson MDS).

    Args:
        dist: A symmetric distance matrix, shape ``(K, K)``.
        dims: Output dimensions.

    Returns:
        Coordinates, shape ``(K, dims)``; axes with no variance are zero.
    """
    d2 = np.asarray(dist, dtype=np.float64) ** 2
    k = d2.shape[0]
    j = np.eye(k) - 1.0 / k
    b = -0.5 * j @ d2 @ j  # (K, K), double-centred Gram matrix
    evals, evecs = np.linalg.eigh(b)
    order = np.argsort(evals)[::-1][:dims]
    coords = evecs[:, order] * np.sqrt(np.clip(evals[order], 0, None))  # (K, <=dims)
    if coords.shape[1] < dims:
        coords = np.hstack([coords, np.zeros((k, dims - coords.shape[1]))])
    # Deterministic orientation: the largest-magnitude coordinate of each axis is positive.
    signs = np.sign(coords[np.abs(coords).argmax(axis=0), np.arange(dims)])
    return coords * np.where(signs == 0, 1, signs)


# --------------------------------------------------------------------------- plots


def _pyplot():
    try:
        import matplotlib
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(f"the exploration report needs matplotlib: {_EXTRA_HINT}.") from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _topic_label(k: int, words: Sequence[str], top: np.ndarray, n: int = 3) -> str:
    return f"T{k}: " + " ".join(words[i] for i in top[k][:n])


def plot_wordclouds(
    topic_word: np.ndarray, words: Sequence[str], path: PathLike, n_words: int = 60, columns: int = 5, seed: int = 0
) -> Path:
    """Draw a word cloud per topic in a grid and save it as PNG.

    Args:
        topic_word: ``(K, V)`` topic-word weights.
        words: The vocabulary.
        path: Output PNG.
        n_words: Words per cloud (the topic's heaviest).
        columns: Clouds per row.
        seed: Layout seed, for reproducible images.
    """
    try:
        from wordcloud import WordCloud
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(f"the word clouds need the wordcloud package: {_EXTRA_HINT}.") from err
    from ntm_spark.core.topic_metrics import top_words

    plt = _pyplot()
    k, v = topic_word.shape
    top = top_words(topic_word, min(n_words, v))
    columns = max(1, min(columns, k))
    rows = -(-k // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.4 * columns, 2.7 * rows), squeeze=False)
    for t, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if t >= k:
            continue
        freqs = {words[i]: float(topic_word[t, i]) for i in top[t] if topic_word[t, i] > 0}
        cloud = WordCloud(
            width=440, height=300, background_color="white", colormap="tab10", random_state=seed + t, prefer_horizontal=0.9
        ).generate_from_frequencies(freqs or {words[top[t][0]]: 1.0})
        ax.imshow(cloud.to_array(), interpolation="bilinear")
        ax.set_title(f"Topic {t}", fontsize=12)
    fig.tight_layout()
    return _save(fig, path)


def plot_sample_assignments(
    weights: np.ndarray,
    doc_names: Sequence[str],
    topic_names: Sequence[str],
    path: PathLike,
) -> Path:
    """Draw stacked horizontal bars of each sample document's topic weights (the seed's assignment plot).

    Args:
        weights: ``(S, K)`` topic weights of the sample documents.
        doc_names: A label per document (id and true label).
        topic_names: A label per topic for the legend.
        path: Output PNG.
    """
    plt = _pyplot()
    s, k = weights.shape
    cmap = plt.get_cmap("tab20" if k > 10 else "tab10")
    fig, ax = plt.subplots(figsize=(13, 1.2 + 0.5 * max(s, 1)))
    left = np.zeros(s)
    for t in range(k):
        ax.barh(np.arange(s), weights[:, t], left=left, color=cmap(t % cmap.N), label=topic_names[t], edgecolor="white", linewidth=0.5)
        for d in range(s):  # name the topic inside segments wide enough to hold it
            if weights[d, t] >= 0.08:
                ax.text(left[d] + weights[d, t] / 2, d, f"T{t}", ha="center", va="center", fontsize=8, color="black")
        left += weights[:, t]
    ax.set_yticks(np.arange(s), labels=list(doc_names), fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("topic assignment (weight)")
    ax.set_title("Topic assignments of sample documents")
    ncol = 1 if k <= 12 else 2
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, ncol=ncol, frameon=False)
    fig.tight_layout()
    return _save(fig, path)


def plot_prevalence(prevalence: np.ndarray, topic_names: Sequence[str], path: PathLike, split: str = "test") -> Path:
    """Draw horizontal bars of the mean topic weight over a split, largest first."""
    plt = _pyplot()
    order = np.argsort(-prevalence)
    k = len(prevalence)
    fig, ax = plt.subplots(figsize=(9, 1.0 + 0.32 * k))
    ax.barh(np.arange(k), prevalence[order], color="#4c72b0")
    ax.set_yticks(np.arange(k), labels=[topic_names[t] for t in order], fontsize=9)
    ax.invert_yaxis()
    for y, t in enumerate(order):
        ax.text(prevalence[t], y, f" {prevalence[t]:.3f}", va="center", fontsize=8)
    ax.set_xlim(0, max(float(prevalence.max()) * 1.18, 1e-6))
    ax.set_xlabel(f"mean topic weight over the {split} split")
    ax.set_title("Topic prevalence")
    fig.tight_layout()
    return _save(fig, path)


def plot_topic_map(coords: np.ndarray, prevalence: np.ndarray, topic_names: Sequence[str], path: PathLike) -> Path:
    """Draw the intertopic distance map: topics placed by MDS of their distances, bubble area = prevalence."""
    plt = _pyplot()
    k = len(prevalence)
    share = prevalence / max(float(prevalence.sum()), 1e-12)
    sizes = 60 + 40000 * share  # area in pt^2 proportional to prevalence; all bubbles ~10% of the axes
    cmap = plt.get_cmap("tab20" if k > 10 else "tab10")
    fig, ax = plt.subplots(figsize=(9, 8))
    ax.scatter(coords[:, 0], coords[:, 1], s=sizes, c=[cmap(t % cmap.N) for t in range(k)], alpha=0.45, edgecolors="black", linewidths=0.6)
    for t in range(k):
        ax.annotate(str(t), coords[t], ha="center", va="center", fontsize=11, fontweight="bold")
        ax.annotate(topic_names[t].split(": ", 1)[-1], coords[t], xytext=(0, -16), textcoords="offset points", ha="center", fontsize=8)
    span = max(float(np.ptp(coords[:, 0])), float(np.ptp(coords[:, 1])), 1e-3)
    cx, cy = coords[:, 0].mean(), coords[:, 1].mean()
    ax.set_xlim(cx - 0.75 * span, cx + 0.75 * span)
    ax.set_ylim(cy - 0.75 * span, cy + 0.75 * span)
    ax.axhline(cy, color="0.85", lw=0.8, zorder=0)
    ax.axvline(cx, color="0.85", lw=0.8, zorder=0)
    ax.set_xlabel("PC1")
    ax.set_ylabel("PC2")
    ax.set_title("Intertopic distance map (Jensen-Shannon, classical MDS; area = prevalence)")
    fig.tight_layout()
    return _save(fig, path)


def plot_label_heatmap(label_means: np.ndarray, labels: Sequence[str], path: PathLike) -> Path:
    """Draw a heatmap of the mean topic weight per label (rows: labels, columns: topics)."""
    plt = _pyplot()
    n_labels, k = label_means.shape
    fig, ax = plt.subplots(figsize=(max(7.0, 2.5 + 0.45 * k), max(3.0, 1.5 + 0.35 * n_labels)))
    im = ax.imshow(label_means, aspect="auto", cmap="viridis", vmin=0)
    ax.set_xticks(np.arange(k), labels=[str(t) for t in range(k)], fontsize=9)
    ax.set_yticks(np.arange(n_labels), labels=list(labels), fontsize=9)
    ax.set_xlabel("topic")
    ax.set_ylabel("label")
    if n_labels * k <= 800:
        hi = float(label_means.max()) or 1.0
        for i in range(n_labels):
            for t in range(k):
                val = label_means[i, t]
                ax.text(t, i, f"{val:.2f}", ha="center", va="center", fontsize=6.5, color="black" if val > 0.6 * hi else "white")
    fig.colorbar(im, ax=ax, label="mean topic weight", fraction=0.04)
    ax.set_title("Mean topic weight per label")
    fig.tight_layout()
    return _save(fig, path)


def _save(fig: Any, path: PathLike) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    fig.savefig(path, dpi=100, facecolor="white")
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- tables


def write_top_words(
    topic_word: np.ndarray,
    words: Sequence[str],
    out_dir: PathLike,
    top_n: int = 10,
    prevalence: Optional[np.ndarray] = None,
    npmi: Optional[np.ndarray] = None,
) -> tuple[Path, Path]:
    """Write ``top_words.csv`` (topic, rank, word, weight) and ``top_words.md``; return both paths."""
    from ntm_spark.core.topic_metrics import top_words, topic_uniqueness, write_top_words_csv

    out_dir = Path(out_dir)
    top = top_words(topic_word, min(top_n, topic_word.shape[1]))
    tu = topic_uniqueness(top, per_topic=True)
    csv_path = out_dir / "top_words.csv"
    write_top_words_csv(csv_path, topic_word, words, top)
    lines = ["| topic | prevalence | npmi | tu | top words (weight) |", "|---:|---:|---:|---:|---|"]
    for k, ids in enumerate(top):
        prev = f"{prevalence[k]:.3f}" if prevalence is not None else ""
        np_k = f"{npmi[k]:.3f}" if npmi is not None else ""
        cells = ", ".join(f"{_md(words[i])} ({topic_word[k, i]:.3f})" for i in ids)
        lines.append(f"| {k} | {prev} | {np_k} | {tu[k]:.2f} | {cells} |")
    md_path = out_dir / "top_words.md"
    md_path.write_text("# Top words per topic\n\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return csv_path, md_path


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


# --------------------------------------------------------------------------- report


@dataclass
class Report:
    """A written report: its folder, its files by role, and the summary behind it."""

    out_dir: Path
    files: dict[str, Path]
    summary: SplitSummary
    info: dict[str, Any]


def write_report(
    model: LoadedModel,
    data_dir: PathLike,
    out_dir: PathLike,
    split: str = "test",
    sample_docs: int = 10,
    max_docs: int = 20000,
    top_n: int = 10,
    cloud_words: int = 60,
    cloud_columns: int = 5,
    batch_size: int = 1024,
    seed: int = 0,
) -> Report:
    """Score a corpus split with the model and write the report folder (see the module docstring).

    Args:
        model: From :func:`load_model`.
        data_dir: The preprocessing output (``train/validation/test`` Parquet and ``vocab.txt``).
        out_dir: The report folder; created, and files in it overwritten.
        split: The split to score.
        sample_docs: Documents in the assignment plot (>= 1).
        max_docs: Cap on documents scored for prevalence and the heatmap (``0``: the whole split).
        top_n: Top words per topic in the tables.
        cloud_words: Words per word cloud.
        cloud_columns: Word clouds per row of the grid.
        batch_size: Rows scored at a time.
        seed: Seed of the row-group sample and the word-cloud layouts.

    Returns:
        The :class:`Report`.

    Raises:
        ExploreError: for out-of-range arguments or a corpus that does not fit the model.
        FileNotFoundError: when the data folder or split is missing.
    """
    from ntm_spark.core.topic_metrics import top_words, topic_diversity, topic_uniqueness

    _check_positive("sample_docs", sample_docs, 1)
    _check_positive("max_docs", max_docs, 0)
    _check_positive("top_n", top_n, 1)
    _check_positive("cloud_words", cloud_words, 1)
    _check_positive("cloud_columns", cloud_columns, 1)
    _check_positive("batch_size", batch_size, 1)
    started = time.time()
    files = split_files(data_dir, split)
    check_vocabulary_matches(data_dir, model.words)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tw = np.asarray(model.topic_word, dtype=np.float64)  # (K, V)
    k, v = tw.shape
    top = top_words(tw, min(top_n, v))  # (K, n)
    names = [_topic_label(t, model.words, top) for t in range(k)]
    # A dense (batch, V) float32 block is built per batch: keep it near 64 MiB for large vocabularies.
    batch_size = max(1, min(batch_size, (64 << 20) // (4 * v)))

    log.info("[1/6] scoring the %s split of %s (%d files, max_docs=%s)", split, data_dir, len(files), max_docs or "all")
    summary = summarize_split(model.scorer, files, top, max_docs, sample_docs, batch_size, seed)
    log.info("      scored %d documents (%d rejected), %d labels", summary.n_docs, summary.n_failed, len(summary.labels))

    log.info("[2/6] writing the top-word tables")
    out: dict[str, Path] = {}
    out["top_words_csv"], out["top_words_md"] = write_top_words(tw, model.words, out_dir, top_n, summary.prevalence, summary.npmi)

    log.info("[3/6] drawing %d word clouds", k)
    out["wordclouds"] = plot_wordclouds(tw, model.words, out_dir / "wordclouds.png", cloud_words, cloud_columns, seed)

    log.info("[4/6] drawing the sample assignments and the prevalence")
    doc_names = [_doc_name(i, lab) for i, lab in zip(summary.sample_ids, summary.sample_labels)]
    out["sample_assignments"] = plot_sample_assignments(summary.sample_weights, doc_names, names, out_dir / "sample_assignments.png")
    out["sample_documents_csv"] = _write_csv(
        out_dir / "sample_documents.csv",
        ["id", "label"] + [f"topic_{t}" for t in range(k)],
        [[i, lab or ""] + [f"{w:.6f}" for w in ws] for i, lab, ws in zip(summary.sample_ids, summary.sample_labels, summary.sample_weights)],
    )
    out["prevalence"] = plot_prevalence(summary.prevalence, names, out_dir / "topic_prevalence.png", split)
    out["prevalence_csv"] = _write_csv(
        out_dir / "topic_prevalence.csv",
        ["topic", "prevalence", "top_words"],
        [[t, f"{summary.prevalence[t]:.6f}", names[t].split(": ", 1)[1]] for t in range(k)],
    )

    log.info("[5/6] drawing the intertopic distance map")
    dist = js_distances(tw)
    coords = classical_mds(dist, 2)
    out["topic_map"] = plot_topic_map(coords, summary.prevalence, names, out_dir / "topic_map.png")
    out["topic_map_csv"] = _write_csv(
        out_dir / "topic_map.csv",
        ["topic", "x", "y", "prevalence", "top_words"],
        [[t, f"{coords[t, 0]:.6f}", f"{coords[t, 1]:.6f}", f"{summary.prevalence[t]:.6f}", names[t].split(": ", 1)[1]] for t in range(k)],
    )
    if len(summary.labels) >= 2:
        shown = min(len(summary.labels), MAX_HEATMAP_LABELS)
        order = sorted(range(shown), key=lambda i: summary.labels[i])
        out["label_heatmap"] = plot_label_heatmap(
            summary.label_means[order], [summary.labels[i] for i in order], out_dir / "topic_label_heatmap.png"
        )
        out["label_csv"] = _write_csv(
            out_dir / "topic_label.csv",
            ["label", "n_docs"] + [f"topic_{t}" for t in range(k)],
            [[lab, int(n)] + [f"{w:.6f}" for w in row] for lab, n, row in zip(summary.labels, summary.label_counts, summary.label_means)],
        )
    else:
        log.info("      the split has fewer than 2 labels: no topic x label heatmap")

    tu = topic_uniqueness(top)
    info = {
        "model": model.source,
        "model_name": model.name,
        "run_id": model.run_id,
        "data_dir": str(Path(data_dir).resolve()),
        "split": split,
        "num_topics": k,
        "vocab_size": v,
        "n_docs": summary.n_docs,
        "n_failed": summary.n_failed,
        "max_docs": max_docs,
        "npmi": None if summary.npmi is None else float(np.mean(summary.npmi)),
        "tu": float(tu),
        "diversity": topic_diversity(tw, min(25, v)),
        "generated_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    log.info("[6/6] writing index.html")
    out["html"] = out_dir / "index.html"
    out["html"].write_text(render_html(info, out, tw, model.words, top, names, summary), encoding="utf-8")
    info["seconds"] = round(time.time() - started, 2)
    info["files"] = {role: p.name for role, p in out.items()}
    out["json"] = out_dir / "report.json"
    out["json"].write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    log.info("report written to %s (%.1f s)", out_dir, info["seconds"])
    return Report(out_dir, out, summary, info)


def _check_positive(name: str, value: Any, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ExploreError(f"{name}={value!r}: use an integer >= {minimum}.")


def _doc_name(doc_id: str, label: Optional[str], width: int = 44) -> str:
    name = doc_id if len(doc_id) <= width else "..." + doc_id[-(width - 3) :]
    return f"{name} [{label}]" if label and label not in doc_id else name


# --------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#253858;color:#fff;padding:18px 32px}
header h1{margin:0 0 6px;font-size:24px}
header p{margin:0;opacity:.85;font-size:14px}
main{padding:8px 32px 40px;max-width:1500px}
section{background:#fff;border:1px solid #e3e3e3;border-radius:6px;padding:12px 20px;margin:18px 0}
h2{font-size:19px;margin:6px 0 10px}
img{max-width:100%;height:auto;display:block;margin:6px 0}
table{border-collapse:collapse;font-size:13px;width:100%}
th,td{border-bottom:1px solid #eee;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f5f8}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.bar{display:inline-block;height:10px;background:#4c72b0;vertical-align:middle;margin-right:6px}
.stats span{display:inline-block;margin-right:28px;font-size:15px}
.stats b{font-size:20px}
nav a{margin-right:14px;font-size:14px}
.w{white-space:nowrap}
"""

# Sets data-images-ok on <body> once every image has decoded; the Chromium test reads it.
_SCRIPT = """
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.length > 0 && imgs.every(function (im) { return im.complete && im.naturalWidth > 0; });
  document.body.dataset.imagesOk = ok ? "true" : "false";
  document.body.dataset.imagesCount = String(imgs.length);
});
"""


def _img_tag(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def render_html(
    info: dict[str, Any],
    files: dict[str, Path],
    topic_word: np.ndarray,
    words: Sequence[str],
    top: np.ndarray,
    names: Sequence[str],
    summary: SplitSummary,
) -> str:
    """Return the self-contained report page (inline CSS and script, images as data URIs)."""
    from ntm_spark.core.topic_metrics import topic_uniqueness

    esc = html.escape
    k = topic_word.shape[0]
    tu = topic_uniqueness(top, per_topic=True)
    prev = summary.prevalence
    pmax = max(float(prev.max()), 1e-12)
    rows = []
    for t in range(k):
        cells = " ".join(
            f'<span class="w">{esc(words[i])} <small>{topic_word[t, i]:.3f}</small></span>' for i in top[t]
        )
        npmi = f"{summary.npmi[t]:.3f}" if summary.npmi is not None else ""
        bar = f'<span class="bar" style="width:{int(80 * prev[t] / pmax)}px"></span>'
        rows.append(
            f'<tr><td class="num">{t}</td><td class="num">{bar}{prev[t]:.3f}</td><td class="num">{npmi}</td>'
            f'<td class="num">{tu[t]:.2f}</td><td>{cells}</td></tr>'
        )
    samples = []
    for doc_id, label, ws in zip(summary.sample_ids, summary.sample_labels, summary.sample_weights):
        best = np.argsort(-ws)[:3]
        tops = "; ".join(f"{esc(names[b])} ({ws[b]:.2f})" for b in best)
        samples.append(f"<tr><td>{esc(doc_id)}</td><td>{esc(label or '')}</td><td>{tops}</td></tr>")

    def stat(label: str, value: Any) -> str:
        return f"<span>{esc(label)} <b>{esc(str(value))}</b></span>"

    npmi_all = "n/a" if info.get("npmi") is None else f"{info['npmi']:.3f}"
    sections = [
        (
            "summary",
            "Summary",
            '<div class="stats">'
            + stat("topics", k)
            + stat("vocabulary", info["vocab_size"])
            + stat(f"{info['split']} documents scored", info["n_docs"])
            + stat("NPMI", npmi_all)
            + stat("topic uniqueness", f"{info['tu']:.3f}")
            + stat("diversity", f"{info['diversity']:.3f}")
            + "</div>"
            + (f"<p>{info['n_failed']} documents could not be scored and are left out.</p>" if info["n_failed"] else ""),
        ),
        (
            "topics",
            "Top words per topic",
            "<table><tr><th>topic</th><th>prevalence</th><th>NPMI</th><th>TU</th><th>top words (weight)</th></tr>"
            + "".join(rows)
            + "</table>",
        ),
        ("wordclouds", "Word clouds", _img_tag(files["wordclouds"], "word cloud per topic")),
        (
            "map",
            "Intertopic distance map",
            "<p>Topics placed by classical MDS of the Jensen-Shannon distances between their word "
            "distributions; close topics share words. Bubble area is the topic's prevalence.</p>"
            + _img_tag(files["topic_map"], "intertopic distance map"),
        ),
        (
            "prevalence",
            "Topic prevalence",
            f"<p>Mean topic weight over {info['n_docs']} documents of the {esc(info['split'])} split.</p>"
            + _img_tag(files["prevalence"], "topic prevalence"),
        ),
        (
            "samples",
            "Topic assignments of sample documents",
            _img_tag(files["sample_assignments"], "topic assignments of sample documents")
            + "<table><tr><th>document</th><th>label</th><th>top topics (weight)</th></tr>"
            + "".join(samples)
            + "</table>",
        ),
    ]
    if "label_heatmap" in files:
        sections.append(
            (
                "labels",
                "Topics by label",
                "<p>Mean topic weight of the documents of each label"
                + (f" (the {MAX_HEATMAP_LABELS} most frequent labels)" if len(summary.labels) > MAX_HEATMAP_LABELS else "")
                + ".</p>"
                + _img_tag(files["label_heatmap"], "topic by label heatmap"),
            )
        )
    listed = [p.name for role, p in files.items() if role != "html"] + ["report.json"]
    sections.append(("files", "Files", "<p>" + " &middot; ".join(f'<a href="{esc(n)}">{esc(n)}</a>' for n in listed) + "</p>"))
    nav = "".join(f'<a href="#{sid}">{esc(title)}</a>' for sid, title, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{esc(title)}</h2>{content}</section>' for sid, title, content in sections)
    source = esc(str(info["model"]))
    run = f" &middot; MLflow run {esc(info['run_id'])}" if info.get("run_id") else ""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>Topics of {esc(info['model_name'])}</title><style>{_CSS}</style></head>\n"
        f"<body><header><h1>Topic exploration: {esc(info['model_name'])}</h1>"
        f"<p>model {source}{run} &middot; data {esc(info['data_dir'])} ({esc(info['split'])}) &middot; "
        f"{esc(info['generated_at'])}</p></header>\n<main><nav>{nav}</nav>{body}</main>\n"
        f"<script>{_SCRIPT}</script></body></html>\n"
    )


# --------------------------------------------------------------------------- MLflow


def log_report(out_dir: PathLike, run_id: str, tracking_uri: Optional[str] = None, artifact_path: str = ARTIFACT_PATH) -> str:
    """Log the report folder to an MLflow run's artifacts under ``artifact_path``.

    Args:
        out_dir: The report folder.
        run_id: The run to log to (it may be finished).
        tracking_uri: The tracking URI (``None``: MLflow's default).
        artifact_path: Folder inside the run's artifacts.

    Returns:
        The artifact URI of the logged folder.

    Raises:
        ExploreError: when the run does not exist.
    """
    client = _mlflow_client(tracking_uri)
    try:
        run = client.get_run(run_id)
    except Exception as err:
        raise ExploreError(
            f"log_to_run={run_id!r}: no such MLflow run on {client.tracking_uri!r} ({err}). "
            "Pass an existing run id, or set --tracking-uri."
        ) from err
    client.log_artifacts(run_id, str(out_dir), artifact_path=artifact_path)
    uri = f"{run.info.artifact_uri.rstrip('/')}/{artifact_path}"
    log.info("logged the report to run %s: %s", run_id, uri)
    return uri


def default_output_dir(model: LoadedModel, state: Optional[PathLike] = None) -> Path:
    """Return ``<state>/reports/<model name>`` (``<state>`` is ``.ntm`` or ``$NTM_HOME``)."""
    from ntm_spark.core.paths import state_dir

    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", model.name).strip("-") or "model"
    return Path(state or state_dir()) / "reports" / slug

