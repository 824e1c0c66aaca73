"""MLflow tracking for training runs: where runs go, what each run records.

The tracking URI is resolved as ``mlflow.tracking_uri`` (config) >
``$MLFLOW_TRACKING_URI`` > the SQLite file under the state folder
(:func:`ntm_spark.core.uris.default_tracking_uri`, the same store ``ntm services up
--mlflow`` serves). Runs are grouped in the experiment named by ``mlflow.experiment``.

Every training run logs:

* params: the resolved config, flattened (``num_topics``, ``preset``...), and ``config.yaml``;
* per-epoch metrics ``train/loss|recon|kl``, ``val/loss|recon|kl|perplexity|npmi|tu|diversity``
  (live through :class:`ntm_spark.mlops.mlflow_logger.MlflowEpochLogger`, or afterwards from the
  model folder's CSV logs), and the final ``metrics.json`` values (``val_loss``, ``npmi``...);
* ``vocab.txt``, ``manifest.json``, ``topic_word.npy``, ``topics.csv``, ``topics.md``,
  ``hparams.json`` and exploration plots when the folder holds some (``plots/``);
* ``environment.json`` (package versions, git commit, device) and tags for them;
* the pyfunc model (:func:`ntm_spark.serving.pyfunc_model.log_pyfunc_model`) as ``runs:/<id>/model``.

Example (what ``jobs/train.py`` calls)::

    from ntm_spark.mlops.tracking import track_training
    tracked = track_training(lambda loggers: train_model(cfg, loggers=loggers), config=to_dict(cfg))
    tracked.run_id, tracked.registration.decision.reason
"""

from __future__ import annotations

import csv
import json
import logging
import os
import platform
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Union

from ntm_spark.core import storage
from ntm_spark.core.config import MlflowConfig
from ntm_spark.core.contract import read_manifest
from ntm_spark.core.uris import artifact_location_for, resolve_tracking_uri

log = logging.getLogger(__name__)

#: Model-folder files logged as plain run artifacts (browsable in the UI).
RUN_ARTIFACT_FILES = (
    "vocab.txt", "manifest.json", "topic_word.npy", "topics.csv", "topics.md", "hparams.json", "metrics.json",
    "topic_stability.json",
)  # fmt: skip
#: Packages whose versions each run records.
ENV_PACKAGES = ("torch", "pytorch-lightning", "mlflow", "pyspark", "numpy", "pandas", "pyarrow", "nltk", "ntm-spark")
#: The artifact path of the logged pyfunc model.
MODEL_ARTIFACT_PATH = "model"


# --------------------------------------------------------------------------- where


def configure_tracking(cfg: Optional[MlflowConfig] = None) -> str:
    """Point MLflow's tracking and registry at the resolved URI; return it."""
    import mlflow

    uri = resolve_tracking_uri(cfg)
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def ensure_experiment(name: str, tracking_uri: Optional[str] = None) -> str:
    """Return the id of experiment ``name``, creating it (artifacts beside a SQLite store) when missing."""
    from mlflow.tracking import MlflowClient

    uri = tracking_uri or resolve_tracking_uri()
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location_for(uri))


# --------------------------------------------------------------------------- what


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Flatten a nested config to ``{"a.b": "value"}`` strings (MLflow params hold at most 6000 chars)."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten_config(value, prefix=f"{name}."))
        else:
            text = json.dumps(value) if isinstance(value, (list, tuple, dict)) else str(value)
            out[name] = text[:6000]
    return out


def environment_info() -> dict[str, Any]:
    """Package versions, Python, platform, git commit and the device a run used."""
    from importlib.metadata import PackageNotFoundError, version

    from ntm_spark.core.paths import git_commit

    packages = {}
    for dist in ENV_PACKAGES:
        try:
            packages[dist] = version(dist)
        except PackageNotFoundError:
            packages[dist] = None
    device = {"type": "cpu", "cpu_count": os.cpu_count()}
    try:
        import torch

        if torch.cuda.is_available():
            device = {
                "type": "cuda",
                "count": torch.cuda.device_count(),
                "name": torch.cuda.get_device_name(0),
                "cpu_count": os.cpu_count(),
            }
    except ImportError:  # pragma: no cover - torch is a training dependency
        pass
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": packages,
        "git_commit": git_commit(),
        "device": device,
    }


