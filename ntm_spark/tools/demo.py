"""The demo: every stage end to end on embedded defaults (``ntm demo``; steps in ``jobs/demo.py``).

It starts the local services, runs preprocessing, training, registration, the report and the
stream, produces the 20 Newsgroups test documents and prints them tagged. Everything it starts
it stops.
"""


from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Mapping, Optional

from ntm_spark.core.paths import state_dir
from ntm_spark.tools.kafka_client import json_consumer, json_producer

log = logging.getLogger(__name__)

STEPS = 10


def _step(n: int, text: str) -> None:
    print(f"\n[{n}/{STEPS}] {text}", flush=True)


def _test_documents(limit: Optional[int]) -> list[dict]:
    """Read raw 20 Newsgroups test messages (id, label, text) from the archive or folder."""
    # The demo plays an outside producer: it sends what a mail gateway would, UTF-8 text,
    # decoded from the files by the project's one rule (UTF-8, else Latin-1).
    from ntm_spark.core.text import decode_document_bytes as decode_bytes
    from ntm_spark.spark.corpus import locate_20newsgroups

    path = locate_20newsgroups()
    docs: list[dict] = []
    if path.is_dir():
        files = sorted(p for p in path.glob("20news-bydate-test/*/*") if p.is_file())
        for p in files:
            text, _ = decode_bytes(p.read_bytes())
            docs.append({"id": f"test/{p.parent.name}/{p.name}", "label": p.parent.name, "text": text})
    else:
        with tarfile.open(path) as tar:
            for member in tar:
                parts = member.name.split("/")
                if member.isfile() and len(parts) == 3 and parts[0] == "20news-bydate-test":
                    text, _ = decode_bytes(tar.extractfile(member).read())
                    docs.append({"id": f"test/{parts[1]}/{parts[2]}", "label": parts[1], "text": text})
    # Interleave groups so a small sample covers them all.
    docs.sort(key=lambda d: (int(d["id"].rsplit("/", 1)[1]) % 997, d["id"]))
    return docs[:limit] if limit else docs


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, int(round(q / 100 * (len(ordered) - 1)))))
    return ordered[k]


