"""The MLflow model registry: register versions, gate ``champion`` promotion, roll back.

A new version gets the ``challenger`` alias. It becomes ``champion`` only when it
beats the current champion on ``mlflow.gate_metric`` (``npmi`` by default, higher
is better; names holding ``loss`` or ``perplexity`` are lower-is-better), its
``mlflow.gate_guard_metric`` (``val_loss``) is at most ``gate_guard_tolerance``
(relative) worse, and it has the same ``feature_dim`` semantics: the same
vocabulary sha256. Otherwise it stays ``challenger`` and the decision says why.
``--force`` promotes anyway and records the reason in tags. No promotion, gated or
forced, moves ``champion`` to a version whose model cannot be loaded: the version's
``model_folder`` artifact is downloaded, loaded as the scorer serving loads it and made
to score one row first (:func:`check_version_loads`). Each promotion is
appended to the registered model's ``ntm.champion_history`` tag, which
:func:`rollback_champion` walks back.

Version tags: ``vocab_sha256``, ``feature_dim``, ``num_topics``, ``corpus`` (the
preprocessing manifest summary), ``npmi``, ``tu``, ``val_loss``, ``git_commit``;
the version description is a markdown table of the topics' top words.
"""

from __future__ import annotations

import getpass
import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from ntm_spark.core.config import MlflowConfig
from ntm_spark.core.contract import (
    METRICS_FILE,
    TOPIC_STABILITY_FILE,
    TOPIC_WORD_FILE,
    read_json_file,
    read_topic_word,
    read_vocabulary,
)
from ntm_spark.core.schema import MANIFEST_FILE, VOCAB_FILE
from ntm_spark.core.topic_matching import (
    DEFAULT_MOVE_THRESHOLD,
    max_moved_topics,
    topic_stability,
)
from ntm_spark.core.topic_metrics import topic_diversity

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_TAG = "ntm.champion_history"
#: Most promotions kept in the history tag (tag values hold at most 5000 characters).
HISTORY_LIMIT = 100
#: Metric tags copied from the run onto each version: tag -> run metric candidates, in order.
METRIC_TAGS = {
    "npmi": ("npmi", "val_npmi"),
    "tu": ("tu", "val_tu"),
    "diversity": ("diversity", "val_diversity"),
    "collapsed": ("collapsed",),
    "npmi_reference_docs": ("npmi_reference_docs",),
    "val_loss": ("val_loss", "val/loss"),
}


class RegistryError(RuntimeError):
    """A registry operation cannot be done; the message says why and how to fix it."""


@dataclass
class GateDecision:
    """Whether a version became ``champion``, and why."""

    promoted: bool
    reason: str
    version: str
    previous_champion: Optional[str] = None
    forced: bool = False


@dataclass
class RegistrationResult:
    """A registered version and its gate decision."""

    name: str
    version: str
    run_id: str
    decision: GateDecision
    tags: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- helpers


def _client(cfg: Optional[MlflowConfig] = None, tracking_uri: Optional[str] = None) -> Any:
    from mlflow.tracking import MlflowClient

    from ntm_spark.core.uris import resolve_tracking_uri

    uri = tracking_uri or resolve_tracking_uri(cfg)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def lower_is_better(metric: str) -> bool:
    """Whether smaller values of ``metric`` are better (losses and perplexities)."""
    return "loss" in metric or "perplexity" in metric


def _float(value: Any) -> Optional[float]:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def version_metric(client: Any, mv: Any, metric: str) -> Optional[float]:
    """Return a version's value of ``metric``: its tag, else its run's metric (``metric``, ``val_<metric>``)."""
    value = _float((mv.tags or {}).get(metric))
    if value is not None or not mv.run_id:
        return value
    run_metrics = client.get_run(mv.run_id).data.metrics
    for key in (metric, f"val_{metric}", metric.replace("_", "/", 1)):
        if key in run_metrics:
            return _float(run_metrics[key])
    return None


