"""Run by test_petastorm_training.py in ``.venv-petastorm``: train and read through Petastorm, dump JSON.

Usage:
    python tests/lightning_module/petastorm_script.py equivalence DATA_DIR OUT_DIR
    python tests/lightning_module/petastorm_script.py once DATA_DIR OUT_DIR      # shuffled, 1 and 2 workers, 2 gloo ranks
    python tests/lightning_module/petastorm_script.py faults DATA_DIR OUT_DIR     # lost rows and files fail loudly
    python tests/lightning_module/petastorm_script.py converter DATA_DIR OUT_DIR CACHE_URL
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from ntm_spark.core.config import TrainConfig, from_dict

EPOCHS = 2


def _cfg(data: str, out: str, **over) -> TrainConfig:
    base = {
        "data_dir": data, "output_dir": out, "preset": "sagemaker", "optimizer": "adam", "learning_rate": 0.01,
        "num_topics": 4, "epochs": 1, "mini_batch_size": 32, "num_workers": 0, "accelerator": "cpu", "devices": 1,
        "checkpoint": False, "progress_bar": False, "threads_per_process": 1, "seed": 11, "shuffle": False,
    }  # fmt: skip
    return from_dict(TrainConfig, {**base, **over})


def _epoch_ids(loader) -> list:
    return [i for b in loader for i, w in zip(b["ids"], b["weight"].tolist()) if w > 0]


def equivalence(data: str, out: str) -> dict:
    """Arrow and Petastorm, shuffling off, one seed: the documents per epoch, then the weights after one epoch."""
    from lightning_module.data import BowDataModule
    from lightning_module.train import train_model

    result: dict = {"ids": {}, "weights": {}, "files": {}}
    for reader in ("arrow", "petastorm"):
        dm = BowDataModule(data, batch_size=32, reader=reader, num_workers=0, seed=11, shuffle=False)
        ds = dm.dataset("train", with_ids=True)
        epochs = []
        for epoch in range(EPOCHS):
            ds.set_epoch(epoch)
            epochs.append(_epoch_ids(ds))
        result["ids"][reader] = epochs
        folder = Path(out) / reader
        train_model(_cfg(data, str(folder), reader=reader))
        state = torch.load(folder / "model.pt", map_location="cpu", weights_only=False)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        torch.save(state, Path(out) / f"{reader}.pt")
        result["files"][reader] = sorted(p.name for p in folder.iterdir())
    a, p = torch.load(Path(out) / "arrow.pt"), torch.load(Path(out) / "petastorm.pt")
    result["weights"] = {
        "keys_equal": sorted(a) == sorted(p),
        "max_abs_diff": max(float((a[k].float() - p[k].float()).abs().max()) for k in a if torch.is_tensor(a[k])),
    }
    return result


def _shuffled_epochs(data: str, workers: int, rank: int = 0, world: int = 1, **kw) -> dict:
    from torch.utils.data import DataLoader

    from lightning_module.data import PetastormBowDataset
    from ntm_spark.core.contract import split_files

    ds = PetastormBowDataset(
        split_files(data, "train"), 32, rank, world, num_workers=workers, shuffle=True, seed=5, shuffle_buffer=64, with_ids=True, **kw
    )
    loader = DataLoader(ds, batch_size=None, num_workers=workers, persistent_workers=workers > 0)
    epochs, batches = [], []
    for _ in range(EPOCHS):
        batch_list = list(loader)
        batches.append(len(batch_list))
        epochs.append([i for b in batch_list for i, w in zip(b["ids"], b["weight"].tolist()) if w > 0])
    sizes = [len(b["weight"]) for b in batch_list]
    return {"epochs": epochs, "batches": batches, "len": len(ds), "sizes": sizes, "take": list(ds.plan.take)}


def _ddp_rank(rank: int, data: str, out: str, port: int) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.distributed.init_process_group("gloo", rank=rank, world_size=2)
    try:
        from lightning_module.data import BowDataModule

        # The data module asks torch.distributed for the rank, as it does under DDP.
        dm = BowDataModule(data, batch_size=32, reader="petastorm", num_workers=1, seed=5, shuffle_buffer=64)
        from torch.utils.data import DataLoader

        ds = dm.dataset("train", with_ids=True)
        loader = DataLoader(ds, batch_size=None, num_workers=1, persistent_workers=True)
        epochs, batches = [], []
        for _ in range(EPOCHS):
            batch_list = list(loader)
            counts = torch.tensor([len(batch_list)])
            torch.distributed.all_reduce(counts, op=torch.distributed.ReduceOp.MAX)
            batches.append([len(batch_list), int(counts)])
            epochs.append([i for b in batch_list for i, w in zip(b["ids"], b["weight"].tolist()) if w > 0])
        Path(out, f"rank{rank}.json").write_text(json.dumps({"epochs": epochs, "batches": batches}))
    finally:
        torch.distributed.destroy_process_group()


def once(data: str, out: str) -> dict:
    """Shuffled: every document exactly once per epoch at 1 and 2 DataLoader workers and on 2 gloo ranks."""
    import socket

    import torch.multiprocessing as mp

    result = {f"workers{w}": _shuffled_epochs(data, w) for w in (1, 2)}
    result["sub_sample"] = _shuffled_epochs(data, 0, sub_sample=0.5)
    result["drop_last"] = _shuffled_epochs(data, 2, drop_last=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_rank, args=(data, out, port), nprocs=2, join=True)
    result["ddp"] = [json.loads(Path(out, f"rank{r}.json").read_text()) for r in range(2)]
    return result


def faults(data: str, out: str) -> dict:
    """A split file that loses rows after the footers were read, and a missing file: both fail loudly."""
    import shutil

    import pyarrow.parquet as pq

    from lightning_module.data import BowDataModule
    from lightning_module.petastorm_backend import PetastormRowCountError
    from ntm_spark.core.contract import ContractError, split_files

    copy = Path(out) / "data"
    shutil.copytree(data, copy)
    result = {}
    ds = BowDataModule(str(copy), batch_size=32, reader="petastorm", num_workers=0, shuffle=False).dataset("train")
    victim = split_files(copy, "train")[0]
    table = pq.read_table(victim)
    pq.write_table(table.slice(0, table.num_rows - 5), victim, row_group_size=37)  # 5 documents gone under the reader
    try:
        list(ds)
        result["row_count"] = "no error"
    except PetastormRowCountError as err:
        result["row_count"] = str(err)
    victim.unlink()
    try:
        BowDataModule(str(copy), batch_size=32, reader="petastorm", num_workers=0).dataset("train")
        result["manifest"] = "no error"
    except ContractError as err:
        result["manifest"] = str(err)
    return result


def converter(data: str, out: str, cache: str) -> dict:
    """The Spark converter path: 2 epochs from a DataFrame of the preprocessing output, then no cache left."""
    from ntm_spark.core import storage
    from ntm_spark.core.config import SparkConfig
    from ntm_spark.spark.petastorm_train import converter_spark_config, train_from_dataframe
    from ntm_spark.spark.session import build_spark_session

    spark = build_spark_session(
        converter_spark_config(SparkConfig(master="local[1]", conf={"spark.ui.enabled": "false"})), app_name="ntm-petastorm-test"
    )
    try:
        df = spark.read.parquet(str(Path(data) / "train"))
        cfg = _cfg(data, out, epochs=EPOCHS, shuffle=True, num_topics=3, petastorm={"cache_dir_url": cache})
        res = train_from_dataframe(df, cfg)
        rows = df.count()
    finally:
        spark.stop()
    return {
        "epochs_trained": res.epochs_trained,
        "metrics": res.metrics,
        "files": sorted(p.name for p in Path(out).iterdir()),
        "cache_left": sorted(str(p) for p in storage.local_path(cache).rglob("*")),
        "rows": rows,
    }


if __name__ == "__main__":
    torch.set_num_threads(1)
    mode, data, out = sys.argv[1], sys.argv[2], sys.argv[3]
    Path(out).mkdir(parents=True, exist_ok=True)
    fn = {"equivalence": equivalence, "once": once, "faults": faults, "converter": converter}[mode]
    res = fn(data, out, *sys.argv[4:])
    Path(out, "result.json").write_text(json.dumps(res))
