"""Load the scorer once per Python worker, say which model version it is, and hot-swap it.

A *model reference* is one of:

* ``models:/<name>@<alias>`` -- a registry alias (``champion``); re-resolved every
  ``refresh_interval_s`` so a moved alias is picked up without a restart;
* ``models:/<name>/<version>`` -- a pinned registry version (never changes);
* a local model folder written by training (``model.pt``, ``vocab.txt``...); its
  version is a hash of ``model.pt`` and a replaced ``model.pt`` is picked up like
  a moved alias;
* any other MLflow model URI (``runs:/<run_id>/model``, ``file:...``, ``s3://...``).

MLflow models are the registered pyfunc (:mod:`ntm_spark.serving.pyfunc_model`); the scorer
is its ``unwrap_python_model().scorer``, the same :class:`~ntm_spark.serving.scoring.TopicScorer`
a model folder gives. Spark reuses Python workers across tasks, so
:func:`get_loader` keeps one :class:`ScorerLoader` per reference per process: the
model is loaded once per worker, not once per batch.

A failed reload keeps serving the model already loaded and logs the error; only a
failed *first* load raises (there is nothing to fall back to).

Example:
    >>> loader = get_loader(ModelSpec("models:/ntm-20newsgroups@champion"))  # doctest: +SKIP
    >>> loaded = loader.get()  # doctest: +SKIP
    >>> loaded.scorer.score_texts(["engine and wheels"]).weights, loaded.version  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from ntm_spark.core import storage
from ntm_spark.core.contract import JVM_EXPORT_FORMAT_VERSION, MODEL_FILE, is_model_folder

log = logging.getLogger(__name__)

_ALIAS_RE = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/@]+)/?$")
_VERSION_RE = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)/?$")


class ModelLoadError(RuntimeError):
    """The model reference could not be resolved or loaded; the message names it and the fix."""


class NoScorerError(ModelLoadError):
    """The MLflow model loaded but is not the project's pyfunc (it has no ``.scorer``)."""


@dataclass(frozen=True)
class ModelRef:
    """A parsed model reference.

    Attributes:
        uri: The reference as given.
        kind: ``alias``, ``version``, ``folder`` or ``mlflow``.
        name: The registered model name (registry kinds) or the folder name.
        alias: The alias for ``kind == "alias"``.
        version: The pinned version for ``kind == "version"``.
    """

    uri: str
    kind: str
    name: str
    alias: Optional[str] = None
    version: Optional[str] = None


@dataclass(frozen=True)
class ModelSpec:
    """Everything a worker needs to load the scorer (small and picklable, shipped in closures).

    Args:
        model_uri: A model reference (see the module docstring).
        refresh_interval_s: How often an alias (or a folder's ``model.pt``) is checked for a new version.
        tracking_uri: The MLflow tracking/registry URI; ``None`` uses MLflow's default resolution.
        max_text_bytes: Texts larger than this are rejected with ``too_large``.
        threads: torch's intra-op threads in the process that loads the model (set at its first
            load); ``None`` leaves torch's default (one per core). Spark already runs one task per
            core, so its Python workers score with 1: with torch's default, N concurrent tasks
            run N x cores threads and a busy machine's scoring slows down (docs/streaming.md).
    """

    model_uri: str
    refresh_interval_s: float = 30.0
    tracking_uri: Optional[str] = None
    max_text_bytes: int = 1_000_000
    threads: Optional[int] = None


@dataclass
class LoadedModel:
    """A loaded scorer and the identity written into every output record."""

    scorer: Any
    name: str
    version: str
    uri: str
    loaded_at: float
    #: The MLflow ``PyFuncModel`` the scorer came from (``None`` for a model folder): what
    #: ``ntm serve`` hands MLflow's scoring app for MLflow's request layouts.
    pyfunc: Any = None


