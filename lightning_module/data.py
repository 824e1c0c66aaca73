"""Streaming the bag-of-words Parquet into training: the Arrow-native loader and ``BowDataModule``.

The preprocessing job writes ``<data_dir>/{train,validation,test}/*.parquet`` with
the columns of :mod:`ntm_spark.core.schema`, plus ``vocab.txt`` and ``manifest.json``.

How an epoch is laid out (:func:`plan_epoch`):

1. Every row group of the split is a unit of I/O. Only Parquet footers are read up
   front; the corpus is never loaded whole (except with ``resident=True``).
2. For training, the row-group order is shuffled with ``(seed, epoch)``, the same on
   every rank. ``sub_sample`` keeps the first ``round(N * sub_sample)`` rows of that
   order, so each epoch sees a different random subset of row groups.
3. The resulting sequence of N rows is cut into ``world_size`` contiguous segments of
   ``ceil(N / W)`` rows. A rank reads only the row groups overlapping its segment (a
   row group at a boundary is read by two ranks, each keeping its slice).
4. Every rank therefore yields ``ceil(ceil(N / W) / batch_size)`` batches, so DDP never
   waits on a rank that ran out. Ranks whose segment is short get *padding rows*:
   empty documents with ``weight`` 0, which add nothing to the loss or the metrics.
   Every document is seen exactly once per epoch across ranks.
5. With ``drop_last=True`` each rank instead takes ``floor(floor(N / W) / B) * B`` rows,
   no padding, and the tail of the shuffled order (at most ``W * B + W - 1`` rows,
   different each epoch) is left out.
6. Within a rank, DataLoader workers take contiguous ranges of whole batches; each
   worker shuffles rows within a buffer of ``shuffle_buffer`` rows.

Batches are CSR (``indptr``, ``indices``, ``values``, ``weight``) built straight from
the Parquet list offsets, and are densified on the device (:func:`densify_batch`).

With ``steps_per_execution=n`` (Keras's name) the training loader yields groups
``{"steps": [batch, ...]}`` of up to ``n`` consecutive batches of one worker; the system
takes one optimizer step per batch, in the same order, so only Lightning's per-call
overhead changes (:class:`GroupedSteps`).
"""

from __future__ import annotations

import logging
import math
import os
import threading
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from lightning_module._compat import pl
from ntm_spark.core import storage
from ntm_spark.core.contract import (
    ContractError,
    DataNotFoundError,
    read_manifest,
    read_vocabulary,
    split_document_count,
    split_files,
)
from ntm_spark.core.schema import ID_COL, INDICES_COL, VALUES_COL
from ntm_spark.core.topic_metrics import CoherenceReference

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- files
# The dataset folder's files are read through ntm_spark.core.contract (split_files, read_manifest...);
# a data_dir may be a URI (s3://, gs://, abfss://, hdfs://...), opened through ntm_spark.core.storage.


def open_parquet(path: str | os.PathLike) -> pq.ParquetFile:
    """Open one Parquet file, local or on cluster storage (through :func:`ntm_spark.core.storage.open_input_file`)."""
    return pq.ParquetFile(storage.open_input_file(path))


@dataclass(frozen=True)
class RowGroup:
    """One Parquet row group: the unit of I/O and of shuffling."""

    path: str
    index: int
    num_rows: int


def list_row_groups(files: Sequence[str | os.PathLike]) -> list[RowGroup]:
    """Read the footers of ``files`` and list their non-empty row groups in file order."""
    groups = []
    for f in files:
        meta = open_parquet(f).metadata
        for i in range(meta.num_row_groups):
            n = meta.row_group(i).num_rows
            if n > 0:
                groups.append(RowGroup(str(f), i, n))
    return groups


def document_cooccurrence(
    data_dir: str | os.PathLike,
    vocab_size: int,
    split: str = "train",
    max_docs: int = 100_000,
    block_rows: int = 4096,
    files: Optional[Sequence[str | os.PathLike]] = None,
) -> tuple[Tensor, int]:
    """Count, for every pair of words, the documents of a split that contain both.

    Streams the split's row groups (only the ``indices`` column) in file order and stops
    after ``max_docs`` documents, so memory is ``O(V^2)`` whatever the corpus size. ``files``
    (Parquet with an ``indices`` column) replaces the split's files when given.

    Returns:
        ``(counts, n_docs)``: float64 counts of shape ``(V, V)`` (the diagonal holds document
        frequencies) and how many documents were counted.

    Raises:
        DataNotFoundError: when the split has no Parquet files.
    """
    files = list(files) if files is not None else split_files(data_dir, split)
    if not files:
        raise DataNotFoundError(f"no Parquet files under {storage.join(data_dir, split)!r}: run `ntm preprocess` first.")
    co = torch.zeros(vocab_size, vocab_size, dtype=torch.float64)
    n_docs = 0
    for group in list_row_groups(files):
        if n_docs >= max_docs:
            break
        table = open_parquet(group.path).read_row_group(group.index, columns=[INDICES_COL])
        lists = table.column(INDICES_COL).combine_chunks()
        offsets = np.asarray(lists.offsets, dtype=np.int64)
        flat = np.asarray(lists.flatten(), dtype=np.int64)
        rows = min(len(offsets) - 1, max_docs - n_docs)
        for r0 in range(0, rows, block_rows):
            r1 = min(rows, r0 + block_rows)
            lo, hi = offsets[r0] - offsets[0], offsets[r1] - offsets[0]
            row_of = np.repeat(np.arange(r1 - r0), np.diff(offsets[r0 : r1 + 1]))
            present = torch.zeros(r1 - r0, vocab_size, dtype=torch.float32)
            present[torch.from_numpy(row_of), torch.from_numpy(flat[lo:hi])] = 1.0
            co += (present.t() @ present).double()  # exact: at most block_rows per entry
        n_docs += rows
    return co, n_docs


