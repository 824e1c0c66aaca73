"""GPU smoke check: ``train_model`` end to end on CUDA (streamed, resident + steps_per_execution, in-process loading, sagemaker + clipping).

Needs only torch, Lightning, pyarrow, numpy and PyYAML (the GPU box); writes a synthetic corpus.

Usage:
    python3 bench/gpu_smoke.py
"""

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, ".")
import torch

from lightning_module.synthetic import write_synthetic_corpus
from lightning_module.train import train_model
from ntm_spark.core.config import TrainConfig, from_dict

d = Path(tempfile.mkdtemp())
data = write_synthetic_corpus(
    d / "data", n_docs=(20000, 2000, 2000), vocab_size=500, num_topics=10, row_group_size=1000
)
print("cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
for name, kw in [
    ("stream", {}),
    ("resident_spe8", {"resident": True, "steps_per_execution": 8}),
    ("stream_in_process", {"num_workers": 0}),  # batches pinned by the loader's read-ahead thread
    ("sagemaker_clip", {"preset": "sagemaker", "clip_gradient": 0.5}),
]:
    cfg = from_dict(
        TrainConfig,
        {
            "data_dir": str(data),
            "output_dir": str(d / name),
            "num_topics": 10,
            "epochs": 4,
            "mini_batch_size": 256,
            "num_workers": 2,
            "accelerator": "gpu",
            "devices": 1,
            "progress_bar": False,
            **kw,
        },
    )
    t = time.perf_counter()
    r = train_model(cfg)
    print(
        "RESULT",
        name,
        "val_loss %.3f npmi %.3f test_npmi %.3f epochs %d fit %.1fs"
        % (
            r.metrics["val_loss"],
            r.metrics["npmi"],
            r.metrics.get("test_npmi", float("nan")),
            r.epochs_trained,
            time.perf_counter() - t,
        ),
        flush=True,
    )
