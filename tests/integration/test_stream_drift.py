"""Drift detected (issue 21): a model trained on 10 newsgroups, streamed its own 10 and then the other 10.

Real broker, real Spark, a model trained here by `ntm preprocess` + `ntm train`, so its
``drift_baseline.json`` and the manifest's token counts come from the product's own code.
"""

import json
import tarfile
import threading
import time
import uuid

import pytest

from ntm_spark.tools.services import create_topics

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.spark, pytest.mark.slow]

GROUPS = sorted([
    "alt.atheism", "comp.graphics", "comp.os.ms-windows.misc", "comp.sys.ibm.pc.hardware", "comp.sys.mac.hardware",
    "comp.windows.x", "misc.forsale", "rec.autos", "rec.motorcycles", "rec.sport.baseball", "rec.sport.hockey",
    "sci.crypt", "sci.electronics", "sci.med", "sci.space", "soc.religion.christian", "talk.politics.guns",
    "talk.politics.mideast", "talk.politics.misc", "talk.religion.misc",
])  # fmt: skip
IN_GROUPS, OUT_GROUPS = GROUPS[:10], GROUPS[10:]
TRAIN_PER_GROUP = 60
STREAM_PER_GROUP = 30


@pytest.fixture(scope="module")
def drift_corpus(newsgroups_archive, tmp_path_factory):
    """One pass over the archive: training files of the 10 groups (extracted), and test texts of all 20."""
    root = tmp_path_factory.mktemp("drift_corpus")
    seen: dict = {}
    stream = {"in": [], "out": []}
    with tarfile.open(newsgroups_archive) as tar:
        for member in tar:
            parts = member.name.split("/")
            if not member.isfile() or len(parts) != 3:
                continue
            folder, group, name = parts
            key = (folder, group)
            if folder == "20news-bydate-train" and group in IN_GROUPS and seen.get(key, 0) < TRAIN_PER_GROUP:
                tar.extract(member, root, filter="data")
            elif folder == "20news-bydate-test" and seen.get(key, 0) < STREAM_PER_GROUP:
                text = tar.extractfile(member).read().decode("utf-8", errors="replace")
                stream["in" if group in IN_GROUPS else "out"].append((f"{group}/{name}", text))
            else:
                continue
            seen[key] = seen.get(key, 0) + 1
    return root, stream


@pytest.fixture(scope="module")
def drift_model(spark, drift_corpus, tmp_path_factory):
    """`ntm preprocess` + `ntm train` on the 10 groups: a model folder with its drift baseline."""
    from jobs.preprocess import main as preprocess
    from jobs.train import main as train

    root, _ = drift_corpus
    work = tmp_path_factory.mktemp("drift_model")
    assert preprocess(["--input", str(root), "--output", str(work / "data"), "--set", "vocab_size=1500",
                       "--set", "split=[0.9, 0.1, 0.0]"]) == 0  # fmt: skip
    assert train(["--data", str(work / "data"), "--output", str(work / "model"), "--num-topics", "10", "--epochs", "40",
                  "--devices", "1", "--no-mlflow", "--set", "num_workers=0", "--set", "accelerator=cpu",
                  "--set", "threads_per_process=1", "--set", "mini_batch_size=64",
                  "--set", "checkpoint=false"]) == 0  # the final weights (the "best" val loss is epoch 0 here)  # fmt: skip
    return work / "data", work / "model"


def test_training_writes_the_baseline_and_the_manifest_its_token_counts(drift_model):
    from ntm_spark.core.contract import read_drift_baseline, read_manifest

    data, model = drift_model
    manifest = read_manifest(data)
    train = manifest["splits"]["train"]
    assert train["tokens"] > train["in_vocab_tokens"] > 0
    # Counted before short documents are dropped, so at least what the written split holds.
    import pyarrow.parquet as pq

    assert train["in_vocab_tokens"] >= sum(pq.ParquetDataset(str(data / "train")).read().column("n_words").to_pylist())
    assert sum(manifest["splits"][s]["tokens"] for s in manifest["splits"]) == manifest["documents"]["tokens"]
    baseline = read_drift_baseline(model)
    assert baseline.documents == train["documents"] and baseline.num_topics == 10
    assert abs(baseline.prevalence.sum() - 1) < 1e-6 and abs(baseline.argmax_share.sum() - 1) < 1e-6
    # The OOV baseline is the validation split's: the vocabulary was fitted on train, whose own OOV rate is biased low.
    val = manifest["splits"]["validation"]
    assert baseline.oov_split == "validation"
    assert baseline.oov_rate == pytest.approx(1 - val["in_vocab_tokens"] / val["tokens"])
    assert baseline.oov_rate > 1 - train["in_vocab_tokens"] / train["tokens"]
    print(f"\nOOV rate: train {1 - train['in_vocab_tokens'] / train['tokens']:.3f}, validation {baseline.oov_rate:.3f}")
    # The model folder carries the data manifest, so the baseline and its counts travel together.
    assert read_manifest(model)["splits"]["validation"]["tokens"] == val["tokens"]


def _produce(bootstrap, topic, docs):
    from kafka import KafkaProducer

    prod = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    for doc_id, text in docs:
        prod.send(topic, key=doc_id.encode(), value=json.dumps({"id": doc_id, "text": text}).encode())
    prod.flush()
    prod.close()


def _drift_records(bootstrap, topic, expected, timeout=20.0):
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False,
                             group_id=f"t-{uuid.uuid4().hex[:8]}", consumer_timeout_ms=2000)  # fmt: skip
    out, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and len(out) < expected:
            out += [json.loads(m.value) for m in consumer]
    finally:
        consumer.close()
    return sorted(out, key=lambda r: r["window_start"])


