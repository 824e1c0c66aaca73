import json
import random

import pyarrow.parquet as pq
import pytest

from jobs.preprocess import main
from ntm_spark.core.schema import SPLITS, bow_arrow_schema
from ntm_spark.core.vocab import Vocabulary

pytestmark = pytest.mark.spark

SMALL = ["--set", "vocab_size=400", "--set", "threshold=5", "--set", "row_group_size=16", "--set", "num_train_shards=3"]


def _read_split(path):
    return pq.ParquetDataset(str(path)).read()


def test_end_to_end_manifest_matches_parquet(spark, newsgroups_sample, tmp_path):
    out = tmp_path / "out"
    assert main(["--input", str(newsgroups_sample), "--output", str(out), *SMALL]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    vocab = Vocabulary.from_file(out / "vocab.txt")
    assert manifest["vocabulary"]["size"] == len(vocab) == 400
    assert manifest["vocabulary"]["sha256"] == vocab.sha256
    assert manifest["code_version"]["git_commit"] and manifest["params"]["vocab_size"] == 400
    assert manifest["text_rules"] == {"rules": "v2", "clean": True, "stop_words": "english", "module": "ntm_spark.core.text"}
    docs = manifest["documents"]
    assert docs["read"] == 200
    # 20 Newsgroups keeps its by-date split: the test folder is the test split, and the vocabulary
    # is fitted on the training split only.
    assert manifest["split"]["keep_official_split"] is True
    assert manifest["vocabulary"]["fit_splits"] == ["train"]
    assert 0 < manifest["vocabulary"]["fit_documents"] < 120  # 120 documents in the train folder, some in validation
    assert {r["id"].split("/")[0] for r in _read_split(out / "test").to_pylist()} == {"test"}
    assert {r["id"].split("/")[0] for s in ("train", "validation") for r in _read_split(out / s).to_pylist()} == {"train"}
    assert docs["read"] == docs["kept"] + sum(docs["dropped"].values())
    # Compare value types: Spark writes list elements as "not null", bow_arrow_schema() leaves them nullable.
    expected_fields = {f.name: str(getattr(f.type, "value_type", f.type)) for f in bow_arrow_schema()}
    for split in SPLITS:
        table = _read_split(out / split)
        assert table.num_rows == docs["per_split"][split] == manifest["splits"][split]["documents"]
        assert {f.name: str(getattr(f.type, "value_type", f.type)) for f in table.schema} == expected_fields
        for part in (out / split).glob("*.parquet"):
            meta = pq.ParquetFile(part).metadata
            assert all(meta.row_group(i).num_rows <= 16 for i in range(meta.num_row_groups))
        rows = table.to_pylist()
        for row in rows[:50]:
            assert row["indices"] == sorted(row["indices"]) and max(row["indices"]) < len(vocab)
            assert row["n_words"] == sum(row["values"]) > 5
            assert row["label"] == row["id"].split("/")[1]
    assert manifest["splits"]["train"]["files"] == 3
    # The drift monitor's OOV baseline: each split's normalized and in-vocabulary tokens, counted
    # before short documents are dropped (so at least what the written split holds).
    assert sum(manifest["splits"][s]["tokens"] for s in SPLITS) == docs["tokens"]
    for split in SPLITS:
        info = manifest["splits"][split]
        assert info["tokens"] > info["in_vocab_tokens"] >= sum(_read_split(out / split).column("n_words").to_pylist()) > 0

    # An existing output is refused without --overwrite, and left alone.
    before = (out / "manifest.json").read_text()
    assert main(["--input", str(newsgroups_sample), "--output", str(out), *SMALL]) == 1
    assert (out / "manifest.json").read_text() == before


def test_vocabulary_is_fitted_on_the_training_split_by_default(spark, tmp_path):
    """A word only the by-date test folder uses never enters the vocabulary, unless every split fits it."""
    rng = random.Random(2)
    common = "engine wheel brake piston valve gear clutch tire road fuel".split()
    root = tmp_path / "20ng"
    for folder, n, extra in (("20news-bydate-train", 12, ""), ("20news-bydate-test", 6, " zeppelin zeppelin")):
        (root / folder / "rec.autos").mkdir(parents=True)
        for i in range(n):
            text = "Subject: cars\n\n" + " ".join(rng.choice(common) for _ in range(30)) + extra
            (root / folder / "rec.autos" / str(i)).write_text(text)
    args = ["--input", str(root), "--set", "threshold=0", "--set", "vocab_size=50"]
    assert main([*args, "--output", str(tmp_path / "train_only")]) == 0
    manifest = json.loads((tmp_path / "train_only" / "manifest.json").read_text())
    assert "zeppelin" not in Vocabulary.from_file(tmp_path / "train_only" / "vocab.txt").words
    assert manifest["documents"]["per_split"]["test"] == 6
    assert manifest["vocabulary"]["fit_documents"] == 12 - manifest["documents"]["per_split"]["validation"]

    assert main([*args, "--output", str(tmp_path / "all"), "--set", "vocab_fit_splits=[train, validation, test]"]) == 0
    assert "zeppelin" in Vocabulary.from_file(tmp_path / "all" / "vocab.txt").words
    assert json.loads((tmp_path / "all" / "manifest.json").read_text())["vocabulary"]["fit_documents"] == 18

    # The seed's behaviour, on request: the folders mixed by a seeded hash of the id.
    assert main([*args, "--output", str(tmp_path / "mixed"), "--set", "keep_official_split=false"]) == 0
    assert json.loads((tmp_path / "mixed" / "manifest.json").read_text())["split"]["keep_official_split"] is False


def test_bad_input_is_counted_never_fatal(spark, tmp_path, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    rng = random.Random(0)
    words = "engine wheel brake piston valve gear clutch tire road fuel motor spark".split()
    for i in range(24):
        (corpus / f"doc{i:02d}.txt").write_text(" ".join(rng.choice(words) for _ in range(40)))
    (corpus / "empty.txt").write_text("")
    (corpus / "blank.txt").write_text("   \n\t\n")
    (corpus / "junk.bin").write_bytes(bytes(rng.randrange(256) for _ in range(4096)))
    (corpus / "latin1.txt").write_bytes(("caf\xe9 " + " ".join(words) * 3).encode("latin-1"))
    (corpus / "huge.txt").write_text((" ".join(words) + " ") * 150_000)  # a 10 MB document
    out = tmp_path / "out"
    args = ["--input", str(corpus), "--format", "text", "--output", str(out), "--set", "threshold=5", "--set", "max_df=1.0"]
    assert main([*args, "--set", "split=[0.5, 0.25, 0.25]"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    docs = manifest["documents"]
    # Spark's file sources skip zero-byte files (empty.txt); the blank one is read and dropped.
    assert docs["read"] == 28
    assert docs["duplicate_id_check"].startswith("skipped")  # ids are relative paths
    assert docs["dropped"].get("empty_text") == 1 and docs["dropped"].get("binary") == 1, docs["dropped"]
    assert docs["dropped"]["too_large"] == 1  # the 10 MB document: over the shared 1 MB limit
    assert docs["decode_fallback"] >= 2  # latin-1 text and the junk
    assert docs["kept"] == 25  # 24 + latin-1
    assert docs["kept"] == sum(_read_split(out / s).num_rows for s in SPLITS)
    assert any("fewer than vocab_size=2000" in w for w in manifest["warnings"])  # only 12 words exist
    assert manifest["vocabulary"]["size"] == 12

    # --overwrite replaces it; a higher limit keeps the large document.
    assert main([*args, "--overwrite", "--set", "max_doc_bytes=20000000"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["documents"]["dropped"]["too_large"] == 0 and manifest["documents"]["kept"] == 26


def test_missing_input_and_empty_corpus_give_clear_errors(spark, tmp_path, capsys):
    missing = tmp_path / "does-not-exist"
    assert main(["--input", str(missing), "--format", "text", "--output", str(tmp_path / "o1")]) == 1
    assert str(missing) in capsys.readouterr().err

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "blank.txt").write_text(" ")
    assert main(["--input", str(empty), "--format", "text", "--output", str(tmp_path / "o2")]) == 1
    err = capsys.readouterr().err
    assert "dropped" in err and "'empty_text': 1" in err
    assert not (tmp_path / "o2").exists()

    assert main(["--output", str(tmp_path / "o3"), "--set", "vocab_size=1"]) == 2
    assert "vocab_size" in capsys.readouterr().err


def test_repeated_ids_keep_one_copy_and_count_once(spark, tmp_path):
    """JSON lines whose ids repeat: one copy each is kept, and the vocabulary counts it once."""
    rng = random.Random(1)
    common = "engine wheel brake piston valve gear clutch tire".split()
    rows = [{"id": f"d{i}", "text": " ".join(rng.choice(common) for _ in range(30))} for i in range(20)]
    # Three more copies of d0 and d1, whose only "rare" word then appears in 2 documents, not 8.
    rows[0]["text"] += " zeppelin"
    rows[1]["text"] += " zeppelin"
    rows += [dict(rows[0]), dict(rows[1])] * 3
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    args = ["--input", str(corpus), "--format", "jsonl", "--output", str(out), "--set", "threshold=0"]
    assert main([*args, "--set", "max_df=0.2", "--set", "split=[1.0, 0.0, 0.0]"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    docs = manifest["documents"]
    assert docs["read"] == 26 and docs["dropped"]["duplicate_id"] == 6
    assert docs["duplicate_id_check"] == "checked"
    # max_df=0.2 of the 20 distinct documents: "zeppelin" (in 2 once deduplicated, 8 before) is the
    # only word left, so only d0 and d1 keep a word; one copy of each is written.
    assert Vocabulary.from_file(out / "vocab.txt").words == ("zeppelin",)
    rows = [r for s in SPLITS for r in _read_split(out / s).to_pylist()]
    assert sorted(r["id"] for r in rows) == ["d0", "d1"] and docs["dropped"]["too_short"] == 18
    assert all(r["values"] == [1.0] for r in rows)


def test_runs_under_spark_submit(newsgroups_sample, tmp_path):
    # The docstring's usage line, for real: spark-submit starts the JVM before the job builds its
    # session, so the builder must not set a class path or file system that JVM lacks.
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "out"
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1", "PYTHONPATH": str(root)}
    cmd = [str(Path(sys.executable).parent / "spark-submit"), "--master", "local[1]", str(root / "jobs" / "preprocess.py"),
           "--input", str(newsgroups_sample), "--output", str(out), *SMALL]  # fmt: skip
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["documents"]["read"] == 200 and manifest["vocabulary"]["size"] == 400
