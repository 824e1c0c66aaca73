"""Serving benchmark: REST (`mlflow models serve`) vs in-process `pyfunc.predict`, raw text and BoW.

Usage:
    .venv/bin/python bench/bench_serving.py [--vocab-size 2000] [--num-topics 20] [--repeats 30]

Builds a 20 Newsgroups vocabulary with the shared TextNormalizer, saves an (untrained:
inference cost does not depend on the weights) NTM model folder, logs and registers it
in a temporary SQLite store, then times batches of 1, 32 and 256 documents.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def read_docs(n: int) -> list[str]:
    from ntm_spark.spark.corpus import locate_20newsgroups

    docs = []
    with tarfile.open(locate_20newsgroups(download=False)) as tar:
        for member in tar:
            if member.isfile() and member.name.count("/") == 2:
                docs.append(tar.extractfile(member).read().decode("latin-1"))
                if len(docs) >= n:
                    break
    return docs


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def time_calls(fn, repeats: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def post(url: str, body: dict) -> None:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        resp.read()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vocab-size", type=int, default=2000)
    parser.add_argument("--num-topics", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--corpus-docs", type=int, default=3000)
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    import mlflow
    import pandas as pd
    import torch

    from lightning_module.model import NTMModel
    from lightning_module.model_folder import save_model_folder
    from ntm_spark.core.config import MlflowConfig
    from ntm_spark.core.text import TextNormalizer
    from ntm_spark.mlops.registry import register_run_model
    from ntm_spark.mlops.tracking import configure_tracking, ensure_experiment, log_training_run
    from ntm_spark.tools.services import free_port

    docs = read_docs(args.corpus_docs)
    norm = TextNormalizer(clean=True)
    counts = collections.Counter(t for d in docs for t in norm.normalize(d))
    words = [w for w, _ in counts.most_common(args.vocab_size)]
    tmp = Path(tempfile.mkdtemp(prefix="ntm-bench-serving-"))
    folder = tmp / "model"
    folder.mkdir()
    (tmp / "manifest.json").write_text(json.dumps({"text_rules": {"clean": True, "stop_words": "english"}}))
    torch.manual_seed(0)
    save_model_folder(folder, NTMModel(len(words), args.num_topics), words, metrics={"npmi": 0.1, "val_loss": 1.0},
                      manifest_path=tmp / "manifest.json")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    cfg = MlflowConfig(tracking_uri=uri, experiment="bench", registered_model_name="ntm-bench")
    configure_tracking(cfg)
    with mlflow.start_run(experiment_id=ensure_experiment("bench", uri)) as run:
        t0 = time.perf_counter()
        log_training_run(folder, config={"bench": True})
        log_s = time.perf_counter() - t0
    register_run_model(run.info.run_id, cfg)
    model_uri = "models:/ntm-bench@champion"
    local = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=str(tmp / "dl")))
    lemma_bytes = (local / "artifacts" / "model_folder" / "lemmas.json").stat().st_size
    lemma_entries = len(json.loads((local / "artifacts" / "model_folder" / "lemmas.json").read_text())["lemmas"])
    model_bytes = sum(p.stat().st_size for p in local.rglob("*") if p.is_file())

    t0 = time.perf_counter()
    model = mlflow.pyfunc.load_model(str(local))
    load_s = time.perf_counter() - t0
    scorer = model.unwrap_python_model().scorer
    eval_docs = read_docs(args.corpus_docs + 256)[-256:]
    dense, _ = scorer.vectorize_texts(eval_docs)

    port = free_port()
    exe = Path(sys.executable).with_name("mlflow")
    env = {**os.environ, "PATH": f"{exe.parent}{os.pathsep}{os.environ['PATH']}"}
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(exe), "models", "serve", "-m", model_uri, "--env-manager", "local", "-h", "127.0.0.1",
                             "-p", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None:
                    raise SystemExit("mlflow models serve exited")
                time.sleep(0.2)
        serve_start_s = time.perf_counter() - t0
        rows = []
        for batch in (1, 32, 256):
            texts = eval_docs[:batch]
            bow = [r.tolist() for r in dense[:batch]]
            cases = {
                "text": (pd.DataFrame({"text": texts}), {"dataframe_records": [{"text": t} for t in texts]}),
                "bow (counts)": (pd.DataFrame({"counts": bow}), {"dataframe_records": [{"counts": c} for c in bow]}),
            }
            for kind, (frame, body) in cases.items():
                params = {"on_error": "column"}
                for where, fn in (
                    ("in-process", lambda f=frame: model.predict(f, params=params)),
                    ("REST", lambda b=body: post(f"{url}/invocations", {**b, "params": params})),
                ):
                    reps = max(5, args.repeats // (4 if batch == 256 else 1))
                    t = time_calls(fn, reps)
                    p50 = statistics.median(t)
                    rows.append({"input": kind, "batch": batch, "where": where, "p50_ms": round(p50 * 1e3, 2),
                                 "p99_ms": round(pct(t, 0.99) * 1e3, 2), "docs_per_s": round(batch / p50, 1)})
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
    summary = {
        "vocab_size": len(words), "num_topics": args.num_topics, "log_model_s": round(log_s, 2),
        "pyfunc_load_s": round(load_s, 2), "serve_start_to_ping_s": round(serve_start_s, 2),
        "model_artifact_bytes": model_bytes, "lemmas_json_bytes": lemma_bytes, "lemma_entries": lemma_entries,
    }
    print(json.dumps(summary, indent=2))
    print("| input | batch | where | p50 ms | p99 ms | docs/s |\n|---|---:|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['input']} | {r['batch']} | {r['where']} | {r['p50_ms']} | {r['p99_ms']} | {r['docs_per_s']} |")


if __name__ == "__main__":
    main()
