"""The report page: ``index.html`` assembled from the templates in ``ntm_spark/report/templates/``.

``page.html`` is the skeleton, ``fragments.html`` holds the sections and rows, and
``report.css`` and ``report.js`` are inlined into the page, so it is self-contained:
images are embedded as base64 data URIs and nothing (CSS, script, font) is fetched.
:func:`render_drift` makes the drift section (the stream's drift windows) when the report has one.
``report.js`` sets ``data-images-ok`` on ``<body>`` once every image has decoded; the
headless Chromium test reads it. The templates are package data, read with
:mod:`importlib.resources`.
"""

from __future__ import annotations

import base64
import functools
import html
import re
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any, Optional, Sequence

import numpy as np

from ntm_spark.report._base import MAX_HEATMAP_LABELS
from ntm_spark.report.data import SplitSummary
from ntm_spark.report.drift import DriftHistory, prevalence_matrix, training_prevalence

#: At most this many alert windows (the latest) are listed on the page; drift_windows.csv has them all.
MAX_ALERT_ROWS = 200

_FRAGMENT_RE = re.compile(r"^<!-- fragment: (\w+) -->\n(.*?)\n(?=<!-- fragment: |\Z)", re.S | re.M)


@functools.lru_cache(maxsize=None)
def read_template(name: str) -> str:
    """Return the text of ``templates/<name>`` (``page.html``, ``fragments.html``, ``report.css``, ``report.js``)."""
    return (resources.files("ntm_spark.report.templates") / name).read_text(encoding="utf-8")


@functools.lru_cache(maxsize=None)
def _fragments() -> dict[str, Template]:
    return {name: Template(body) for name, body in _FRAGMENT_RE.findall(read_template("fragments.html"))}


def _fill(fragment: str, **values: Any) -> str:
    return _fragments()[fragment].substitute(values)


