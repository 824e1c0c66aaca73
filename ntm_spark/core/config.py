"""Typed, layered configuration.

Each stage has one YAML file of committed defaults, ``conf/base/<stage>.yaml``.
``conf/local/<stage>.yaml`` (git-ignored) is laid over it, then ``--set
key=value`` overrides from the command line. The merged mapping is checked
against the stage's dataclass: unknown keys, wrong types and out-of-range
values raise :class:`ConfigError` naming the key, the value and the fix.

Default paths live in the state folder: a string value that starts with ``.ntm/``
(``output_path: .ntm/data/20newsgroups``, ``sqlite:///.ntm/mlflow.db``), from any layer
or the dataclass default, is rewritten to ``$NTM_HOME/...`` (else ``<repo>/.ntm/...``) by
:func:`ntm_spark.core.paths.resolve_state_path`, so no default is resolved against the working
directory. Other relative paths stay relative to the working directory.

Example:
    >>> cfg = load_config("preprocess", overrides=["vocab_size=500"])
    >>> cfg.vocab_size
    500
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional, Union

import yaml

from ntm_spark.core.hparams import Hyperparameters, PresetName, invalid_hparam
from ntm_spark.core.paths import conf_dir, resolve_state_path

if TYPE_CHECKING:  # pragma: no cover
    from ntm_spark.core.drift import DriftThresholds


class ConfigError(ValueError):
    """A configuration value is missing, unknown, of the wrong type or out of range."""


# --------------------------------------------------------------------------- stages


@dataclass
class SparkConfig:
    """How every job builds its Spark session (``conf/base/spark.yaml``)."""

    master: Optional[str] = "local[2]"
    #: The Spark application name; null: each job's own (ntm-preprocess, ntm-stream, ...).
    app_name: Optional[str] = None
    #: ``local`` adds the Maven-resolved jars under ``.ntm/jars/spark``;
    #: ``packages`` sets ``spark.jars.packages`` coordinates (for clusters).
    kafka_connector: Literal["local", "packages", "none"] = "local"
    #: Extra ``spark.*`` settings, e.g. ``{"spark.sql.shuffle.partitions": "8"}``.
    conf: dict = field(default_factory=dict)
    log_level: str = "WARN"
    #: Local mode: map the driver JVM's classes from a class-data-sharing archive (JDK AppCDS)
    #: saved beside the jars (``.ntm/jars/cds``) by the first session, which cuts session start-up by seconds.
    class_data_sharing: bool = True
    #: Local mode: a new driver JVM's local file system sets permissions through java.nio
    #: (``.ntm/jars/hadoop/ntm-hadoop-fs.jar``, built by ``make jars``) instead of starting a
    #: ``chmod`` process per file and directory, as Hadoop does without its native library.
    nio_local_filesystem: bool = True

    def validate(self) -> None:
        """Check values that the types alone cannot."""
        _check(self.app_name is None or bool(self.app_name), "spark.app_name", self.app_name, "set a non-empty application name, or null")


@dataclass
class ServicesConfig:
    """The local Kafka broker and MLflow server (``conf/base/services.yaml``)."""

    host: str = "127.0.0.1"
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    kafka_heap: str = "512m"
    mlflow_server: bool = False
    mlflow_port: int = 5000
    #: ``ntm services up --spark-workers N``: a standalone Spark master and N workers (0: none).
    spark_workers: int = 0
    spark_master_port: int = 7077
    spark_master_webui_port: int = 8080
    spark_worker_cores: int = 1
    spark_worker_memory: str = "1g"
    start_timeout_s: float = 60.0

    def validate(self) -> None:
        """Check ports and the bind address."""
        for name in ("kafka_port", "kafka_controller_port", "mlflow_port", "spark_master_port", "spark_master_webui_port"):
            port = getattr(self, name)
            _check(0 < port < 65536, f"services.{name}", port, "use a TCP port between 1 and 65535")
        _check(self.spark_workers >= 0, "services.spark_workers", self.spark_workers, "use 0 (no cluster) or more workers")
        _check(self.spark_worker_cores >= 1, "services.spark_worker_cores", self.spark_worker_cores, "use 1 or more cores")
        _check(
            bool(re.fullmatch(r"\d+[mMgG]", str(self.spark_worker_memory))),
            "services.spark_worker_memory",
            self.spark_worker_memory,
            "write it like Spark's --memory, e.g. 1g or 512m",
        )
        _check(
            self.kafka_port != self.kafka_controller_port,
            "services.kafka_controller_port",
            self.kafka_controller_port,
            "use a port different from kafka_port",
        )
        _check(self.start_timeout_s > 0, "services.start_timeout_s", self.start_timeout_s, "use a positive number")


@dataclass
class MlflowConfig:
    """Tracking and registry settings (``conf/base/mlflow.yaml``)."""

    #: ``None`` means ``$MLFLOW_TRACKING_URI`` or the SQLite file under ``.ntm/``.
    tracking_uri: Optional[str] = None
    experiment: str = "ntm-20newsgroups"
    registered_model_name: str = "ntm-20newsgroups"
    gate_metric: str = "npmi"
    gate_guard_metric: str = "val_loss"
    #: A challenger may be at most this much worse on the guard metric (relative).
    gate_guard_tolerance: float = 0.05
    #: No version whose top-25 topic diversity (TU where it has none) is below this becomes champion.
    gate_min_diversity: float = 0.5
    #: Topic stability (docs/mlflow.md "Topic stability"): ``warm_start`` checks challengers trained with
    #: ``--warm-start`` (they claim the champion's topic ids), ``always`` every challenger on the champion's
    #: vocabulary, ``off`` none.
    gate_topic_stability: Literal["warm_start", "always", "off"] = "warm_start"
    #: At most this many topic ids may move (JS distance > ``gate_topic_move_threshold``), be new or retired;
    #: null: 20% of the champion's topics.
    gate_max_moved_topics: Optional[int] = None
    #: null: :data:`ntm_spark.core.topic_matching.DEFAULT_MOVE_THRESHOLD`.
    gate_topic_move_threshold: Optional[float] = None


@dataclass
class PreprocessConfig:
    """The preprocessing job (``conf/base/preprocess.yaml``)."""

    input_path: Optional[str] = None
    input_format: Literal["20newsgroups", "text", "csv", "jsonl", "parquet"] = "20newsgroups"
    text_col: str = "text"
    id_col: str = "id"
    label_col: Optional[str] = None
    output_path: str = ".ntm/data/20newsgroups"
    overwrite: bool = False
    clean: Optional[bool] = None
    stop_words: Union[str, list] = "english"
    #: The named text rule set (ntm_spark.core.text.TEXT_RULE_SETS); recorded in the manifest.
    text_rules: Literal["notebook", "v1", "v2"] = "v2"
    vocab_size: int = 2000
    min_df: float = 2.0
    max_df: float = 0.95
    threshold: int = 25
    split: list = field(default_factory=lambda: [0.8, 0.1, 0.1])
    #: Keep 20 Newsgroups' by-date train/test folders as train+validation/test; null -> on for 20newsgroups.
    keep_official_split: Optional[bool] = None
    #: The splits whose documents fit the vocabulary (and its min_df/max_df): by default the training split only.
    vocab_fit_splits: list = field(default_factory=lambda: ["train"])
    seed: int = 42
    num_train_shards: int = 8
    num_eval_shards: int = 2
    row_group_size: int = 1024
    max_doc_bytes: int = 1_000_000  # ntm_spark.core.checks.MAX_TEXT_BYTES: the same limit in every path
    sample_fraction: float = 1.0
    #: Where a 20 Newsgroups archive is unpacked once (null -> <state>/cache); shared storage on a cluster.
    cache_path: Optional[str] = None

    def validate(self) -> None:
        """Check ranges and combinations."""
        _check(2 <= self.vocab_size <= 10_000_000, "preprocess.vocab_size", self.vocab_size, "use an integer >= 2")
        _check(self.min_df >= 0, "preprocess.min_df", self.min_df, "use a count >= 1 or a fraction in [0, 1)")
        _check(0 < self.max_df <= 1 or self.max_df > 1, "preprocess.max_df", self.max_df, "use a fraction in (0, 1] or a count")
        _check(self.threshold >= 0, "preprocess.threshold", self.threshold, "use an integer >= 0")
        _check(
            len(self.split) == 3 and all(0 <= float(s) <= 1 for s in self.split) and abs(sum(self.split) - 1) < 1e-6,
            "preprocess.split",
            self.split,
            "give three fractions [train, validation, test] that sum to 1",
        )
        _check(self.num_train_shards >= 1, "preprocess.num_train_shards", self.num_train_shards, "use an integer >= 1")
        _check(self.num_eval_shards >= 1, "preprocess.num_eval_shards", self.num_eval_shards, "use an integer >= 1")
        _check(self.row_group_size >= 1, "preprocess.row_group_size", self.row_group_size, "use an integer >= 1")
        _check(0 < self.sample_fraction <= 1, "preprocess.sample_fraction", self.sample_fraction, "use a fraction in (0, 1]")
        _check(self.max_doc_bytes >= 1, "preprocess.max_doc_bytes", self.max_doc_bytes, "use an integer >= 1")
        _check(
            not self.keep_official_split or self.input_format == "20newsgroups",
            "preprocess.keep_official_split",
            self.keep_official_split,
            "it needs input_format=20newsgroups (other corpora have no official split); set it to false or null",
        )
        _check(
            bool(self.vocab_fit_splits) and all(s in ("train", "validation", "test") for s in self.vocab_fit_splits),
            "preprocess.vocab_fit_splits",
            self.vocab_fit_splits,
            "give a non-empty list of splits from [train, validation, test], e.g. [train] (the default) "
            "or [train, validation, test] to fit on every document as the notebook did",
        )
        _check(
            not isinstance(self.stop_words, str) or self.stop_words.lower() in ("english", "none"),
            "preprocess.stop_words",
            self.stop_words,
            "use 'english', 'none' or a list of words",
        )


@dataclass
class PetastormConfig:
    """Petastorm's readers (``train.petastorm``): ``reader: petastorm`` and ``ntm train --from-spark-df``.

    Both run only in ``.venv-petastorm`` (``make petastorm-env``): Petastorm 0.13.1 needs pyarrow<=14 and numpy<2.
    """

    #: Petastorm's ``reader_pool_type``: ``dummy`` reads in the loader's own process (each DataLoader
    #: worker then reads its own shard), ``process`` adds Petastorm's process pool. The ``thread`` pool is
    #: refused: it silently returned no rows for whole shards in a probe.
    reader_pool_type: Literal["dummy", "process"] = "dummy"
    #: Processes of the ``process`` pool, per reader.
    workers_count: int = 2
    #: Where ``make_spark_converter`` materializes a DataFrame as Parquet: a path or a ``file://``,
    #: ``hdfs://``, ``s3://``... URL every executor and the driver can reach. Each run's cache is
    #: deleted when training ends.
    cache_dir_url: str = ".ntm/petastorm-cache"

    def validate(self) -> None:
        """Check ranges."""
        _check(self.workers_count >= 1, "train.petastorm.workers_count", self.workers_count, "use an integer >= 1")
        _check(bool(self.cache_dir_url), "train.petastorm.cache_dir_url", self.cache_dir_url, "give a path or a URL such as file:///tmp/petastorm-cache")


@dataclass
class WarmStartConfig:
    """Warm start (``train.warm_start``, ``ntm train --warm-start``): docs/train.md "Warm start"."""

    #: The model to start from: ``models:/<name>@champion``, ``models:/<name>/<version>``, a model
    #: folder, or null (train from scratch).
    model: Optional[str] = None
    #: Old documents mixed in: ``auto`` (the champion's training data when that folder is still
    #: reachable), ``none``, or a preprocessing output folder.
    replay_data: Optional[str] = "auto"
    #: Replayed documents per new document (training and validation splits).
    replay_fraction: float = 1.0
    #: A topic whose word distribution moved further than this (JS distance) is reported as moved.
    move_threshold: Optional[float] = None

    def validate(self) -> None:
        """Check ranges."""
        _check(self.replay_fraction >= 0, "train.warm_start.replay_fraction", self.replay_fraction, "use a number >= 0 (0: no replay)")
        _check(
            self.move_threshold is None or 0 < self.move_threshold <= 1,
            "train.warm_start.move_threshold", self.move_threshold, "use null or a JS distance in (0, 1]",
        )


@dataclass
class _TrainPaths:
    """The first keys of ``train.yaml``: where the data and the model folder are, and the preset."""

    data_dir: str = ".ntm/data/20newsgroups"
    output_dir: str = ".ntm/models/ntm"
    preset: PresetName = "default"


#: What ``train.npmi_reference`` may join with ``+``.
NPMI_REFERENCE_PARTS = ("train", "validation", "test", "heldout")


@dataclass
class TrainConfig(Hyperparameters, _TrainPaths):
    """NTM training (``conf/base/train.yaml``); SageMaker NTM's hyperparameter names and defaults.

    The hyperparameter keys (``feature_dim`` ... ``sample_latent``) are the fields of
    :class:`~ntm_spark.core.hparams.Hyperparameters`, declared once in ``ntm_spark/core/hparams.py``
    with their defaults, ranges and consumers. Those left ``null`` take the value of ``preset``
    (:data:`~ntm_spark.core.hparams.PRESETS`): ``sagemaker`` is the seed architecture with
    SageMaker's defaults (sigmoid, no batch norm, adadelta, learning_rate 0.001); ``default`` is
    the ProdLDA-style setting chosen by measured topic quality. The fields below are the run's
    data loading, hardware and bookkeeping.
    """

    # Data loading.
    reader: Literal["arrow", "petastorm"] = "arrow"
    shuffle: bool = True  # shuffle the training split every epoch (row-group order, then rows in shuffle_buffer)
    num_workers: int = 2
    shuffle_buffer: int = 4096
    drop_last: bool = False
    resident: bool = False  # read each rank's shard once and iterate on the device
    steps_per_execution: int = 1  # training batches per Lightning step (spreads its per-step overhead)
    # Hardware and distribution.
    accelerator: str = "auto"  # auto | cpu | gpu
    devices: Union[int, str] = "auto"
    num_nodes: int = 1
    strategy: str = "auto"  # auto -> ddp when devices * num_nodes > 1
    precision: str = "32-true"
    threads_per_process: Optional[int] = None  # null -> cores // local ranks
    # Runs.
    seed: int = 42
    deterministic: bool = False
    checkpoint: bool = True
    resume: Optional[str] = None  # a checkpoint path, or "last"
    progress_bar: Optional[bool] = None  # null -> only when stderr is a terminal
    log_every_n_steps: int = 50
    top_n_words: int = 10
    # Topic quality: NPMI's reference documents (ntm_spark/core/topic_metrics.py), and collapse.
    npmi_reference: str = "train+heldout"  # '+'-joined splits; heldout = test, else validation
    npmi_reference_max_docs: int = 100_000  # the first N documents of those splits, in file order
    fail_on_collapse: bool = False  # true: a collapsed model fails training; false: it is marked (metrics, tags)
    # Petastorm's readers (reader: petastorm, --from-spark-df).
    petastorm: PetastormConfig = field(default_factory=PetastormConfig)
    # Warm start from a registered model (--warm-start).
    warm_start: WarmStartConfig = field(default_factory=WarmStartConfig)

    def validate(self) -> None:
        """Check ranges: each hyperparameter's declared range (SageMaker's limits where it has them), then the run's."""
        bad = invalid_hparam(self)
        if bad is not None:
            name, value, fix = bad
            _check(False, f"train.{name}", value, fix)
        _check(self.num_workers >= 0, "train.num_workers", self.num_workers, "use an integer >= 0")
        _check(self.steps_per_execution >= 1, "train.steps_per_execution", self.steps_per_execution, "use an integer >= 1 (1 = one batch per step)")
        _check(self.shuffle_buffer >= 1, "train.shuffle_buffer", self.shuffle_buffer, "use an integer >= 1")
        _check(
            self.devices == "auto" or (isinstance(self.devices, int) and self.devices >= 1) or (isinstance(self.devices, str) and self.devices.lstrip("-").isdigit()),
            "train.devices",
            self.devices,
            "use 'auto', a positive integer, or -1 for all devices",
        )
        _check(self.num_nodes >= 1, "train.num_nodes", self.num_nodes, "use an integer >= 1")
        _check(self.threads_per_process is None or self.threads_per_process >= 1, "train.threads_per_process", self.threads_per_process, "use null or an integer >= 1")
        _check(1 <= self.top_n_words <= 100, "train.top_n_words", self.top_n_words, "use an integer between 1 and 100")
        parts = str(self.npmi_reference).split("+")
        _check(
            all(p in NPMI_REFERENCE_PARTS for p in parts) and len(set(parts)) == len(parts),
            "train.npmi_reference", self.npmi_reference,
            "use '+'-joined split names from train, validation, test and heldout (test, else validation), such as train+heldout or test",
        )
        _check(self.npmi_reference_max_docs >= 1, "train.npmi_reference_max_docs", self.npmi_reference_max_docs, "use an integer >= 1")