def resolve_reference_splits(data_dir: str | os.PathLike, reference: str) -> list[str]:
    """Return the splits that ``npmi_reference`` names and ``data_dir`` has, in order.

    ``heldout`` is the test split when there is one, else the validation split.

    Raises:
        DataNotFoundError: when none of the named splits has Parquet files.
    """
    present = {s for s in ("train", "validation", "test") if split_files(data_dir, s)}
    splits: list[str] = []
    for part in str(reference).split("+"):
        name = ("test" if "test" in present else "validation") if part == "heldout" else part
        if name in present and name not in splits:
            splits.append(name)
    if not splits:
        raise DataNotFoundError(
            f"npmi_reference={reference!r} names no split with Parquet files under {str(data_dir)!r} (it has "
            f"{sorted(present) or 'none'}): choose splits it has, such as train+heldout."
        )
    return splits


def read_coherence_reference(
    data_dir: str | os.PathLike, reference: str = "train+heldout", vocab_size: Optional[int] = None, max_docs: int = 100_000
) -> CoherenceReference:
    """Read NPMI's reference documents: the ``indices`` of the splits ``reference`` names.

    Streams the row groups in file order, split after split, and stops after ``max_docs``
    documents, so the reference of a huge corpus is its first ``max_docs`` documents.

    Args:
        data_dir: The preprocessing output.
        reference: ``'+'``-joined split names (``train``, ``validation``, ``test``, ``heldout``).
        vocab_size: V; default: the length of ``vocab.txt``.
        max_docs: The most documents read.

    Returns:
        A :class:`~ntm_spark.core.topic_metrics.CoherenceReference` named after the splits read.
    """
    splits = resolve_reference_splits(data_dir, reference)
    v = int(vocab_size) if vocab_size is not None else len(read_vocabulary(data_dir))
    files = [f for split in splits for f in split_files(data_dir, split)]
    return read_coherence_reference_files(files, v, max_docs, "+".join(splits))


def read_coherence_reference_files(
    files: Sequence[str | os.PathLike], vocab_size: int, max_docs: int = 100_000, name: str = "reference"
) -> CoherenceReference:
    """Read NPMI's reference documents from bag-of-words Parquet files, in order, at most ``max_docs``."""
    docs: list[np.ndarray] = []
    for group in list_row_groups(files):
        if len(docs) >= max_docs:
            break
        lists = open_parquet(group.path).read_row_group(group.index, columns=[INDICES_COL]).column(INDICES_COL).combine_chunks()
        offsets = np.asarray(lists.offsets, dtype=np.int64)
        flat = np.asarray(lists.flatten(), dtype=np.int64)
        base = offsets[0]
        for r in range(min(len(offsets) - 1, max_docs - len(docs))):
            docs.append(flat[offsets[r] - base : offsets[r + 1] - base])
    return CoherenceReference(docs, int(vocab_size), name)


# --------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class Segment:
    """Rows ``[start, stop)`` of row group ``group`` (an index into the group list)."""

    group: int
    start: int
    stop: int


@dataclass(frozen=True)
class RankPlan:
    """What one rank reads in one epoch."""

    segments: tuple[Segment, ...]
    num_real: int
    num_rows: int  # real + padding
    num_batches: int
    batch_size: int


def epoch_row_count(total_rows: int, sub_sample: float) -> int:
    """Rows used per epoch: ``round(total * sub_sample)``, at least 1 when there are any."""
    if total_rows == 0:
        return 0
    return max(1, min(total_rows, int(round(total_rows * sub_sample))))


