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

With ``drift`` (the stream's drift records, :mod:`~ntm_spark.report.drift`) the page gains a
drift section, and the folder::

      drift_prevalence.png     per topic: prevalence per stream window against training, alerts shaded
      drift_rates.png          per window: JS distance, OOV rate, empty rate, scored documents, thresholds
      drift_windows.csv        one row per window: figures, alert, reasons, prevalence

This module runs the steps and re-exports the report's public names; the work is
done by one module per concern:

- :mod:`~ntm_spark.report.model`: the model (folder, MLflow URI or run id) and logging to its run;
- :mod:`~ntm_spark.report.data`: streaming and scoring the split, the intertopic distances and MDS;
- :mod:`~ntm_spark.report.plots`: the matplotlib figures and word clouds (the ``explore`` extra);
- :mod:`~ntm_spark.report.writers`: the CSV, markdown and JSON files;
- :mod:`~ntm_spark.report.drift`: the stream's drift records (either source) for the drift section;
- :mod:`~ntm_spark.report.page`: ``index.html``, from the templates in ``templates/``.

Example:
    >>> model = load_model("runs/ntm-k20")                      # doctest: +SKIP
    >>> report = write_report(model, ".ntm/data/20newsgroups", "report")  # doctest: +SKIP
    >>> report.files["html"]                                     # doctest: +SKIP
    PosixPath('report/index.html')
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ntm_spark.core import storage
from ntm_spark.core.contract import check_vocabulary_matches
from ntm_spark.report._base import MAX_HEATMAP_LABELS, ExploreError, PathLike, check_positive
from ntm_spark.report.data import (
    MAX_LABELS,
    SplitSummary,
    classical_mds,
    iter_split_batches,
    js_distances,
    split_files,
    summarize_split,
)
from ntm_spark.report.drift import DriftHistory, drift_history, drift_info, read_drift_folder, write_drift_files
from ntm_spark.report.model import ARTIFACT_PATH, LoadedModel, default_output_dir, load_model, log_report
from ntm_spark.report.page import render_drift, render_html
from ntm_spark.report.plots import (
    plot_label_heatmap,
    plot_prevalence,
    plot_sample_assignments,
    plot_topic_map,
    plot_wordclouds,
)
from ntm_spark.report.writers import (
    write_json,
    write_label_means,
    write_prevalence,
    write_sample_documents,
    write_top_words,
    write_topic_map,
)

__all__ = [
    "ARTIFACT_PATH",
    "DriftHistory",
    "MAX_HEATMAP_LABELS",
    "MAX_LABELS",
    "ExploreError",
    "LoadedModel",
    "Report",
    "SplitSummary",
    "classical_mds",
    "default_output_dir",
    "drift_history",
    "iter_split_batches",
    "js_distances",
    "load_model",
    "log_report",
    "plot_label_heatmap",
    "plot_prevalence",
    "plot_sample_assignments",
    "plot_topic_map",
    "plot_wordclouds",
    "read_drift_folder",
    "render_html",
    "split_files",
    "summarize_split",
    "write_report",
    "write_top_words",
]

log = logging.getLogger(__name__)


@dataclass
class Report:
    """A written report: its folder, its files by role, and the summary behind it (URI strings on cluster storage)."""

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
    drift: Optional[DriftHistory] = None,
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
        drift: The stream's drift windows (:func:`drift_history`): adds the drift section.

    Returns:
        The :class:`Report`.

    Raises:
        ExploreError: for out-of-range arguments or a corpus that does not fit the model.
        FileNotFoundError: when the data folder or split is missing.
    """
    from ntm_spark.core.topic_metrics import top_words, topic_diversity, topic_uniqueness

    check_positive("sample_docs", sample_docs, 1)
    check_positive("max_docs", max_docs, 0)
    check_positive("top_n", top_n, 1)
    check_positive("cloud_words", cloud_words, 1)
    check_positive("cloud_columns", cloud_columns, 1)
    check_positive("batch_size", batch_size, 1)
    if storage.is_remote(out_dir):  # cluster storage: build the folder locally, then upload it file by file
        import tempfile

        with tempfile.TemporaryDirectory(prefix="ntm-report-") as tmp:
            local = write_report(
                model, data_dir, tmp, split, sample_docs, max_docs, top_n, cloud_words, cloud_columns, batch_size, seed, drift
            )
            storage.make_dirs(out_dir)
            for item in sorted(Path(tmp).iterdir()):
                storage.copy_file(item, storage.join(out_dir, item.name))
        files = {role: storage.join(out_dir, p.name) for role, p in local.files.items()}
        return Report(out_dir, files, local.summary, local.info)  # type: ignore[arg-type]
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
    out["sample_documents_csv"] = write_sample_documents(
        out_dir / "sample_documents.csv", summary.sample_ids, summary.sample_labels, summary.sample_weights
    )
    out["prevalence"] = plot_prevalence(summary.prevalence, names, out_dir / "topic_prevalence.png", split)
    out["prevalence_csv"] = write_prevalence(out_dir / "topic_prevalence.csv", summary.prevalence, names)

    log.info("[5/6] drawing the intertopic distance map")
    dist = js_distances(tw)
    coords = classical_mds(dist, 2)
    out["topic_map"] = plot_topic_map(coords, summary.prevalence, names, out_dir / "topic_map.png")
    out["topic_map_csv"] = write_topic_map(out_dir / "topic_map.csv", coords, summary.prevalence, names)
    if len(summary.labels) >= 2:
        shown = min(len(summary.labels), MAX_HEATMAP_LABELS)
        order = sorted(range(shown), key=lambda i: summary.labels[i])
        out["label_heatmap"] = plot_label_heatmap(
            summary.label_means[order], [summary.labels[i] for i in order], out_dir / "topic_label_heatmap.png"
        )
        out["label_csv"] = write_label_means(
            out_dir / "topic_label.csv", summary.labels, summary.label_counts, summary.label_means
        )
    else:
        log.info("      the split has fewer than 2 labels: no topic x label heatmap")

    tu = topic_uniqueness(top)
    info = {
        "model": model.source,
        "model_name": model.name,
        "run_id": model.run_id,
        "data_dir": storage.display(data_dir),
        "split": split,
        "num_topics": k,
        "vocab_size": v,
        "n_docs": summary.n_docs,
        "n_failed": summary.n_failed,
        "max_docs": max_docs,
        "npmi": None if summary.npmi is None else float(np.mean(summary.npmi)),
        # NPMI's reference is the scored documents of the split: its size goes beside the figure.
        "npmi_reference": f"{split}, {summary.n_docs:,} documents",
        "tu": float(tu),
        "diversity": topic_diversity(tw, min(25, v)),
        "generated_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    drift_html = None
    if drift is not None:
        log.info("      drawing the drift page: %d windows, %d alerts from %s", len(drift.windows), len(drift.alerts), drift.source)
        baseline = getattr(model.scorer, "drift_baseline", None)
        out.update(write_drift_files(drift, baseline, names, out_dir, cloud_columns))
        drift_html = render_drift(drift, out, names, baseline)
        info["drift"] = drift_info(drift)
    log.info("[6/6] writing index.html")
    out["html"] = out_dir / "index.html"
    out["html"].write_text(render_html(info, out, tw, model.words, top, names, summary, drift_html), encoding="utf-8")
    info["seconds"] = round(time.time() - started, 2)
    info["files"] = {role: p.name for role, p in out.items()}
    out["json"] = write_json(out_dir / "report.json", info)
    log.info("report written to %s (%.1f s)", out_dir, info["seconds"])
    return Report(out_dir, out, summary, info)


def _topic_label(k: int, words: Sequence[str], top: np.ndarray, n: int = 3) -> str:
    return f"T{k}: " + " ".join(words[i] for i in top[k][:n])


def _doc_name(doc_id: str, label: Optional[str], width: int = 44) -> str:
    name = doc_id if len(doc_id) <= width else "..." + doc_id[-(width - 3) :]
    return f"{name} [{label}]" if label and label not in doc_id else name