@dataclass
class ExploreConfig:
    """The topic exploration report (``conf/base/explore.yaml``)."""

    #: A model folder, ``models:/<name>@<alias>``, ``models:/<name>/<version>`` or a run id.
    model: Optional[str] = None
    data_dir: str = ".ntm/data/20newsgroups"
    split: Literal["train", "validation", "test"] = "test"
    output_dir: Optional[str] = None  # null -> .ntm/reports/<model name>
    sample_docs: int = 10
    max_docs: int = 20000  # documents scored for prevalence and the heatmap; 0 = the whole split
    top_n: int = 10
    cloud_words: int = 60
    cloud_columns: int = 5
    batch_size: int = 1024
    seed: int = 0
    log_to_mlflow: bool = True  # log the report to the model's run when it came from MLflow

    def validate(self) -> None:
        """Check ranges."""
        _check(self.sample_docs >= 1, "explore.sample_docs", self.sample_docs, "use an integer >= 1")
        _check(self.max_docs >= 0, "explore.max_docs", self.max_docs, "use an integer >= 0 (0 scores the whole split)")
        _check(1 <= self.top_n <= 100, "explore.top_n", self.top_n, "use an integer between 1 and 100")
        _check(self.cloud_words >= 1, "explore.cloud_words", self.cloud_words, "use an integer >= 1")
        _check(self.cloud_columns >= 1, "explore.cloud_columns", self.cloud_columns, "use an integer >= 1")
        _check(self.batch_size >= 1, "explore.batch_size", self.batch_size, "use an integer >= 1")


