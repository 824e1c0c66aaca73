"""`ntm serve` (SageMaker's layouts) vs `mlflow models serve` (MLflow's), same model, same documents, one run.

Usage:
    .venv/bin/python bench/bench_sagemaker_serving.py [--vocab-size 2000] [--num-topics 20] [--repeats 30]

Builds a 20 Newsgroups vocabulary, registers an (untrained: inference cost does not depend on
the weights) NTM in a temporary SQLite store, starts both servers on it, and times requests of
1, 32 and 256 documents in each form, calls to the two servers alternating so that both see the
same machine load: p50/p99 latency and docs/s (batch / p50). Forms, each server in its own layout:

* CSV: ``ntm serve`` headerless dense rows; MLflow the same rows under a ``0..V-1`` header;
* JSON dense: ``{"instances": [{"features": [...]}]}`` vs ``{"dataframe_records": [{"counts": [...]}]}``;
* JSON sparse: ``{"instances": [{"data": {"features": {"keys", "shape", "values"}}}]}`` vs
  ``{"dataframe_records": [{"indices": [...], "values": [...]}]}``;
* raw text: ``{"instances": [{"text": "..."}]}`` to both (the same body);
* RecordIO (``ntm serve`` only): sparse float32 records in, RecordIO out.

Targets (issue 19): ``ntm serve`` at least as fast as ``mlflow models serve`` on every shared form;
RecordIO at batch 256 at least 2x dense JSON. Each pair's answers are checked equal (1e-5).
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_serving import pct, read_docs  # noqa: E402


def start(cmd: list[str], env: dict, name: str, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 240
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1):
                return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{name} did not start")
            time.sleep(0.3)


class Client:
    """One kept-alive HTTP connection (both servers are timed through the same client code)."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)

    def post(self, body: bytes, content_type: str, accept: str = "application/json") -> bytes:
        self.conn.request("POST", "/invocations", body=body, headers={"Content-Type": content_type, "Accept": accept})
        resp = self.conn.getresponse()
        raw = resp.read()
        if resp.status != 200:
            raise SystemExit(f"HTTP {resp.status}: {raw[:300]!r}")
        return raw


def weights_of(raw: bytes, accept: str) -> np.ndarray:
    from ntm_spark.core import recordio

    if accept == "application/x-recordio-protobuf":
        return np.array([r.label["topic_weights"].values for r in recordio.decode_records(raw)], dtype=np.float64)
    return np.array([p["topic_weights"] for p in json.loads(raw)["predictions"]], dtype=np.float64)


