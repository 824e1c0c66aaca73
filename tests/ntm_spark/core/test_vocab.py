import hashlib

import numpy as np
import pytest

from ntm_spark.core.vocab import Vocabulary


def test_round_trip_and_sha256(tmp_path):
    vocab = Vocabulary(["car", "engine", "café"])
    path = vocab.save(tmp_path / "sub" / "vocab.txt")
    assert path.read_bytes() == "car\nengine\ncafé\n".encode("utf-8")
    loaded = Vocabulary.from_file(path)
    assert loaded == vocab and len(loaded) == 3
    assert loaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert loaded.index_of("engine") == 1 and loaded.index_of("wheel") == -1
    assert "car" in loaded and list(loaded) == ["car", "engine", "café"]


def test_to_bow_counts_in_ascending_order():
    vocab = Vocabulary(["a1", "b2", "c3", "d4"])
    indices, values = vocab.to_bow(["d4", "b2", "zz", "d4", "a1", "d4"])
    assert indices.dtype == np.int32 and values.dtype == np.float32
    assert indices.tolist() == [0, 1, 3] and values.tolist() == [1.0, 1.0, 3.0]
    assert vocab.to_dense(["d4", "d4"]).tolist() == [0, 0, 0, 2]


def test_to_bow_of_nothing_is_empty():
    indices, values = Vocabulary(["a1"]).to_bow(["zz"])
    assert indices.size == 0 and values.size == 0 and indices.dtype == np.int32 and values.dtype == np.float32


def test_bad_vocabularies_are_refused(tmp_path):
    with pytest.raises(ValueError, match="appears twice"):
        Vocabulary(["a", "b", "a"])
    with pytest.raises(ValueError, match="word 1"):
        Vocabulary(["a", " b"])
    bad = tmp_path / "vocab.txt"
    bad.write_text("a\n\nb\n")
    with pytest.raises(ValueError, match="malformed vocabulary file"):
        Vocabulary.from_file(bad)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        Vocabulary.from_file(tmp_path / "missing.txt")