@dataclass
class StreamConfig:
    """The Kafka streaming scorer, ``jobs/stream_score.py`` (``conf/base/stream.yaml``)."""

    bootstrap_servers: str = "127.0.0.1:9092"
    #: Comma-separated input topics; or set ``input_pattern`` (a Java regex) instead.
    input_topics: Optional[str] = "documents"
    input_pattern: Optional[str] = None
    output_topic: str = "topic-mixtures"
    dead_letter_topic: str = "topic-mixtures-dead-letters"
    starting_offsets: str = "latest"
    max_offsets_per_trigger: Optional[int] = None
    #: At most this many Spark tasks per micro-batch (the Kafka partitions are coalesced); ``auto``:
    #: as many as the cores Spark has (``defaultParallelism``), so a topic with more partitions than
    #: cores pays each task's fixed cost (a Python round trip, a producer flush) fewer times; null:
    #: one task per Kafka partition. Ignored (one task per partition) with ``trigger: real_time``.
    max_tasks_per_batch: Union[int, Literal["auto"], None] = "auto"
    #: ``kafka.*`` client settings passed to the source and both sinks (``kafka.`` prefix optional).
    kafka_options: dict = field(default_factory=dict)
    trigger: Literal["processing_time", "available_now", "real_time"] = "processing_time"
    processing_time: str = "100 milliseconds"
    real_time_batch_duration: str = "5 minutes"
    #: Real-time mode rejects Python operators: false scores with the JVM scorer (ntm-scorer.jar); true runs the
    #: Python scorer past Spark's allowlist check, which only emits at the end of each batch (docs/streaming.md).
    real_time_allow_python: bool = False
    #: Which scorer the stream runs: ``jvm`` (ntm-scorer.jar, ``make jars``: no Python worker, the model's
    #: ``jvm/`` export), ``python`` (the definition, :class:`~ntm_spark.serving.scoring.TopicScorer`, in
    #: ``scoring_udf``), or ``auto``: the JVM scorer for ``real_time`` (unless ``real_time_allow_python``) and
    #: for micro-batches (measured faster, docs/streaming.md), the Python scorer when the jar or export is missing.
    scorer: Literal["auto", "python", "jvm"] = "auto"
    #: ``trigger: real_time`` only: the Kafka source's consumer and the Kafka sink's producer settings, under
    #: ``kafka_options`` (which win); null: none. Fewer, fuller fetches (at most 5 ms more at the median) left the
    #: broker and the JVM a third of their CPU on a loaded 2-core box (docs/streaming.md, "Where the time goes");
    #: the sink's ``linger.ms: 5`` saved no more and added to the median, so the sink has none by default.
    real_time_source_options: Optional[dict] = field(default_factory=lambda: {"fetch.min.bytes": 65536, "fetch.max.wait.ms": 5})
    real_time_sink_options: Optional[dict] = field(default_factory=dict)
    #: ``processing_time`` / ``available_now``: the Kafka source's consumer and the Kafka sink's producer settings, under
    #: ``kafka_options`` (which win); null: none. Larger fetches per partition (a 10,000-document batch of 20NG is ~9 MB
    #: per partition, 1 MiB by default) and fuller produce requests drained a backlog 1.4-1.8x faster (docs/streaming.md).
    micro_batch_source_options: Optional[dict] = field(default_factory=lambda: {"max.partition.fetch.bytes": 16777216})
    micro_batch_sink_options: Optional[dict] = field(default_factory=lambda: {"batch.size": 524288, "linger.ms": 20})
    #: Write the offset and commit logs off the critical path (Kafka sink, processing_time trigger only).
    async_progress_tracking: bool = True
    async_progress_interval_ms: int = 1000
    checkpoint_location: str = ".ntm/checkpoints/stream"
    model_uri: str = "models:/ntm-20newsgroups@champion"
    #: Only ``ntm``: the Spark LDA peer is benchmark code now (bench/lda_peer.py, docs/architecture.md).
    model_kind: Literal["ntm"] = "ntm"
    model_refresh_interval_s: float = 30.0
    tracking_uri: Optional[str] = None
    max_message_bytes: int = 1_000_000
    top_k: int = 3
    top_words: int = 5
    passthrough_fields: list = field(default_factory=list)
    scoring_udf: Literal["map_in_pandas", "pandas_udf"] = "map_in_pandas"
    #: torch threads in each Python worker that scores (Spark runs one task per core already); null: torch's default.
    scoring_threads: Optional[int] = 1
    arrow_batch_size: int = 1000
    parquet_path: Optional[str] = None
    status_file: str = ".ntm/stream/status.json"
    #: Keep the query alive: wait out broker outages and missing input topics, restart from the checkpoint.
    supervise: bool = True
    #: Backoff between broker checks / restarts: starts here, doubles, capped at ``restart_backoff_max_s``.
    restart_backoff_initial_s: float = 1.0
    restart_backoff_max_s: float = 30.0
    #: Restarts in a row after a failure that is *not* a Kafka connectivity error, before the job exits.
    max_restarts: int = 3
    #: How long one broker check may take.
    broker_probe_timeout_s: float = 5.0
    #: Drift monitoring (docs/streaming.md "Drift monitoring"): one record per processing-time window
    #: to ``drift_topic`` (default ``<output_topic>-drift``) and, with ``parquet_path``, to ``<parquet_path>-drift``.
    drift: bool = True
    drift_window: str = "1 minute"
    drift_topic: Optional[str] = None
    #: Alert thresholds (:class:`ntm_spark.core.drift.DriftThresholds`; the defaults are measured, see the docs).
    drift_js_distance: float = 0.13
    drift_oov_rate_increase: Optional[float] = 0.09
    drift_empty_rate: Optional[float] = None
    drift_z_score: Optional[float] = None
    drift_min_documents: int = 200

    @property
    def drift_topic_name(self) -> str:
        """``drift_topic``, else ``<output_topic>-drift``."""
        return self.drift_topic or f"{self.output_topic}-drift"

    @property
    def drift_window_s(self) -> float:
        """``drift_window`` in seconds."""
        return parse_duration(self.drift_window, "stream.drift_window")

    def validate(self) -> None:
        """Check ranges and that exactly one input selector is set."""
        _check(
            bool(self.input_topics) != bool(self.input_pattern),
            "stream.input_topics",
            self.input_topics,
            f"set exactly one of input_topics or input_pattern (input_pattern={self.input_pattern!r})",
        )
        _check(bool(self.checkpoint_location), "stream.checkpoint_location", self.checkpoint_location, "set a folder path")
        _check(
            self.max_offsets_per_trigger is None or self.max_offsets_per_trigger >= 1,
            "stream.max_offsets_per_trigger",
            self.max_offsets_per_trigger,
            "use null or an integer >= 1",
        )
        _check(
            self.max_tasks_per_batch in (None, "auto") or self.max_tasks_per_batch >= 1,
            "stream.max_tasks_per_batch",
            self.max_tasks_per_batch,
            "use auto, null or an integer >= 1",
        )
        _check(
            self.max_tasks_per_batch in (None, "auto") or self.trigger != "real_time",
            "stream.max_tasks_per_batch",
            self.max_tasks_per_batch,
            "use auto or null with trigger=real_time (real-time mode runs one long-running task per Kafka partition)",
        )
        _check(self.model_refresh_interval_s > 0, "stream.model_refresh_interval_s", self.model_refresh_interval_s, "use a positive number of seconds")
        _check(self.max_message_bytes >= 1, "stream.max_message_bytes", self.max_message_bytes, "use an integer >= 1")
        _check(self.top_k >= 1, "stream.top_k", self.top_k, "use an integer >= 1")
        _check(self.top_words >= 0, "stream.top_words", self.top_words, "use an integer >= 0")
        _check(self.arrow_batch_size >= 1, "stream.arrow_batch_size", self.arrow_batch_size, "use an integer >= 1")
        _check(self.scoring_threads is None or self.scoring_threads >= 1, "stream.scoring_threads", self.scoring_threads, "use null or an integer >= 1")
        _check(self.async_progress_interval_ms >= 0, "stream.async_progress_interval_ms", self.async_progress_interval_ms, "use an integer >= 0")
        _check(self.output_topic != self.dead_letter_topic, "stream.dead_letter_topic", self.dead_letter_topic, "use a topic other than output_topic")
        _check(self.restart_backoff_initial_s > 0, "stream.restart_backoff_initial_s", self.restart_backoff_initial_s, "use a positive number of seconds")
        _check(
            self.restart_backoff_max_s >= self.restart_backoff_initial_s,
            "stream.restart_backoff_max_s",
            self.restart_backoff_max_s,
            f"use a number of seconds >= restart_backoff_initial_s={self.restart_backoff_initial_s}",
        )
        _check(self.max_restarts >= 0, "stream.max_restarts", self.max_restarts, "use an integer >= 0")
        _check(self.broker_probe_timeout_s > 0, "stream.broker_probe_timeout_s", self.broker_probe_timeout_s, "use a positive number of seconds")
        self.drift_window_s  # noqa: B018 - parses, raising ConfigError for a bad duration
        _check(
            self.drift_topic_name not in (self.output_topic, self.dead_letter_topic),
            "stream.drift_topic",
            self.drift_topic,
            "use a topic other than output_topic and dead_letter_topic",
        )
        try:
            self.drift_thresholds().validate(prefix="stream.drift_")
        except ValueError as err:
            raise ConfigError(f"invalid config value {err}") from None

    def drift_thresholds(self) -> "DriftThresholds":
        """The alert thresholds of the ``drift_*`` keys."""
        from ntm_spark.core.drift import DriftThresholds

        return DriftThresholds(
            js_distance=float(self.drift_js_distance),
            oov_rate_increase=self.drift_oov_rate_increase,
            empty_rate=self.drift_empty_rate,
            z_score=self.drift_z_score,
            min_documents=int(self.drift_min_documents),
        )


