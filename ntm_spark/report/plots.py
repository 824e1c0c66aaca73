"""The report's figures: word clouds, sample assignments, prevalence, the intertopic map and the label heatmap.

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


def _save(fig: Any, path: PathLike) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    fig.savefig(path, dpi=100, facecolor="white")
    plt.close(fig)
    return path
