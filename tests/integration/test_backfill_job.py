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
