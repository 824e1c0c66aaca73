"""The report's figures: word clouds, sample assignments, prevalence, the intertopic map, the label heatmap and drift.

Each ``plot_*`` draws one PNG with matplotlib's Agg backend and returns its path.
The word clouds use the font the ``wordcloud`` package ships, so nothing is fetched
at render time. matplotlib and wordcloud are the ``explore`` extra, imported only
when a figure is drawn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ntm_spark.report._base import EXTRA_HINT, PathLike


def _pyplot():
    try:
        import matplotlib
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(f"the exploration report needs matplotlib: {EXTRA_HINT}.") from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


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
        raise ImportError(f"the word clouds need the wordcloud package: {EXTRA_HINT}.") from err
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


ALERT_COLOR = "#d62728"


def _time_axis(ax: Any) -> None:
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def _shade_alerts(ax: Any, x0: np.ndarray, x1: np.ndarray, alerts: np.ndarray) -> None:
    """Shade the alert windows ``[start, end)`` over the whole height of ``ax`` (back-to-back ones as one span)."""
    spans: list[list[float]] = []
    for i in np.flatnonzero(alerts):
        if spans and x0[i] <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], x1[i])
        else:
            spans.append([x0[i], x1[i]])
    for start, end in spans:
        ax.axvspan(start, end, color=ALERT_COLOR, alpha=0.15, lw=0, zorder=0)


def _window_x(starts: Sequence[Any], ends: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import matplotlib.dates as mdates

    x0 = np.asarray(mdates.date2num(list(starts)), dtype=np.float64)
    x1 = np.asarray(mdates.date2num(list(ends)), dtype=np.float64)
    return x0, x1, (x0 + x1) / 2


def plot_drift_prevalence(
    starts: Sequence[Any],
    ends: Sequence[Any],
    prevalence: np.ndarray,
    training: np.ndarray,
    alerts: np.ndarray,
    topic_names: Sequence[str],
    path: PathLike,
    columns: int = 5,
) -> Path:
    """Draw each topic's prevalence per stream window against its training prevalence, alert windows shaded.

    Args:
        starts: Window starts (naive UTC datetimes), oldest first.
        ends: Window ends.
        prevalence: ``(W, K)`` mean topic weight per window (NaN: the window has none).
        training: ``(K,)`` the training prevalence (NaN: unknown), drawn dashed.
        alerts: ``(W,)`` the windows whose alert flag is up.
        topic_names: A label per topic.
        path: Output PNG.
        columns: Topics per row.
    """
    plt = _pyplot()
    w, k = prevalence.shape
    x0, x1, mid = _window_x(starts, ends)
    columns = max(1, min(columns, k))
    rows = -(-k // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.4 * columns, 1.0 + 2.4 * rows), squeeze=False, sharex=True)
    marker = "o" if w <= 60 else None
    for t, ax in enumerate(axes.ravel()):
        if t >= k:
            ax.axis("off")
            continue
        _shade_alerts(ax, x0, x1, alerts)
        ax.plot(mid, prevalence[:, t], color="#4c72b0", lw=1.3, marker=marker, ms=3, label="stream window")
        if np.isfinite(training[t]):
            ax.axhline(training[t], color="#dd8452", ls="--", lw=1.3, label="training")
        top = np.nanmax(np.append(prevalence[:, t], training[t]))
        ax.set_ylim(0, max(float(top) * 1.25, 1e-3) if np.isfinite(top) else 1.0)
        ax.set_title(topic_names[t], fontsize=9)
        ax.tick_params(labelsize=7)
        _time_axis(ax)
    axes[0, 0].legend(fontsize=7, loc="lower left", frameon=False)
    fig.suptitle("Topic prevalence per stream window (solid) against training (dashed); alert windows shaded", fontsize=12)
    fig.tight_layout()
    return _save(fig, path)


def plot_drift_rates(
    starts: Sequence[Any],
    ends: Sequence[Any],
    scored: np.ndarray,
    js: np.ndarray,
    oov: np.ndarray,
    oov_baseline: np.ndarray,
    empty: np.ndarray,
    alerts: np.ndarray,
    thresholds: Any,
    path: PathLike,
) -> Path:
    """Draw the per-window JS distance, OOV rate, empty rate and scored documents with the alert thresholds.

    Args:
        starts: Window starts (naive UTC datetimes), oldest first.
        ends: Window ends.
        scored: ``(W,)`` documents scored per window.
        js: ``(W,)`` JS distance to the training prevalence (NaN: none).
        oov: ``(W,)`` OOV rate (NaN: none).
        oov_baseline: ``(W,)`` the training OOV rate each record compared with (NaN: unknown).
        empty: ``(W,)`` ``empty_after_normalization`` rate (NaN: none).
        alerts: ``(W,)`` the windows whose alert flag is up (shaded).
        thresholds: The stream's :class:`~ntm_spark.core.drift.DriftThresholds`.
        path: Output PNG.
    """
    plt = _pyplot()
    x0, x1, mid = _window_x(starts, ends)
    marker = "o" if len(mid) <= 60 else None
    fig, axes = plt.subplots(4, 1, figsize=(12, 10), sharex=True)
    ax_js, ax_oov, ax_empty, ax_n = axes
    for ax in axes:
        _shade_alerts(ax, x0, x1, alerts)
        _time_axis(ax)

    ax_js.plot(mid, js, color="#4c72b0", marker=marker, ms=3, label="JS distance")
    ax_js.axhline(thresholds.js_distance, color=ALERT_COLOR, ls="--", lw=1.2, label=f"alert above {thresholds.js_distance:g}")
    ax_js.set_ylabel("JS distance")
    ax_js.set_ylim(0, max(np.nanmax(np.append(js, 0.0)) * 1.2, thresholds.js_distance * 1.3))

    ax_oov.plot(mid, oov, color="#4c72b0", marker=marker, ms=3, label="OOV rate")
    if np.isfinite(oov_baseline).any():
        ax_oov.step(mid, oov_baseline, where="mid", color="#dd8452", ls="--", lw=1.2, label="training OOV rate")
        if thresholds.oov_rate_increase is not None:
            ax_oov.step(
                mid, oov_baseline + thresholds.oov_rate_increase, where="mid", color=ALERT_COLOR, ls="--", lw=1.2,
                label=f"alert above training + {thresholds.oov_rate_increase:g}",
            )  # fmt: skip
    ax_oov.set_ylabel("OOV rate")
    ax_oov.set_ylim(0, 1)

    ax_empty.plot(mid, empty, color="#4c72b0", marker=marker, ms=3, label="empty rate")
    if thresholds.empty_rate is not None:
        ax_empty.axhline(thresholds.empty_rate, color=ALERT_COLOR, ls="--", lw=1.2, label=f"alert above {thresholds.empty_rate:g}")
    ax_empty.set_ylabel("empty rate")
    ax_empty.set_ylim(0, 1)

    width = np.maximum((x1 - x0) * 0.8, 1e-9)
    ax_n.bar(mid, scored, width=width, color="#8c8c8c", label="scored documents")
    ax_n.axhline(thresholds.min_documents, color=ALERT_COLOR, ls=":", lw=1.2, label=f"no alert below {thresholds.min_documents}")
    ax_n.set_ylabel("documents")
    ax_n.set_xlabel("window (UTC)")
    for ax in axes:
        ax.legend(fontsize=8, loc="upper left", frameon=False)
    ax_js.set_title("Drift per stream window against training; alert windows shaded")
    fig.tight_layout()
    return _save(fig, path)


def _save(fig: Any, path: PathLike) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    fig.savefig(path, dpi=100, facecolor="white")
    plt.close(fig)
    return path
