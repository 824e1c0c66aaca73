"""Where MLflow data lives by default: the tracking URI and artifact root rules (no MLflow import).

The embedded default store is a SQLite file under the state folder, with artifacts
beside it; ``mlflow.tracking_uri`` in config or ``$MLFLOW_TRACKING_URI`` override it.
Training, the registry, serving, the stream and ``ntm services`` all resolve URIs here.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from ntm_spark.core.paths import state_dir

if TYPE_CHECKING:  # pragma: no cover
    from ntm_spark.core.config import MlflowConfig


def default_tracking_uri() -> str:
    """Return the embedded default MLflow store: a SQLite file under the state folder."""
    return f"sqlite:///{state_dir() / 'mlflow.db'}"


def default_artifact_root() -> str:
    """Return the local artifact root shared by the embedded store and the server."""
    return (state_dir() / "mlartifacts").as_uri()


def resolve_tracking_uri(cfg: Optional["MlflowConfig"] = None) -> str:
    """Return the tracking URI: ``cfg.tracking_uri`` > ``$MLFLOW_TRACKING_URI`` > the default SQLite store."""
    if cfg is not None and cfg.tracking_uri:
        return cfg.tracking_uri
    return os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def artifact_location_for(tracking_uri: str) -> Optional[str]:
    """Where a new experiment keeps its artifacts: beside a SQLite store, or the server's choice (``None``).

    The default store uses :func:`default_artifact_root`, the
    folder ``mlflow server`` serves too; another SQLite file gets ``<its folder>/mlartifacts``
    (never ``./mlruns`` in whatever the working directory happens to be).
    """
    if tracking_uri == default_tracking_uri():
        return default_artifact_root()
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri[len("sqlite:///") :])
        return (db.parent / "mlartifacts").resolve().as_uri()
    return None


def check_reachable(uri: str, timeout: float = 5.0) -> Optional[str]:
    """Return why an HTTP tracking server cannot be reached, or ``None`` (always ``None`` for local stores)."""
    if not uri.startswith(("http://", "https://")):
        return None
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as resp:  # noqa: S310 - user's URI
            return None if resp.status == 200 else f"/health answered HTTP {resp.status}"
    except urllib.error.HTTPError as err:
        return f"/health answered HTTP {err.code}"
    except (OSError, ValueError) as err:
        return str(getattr(err, "reason", err))
