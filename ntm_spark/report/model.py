"""The model a report explores, and its MLflow run: load it from a folder, a model URI or a run id; log the report back.

Example:
    >>> model = load_model("models:/ntm-20newsgroups@champion")  # doctest: +SKIP
    >>> model.num_topics, model.run_id                            # doctest: +SKIP
    (20, '3f2a...')
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from ntm_spark.core import storage
from ntm_spark.core.contract import is_model_folder, read_topic_word
from ntm_spark.report._base import ExploreError, PathLike

log = logging.getLogger(__name__)

#: The folder (under the MLflow run's artifacts) the report is logged to.
ARTIFACT_PATH = "report"

_RUN_ID_RE = re.compile(r"^[0-9a-f]{32}$")


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


def _topic_word_of(scorer: Any, folder: Optional[PathLike] = None) -> np.ndarray:
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
    if storage.is_remote(spec) and is_model_folder(spec):  # a model folder on cluster storage (s3://...)
        log.info("loading the model folder %s", spec)
        scorer = TopicScorer.from_model_folder(spec)
        name = spec.partition("?")[0].rstrip("/").rsplit("/", 1)[-1]
        return LoadedModel(scorer, _topic_word_of(scorer, spec), list(scorer.vocab.words), spec, None, name)
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