def topics_markdown(words: list, topic_word: np.ndarray, top_n: int = 10, title: str = "") -> str:
    """Return a markdown table of each topic's top words (the version description)."""
    lines = [title, ""] if title else []
    lines += ["| topic | top words |", "|---:|---|"]
    for k, row in enumerate(topic_word):
        top = np.argsort(-row)[:top_n]
        lines.append(f"| {k} | {', '.join(words[i] for i in top)} |")
    return "\n".join(lines) + "\n"


def serving_inputs_markdown(feature_dim: int) -> str:
    """Return the version description's note on what the model accepts (the signature has no input schema)."""
    return (
        "**Input** (one kind per request; `POST /invocations` JSON `dataframe_records`, `dataframe_split` or "
        "`instances`, or `text/csv`): `text` (raw documents); `counts` (dense rows of "
        f"{feature_dim} counts); `indices` + `values` (sparse rows); or {feature_dim} numeric columns "
        f"named `0`..`{feature_dim - 1}` (CSV of dense rows; `ntm serve` also takes headerless CSV, as SageMaker's "
        "`CSVSerializer` sends it). **Output**: `topic_weights` per document. "
        "**Params**: `top_topics`, `top_words`, `on_error` (`raise` | `column`).\n"
    )


def corpus_summary(manifest: dict) -> str:
    """Return a short JSON summary of the preprocessing manifest for the ``corpus`` tag."""
    source = manifest.get("source") or {}
    docs = manifest.get("documents") or {}
    vocab = manifest.get("vocabulary") or {}
    summary = {
        "source": source.get("path") if isinstance(source, dict) else source,
        "format": source.get("format") if isinstance(source, dict) else None,
        "source_sha256": (source.get("sha256") or "")[:16] if isinstance(source, dict) else None,
        "documents_kept": docs.get("kept"),
        "per_split": docs.get("per_split"),
        "vocab_size": vocab.get("size"),
        "text_rules": manifest.get("text_rules"),
        "finished_at": manifest.get("finished_at"),
    }
    return json.dumps({k: v for k, v in summary.items() if v not in (None, {}, "")}, default=str)[:4900]


def _download_run_files(client: Any, run_id: str) -> dict[str, Any]:
    """Read the run's vocab, manifest, topic-word matrix and metrics (logged by tracking)."""
    import tempfile

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="ntm-reg-") as tmp:
        names = {a.path for a in client.list_artifacts(run_id)}
        for name in (VOCAB_FILE, MANIFEST_FILE, TOPIC_WORD_FILE, METRICS_FILE, TOPIC_STABILITY_FILE):
            if name in names:
                client.download_artifacts(run_id, name, tmp)
        if VOCAB_FILE in names:
            out["vocab"] = read_vocabulary(tmp).words
        if TOPIC_WORD_FILE in names:
            out["topic_word"] = read_topic_word(tmp)
        for key, name in (("manifest", MANIFEST_FILE), ("metrics", METRICS_FILE), ("topic_stability", TOPIC_STABILITY_FILE)):
            if name in names:
                out[key] = read_json_file(tmp, name)
    return out


def _history(client: Any, name: str) -> list[str]:
    raw = client.get_registered_model(name).tags.get(HISTORY_TAG)
    try:
        return [str(v) for v in json.loads(raw)] if raw else []
    except ValueError:
        return []


def _set_history(client: Any, name: str, history: list[str]) -> None:
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history[-HISTORY_LIMIT:]))


def _alias_version(client: Any, name: str, alias: str) -> Optional[Any]:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def get_registered_model(client: Any, name: str) -> Any:
    """Return the registered model ``name``.

    Raises:
        RegistryError: when no such model exists, listing the ones that do.
    """
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException as err:
        if "RESOURCE_DOES_NOT_EXIST" not in str(err.error_code) and "not found" not in str(err).lower():
            raise
        known = sorted(m.name for m in client.search_registered_models(max_results=50))
        raise RegistryError(
            f"no registered model named {name!r} (known: {known or 'none'}): train one with `ntm train`, "
            "register a run with `ntm registry register RUN_ID`, or pass --name."
        ) from None


