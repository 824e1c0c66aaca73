"""The training library function: ``train_model(cfg) -> TrainResult``.

``jobs/train.py`` (``ntm train``, ``spark-submit``) parses flags and calls
:func:`train_model`; so can the MLflow registry code, which passes its own logger
and callbacks::

    result = train_model(cfg, callbacks=[MyMlflowCallback()], loggers=[mlflow_logger])
    result.model_dir, result.metrics

Imports neither pyspark nor mlflow.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from lightning_module._compat import pl
from lightning_module.data import (
    BowDataModule,
    document_cooccurrence,
    list_row_groups,
    open_parquet,
    read_coherence_reference,
    read_coherence_reference_files,
)
from lightning_module.drift_baseline import compute_drift_baseline
from lightning_module.model import background_log_frequencies, ppmi_word_vectors
from lightning_module.model_folder import save_model_folder
from lightning_module.system import NTMSystem
from lightning_module.warm_start import WarmStart, align_to_reference, procrustes_align
from ntm_spark.core import paths, storage
from ntm_spark.core.config import ConfigError, TrainConfig
from ntm_spark.core.contract import DataNotFoundError, read_manifest, split_files
from ntm_spark.core.hparams import resolve_hparams, resolve_presets
from ntm_spark.core.schema import INDICES_COL, MANIFEST_FILE, VALUES_COL
from ntm_spark.core.threads import default_threads, set_thread_env
from ntm_spark.core.topic_metrics import (
    MIN_REFERENCE_DOCS,
    CoherenceReference,
    collapse_reason,
    format_topics,
    top_words,
    topic_diversity,
    topic_uniqueness,
)

log = logging.getLogger(__name__)

#: The PPMI word vectors need a (V, V) matrix and its eigendecomposition: above this, give a .npy.
MAX_PPMI_VOCAB = 10_000


@dataclass
class TrainResult:
    """What a training run produced (picklable: TorchDistributor returns it from rank 0)."""

    model_dir: str
    metrics: dict[str, float] = field(default_factory=dict)
    best_checkpoint: Optional[str] = None
    epochs_trained: int = 0
    stopped_early: bool = False


# --------------------------------------------------------------------------- early stopping


class EarlyStoppingRule:
    """SageMaker NTM's early-stopping rule.

    Stop when the loss has not improved by more than ``tolerance`` (relative to the
    best so far) within ``patience`` epochs.

    Args:
        patience: ``num_patience_epochs``.
        tolerance: Minimum relative improvement over the best loss that counts.
    """

    def __init__(self, patience: int, tolerance: float) -> None:
        if patience < 1:
            raise ValueError(f"num_patience_epochs={patience!r}: use an integer >= 1.")
        if tolerance < 0:
            raise ValueError(f"tolerance={tolerance!r}: use a number >= 0.")
        self.patience, self.tolerance = patience, tolerance
        self.best: Optional[float] = None
        self.wait = 0

    def update(self, value: float) -> bool:
        """Record one epoch's loss; return whether to stop now."""
        if self.best is None or value < self.best - self.tolerance * abs(self.best):
            self.best, self.wait = value, 0
        else:
            self.wait += 1
        return self.wait >= self.patience


