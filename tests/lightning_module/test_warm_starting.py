"""Warm start (issue 21): topic permutation, word-vector rotation, data on the champion's vocabulary, and a warm run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from lightning_module.model import NTMModel
from lightning_module.model_folder import load_model_folder
from lightning_module.train import train_model
from lightning_module.warm_start import (
    WarmStartError,
    align_to_reference,
    load_warm_start,
    permute_topics,
    prepare_warm_start_data,
    procrustes_align,
    read_split,
)
from ntm_spark.core.config import TrainConfig, from_dict


@pytest.mark.parametrize(
    "options",
    [
        {"decoder": "linear", "batch_norm": True, "decoder_batch_norm": True},
        {"decoder": "embedding", "prior": "dirichlet", "batch_norm": True},
        {"decoder": "linear", "batch_norm": False, "topic_activation": "sigmoid"},
    ],
)
def test_permuting_topics_permutes_every_output_and_keeps_the_loss(options):
    torch.manual_seed(0)
    model = NTMModel(40, 5, **options)
    x = torch.poisson(torch.full((16, 40), 0.7))
    model.train()
    model.loss(x)  # batch-norm running statistics that differ per topic
    model.eval()
    before_theta = model.infer_topics(x)
    before_tw = model.topic_word()
    before_loss = model.loss(x, sample=False).loss
    order = [3, 0, 4, 1, 2]
    permute_topics(model, order)
    assert torch.allclose(model.infer_topics(x), before_theta[:, order], atol=1e-6)
    assert torch.allclose(model.topic_word(), before_tw[order], atol=1e-6)
    assert torch.allclose(model.loss(x, sample=False).loss, before_loss, atol=1e-4)
    with pytest.raises(ValueError, match="not a permutation"):
        permute_topics(model, [0, 0, 1, 2, 3])


def test_procrustes_undoes_a_rotation_of_the_word_vectors():
    torch.manual_seed(1)
    vectors = torch.nn.functional.normalize(torch.randn(200, 16), dim=1)
    rotation, _ = torch.linalg.qr(torch.randn(16, 16))
    rotated = vectors @ rotation
    assert (rotated - vectors).abs().max() > 0.3
    assert torch.allclose(procrustes_align(rotated, vectors), vectors, atol=1e-5)


def _train(corpus, out, **kw):
    base = {
        "data_dir": str(corpus), "output_dir": str(out), "num_topics": 6, "epochs": 3, "mini_batch_size": 64,
        "num_workers": 0, "accelerator": "cpu", "devices": 1, "progress_bar": False, "threads_per_process": 1,
        "checkpoint": False,
    }  # fmt: skip
    return train_model(from_dict(TrainConfig, {**base, **kw}))


@pytest.fixture(scope="module")
def champion(bow_corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("champion") / "model"
    _train(bow_corpus, out, epochs=4)
    return out


def test_align_to_reference_undoes_a_shuffle_of_the_champions_topics(champion):
    warm = load_warm_start(champion, "champion v1")
    model, _, vocab = load_model_folder(champion)
    permute_topics(model, [5, 3, 0, 1, 4, 2])
    order, stability = align_to_reference(model, warm, vocab)
    assert sorted(order.tolist()) == list(range(6)) and not np.array_equal(order, np.arange(6))
    assert np.allclose(model.topic_word().numpy(), warm.topic_word, atol=1e-6)
    assert stability.changed == 0 and max(stability.distances) < 1e-3
    assert stability.top_words[0]["before"] == stability.top_words[0]["after"]


def _with_other_vocabulary(src: Path, dest: Path) -> list[str]:
    """A copy of ``src`` whose vocabulary is reversed and whose first two words are new ones."""
    from lightning_module.synthetic import write_csr_split

    words = (src / "vocab.txt").read_text().split()
    new_words = ["brandnew", "unseen"] + words[2:]  # indices 0, 1 now mean words the champion lacks
    dest.mkdir(parents=True)
    for split in ("train", "validation", "test"):
        block, labels = read_split(src, split)
        write_csr_split(dest / split, block.indptr, block.indices, block.values, ids=list(block.ids), labels=labels)
    (dest / "vocab.txt").write_text("".join(w + "\n" for w in new_words))
    return new_words


def test_new_data_goes_onto_the_champions_vocabulary_with_new_words_counted_and_replay(bow_corpus, tmp_path):
    words = (bow_corpus / "vocab.txt").read_text().split()
    other = tmp_path / "other"
    other_words = _with_other_vocabulary(bow_corpus, other)
    src, _ = read_split(other, "train")
    dropped = float(src.values[np.isin(src.indices, [0, 1])].sum())
    assert dropped > 0
    facts = prepare_warm_start_data(other, words, tmp_path / "prepared", replay_data=bow_corpus, replay_fraction=0.5, seed=3)
    out, _ = read_split(tmp_path / "prepared", "train")
    new_rows = np.asarray([not str(i).startswith("replay/") for i in out.ids])
    assert facts["splits"]["train"]["new_documents"] == int(new_rows.sum())
    assert facts["splits"]["train"]["replay_documents"] == round(0.5 * new_rows.sum())
    present = {["brandnew", "unseen"][i] for i in set(src.indices[np.isin(src.indices, [0, 1])].tolist())}
    assert facts["new_words"]["distinct"] == len(present) and facts["new_words"]["tokens"] == int(dropped)
    assert {w for w, _c in facts["new_words"]["top"]} == present
    # every kept count lands on the same word in the champion's vocabulary
    first = src.take([0])
    mapped = {other_words[i]: v for i, v in zip(first.indices, first.values) if other_words[i] in words}
    got_row = out.take([int(np.flatnonzero(out.ids == src.ids[0])[0])])
    assert {words[i]: v for i, v in zip(got_row.indices, got_row.values)} == mapped
    assert all(np.all(np.diff(out.indices[out.indptr[r] : out.indptr[r + 1]]) > 0) for r in range(len(out)))
    assert (tmp_path / "prepared" / "vocab.txt").read_text().split() == words
    manifest = json.loads((tmp_path / "prepared" / "manifest.json").read_text())
    assert manifest["splits"]["train"]["documents"] == len(out)
    assert pq.read_table(tmp_path / "prepared" / "test").num_rows == facts["splits"]["test"]["new_documents"]
    # a finished folder is reused (every DDP rank re-runs the command)
    mtime = (tmp_path / "prepared" / "manifest.json").stat().st_mtime_ns
    assert prepare_warm_start_data(other, words, tmp_path / "prepared") == facts
    assert (tmp_path / "prepared" / "manifest.json").stat().st_mtime_ns == mtime


def test_data_without_a_champion_word_is_refused(bow_corpus, tmp_path):
    with pytest.raises(WarmStartError, match="no training document with a word of the champion's vocabulary"):
        prepare_warm_start_data(bow_corpus, ["zzz-not-there"], tmp_path / "prepared")
    assert not (tmp_path / "prepared").exists()


def test_a_warm_run_starts_from_the_champion_and_keeps_its_topic_ids(bow_corpus, champion, tmp_path):
    warm = load_warm_start(champion, "champion v1")
    words = (bow_corpus / "vocab.txt").read_text().split()
    prepare_warm_start_data(bow_corpus, words, tmp_path / "data", replay_data=None)
    base = {
        "data_dir": str(tmp_path / "data"), "output_dir": str(tmp_path / "warm"), "num_topics": 6, "epochs": 2,
        "mini_batch_size": 64, "num_workers": 0, "accelerator": "cpu", "devices": 1, "progress_bar": False,
        "threads_per_process": 1, "checkpoint": False, "learning_rate": 1e-6,
    }  # fmt: skip
    result = train_model(from_dict(TrainConfig, base), warm_start=warm)
    stability = json.loads((tmp_path / "warm" / "topic_stability.json").read_text())
    assert stability["reference"] == "champion v1" and len(stability["distances"]) == 6
    # a learning rate of 1e-6 barely moves the weights: every topic keeps its id
    assert stability["summary"]["kept"] == 6 and result.metrics["topics_kept_share"] == 1.0
    hparams = json.loads((tmp_path / "warm" / "hparams.json").read_text())
    assert hparams["training"]["warm_start"]["from"] == "champion v1"
    assert hparams["model"] == json.loads((champion / "hparams.json").read_text())["model"]
    shutil.rmtree(tmp_path / "warm")