def resolve_version(client: Any, name: str, ref: str) -> Any:
    """Return the version ``ref`` of ``name``: a number, ``@alias`` or an alias name.

    Raises:
        RegistryError: for an unknown model, version or alias.
    """
    from mlflow.exceptions import MlflowException

    model = get_registered_model(client, name)
    ref = str(ref)
    alias = ref[1:] if ref.startswith("@") else (None if ref.isdigit() else ref)
    if alias is not None:
        mv = _alias_version(client, name, alias)
        if mv is None:
            aliases = sorted(getattr(model, "aliases", {}) or {})
            raise RegistryError(
                f"model {name!r} has no alias {alias!r} (aliases: {aliases or 'none'}): pick one of those, "
                "or a version number from `ntm registry list`."
            )
        return mv
    try:
        return client.get_model_version(name, ref)
    except MlflowException:
        raise RegistryError(f"model {name!r} has no version {ref!r}: see `ntm registry list --name {name}`.") from None


# --------------------------------------------------------------------------- the gate


def evaluate_gate(client: Any, name: str, candidate: Any, champion: Optional[Any], cfg: MlflowConfig) -> GateDecision:
    """Decide whether ``candidate`` should replace ``champion`` (no side effects)."""
    v = str(candidate.version)
    c = None if champion is None else str(champion.version)
    if c == v:
        return GateDecision(False, f"version {v} is already the champion", v, c)
    problem = topic_quality_problem(client, candidate, cfg)
    if problem:
        return GateDecision(False, problem, v, c)
    if champion is None:
        return GateDecision(True, "no champion yet: the first gated version becomes champion", v)
    cand_sha, champ_sha = (candidate.tags or {}).get("vocab_sha256"), (champion.tags or {}).get("vocab_sha256")
    if not cand_sha or cand_sha != champ_sha:
        return GateDecision(
            False,
            f"feature_dim semantics differ: vocabulary sha256 {str(cand_sha)[:12]}... (feature_dim "
            f"{(candidate.tags or {}).get('feature_dim')}) vs the champion's {str(champ_sha)[:12]}... (feature_dim "
            f"{(champion.tags or {}).get('feature_dim')}); clients sending bag-of-words would break. Retrain on the "
            "champion's vocabulary, or promote with --force --reason.",
            v,
            c,
        )
    unstable = topic_stability_problem(client, name, candidate, champion, cfg)
    if unstable:
        return GateDecision(False, unstable, v, c)
    metric, guard = cfg.gate_metric, cfg.gate_guard_metric
    new, old = version_metric(client, candidate, metric), version_metric(client, champion, metric)
    if new is None or old is None:
        missing = v if new is None else c
        return GateDecision(False, f"version {missing} has no {metric!r} value to compare; promote with --force --reason", v, c)
    better = new < old if lower_is_better(metric) else new > old
    if not better:
        return GateDecision(False, f"{metric} {new:.4f} does not beat the champion (v{c}) {old:.4f}", v, c)
    if guard:
        g_new, g_old = version_metric(client, candidate, guard), version_metric(client, champion, guard)
        if g_new is not None and g_old is not None:
            tol = cfg.gate_guard_tolerance * abs(g_old)
            ok = g_new <= g_old + tol if lower_is_better(guard) else g_new >= g_old - tol
            if not ok:
                return GateDecision(
                    False,
                    f"{metric} {new:.4f} beats {old:.4f}, but the guard {guard} {g_new:.4f} is more than "
                    f"{cfg.gate_guard_tolerance:.0%} worse than the champion's {g_old:.4f}",
                    v,
                    c,
                )
    return GateDecision(True, f"{metric} {new:.4f} beats the champion (v{c}) {old:.4f}, guard {guard} within tolerance", v, c)


