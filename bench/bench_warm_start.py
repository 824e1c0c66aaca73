"""Warm start against a fresh training run (issue 21): time to a model, its NPMI, and how many topics keep their ids.

Protocol (the issue's test, as a benchmark): the training split of a preprocessing output is
cut in two halves by a hash of the document id (the validation and test splits stay whole).
Per seed, in one run:

* **champion**: a fresh ``train_model`` on half A;
* **warm**: ``ntm train --warm-start <champion> --data <half B>``'s code path
  (:func:`ntm_spark.serving.warm_start.prepare_warm_start`, then ``train_model(warm_start=)``),
  with each ``--replay`` fraction of half A replayed (``0``: none);
* **fresh union**: a fresh ``train_model`` on the whole training split (A and B).

Every model is scored with the project's definitions against the same reference, the test
split (``bench/bench_topic_quality.py``'s ``score``): NPMI (top 10), diversity (top 25), NMI
of the argmax topic against the label. For the warm starts also the share of topic ids
whose word distribution moved at most ``move_threshold`` from the champion's (JS distance),
and the distances' median. Wall seconds are per training run (1 torch thread).

Prints one JSON line per run, then mean +- sd over the seeds, and the ratio of the warm
start's time to the fresh union run's.

Usage:
    python bench/bench_warm_start.py --data .ntm/data/20newsgroups --k 20 --seeds 42 1 2 --replay 0 0.5
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
from bench_topic_quality import dense, read_split, score  # noqa: E402

from ntm_spark.core.topic_metrics import CoherenceReference  # noqa: E402


def split_halves(data: Path, out: Path) -> tuple[Path, Path]:
    """Write ``out/a`` and ``out/b``: ``data`` with its training split cut in two by a hash of the id."""
    from lightning_module.synthetic import write_csr_split
    from lightning_module.warm_start import read_split as read_bow

    block, labels = read_bow(data, "train")
    in_b = np.asarray([hashlib.sha256(str(i).encode()).digest()[0] % 2 == 1 for i in block.ids])
    halves = []
    for name, rows in (("a", np.flatnonzero(~in_b)), ("b", np.flatnonzero(in_b))):
        folder = out / name
        folder.mkdir(parents=True)
        part = block.take(rows)
        write_csr_split(folder / "train", part.indptr, part.indices, part.values, ids=list(part.ids), labels=[labels[i] for i in rows])
        for split in ("validation", "test"):
            if (data / split).is_dir():
                shutil.copytree(data / split, folder / split)
        shutil.copyfile(data / "vocab.txt", folder / "vocab.txt")
        manifest = json.loads((data / "manifest.json").read_text())
        manifest["splits"]["train"] = {"path": "train", "documents": int(len(rows)), "files": 1}
        (folder / "manifest.json").write_text(json.dumps(manifest))
        halves.append(folder)
    return halves[0], halves[1]


def train(cfg_dict: dict, warm_from: str | None = None, replay: float = 0.0) -> tuple[str, float, dict]:
    """Train one model (fresh, or warm from a model folder); return ``(model folder, wall s, metrics)``."""
    import torch

    from lightning_module.train import train_model
    from ntm_spark.core.config import TrainConfig, from_dict

    torch.set_num_threads(1)
    cfg = from_dict(TrainConfig, cfg_dict)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        if warm_from:
            from ntm_spark.serving.warm_start import prepare_warm_start

            cfg = dataclasses.replace(cfg, warm_start=dataclasses.replace(cfg.warm_start, model=warm_from, replay_fraction=replay))
            warm, cfg = prepare_warm_start(cfg)
            result = train_model(cfg, warm_start=warm)
        else:
            result = train_model(cfg)
    return cfg.output_dir, time.perf_counter() - t0, result.metrics


def evaluate(folder: str, x_test: np.ndarray, labels: list, refs: dict) -> dict:
    import torch

    from lightning_module.model_folder import load_model_folder

    model, _, _ = load_model_folder(folder)
    with torch.no_grad():
        theta = model.infer_topics(torch.from_numpy(x_test)).numpy()
        topic_word = model.topic_word().numpy()
    return score(topic_word, theta, labels, refs)


def between_topics(folder: str) -> dict:
    """How far apart a model's own topics are (JS distance of every pair of distinct topics): min, 5th percentile, median.

    A topic id that starts carrying another topic moves about this far, so the move threshold must stay below it.
    """
    from ntm_spark.core.drift import js_distance_matrix

    tw = np.load(Path(folder) / "topic_word.npy").astype(np.float64)
    d = js_distance_matrix(tw, tw)[~np.eye(len(tw), dtype=bool)]
    return {"min": round(float(d.min()), 3), "p5": round(float(np.percentile(d, 5)), 3), "median": round(float(np.median(d)), 3)}


def mean_sd(values: list[float]) -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="a preprocessing output with train, validation and test splits")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--preset", default="default")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--replay", type=float, nargs="+", default=[0.0, 0.5], help="replay fractions of the warm starts")
    parser.add_argument("--epochs", type=int, default=None, help="cap every run's epochs (the slow test's tiny setting)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--warm-set", action="append", default=[], metavar="KEY=JSON",
                        help="a train setting for the warm starts only (e.g. min_epochs=10)")
    args = parser.parse_args(argv)

    idx, val, labels = read_split(args.data, "test")
    vocab_size = len((args.data / "vocab.txt").read_text().splitlines())
    x_test = dense(idx, val, vocab_size)
    refs = {"test": CoherenceReference([np.asarray(i, dtype=np.int64) for i in idx], vocab_size, "test")}
    print(f"NPMI reference: the {len(idx)} test documents of {args.data}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-warm-") as tmp:
        tmp = Path(tmp)
        os.environ["NTM_HOME"] = str(tmp / "state")  # prepared data and downloads stay in this run
        half_a, half_b = split_halves(args.data, tmp / "halves")
        for seed in args.seeds:
            base = {"num_topics": args.k, "preset": args.preset, "seed": seed, "num_workers": 0, "accelerator": "cpu",
                    "devices": 1, "progress_bar": False, "checkpoint": False, "threads_per_process": 1, "npmi_reference": "test"}
            if args.epochs:
                base["epochs"] = args.epochs
            runs = [("champion", half_a, None, 0.0), ("fresh_union", args.data, None, 0.0)]
            runs += [(f"warm_replay{r:g}", half_b, "champion", r) for r in args.replay]
            warm_set = {k: json.loads(v) for k, _, v in (item.partition("=") for item in args.warm_set)}
            folders: dict[str, str] = {}
            for name, data, warm_from, replay in runs:
                out = tmp / f"{name}-{seed}"
                folder, wall, metrics = train(
                    {**base, **(warm_set if warm_from else {}), "data_dir": str(data), "output_dir": str(out)},
                    folders.get(warm_from) if warm_from else None, replay,
                )
                folders[name] = folder
                row = {"run": name, "seed": seed, "k": args.k, "wall_s": round(wall, 1),
                       "epochs": int(metrics.get("epochs_trained", 0)), **evaluate(folder, x_test, labels, refs)}
                if warm_from:
                    stab = json.loads((Path(folder) / "topic_stability.json").read_text())
                    row.update(kept_share=stab["summary"]["kept"] / args.k, median_distance=stab["summary"]["median_distance"],
                               max_distance=stab["summary"]["max_distance"], reordered=int(metrics.get("topics_reordered", 0)),
                               champion_between_topics=between_topics(folders["champion"]))
                rows.append(row)
                print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    print("\n| run | NPMI (test ref) | diversity | NMI | wall s | epochs | kept share | median JS moved |")
    print("|---|---|---|---|---|---|---|---|")
    names = list(dict.fromkeys(r["run"] for r in rows))
    for name in names:
        sel = [r for r in rows if r["run"] == name]
        kept = [r["kept_share"] for r in sel if "kept_share" in r]
        med = [r["median_distance"] for r in sel if "median_distance" in r]
        print(f"| {name} | {mean_sd([r['npmi'] for r in sel])} | {mean_sd([r['diversity'] for r in sel])} | "
              f"{mean_sd([r['nmi'] for r in sel])} | {mean_sd([r['wall_s'] for r in sel])} | "
              f"{mean_sd([r['epochs'] for r in sel])} | {mean_sd(kept)} | {mean_sd(med)} |")
    union = {r["seed"]: r["wall_s"] for r in rows if r["run"] == "fresh_union"}
    for name in names:
        if name.startswith("warm"):
            ratios = [r["wall_s"] / union[r["seed"]] for r in rows if r["run"] == name and union.get(r["seed"])]
            print(f"{name}: time / fresh union time = {mean_sd(ratios)} (per seed, same run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