def read_epoch_metrics(model_dir: Union[str, Path]) -> list[tuple[str, float, int]]:
    """Return ``(name, value, epoch)`` from the CSV logger files under ``<model_dir>/logs``.

    Training always writes them, so a run trained without the live MLflow logger
    (e.g. under TorchDistributor) still gets its per-epoch history.
    """
    rows: list[tuple[str, float, int]] = []
    files = sorted(Path(model_dir).glob("logs/**/metrics.csv"), key=lambda p: p.stat().st_mtime)
    if not files:
        return rows
    with open(files[-1], newline="", encoding="utf-8") as fh:
        for rec in csv.DictReader(fh):
            try:
                epoch = int(float(rec.get("epoch") or 0))
            except ValueError:
                continue
            for key, value in rec.items():
                if key in ("epoch", "step") or value in (None, "") or "batch_" in key:
                    continue
                try:
                    rows.append((key, float(value), epoch))
                except ValueError:
                    continue
    return rows


def _log_params(client: Any, run_id: str, params: dict[str, str]) -> None:
    from mlflow.entities import Param

    existing = client.get_run(run_id).data.params
    items = [Param(k, v) for k, v in params.items() if k not in existing]
    for start in range(0, len(items), 100):
        client.log_batch(run_id, params=items[start : start + 100], synchronous=True)


def _log_metrics(client: Any, run_id: str, values: list[tuple[str, float, int]]) -> None:
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    items = [Metric(k, v, now, step) for k, v, step in values]
    for start in range(0, len(items), 1000):
        client.log_batch(run_id, metrics=items[start : start + 1000], synchronous=True)