def topic_stability_problem(client: Any, name: str, candidate: Any, champion: Any, cfg: MlflowConfig) -> Optional[str]:
    """Return why ``candidate`` would renumber too many of the champion's topics, or ``None``.

    Applies per ``gate_topic_stability``: ``warm_start`` checks versions trained with
    ``--warm-start`` (tag ``warm_start_from``: they claim the champion's topic ids), ``always``
    every version, ``off`` none. Topic ``k`` of each is compared by id
    (:func:`ntm_spark.core.topic_matching.topic_stability`, from both runs' ``topic_word.npy``);
    more than ``gate_max_moved_topics`` moved, new or retired ids fail. The figures are written to
    the candidate's tags (``topics_moved``, ``topic_stability``).
    """
    mode = cfg.gate_topic_stability
    if mode == "off" or (mode == "warm_start" and not (candidate.tags or {}).get("warm_start_from")):
        return None
    v, c = str(candidate.version), str(champion.version)
    files_new = _download_run_files(client, candidate.run_id) if candidate.run_id else {}
    files_old = _download_run_files(client, champion.run_id) if champion.run_id else {}
    if any(f.get("topic_word") is None or not f.get("vocab") for f in (files_new, files_old)):
        return (
            f"topic stability cannot be checked: version {v} or the champion v{c} has no topic_word.npy and vocab.txt "
            "in its run; promote with --force --reason, or set gate_topic_stability: off"
        )
    threshold = cfg.gate_topic_move_threshold or DEFAULT_MOVE_THRESHOLD
    report = topic_stability(
        files_old["topic_word"], files_new["topic_word"], f"{name} v{c}", move_threshold=threshold,
        vocabs=(files_old["vocab"], files_new["vocab"]),
    )  # fmt: skip
    budget = max_moved_topics(files_old["topic_word"].shape[0], cfg.gate_max_moved_topics)
    client.set_model_version_tag(name, v, "topics_moved", str(report.changed))
    client.set_model_version_tag(name, v, "topic_stability", json.dumps({"against": c, **report.to_dict()["summary"]})[:4900])
    if report.changed > budget:
        listed = ", ".join(str(k) for k in report.changed_ids[:20])
        return (
            f"topic ids unstable: {report.changed} of the champion v{c}'s {files_old['topic_word'].shape[0]} topics moved "
            f"(JS distance > {threshold:g}), now carry another topic, are new or retired (topics {listed}); at most {budget} may "
            "(gate_max_moved_topics). Dashboards keyed on topic ids would break: warm-start from the champion "
            "(ntm train --warm-start), or promote with --force --reason"
        )
    return None


def topic_quality_problem(client: Any, mv: Any, cfg: MlflowConfig) -> Optional[str]:
    """Return why version ``mv`` may not become champion whatever its NPMI, or ``None``.

    NPMI alone is fooled by collapse: a model whose topics are all the same few common words
    can score well. So a version that training marked ``collapsed``, or whose top-25 topic
    diversity (TU where it has none) is under ``gate_min_diversity``, never becomes champion.
    """
    v = str(mv.version)
    override = "promote with --force --reason only if you accept that"
    if (version_metric(client, mv, "collapsed") or 0.0) >= 0.5:
        div = version_metric(client, mv, "diversity")
        shown = f" (diversity {div:.3f})" if div is not None else ""
        return (
            f"version {v} is collapsed{shown}: its topics are the same few words, so it never becomes champion. "
            f"Retrain (the default preset, more epochs or kl_warmup_epochs), or {override}"
        )
    div, which = version_metric(client, mv, "diversity"), "diversity"
    if div is None:
        div, which = version_metric(client, mv, "tu"), "TU"
    if div is None:
        return f"version {v} has neither a diversity nor a TU value, so collapse cannot be ruled out; {override}"
    # K topics over V words cannot show more than V distinct top-25 words: scale the floor to what is possible.
    k, vocab = _float((mv.tags or {}).get("num_topics")), _float((mv.tags or {}).get("feature_dim"))
    ceiling = min(1.0, vocab / (25.0 * k)) if k and vocab else 1.0
    floor = cfg.gate_min_diversity * ceiling
    if div < floor:
        return (
            f"version {v}'s topic {which} {div:.3f} is below gate_min_diversity {cfg.gate_min_diversity}"
            + (f" (x{ceiling:.2f}, the most {int(vocab)} words allow for {int(k)} topics)" if ceiling < 1 else "")
            + f": its topics share their top words (near collapse), so it never becomes champion; retrain, or {override}"
        )
    return None