def plan_epoch(
    group_rows: Sequence[int],
    rank: int,
    world_size: int,
    batch_size: int,
    epoch: int = 0,
    seed: int = 0,
    shuffle: bool = False,
    drop_last: bool = False,
    sub_sample: float = 1.0,
) -> RankPlan:
    """Plan one rank's share of one epoch (see the module docstring).

    Args:
        group_rows: Row count of each row group, in file order.
        rank: This rank, ``0 <= rank < world_size``.
        world_size: Number of ranks.
        batch_size: Per-rank batch size.
        epoch: Epoch number (seeds the row-group shuffle).
        seed: Base seed.
        shuffle: Shuffle the row-group order.
        drop_last: Drop the trailing rows that do not fill a batch on every rank.
        sub_sample: Fraction of rows used this epoch.

    Returns:
        The :class:`RankPlan`; every rank gets the same ``num_batches``.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank={rank!r} must be in [0, world_size={world_size!r}).")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}: use an integer >= 1.")
    order = np.arange(len(group_rows))
    if shuffle:
        order = np.random.default_rng([seed, epoch]).permutation(len(group_rows))
    n_total = epoch_row_count(int(sum(group_rows)), sub_sample)
    if drop_last:
        per_rank = (n_total // world_size) // batch_size * batch_size
        start, stop, num_rows = rank * per_rank, (rank + 1) * per_rank, per_rank
    else:
        per_rank = math.ceil(n_total / world_size) if n_total else 0
        start, stop, num_rows = min(rank * per_rank, n_total), min((rank + 1) * per_rank, n_total), per_rank
    segments = []
    pos = 0
    for g in order:
        n = int(group_rows[g])
        lo, hi = max(start, pos), min(stop, pos + n)
        if lo < hi:
            segments.append(Segment(int(g), lo - pos, hi - pos))
        pos += n
        if pos >= stop:
            break
    return RankPlan(tuple(segments), stop - start, num_rows, math.ceil(num_rows / batch_size), batch_size)


# --------------------------------------------------------------------------- CSR helpers


@dataclass
class Csr:
    """A block of documents as CSR numpy arrays (and optionally their ids)."""

    indptr: np.ndarray  # (n+1,) int64
    indices: np.ndarray  # (nnz,) int32
    values: np.ndarray  # (nnz,) float32
    ids: Optional[np.ndarray] = None  # (n,) object

    def __len__(self) -> int:
        return len(self.indptr) - 1

    @staticmethod
    def empty(n: int = 0, with_ids: bool = False) -> "Csr":
        """Return ``n`` empty documents."""
        return Csr(
            np.zeros(n + 1, np.int64),
            np.zeros(0, np.int32),
            np.zeros(0, np.float32),
            np.array([None] * n, dtype=object) if with_ids else None,
        )

    def take(self, rows: np.ndarray) -> "Csr":
        """Gather ``rows`` (any order) into a new block, vectorized."""
        rows = np.asarray(rows, dtype=np.int64)
        lens = self.indptr[rows + 1] - self.indptr[rows]
        indptr = np.zeros(len(rows) + 1, np.int64)
        np.cumsum(lens, out=indptr[1:])
        pos = np.repeat(self.indptr[rows] - indptr[:-1], lens) + np.arange(indptr[-1])
        return Csr(indptr, self.indices[pos], self.values[pos], None if self.ids is None else self.ids[rows])

    @staticmethod
    def concat(blocks: Sequence["Csr"]) -> "Csr":
        """Concatenate blocks row-wise."""
        blocks = [b for b in blocks if len(b)] or list(blocks[:1])
        if not blocks:
            return Csr.empty()
        offs = np.cumsum([0] + [b.indptr[-1] for b in blocks[:-1]])
        indptr = np.concatenate([blocks[0].indptr[:1]] + [b.indptr[1:] + o for b, o in zip(blocks, offs)])
        ids = None if blocks[0].ids is None else np.concatenate([b.ids for b in blocks])
        return Csr(
            indptr.astype(np.int64),
            np.concatenate([b.indices for b in blocks]),
            np.concatenate([b.values for b in blocks]),
            ids,
        )


def table_to_csr(table: pa.Table, with_ids: bool = False) -> Csr:
    """Build CSR arrays straight from the Parquet list offsets of a table (no per-row Python)."""
    idx = table.column(INDICES_COL).combine_chunks()
    val = table.column(VALUES_COL).combine_chunks()
    if isinstance(idx, pa.ChunkedArray):  # pyarrow < 15 returns a ChunkedArray for 0 chunks
        idx = idx.chunk(0) if idx.num_chunks else pa.array([], type=pa.list_(pa.int32()))
        val = val.chunk(0) if val.num_chunks else pa.array([], type=pa.list_(pa.float32()))
    offsets = np.asarray(idx.offsets, dtype=np.int64)
    indptr = offsets - offsets[0]
    indices = np.asarray(idx.flatten(), dtype=np.int32)
    values = np.asarray(val.flatten(), dtype=np.float32)
    voffs = np.asarray(val.offsets, dtype=np.int64)
    if len(indices) != len(values) or not np.array_equal(indptr, voffs - voffs[0]):
        raise ValueError(f"columns {INDICES_COL!r} and {VALUES_COL!r} have different list lengths: the Parquet is corrupt.")
    ids = np.asarray(table.column(ID_COL).to_pylist(), dtype=object) if with_ids else None
    return Csr(indptr, indices, values, ids)


def csr_to_batch(block: Csr, num_real: Optional[int] = None) -> dict[str, Any]:
    """Turn a CSR block into a batch of tensors; rows at or after ``num_real`` get weight 0."""
    n = len(block)
    weight = np.ones(n, np.float32)
    if num_real is not None:
        weight[num_real:] = 0.0
    batch: dict[str, Any] = {
        "indptr": torch.from_numpy(block.indptr),
        "indices": torch.from_numpy(block.indices),
        "values": torch.from_numpy(block.values),
        "weight": torch.from_numpy(weight),
    }
    if block.ids is not None:
        batch["ids"] = [str(i) if i is not None else None for i in block.ids]
    return batch


def densify_batch(batch: dict[str, Any], vocab_size: int) -> Tensor:
    """Return the batch's dense count matrix ``(B, V)`` on the batch's device.

    Accepts a batch with a dense ``"x"`` or the CSR keys that the loaders yield.
    """
    if "x" in batch:
        return batch["x"]
    indptr, indices, values = batch["indptr"], batch["indices"], batch["values"]
    b = indptr.numel() - 1
    counts = indptr[1:] - indptr[:-1]  # (B,)
    # output_size: the nnz is known on the host, so no device sync per batch
    rows = torch.repeat_interleave(torch.arange(b, device=indptr.device), counts, output_size=indices.numel())  # (nnz,)
    x = torch.zeros(b, vocab_size, dtype=values.dtype, device=values.device)  # (B, V)
    x[rows, indices.long()] = values
    return x


def dense_on_device(block: "Csr", vocab_size: int, device: torch.device, chunk_rows: int = 65536) -> Tensor:
    """Build the dense ``(rows, V)`` float32 count matrix of a CSR block on ``device``, in chunks."""
    out = torch.zeros(len(block), vocab_size, dtype=torch.float32, device=device)  # (N, V)
    for r0 in range(0, len(block), chunk_rows):
        r1 = min(r0 + chunk_rows, len(block))
        lo, hi = int(block.indptr[r0]), int(block.indptr[r1])
        part = {
            "indptr": torch.from_numpy(np.asarray(block.indptr[r0 : r1 + 1] - lo)).to(device),
            "indices": torch.from_numpy(np.asarray(block.indices[lo:hi])).to(device),
            "values": torch.from_numpy(np.asarray(block.values[lo:hi])).to(device),
        }
        out[r0:r1] = densify_batch(part, vocab_size)
    return out


# --------------------------------------------------------------------------- dataset


def _dist_rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _pin_batch(batch: dict[str, Any]) -> dict[str, Any]:
    """Page-lock a batch's tensors (where they are built, e.g. the read-ahead thread, not the training loop)."""
    return {k: v.pin_memory() if isinstance(v, Tensor) else v for k, v in batch.items()}