def parse_model_ref(model_uri: str) -> ModelRef:
    """Parse a model reference.

    Raises:
        ValueError: for an empty reference, or a ``models:/`` URI that is neither
            ``models:/<name>@<alias>`` nor ``models:/<name>/<version>``.
    """
    if not isinstance(model_uri, str) or not model_uri.strip():
        raise ValueError(
            f"model_uri={model_uri!r} is empty: pass models:/<name>@champion, models:/<name>/<version> or a model folder."
        )
    uri = model_uri.strip()
    match = _ALIAS_RE.match(uri)
    if match:
        return ModelRef(uri, "alias", match["name"], alias=match["alias"])
    match = _VERSION_RE.match(uri)
    if match:
        return ModelRef(uri, "version", match["name"], version=match["version"])
    if uri.startswith("models:/"):
        raise ValueError(
            f"model_uri={uri!r} is not a registry reference: write models:/<name>@<alias> or models:/<name>/<version>."
        )
    if storage.is_remote(uri) and not uri.startswith(("runs:/", "models:/")) and is_model_folder(uri):
        # a model folder on cluster storage (s3://, gs://, abfss://, hdfs://...)
        return ModelRef(uri, "folder", uri.partition("?")[0].rstrip("/").rsplit("/", 1)[-1])
    local = Path(uri[len("file://") :] if uri.startswith("file://") else uri)
    if "://" not in uri or uri.startswith("file://"):
        if (local / "model.pt").is_file():
            return ModelRef(str(local), "folder", local.resolve().name)
        if local.exists() and not (local / "MLmodel").is_file():
            raise ValueError(
                f"model_uri={uri!r} is a path but not a model folder (no model.pt) nor an MLflow model (no MLmodel): "
                "point at the output folder of `ntm train`."
            )
        if not local.exists() and ":" not in uri:
            raise ValueError(f"model_uri={uri!r} does not exist: check the model folder path.")
    return ModelRef(uri, "mlflow", uri)


