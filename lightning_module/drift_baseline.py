"""The drift baseline of a trained model: its training split scored the way the stream scores.

The stream compares each window's topic prevalence with this (docs/streaming.md "Drift
monitoring"). The weights are the scorer's: ``softmax(mu)`` in eval mode
(:meth:`lightning_module.model.NTMModel.infer_topics`); the arithmetic is
:class:`ntm_spark.core.drift.TopicSums`, the same the stream's windows use.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch

from lightning_module.data import dense_on_device, list_row_groups, open_parquet, table_to_csr
from ntm_spark.core.contract import split_token_counts
from ntm_spark.core.drift import DriftBaseline, TopicSums, choose_oov_split
from ntm_spark.core.schema import INDICES_COL, SPLITS, VALUES_COL


def compute_drift_baseline(
    model: Any,
    files: Sequence[Any],
    manifest: Optional[dict] = None,
    split: str = "train",
    batch_rows: int = 4096,
) -> Optional[DriftBaseline]:
    """Score the bag-of-words Parquet ``files`` of ``split`` and summarize them as a :class:`DriftBaseline`.

    Args:
        model: The trained ``NTMModel`` (any device; its train/eval mode is restored afterwards).
        files: The split's Parquet files.
        manifest: The data folder's manifest, for the token counts of the OOV baseline: a split
            the vocabulary was not fitted on (validation) when it has tokens, else ``split``
            (:func:`ntm_spark.core.drift.choose_oov_split`).
        split: The split's name, recorded in the baseline.
        batch_rows: Documents per inference batch.

    Returns:
        The baseline, or ``None`` when the files hold no document.
    """
    device = next(model.parameters()).device
    sums = TopicSums.zeros(int(model.num_topics))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for group in list_row_groups(files):
                block = table_to_csr(open_parquet(group.path).read_row_group(group.index, columns=[INDICES_COL, VALUES_COL]))
                for r0 in range(0, len(block), batch_rows):
                    part = block.take(range(r0, min(r0 + batch_rows, len(block))))
                    x = dense_on_device(part, int(model.vocab_size), device)  # (b, V)
                    sums.add(model.infer_topics(x).float().cpu().numpy())  # (b, K)
    finally:
        model.train(was_training)
    if not sums.documents:
        return None
    counts = {s: split_token_counts(manifest, s) for s in SPLITS}
    fit_splits = ((manifest or {}).get("vocabulary") or {}).get("fit_splits") or [split]
    oov_split = choose_oov_split(counts, fit_splits)
    tokens, in_vocab = counts[oov_split] if oov_split else (None, None)
    return DriftBaseline.from_sums(sums, tokens, in_vocab, split, oov_split)