def log_training_run(
    model_dir: Union[str, Path],
    config: Optional[Mapping[str, Any]] = None,
    run_id: Optional[str] = None,
    log_model: bool = True,
    lemmatizer: Any = None,
) -> str:
    """Log a finished training's model folder, config and environment to an MLflow run.

    Args:
        model_dir: The model folder written by training, local or a URI (``s3://...``: staged
            to a local temporary copy first, since MLflow logs artifacts from local files).
        config: The resolved config to log as params and ``config.yaml`` (default: the
            folder's ``config.yaml``).
        run_id: The run to log to; default: the active run (one is started if none).
        log_model: Also log the pyfunc model (``runs:/<run_id>/model``).
        lemmatizer: NLTK ``WordNetLemmatizer`` for the model's lemma table (default: the offline one).

    Returns:
        The run id.

    Raises:
        FileNotFoundError: when ``model_dir`` is not a model folder.
    """
    import mlflow
    import yaml
    from mlflow.tracking import MlflowClient

    if storage.is_remote(model_dir):
        with tempfile.TemporaryDirectory(prefix="ntm-stage-") as tmp:
            run_id = log_training_run(storage.stage_local(model_dir, tmp), config, run_id, log_model, lemmatizer)
        MlflowClient().set_tag(run_id, "ntm.model_dir", str(model_dir))
        return run_id
    folder = Path(model_dir)
    if not (folder / "model.pt").is_file():
        raise FileNotFoundError(f"model_dir={str(folder)!r} has no model.pt: pass the output_dir of `ntm train`.")
    if config is None and (folder / "config.yaml").is_file():
        config = yaml.safe_load((folder / "config.yaml").read_text()) or {}
    config = dict(config or {})
    active = mlflow.active_run()
    if run_id is None:
        run_id = active.info.run_id if active is not None else mlflow.start_run().info.run_id
    client = MlflowClient()

    _log_params(client, run_id, flatten_config(config))
    metrics = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").is_file() else {}
    finals = [(k, float(v), 0) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    history = [] if _has_epoch_metrics(client, run_id) else read_epoch_metrics(folder)
    _log_metrics(client, run_id, finals + history)

    env = environment_info()
    tags = {
        "mlflow.source.git.commit": env["git_commit"],
        "ntm.git_commit": env["git_commit"],
        "ntm.device": env["device"]["type"] + (f" ({env['device'].get('name')})" if env["device"].get("name") else ""),
        "ntm.model_dir": str(folder.resolve()),
    }
    manifest = read_manifest(folder, required=False) or {}
    vocab_sha = (manifest.get("vocabulary") or {}).get("sha256")
    if vocab_sha:
        tags["ntm.vocab_sha256"] = vocab_sha
    for key, value in tags.items():
        client.set_tag(run_id, key, value)

    with tempfile.TemporaryDirectory(prefix="ntm-run-") as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        (tmp_path / "environment.json").write_text(json.dumps(env, indent=2))
        for extra in ("config.yaml", "environment.json"):
            client.log_artifact(run_id, str(tmp_path / extra))
    for name in RUN_ARTIFACT_FILES:
        if (folder / name).is_file():
            client.log_artifact(run_id, str(folder / name))
    plots = [p for p in folder.rglob("*.png") if "checkpoints" not in p.parts]
    for plot in plots:
        client.log_artifact(run_id, str(plot), artifact_path="plots")

    if log_model:
        from ntm_spark.serving.pyfunc_model import log_pyfunc_model

        with _run_context(run_id):
            log_pyfunc_model(folder, name=MODEL_ARTIFACT_PATH, lemmatizer=lemmatizer)
    return run_id


def _has_epoch_metrics(client: Any, run_id: str) -> bool:
    return any("/" in key for key in client.get_run(run_id).data.metrics)


class _run_context:
    """Make ``run_id`` the active run for the duration (resuming it when another is active)."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._started = False

    def __enter__(self) -> None:
        import mlflow

        active = mlflow.active_run()
        if active is None or active.info.run_id != self.run_id:
            mlflow.start_run(run_id=self.run_id, nested=active is not None)
            self._started = True

    def __exit__(self, *exc: Any) -> None:
        import mlflow

        if self._started:
            mlflow.end_run()


# --------------------------------------------------------------------------- the one call for jobs/train.py


def is_rank_zero() -> bool:
    """Whether this process is global rank 0 (or not distributed): only it tracks."""
    for var in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK"):
        value = os.environ.get(var)
        if value not in (None, "", "0"):
            return False
    return True


@dataclass
class TrackedRun:
    """What :func:`track_training` produced."""

    run_id: Optional[str]
    model_uri: Optional[str]
    train_result: Any
    registration: Any = None  # ntm_spark.mlops.registry.RegistrationResult, when registered


def track_training(
    train_fn: Callable[[list], Any],
    config: Mapping[str, Any],
    mlflow_cfg: Optional[MlflowConfig] = None,
    run_name: Optional[str] = None,
    register: bool = True,
    tags: Optional[Mapping[str, str]] = None,
) -> TrackedRun:
    """Run ``train_fn`` inside an MLflow run, log everything, then register the model behind the gate.

    Args:
        train_fn: Called as ``train_fn(loggers)`` with the Lightning loggers to add
            (``[MlflowEpochLogger]`` on rank 0, ``[]`` elsewhere); returns an object with
            ``model_dir`` (``lightning_module.train.TrainResult``) or the model folder path.
        config: The resolved training config (logged as params and ``config.yaml``).
        mlflow_cfg: Tracking settings (default: ``load_config("mlflow")``).
        run_name: The MLflow run name.
        register: Register the model under ``mlflow_cfg.registered_model_name`` and apply the
            ``challenger``/``champion`` gate.
        tags: Extra run tags.

    Returns:
        :class:`TrackedRun`; on ranks other than 0 only ``train_result`` is set.
    """
    if not is_rank_zero():
        return TrackedRun(None, None, train_fn([]))
    import mlflow

    from ntm_spark.core.config import load_config

    cfg = mlflow_cfg or load_config("mlflow")
    uri = configure_tracking(cfg)
    exp_id = ensure_experiment(cfg.experiment, uri)
    from ntm_spark.mlops.mlflow_logger import MlflowEpochLogger

    with mlflow.start_run(experiment_id=exp_id, run_name=run_name, tags=dict(tags or {})) as run:
        run_id = run.info.run_id
        log.info("MLflow run %s in experiment %r (%s)", run_id, cfg.experiment, uri)
        result = train_fn([MlflowEpochLogger(run_id, tracking_uri=uri)])
        model_dir = getattr(result, "model_dir", result)
        log_training_run(model_dir, config=config, run_id=run_id)
    registration = None
    if register:
        from ntm_spark.mlops.registry import register_run_model

        registration = register_run_model(run_id, cfg)
        log.info("registered %s version %s: %s", cfg.registered_model_name, registration.version, registration.decision.reason)
    return TrackedRun(run_id, f"runs:/{run_id}/{MODEL_ARTIFACT_PATH}", result, registration)


def mlflow_config_or_none(no_mlflow: bool, tracking_uri: Optional[str] = None) -> Optional[MlflowConfig]:
    """Return the MLflow section for a training run, or ``None`` when tracking is off or MLflow is not installed."""
    if no_mlflow:
        return None
    try:
        import mlflow  # noqa: F401
    except ImportError:
        log.warning("mlflow is not installed: the run is not tracked (pip install -e .[serve] to track it).")
        return None
    from ntm_spark.core.config import load_config

    return load_config("mlflow", overrides=[f"tracking_uri={tracking_uri}"] if tracking_uri else None)


def train_and_track(
    train_fn: Callable[[list], Any], cfg: Any, mlflow_cfg: MlflowConfig, run_name: Optional[str] = None, register: bool = True
) -> Any:
    """Run ``train_fn(loggers)`` inside a tracked MLflow run (:func:`track_training`); log and print what was registered.

    Returns:
        ``train_fn``'s result.
    """
    import dataclasses

    tracked = track_training(train_fn, config=dataclasses.asdict(cfg), mlflow_cfg=mlflow_cfg, run_name=run_name, register=register)
    if tracked.run_id:
        log.info("MLflow run %s; model %s", tracked.run_id, tracked.model_uri)
    if tracked.registration is not None:
        reg = tracked.registration
        print(f"registered {mlflow_cfg.registered_model_name} version {reg.version}: {reg.decision.reason}")
    return tracked.train_result


#: The figures of a stream drift window logged on the serving model's run (``drift/<name>``).
DRIFT_METRICS = ("js_distance", "oov_rate", "empty_rate", "scored", "alert")


def drift_metrics_sink(tracking_uri: Optional[str] = None) -> Callable[[dict], None]:
    """Return a drift-record sink that logs each window's figures on the run of the version that scored it.

    For a registered model (``model_name`` + ``model_version`` of the record), the metrics
    ``drift/js_distance``, ``drift/oov_rate``, ``drift/empty_rate``, ``drift/scored`` and
    ``drift/alert`` (0/1) go to that version's run, at the window's end time, with the window's
    start (epoch seconds) as the step. A record whose model is not registered (a model folder) is skipped.
    """
    from datetime import datetime

    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    runs: dict[tuple, Optional[str]] = {}

    def log_drift_metrics(record: dict) -> None:
        key = (record.get("model_name"), record.get("model_version"))
        if key not in runs:
            try:
                runs[key] = client.get_model_version(*key).run_id if all(key) else None
            except Exception:  # noqa: BLE001 - not a registered version (a model folder): nothing to log on
                runs[key] = None
        run_id = runs[key]
        if not run_id:
            return
        end_ms = int(datetime.fromisoformat(record["window_end"].replace("Z", "+00:00")).timestamp() * 1000)
        step = int(datetime.fromisoformat(record["window_start"].replace("Z", "+00:00")).timestamp())
        metrics = [
            Metric(f"drift/{name}", float(record[name]), end_ms, step)
            for name in DRIFT_METRICS
            if record.get(name) is not None
        ]
        client.log_batch(run_id, metrics=metrics)

    return log_drift_metrics