def check_version_loads(client: Any, name: str, version: str) -> None:
    """Load version ``version`` of ``name`` as serving would, and score one row, before an alias moves to it.

    The version's pyfunc ``model_folder`` artifact (the path named in its ``MLmodel``) is
    downloaded into a temporary folder and loaded with
    :meth:`ntm_spark.serving.scoring.TopicScorer.from_model_folder`, the code the pyfunc's
    ``load_context`` runs; the scorer must then give finite weights for a one-row
    count vector.

    Raises:
        RegistryError: naming the version and the error, when any step fails.
    """
    import tempfile
    from pathlib import Path

    import mlflow.artifacts
    import yaml

    from ntm_spark.serving.pyfunc_model import MODEL_FOLDER_ARTIFACT
    from ntm_spark.serving.scoring import TopicScorer

    step = "resolving its artifacts"
    try:
        source = client.get_model_version_download_uri(name, version).rstrip("/")
        with tempfile.TemporaryDirectory(prefix="ntm-promote-check-") as tmp:
            step = "reading its MLmodel"
            mlmodel = mlflow.artifacts.download_artifacts(
                artifact_uri=f"{source}/MLmodel", dst_path=str(Path(tmp) / "meta"), tracking_uri=client.tracking_uri
            )
            flavor = (yaml.safe_load(Path(mlmodel).read_text()) or {}).get("flavors", {}).get("python_function", {})
            rel = ((flavor.get("artifacts") or {}).get(MODEL_FOLDER_ARTIFACT) or {}).get("path")
            if not rel:
                raise RegistryError(
                    f"cannot promote {name!r} version {version}: its model has no {MODEL_FOLDER_ARTIFACT!r} artifact "
                    "(not logged by ntm_spark.serving.pyfunc_model.log_pyfunc_model); register a model from `ntm train`."
                )
            step = f"downloading {rel}"
            folder = mlflow.artifacts.download_artifacts(
                artifact_uri=f"{source}/{rel}", dst_path=str(Path(tmp) / "model"), tracking_uri=client.tracking_uri
            )
            step = "loading its model folder"
            scorer = TopicScorer.from_model_folder(folder)
            step = "scoring one row"
            result = scorer.score_dense(np.ones((1, scorer.feature_dim), dtype=np.float32))
            weights = np.asarray(result.weights, dtype=np.float64)
            if not bool(result.ok.all()) or not np.isfinite(weights).all():
                raise ValueError(f"a one-row count vector gave weights {weights.tolist()!r:.200} (error {result.errors!r:.200})")
    except RegistryError:
        raise
    except Exception as err:  # noqa: BLE001 - any failure means the version would not serve
        raise RegistryError(
            f"cannot promote {name!r} version {version}: its model cannot be loaded ({step}: "
            f"{type(err).__name__}: {str(err)[:500]}). Champion did not move. Fix or re-register the model "
            f"(`ntm train`, then `ntm registry register RUN_ID`), or promote another version."
        ) from err


