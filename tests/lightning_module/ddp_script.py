"""Run by test_ddp.py: train on CPU with N processes (gloo) and dump each rank's final weights.

Usage: python tests/lightning_module/ddp_script.py DATA_DIR OUT_DIR DEVICES [DECODER]
"""

import sys
from pathlib import Path

import torch

from lightning_module._compat import pl
from lightning_module.train import train_model
from ntm_spark.core.config import TrainConfig, from_dict


class DumpWeights(pl.Callback):
    def __init__(self, out):
        self.out = Path(out)

    def on_fit_end(self, trainer, pl_module):
        self.out.mkdir(parents=True, exist_ok=True)
        torch.save(pl_module.model.state_dict(), self.out / f"rank{trainer.global_rank}.pt")


if __name__ == "__main__":
    data, out, devices = sys.argv[1], sys.argv[2], int(sys.argv[3])
    decoder = sys.argv[4] if len(sys.argv) > 4 else "linear"
    # The embedding decoder: each rank derives the PPMI word vectors itself; ECR on every step.
    extra = {"decoder": "embedding", "embedding_dim": 8, "ecr_weight": 10.0} if decoder == "embedding" else {}
    cfg = from_dict(
        TrainConfig,
        {
            **extra,
            "data_dir": data, "output_dir": out, "preset": "sagemaker", "optimizer": "sgd", "learning_rate": 0.05,
            "num_topics": 4, "epochs": 3, "mini_batch_size": 404, "num_workers": 0, "accelerator": "cpu",
            "devices": devices, "sample_latent": False, "checkpoint": False, "progress_bar": False,
            "threads_per_process": 1, "seed": 11,
            # Batch norm off: on CPU each rank normalizes its half of the batch (torch's SyncBatchNorm
            # is GPU-only), so the weights could not match one process's; the test checks DDP's averaging.
            "batch_norm": False,
        },
    )
    train_model(cfg, callbacks=[DumpWeights(Path(out) / "weights")])
