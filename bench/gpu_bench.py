"""GPU throughput: Lightning + the Arrow Parquet loader vs a pure-PyTorch loop on a GPU-resident BoW matrix.

Self-contained for a GPU box with only torch, (pytorch-)lightning, pyarrow, pandas and
numpy: it generates its own synthetic Parquet (the preprocessing schema), then for each
corpus and batch size trains the same NTMModel (default preset, K=50) for the same
epochs three ways:

* ``lightning_stream``: NTMSystem + BowDataModule streaming Parquet row groups
  (4 workers, pinned memory, CSR batches densified on the GPU);
* ``lightning_resident``: the same with ``resident=True`` (the shard read once, rows
  gathered on the GPU);
* ``pure``: a plain loop over a dense (D, V) matrix resident on the GPU.

On the 20NG-size corpus three more columns isolate single changes: ``stream_w0`` (no
DataLoader workers: the loader's read-ahead thread alone), ``stream_noreadahead`` (workers,
read-ahead off) and ``resident_wrapped`` (``direct_steps=False``: every step through
Lightning's ``manual_backward``/``optimizer.step`` wrappers).

Both Lightning runs group ``--steps-per-execution`` batches per Lightning step (default 8;
one optimizer step per batch as before); on the 20NG-size corpus the one-batch-per-step
runs are reported too (``*_spe1``).

Reports docs/s (steady state: epochs after the first), the ratios to ``pure``, peak
host RSS and peak GPU memory, and the card. Writes JSON to ``$OUT/gpu_bench.json`` when
``$OUT`` is set (and to ``--json`` if given).

Usage:
    python bench/gpu_bench.py            # 20NG-size (11k docs) and 1M docs, batch 256/1024/4096 (~5 min on an H100)
    python bench/gpu_bench.py --quick    # tiny, runs on CPU in well under a minute
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from lightning_module._compat import pl  # noqa: E402
from lightning_module.data import BowDataModule  # noqa: E402
from lightning_module.model import PRESETS, NTMModel  # noqa: E402
from lightning_module.synthetic import synthetic_csr_fast, write_csr_split  # noqa: E402
from lightning_module.system import NTMSystem  # noqa: E402


def peak_rss_mb() -> float:
    """Peak resident set size of this process and its finished children (MiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024.0


def make_corpus(root: Path, n_docs: int, vocab: int, base_docs: int, seed: int = 0) -> Path:
    """Write ``train/`` Parquet of ``n_docs`` docs (a ``base_docs`` block repeated) and ``vocab.txt``."""
    ip, ix, v = synthetic_csr_fast(min(base_docs, n_docs), vocab, num_topics=20, seed=seed)
    reps = max(1, n_docs // len(ip[:-1]))
    for r in range(reps):
        write_csr_split(root / "train", ip, ix, v, rows_per_file=len(ip) - 1, prefix=f"r{r}")
        for f in (root / "train").glob("part-00000.parquet"):
            f.rename(root / "train" / f"rep{r:03d}.parquet")
    (root / "vocab.txt").write_text("".join(f"w{i}\n" for i in range(vocab)))
    return root


def dense_matrix(root: Path, vocab: int, device: torch.device) -> torch.Tensor:
    """Read the split once and build the dense (D, V) count matrix on ``device`` (via CSR)."""
    import pyarrow.parquet as pq

    from lightning_module.data import table_to_csr

    blocks = [table_to_csr(pq.read_table(f, columns=["indices", "values"])) for f in sorted((root / "train").glob("*.parquet"))]
    out = []
    for b in blocks:
        csr = torch.sparse_csr_tensor(
            torch.from_numpy(b.indptr), torch.from_numpy(b.indices.astype(np.int64)), torch.from_numpy(b.values), size=(len(b), vocab)
        ).to(device)
        out.append(csr.to_dense())
    return torch.cat(out)


class EpochTimer(pl.Callback):
    """Start and end time of each training epoch (synchronized)."""

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.ends: list[float] = []

    @property
    def times(self) -> list[float]:
        return [e - s for s, e in zip(self.starts, self.ends)]

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.starts.append(time.perf_counter())

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.ends.append(time.perf_counter())


def steady(starts: list[float], ends: list[float], n_docs: int) -> float:
    """Docs/s from the start of the second epoch to the end of the last (all of it when only one ran).

    A span, not a sum of epoch windows: whatever runs between epochs (Lightning's epoch-end
    and epoch-start hooks, the loader's per-epoch set-up) counts against the throughput.
    """
    i = 1 if len(starts) > 1 else 0
    return n_docs * (len(ends) - i) / (ends[-1] - starts[i])


#: ``--decoder``: ``linear`` (the figures recorded so far) or ``embedding`` (the default preset's
#: ECRTM decoder, with its clustering regularizer in both loops; random word vectors).
DECODER = {"decoder": "linear"}


def model_kwargs(vocab: int, k: int) -> dict:
    p = PRESETS["default"]
    kw = {
        "vocab_size": vocab, "num_topics": k, "encoder_layers_activation": p["encoder_layers_activation"],
        "batch_norm": p["batch_norm"], "prior": p["prior"], "dirichlet_alpha": p["dirichlet_alpha"],
        "decoder_batch_norm": p["decoder_batch_norm"], "dropout": p["dropout"],
    }
    if DECODER["decoder"] == "embedding":
        kw.update(decoder="embedding", embedding_dim=p["embedding_dim"], beta_temperature=p["beta_temperature"])
    return kw


def ecr_weight() -> float:
    return float(PRESETS["default"]["ecr_weight"]) if DECODER["decoder"] == "embedding" else 0.0


def run_lightning(
    root: Path, vocab: int, k: int, batch: int, epochs: int, resident: bool, workers: int, accel: str, steps_per_execution: int = 1,
    readahead: Optional[int] = None, direct_steps: bool = True,
) -> dict:
    pl.seed_everything(0, verbose=False)
    dm = BowDataModule(
        str(root), batch_size=batch, num_workers=workers, resident=resident, seed=0, steps_per_execution=steps_per_execution,
        readahead=readahead,
    )
    system = NTMSystem(
        optimizer="adam", learning_rate=0.002, kl_warmup_epochs=0, ecr_weight=ecr_weight(), direct_steps=direct_steps, **model_kwargs(vocab, k)
    )
    timer = EpochTimer()
    trainer = pl.Trainer(
        max_epochs=epochs, accelerator=accel, devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
        callbacks=[timer], use_distributed_sampler=False,
    )
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    trainer.fit(system, datamodule=dm)
    total = time.perf_counter() - t0
    n = dm.dataset("train").num_rows if not resident else dm._resident["train"][1]["num_real"]
    return {
        "docs_per_s": steady(timer.starts, timer.ends, n), "epoch_s": timer.times, "fit_s": total,
        "gpu_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None,
    }


def run_pure(x: torch.Tensor, vocab: int, k: int, batch: int, epochs: int) -> dict:
    torch.manual_seed(0)
    model = NTMModel(**model_kwargs(vocab, k)).to(x.device)
    opt = torch.optim.Adam(model.parameters(), lr=0.002)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    starts, ends = [], []
    n = x.shape[0]
    for _ in range(epochs):
        if x.is_cuda:
            torch.cuda.synchronize()
        starts.append(time.perf_counter())
        perm = torch.randperm(n, device=x.device)
        for i in range(0, n, batch):
            xb = x[perm[i : i + batch]]  # (B, V)
            loss = model.loss(xb).loss
            if ecr_weight():
                loss = loss + ecr_weight() * model.clustering_cost()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if x.is_cuda:
            torch.cuda.synchronize()
        ends.append(time.perf_counter())
    return {
        "docs_per_s": steady(starts, ends, n), "epoch_s": [e - s for s, e in zip(starts, ends)],
        "gpu_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes; runs on CPU")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--skip-large", action="store_true", help="only the 20NG-size corpus")
    parser.add_argument("--large-batches", default="256,1024,4096", help="batch sizes for the 1M-document corpus")
    parser.add_argument("--no-spe1", action="store_true", help="skip the one-batch-per-step runs")
    parser.add_argument("--small-epochs", type=int, default=6, help="epochs on the 20NG-size corpus (the first is not timed)")
    parser.add_argument("--steps-per-execution", type=int, default=8, help="training batches per Lightning step")
    parser.add_argument("--decoder", choices=["linear", "embedding"], default="linear", help="linear (recorded so far) or the default preset's embedding decoder")
    args = parser.parse_args(argv)
    DECODER["decoder"] = args.decoder

    cuda = torch.cuda.is_available()
    accel = "gpu" if cuda else "cpu"
    device = torch.device("cuda" if cuda else "cpu")
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
    if args.quick:
        corpora = [("quick", 1500, 1500, 2)]
        batches, vocab, k, workers = [128, 512], 300, 10, min(args.workers, 2)
    else:
        corpora = [("20ng_size", 11_314, 11_314, args.small_epochs)]
        if not args.skip_large:
            corpora.append(("1M", 1_000_000, 100_000, 2))
        batches, vocab, k, workers = [256, 1024, 4096], 2000, 50, args.workers
    card = torch.cuda.get_device_name(0) if cuda else "cpu"
    results = {"card": card, "torch": torch.__version__, "lightning": pl.__version__, "vocab": vocab, "num_topics": k, "decoder": args.decoder,
               "workers": workers, "runs": []}
    print(f"device: {card}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="ntm-gpu-bench-"))
    try:
        for name, n_docs, base, epochs in corpora:
            root = make_corpus(tmp / name, n_docs, vocab, base)
            x = dense_matrix(root, vocab, device)
            dense_mb = x.numel() * 4 / 2**20
            for b in (batches if name != "1M" else [int(v) for v in args.large_batches.split(",")]):
                row = {"corpus": name, "n_docs": int(x.shape[0]), "batch": b, "epochs": epochs, "dense_matrix_mb": dense_mb}
                spe = args.steps_per_execution
                row["steps_per_execution"] = spe
                row["pure"] = run_pure(x, vocab, k, b, epochs)
                row["lightning_resident"] = run_lightning(root, vocab, k, b, epochs, True, 0, accel, spe)
                row["lightning_stream"] = run_lightning(root, vocab, k, b, epochs, False, workers, accel, spe)
                if name != "1M":  # small epochs: in-process loading (a read-ahead thread), and workers without read-ahead
                    row["lightning_stream_w0"] = run_lightning(root, vocab, k, b, epochs, False, 0, accel, spe)
                    row["lightning_stream_noreadahead"] = run_lightning(root, vocab, k, b, epochs, False, workers, accel, spe, readahead=0)
                    row["lightning_resident_wrapped"] = run_lightning(root, vocab, k, b, epochs, True, 0, accel, spe, direct_steps=False)
                if name != "1M" and spe > 1 and not args.no_spe1:  # the one-batch-per-step baseline, where it is cheap
                    row["lightning_resident_spe1"] = run_lightning(root, vocab, k, b, epochs, True, 0, accel, 1)
                    row["lightning_stream_spe1"] = run_lightning(root, vocab, k, b, epochs, False, workers, accel, 1)
                for key in [k_ for k_ in row if k_.startswith("lightning_")]:
                    row[f"ratio_{key}"] = row[key]["docs_per_s"] / row["pure"]["docs_per_s"]
                row["peak_host_rss_mb"] = peak_rss_mb()
                results["runs"].append(row)
                write_results(results, args.json)  # after every row: a run cut short still reports
                print(
                    f"{name:9s} batch {b:5d}: pure {row['pure']['docs_per_s']:10.0f} docs/s | "
                    f"resident {row['lightning_resident']['docs_per_s']:10.0f} ({row['ratio_lightning_resident']:.2f}x) | "
                    f"stream {row['lightning_stream']['docs_per_s']:10.0f} ({row['ratio_lightning_stream']:.2f}x) | "
                    + "".join(f"{k_[10:]} {row[f'ratio_{k_}']:.2f}x | " for k_ in ("lightning_stream_w0", "lightning_stream_noreadahead", "lightning_resident_wrapped") if k_ in row)
                    + f"gpu {max(row[k_]['gpu_peak_mb'] or 0 for k_ in row if k_ == 'pure' or k_.startswith('lightning_')):.0f} MiB | "
                    f"rss {row['peak_host_rss_mb']:.0f} MiB"
                    + "".join(f" | {k_[10:]} {row[f'ratio_{k_}']:.2f}x" for k_ in row if k_.endswith("_spe1") and not k_.startswith("ratio")),
                    flush=True,
                )
            del x
            if cuda:
                torch.cuda.empty_cache()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_results(results, args.json)
    return 0


def write_results(results: dict, json_path: str | None) -> None:
    """Write the results to ``--json`` and to ``$OUT/gpu_bench.json`` when set."""
    text = json.dumps(results, indent=2)
    for target in filter(None, [json_path, os.environ.get("OUT") and str(Path(os.environ["OUT"]) / "gpu_bench.json")]):
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Path(target).write_text(text)


if __name__ == "__main__":
    sys.exit(main())
