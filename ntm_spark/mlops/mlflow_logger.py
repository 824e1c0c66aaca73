"""A Lightning logger that writes each epoch's metrics into an existing MLflow run.

The Lightning system logs ``train/loss``, ``val/loss``, ``val/npmi``... once per
epoch; this logger forwards them to MLflow with ``step = epoch``, so the MLflow UI
charts them per epoch. It never creates runs or logs hyperparameters (the
tracking code logs the resolved config itself) and only rank 0 writes.
"""

from __future__ import annotations

import time
from typing import Any, Optional, Sequence

from lightning_module._compat import pl

rank_zero_only = pl.utilities.rank_zero_only


class MlflowEpochLogger(pl.loggers.Logger):
    """Forward Lightning's logged metrics to the MLflow run ``run_id``.

    Args:
        run_id: The MLflow run to write to.
        tracking_uri: Its tracking URI (``None``: MLflow's current one).
        skip_substrings: Metrics whose name contains one of these are not forwarded
            (per-step values such as ``train/batch_loss``).
    """

    def __init__(self, run_id: str, tracking_uri: Optional[str] = None, skip_substrings: Sequence[str] = ("batch_",)) -> None:
        super().__init__()
        self._run_id = run_id
        self._tracking_uri = tracking_uri
        self._skip = tuple(skip_substrings)
        self._client: Any = None

    @property
    def name(self) -> str:
        """The logger's name."""
        return "mlflow"

    @property
    def version(self) -> str:
        """The MLflow run id."""
        return self._run_id

    def _mlflow(self) -> Any:
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self._tracking_uri)
        return self._client

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Ignore: the resolved config is logged as run params by :mod:`ntm_spark.mlops.tracking`."""

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: Optional[int] = None) -> None:
        """Write ``metrics`` at ``step = epoch`` (Lightning adds ``epoch`` to every logged dict)."""
        from mlflow.entities import Metric

        epoch = metrics.get("epoch")
        at = int(epoch) if epoch is not None else int(step or 0)
        now = int(time.time() * 1000)
        batch = [
            Metric(key, float(value), now, at)
            for key, value in metrics.items()
            if key != "epoch" and not any(s in key for s in self._skip)
        ]
        if batch:
            self._mlflow().log_batch(self._run_id, metrics=batch, synchronous=True)
