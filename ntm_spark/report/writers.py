"""The report's tables: the top words (CSV and markdown), the per-figure CSVs and ``report.json``.

Every file is written UTF-8; weights have six decimals in the CSVs and three in
the markdown table.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ntm_spark.report._base import PathLike


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


def _short(name: str) -> str:
    """Return the top words of a topic name: ``"T3: a b c"`` -> ``"a b c"``."""
    return name.split(": ", 1)[1]


def write_sample_documents(
    path: Path, ids: Sequence[str], labels: Sequence[Optional[str]], weights: np.ndarray
) -> Path:
    """Write ``id, label, topic_0..topic_{K-1}``: the topic weights ``(S, K)`` of the sample documents."""
    k = weights.shape[1]
    return _write_csv(
        path,
        ["id", "label"] + [f"topic_{t}" for t in range(k)],
        [[i, lab or ""] + [f"{w:.6f}" for w in ws] for i, lab, ws in zip(ids, labels, weights)],
    )


def write_prevalence(path: Path, prevalence: np.ndarray, names: Sequence[str]) -> Path:
    """Write ``topic, prevalence, top_words``: the mean topic weight ``(K,)`` over the split."""
    return _write_csv(
        path,
        ["topic", "prevalence", "top_words"],
        [[t, f"{prevalence[t]:.6f}", _short(names[t])] for t in range(len(names))],
    )


def write_topic_map(path: Path, coords: np.ndarray, prevalence: np.ndarray, names: Sequence[str]) -> Path:
    """Write ``topic, x, y, prevalence, top_words``: the intertopic map's coordinates ``(K, 2)``."""
    return _write_csv(
        path,
        ["topic", "x", "y", "prevalence", "top_words"],
        [
            [t, f"{coords[t, 0]:.6f}", f"{coords[t, 1]:.6f}", f"{prevalence[t]:.6f}", _short(names[t])]
            for t in range(len(names))
        ],
    )


def write_label_means(path: Path, labels: Sequence[str], counts: np.ndarray, means: np.ndarray) -> Path:
    """Write ``label, n_docs, topic_0..topic_{K-1}``: the mean topic weight ``(L, K)`` of each label."""
    k = means.shape[1]
    return _write_csv(
        path,
        ["label", "n_docs"] + [f"topic_{t}" for t in range(k)],
        [[lab, int(n)] + [f"{w:.6f}" for w in row] for lab, n, row in zip(labels, counts, means)],
    )


def _cell(value: Optional[float]) -> str:
    return "" if value is None else f"{value:.6f}"


def write_drift_windows(path: Path, windows: Sequence[Any], num_topics: int) -> Path:
    """Write one row per drift window: its figures, alert and reasons, then ``prevalence_0..{K-1}``.

    ``windows`` are :class:`~ntm_spark.report.drift.DriftWindow`; a window whose prevalence is
    missing or over another number of topics leaves the prevalence cells empty.
    """
    rows = []
    for w in windows:
        prev = w.prevalence if w.prevalence is not None and len(w.prevalence) == num_topics else [None] * num_topics
        rows.append(
            [
                w.start.isoformat(), w.end.isoformat(), w.model_name or "", w.model_version or "", w.scored,
                _cell(w.js_distance), _cell(w.oov_rate), _cell(w.oov_rate_baseline), _cell(w.empty_rate),
                int(w.alert), "; ".join(w.alert_reasons), int(w.partial),
            ]  # fmt: skip
            + [_cell(p) for p in prev]
        )
    header = [
        "window_start", "window_end", "model_name", "model_version", "scored", "js_distance", "oov_rate",
        "oov_rate_baseline", "empty_rate", "alert", "alert_reasons", "partial",
    ]  # fmt: skip
    return _write_csv(path, header + [f"prevalence_{t}" for t in range(num_topics)], rows)


def write_json(path: Path, info: dict[str, Any]) -> Path:
    """Write ``info`` as indented JSON with a final newline."""
    path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return path