class _ReadAhead:
    """The first batches of an epoch, built by a daemon thread (see ``ParquetBowDataset(readahead=)``)."""

    def __init__(self, key: tuple, rest: Iterator[dict[str, Any]], n: int) -> None:
        self.key, self.rest, self.n = key, rest, n
        self.batches: list[dict[str, Any]] = []
        self.error: Optional[BaseException] = None
        self.whole = False  # the epoch ended within the first n batches: it is all in ``batches``
        self.thread = threading.Thread(target=self._run, name="ntm-readahead", daemon=True)

    @classmethod
    def start(cls, key: tuple, batches: Iterator[dict[str, Any]], n: int) -> "_ReadAhead":
        ahead = cls(key, batches, n)
        ahead.thread.start()
        return ahead

    def _run(self) -> None:
        try:
            for batch in self.rest:
                self.batches.append(batch)
                if len(self.batches) >= self.n:
                    return
            self.whole = True
        except BaseException as exc:  # re-raised by the iteration that wanted these batches
            self.error = exc


class ParquetBowDataset(IterableDataset):
    """An epoch of CSR batches for one rank, streamed from Parquet row groups.

    Yields whole batches (use ``DataLoader(batch_size=None)``). ``len()`` is the number
    of batches this rank yields per epoch, the same on every rank.

    Args:
        files: The split's Parquet files.
        batch_size: Per-rank batch size.
        rank: This rank; ``None`` asks ``torch.distributed`` (or 0).
        world_size: Number of ranks; ``None`` asks ``torch.distributed`` (or 1).
        shuffle: Shuffle row groups (seeded by ``(seed, epoch)``) and rows in a buffer.
        seed: Base seed.
        drop_last: See the module docstring.
        sub_sample: Fraction of rows per epoch.
        shuffle_buffer: Rows a worker shuffles together.
        with_ids: Add each batch's document ids (a list of str) as ``"ids"``.
        readahead: When an epoch's iteration ends, build the first ``readahead`` batches of
            the next epoch in a background thread (0 = off), so the next epoch's first
            row-group reads overlap the end of this one (the epoch's last steps, validation,
            Lightning's epoch hooks). When that covered a whole epoch (a small corpus), the
            epoch after it is built as soon as this one starts, overlapping its training.
            Persistent DataLoader workers each read ahead their own range. The batches are
            exactly those a synchronous iteration yields; a ``set_epoch`` to another epoch
            discards them.
    """

    def __init__(
        self,
        files: Sequence[str | os.PathLike],
        batch_size: int,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        sub_sample: float = 1.0,
        shuffle_buffer: int = 4096,
        with_ids: bool = False,
        readahead: int = 0,
    ) -> None:
        super().__init__()
        if not files:
            raise DataNotFoundError("no Parquet files given: check data_dir and that preprocessing wrote the split.")
        if not 0 < sub_sample <= 1:
            raise ValueError(f"sub_sample={sub_sample!r}: use a fraction in (0, 1].")
        self.groups = list_row_groups(files)
        self.batch_size = int(batch_size)
        if rank is None or world_size is None:
            rank, world_size = _dist_rank_world()
        self.rank, self.world_size = int(rank), int(world_size)
        self.shuffle, self.seed, self.drop_last = shuffle, int(seed), drop_last
        self.sub_sample, self.shuffle_buffer, self.with_ids = float(sub_sample), int(shuffle_buffer), with_ids
        self.epoch = 0
        self._iterations = 0  # per process: persistent workers never see set_epoch
        self._files: dict[str, pq.ParquetFile] = {}
        if int(readahead) < 0:
            raise ValueError(f"readahead={readahead!r}: use an integer >= 0 (0 = off).")
        self.readahead = int(readahead)
        self._ahead: Optional[_ReadAhead] = None
        self.pin_memory = False  # set by BowDataModule for in-process loading on CUDA

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_files"], state["_ahead"] = {}, None  # per-process caches (open files, a thread)
        return state

    @property
    def num_rows(self) -> int:
        """Rows in the split."""
        return sum(g.num_rows for g in self.groups)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch that the next iteration plans (also resets the per-worker counter)."""
        self.epoch = int(epoch)
        self._iterations = 0

    def plan(self, epoch: Optional[int] = None) -> RankPlan:
        """Return this rank's :class:`RankPlan` for ``epoch`` (default: the current one)."""
        return plan_epoch(
            [g.num_rows for g in self.groups],
            self.rank,
            self.world_size,
            self.batch_size,
            epoch=self.epoch if epoch is None else epoch,
            seed=self.seed,
            shuffle=self.shuffle,
            drop_last=self.drop_last,
            sub_sample=self.sub_sample,
        )

    def __len__(self) -> int:
        return self.plan(0).num_batches

    def _read(self, seg: Segment) -> Csr:
        g = self.groups[seg.group]
        pf = self._files.get(g.path)
        if pf is None:
            pf = self._files[g.path] = open_parquet(g.path)
        cols = [INDICES_COL, VALUES_COL] + ([ID_COL] if self.with_ids else [])
        table = pf.read_row_group(g.index, columns=cols)
        if seg.start or seg.stop < g.num_rows:
            table = table.slice(seg.start, seg.stop - seg.start)
        return table_to_csr(table, self.with_ids)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        epoch = self.epoch + self._iterations
        self._iterations += 1
        info = get_worker_info()
        worker = (info.id, info.num_workers) if info else (0, 1)
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead.thread.join()  # never two threads on the open files
        if ahead is not None and ahead.key == (epoch, worker):
            if ahead.error is not None:
                raise ahead.error
            if ahead.whole and self.readahead:
                # This epoch is already built: build the next one while this one trains.
                self._ahead = _ReadAhead.start((epoch + 1, worker), self._epoch_batches(epoch + 1, worker), self.readahead)
            yield from ahead.batches
            batches = ahead.rest
        else:
            batches = self._epoch_batches(epoch, worker)
        yield from batches
        if self.readahead and self._ahead is None:
            self._ahead = _ReadAhead.start((epoch + 1, worker), self._epoch_batches(epoch + 1, worker), self.readahead)

    def _epoch_batches(self, epoch: int, worker: tuple[int, int]) -> Iterator[dict[str, Any]]:
        """Return this rank's batches of ``epoch`` for DataLoader worker ``worker = (id, num_workers)``."""
        plan = self.plan(epoch)
        w, num_workers = worker
        # This worker's contiguous range of whole batches, then of row positions.
        b0 = plan.num_batches * w // num_workers
        b1 = plan.num_batches * (w + 1) // num_workers
        p0, p1 = b0 * plan.batch_size, min(b1 * plan.batch_size, plan.num_rows)
        real0, real1 = min(p0, plan.num_real), min(p1, plan.num_real)
        rng = np.random.default_rng([self.seed, epoch, self.rank, w])
        batches = self._iter_range(plan, real0, real1, p1 - p0, rng)
        return map(_pin_batch, batches) if self.pin_memory else batches

    def _iter_range(self, plan: RankPlan, real0: int, real1: int, n_rows: int, rng) -> Iterator[dict[str, Any]]:
        bs = plan.batch_size
        buffer: list[Csr] = []
        buffered = 0
        emitted = 0
        pos = 0
        for seg in plan.segments:
            n = seg.stop - seg.start
            lo, hi = max(real0, pos), min(real1, pos + n)
            pos += n
            if lo >= hi:
                if pos >= real1:
                    break
                continue
            offset = seg.start + lo - (pos - n)
            block = self._read(Segment(seg.group, offset, offset + hi - lo))
            buffer.append(block)
            buffered += len(block)
            done = pos >= real1
            if buffered >= max(self.shuffle_buffer, bs):
                merged = Csr.concat(buffer)
                if self.shuffle:
                    merged = merged.take(rng.permutation(len(merged)))
                full = len(merged) // bs * bs
                for i in range(0, full, bs):
                    yield csr_to_batch(merged.take(np.arange(i, i + bs)))
                    emitted += bs
                rest = merged.take(np.arange(full, len(merged)))
                buffer, buffered = [rest], len(rest)
            if done:
                break
        merged = Csr.concat(buffer) if buffer else Csr.empty(0, self.with_ids)
        if self.shuffle and len(merged):
            merged = merged.take(rng.permutation(len(merged)))
        n_real_left = len(merged)
        n_pad = n_rows - emitted - n_real_left
        if n_pad > 0:
            merged = Csr.concat([merged, Csr.empty(n_pad, self.with_ids)]) if n_real_left else Csr.empty(n_pad, self.with_ids)
        for i in range(0, len(merged), bs):
            rows = np.arange(i, min(i + bs, len(merged)))
            yield csr_to_batch(merged.take(rows), num_real=max(0, min(bs, n_real_left - i)))