def _png(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def render_html(
    info: dict[str, Any],
    files: dict[str, Path],
    topic_word: np.ndarray,
    words: Sequence[str],
    top: np.ndarray,
    names: Sequence[str],
    summary: SplitSummary,
    drift: Optional[str] = None,
) -> str:
    """Return the self-contained report page (inline CSS and script, images as data URIs).

    Args:
        info: The report's summary numbers (``report.json`` without ``seconds`` and ``files``).
        files: The files written so far, by role (the PNGs are embedded, every file is linked).
        topic_word: ``(K, V)`` topic-word weights.
        words: The vocabulary.
        top: Each topic's top word ids, ``(K, n)``.
        names: A short name per topic (``"T3: a b c"``).
        summary: What scoring the split found.
        drift: The drift section's HTML (:func:`render_drift`), or ``None`` for no drift section.
    """
    from ntm_spark.core.topic_metrics import topic_uniqueness

    esc = html.escape
    k = topic_word.shape[0]
    tu = topic_uniqueness(top, per_topic=True)
    prev = summary.prevalence
    pmax = max(float(prev.max()), 1e-12)
    rows = []
    for t in range(k):
        cells = " ".join(_fill("topic_word", word=esc(words[i]), weight=f"{topic_word[t, i]:.3f}") for i in top[t])
        rows.append(
            _fill(
                "topic_row",
                topic=t,
                bar_px=int(80 * prev[t] / pmax),
                prevalence=f"{prev[t]:.3f}",
                npmi=f"{summary.npmi[t]:.3f}" if summary.npmi is not None else "",
                tu=f"{tu[t]:.2f}",
                words=cells,
            )
        )
    samples = []
    for doc_id, label, ws in zip(summary.sample_ids, summary.sample_labels, summary.sample_weights):
        best = np.argsort(-ws)[:3]
        tops = "; ".join(f"{esc(names[b])} ({ws[b]:.2f})" for b in best)
        samples.append(_fill("sample_row", doc_id=esc(doc_id), label=esc(label or ""), topics=tops))

    def stat(label: str, value: Any) -> str:
        return _fill("stat", label=esc(label), value=esc(str(value)))

    npmi_all = "n/a" if info.get("npmi") is None else f"{info['npmi']:.3f}"
    if info.get("npmi") is not None and info.get("npmi_reference"):
        npmi_all += f" (reference: {info['npmi_reference']})"
    stats = (
        stat("topics", k)
        + stat("vocabulary", info["vocab_size"])
        + stat(f"{info['split']} documents scored", info["n_docs"])
        + stat("NPMI", npmi_all)
        + stat("topic uniqueness", f"{info['tu']:.3f}")
        + stat("diversity", f"{info['diversity']:.3f}")
    )
    failed = _fill("failed_note", n_failed=info["n_failed"]) if info["n_failed"] else ""
    sections = [
        ("summary", "Summary", _fill("summary", stats=stats, failed_note=failed)),
        ("topics", "Top words per topic", _fill("topics", rows="".join(rows))),
        ("wordclouds", "Word clouds", _fill("wordclouds", image=_png(files["wordclouds"]))),
        ("map", "Intertopic distance map", _fill("map", image=_png(files["topic_map"]))),
        (
            "prevalence",
            "Topic prevalence",
            _fill("prevalence", n_docs=info["n_docs"], split=esc(info["split"]), image=_png(files["prevalence"])),
        ),
        (
            "samples",
            "Topic assignments of sample documents",
            _fill("samples", image=_png(files["sample_assignments"]), rows="".join(samples)),
        ),
    ]
    if "label_heatmap" in files:
        shown = _fill("labels_shown_note", n=MAX_HEATMAP_LABELS) if len(summary.labels) > MAX_HEATMAP_LABELS else ""
        sections.append(("labels", "Topics by label", _fill("labels", shown_note=shown, image=_png(files["label_heatmap"]))))
    if drift is not None:
        sections.append(("drift", "Drift in the stream", drift))
    listed = [p.name for role, p in files.items() if role != "html"] + ["report.json"]
    links = " &middot; ".join(_fill("file_link", name=esc(n)) for n in listed)
    sections.append(("files", "Files", _fill("files", links=links)))
    nav = "".join(_fill("nav_link", id=sid, title=esc(title)) for sid, title, _ in sections)
    body = "".join(_fill("section", id=sid, title=esc(title), content=content) for sid, title, content in sections)
    run = _fill("run_note", run_id=esc(info["run_id"])) if info.get("run_id") else ""
    return Template(read_template("page.html")).substitute(
        model_name=esc(info["model_name"]),
        source=esc(str(info["model"])),
        run=run,
        data_dir=esc(info["data_dir"]),
        split=esc(info["split"]),
        generated_at=esc(info["generated_at"]),
        nav=nav,
        body=body,
        css=read_template("report.css"),
        script=read_template("report.js"),
    )


def _num(value: Optional[float], digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _span(start: Any, end: Any) -> str:
    """``2026-12-07 13:01:00 - 13:02:00`` (the end's date only when it differs)."""
    end_fmt = "%H:%M:%S" if end.date() == start.date() else "%Y-%m-%d %H:%M:%S"
    return f"{start:%Y-%m-%d %H:%M:%S} - {end.strftime(end_fmt)}"


def render_drift(
    history: DriftHistory, files: dict[str, Path], names: Sequence[str], baseline: Any = None
) -> str:
    """Return the drift section: the windows' figures, the alert table and notes (or "no windows yet").

    Args:
        history: The drift windows (:func:`ntm_spark.report.drift.drift_history`).
        files: The report's files by role (``drift_prevalence`` and ``drift_rates`` are embedded).
        names: A short name per topic.
        baseline: The model's :class:`~ntm_spark.core.drift.DriftBaseline`, or ``None``.
    """
    esc = html.escape
    notes = []
    if history.skipped:
        examples = "; ".join(history.skip_examples)
        notes.append(f"{history.skipped} record(s) of {history.source} were left out: {examples}.")
    if history.replaced:
        notes.append(f"{history.replaced} window(s) were read twice (a replayed record): the last record read is shown.")
    windows = history.windows
    if not windows:
        note_html = "".join(_fill("drift_note", text=esc(n)) for n in notes)
        return _fill("drift_empty", source=esc(history.source), notes=note_html)
    k = len(names)
    _, other_k = prevalence_matrix(windows, k)
    if other_k:
        notes.append(f"{other_k} window(s) have a prevalence over another number of topics than this model's {k}: left out of the prevalence figure.")
    training, training_source = training_prevalence(baseline, windows, k)
    if np.isnan(training).all():
        training_source = "unknown: the model has no drift_baseline.json and the records list no topic baselines"
    partial = sum(w.partial for w in windows)
    if partial:
        notes.append(f"{partial} window(s) are partial (written when the stream stopped before the window ended).")
    no_baseline = sum(w.scored > 0 and w.js_distance is None for w in windows)
    if no_baseline:
        notes.append(f"{no_baseline} window(s) have no JS distance: the serving model had no drift baseline (see the records' notes).")

    th = history.thresholds
    rules = [f"JS distance > {th.js_distance:g}"]
    if th.oov_rate_increase is not None:
        rules.append(f"OOV rate > training + {th.oov_rate_increase:g}")
    if th.empty_rate is not None:
        rules.append(f"empty rate > {th.empty_rate:g}")
    if th.z_score is not None:
        rules.append(f"|z| > {th.z_score:g}")
    versions = sorted({f"{w.model_name} v{w.model_version}" for w in windows if w.model_version is not None})

    def stat(label: str, value: Any) -> str:
        return _fill("stat", label=esc(label), value=esc(str(value)))

    stats = (
        stat("windows", len(windows))
        + stat("alerts", len(history.alerts))
        + stat("from", f"{windows[0].start:%Y-%m-%d %H:%M}")
        + stat("to", f"{windows[-1].end:%Y-%m-%d %H:%M} UTC")
        + stat("documents scored", f"{sum(w.scored for w in windows):,}")
    )
    intro = (
        f"The stream's drift windows from {history.source}, scored by {', '.join(versions) or 'an unnamed model'}: "
        f"each window's topic prevalence against the training prevalence ({training_source}), its Jensen-Shannon "
        f"distance, OOV and empty rates and scored documents. Alert rule (the stream's config): "
        f"{' or '.join(rules)}, in windows of at least {th.min_documents} scored documents."
    )
    shown = history.alerts[-MAX_ALERT_ROWS:]
    rows = []
    for w in shown:
        top = "; ".join(f"{names[z['topic']] if 0 <= z['topic'] < k else z['topic']} z={z['z']:+.1f}" for z in w.top_z[:3])
        rows.append(
            _fill(
                "drift_alert_row",
                start=esc(w.start.isoformat()),
                window=esc(_span(w.start, w.end)),
                scored=w.scored,
                js=_num(w.js_distance),
                oov=f"{_num(w.oov_rate)} ({_num(w.oov_rate_baseline)})",
                empty=_num(w.empty_rate),
                model=esc(f"{w.model_name} v{w.model_version}" if w.model_version is not None else ""),
                reasons=esc("; ".join(w.alert_reasons)),
                top_z=esc(top),
            )
        )
    if rows:
        more = f"<p>The latest {len(shown)} of {len(history.alerts)} alert windows; drift_windows.csv lists them all.</p>"
        alerts = _fill("drift_alerts", rows="".join(reversed(rows)), shown_note=more if len(shown) < len(history.alerts) else "")
    else:
        alerts = _fill("drift_no_alerts")
    return _fill(
        "drift",
        intro=esc(intro),
        stats=stats,
        notes="".join(_fill("drift_note", text=esc(n)) for n in notes),
        prevalence=_png(files["drift_prevalence"]),
        rates=_png(files["drift_rates"]),
        alerts=alerts,
    )