def run_demo(args: argparse.Namespace, commands: Mapping[str, Callable[[list], int]]) -> int:
    """Run the ten steps; return the exit code.

    Args:
        args: The flags of ``jobs/demo.py``.
        commands: ``preprocess``, ``train`` and ``explore``: each a job's ``main(argv) -> int``
            (passed in by the job, so this library never imports ``jobs``).
    """
    from tqdm import tqdm

    from ntm_spark.core.config import load_config
    from ntm_spark.tools.services import KafkaBroker, MlflowServer, create_topics

    quick = args.quick
    work = Path(args.workdir or state_dir() / "demo").resolve()
    for sub in ("data", "model", "checkpoints", "report", "stream"):
        shutil.rmtree(work / sub, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    run_tag = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:4]
    data_dir, model_dir, report_dir = work / "data", work / "model", work / "report"
    epochs = args.epochs or (40 if quick else 50)
    n_messages = args.messages or (300 if quick else None)

    svc_cfg = load_config(
        "services",
        overrides=[f"{k}={getattr(args, k)}" for k in ("kafka_port", "kafka_controller_port", "mlflow_port") if getattr(args, k)],
    )
    broker, server = KafkaBroker(svc_cfg), MlflowServer(svc_cfg)
    started: list = []
    stream_proc: Optional[subprocess.Popen] = None
    t_start = time.monotonic()
    try:
        # 1 ------------------------------------------------------------ services
        _step(1, "services up: Kafka broker (KRaft) and MLflow server on 127.0.0.1")
        for svc in (broker, server):
            if svc.proc.pid() is None:
                started.append(svc)
        bootstrap = broker.up()
        tracking_uri = server.up()
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
        print(f"    kafka {bootstrap}   mlflow {tracking_uri}")

        # 2 ------------------------------------------------------------ preprocess
        _step(2, f"preprocess 20 Newsgroups with Spark ({'a 50% sample' if quick else 'the whole corpus'})")
        pre_args = ["--output", str(data_dir), "--overwrite", "--set", "keep_official_split=true"]
        if quick:
            pre_args += ["--set", "sample_fraction=0.5", "--set", "num_train_shards=2"]
        if commands["preprocess"](pre_args) != 0:
            print("demo: preprocessing failed (see the log above).", file=sys.stderr)
            return 1
        manifest = json.loads((data_dir / "manifest.json").read_text())
        docs_info = manifest.get("documents", {})
        print(
            f"    vocabulary {manifest['vocabulary']['size']} words; read {docs_info.get('read')} documents, "
            f"kept {docs_info.get('per_split')}; dropped {docs_info.get('dropped')}"
        )

        # 3 + 4 ----------------------------------------------------- train, register, gate
        _step(3, f"train the NTM (K={args.num_topics}, up to {epochs} epochs, early stopping), tracked in MLflow")
        train_args = [
            "--data", str(data_dir), "--output", str(model_dir), "--num-topics", str(args.num_topics),
            "--epochs", str(epochs), "--set", f"tolerance={0.001}",
        ]  # fmt: skip
        if commands["train"](train_args) != 0:
            print("demo: training failed (see the log above).", file=sys.stderr)
            return 1
        _step(4, "register the model and promote it through the quality gate")
        from ntm_spark.mlops.registry import list_versions

        mlflow_cfg = load_config("mlflow", overrides=[f"tracking_uri={tracking_uri}"])
        name = mlflow_cfg.registered_model_name
        versions = list_versions(name, mlflow_cfg)
        latest = max(versions, key=lambda v: int(v["version"]))
        print(f"    {name} version {latest['version']} aliases {latest.get('aliases')}")
        champion = next((v for v in versions if "champion" in (v.get("aliases") or [])), None)
        if champion is None:
            print("demo: no version holds the champion alias; see `ntm registry list`.", file=sys.stderr)
            return 1
        model_uri = f"models:/{name}@champion"
        print(f"    serving {model_uri} = version {champion['version']}")

        # 5 ------------------------------------------------------------ explore
        _step(5, "write the exploration report")
        if commands["explore"](["--model", model_uri, "--data", str(data_dir), "--out", str(report_dir), "--tracking-uri", tracking_uri]) != 0:
            print("demo: the exploration report failed (see the log above).", file=sys.stderr)
            return 1

        # 6 ------------------------------------------------------------ stream
        in_topic, out_topic, dlq = f"demo-documents-{run_tag}", f"demo-topics-{run_tag}", f"demo-dead-letters-{run_tag}"
        _step(6, f"start the streaming job: {in_topic} -> {out_topic} (dead letters: {dlq})")
        create_topics(bootstrap, in_topic, out_topic, dlq)
        docs = _test_documents(n_messages)
        timeout = args.stream_timeout or (300 if quick else 1800)
        stream_cmd = [
            sys.executable, "-m", "jobs.cli", "stream",
            "--bootstrap-servers", bootstrap, "--input-topics", in_topic, "--output-topic", out_topic,
            "--dead-letter-topic", dlq, "--model", model_uri, "--starting-offsets", "earliest",
            "--set", f"checkpoint_location={work / 'stream' / 'checkpoint'}",
            "--set", f"status_file={work / 'stream' / 'status.json'}",
            "--set", "passthrough_fields=[label, sent_at]",
            "--set", f"tracking_uri={tracking_uri}",
            "--timeout", str(timeout + 60),
        ]  # fmt: skip
        stream_log = open(work / "stream.log", "wb")  # noqa: SIM115 - closed in finally
        stream_proc = subprocess.Popen(stream_cmd, stdout=stream_log, stderr=subprocess.STDOUT, start_new_session=True)
        print(f"    streaming job pid {stream_proc.pid}, log {work / 'stream.log'}")
        ready_s = _wait_until_scoring(bootstrap, in_topic, out_topic, docs[0]["text"], timeout, stream_proc)
        print(f"    the stream answered a warm-up message after {ready_s:.1f} s (Spark start-up and model load)")

        # 7 + 8 ------------------------------------------------------ produce, consume
        _step(7, f"produce {len(docs)} 20 Newsgroups test documents to {in_topic}")
        results: dict = {}
        dead: list = []
        consumer_ready = threading.Event()
        consumer = threading.Thread(
            target=_consume, args=(bootstrap, out_topic, dlq, {d["id"] for d in docs}, results, dead, timeout, consumer_ready), daemon=True
        )
        consumer.start()
        consumer_ready.wait(30)
        _produce(bootstrap, in_topic, docs, tqdm)
        _step(8, "tagged messages")
        consumer.join(timeout + 30)
        if stream_proc.poll() is not None and len(results) + len(dead) < len(docs):
            print(f"demo: the streaming job exited with code {stream_proc.returncode}; log {work / 'stream.log'}", file=sys.stderr)
        by_id = {d["id"]: d for d in docs}
        latencies = [r["_latency_ms"] for r in results.values()]
        for rec in list(results.values())[:8]:
            doc = by_id.get(rec["id"], {})
            tops = "; ".join(f"T{t['topic']} {t['weight']:.2f} ({' '.join(t['words'][:4])})" for t in rec.get("top_topics", [])[:2])
            print(f"    {doc.get('label', '?'):<26} -> {tops}")
        print(
            f"    tagged {len(results)}/{len(docs)} messages, {len(dead)} dead-lettered, "
            f"model {results and next(iter(results.values())).get('model_version')}; end-to-end latency "
            f"p50 {_percentile(latencies, 50):.0f} ms, p95 {_percentile(latencies, 95):.0f} ms, p99 {_percentile(latencies, 99):.0f} ms"
        )

        # 9 ------------------------------------------------------------ where to look
        _step(9, "where to browse")
        print(f"    MLflow UI      {tracking_uri}  (experiment {mlflow_cfg.experiment}, model {name})")
        print(f"    report         {report_dir / 'index.html'}")
        print(f"    model folder   {model_dir}")
        print(f"    took {time.monotonic() - t_start:.0f} s")
        missing = len(docs) - len(results) - len(dead)
        if missing:
            print(f"demo: {missing} messages were not tagged within {timeout:.0f} s.", file=sys.stderr)
            return 1
        return 0
    finally:
        # 10 ----------------------------------------------------------- stop
        _step(10, "stop everything the demo started")
        if stream_proc is not None and stream_proc.poll() is None:
            import signal

            os.killpg(stream_proc.pid, signal.SIGTERM)
            try:
                stream_proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(stream_proc.pid, signal.SIGKILL)
                stream_proc.wait()
        if args.keep_services:
            print("    services left running (--keep-services); stop them with `ntm services down`")
        else:
            for svc in started:
                svc.down()
            print(f"    stopped: {', '.join(type(s).__name__ for s in started) or 'nothing (services were already running)'}")