def _promote(
    client: Any, name: str, version: str, reason: str, forced: bool, previous: Optional[str], forced_reason: str = ""
) -> None:
    history = _history(client, name)
    if previous and (not history or history[-1] != previous):
        history.append(previous)  # the champion was set by hand: remember it for rollback
    client.set_registered_model_alias(name, CHAMPION, version)
    challenger = _alias_version(client, name, CHALLENGER)
    if challenger is not None and str(challenger.version) == version:
        client.delete_registered_model_alias(name, CHALLENGER)
    history.append(version)
    _set_history(client, name, history)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    client.set_model_version_tag(name, version, "promoted_at", stamp)
    client.set_model_version_tag(name, version, "promotion", "forced" if forced else "gate")
    client.set_model_version_tag(name, version, "promotion_reason", reason[:4900])
    if forced:
        client.set_model_version_tag(name, version, "forced_promotion_reason", forced_reason[:4900])
        client.set_model_version_tag(name, version, "forced_by", _user())


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        return "unknown"


def promote_version(
    name: str,
    version: str,
    cfg: Optional[MlflowConfig] = None,
    force: bool = False,
    reason: Optional[str] = None,
    client: Any = None,
) -> GateDecision:
    """Try to make ``version`` the champion through the gate, or force it.

    Args:
        name: The registered model.
        version: A version number, or ``@alias``.
        cfg: Gate settings (default: ``load_config("mlflow")``).
        force: Skip the gate; ``reason`` is then required and recorded in tags. The version
            must still load (:func:`check_version_loads`).
        reason: Why the promotion is forced.
        client: An ``MlflowClient`` (default: one for the resolved tracking URI).

    Returns:
        The decision. A version the gate would promote but whose model cannot be loaded
        is not promoted; the decision says why.

    Raises:
        RegistryError: for an unknown model or version, ``force`` without a reason, or a
            forced version whose model cannot be loaded (champion does not move).
    """
    from ntm_spark.core.config import load_config

    cfg = cfg or load_config("mlflow")
    client = client or _client(cfg)
    mv = resolve_version(client, name, version)
    v = str(mv.version)
    champion = _alias_version(client, name, CHAMPION)
    previous = str(champion.version) if champion is not None else None
    if force:
        if not reason or not reason.strip():
            raise RegistryError("--force needs --reason TEXT: say why the gate is skipped (it is recorded in a tag).")
        if previous == v:
            return GateDecision(False, f"version {v} is already the champion", v, previous, forced=True)
        check_version_loads(client, name, v)
        _promote(client, name, v, f"forced: {reason.strip()}", True, previous, forced_reason=reason.strip())
        return GateDecision(True, f"forced: {reason.strip()}", v, previous, forced=True)
    decision = evaluate_gate(client, name, mv, champion, cfg)
    if decision.promoted:
        try:
            check_version_loads(client, name, v)
        except RegistryError as err:
            decision = GateDecision(False, str(err), v, previous)
    if decision.promoted:
        _promote(client, name, v, decision.reason, False, previous)
    else:
        client.set_model_version_tag(name, v, "gate_decision", decision.reason[:4900])
    return decision


def rollback_champion(name: str, cfg: Optional[MlflowConfig] = None, reason: Optional[str] = None, client: Any = None) -> GateDecision:
    """Move ``champion`` back to the previous champion in the history tag.

    Raises:
        RegistryError: when there is no earlier champion to return to.
    """
    cfg = cfg or _default_cfg()
    client = client or _client(cfg)
    get_registered_model(client, name)
    current = _alias_version(client, name, CHAMPION)
    history = _history(client, name)
    cur = str(current.version) if current is not None else None
    while history and history[-1] == cur:
        history.pop()
    if not history:
        raise RegistryError(
            f"model {name!r} has no previous champion to roll back to (champion: {cur or 'none'}, history empty): "
            "promote a version with `ntm registry promote VERSION --force --reason ...` instead."
        )
    target = history[-1]
    client.set_registered_model_alias(name, CHAMPION, target)
    _set_history(client, name, history)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    note = f"rolled back to v{target} at {stamp}" + (f": {reason}" if reason else "")
    if cur:
        client.set_model_version_tag(name, cur, "rolled_back", note[:4900])
    client.set_model_version_tag(name, target, "restored_at", stamp)
    return GateDecision(True, note, target, cur)