_DURATION_UNITS = {
    "ms": 0.001, "millisecond": 0.001, "milliseconds": 0.001,
    "s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0,
    "min": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hour": 3600.0, "hours": 3600.0,
}  # fmt: skip


def parse_duration(text: Any, key: str) -> float:
    """Seconds of a duration such as ``"1 minute"``, ``"30 seconds"`` or ``"500 milliseconds"``.

    Raises:
        ConfigError: naming ``key``, the value and the form to use.
    """
    parts = str(text).strip().lower().split()
    try:
        number, unit = (parts[0], "seconds") if len(parts) == 1 else parts
        seconds = float(number) * _DURATION_UNITS[unit]
    except (ValueError, KeyError):
        raise ConfigError(
            f"invalid config value {key}={text!r}: write a number and a unit, e.g. '1 minute', '30 seconds' "
            "or '500 milliseconds'"
        ) from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"invalid config value {key}={text!r}: use a positive duration, e.g. '1 minute'")
    return seconds


@dataclass
class BackfillConfig:
    """The resumable corpus backfill, ``jobs/backfill.py`` (``conf/base/backfill.yaml``)."""

    input_path: Optional[str] = None
    #: A preprocessing reader format, or ``bow`` for an already preprocessed bag-of-words Parquet.
    input_format: Literal["20newsgroups", "text", "csv", "jsonl", "parquet", "bow"] = "20newsgroups"
    text_col: str = "text"
    id_col: str = "id"
    output_path: str = ".ntm/backfill"
    model_uri: str = "models:/ntm-20newsgroups@champion"
    tracking_uri: Optional[str] = None
    num_partitions: int = 8
    max_text_bytes: int = 1_000_000
    arrow_batch_size: int = 1000
    #: torch threads in each Python worker that scores (as ``stream.scoring_threads``).
    scoring_threads: Optional[int] = 1

    def validate(self) -> None:
        """Check ranges."""
        _check(1 <= self.num_partitions <= 10_000, "backfill.num_partitions", self.num_partitions, "use an integer between 1 and 10000")
        _check(bool(self.output_path), "backfill.output_path", self.output_path, "set a folder path")
        _check(self.arrow_batch_size >= 1, "backfill.arrow_batch_size", self.arrow_batch_size, "use an integer >= 1")
        _check(self.scoring_threads is None or self.scoring_threads >= 1, "backfill.scoring_threads", self.scoring_threads, "use null or an integer >= 1")


