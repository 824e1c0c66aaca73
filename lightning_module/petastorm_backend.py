"""The Petastorm reader backend (``reader: petastorm``): numpy CSR batches via ``petastorm.make_batch_reader``.

Petastorm 0.13.1 imports only with pyarrow<=14 and numpy<2, so this module runs in
its own environment (``scripts/petastorm_env.sh`` builds ``.venv-petastorm``) and
needs neither torch nor Spark: it imports numpy, pandas, pyarrow and petastorm only.

* Petastorm rejects variable-length array columns unless a ``TransformSpec`` turns
  them into fixed shapes, so :func:`make_pad_transform` pads ``indices``/``values`` to
  ``max_nnz`` (default: the vocabulary size, an upper bound) and adds ``nnz``; the
  batches are unpadded back to CSR here.
* Sharding is by row group (``cur_shard``/``shard_count``). The thread pool sometimes
  returned 0 rows for a shard with no error, so only the ``process`` and ``dummy``
  pools are allowed and every shard's row count is checked against the Parquet footers.

Trade-off against the default Arrow loader: Petastorm shards whole row groups (ranks
get uneven row counts, padded here with empty batches), pads every row to ``max_nnz``
(more memory and copying), and pins old pyarrow/numpy; the Arrow loader splits at row
level and builds CSR straight from the list offsets.

Command line (used by the equivalence test)::

    .venv-petastorm/bin/python -m lightning_module.petastorm_backend SPLIT_DIR --shards 3 --out docs.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from ntm_spark.core.schema import ID_COL, INDICES_COL, VALUES_COL

POOLS = ("process", "dummy")
NNZ_COL = "nnz"


class PetastormNotInstalledError(ImportError):
    """Petastorm is not importable in this environment."""


def _import_petastorm():
    try:
        import petastorm
        from petastorm.transform import TransformSpec
    except ImportError as err:
        raise PetastormNotInstalledError(
            f"reader='petastorm' needs petastorm 0.13.1 with pyarrow<=14 and numpy<2 ({err}). "
            "Build its environment with `scripts/petastorm_env.sh` and run there, or use reader='arrow'."
        ) from err
    return petastorm, TransformSpec


def make_pad_transform(max_nnz: int):
    """Return a ``TransformSpec`` padding ``indices``/``values`` to ``(max_nnz,)`` and adding ``nnz``."""
    _, TransformSpec = _import_petastorm()

    def pad(df, max_nnz=max_nnz, id_col=ID_COL, nnz_col=NNZ_COL, idx_col=INDICES_COL, val_col=VALUES_COL):
        # The process pool ships this function with dill: import inside, bind names as defaults.
        import numpy as np
        import pandas as pd

        n = len(df)
        nnz = np.fromiter((len(a) for a in df[idx_col]), dtype=np.int32, count=n)
        if n and nnz.max() > max_nnz:
            raise ValueError(f"a document has {int(nnz.max())} distinct words > max_nnz={max_nnz!r}: raise max_nnz.")
        idx = np.zeros((n, max_nnz), np.int32)
        val = np.zeros((n, max_nnz), np.float32)
        for i, (a, b) in enumerate(zip(df[idx_col], df[val_col])):
            idx[i, : len(a)] = a
            val[i, : len(b)] = b
        return pd.DataFrame({id_col: df[id_col].values, nnz_col: nnz, idx_col: list(idx), val_col: list(val)})

    return TransformSpec(
        pad,
        edit_fields=[
            (NNZ_COL, np.int32, (), False),
            (INDICES_COL, np.int32, (max_nnz,), False),
            (VALUES_COL, np.float32, (max_nnz,), False),
        ],
        selected_fields=[ID_COL, NNZ_COL, INDICES_COL, VALUES_COL],
    )


def shard_row_counts(split_dir: str | Path, shard_count: int) -> list[int]:
    """Rows each Petastorm shard should return: row group ``i`` (in file order) goes to shard ``i % shard_count``."""
    import pyarrow.parquet as pq

    files = sorted(p for p in Path(split_dir).rglob("*.parquet") if not p.name.startswith((".", "_")))
    counts = [0] * shard_count
    i = 0
    for f in files:
        meta = pq.ParquetFile(f).metadata
        for g in range(meta.num_row_groups):
            counts[i % shard_count] += meta.row_group(g).num_rows
            i += 1
    return counts


def iter_petastorm_batches(
    split_dir: str | Path,
    batch_size: int,
    cur_shard: int = 0,
    shard_count: int = 1,
    max_nnz: Optional[int] = None,
    vocab_size: Optional[int] = None,
    pool: str = "process",
    workers_count: int = 2,
    with_ids: bool = True,
) -> Iterator[dict[str, Any]]:
    """Yield one epoch of numpy CSR batches for one shard, padded to the same batch count on every shard.

    Args:
        split_dir: A split folder, e.g. ``<data_dir>/train``.
        batch_size: Rows per batch.
        cur_shard: This shard (rank).
        shard_count: Number of shards (world size).
        max_nnz: Pad length; default ``vocab_size``.
        vocab_size: Vocabulary size (read from ``../vocab.txt`` when omitted).
        pool: ``process`` or ``dummy`` (the thread pool can silently return 0 rows).
        workers_count: Workers of the process pool.
        with_ids: Include ``"ids"``.

    Yields:
        Dicts with ``indptr`` (int64), ``indices`` (int32), ``values`` (float32), ``weight`` (float32) and ``ids``.

    Raises:
        RuntimeError: when the shard returned a different number of rows than its row groups hold.
    """
    if pool not in POOLS:
        raise ValueError(f"pool={pool!r}: use one of {list(POOLS)}; the thread pool sometimes returns 0 rows silently.")
    petastorm, _ = _import_petastorm()
    split_dir = Path(split_dir).resolve()
    if vocab_size is None:
        vocab_size = len((split_dir.parent / "vocab.txt").read_text(encoding="utf-8").splitlines())
    max_nnz = int(max_nnz or vocab_size)
    counts = shard_row_counts(split_dir, shard_count)
    expected = counts[cur_shard]
    num_batches = max(math.ceil(c / batch_size) for c in counts)
    reader = petastorm.make_batch_reader(
        split_dir.as_uri(),
        schema_fields=[ID_COL, INDICES_COL, VALUES_COL],
        transform_spec=make_pad_transform(max_nnz),
        cur_shard=cur_shard,
        shard_count=shard_count,
        reader_pool_type=pool,
        workers_count=workers_count,
        num_epochs=1,
        shuffle_row_groups=False,
    )
    seen, emitted = 0, 0
    pending: list[tuple] = []
    pending_rows = 0
    with reader:
        for chunk in reader:
            nnz = np.asarray(getattr(chunk, NNZ_COL), np.int64)
            idx, val = np.asarray(getattr(chunk, INDICES_COL)), np.asarray(getattr(chunk, VALUES_COL))
            ids = np.asarray([i.decode() if isinstance(i, bytes) else str(i) for i in getattr(chunk, ID_COL)], dtype=object)
            mask = np.arange(max_nnz)[None, :] < nnz[:, None]  # (n, max_nnz)
            pending.append((nnz, idx[mask], val[mask], ids))
            pending_rows += len(nnz)
            seen += len(nnz)
            while pending_rows >= batch_size:
                batch, pending, pending_rows = _take_rows(pending, batch_size)
                yield _finish(batch, batch_size, with_ids)
                emitted += 1
    if seen != expected:
        raise RuntimeError(
            f"petastorm shard {cur_shard}/{shard_count} of {str(split_dir)!r} returned {seen} rows, expected {expected} "
            f"from the Parquet footers; rerun with pool='dummy' and report it."
        )
    if pending_rows:
        n_last = pending_rows
        batch, pending, pending_rows = _take_rows(pending, n_last)
        yield _finish(batch, n_last, with_ids)
        emitted += 1
    while emitted < num_batches:  # equal batch counts on every shard: empty, zero-weight batches
        yield _finish((np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32), np.zeros(0, object)), 0, with_ids, pad_to=1)
        emitted += 1


def _take_rows(pending: list[tuple], n: int):
    nnz = np.concatenate([p[0] for p in pending])
    idx = np.concatenate([p[1] for p in pending])
    val = np.concatenate([p[2] for p in pending])
    ids = np.concatenate([p[3] for p in pending])
    cut = int(nnz[:n].sum())
    head = (nnz[:n], idx[:cut], val[:cut], ids[:n])
    rest = (nnz[n:], idx[cut:], val[cut:], ids[n:])
    return head, ([rest] if len(rest[0]) else []), len(rest[0])


def _finish(batch: tuple, n_real: int, with_ids: bool, pad_to: int = 0) -> dict[str, Any]:
    nnz, idx, val, ids = batch
    n = max(len(nnz), pad_to)
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(nnz, out=indptr[1 : len(nnz) + 1])
    indptr[len(nnz) + 1 :] = indptr[len(nnz)]
    weight = np.zeros(n, np.float32)
    weight[:n_real] = 1.0
    out = {"indptr": indptr, "indices": idx.astype(np.int32), "values": val.astype(np.float32), "weight": weight}
    if with_ids:
        out["ids"] = [str(i) for i in ids] + [None] * (n - len(ids))
    return out


def main(argv: Optional[list[str]] = None) -> int:
    """Dump every document of every shard as JSON (``{"shards": [{"ids": [...], "docs": {...}, "batches": n}]}``)."""
    parser = argparse.ArgumentParser(description="Read a split with Petastorm and dump its documents per shard.")
    parser.add_argument("split_dir")
    parser.add_argument("--shards", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--pool", default="dummy", choices=POOLS)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    import warnings

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
