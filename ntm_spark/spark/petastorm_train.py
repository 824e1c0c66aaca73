"""Train the NTM from a Spark DataFrame through Petastorm's Spark converter.

:func:`train_from_dataframe` materializes a DataFrame of bag-of-words rows (``indices``,
``values``) with ``petastorm.spark.make_spark_converter`` under ``train.petastorm.cache_dir_url``,
trains through ``converter.make_torch_dataloader()`` with the same system, loop and model folder
as ``ntm train``, and deletes the cache when training ends (also on an error)::

    df = spark.read.parquet(".ntm/data/20newsgroups/train")
    result = train_from_dataframe(df, load_config("train", overrides=["num_workers=0"]))

It runs only in ``.venv-petastorm`` (``make petastorm-env``: Petastorm 0.13.1 needs pyarrow<=14
and numpy<2, so pyspark 3.5 there). The vocabulary (and the dataset manifest recorded in the
model folder) comes from ``cfg.data_dir``, the preprocessing output the DataFrame was made from.

What is the same as the Arrow loader, and what is refused (with the setting, its value and the fix):
shuffling (row-group order with ``(seed, epoch)``, rows in a buffer of ``shuffle_buffer``) is the
same; ``sub_sample < 1``, ``drop_last``, DataLoader ``num_workers > 0``, ``resident`` and more than
one rank are refused, since ``make_torch_dataloader`` reads and batches in the training process.
Every epoch counts the rows the converter's loader returned against its Parquet footers.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional, Sequence

from lightning_module._compat import pl
from lightning_module.petastorm_backend import (
    PetastormRowCountError,
    check_pool,
    import_petastorm,
    make_pad_transform,
    row_group_rows,
)
from lightning_module.train import TrainResult, local_device_count, train_model
from ntm_spark.core import storage
from ntm_spark.core.config import ConfigError, SparkConfig, TrainConfig
from ntm_spark.core.contract import read_vocabulary
from ntm_spark.core.schema import INDICES_COL, VALUES_COL

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

log = logging.getLogger(__name__)


def check_converter_config(cfg: TrainConfig) -> None:
    """Refuse the settings the converter path cannot honour as the Arrow loader does.

    Raises:
        ConfigError: naming the setting, its value and the fix.
    """

    def refuse(key: str, value: Any, fix: str) -> None:
        raise ConfigError(f"invalid config value train.{key}={value!r} for --from-spark-df (Petastorm's Spark converter): {fix}.")

    if cfg.num_workers:
        refuse("num_workers", cfg.num_workers, "make_torch_dataloader reads in the training process; set num_workers=0 "
               "(petastorm.reader_pool_type=process reads in parallel)")
    if cfg.sub_sample != 1.0:
        refuse("sub_sample", cfg.sub_sample, "sample the DataFrame instead (df.sample(fraction)), or train with reader=petastorm")
    if cfg.drop_last:
        refuse("drop_last", cfg.drop_last, "set drop_last=false, or train from the Parquet with reader=petastorm")
    if cfg.resident:
        refuse("resident", cfg.resident, "set resident=false")
    if cfg.steps_per_execution != 1:
        refuse("steps_per_execution", cfg.steps_per_execution, "set steps_per_execution=1")
    world = local_device_count(cfg) * cfg.num_nodes
    if world != 1:
        refuse("devices", cfg.devices, f"the converter trains one rank (devices x num_nodes = {world}); set devices=1 "
               "num_nodes=1, or write the DataFrame as Parquet and train with reader=petastorm, which shards by rank")
    check_pool(cfg.petastorm.reader_pool_type)


def cache_dir_url(value: str) -> str:
    """Return ``train.petastorm.cache_dir_url`` as the URL Petastorm needs (a plain path becomes ``file://``, created)."""
    if storage.is_remote(value) or value.startswith("file:"):
        return value
    path = Path(value).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path.as_uri()


def converter_spark_config(cfg: SparkConfig) -> SparkConfig:
    """Return ``cfg`` without the extras built for the main environment's Spark.

    ``.venv-petastorm`` has its own pyspark (see ``conf/petastorm-requirements.txt``); the Kafka
    connector jars in ``.ntm/jars``, the local-filesystem jar and the class-data archive were built
    for the main environment's Spark and JVM class path, and the converter path needs none of them.
    """
    return dataclasses.replace(cfg, kafka_connector="none", nio_local_filesystem=False, class_data_sharing=False)


class _ConverterEpochs:
    """Each iteration is one epoch of ``converter.make_torch_dataloader()``, as dense ``{"x", "weight"}`` batches."""

    def __init__(self, dm: "ConverterDataModule") -> None:
        self.dm = dm
        self.epoch = 0

    def __len__(self) -> int:
        return math.ceil(self.dm.num_rows / self.dm.batch_size)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        import numpy as np
        import torch
        from petastorm.pytorch import BatchedDataLoader

        dm, epoch = self.dm, self.epoch
        self.epoch += 1
        seen = 0
        with dm.converter.make_torch_dataloader(
            batch_size=dm.batch_size,
            num_epochs=1,
            workers_count=dm.workers_count,
            shuffling_queue_capacity=dm.shuffle_buffer if dm.shuffle else 0,
            data_loader_fn=BatchedDataLoader,
            schema_fields=[INDICES_COL, VALUES_COL],
            transform_spec=make_pad_transform(dm.max_nnz, with_ids=False),
            reader_pool_type=dm.pool,
            shuffle_row_groups=dm.shuffle,
            seed=int(np.random.default_rng([dm.seed, epoch]).integers(2**31)) if dm.shuffle else None,
        ) as loader:
            for batch in loader:
                idx, val = batch[INDICES_COL].long(), batch[VALUES_COL].float()  # (B, max_nnz): zero-padded
                n = idx.shape[0]
                # Padding holds index 0 with value 0: adding it changes nothing.
                x = torch.zeros(n, dm.vocab_size, dtype=torch.float32).scatter_add_(1, idx, val)  # (B, V)
                seen += n
                yield {"x": x, "weight": torch.ones(n)}
        if seen != dm.num_rows:
            raise PetastormRowCountError(
                f"the Spark converter's loader returned {seen} rows in epoch {epoch}, its Parquet footers hold "
                f"{dm.num_rows} (reader_pool_type={dm.pool!r}): Petastorm dropped or repeated row groups; "
                "rerun with petastorm.reader_pool_type=dummy."
            )


class ConverterDataModule(pl.LightningDataModule):
    """The training batches of a ``SparkDatasetConverter`` (no validation or test split).

    Args:
        converter: ``petastorm.spark.make_spark_converter(df)``'s result.
        vocab: The vocabulary words (``vocab.txt`` of the dataset the DataFrame came from).
        batch_size: Documents per batch.
        max_nnz: The DataFrame's largest document in distinct words (the pad length).
        shuffle: Shuffle row groups with ``(seed, epoch)`` and rows in Petastorm's shuffling queue.
        seed: Base seed.
        shuffle_buffer: The shuffling queue's capacity in rows.
        pool: Petastorm's ``reader_pool_type``.
        workers_count: Workers of Petastorm's pool.
    """

    def __init__(
        self,
        converter: Any,
        vocab: Sequence[str],
        batch_size: int,
        max_nnz: int,
        shuffle: bool = True,
        seed: int = 0,
        shuffle_buffer: int = 4096,
        pool: str = "dummy",
        workers_count: int = 2,
    ) -> None:
        super().__init__()
        self.converter, self.vocab = converter, list(vocab)
        self.batch_size, self.max_nnz = int(batch_size), max(1, int(max_nnz))
        self.shuffle, self.seed, self.shuffle_buffer = bool(shuffle), int(seed), int(shuffle_buffer)
        self.pool, self.workers_count = check_pool(pool), int(workers_count)
        self.train_files = [storage.local_path(u) if u.startswith("file:") else u for u in converter.file_urls]
        self.num_rows = sum(row_group_rows([str(f) for f in self.train_files]))
        self._epochs = _ConverterEpochs(self)

    @property
    def vocab_size(self) -> int:
        """Vocabulary size."""
        return len(self.vocab)

    def has_split(self, split: str) -> bool:
        """Only the training split comes from the DataFrame."""
        return split == "train"

    def train_dataloader(self) -> _ConverterEpochs:
        """Return the epochs of the converter's torch loader (one object: Lightning iterates it once per epoch)."""
        return self._epochs


def select_bow_columns(df: "DataFrame", indices_col: str = INDICES_COL, values_col: str = VALUES_COL) -> "DataFrame":
    """Keep the bag-of-words columns as ``indices: array<int>``, ``values: array<float>``.

    Raises:
        ValueError: when a column is missing, naming the columns the DataFrame has.
    """
    from pyspark.sql import functions as F

    missing = [c for c in (indices_col, values_col) if c not in df.columns]
    if missing:
        raise ValueError(
            f"the DataFrame has no column {missing[0]!r} (it has {df.columns}): give bag-of-words rows as written by "
            "`ntm preprocess` (indices: array<int>, values: array<float>)."
        )
    return df.select(
        F.col(indices_col).cast("array<int>").alias(INDICES_COL), F.col(values_col).cast("array<float>").alias(VALUES_COL)
    )


def train_from_dataframe(
    df: "DataFrame",
    cfg: TrainConfig,
    vocab: Optional[Sequence[str]] = None,
    callbacks: Optional[Sequence[Any]] = None,
    loggers: Optional[Sequence[Any]] = None,
) -> TrainResult:
    """Train an NTM from a DataFrame through ``make_spark_converter(df).make_torch_dataloader()``.

    Args:
        df: Bag-of-words rows (``indices``, ``values``), e.g. ``spark.read.parquet(<data_dir>/train)``.
        cfg: The train config; ``cfg.data_dir`` gives the vocabulary, ``cfg.petastorm`` the cache and pool.
        vocab: The vocabulary words; default: ``cfg.data_dir``'s ``vocab.txt``.
        callbacks: Extra Lightning callbacks.
        loggers: Extra Lightning loggers.

    Returns:
        The :class:`~lightning_module.train.TrainResult` of the model folder written to ``cfg.output_dir``.

    Raises:
        ConfigError: for a setting the converter path refuses (see the module docstring).
    """
    check_converter_config(cfg)
    import_petastorm()
    from petastorm.spark import SparkDatasetConverter, make_spark_converter
    from pyspark.sql import functions as F

    words = list(vocab) if vocab is not None else read_vocabulary(cfg.data_dir).words
    bow = select_bow_columns(df)
    max_nnz = bow.select(F.max(F.size(INDICES_COL))).first()[0] or 1
    url = cache_dir_url(cfg.petastorm.cache_dir_url)
    bow.sparkSession.conf.set(SparkDatasetConverter.PARENT_CACHE_DIR_URL_CONF, url)
    converter = make_spark_converter(bow)
    try:
        log.info("petastorm converter: %d rows cached under %s", len(converter), converter.cache_dir_url)
        dm = ConverterDataModule(
            converter,
            words,
            batch_size=cfg.mini_batch_size,
            max_nnz=max_nnz,
            shuffle=cfg.shuffle,
            seed=cfg.seed,
            shuffle_buffer=cfg.shuffle_buffer,
            pool=cfg.petastorm.reader_pool_type,
            workers_count=cfg.petastorm.workers_count,
        )
        return train_model(cfg, callbacks=callbacks, loggers=loggers, datamodule=dm)
    finally:
        converter.delete()