STAGES: dict[str, type] = {
    "spark": SparkConfig,
    "services": ServicesConfig,
    "mlflow": MlflowConfig,
    "preprocess": PreprocessConfig,
    "train": TrainConfig,
    "explore": ExploreConfig,
    "stream": StreamConfig,
    "backfill": BackfillConfig,
}


# --------------------------------------------------------------------------- loading


def _check(ok: bool, key: str, value: Any, fix: str) -> None:
    if not ok:
        raise ConfigError(f"invalid config value {key}={value!r}: {fix}.")


def parse_overrides(overrides: Optional[list[str]]) -> dict:
    """Turn ``["a=1", "b.c=[1, 2]"]`` into a nested mapping, values parsed as YAML."""
    out: dict = {}
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"invalid override {item!r}: write it as key=value, e.g. vocab_size=2000.")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"invalid override {item!r}: the key before '=' is empty.")
        value = yaml.safe_load(raw) if raw.strip() else None
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def _merge(base: dict, over: dict) -> dict:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key != "conf":
            merged[key] = _merge(merged[key], value)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _read_yaml(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"cannot parse config file {path}: {err}. Fix the YAML syntax.") from err
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of key: value, got {type(data).__name__}.")
    return data


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"invalid config value {key}={value!r}: expected {_type_name(tp)}.")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"invalid config value {key}={value!r}: choose one of {list(args)}.")
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"invalid config value {key}={value!r}: expected true or false.")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"invalid config value {key}={value!r}: expected an integer.")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"invalid config value {key}={value!r}: expected a number.")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"invalid config value {key}={value!r}: expected a string.")
    if tp is list or origin is list:
        if isinstance(value, (list, tuple)):
            if args:
                return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
            return list(value)
        raise ConfigError(f"invalid config value {key}={value!r}: expected a list.")
    if tp is dict or origin is dict:
        if isinstance(value, dict):
            return dict(value)
        raise ConfigError(f"invalid config value {key}={value!r}: expected a mapping.")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, dict):
            return from_dict(tp, value, prefix=f"{key}.")
        raise ConfigError(f"invalid config value {key}={value!r}: expected a mapping.")
    return value