def _wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_drift_detected_when_the_stream_moves_to_the_other_newsgroups(spark, kafka_bootstrap, drift_corpus, drift_model, tmp_path, capsys):
    from jobs.stream_score import main as stream_main
    from ntm_spark.core.config import load_config
    from ntm_spark.spark.stream_query import run_stream
    from ntm_spark.spark.streaming import read_status

    _, stream = drift_corpus
    _, model = drift_model
    topic, out = f"drift-{uuid.uuid4().hex[:8]}", f"mix-{uuid.uuid4().hex[:8]}"
    create_topics(kafka_bootstrap, topic, out, out + "-dlq", out + "-drift")
    status_file = tmp_path / "status.json"
    sets = {
        "bootstrap_servers": kafka_bootstrap, "input_topics": topic, "output_topic": out, "dead_letter_topic": out + "-dlq",
        "starting_offsets": "earliest", "trigger": "processing_time", "processing_time": "500 milliseconds",
        "checkpoint_location": str(tmp_path / "ckpt"), "model_uri": str(model), "status_file": str(status_file),
        "parquet_path": str(tmp_path / "scored"), "drift_window": "3 seconds",
    }  # fmt: skip
    cfg = load_config("stream", overrides=[f"{k}={json.dumps(v)}" for k, v in sets.items()])
    thresholds = cfg.drift_thresholds()  # the shipped defaults
    _produce(kafka_bootstrap, topic, stream["in"])
    started = time.monotonic()
    result: dict = {}
    runner = threading.Thread(target=lambda: result.update(run_stream(spark, cfg, timeout=90)), daemon=True)
    runner.start()

    def windows():
        status = read_status(status_file) or {}
        return status.get("drift")

    first = _wait_for(windows, 60, "the first drift window")
    switch = first["window_end"]
    _produce(kafka_bootstrap, topic, stream["out"])
    _wait_for(lambda: (windows() or {}).get("window_start", "") >= switch and windows()["scored"] > 0, 30, "an out-of-domain window")
    time.sleep(4)  # let a straddling batch's window close too
    # Stop the stream now: the runner's timeout is only a safety net.
    for query in spark.streams.active:
        query.stop()
    runner.join(30)
    with capsys.disabled():
        print(f"\ndrift test: the stream ran {time.monotonic() - started:.1f}s")

    records = _drift_records(kafka_bootstrap, out + "-drift", result.get("drift_windows", 2))
    assert len(records) == result["drift_windows"] >= 2
    with capsys.disabled():
        print("\ndrift windows (start, scored, JS, OOV rate, OOV baseline, alert reasons):")
        for r in records:
            print(" ", r["window_start"][11:19], r["scored"], round(r["js_distance"] or 0, 3), round(r["oov_rate"] or 0, 3),
                  round(r["oov_rate_baseline"] or 0, 3), r["alert_reasons"])  # fmt: skip
    before = [r for r in records if r["window_end"] <= switch]
    after = [r for r in records if r["window_start"] >= switch]
    assert before and after
    for rec in before:  # in-domain: no alert, JS below the threshold
        assert not rec["alert"], (rec["alert_reasons"], rec)
        assert rec["js_distance"] < thresholds.js_distance, rec
    assert sum(r["scored"] for r in before) + sum(r["empty"] for r in before) >= 0.9 * len(stream["in"])
    # Out of domain: the alert within 2 windows, and the OOV rate rises.
    assert any(r["alert"] for r in after[:2]), after
    assert max(r["oov_rate"] for r in after[:2] if r["scored"]) > max(r["oov_rate"] for r in before)
    alerted = next(r for r in after[:2] if r["alert"])
    assert alerted["model_name"] == "model" and alerted["model_version"] and len(alerted["prevalence"]) == 10
    assert alerted["oov_rate_baseline"] is not None and alerted["top_z"] and alerted["alert_reasons"]
    # The same records went to Parquet beside the stream's sink.
    import pyarrow.parquet as pq

    table = pq.read_table(str(tmp_path / "scored") + "-drift")
    assert sorted(table.column("alert").to_pylist()) == sorted(r["alert"] for r in records)
    # `ntm stream --status` shows the latest window.
    capsys.readouterr()
    assert stream_main(["--status", "--set", f"status_file={json.dumps(str(status_file))}"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["drift"]["window_start"] == records[-1]["window_start"]

    # The report's drift page from these records, read from the Parquet folder and from the topic.
    from jobs.explore import main as explore

    data, _ = drift_model
    common = ["--model", str(model), "--data", str(data), "--split", "validation", "--sample", "3", "--max-docs", "60", "--no-log"]
    assert explore([*common, "--out", str(tmp_path / "page-parquet"), "--drift", str(tmp_path / "scored") + "-drift"]) == 0
    assert explore([*common, "--out", str(tmp_path / "page-topic"), "--drift-topic", out + "-drift",
                    "--bootstrap-servers", kafka_bootstrap]) == 0  # fmt: skip
    for page in ("page-parquet", "page-topic"):
        drift = json.loads((tmp_path / page / "report.json").read_text())["drift"]
        assert (drift["windows"], drift["alerts"], drift["skipped"]) == (len(records), sum(r["alert"] for r in records), 0)
        html = (tmp_path / page / "index.html").read_text()
        assert html.count('<tr class="alert"') == drift["alerts"] and alerted["alert_reasons"][0].replace(">", "&gt;") in html