class ResidentBowDataset(IterableDataset):
    """Index batches into a rank's shard held whole in memory (``resident=True``).

    The shard (the rank's segment of the unshuffled split) is read once; each epoch
    shuffles row indices within it. Batches are ``{"rows", "weight"}``;
    :meth:`BowDataModule.on_after_batch_transfer` gathers the rows on the device.
    """

    def __init__(
        self, num_rows: int, num_real: int, batch_size: int, shuffle: bool, seed: int, rank: int, lengths: Optional[np.ndarray] = None
    ) -> None:
        super().__init__()
        self.num_rows, self.num_real, self.batch_size = num_rows, num_real, batch_size
        self.lengths = lengths  # (num_real,) non-zeros per row: batches carry their nnz, so gathering needs no sync
        self.shuffle, self.seed, self.rank, self.epoch = shuffle, seed, rank, 0

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch that seeds the next shuffle."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return math.ceil(self.num_rows / self.batch_size)

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        order = np.arange(self.num_real)
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch, self.rank]).permutation(self.num_real)
        self.epoch += 1
        rows = torch.zeros(self.num_rows, dtype=torch.long)
        rows[: self.num_real] = torch.from_numpy(order)
        weight = torch.zeros(self.num_rows)
        weight[: self.num_real] = 1.0
        lens = None if self.lengths is None else torch.from_numpy(np.asarray(self.lengths, dtype=np.int64))
        for i in range(0, self.num_rows, self.batch_size):
            batch = {"rows": rows[i : i + self.batch_size], "weight": weight[i : i + self.batch_size]}
            if lens is not None and len(lens):
                batch["nnz"] = int(lens[batch["rows"]].sum())
            yield batch


