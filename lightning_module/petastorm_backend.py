"""The Petastorm reader backend (``reader: petastorm``): numpy CSR batches via ``petastorm.make_batch_reader``.

Petastorm 0.13.1 imports only with pyarrow<=14 and numpy<2, so this module runs in
its own environment (``make petastorm-env`` builds ``.venv-petastorm``, which also holds
torch, Lightning and pyspark 3.5). The module itself imports numpy, pandas, pyarrow and
petastorm only; :class:`lightning_module.data.PetastormBowDataset` wraps it for training.

What the settings mean here, against the Arrow loader (:mod:`lightning_module.data`):

* **Sharding** is Petastorm's own, by whole row groups: row group ``i`` (file order, empty
  ones included) goes to shard ``i % shard_count``, the same shards every epoch. A rank's
  DataLoader workers split it further: shard ``rank * num_workers + worker`` of
  ``world_size * num_workers``. Every shard yields the same number of rows (the largest
  shard's), short ones padded with empty ``weight`` 0 rows, so DDP never waits on a rank that
  ran out, and every document is seen exactly once per epoch across ranks and workers.
* **Shuffling** shuffles the shard's row-group order with ``(seed, epoch)`` (Petastorm's
  ``shuffle_row_groups`` and ``seed``) and the rows within a buffer of ``shuffle_buffer``.
* **sub_sample** keeps the first ``round(rows * sub_sample)`` rows each shard reads (so a
  different subset each epoch when shuffled); **drop_last** yields on every shard only the
  full batches the smallest shard fills, and no padding.
* **Silent drops**: Petastorm's thread pool returned 0 rows for whole shards with no error in
  a probe (2-7 % of documents), so the thread pool is refused, and every epoch counts the
  rows each shard returned against the Parquet footers: a shard that returned fewer (or more)
  raises :class:`PetastormRowCountError`.

Petastorm rejects variable-length array columns (it stacks every array column into a matrix), so
a ``TransformSpec`` re-encodes them: :func:`make_bytes_transform` turns each document's
``indices``/``values`` into two byte strings (scalar binary columns, no padding), which
:func:`iter_petastorm_batches` reads back into CSR with one ``frombuffer`` per batch. That was
2.4x faster to read than padding every document to the longest one (:func:`make_pad_transform`,
which the Spark converter's torch loader needs, since it turns every column into a tensor).

Command line (used by the equivalence test)::

    .venv-petastorm/bin/python -m lightning_module.petastorm_backend SPLIT_DIR --shards 3 --out docs.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from ntm_spark.core import storage
from ntm_spark.core.schema import ID_COL, INDICES_COL, VALUES_COL

POOLS = ("process", "dummy")
NNZ_COL = "nnz"


class PetastormNotInstalledError(ImportError):
    """Petastorm is not importable in this environment."""


class PetastormRowCountError(RuntimeError):
    """A Petastorm shard returned a different number of rows than its row groups hold."""


def import_petastorm():
    """Import petastorm, or fail with the command that builds its environment.

    Returns:
        ``(petastorm, TransformSpec)``.

    Raises:
        PetastormNotInstalledError: when petastorm does not import here.
    """
    try:
        import petastorm
        from petastorm.transform import TransformSpec
    except ImportError as err:
        raise PetastormNotInstalledError(
            f"reader='petastorm' needs petastorm 0.13.1 with pyarrow<=14 and numpy<2 ({err}). "
            "Build its environment with `make petastorm-env` and run there (.venv-petastorm/bin/ntm), or use reader='arrow'."
        ) from err
    return petastorm, TransformSpec


def check_pool(pool: str) -> str:
    """Return ``pool`` when Petastorm may use it; refuse the thread pool (it drops row groups silently).

    Raises:
        ValueError: naming the value and the pools to use.
    """
    if pool not in POOLS:
        raise ValueError(
            f"petastorm.reader_pool_type={pool!r}: use one of {list(POOLS)}; the thread pool sometimes returns 0 rows "
            "for a whole shard with no error."
        )
    return pool


def make_pad_transform(max_nnz: int, with_ids: bool = True):
    """Return a ``TransformSpec`` padding ``indices``/``values`` to ``(max_nnz,)`` and adding ``nnz``.

    Args:
        max_nnz: Pad length: at least the largest number of distinct words in a document.
        with_ids: Keep the document id column.
    """
    _, TransformSpec = import_petastorm()

    def pad(df, max_nnz=max_nnz, id_col=ID_COL, nnz_col=NNZ_COL, idx_col=INDICES_COL, val_col=VALUES_COL, with_ids=with_ids):
        # The process pool ships this function with dill: import inside, bind names as defaults.
        import numpy as np
        import pandas as pd

        lists_i, lists_v = df[idx_col].values, df[val_col].values
        n = len(df)
        nnz = np.fromiter((len(a) for a in lists_i), dtype=np.int32, count=n)  # (n,)
        if n and int(nnz.max()) > max_nnz:
            raise ValueError(f"a document has {int(nnz.max())} distinct words > max_nnz={max_nnz!r}: raise max_nnz.")
        idx = np.zeros((n, max_nnz), np.int32)  # (n, max_nnz)
        val = np.zeros((n, max_nnz), np.float32)  # (n, max_nnz)
        total = int(nnz.sum())
        if total:
            rows = np.repeat(np.arange(n), nnz)  # (total,)
            cols = np.arange(total) - np.repeat(np.cumsum(nnz) - nnz, nnz)  # (total,)
            idx[rows, cols] = np.concatenate(lists_i)
            val[rows, cols] = np.concatenate(lists_v)
        out = {nnz_col: nnz, idx_col: list(idx), val_col: list(val)}
        if with_ids:
            out = {id_col: df[id_col].values, **out}
        return pd.DataFrame(out)

    return TransformSpec(
        pad,
        edit_fields=[
            (NNZ_COL, np.int32, (), False),
            (INDICES_COL, np.int32, (max_nnz,), False),
            (VALUES_COL, np.float32, (max_nnz,), False),
        ],
        selected_fields=([ID_COL] if with_ids else []) + [NNZ_COL, INDICES_COL, VALUES_COL],
    )


def make_bytes_transform(with_ids: bool = True):
    """Return a ``TransformSpec`` turning ``indices``/``values`` into per-document byte strings (int32, float32).

    Args:
        with_ids: Keep the document id column.
    """
    _, TransformSpec = import_petastorm()

    def encode(df, idx_col=INDICES_COL, val_col=VALUES_COL, id_col=ID_COL, with_ids=with_ids):
        # The process pool ships this function with dill: import inside, bind names as defaults.
        import numpy as np
        import pandas as pd

        lists_i, lists_v = df[idx_col].values, df[val_col].values
        n = len(df)
        nnz = np.fromiter((len(a) for a in lists_i), dtype=np.int64, count=n)  # (n,)
        ends = np.cumsum(nnz)
        starts = ends - nnz
        flat_i = np.concatenate(lists_i).astype(np.int32) if nnz.sum() else np.zeros(0, np.int32)  # (total,)
        flat_v = np.concatenate(lists_v).astype(np.float32) if nnz.sum() else np.zeros(0, np.float32)  # (total,)
        if len(flat_i) != len(flat_v):
            raise ValueError(f"columns {idx_col!r} and {val_col!r} have different list lengths: the Parquet is corrupt.")
        bi, bv = flat_i.tobytes(), flat_v.tobytes()
        bounds = list(zip((4 * starts).tolist(), (4 * ends).tolist()))
        out = {idx_col: [bi[a:b] for a, b in bounds], val_col: [bv[a:b] for a, b in bounds]}
        if with_ids:
            out = {id_col: df[id_col].values, **out}
        return pd.DataFrame(out)

    return TransformSpec(
        encode,
        edit_fields=[(INDICES_COL, np.bytes_, (), False), (VALUES_COL, np.bytes_, (), False)],
        selected_fields=([ID_COL] if with_ids else []) + [INDICES_COL, VALUES_COL],
    )


# --------------------------------------------------------------------------- footers and plans


def split_file_list(split_dir_or_files: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """Return the Parquet files of a split folder (sorted, as Petastorm lists them), or the given list."""
    if isinstance(split_dir_or_files, (list, tuple)):
        return [str(f) for f in split_dir_or_files]
    folder = str(split_dir_or_files)
    if storage.is_remote(folder):
        return [str(f) for f in storage.list_files(folder, ".parquet")]
    return [str(p) for p in sorted(Path(folder).rglob("*.parquet")) if not p.name.startswith((".", "_"))]


def _file_url(path: str) -> str:
    return path if storage.is_remote(path) else Path(path).resolve().as_uri()


def row_group_rows(files: Sequence[str]) -> list[int]:
    """Rows of every row group of ``files`` (empty ones included: Petastorm counts them when sharding)."""
    import pyarrow.parquet as pq

    rows = []
    for f in files:
        meta = pq.ParquetFile(storage.open_input_file(f)).metadata
        rows.extend(meta.row_group(g).num_rows for g in range(meta.num_row_groups))
    return rows


def shard_row_counts(split_dir: str | os.PathLike | Sequence[str], shard_count: int) -> list[int]:
    """Rows each Petastorm shard holds: row group ``i`` (in file order) goes to shard ``i % shard_count``."""
    counts = [0] * shard_count
    for i, n in enumerate(row_group_rows(split_file_list(split_dir))):
        counts[i % shard_count] += n
    return counts


def epoch_rows(total_rows: int, sub_sample: float) -> int:
    """Rows a shard uses per epoch: ``round(total * sub_sample)``, at least 1 when there are any.

    The rule of :func:`lightning_module.data.epoch_row_count`, applied per shard.
    """
    if total_rows == 0:
        return 0
    return max(1, min(total_rows, int(round(total_rows * sub_sample))))


@dataclass(frozen=True)
class ShardPlan:
    """What every Petastorm shard yields in one epoch.

    Attributes:
        shard_rows: Rows each shard's row groups hold (from the footers).
        take: Real rows each shard yields (``sub_sample`` and ``drop_last`` applied).
        num_rows: Rows (real + padding) every shard yields.
        batch_size: Rows per batch.
    """

    shard_rows: tuple[int, ...]
    take: tuple[int, ...]
    num_rows: int
    batch_size: int

    @property
    def num_batches(self) -> int:
        """Batches every shard yields."""
        return math.ceil(self.num_rows / self.batch_size)

    @property
    def padding_rows(self) -> int:
        """Empty rows added over all shards per epoch."""
        return self.num_rows * len(self.take) - sum(self.take)


def plan_shards(
    group_rows: Sequence[int], shard_count: int, batch_size: int, sub_sample: float = 1.0, drop_last: bool = False
) -> ShardPlan:
    """Plan one epoch of ``shard_count`` Petastorm shards (see the module docstring).

    Raises:
        ValueError: for a ``shard_count``, ``batch_size`` or ``sub_sample`` out of range.
    """
    if shard_count < 1:
        raise ValueError(f"shard_count={shard_count!r}: use an integer >= 1 (world_size * DataLoader workers).")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}: use an integer >= 1.")
    if not 0 < sub_sample <= 1:
        raise ValueError(f"sub_sample={sub_sample!r}: use a fraction in (0, 1].")
    rows = [0] * shard_count
    for i, n in enumerate(group_rows):
        rows[i % shard_count] += int(n)
    take = [epoch_rows(r, sub_sample) for r in rows]
    if drop_last:
        full = min(t // batch_size for t in take) * batch_size
        take, num_rows = [full] * shard_count, full
    else:
        num_rows = max(take)
    return ShardPlan(tuple(rows), tuple(take), num_rows, int(batch_size))


# --------------------------------------------------------------------------- rows and batches


@dataclass
class _Rows:
    """Unpadded documents as CSR numpy arrays."""

    nnz: np.ndarray  # (n,) int64
    indices: np.ndarray  # (total,) int32
    values: np.ndarray  # (total,) float32
    ids: Optional[np.ndarray]  # (n,) object, or None

    def __len__(self) -> int:
        return len(self.nnz)

    @staticmethod
    def empty(n: int, with_ids: bool) -> "_Rows":
        return _Rows(np.zeros(n, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32), np.array([None] * n, object) if with_ids else None)

    @staticmethod
    def concat(blocks: Sequence["_Rows"]) -> "_Rows":
        return _Rows(
            np.concatenate([b.nnz for b in blocks]),
            np.concatenate([b.indices for b in blocks]),
            np.concatenate([b.values for b in blocks]),
            None if blocks[0].ids is None else np.concatenate([b.ids for b in blocks]),
        )

    def take(self, rows: np.ndarray) -> "_Rows":
        """Gather ``rows`` (any order), vectorized."""
        rows = np.asarray(rows, np.int64)
        starts = np.concatenate([[0], np.cumsum(self.nnz)])[rows]  # (k,)
        lens = self.nnz[rows]
        pos = np.repeat(starts - (np.cumsum(lens) - lens), lens) + np.arange(int(lens.sum()))
        return _Rows(lens, self.indices[pos], self.values[pos], None if self.ids is None else self.ids[rows])


def _chunk_rows(chunk: Any, with_ids: bool) -> _Rows:
    """Decode one Petastorm batch of :func:`make_bytes_transform` rows into :class:`_Rows`."""
    col_i, col_v = getattr(chunk, INDICES_COL), getattr(chunk, VALUES_COL)  # (n,) bytes each
    nnz = np.fromiter((len(b) for b in col_i), dtype=np.int64, count=len(col_i)) // 4  # (n,)
    indices = np.frombuffer(b"".join(col_i), dtype=np.int32)  # (total,)
    values = np.frombuffer(b"".join(col_v), dtype=np.float32)  # (total,)
    ids = None
    if with_ids:
        ids = np.asarray([i.decode() if isinstance(i, bytes) else str(i) for i in getattr(chunk, ID_COL)], dtype=object)
    return _Rows(nnz, indices, values, ids)


def _batch(rows: _Rows, n_real: int) -> dict[str, Any]:
    n = len(rows)
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(rows.nnz, out=indptr[1:])
    weight = np.zeros(n, np.float32)
    weight[:n_real] = 1.0
    out: dict[str, Any] = {"indptr": indptr, "indices": rows.indices, "values": rows.values, "weight": weight}
    if rows.ids is not None:
        out["ids"] = [None if i is None else str(i) for i in rows.ids]
    return out


def iter_petastorm_batches(
    split_dir: str | os.PathLike | Sequence[str],
    batch_size: int,
    cur_shard: int = 0,
    shard_count: int = 1,
    *,
    shuffle: bool = False,
    seed: int = 0,
    epoch: int = 0,
    sub_sample: float = 1.0,
    drop_last: bool = False,
    shuffle_buffer: int = 4096,
    pool: str = "dummy",
    workers_count: int = 2,
    with_ids: bool = True,
    plan: Optional[ShardPlan] = None,
) -> Iterator[dict[str, Any]]:
    """Yield one epoch of numpy CSR batches of one shard; every shard yields the same number of batches.

    Args:
        split_dir: A split folder (``<data_dir>/train``) or its Parquet files.
        batch_size: Rows per batch.
        cur_shard: This shard (``rank * num_workers + worker``).
        shard_count: Number of shards (``world_size * num_workers``).
        shuffle: Shuffle the shard's row-group order with ``(seed, epoch)`` and rows within ``shuffle_buffer``.
        seed: Base seed.
        epoch: Epoch (seeds the shuffles).
        sub_sample: Fraction of the shard's rows used this epoch.
        drop_last: Yield only the full batches that every shard fills, no padding.
        shuffle_buffer: Rows shuffled together.
        pool: Petastorm's ``reader_pool_type``: ``dummy`` or ``process``.
        workers_count: Workers of the process pool.
        with_ids: Include ``"ids"``.
        plan: The epoch's :class:`ShardPlan` when the caller has it (saves reading the footers).

    Yields:
        Dicts with ``indptr`` (int64), ``indices`` (int32), ``values`` (float32), ``weight`` (float32,
        0 for padding rows) and, with ``with_ids``, ``ids``.

    Raises:
        PetastormRowCountError: when the shard returned fewer (or more) rows than its row groups hold.
    """
    check_pool(pool)
    if not 0 <= cur_shard < shard_count:
        raise ValueError(f"cur_shard={cur_shard!r} must be in [0, shard_count={shard_count!r}).")
    files = split_file_list(split_dir)
    if not files:
        raise FileNotFoundError(f"no Parquet files in {split_dir!r}: run `ntm preprocess` first or check the path.")
    groups = row_group_rows(files)
    if plan is None:
        plan = plan_shards(groups, shard_count, batch_size, sub_sample, drop_last)
    expected, take, bs = plan.shard_rows[cur_shard], plan.take[cur_shard], plan.batch_size
    rng = np.random.default_rng([seed, epoch, cur_shard, shard_count])
    pending: list[_Rows] = []
    buffered = emitted = 0
    if take:
        petastorm, _ = import_petastorm()
        # Petastorm refuses more shards than row groups; with shard i % S, shard s < G of S > G holds
        # exactly row group s, as shard s of G does. Shards at or after G are empty (take == 0).
        count = min(shard_count, len(groups))
        with warnings.catch_warnings():
            # Petastorm 0.13.1's own legacy pyarrow calls warn on every reader; ours are not involved.
            warnings.simplefilter("ignore", FutureWarning)
            reader = petastorm.make_batch_reader(
                [_file_url(f) for f in files],
                schema_fields=([ID_COL] if with_ids else []) + [INDICES_COL, VALUES_COL],
                transform_spec=make_bytes_transform(with_ids),
                cur_shard=cur_shard if count > 1 else None,
                shard_count=count if count > 1 else None,
                reader_pool_type=pool,
                workers_count=workers_count,
                num_epochs=1,
                shuffle_row_groups=shuffle,
                seed=int(np.random.default_rng([seed, epoch]).integers(2**31)) if shuffle else None,
            )
        seen, exhausted = 0, True
        with reader:
            for chunk in reader:
                block = _chunk_rows(chunk, with_ids)
                seen += len(block)
                keep = len(block) - max(0, seen - take)  # rows of this block within the epoch's take
                if keep < len(block):
                    block = block.take(np.arange(max(0, keep)))
                if len(block):
                    pending.append(block)
                    buffered += len(block)
                if buffered >= max(shuffle_buffer, bs):
                    merged = _Rows.concat(pending)
                    if shuffle:
                        merged = merged.take(rng.permutation(len(merged)))
                    full = len(merged) // bs * bs
                    for i in range(0, full, bs):
                        yield _batch(merged.take(np.arange(i, i + bs)), bs)
                    emitted += full
                    rest = merged.take(np.arange(full, len(merged)))
                    pending, buffered = [rest], len(rest)
                if seen >= take and take < expected:
                    exhausted = False  # sub_sample/drop_last: stop reading once the epoch's rows are in
                    break
        if seen < take or (exhausted and seen != expected):
            fix = (
                "Petastorm's process pool lost or repeated row groups: rerun with petastorm.reader_pool_type=dummy"
                if pool == "process"
                else "the Parquet changed under the reader, or Petastorm skipped row groups: check the files against "
                "the manifest (rerun `ntm preprocess --overwrite`), or use reader=arrow"
            )
            raise PetastormRowCountError(
                f"petastorm shard {cur_shard}/{shard_count} of {os.path.dirname(files[0])!r} returned {seen} rows in epoch "
                f"{epoch}, expected {expected if exhausted else take} from the Parquet footers "
                f"(reader_pool_type={pool!r}): {fix}."
            )
    merged = _Rows.concat(pending) if pending else _Rows.empty(0, with_ids)
    if shuffle and len(merged):
        merged = merged.take(rng.permutation(len(merged)))
    n_real = len(merged)
    n_pad = plan.num_rows - emitted - n_real
    if n_pad > 0:
        merged = _Rows.concat([merged, _Rows.empty(n_pad, with_ids)])
    for i in range(0, len(merged), bs):
        yield _batch(merged.take(np.arange(i, min(i + bs, len(merged)))), max(0, min(bs, n_real - i)))


def main(argv: Optional[list[str]] = None) -> int:
    """Dump every document of every shard as JSON (``{"shards": [{"ids": [...], "docs": {...}, "batches": n}]}``)."""
    parser = argparse.ArgumentParser(description="Read a split with Petastorm and dump its documents per shard.")
    parser.add_argument("split_dir")
    parser.add_argument("--shards", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--pool", default="dummy", choices=POOLS)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    # petastorm 0.13.1 on pyarrow 14 warns about its own legacy-dataset calls on every read.
    warnings.filterwarnings("ignore", category=FutureWarning)
    os.environ["PYTHONWARNINGS"] = "ignore::FutureWarning"  # the process pool's workers
    shards = []
    for s in range(args.shards):
        ids, docs, n_batches = [], {}, 0
        for b in iter_petastorm_batches(args.split_dir, args.batch_size, s, args.shards, pool=args.pool):
            n_batches += 1
            for r in range(len(b["weight"])):
                if b["weight"][r] > 0:
                    lo, hi = b["indptr"][r], b["indptr"][r + 1]
                    ids.append(b["ids"][r])
                    docs[b["ids"][r]] = [b["indices"][lo:hi].tolist(), b["values"][lo:hi].tolist()]
        shards.append({"ids": ids, "docs": docs, "batches": n_batches})
    Path(args.out).write_text(json.dumps({"shards": shards}))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