def _default_cfg() -> MlflowConfig:
    from ntm_spark.core.config import load_config

    return load_config("mlflow")


# --------------------------------------------------------------------------- register


def register_run_model(
    run_id: str,
    cfg: Optional[MlflowConfig] = None,
    gate: bool = True,
    artifact_path: str = "model",
    client: Any = None,
) -> RegistrationResult:
    """Register the run's pyfunc model, tag and describe it, alias it ``challenger`` and apply the gate.

    Args:
        run_id: A training run logged by :func:`ntm_spark.mlops.tracking.log_training_run`.
        cfg: Registry settings (name, gate); default ``load_config("mlflow")``.
        gate: Run the champion gate after registering.
        artifact_path: The logged model's name in the run.
        client: An ``MlflowClient``.

    Raises:
        RegistryError: when the run does not exist or logged no model.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    cfg = cfg or _default_cfg()
    client = client or _client(cfg)
    name = cfg.registered_model_name
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise RegistryError(f"no MLflow run {run_id!r} on {client.tracking_uri!r}: copy the run id from the MLflow UI or `ntm train`'s log.") from None
    models = mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'", output_format="list"
    )
    models = [m for m in models if m.name == artifact_path] or models
    if not models:
        raise RegistryError(f"run {run_id!r} logged no model: log one with ntm_spark.mlops.tracking.log_training_run.")
    logged = max(models, key=lambda m: m.creation_timestamp or 0)
    files = _download_run_files(client, run_id)
    vocab = files.get("vocab") or []
    manifest = files.get("manifest") or {}
    from ntm_spark.core.vocab import Vocabulary

    tags = {
        "vocab_sha256": Vocabulary(vocab).sha256 if vocab else "",
        "feature_dim": str(len(vocab)),
        "num_topics": str(files["topic_word"].shape[0]) if "topic_word" in files else "",
        "corpus": corpus_summary(manifest),
        "git_commit": run.data.tags.get("ntm.git_commit") or run.data.tags.get("mlflow.source.git.commit", "unknown"),
        "run_id": run_id,
    }
    for tag, candidates in METRIC_TAGS.items():
        for key in candidates:
            if key in run.data.metrics:
                tags[tag] = f"{run.data.metrics[key]:.6g}"
                break
    stability = files.get("topic_stability") or {}
    if stability:
        tags["warm_start_from"] = str(stability.get("reference", ""))[:4900]
        tags["topics_moved_at_training"] = str(len(stability.get("moved", [])) + len(stability.get("new", [])) + len(stability.get("retired", [])))
    if "topic_word" in files:
        # Measured here from the logged topics, not taken from the run: the gate's collapse check
        # must not depend on what the training code reported.
        tags["diversity"] = f"{topic_diversity(files['topic_word'], 25):.6g}"
    description = ""
    if "topic_word" in files and vocab:
        description = topics_markdown(
            vocab,
            files["topic_word"],
            title=f"**{tags['num_topics']} topics**, feature_dim {tags['feature_dim']}, npmi {tags.get('npmi', '?')}, "
            f"tu {tags.get('tu', '?')}, val_loss {tags.get('val_loss', '?')}",
        ) + "\n" + serving_inputs_markdown(int(tags["feature_dim"]))
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(
            name, description="Neural topic model (ntm-spark). Aliases: champion (serving), challenger (newest candidate)."
        )
    mv = client.create_model_version(
        name,
        source=logged.model_uri if hasattr(logged, "model_uri") else f"models:/{logged.model_id}",
        run_id=run_id,
        tags={k: v for k, v in tags.items() if v != ""},
        description=description[:60000],
        model_id=logged.model_id,
    )
    version = str(mv.version)
    client.set_registered_model_alias(name, CHALLENGER, version)
    if gate:
        decision = promote_version(name, version, cfg, client=client)
    else:
        decision = GateDecision(False, "registered without the gate: stays challenger", version)
    return RegistrationResult(name, version, run_id, decision, tags)


# --------------------------------------------------------------------------- list / show


def list_versions(name: str, cfg: Optional[MlflowConfig] = None, client: Any = None) -> list[dict[str, Any]]:
    """Every version of ``name``, newest first, with aliases and metrics."""
    cfg = cfg or _default_cfg()
    client = client or _client(cfg)
    model = get_registered_model(client, name)
    aliases: dict[str, list[str]] = {}
    for alias, ver in (getattr(model, "aliases", {}) or {}).items():
        aliases.setdefault(str(ver), []).append(alias)
    rows = []
    for mv in client.search_model_versions(f"name = '{name}'"):
        t = mv.tags or {}
        rows.append(
            {
                "version": str(mv.version),
                "aliases": sorted(aliases.get(str(mv.version), [])),
                "npmi": _float(t.get("npmi")),
                "tu": _float(t.get("tu")),
                "val_loss": _float(t.get("val_loss")),
                "num_topics": t.get("num_topics"),
                "feature_dim": t.get("feature_dim"),
                "vocab_sha256": (t.get("vocab_sha256") or "")[:12],
                "run_id": mv.run_id,
                "created": time.strftime("%Y-%m-%d %H:%M", time.localtime((mv.creation_timestamp or 0) / 1000)),
            }
        )
    return sorted(rows, key=lambda r: int(r["version"]), reverse=True)


def show_version(name: str, ref: str = "@champion", cfg: Optional[MlflowConfig] = None, client: Any = None) -> dict[str, Any]:
    """One version's tags, topics (description) and lineage: run, experiment, data manifest."""
    cfg = cfg or _default_cfg()
    client = client or _client(cfg)
    mv = resolve_version(client, name, ref)
    model = client.get_registered_model(name)
    aliases = sorted(a for a, v in (getattr(model, "aliases", {}) or {}).items() if str(v) == str(mv.version))
    lineage: dict[str, Any] = {"run_id": mv.run_id, "source": mv.source}
    if mv.run_id:
        run = client.get_run(mv.run_id)
        lineage.update(
            {
                "experiment_id": run.info.experiment_id,
                "run_name": run.info.run_name,
                "git_commit": run.data.tags.get("ntm.git_commit"),
                "model_dir": run.data.tags.get("ntm.model_dir"),
                "data_dir": run.data.params.get("data_dir"),
            }
        )
    return {
        "name": name,
        "version": str(mv.version),
        "aliases": aliases,
        "tags": dict(mv.tags or {}),
        "description": mv.description or "",
        "lineage": lineage,
        "champion_history": _history(client, name),
    }


def version_topic_words(
    name: str, version: str, top_n: int = 10, tracking_uri: Optional[str] = None, client: Any = None
) -> list[list[str]]:
    """Each topic's ``top_n`` heaviest words for registered version ``version`` of ``name`` (from its run's files).

    Raises:
        RegistryError: for an unknown model or version, or a run that logged no vocabulary or topic-word matrix.
    """
    from ntm_spark.core.contract import top_words

    client = client or _client(tracking_uri=tracking_uri)
    mv = resolve_version(client, name, str(version))
    files = _download_run_files(client, mv.run_id) if mv.run_id else {}
    if "vocab" not in files or files.get("topic_word") is None:
        raise RegistryError(
            f"model {name!r} version {version} has no vocab.txt and topic_word.npy in its run {mv.run_id!r}: "
            "register runs logged by `ntm train` (ntm_spark.mlops.tracking.log_training_run)."
        )
    return top_words(files["topic_word"], files["vocab"], top_n)
