"""``reader: petastorm`` and the Spark converter train, in ``.venv-petastorm``.

Each test runs ``petastorm_script.py`` with ``.venv-petastorm/bin/python`` (Petastorm 0.13.1,
pyarrow 14, numpy 1.26, torch, Lightning, pyspark 3.5; ``make petastorm-env`` builds it) on
the same Parquet the main environment writes, and checks the JSON it dumps.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PETASTORM_PY = ROOT / ".venv-petastorm" / "bin" / "python"
SCRIPT = Path(__file__).with_name("petastorm_script.py")

pytestmark = [
    pytest.mark.petastorm,
    pytest.mark.skipif(not PETASTORM_PY.exists(), reason=".venv-petastorm is missing: build it with `make petastorm-env`"),
]


def _run(mode: str, data: Path, out: Path, *extra: str, timeout: int = 240) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "SPARK_LOCAL_IP": "127.0.0.1"}
    env.pop("PYSPARK_PYTHON", None)  # the Spark session's Python workers run the Petastorm interpreter
    proc = subprocess.run(
        [str(PETASTORM_PY), str(SCRIPT), mode, str(data), str(out), *extra],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((out / "result.json").read_text())


def test_arrow_and_petastorm_train_the_same_model(bow_corpus, tmp_path):
    """Shuffling off, one seed: the same documents in the same order every epoch, and the same weights."""
    res = _run("equivalence", bow_corpus, tmp_path)
    arrow, petastorm = res["ids"]["arrow"], res["ids"]["petastorm"]
    assert [len(e) for e in arrow] == [403, 403] and len(set(arrow[0])) == 403
    assert petastorm == arrow
    assert res["weights"]["keys_equal"]
    assert res["weights"]["max_abs_diff"] <= 1e-6
    assert res["files"]["petastorm"] == res["files"]["arrow"]  # the same model folder
    assert "model.pt" in res["files"]["petastorm"]


@pytest.mark.ddp
def test_shuffled_petastorm_sees_every_document_once_per_epoch(bow_corpus, tmp_path):
    """1 and 2 DataLoader workers, and 2 gloo ranks of one worker each: each document exactly once per epoch."""
    res = _run("once", bow_corpus, tmp_path)
    for workers in ("workers1", "workers2"):
        r = res[workers]
        for epoch in r["epochs"]:
            assert len(epoch) == len(set(epoch)) == 403
        assert r["epochs"][0] != r["epochs"][1]  # shuffled again each epoch
        assert r["batches"] == [r["len"]] * 2  # len() is what the loader yields
    sub = res["sub_sample"]  # 0.5: half the documents, a different half each epoch
    assert [len(set(e)) for e in sub["epochs"]] == [len(e) for e in sub["epochs"]] == [202, 202]
    assert set(sub["epochs"][0]) != set(sub["epochs"][1])
    drop = res["drop_last"]  # 2 workers: only full batches, as many on every worker shard
    assert set(drop["sizes"]) == {32} and drop["batches"] == [drop["len"]] * 2
    assert [len(set(e)) for e in drop["epochs"]] == [len(e) for e in drop["epochs"]] == [sum(drop["take"])] * 2
    assert 403 - sum(drop["take"]) < 2 * 32  # at most a batch per shard left out
    ranks = res["ddp"]
    for e in range(2):
        a, b = ranks[0]["epochs"][e], ranks[1]["epochs"][e]
        assert not set(a) & set(b)
        assert len(a) + len(b) == len(set(a) | set(b)) == 403
        assert ranks[0]["batches"][e][0] == ranks[1]["batches"][e][0] == ranks[0]["batches"][e][1]  # equal steps per rank


def test_petastorm_fails_loudly_when_documents_go_missing(bow_corpus, tmp_path):
    """Rows lost under the reader raise at the end of the epoch; a missing file is caught against the manifest."""
    res = _run("faults", bow_corpus, tmp_path)
    assert "returned 398 rows in epoch 0, expected 403 from the Parquet footers" in res["row_count"]
    assert "hold 162 documents, the manifest says 403" in res["manifest"]


@pytest.mark.spark
@pytest.mark.slow
def test_spark_converter_trains_from_the_preprocessing_output(spark, newsgroups_sample, tmp_path):
    """ntm preprocess writes the Parquet; Spark 3.5 reads it as a DataFrame; 2 epochs through the converter; no cache left."""
    from jobs.preprocess import main as preprocess

    data, cache = tmp_path / "data", tmp_path / "cache"
    small = ["--set", "vocab_size=300", "--set", "threshold=5", "--set", "num_train_shards=2", "--set", "row_group_size=32"]
    assert preprocess(["--input", str(newsgroups_sample), "--output", str(data), *small]) == 0
    manifest = json.loads((data / "manifest.json").read_text())
    res = _run("converter", data, tmp_path / "model", cache.as_uri())
    assert res["epochs_trained"] == 2
    assert res["rows"] == manifest["splits"]["train"]["documents"]
    assert {"model.pt", "vocab.txt", "manifest.json", "topic_word.npy", "metrics.json"} <= set(res["files"])
    assert res["cache_left"] == []