def bodies(dense: np.ndarray, texts: list[str]) -> dict:
    """form -> (ntm serve request, mlflow models serve request or None); a request is (body, content type, accept)."""
    from ntm_spark.core import recordio

    v = dense.shape[1]
    rows = [[int(x) for x in r] for r in dense]
    nz = [np.flatnonzero(r) for r in dense]
    csv_rows = "\n".join(",".join(map(str, r)) for r in rows)
    sparse_sm = [{"data": {"features": {"keys": k.tolist(), "shape": [v], "values": [float(x) for x in r[k]]}}} for k, r in zip(nz, dense)]
    indptr = np.cumsum([0] + [len(k) for k in nz])
    flat_idx = np.concatenate(nz) if nz else np.zeros(0, np.int64)
    flat_val = np.concatenate([r[k] for k, r in zip(nz, dense)]).astype(np.float32)
    js, rec = "application/json", "application/x-recordio-protobuf"
    return {
        "CSV": ((csv_rows.encode(), "text/csv", js),
                ((",".join(str(i) for i in range(v)) + "\n" + csv_rows).encode(), "text/csv", js)),
        "JSON dense": ((json.dumps({"instances": [{"features": r} for r in rows]}).encode(), js, js),
                       (json.dumps({"dataframe_records": [{"counts": r} for r in rows]}).encode(), js, js)),
        "JSON sparse": ((json.dumps({"instances": sparse_sm}).encode(), js, js),
                        (json.dumps({"dataframe_records": [{"indices": k.tolist(), "values": [float(x) for x in r[k]]} for k, r in zip(nz, dense)]}).encode(), js, js)),
        "raw text": ((json.dumps({"instances": [{"text": t} for t in texts]}).encode(), js, js),
                     (json.dumps({"instances": [{"text": t} for t in texts]}).encode(), js, js)),
        "RecordIO": ((b"".join(recordio.encode_sparse_rows(indptr, flat_idx, flat_val, v)), rec, rec), None),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vocab-size", type=int, default=2000)
    parser.add_argument("--num-topics", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per form at batch 1 (fewer at 32 and 256)")
    parser.add_argument("--corpus-docs", type=int, default=3000)
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    import mlflow
    import torch

    from lightning_module.model import NTMModel
    from lightning_module.model_folder import save_model_folder
    from ntm_spark.core.config import MlflowConfig
    from ntm_spark.core.text import TextNormalizer
    from ntm_spark.mlops.registry import register_run_model
    from ntm_spark.mlops.tracking import configure_tracking, ensure_experiment, log_training_run
    from ntm_spark.tools.services import free_port

    docs = read_docs(args.corpus_docs + 400)
    norm = TextNormalizer(clean=True)
    counts = collections.Counter(t for d in docs[: args.corpus_docs] for t in norm.normalize(d))
    words = [w for w, _ in counts.most_common(args.vocab_size)]
    tmp = Path(tempfile.mkdtemp(prefix="ntm-bench-sagemaker-"))
    folder = tmp / "model"
    folder.mkdir()
    (tmp / "manifest.json").write_text(json.dumps({"text_rules": {"clean": True, "stop_words": "english"}}))
    torch.manual_seed(0)
    save_model_folder(folder, NTMModel(len(words), args.num_topics), words, metrics={"npmi": 0.1, "val_loss": 1.0},
                      manifest_path=tmp / "manifest.json")  # fmt: skip
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    cfg = MlflowConfig(tracking_uri=uri, experiment="bench", registered_model_name="ntm-bench")
    configure_tracking(cfg)
    with mlflow.start_run(experiment_id=ensure_experiment("bench", uri)) as run:
        log_training_run(folder, config={"bench": True})
    register_run_model(run.info.run_id, cfg)
    scorer = mlflow.pyfunc.load_model("models:/ntm-bench@champion").unwrap_python_model().scorer
    held_out = docs[args.corpus_docs :]
    candidates, errors = scorer.vectorize_texts(held_out)
    keep = [i for i, e in enumerate(errors) if e is None][:256]  # documents with at least one vocabulary word
    eval_docs, dense = [held_out[i] for i in keep], candidates[keep]  # (256, V) counts

    bindir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    ntm_port, mlflow_port = free_port(), free_port()
    procs = [
        start([str(bindir / "ntm"), "serve", "--name", "ntm-bench", "--tracking-uri", uri, "-p", str(ntm_port)], env, "ntm serve", ntm_port),
        start([str(bindir / "mlflow"), "models", "serve", "-m", "models:/ntm-bench@champion", "--env-manager", "local",
               "-h", "127.0.0.1", "-p", str(mlflow_port)], env, "mlflow models serve", mlflow_port),
    ]  # fmt: skip
    results = []
    try:
        ntm, mlf = Client(ntm_port), Client(mlflow_port)
        for batch in (1, 32, 256):
            reps = args.repeats if batch == 1 else max(5, args.repeats // (2 if batch == 32 else 4))
            for form, (ours, theirs) in bodies(dense[:batch], eval_docs[:batch]).items():
                a = ntm.post(*ours)
                if theirs is not None:
                    b = mlf.post(*theirs)
                    np.testing.assert_allclose(weights_of(a, ours[2]), weights_of(b, theirs[2]), atol=1e-5, err_msg=form)
                times = {"ntm serve": [], "mlflow models serve": []}
                for _ in range(reps):  # alternate: both servers under the same load
                    t0 = time.perf_counter()
                    ntm.post(*ours)
                    times["ntm serve"].append(time.perf_counter() - t0)
                    if theirs is not None:
                        t0 = time.perf_counter()
                        mlf.post(*theirs)
                        times["mlflow models serve"].append(time.perf_counter() - t0)
                for server, t in times.items():
                    if t:
                        p50 = statistics.median(t)
                        results.append({"form": form, "batch": batch, "server": server, "p50_ms": round(p50 * 1e3, 2),
                                        "p99_ms": round(pct(t, 0.99) * 1e3, 2), "docs_per_s": round(batch / p50, 1)})  # fmt: skip
    finally:
        for proc in procs:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=30)
    print(json.dumps({"vocab_size": len(words), "num_topics": args.num_topics, "repeats_batch1": args.repeats}))
    print("| form | batch | server | p50 ms | p99 ms | docs/s | mlflow p50 / ntm p50 |\n|---|---:|---|---:|---:|---:|---:|")
    by = {(r["form"], r["batch"], r["server"]): r for r in results}
    for r in results:
        other = by.get((r["form"], r["batch"], "mlflow models serve"))
        ratio = f"{other['p50_ms'] / r['p50_ms']:.2f}x" if r["server"] == "ntm serve" and other else ""
        print(f"| {r['form']} | {r['batch']} | {r['server']} | {r['p50_ms']} | {r['p99_ms']} | {r['docs_per_s']} | {ratio} |")
    rec, js = by[("RecordIO", 256, "ntm serve")], by[("JSON dense", 256, "ntm serve")]
    slower = [f"{f}@{b}" for (f, b, s), r in by.items() if s == "ntm serve" and (f, b, "mlflow models serve") in by
              and r["p50_ms"] > by[(f, b, "mlflow models serve")]["p50_ms"]]  # fmt: skip
    print(f"\nRecordIO vs JSON dense at batch 256 (ntm serve): {js['p50_ms'] / rec['p50_ms']:.2f}x (target >= 2x)")
    print(f"ntm serve slower than mlflow models serve on: {slower or 'none'} (target: none)")


if __name__ == "__main__":
    main()