class GroupedSteps(IterableDataset):
    """Group consecutive batches of ``inner`` into ``{"steps": [batch, ...]}`` of up to ``n``.

    Grouping happens inside each DataLoader worker, which holds a contiguous range of
    whole batches (:meth:`ParquetBowDataset.__iter__`), so ``len()`` is exact given
    ``num_workers``.
    """

    def __init__(self, inner: IterableDataset, n: int, num_workers: int = 0) -> None:
        super().__init__()
        if n < 1:
            raise ValueError(f"steps_per_execution={n!r}: use an integer >= 1.")
        self.inner, self.n, self.num_workers = inner, int(n), max(1, int(num_workers))

    @property
    def num_steps(self) -> int:
        """Batches (optimizer steps) per epoch."""
        return len(self.inner)

    def __len__(self) -> int:
        nb, w = len(self.inner), self.num_workers
        return sum(math.ceil((nb * (i + 1) // w - nb * i // w) / self.n) for i in range(w))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        group: list[dict[str, Any]] = []
        for batch in self.inner:
            group.append(batch)
            if len(group) == self.n:
                yield {"steps": group}
                group = []
        if group:
            yield {"steps": group}


class PetastormBowDataset(IterableDataset):
    """``reader: petastorm``: one rank's batches from Petastorm's ``make_batch_reader``.

    Wraps :func:`lightning_module.petastorm_backend.iter_petastorm_batches` (its module docstring
    says what sharding, shuffling, ``sub_sample`` and ``drop_last`` mean there). Each DataLoader
    worker reads its own shard, ``rank * num_workers + worker`` of ``world_size * num_workers``, so
    ``len()`` is ``max(1, num_workers)`` times a shard's batches, the same on every rank. Every
    epoch counts each shard's rows against the Parquet footers, and the footers against the
    manifest, and fails loudly when they differ.

    Needs an environment where petastorm imports (pyarrow<=14, numpy<2) besides torch.

    Args:
        files: The split's Parquet files.
        batch_size: Per-rank batch size.
        rank: This rank.
        world_size: Number of ranks.
        num_workers: The DataLoader workers that will iterate this dataset (0: in-process).
        shuffle: Shuffle row-group order and rows within ``shuffle_buffer`` every epoch.
        seed: Base seed.
        drop_last: Only full batches, the same count on every shard.
        sub_sample: Fraction of each shard's rows per epoch.
        shuffle_buffer: Rows shuffled together.
        pool: Petastorm's ``reader_pool_type`` (``dummy`` or ``process``).
        workers_count: Workers of Petastorm's process pool.
        with_ids: Add each batch's document ids as ``"ids"``.
        expected_docs: Documents the manifest says the split holds (checked against the footers).

    Raises:
        ContractError: when the footers hold a different number of documents than the manifest.
    """

    def __init__(
        self,
        files: Sequence[str | os.PathLike],
        batch_size: int,
        rank: int,
        world_size: int,
        num_workers: int = 0,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        sub_sample: float = 1.0,
        shuffle_buffer: int = 4096,
        pool: str = "dummy",
        workers_count: int = 2,
        with_ids: bool = False,
        expected_docs: Optional[int] = None,
    ) -> None:
        super().__init__()
        from lightning_module.petastorm_backend import (
            check_pool,
            import_petastorm,
            plan_shards,
            row_group_rows,
        )

        import_petastorm()  # fail now, with the install hint, rather than inside a worker
        if not files:
            raise DataNotFoundError("no Parquet files given: check data_dir and that preprocessing wrote the split.")
        self.files = [str(f) for f in files]
        self.pool = check_pool(pool)
        self.batch_size, self.rank, self.world_size = int(batch_size), int(rank), int(world_size)
        self.num_workers = max(1, int(num_workers))
        self.shuffle, self.seed, self.shuffle_buffer = bool(shuffle), int(seed), int(shuffle_buffer)
        self.workers_count, self.with_ids = int(workers_count), with_ids
        groups = row_group_rows(self.files)
        if expected_docs is not None and sum(groups) != expected_docs:
            raise ContractError(
                f"the Parquet footers under {os.path.dirname(self.files[0])!r} hold {sum(groups)} documents, the manifest "
                f"says {expected_docs}: files are missing or extra; rerun `ntm preprocess --overwrite`."
            )
        self.plan = plan_shards(groups, self.world_size * self.num_workers, self.batch_size, sub_sample, drop_last)
        if self.plan.padding_rows > max(self.batch_size, sum(self.plan.take) // 10):
            log.warning(
                "reader='petastorm' shards whole row groups: %d shards of %s rows get %d empty padding rows per epoch "
                "(zero weight). Write more, smaller row groups (preprocess.row_group_size), use fewer num_workers, or reader='arrow'.",
                len(self.plan.take), f"{min(self.plan.shard_rows)}-{max(self.plan.shard_rows)}", self.plan.padding_rows,
            )
        self.epoch = 0
        self._iterations = 0  # per process: persistent workers never see set_epoch

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch that seeds the next shuffle (also resets the per-worker counter)."""
        self.epoch = int(epoch)
        self._iterations = 0

    @property
    def num_rows(self) -> int:
        """Rows in the split."""
        return sum(self.plan.shard_rows)

    def __len__(self) -> int:
        return self.num_workers * self.plan.num_batches

    def __iter__(self) -> Iterator[dict[str, Any]]:
        from lightning_module.petastorm_backend import iter_petastorm_batches

        epoch = self.epoch + self._iterations
        self._iterations += 1
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        if workers != self.num_workers:
            raise ValueError(
                f"PetastormBowDataset(num_workers={self.num_workers if self.num_workers > 1 else 0!r}) is iterated by "
                f"{workers} DataLoader workers: build it with the DataLoader's num_workers."
            )
        for b in iter_petastorm_batches(
            self.files,
            self.batch_size,
            self.rank * self.num_workers + worker,
            self.world_size * self.num_workers,
            shuffle=self.shuffle,
            seed=self.seed,
            epoch=epoch,
            shuffle_buffer=self.shuffle_buffer,
            pool=self.pool,
            workers_count=self.workers_count,
            with_ids=self.with_ids,
            plan=self.plan,
        ):
            out: dict[str, Any] = {k: torch.from_numpy(np.ascontiguousarray(b[k])) for k in ("indptr", "indices", "values", "weight")}
            if self.with_ids:
                out["ids"] = b["ids"]
            yield out


# --------------------------------------------------------------------------- data module


class BowDataModule(pl.LightningDataModule):
    """Train/validation/test loaders over the preprocessing output.

    Args:
        data_dir: The preprocessing output folder.
        batch_size: Per-rank batch size (``train_model`` divides SageMaker's per-instance
            ``mini_batch_size`` by the instance's ranks before passing it here).
        reader: ``arrow`` (default) or ``petastorm`` (needs ``.venv-petastorm``; see
            :mod:`lightning_module.petastorm_backend` for what the settings below mean there).
        num_workers: DataLoader workers per rank (persistent, pinned memory on GPU).
        seed: Base seed of the per-epoch shuffles.
        drop_last: Drop trailing rows of the training split (see :mod:`lightning_module.data`).
        sub_sample: Fraction of the training split used per epoch.
        shuffle_buffer: Rows shuffled together within a worker.
        resident: Read each rank's shard once and iterate on the device (corpus must fit).
        eval_batch_size: Batch size for validation/test; default ``batch_size``.
        steps_per_execution: Training batches per Lightning step (see the module docstring).
        resident_dense: With ``resident``, hold each shard as a dense ``(rows, V)`` float32
            matrix on the device and gather rows from it (no CSR work per batch). ``None``
            (default): on CUDA when the matrix takes at most a quarter of the free GPU memory.
        readahead: Training batches of the next epoch each worker builds in the background
            when an epoch ends (see :class:`ParquetBowDataset`). ``None`` (default): the larger of
            4, ``steps_per_execution`` and one shuffle buffer's worth (a small epoch is then built
            whole before it starts); 0 turns it off.
        shuffle: Shuffle the training split every epoch (``False``: file order, e.g. to compare readers).
        petastorm_pool: ``reader: petastorm``: Petastorm's ``reader_pool_type`` (``dummy`` or ``process``).
        petastorm_workers: ``reader: petastorm``: workers of Petastorm's process pool.
    """

    def __init__(
        self,
        data_dir: str,
        batch_size: int = 256,
        reader: str = "arrow",
        num_workers: int = 0,
        seed: int = 0,
        drop_last: bool = False,
        sub_sample: float = 1.0,
        shuffle_buffer: int = 4096,
        resident: bool = False,
        eval_batch_size: Optional[int] = None,
        steps_per_execution: int = 1,
        resident_dense: Optional[bool] = None,
        readahead: Optional[int] = None,
        shuffle: bool = True,
        petastorm_pool: str = "dummy",
        petastorm_workers: int = 2,
    ) -> None:
        super().__init__()
        if int(steps_per_execution) < 1:
            raise ValueError(f"steps_per_execution={steps_per_execution!r}: use an integer >= 1 (1 = one batch per step).")
        self.steps_per_execution = int(steps_per_execution)
        self.train_steps_per_epoch: Optional[int] = None  # optimizer steps per epoch, set with the train loader
        if reader not in ("arrow", "petastorm"):
            raise ValueError(f"reader={reader!r}: choose 'arrow' or 'petastorm'.")
        if reader == "petastorm" and resident:
            raise ValueError(
                "resident=True with reader='petastorm': the resident shard is read once by the Arrow loader, so Petastorm "
                "would never read; set resident=false to train through Petastorm, or reader='arrow'."
            )
        self.shuffle = bool(shuffle)
        self.petastorm_pool, self.petastorm_workers = petastorm_pool, int(petastorm_workers)
        self.data_dir = str(data_dir)
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.reader, self.num_workers, self.seed = reader, int(num_workers), int(seed)
        self.drop_last, self.sub_sample, self.shuffle_buffer = drop_last, float(sub_sample), int(shuffle_buffer)
        self.resident = resident
        self.resident_dense = resident_dense
        if readahead is not None and int(readahead) < 0:
            raise ValueError(f"readahead={readahead!r}: use an integer >= 0 (0 = off) or None (automatic).")
        self.readahead = readahead
        self.vocab = read_vocabulary(self.data_dir).words
        self.manifest = read_manifest(self.data_dir, required=False)
        if not split_files(self.data_dir, "train"):
            raise DataNotFoundError(
                f"no training Parquet under {storage.join(self.data_dir, 'train')!r}: run `ntm preprocess` "
                "or set data_dir to its output_path."
            )
        self._resident: dict[str, tuple[Csr, dict]] = {}
        self._device_cache: dict[tuple[str, str], tuple[Tensor, ...]] = {}

    @property
    def vocab_size(self) -> int:
        """Vocabulary size (SageMaker's ``feature_dim``)."""
        return len(self.vocab)

    def has_split(self, split: str) -> bool:
        """Whether the split has any Parquet file."""
        return bool(split_files(self.data_dir, split))

    def _rank_world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            return trainer.global_rank, trainer.world_size
        return _dist_rank_world()

    def _current_epoch(self) -> int:
        trainer = getattr(self, "trainer", None)
        return trainer.current_epoch if trainer is not None else 0

    def dataset(self, split: str, with_ids: bool = False) -> IterableDataset:
        """Build the dataset of one split for this rank."""
        rank, world = self._rank_world()
        train = split == "train"
        bs = self.batch_size if train else self.eval_batch_size
        files = split_files(self.data_dir, split)
        if self.reader == "petastorm":
            ds = PetastormBowDataset(
                files,
                bs,
                rank,
                world,
                num_workers=self.num_workers,
                shuffle=self.shuffle and train,
                seed=self.seed,
                drop_last=self.drop_last and train,
                sub_sample=self.sub_sample if train else 1.0,
                shuffle_buffer=self.shuffle_buffer,
                pool=self.petastorm_pool,
                workers_count=self.petastorm_workers,
                with_ids=with_ids,
                expected_docs=split_document_count(self.manifest, split),
            )
            ds.set_epoch(self._current_epoch() if train else 0)
            return ds
        if self.resident:
            return self._resident_dataset(split, files, bs, rank, world, train)
        ds = ParquetBowDataset(
            files,
            bs,
            rank,
            world,
            shuffle=self.shuffle and train,
            seed=self.seed,
            drop_last=self.drop_last and train,
            sub_sample=self.sub_sample if train else 1.0,
            shuffle_buffer=self.shuffle_buffer,
            with_ids=with_ids,
            readahead=self._readahead(bs) if train else 0,
        )
        ds.set_epoch(self._current_epoch() if train else 0)
        return ds

    def _readahead(self, batch_size: int) -> int:
        if self.readahead is not None:
            return int(self.readahead)
        return max(4, self.steps_per_execution, math.ceil(self.shuffle_buffer / batch_size))

    def _resident_dataset(self, split, files, bs, rank, world, train) -> ResidentBowDataset:
        if split not in self._resident:
            reader = ParquetBowDataset(files, bs, rank, world, shuffle=False)
            plan = reader.plan(0)
            block = Csr.concat([reader._read(s) for s in plan.segments]) if plan.segments else Csr.empty()
            self._resident[split] = (block, {"num_rows": plan.num_rows, "num_real": plan.num_real})
        block, info = self._resident[split]
        ds = ResidentBowDataset(info["num_rows"], info["num_real"], bs, self.shuffle and train, self.seed, rank, lengths=np.diff(block.indptr))
        ds.set_epoch(self._current_epoch() if train else 0)
        return ds

    def _loader(self, split: str) -> DataLoader:
        ds = self.dataset(split)
        workers = 0 if self.resident else self.num_workers
        if split == "train":
            self.train_steps_per_epoch = len(ds)
            if self.steps_per_execution > 1:
                ds = GroupedSteps(ds, self.steps_per_execution, workers)
        trainer = getattr(self, "trainer", None)
        pin = bool(trainer is not None and trainer.accelerator.__class__.__name__ == "CUDAAccelerator")
        inner = ds.inner if isinstance(ds, GroupedSteps) else ds
        if pin and workers == 0 and isinstance(inner, ParquetBowDataset):
            inner.pin_memory = True  # pinned where the batch is built; the DataLoader's pin is then a no-op
        return DataLoader(
            ds,
            batch_size=None,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=pin,
            prefetch_factor=4 if workers > 0 else None,
        )

    def train_dataloader(self) -> DataLoader:
        """Return shuffled, sharded training batches."""
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        """Return validation batches (every document once across ranks), or ``[]`` without that split."""
        return self._loader("validation") if self.has_split("validation") else []

    def test_dataloader(self) -> DataLoader:
        """Return test batches, or ``[]`` without that split."""
        return self._loader("test") if self.has_split("test") else []

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Resident mode: gather the batch's rows (each step's, when grouped) from the shard on the device."""
        if not self.resident:
            return batch
        trainer = self.trainer
        split = {"train": "train", "validate": "validation", "sanity_check": "validation", "test": "test"}.get(
            trainer.state.stage.value if trainer.state.stage else "train", "train"
        )
        if "steps" in batch:
            return {"steps": [self.gather_resident(split, b) if "rows" in b else b for b in batch["steps"]]}
        return self.gather_resident(split, batch) if "rows" in batch else batch

    def _use_dense(self, num_rows: int, device: torch.device) -> bool:
        if self.resident_dense is not None:
            return bool(self.resident_dense)
        if device.type != "cuda":
            return False
        free, _ = torch.cuda.mem_get_info(device)
        return num_rows * self.vocab_size * 4 <= free // 4

    def gather_resident(self, split: str, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Build a CSR batch on ``batch``'s device from a resident shard."""
        rows = batch["rows"]
        key = (split, str(rows.device))
        if key not in self._device_cache:
            block, _ = self._resident[split]
            if self._use_dense(len(block), rows.device):
                self._device_cache[key] = (dense_on_device(block, self.vocab_size, rows.device),)
            else:
                self._device_cache[key] = (
                    torch.from_numpy(block.indptr).to(rows.device),
                    torch.from_numpy(block.indices).to(rows.device),
                    torch.from_numpy(block.values).to(rows.device),
                )
        cached = self._device_cache[key]
        if len(cached) == 1:  # dense shard: one gather
            return {"x": cached[0][rows], "weight": batch["weight"]}
        indptr, indices, values = cached
        lens = indptr[rows + 1] - indptr[rows]  # (B,)
        new_indptr = torch.zeros(rows.numel() + 1, dtype=torch.long, device=rows.device)
        torch.cumsum(lens, 0, out=new_indptr[1:])
        total = int(batch["nnz"]) if "nnz" in batch else int(new_indptr[-1])  # a Python int: no device sync
        pos = torch.repeat_interleave(indptr[rows] - new_indptr[:-1], lens, output_size=total)
        pos = pos + torch.arange(total, device=rows.device)
        return {"indptr": new_indptr, "indices": indices[pos], "values": values[pos], "weight": batch["weight"]}
