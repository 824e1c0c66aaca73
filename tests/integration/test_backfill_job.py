"""The backfill: an interrupted and resumed run writes exactly what an uninterrupted one does."""

import json

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.spark, pytest.mark.slow]


@pytest.fixture(scope="module")
def jsonl_corpus(tmp_path_factory, newsgroups_test_docs):
    path = tmp_path_factory.mktemp("backfill_in") / "docs.jsonl"
    with open(path, "w") as fh:
        for doc_id, text in newsgroups_test_docs[:400]:
            fh.write(json.dumps({"doc": doc_id, "body": text}) + "\n")
    return path


def collect(spark, path):
    rows = spark.read.parquet(str(path)).collect()
    return {r["id"]: (r["topic_weights"], r["top_topic"], r["model_version"], r["error_code"], r["bucket"]) for r in rows}, len(rows)


def test_interrupted_backfill_resumes_to_the_same_output(spark, jsonl_corpus, stream_model_folder, tmp_path):
    from jobs.backfill import main

    common = ["--input", str(jsonl_corpus), "--input-format", "jsonl", "--model", str(stream_model_folder),
              "--set", "id_col=doc", "--set", "text_col=body", "--set", "num_partitions=4"]  # fmt: skip
    assert main([*common, "--output", str(tmp_path / "full")]) == 0
    full, n_full = collect(spark, tmp_path / "full")
    assert n_full == 400 and len(full) == 400

    part = tmp_path / "part"
    assert main([*common, "--output", str(part), "--max-partitions", "2"]) == 1  # interrupted
    committed = sorted(p.name for p in part.iterdir() if p.name.startswith("bucket="))
    assert len(committed) == 2 and all((part / c / "_SUCCESS").exists() for c in committed)
    # A partition left half-written by a crash (no _SUCCESS) is never read and gets redone.
    stray = part / "bucket=3"
    stray.mkdir(exist_ok=True)
    (stray / "part-00000-stray.parquet").write_bytes(b"garbage")
    mtimes = {c: (part / c / "_SUCCESS").stat().st_mtime for c in committed}
    assert main([*common, "--output", str(part)]) == 0
    assert {c: (part / c / "_SUCCESS").stat().st_mtime for c in committed} == mtimes  # skipped, not rewritten
    resumed, n_resumed = collect(spark, part)
    assert n_resumed == 400 and resumed == full
    scored = [v for v in full.values() if v[3] is None]
    assert scored and all(abs(sum(v[0]) - 1) < 1e-5 and v[1] == max(range(len(v[0])), key=v[0].__getitem__) for v in scored)


def _common(corpus, model, partitions=4):
    return ["--input", str(corpus), "--input-format", "jsonl", "--model", str(model),
            "--set", "id_col=doc", "--set", "text_col=body", "--set", f"num_partitions={partitions}"]  # fmt: skip


def _staging(out):
    return sorted(p.name for p in out.iterdir() if ".staging-" in p.name)


def test_row_with_a_latin1_byte_keeps_its_id(spark, stream_model_folder, newsgroups_test_docs, tmp_path):
    """Issue 15: a JSON-lines row with a Latin-1 byte was backfilled with id=None."""
    from jobs.backfill import main

    corpus = tmp_path / "docs.jsonl"
    body = newsgroups_test_docs[0][1].encode("latin-1", "replace").decode("latin-1") + "\ncaf\u00e9 au lait"
    corpus.write_bytes(
        json.dumps({"doc": "latin1", "body": body}, ensure_ascii=False).encode("latin-1") + b"\n"
        + json.dumps({"doc": "utf8", "body": body}, ensure_ascii=False).encode("utf-8") + b"\n"
    )
    assert b"caf\xe9 " in corpus.read_bytes()
    assert main([*_common(corpus, stream_model_folder, partitions=2), "--output", str(tmp_path / "out")]) == 0
    rows, n = collect(spark, tmp_path / "out")
    assert n == 2 and sorted(rows) == ["latin1", "utf8"]
    assert rows["latin1"][3] is None and abs(sum(rows["latin1"][0]) - 1) < 1e-5  # scored, not an error
    assert rows["latin1"][:2] == rows["utf8"][:2]  # decoded to the same text, so the same mixture


def test_rerun_removes_the_staging_folder_a_killed_run_left(spark, jsonl_corpus, stream_model_folder, tmp_path):
    """A run killed while writing bucket 2 leaves .bucket=2.staging-*; the rerun deletes it and completes."""
    from jobs.backfill import main

    out = tmp_path / "out"
    assert main([*_common(jsonl_corpus, stream_model_folder), "--output", str(out), "--max-partitions", "1"]) == 1
    # What Spark's committer leaves when the driver dies mid-write: task files under _temporary, no _SUCCESS.
    left = out / ".bucket=2.staging-0badc0de" / "_temporary" / "0" / "_temporary" / "attempt_0"
    left.mkdir(parents=True)
    (left / "part-00000.snappy.parquet").write_bytes(b"half-written")
    assert main([*_common(jsonl_corpus, stream_model_folder), "--output", str(out)]) == 0
    assert _staging(out) == []
    assert collect(spark, out)[1] == 400


def test_kill_9_during_a_partition_then_rerun(spark, jsonl_corpus, stream_model_folder, tmp_path):
    """A real kill -9 of a backfill process while a partition is being written, then a rerun."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from jobs.backfill import main
    from ntm_spark.core.paths import PROJECT_ROOT

    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "jobs.backfill", *_common(jsonl_corpus, stream_model_folder, partitions=8),
           "--output", str(out), "--spark-conf", "spark.ui.enabled=false"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)  # fmt: skip
    seen = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            seen = _staging(out) if out.is_dir() else []
            if seen:
                break
            time.sleep(0.02)
        assert seen, f"no staging folder appeared (exit {proc.poll()}): {proc.stderr.read().decode()[-2000:] if proc.poll() is not None else ''}"
        os.killpg(proc.pid, signal.SIGKILL)  # the driver, its JVM and the Python workers
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    time.sleep(1)  # let the killed JVM's last file handles go
    left = _staging(out)
    assert left, "the killed run left no staging folder (it was renamed just before the kill): rerun the test"
    assert main([*_common(jsonl_corpus, stream_model_folder, partitions=8), "--output", str(out)]) == 0
    assert _staging(out) == []
    rows, n = collect(spark, out)
    assert n == 400 and len(rows) == 400