def _wait_until_scoring(bootstrap: str, in_topic: str, out_topic: str, text: str, timeout: float, proc) -> float:
    """Send one warm-up message and wait for its record, so latency figures exclude start-up."""
    start = time.monotonic()
    producer = json_producer(bootstrap)
    producer.send(in_topic, key="demo-warmup", value={"id": "demo-warmup", "text": text})
    producer.flush()
    producer.close()
    consumer = json_consumer(bootstrap, [out_topic], group="demo-warmup")
    try:
        while time.monotonic() - start < timeout:
            if proc.poll() is not None:
                raise RuntimeError(f"the streaming job exited with code {proc.returncode} before scoring; see its log")
            for msg in consumer:
                if msg.value.get("id") == "demo-warmup":
                    return time.monotonic() - start
        raise RuntimeError(f"the streaming job scored nothing within {timeout:.0f} s; see its log")
    finally:
        consumer.close()


def _produce(bootstrap: str, topic: str, docs: list[dict], tqdm) -> None:
    producer = json_producer(bootstrap, linger_ms=5)
    try:
        for doc in tqdm(docs, desc="    produce", unit="msg", disable=None):
            producer.send(topic, key=doc["id"], value={**doc, "sent_at": time.time()})
        producer.flush()
    finally:
        producer.close()


def _consume(bootstrap, out_topic, dlq, expected, results, dead, timeout, ready) -> None:
    consumer = json_consumer(bootstrap, [out_topic, dlq], group="demo")
    deadline = time.monotonic() + timeout
    ready.set()
    try:
        while time.monotonic() < deadline and len(results) + len(dead) < len(expected):
            for msg in consumer:
                now = time.time()
                if msg.topic == dlq:
                    dead.append(msg.value)
                    continue
                rec = msg.value
                if rec.get("id") in expected and rec["id"] not in results:
                    rec["_latency_ms"] = (now - float(rec.get("sent_at") or now)) * 1000
                    results[rec["id"]] = rec
                if len(results) + len(dead) >= len(expected):
                    break
    finally:
        consumer.close()