class NTMEarlyStopping(pl.Callback):
    """Applies :class:`EarlyStoppingRule` to a logged metric at the end of each epoch.

    Args:
        monitor: ``val/loss``, or ``train/loss`` when there is no validation split.
        patience: ``num_patience_epochs``.
        tolerance: Relative tolerance.
        min_epochs: The rule is first applied at the end of this epoch (1-based); earlier
            epochs never stop training and do not count towards the patience (the preset's
            ``min_epochs``; 0 applies it from the first epoch, as SageMaker NTM does).
    """

    def __init__(self, monitor: str, patience: int, tolerance: float, min_epochs: int = 0) -> None:
        self.monitor = monitor
        self.rule = EarlyStoppingRule(patience, tolerance)
        self.min_epochs = int(min_epochs)
        self.stopped_epoch: Optional[int] = None

    def _check(self, trainer: "pl.Trainer") -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        if trainer.current_epoch + 1 < self.min_epochs:
            return
        value = float(trainer.callback_metrics[self.monitor])
        stop = trainer.strategy.reduce_boolean_decision(self.rule.update(value), all=False)
        if stop and not trainer.should_stop:
            trainer.should_stop = True
            self.stopped_epoch = trainer.current_epoch
            log.info(
                "early stopping at epoch %d: %s has not improved by more than %.3g (relative) in %d epochs (best %.4f)",
                trainer.current_epoch + 1, self.monitor, self.rule.tolerance, self.rule.patience, self.rule.best,
            )

    def on_validation_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        """Check the validation loss."""
        if self.monitor.startswith("val/") and trainer.state.fn == "fit":
            self._check(trainer)

    def on_train_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        """Check the training loss (no validation split)."""
        if self.monitor.startswith("train/"):
            self._check(trainer)

    def state_dict(self) -> dict[str, Any]:
        """Save the patience state in checkpoints so that resuming keeps it."""
        return {"best": self.rule.best, "wait": self.rule.wait, "stopped_epoch": self.stopped_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore from a checkpoint."""
        self.rule.best, self.rule.wait = state_dict["best"], state_dict["wait"]
        self.stopped_epoch = state_dict.get("stopped_epoch")


class EpochLog(pl.Callback):
    """One concise log line per epoch on rank 0 (batch jobs, no progress bar)."""

    KEYS = ("train/loss", "val/loss", "val/recon", "val/kl", "val/perplexity", "val/npmi", "val/tu", "val/diversity")

    def on_train_epoch_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        """Start the epoch timer."""
        self._t0 = time.perf_counter()

    @pl.utilities.rank_zero_only
    def on_train_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        """Log the epoch's metrics (validation ran just before this hook)."""
        m = trainer.callback_metrics
        parts = [f"{k}={float(m[k]):.4g}" for k in self.KEYS if k in m]
        log.info("epoch %d/%d %s (%.1f s)", trainer.current_epoch + 1, trainer.max_epochs, " ".join(parts), time.perf_counter() - self._t0)


# --------------------------------------------------------------------------- helpers


def resolve_model_options(cfg: TrainConfig) -> dict[str, Any]:
    """Return the preset's values of the preset fields overlaid with the config's non-null ones."""
    return resolve_presets(cfg, cfg.preset)


def local_device_count(cfg: TrainConfig) -> int:
    """Devices (ranks) on this node as an integer (``auto`` counts GPUs, else 1)."""
    if isinstance(cfg.devices, int) or str(cfg.devices).lstrip("-").isdigit():
        n = int(cfg.devices)
        if n > 0:
            return n
    import torch

    if cfg.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.cuda.device_count()
    return 1


def per_device_batch_size(mini_batch_size: int, local_devices: int) -> int:
    """Documents per rank per step: SageMaker's ``mini_batch_size`` is per instance, split over its devices.

    An instance is one machine (``train_model``'s node); under TorchDistributor on a cluster, one
    executor (:mod:`ntm_spark.spark.distributed`). The global batch is ``mini_batch_size`` times the instances.
    """
    if local_devices < 1:
        raise ValueError(f"local_devices={local_devices!r}: an instance has at least 1 device (rank).")
    if mini_batch_size % local_devices:
        warnings.warn(
            f"mini_batch_size={mini_batch_size!r} is not divisible by the {local_devices} devices per instance; "
            f"each device uses {max(1, mini_batch_size // local_devices)}.",
            stacklevel=2,
        )
    return max(1, mini_batch_size // local_devices)


def configure_threads(local_ranks: int, threads: Optional[int] = None) -> int:
    """Give each local rank its share of the cores: ``threads``, else cores available / local ranks.

    Sets torch's intra-op threads now and ``OMP_NUM_THREADS``/``OMP_WAIT_POLICY`` for children
    (:mod:`ntm_spark.core.threads`; the wait policy only takes effect in this process when the
    entry point set it before torch loaded, as ``ntm`` and ``jobs/train.py`` do).
    """
    import torch

    n = threads or default_threads(max(1, local_ranks))
    set_thread_env(n)
    torch.set_num_threads(n)
    return n


def word_vectors(cfg: TrainConfig, vocab_size: int, files: Optional[Sequence[str]] = None) -> Any:
    """Return the embedding decoder's fixed word vectors ``(V, embedding_dim)``, or ``None`` for the linear decoder.

    ``word_embeddings: ppmi`` derives them from the training split alone (at most its first
    100,000 documents, so memory is ``O(V^2)``), or from ``files`` when given (Parquet of the
    training documents, e.g. the Spark converter's cache); a ``.npy`` path loads them (one row per
    vocabulary word, in ``vocab.txt`` order). Every rank computes the same vectors.

    Raises:
        ConfigError: for a vocabulary too large for ``ppmi``, or a file that is missing or of the wrong shape.
    """
    import numpy as np
    import torch

    opts = resolve_model_options(cfg)
    if opts["decoder"] != "embedding":
        return None
    dim, source = int(opts["embedding_dim"]), str(opts["word_embeddings"])
    t0 = time.perf_counter()
    if source == "ppmi":
        if vocab_size > MAX_PPMI_VOCAB:
            raise ConfigError(
                f"invalid config value train.word_embeddings='ppmi': the vocabulary has {vocab_size} words and PPMI "
                f"vectors are computed for at most {MAX_PPMI_VOCAB}; give a .npy of ({vocab_size}, {dim}) vectors "
                "or use decoder: linear."
            )
        counts, n_docs = document_cooccurrence(cfg.data_dir, vocab_size, files=files)
        vectors = ppmi_word_vectors(counts, n_docs, dim)
        log.info("word vectors: PPMI-SVD of %d training documents, %d x %d (%.1f s)", n_docs, vocab_size, dim, time.perf_counter() - t0)
        return vectors
    path = Path(source)
    if not path.exists():
        raise ConfigError(f"invalid config value train.word_embeddings={source!r}: no file at {str(path)!r}; check the path.")
    arr = np.load(path)
    if arr.shape != (vocab_size, dim):
        raise ConfigError(
            f"invalid config value train.word_embeddings={source!r}: the array has shape {arr.shape}; the embedding "
            f"decoder needs one row per vocabulary word and embedding_dim columns, ({vocab_size}, {dim})."
        )
    return torch.nn.functional.normalize(torch.as_tensor(arr, dtype=torch.float32), dim=1)


def warm_start_vector_cfg(cfg: TrainConfig, warm_start: Optional[WarmStart]) -> TrainConfig:
    """The config :func:`word_vectors` reads: ``cfg``, or for a warm start the champion's decoder and vector size."""
    if warm_start is None:
        return cfg
    champion = warm_start.model.config
    if champion.get("decoder") != "embedding":
        return dataclasses.replace(cfg, decoder="linear")
    return dataclasses.replace(cfg, decoder="embedding", embedding_dim=champion["embedding_dim"])


def coherence_reference(cfg: TrainConfig, dm: Any) -> CoherenceReference:
    """Read NPMI's reference documents (``cfg.npmi_reference`` of ``cfg.data_dir``).

    A data module fed from elsewhere (Petastorm's Spark converter) whose ``data_dir`` holds no
    such split falls back to its own training files, named ``train``.
    """
    try:
        return read_coherence_reference(cfg.data_dir, cfg.npmi_reference, dm.vocab_size, cfg.npmi_reference_max_docs)
    except DataNotFoundError:
        files = getattr(dm, "train_files", None)
        if not files:
            raise
        return read_coherence_reference_files(files, dm.vocab_size, cfg.npmi_reference_max_docs, name="train")


def background_bias(cfg: TrainConfig, dm: Any) -> Any:
    """Return the linear decoder's starting bias: log word frequencies of the training split; ``None`` for the embedding decoder."""
    import torch

    if resolve_model_options(cfg)["decoder"] != "linear":
        return None
    files = getattr(dm, "train_files", None) or split_files(cfg.data_dir, "train")
    counts = np.zeros(dm.vocab_size, dtype=np.float64)
    for group in list_row_groups(files):
        table = open_parquet(group.path).read_row_group(group.index, columns=[INDICES_COL, VALUES_COL])
        idx = np.asarray(table.column(INDICES_COL).combine_chunks().flatten(), dtype=np.int64)
        val = np.asarray(table.column(VALUES_COL).combine_chunks().flatten(), dtype=np.float64)
        np.add.at(counts, idx, val)
    return background_log_frequencies(torch.from_numpy(counts))


def build_system(
    cfg: TrainConfig,
    vocab_size: int,
    num_threads: Optional[int] = None,
    vectors: Any = None,
    background: Any = None,
    warm_start: Optional[WarmStart] = None,
) -> NTMSystem:
    """Build the :class:`NTMSystem` that ``cfg`` describes.

    ``vectors``: see :func:`word_vectors`; ``background``: the linear decoder's initial bias
    (:func:`background_bias`). ``warm_start``: the model takes the champion's architecture
    (its ``hparams.json``, whatever ``cfg`` says; a differing value is logged) and weights; the
    optimizer and schedule stay ``cfg``'s.
    """
    if cfg.feature_dim is not None and cfg.feature_dim != vocab_size:
        raise ConfigError(
            f"invalid config value train.feature_dim={cfg.feature_dim!r}: the vocabulary in {cfg.data_dir!r} "
            f"has {vocab_size} words; leave feature_dim null or set it to {vocab_size}."
        )
    hparams = resolve_hparams(cfg, cfg.preset)
    if warm_start is not None:
        champion = {k: v for k, v in warm_start.model.config.items() if k != "vocab_size"}
        changed = {k: (hparams.get(k), v) for k, v in champion.items() if k in hparams and hparams.get(k) != v}
        ignored = {k: a for k, (a, _b) in changed.items() if k not in ("encoder_layers",) or a != "auto"}
        if ignored:
            log.info("warm start keeps the champion's architecture; ignoring %s", ", ".join(f"{k}={a!r}" for k, a in sorted(ignored.items())))
        hparams.update(champion)
        if int(warm_start.model.vocab_size) != vocab_size:
            raise ConfigError(
                f"the warm-start data in {cfg.data_dir!r} has {vocab_size} words but the champion {warm_start.reference} "
                f"has {warm_start.model.vocab_size}: prepare the data with lightning_module.warm_start.prepare_warm_start_data."
            )
    system = NTMSystem.from_hparams(hparams, vocab_size, num_threads=num_threads, word_vectors=vectors, background=background)
    if warm_start is not None:
        system.model.load_state_dict(warm_start.state_dict())
        if vectors is not None and system.model.decoder_kind == "embedding":
            import torch

            # Word vectors of the new data, rotated into the champion's basis (warm_start.procrustes_align).
            with torch.no_grad():
                system.model.word_embeddings.copy_(procrustes_align(vectors, system.model.word_embeddings))
    return system


def _interactive(cfg: TrainConfig) -> bool:
    return cfg.progress_bar if cfg.progress_bar is not None else sys.stderr.isatty()


# --------------------------------------------------------------------------- the library function



def local_work_dir(output_dir: str | os.PathLike) -> Path:
    """Return where Lightning writes checkpoints and logs for ``output_dir``.

    A local ``output_dir`` is itself. For a URI (``s3://...``) the checkpoints and CSV logs
    stay on this machine, in ``<state>/train-work/<hash of the URI>`` (the same folder on a
    rerun, so ``--resume last`` finds them), and only the model folder is uploaded.
    """
    if not storage.is_remote(output_dir):
        return Path(output_dir)
    import hashlib

    key = hashlib.sha256(storage.normalize_uri(output_dir).encode("utf-8")).hexdigest()[:16]
    return paths.state_dir() / "train-work" / key


def train_model(
    cfg: TrainConfig,
    callbacks: Optional[Sequence["pl.Callback"]] = None,
    loggers: Optional[Sequence[Any]] = None,
    ranks_per_instance: Optional[int] = None,
    datamodule: Optional["pl.LightningDataModule"] = None,
    warm_start: Optional[WarmStart] = None,
) -> TrainResult:
    """Train an NTM on the preprocessing output and write the model folder.

    Runs in every DDP rank (Lightning's launcher re-runs the caller, torchrun and
    TorchDistributor start one process per rank); only rank 0 writes the model
    folder and prints the topics.

    Args:
        cfg: The resolved train config.
        callbacks: Extra Lightning callbacks (e.g. MLflow logging).
        loggers: Extra Lightning loggers; a CSV logger under ``output_dir/logs`` is always added.
        ranks_per_instance: The ranks that share one instance's ``mini_batch_size`` (SageMaker's
            per-instance batch, divided over the instance's devices); default: this node's devices.
            TorchDistributor on a cluster passes its executor's ranks, since there each rank is a
            ``torchrun`` node of its own (see :mod:`ntm_spark.spark.distributed`).
        datamodule: Batches from elsewhere than ``cfg.data_dir``'s Parquet, e.g. Petastorm's Spark
            converter (:mod:`ntm_spark.spark.petastorm_train`). It must have ``vocab``, ``vocab_size``
            and ``has_split(split)``, and may have ``train_files`` (Parquet of the training documents,
            for the PPMI word vectors; default: ``cfg.data_dir``'s training split).
        warm_start: Start from this champion's weights (:mod:`lightning_module.warm_start`); ``cfg.data_dir``
            must be on its vocabulary (:func:`~lightning_module.warm_start.prepare_warm_start_data`). The
            trained topics are then reordered to keep the champion's ids, and ``topic_stability.json``
            says how far each moved.

    Returns:
        :class:`TrainResult` with the model folder (``cfg.output_dir``) and the final metrics.
    """
    from pytorch_lightning.callbacks import ModelCheckpoint
    from pytorch_lightning.loggers import CSVLogger

    out = local_work_dir(cfg.output_dir)
    local_devices = local_device_count(cfg)
    world = local_devices * cfg.num_nodes
    threads = configure_threads(local_devices, cfg.threads_per_process)
    if cfg.num_nodes == 1:
        # Single machine: keep the DDP rendezvous store on loopback.
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    pl.seed_everything(cfg.seed, workers=True, verbose=False)

    batch_size = per_device_batch_size(cfg.mini_batch_size, ranks_per_instance or local_devices)
    dm = BowDataModule(
        cfg.data_dir,
        batch_size=batch_size,
        reader=cfg.reader,
        num_workers=cfg.num_workers,
        seed=cfg.seed,
        drop_last=cfg.drop_last,
        sub_sample=cfg.sub_sample,
        shuffle_buffer=cfg.shuffle_buffer,
        resident=cfg.resident,
        steps_per_execution=cfg.steps_per_execution,
        shuffle=cfg.shuffle,
        petastorm_pool=cfg.petastorm.reader_pool_type,
        petastorm_workers=cfg.petastorm.workers_count,
    ) if datamodule is None else datamodule
    reference = coherence_reference(cfg, dm)
    system = build_system(
        cfg,
        dm.vocab_size,
        num_threads=threads,
        # A warm start's decoder bias comes with the champion's weights; its PPMI word vectors are
        # recomputed on the new data (+ replay) and rotated into the champion's basis.
        vectors=word_vectors(warm_start_vector_cfg(cfg, warm_start), dm.vocab_size, getattr(dm, "train_files", None)),
        background=None if warm_start is not None else background_bias(cfg, dm),
        warm_start=warm_start,
    )
    if reference.n_docs < MIN_REFERENCE_DOCS:
        warnings.warn(
            f"the NPMI reference ({reference.describe()}) has fewer than {MIN_REFERENCE_DOCS:,} documents: pairs that "
            "co-occur by chance dominate NPMI, so compare figures only on the same reference (npmi_reference).",
            stacklevel=2,
        )
    system.coherence_reference = reference
    has_val, has_test = dm.has_split("validation"), dm.has_split("test")
    monitor = "val/loss" if has_val else "train/loss"
    if not has_val:
        warnings.warn(
            f"no validation split under {cfg.data_dir!r}: early stopping monitors the training loss, as SageMaker NTM does.",
            stacklevel=2,
        )

    stopper = NTMEarlyStopping(monitor, cfg.num_patience_epochs, cfg.tolerance, resolve_model_options(cfg)["min_epochs"])
    cbs: list = [stopper, *(callbacks or [])]
    ckpt = None
    if cfg.checkpoint:
        ckpt = ModelCheckpoint(
            dirpath=out / "checkpoints",
            filename="epoch{epoch:03d}",
            monitor=monitor,
            mode="min",
            save_top_k=1,
            save_last=True,
            auto_insert_metric_name=False,
        )
        cbs.append(ckpt)
    interactive = _interactive(cfg)
    if not interactive:
        cbs.append(EpochLog())
    strategy = cfg.strategy
    if strategy == "auto" and world > 1:
        strategy = "ddp"
    trainer = pl.Trainer(
        max_epochs=cfg.epochs,
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy=strategy,
        precision=cfg.precision,
        callbacks=cbs,
        logger=[CSVLogger(str(out), name="logs"), *(loggers or [])],
        enable_progress_bar=interactive,
        enable_model_summary=interactive,
        deterministic=cfg.deterministic,
        num_sanity_val_steps=0,
        log_every_n_steps=cfg.log_every_n_steps,
        default_root_dir=str(out),
        use_distributed_sampler=False,
        # SyncBatchNorm keeps BN statistics global across GPUs (torch has no CPU version).
        sync_batchnorm=world > 1 and _uses_batch_norm(system) and _on_cuda(cfg),
    )
    resume = cfg.resume
    if resume == "last":
        resume = str(out / "checkpoints" / "last.ckpt")
    if resume and not Path(resume).exists():
        raise ConfigError(f"invalid config value train.resume={cfg.resume!r}: no checkpoint at {resume!r}; check --resume.")
    t0 = time.perf_counter()
    trainer.fit(system, datamodule=dm, ckpt_path=resume)
    fit_s = time.perf_counter() - t0

    best = ckpt.best_model_path if ckpt is not None and ckpt.best_model_path else None
    metrics: dict[str, float] = {}
    if "train/loss" in trainer.callback_metrics:
        metrics["train_loss"] = float(trainer.callback_metrics["train/loss"])
    if has_val:
        metrics.update(_flat(trainer.validate(system, datamodule=dm, ckpt_path=best, verbose=False)))
    if has_test:
        metrics.update(_flat(trainer.test(system, datamodule=dm, ckpt_path=best if not has_val else None, verbose=False)))
    final_stage = "test" if has_test else ("val" if has_val else None)
    if final_stage and f"{final_stage}_perplexity" in metrics:
        metrics["perplexity"] = metrics[f"{final_stage}_perplexity"]
    stability = None
    if warm_start is not None:
        # Keep the champion's topic ids: reorder the topics by the Hungarian match (every rank holds
        # the same weights, so every rank reorders alike), then measure how far each id moved.
        order, stability = align_to_reference(system.model, warm_start, dm.vocab, cfg.top_n_words, cfg.warm_start.move_threshold)
        summary = stability.to_dict()["summary"]
        metrics.update(
            {
                "topics_moved": float(stability.changed),
                "topics_kept_share": summary["kept"] / max(1, system.model.num_topics),
                "topic_distance_median": float(summary["median_distance"] or 0.0),
                "topics_reordered": float(int((order != np.arange(len(order))).sum())),
            }
        )
    # The model's topic quality, from the final (best) weights and the configured reference: the
    # same figures whichever splits exist (never nan), and the ones the registry gate reads.
    topic_info = final_topic_quality(system, reference, cfg.top_n_words)
    metrics.update({k: topic_info[k] for k in ("npmi", "tu", "diversity")})
    metrics["npmi_reference_docs"] = float(reference.n_docs)
    kl = next((metrics[k] for k in ("val_kl", "test_kl") if k in metrics), None)
    if kl is None and "train/kl" in trainer.callback_metrics:
        kl = float(trainer.callback_metrics["train/kl"])
    collapsed = collapse_reason(metrics["diversity"], kl, system.model.num_topics, dm.vocab_size)
    metrics["collapsed"] = float(collapsed is not None)
    epochs_trained = trainer.current_epoch
    metrics.update({"epochs_trained": float(epochs_trained), "fit_seconds": round(fit_s, 3)})
    result = TrainResult(str(cfg.output_dir) if storage.is_remote(cfg.output_dir) else str(out), metrics, best, epochs_trained, stopper.stopped_epoch is not None)

    if trainer.is_global_zero:
        opts = resolve_model_options(cfg)
        data_manifest = read_manifest(cfg.data_dir, required=False)
        # The stream's drift monitor compares each window with this (docs/streaming.md "Drift monitoring").
        baseline = compute_drift_baseline(
            system.model, getattr(dm, "train_files", None) or split_files(cfg.data_dir, "train"), data_manifest
        )
        save_model_folder(
            cfg.output_dir if storage.is_remote(cfg.output_dir) else out,
            system.model,
            dm.vocab,
            metrics=metrics,
            config=dataclasses.asdict(cfg),
            manifest_path=storage.join(cfg.data_dir, MANIFEST_FILE),
            training={
                "preset": cfg.preset,
                **opts,
                "mini_batch_size": cfg.mini_batch_size,
                "per_device_batch_size": batch_size,
                "ranks_per_instance": ranks_per_instance or local_devices,
                "world_size": world,
                "epochs_trained": epochs_trained,
                "best_checkpoint": best,
                "seed": cfg.seed,
                "data_dir": str(cfg.data_dir),
                "data_manifest": data_manifest,
                "npmi_reference": {"splits": reference.name, "documents": reference.n_docs, "setting": cfg.npmi_reference},
                "collapsed": collapsed,
                **(
                    {"warm_start": {"from": warm_start.reference, "folder": warm_start.folder, **warm_start.facts}}
                    if warm_start is not None
                    else {}
                ),
            },
            topic_npmi=topic_info["npmi_per_topic"],
            topic_tu=topic_info["tu_per_topic"],
            top_n=cfg.top_n_words,
            drift_baseline=baseline,
            topic_stability=stability,
        )
        print(format_final_topics(system, dm.vocab, metrics, topic_info, cfg.top_n_words), flush=True)
        print(f"NPMI reference: {reference.describe()} (npmi_reference={cfg.npmi_reference})", flush=True)
        if stability is not None:
            print(stability.table(), flush=True)
        if collapsed:
            print(
                f"WARNING: the model has collapsed: {collapsed}. It is marked collapsed=1 in metrics.json, and the "
                "registry gate never makes it champion. Try the default preset, more epochs, or kl_warmup_epochs.",
                file=sys.stderr,
                flush=True,
            )
    if collapsed and cfg.fail_on_collapse:
        raise TrainingCollapsedError(f"training collapsed ({collapsed}); the model folder {result.model_dir!r} is kept for inspection.")
    return result


class TrainingCollapsedError(RuntimeError):
    """Training produced a collapsed model and ``fail_on_collapse`` is set."""


def final_topic_quality(system: NTMSystem, reference: Any, top_n: int = 10) -> dict[str, Any]:
    """Score the system's current topics: NPMI over ``reference``, TU and diversity (the one definition).

    Returns:
        ``npmi``, ``tu``, ``diversity`` (floats) and the per-topic ``npmi_per_topic``/``tu_per_topic`` arrays.
    """
    system.model.eval()
    topic_word = system.model.topic_word().float().cpu().numpy()  # (K, V)
    top = top_words(topic_word, 10)
    npmi_k = reference.npmi_per_topic(top)
    tu_k = topic_uniqueness(top, per_topic=True)
    return {
        "npmi": float(npmi_k.mean()),
        "tu": float(tu_k.mean()),
        "diversity": topic_diversity(topic_word, 25),
        "npmi_per_topic": npmi_k,
        "tu_per_topic": tu_k,
    }


def _on_cuda(cfg: TrainConfig) -> bool:
    import torch

    return cfg.accelerator in ("gpu", "cuda") or (cfg.accelerator == "auto" and torch.cuda.is_available())


def _uses_batch_norm(system: NTMSystem) -> bool:
    import torch

    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in system.modules())


def _flat(results: list[dict[str, Any]]) -> dict[str, float]:
    out = {}
    for d in results or []:
        for k, v in d.items():
            out[k.replace("/", "_")] = float(v)
    return out


def format_final_topics(system: NTMSystem, vocab: Sequence[str], metrics: dict, topic_info: dict, top_n: int = 10) -> str:
    """SageMaker NTM's closing print: ``Topics from epoch:final (num_topics:K) [tu .., npmi ..]:`` then one line per topic."""
    system.model.eval()
    topic_word = system.model.topic_word().float().cpu().numpy()
    header = (
        f"Topics from epoch:final (num_topics:{system.model.num_topics}) "
        f"[tu {metrics.get('tu', float('nan')):.2f}, npmi {metrics.get('npmi', float('nan')):.3f}]:"
    )
    lines = format_topics(topic_word, vocab, top_n, npmi=topic_info.get("npmi_per_topic"), tu=topic_info.get("tu_per_topic"))
    return "\n".join([header, *lines])


def apply_torchrun_env(cfg: TrainConfig) -> TrainConfig:
    """Take ``devices``/``num_nodes`` from torchrun's (or TorchDistributor's) environment.

    Raises:
        ConfigError: when ``LOCAL_WORLD_SIZE``/``WORLD_SIZE`` are not set.
    """
    try:
        local, world = int(os.environ["LOCAL_WORLD_SIZE"]), int(os.environ["WORLD_SIZE"])
    except KeyError as err:
        raise ConfigError(
            f"--launcher torchrun needs ${err.args[0]}: start the job with `torchrun --nproc-per-node N -m jobs.train "
            "--launcher torchrun ...`, or use --launcher local."
        ) from None
    cfg.devices, cfg.num_nodes = local, max(1, world // local)
    return cfg