def _type_name(tp: Any) -> str:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    names = []
    for a in args:
        if typing.get_origin(a) is Literal:
            names.append(f"one of {list(typing.get_args(a))}")
        else:
            names.append(getattr(a, "__name__", str(a)))
    return " or ".join(names) + (" or null" if type(None) in typing.get_args(tp) else "")


def from_dict(cls: type, data: dict, prefix: str = "") -> Any:
    """Build and validate dataclass ``cls`` from a plain mapping.

    Raises:
        ConfigError: for an unknown key, a wrong type or an out-of-range value.
    """
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"unknown config key {prefix + unknown[0]!r} for {cls.__name__}: "
            f"valid keys are {sorted(names)}. Check the spelling."
        )
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kwargs[f.name] = _coerce(data[f.name], hints[f.name], prefix + f.name)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing required config key {prefix + f.name!r} for {cls.__name__}: set it.")
    obj = cls(**kwargs)
    resolve_state_paths(obj)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate()
    return obj


def resolve_state_paths(cfg: Any) -> Any:
    """Rewrite every string field of ``cfg`` that starts with ``.ntm/`` to the state folder, in place.

    The one place config paths meet ``$NTM_HOME`` (see :func:`ntm_spark.core.paths.resolve_state_path`);
    :func:`from_dict` (so :func:`load_config`) calls it on every stage.

    Returns:
        ``cfg`` itself.
    """
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, str):
            setattr(cfg, f.name, resolve_state_path(value))
    return cfg