def folder_version(path: os.PathLike | str) -> str:
    """Return a model folder's version: the first 12 hex digits of ``model.pt``'s sha256."""
    digest = hashlib.sha256()
    if storage.is_remote(path):
        digest.update(storage.read_bytes(storage.join(path, MODEL_FILE)))
        return digest.hexdigest()[:12]
    with open(Path(path) / "model.pt", "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def _mlflow_client(tracking_uri: Optional[str]) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def resolve_version(ref: ModelRef, tracking_uri: Optional[str] = None) -> str:
    """Return the version ``ref`` points at right now (an alias is looked up in the registry).

    Raises:
        ModelLoadError: when the alias or the folder cannot be resolved.
    """
    if ref.kind == "version":
        return str(ref.version)
    if ref.kind == "folder":
        return folder_version(ref.uri)
    if ref.kind == "alias":
        try:
            mv = _mlflow_client(tracking_uri).get_model_version_by_alias(ref.name, ref.alias)
        except Exception as err:  # noqa: BLE001 - any registry error is reported with the fix
            raise ModelLoadError(
                f"cannot resolve model_uri={ref.uri!r} in the registry at tracking_uri={tracking_uri!r}: {err}. "
                f"Register a version and set the alias (ntm registry promote), or pass a pinned models:/{ref.name}/<version>."
            ) from err
        return str(mv.version)
    return _mlflow_run_version(ref.uri)


def _mlflow_run_version(uri: str) -> str:
    match = re.match(r"^runs:/([^/]+)/", uri)
    return match.group(1) if match else hashlib.sha256(uri.encode()).hexdigest()[:12]


def load_scorer(ref: ModelRef, version: str, tracking_uri: Optional[str] = None, max_text_bytes: int = 1_000_000) -> Any:
    """Load the :class:`~ntm_spark.serving.scoring.TopicScorer` of ``ref`` at ``version``.

    Raises:
        ModelLoadError: naming the reference, with the underlying error.
    """
    return load_scorer_and_pyfunc(ref, version, tracking_uri, max_text_bytes)[0]


def load_scorer_and_pyfunc(
    ref: ModelRef, version: str, tracking_uri: Optional[str] = None, max_text_bytes: int = 1_000_000
) -> tuple[Any, Any]:
    """Load ``(scorer, pyfunc)`` of ``ref`` at ``version``: ``pyfunc`` is MLflow's ``PyFuncModel`` (``None`` for a folder).

    Raises:
        ModelLoadError: naming the reference, with the underlying error.
    """
    from ntm_spark.serving.scoring import TopicScorer

    pyfunc = None
    try:
        if ref.kind == "folder":
            scorer = TopicScorer.from_model_folder(ref.uri, max_text_bytes=max_text_bytes)
        else:
            import mlflow

            if tracking_uri:
                mlflow.set_tracking_uri(tracking_uri)
                mlflow.set_registry_uri(tracking_uri)
            uri = f"models:/{ref.name}/{version}" if ref.kind in ("alias", "version") else ref.uri
            pyfunc = mlflow.pyfunc.load_model(uri)
            python_model = pyfunc.unwrap_python_model()
            scorer = getattr(python_model, "scorer", None)
            if scorer is None:
                raise NoScorerError(
                    f"the MLflow model {uri!r} has no .scorer: register it with ntm_spark.serving.pyfunc_model.log_pyfunc_model."
                )
            scorer.max_text_bytes = int(max_text_bytes)
    except ModelLoadError:
        raise
    except Exception as err:  # noqa: BLE001 - wrap with the reference and the fix
        raise ModelLoadError(f"cannot load model_uri={ref.uri!r} (version {version!r}): {type(err).__name__}: {err}") from err
    scorer.model_name = ref.name
    scorer.model_version = version
    return scorer, pyfunc


class ScorerLoader:
    """One cached scorer for a :class:`ModelSpec`, re-resolved every ``refresh_interval_s``.

    Thread-safe. :meth:`get` is cheap between checks (a clock read), so call it per batch.

    Args:
        spec: The model reference and loading options.
        clock: Monotonic clock (tests may pass their own).
    """

    def __init__(self, spec: ModelSpec, clock: Callable[[], float] = time.monotonic) -> None:
        self.spec = spec
        self.ref = parse_model_ref(spec.model_uri)
        self._clock = clock
        self._lock = threading.Lock()
        self._current: Optional[LoadedModel] = None
        self._next_check = 0.0
        self._folder_mtime: Optional[float] = None
        #: Reload failures since the process started (the old model kept serving).
        self.failed_reloads = 0
        self.last_error: Optional[str] = None

    @property
    def current(self) -> Optional[LoadedModel]:
        """The model now serving, or ``None`` before the first :meth:`get`."""
        return self._current

    def get(self) -> LoadedModel:
        """Return the current model, first checking for a new version when the interval has passed.

        Raises:
            ModelLoadError: only when nothing is loaded yet and the first load fails.
        """
        now = self._clock()
        if self._current is not None and now < self._next_check:
            return self._current
        with self._lock:
            now = self._clock()
            if self._current is not None and now < self._next_check:
                return self._current
            self._next_check = now + self.spec.refresh_interval_s
            if self._current is None:
                self._current = self._load(resolve_version(self.ref, self.spec.tracking_uri))
                return self._current
            if self.ref.kind in ("version", "mlflow"):
                return self._current
            try:
                if self.ref.kind == "folder" and not self._folder_changed():
                    return self._current
                version = resolve_version(self.ref, self.spec.tracking_uri)
                if self.ref.kind == "folder" and version == self._current.version:
                    self._folder_mtime = storage.modified_time(storage.join(self.ref.uri, MODEL_FILE))
                if version != self._current.version:
                    old = self._current.version
                    self._current = self._load(version)
                    log.info("model %s: swapped version %s -> %s", self.ref.uri, old, version)
            except Exception as err:  # noqa: BLE001 - keep serving the old model
                self.failed_reloads += 1
                self.last_error = f"{type(err).__name__}: {err}"
                log.error(
                    "model %s: loading a new version failed, still serving version %s: %s",
                    self.ref.uri,
                    self._current.version,
                    self.last_error,
                )
            return self._current

    def _folder_changed(self) -> bool:
        return storage.modified_time(storage.join(self.ref.uri, MODEL_FILE)) != self._folder_mtime

    def _load(self, version: str) -> LoadedModel:
        if self.spec.threads:
            import torch

            if torch.get_num_threads() != self.spec.threads:
                torch.set_num_threads(int(self.spec.threads))
        if self.ref.kind == "folder":
            self._folder_mtime = storage.modified_time(storage.join(self.ref.uri, MODEL_FILE))
        scorer, pyfunc = load_scorer_and_pyfunc(self.ref, version, self.spec.tracking_uri, self.spec.max_text_bytes)
        return LoadedModel(scorer=scorer, name=self.ref.name, version=version, uri=self.ref.uri, loaded_at=time.time(), pyfunc=pyfunc)


_LOADERS: dict[ModelSpec, ScorerLoader] = {}
_LOADERS_LOCK = threading.Lock()


def get_loader(spec: ModelSpec) -> ScorerLoader:
    """Return this process's :class:`ScorerLoader` for ``spec`` (created on first use)."""
    loader = _LOADERS.get(spec)
    if loader is None:
        with _LOADERS_LOCK:
            loader = _LOADERS.get(spec)
            if loader is None:
                loader = ScorerLoader(spec)
                _LOADERS[spec] = loader
    return loader


def jvm_model_folder(spec: ModelSpec) -> tuple[str, str, str]:
    """Return ``(local folder, name, version)`` of the model ``spec`` names, with the JVM scorer's ``jvm/`` export.

    The JVM scorer (``--trigger real_time``) reads files, not MLflow: a registry or MLflow
    reference is resolved to its version now (an alias is *not* followed afterwards; restart
    the stream after moving it) and its ``model_folder`` artifact is downloaded once into
    ``<state>/jvm-models/v<export format>/<name>-<version>``. A local training folder is staged there the way
    the registry stages it (``lemmas.json`` and ``jvm/`` added; the folder itself is untouched),
    once per ``model.pt`` version.

    Raises:
        ModelLoadError: when the reference cannot be resolved or downloaded, naming it.
    """
    import re as _re

    from ntm_spark.core.paths import state_dir

    ref = parse_model_ref(spec.model_uri)
    version = resolve_version(ref, spec.tracking_uri)
    safe = _re.sub(r"[^A-Za-z0-9._-]", "_", f"{ref.name}-{version}")
    # The export's format version in the name: a newer ntm-spark never reuses an older copy.
    dest = state_dir() / "jvm-models" / f"v{JVM_EXPORT_FORMAT_VERSION}" / safe
    if (dest / "jvm" / "scorer.json").is_file():
        return str(dest), ref.name, version
    import shutil

    work = dest.with_name(f".{safe}.{os.getpid()}.work")
    shutil.rmtree(work, ignore_errors=True)
    try:
        if ref.kind == "folder":
            from ntm_spark.serving.pyfunc_model import stage_model_folder

            folder = stage_model_folder(ref.uri, work / "model")
        else:
            from ntm_spark.serving.jvm_export import export_jvm_scorer

            folder = download_model_folder(ref, version, spec.tracking_uri, work / "download")
            if not (folder / "jvm" / "scorer.json").is_file():
                export_jvm_scorer(folder)  # registered before the export existed: its lemmas.json is enough
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(folder, dest)
        except OSError:
            if not (dest / "jvm" / "scorer.json").is_file():
                raise  # not another process's finished copy
    except Exception as err:  # noqa: BLE001 - wrap with the reference and the fix
        raise ModelLoadError(
            f"cannot prepare model_uri={ref.uri!r} (version {version!r}) for the JVM scorer: {type(err).__name__}: {err}"
        ) from err
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return str(dest), ref.name, version


def download_model_folder(ref: ModelRef, version: str, tracking_uri: Optional[str], dest: Path) -> Path:
    """Download the ``model_folder`` artifact of a registry or MLflow reference into ``dest``; return the folder.

    Raises:
        Whatever MLflow raises for an unknown model or version (callers wrap it with the reference).
    """
    import mlflow

    from ntm_spark.serving.pyfunc_model import MODEL_FOLDER_ARTIFACT

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
    uri = f"models:/{ref.name}/{version}" if ref.kind in ("alias", "version") else ref.uri
    root = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dest)))
    return root / "artifacts" / MODEL_FOLDER_ARTIFACT