def load_config(
    stage: str,
    overrides: Optional[list[str]] = None,
    config_file: Optional[str] = None,
    conf_root: Optional[Path] = None,
) -> Any:
    """Load a stage's config: base YAML, then local YAML, then an optional file, then overrides.

    Args:
        stage: A name in :data:`STAGES`, e.g. ``"preprocess"``.
        overrides: ``key=value`` strings (values parsed as YAML); dotted keys reach nested mappings.
        config_file: An extra YAML file laid over the base and local layers.
        conf_root: The config root; defaults to :func:`ntm_spark.core.paths.conf_dir`.

    Returns:
        The validated dataclass instance for the stage.
    """
    if stage not in STAGES:
        raise ConfigError(f"unknown config stage {stage!r}: choose one of {sorted(STAGES)}.")
    root = Path(conf_root) if conf_root else conf_dir()
    data = _read_yaml(root / "base" / f"{stage}.yaml")
    data = _merge(data, _read_yaml(root / "local" / f"{stage}.yaml"))
    if config_file:
        path = Path(config_file)
        if not path.exists():
            raise ConfigError(f"config file {str(path)!r} does not exist: check the --config path.")
        data = _merge(data, _read_yaml(path))
    data = _merge(data, parse_overrides(overrides))
    return from_dict(STAGES[stage], data, prefix=f"{stage}.")


def to_dict(cfg: Any) -> dict:
    """Return a plain, YAML-serializable mapping of a config dataclass."""
    return dataclasses.asdict(cfg)
