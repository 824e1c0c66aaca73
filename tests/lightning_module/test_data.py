from collections import Counter

import pyarrow.parquet as pq
import pytest
import torch
from torch.utils.data import DataLoader

from lightning_module.data import (
    BowDataModule,
    DataNotFoundError,
    GroupedSteps,
    ParquetBowDataset,
    densify_batch,
    document_cooccurrence,
    list_row_groups,
    plan_epoch,
    split_files,
)


def _all_docs(files):
    docs = {}
    for f in files:
        t = pq.read_table(f)
        for i, idx, val in zip(t["id"].to_pylist(), t["indices"].to_pylist(), t["values"].to_pylist()):
            docs[i] = (idx, val)
    return docs


def _epoch(files, world, batch_size, workers=0, **kw):
    per_rank_ids, per_rank_batches, contents = [], [], {}
    for rank in range(world):
        ds = ParquetBowDataset(files, batch_size, rank, world, with_ids=True, shuffle_buffer=50, **kw)
        batches = list(DataLoader(ds, batch_size=None, num_workers=workers))
        assert len(batches) == len(ds)
        ids = []
        for b in batches:
            assert b["indptr"].numel() - 1 == len(b["weight"]) == len(b["ids"])
            for r, w in enumerate(b["weight"].tolist()):
                if w > 0:
                    lo, hi = b["indptr"][r].item(), b["indptr"][r + 1].item()
                    ids.append(b["ids"][r])
                    contents[b["ids"][r]] = (b["indices"][lo:hi].tolist(), b["values"][lo:hi].tolist())
        per_rank_ids.append(ids)
        per_rank_batches.append(len(batches))
    return per_rank_ids, per_rank_batches, contents


def test_fixture_has_uneven_row_groups(bow_corpus):
    sizes = [g.num_rows for g in list_row_groups(split_files(bow_corpus, "train"))]
    assert len(set(sizes)) > 1 and sum(sizes) == 403


@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("shuffle", [False, True])
def test_every_doc_exactly_once_per_epoch_and_equal_batches(bow_corpus, world, shuffle):
    files = split_files(bow_corpus, "train")
    expected = _all_docs(files)
    ids, batches, contents = _epoch(files, world, 32, shuffle=shuffle, seed=3)
    flat = [i for r in ids for i in r]
    assert Counter(flat) == Counter(expected.keys())  # nothing lost, nothing repeated
    assert len(set(batches)) == 1  # DDP never waits on a short rank
    assert max(map(len, ids)) - min(map(len, ids)) <= world
    for doc_id, (idx, val) in contents.items():
        assert idx == expected[doc_id][0] and val == pytest.approx(expected[doc_id][1])


def test_rank_identity_unshuffled_is_contiguous(bow_corpus):
    files = split_files(bow_corpus, "train")
    order = [i for f in files for i in pq.read_table(f, columns=["id"])["id"].to_pylist()]
    ids, _, _ = _epoch(files, 3, 32)
    assert ids[0] == order[:135] and ids[1] == order[135:270] and ids[2] == order[270:]


def test_workers_cover_the_rank_exactly(bow_corpus):
    files = split_files(bow_corpus, "train")
    ids0, batches0, _ = _epoch(files, 2, 16, workers=0, shuffle=True, seed=1)
    ids2, batches2, _ = _epoch(files, 2, 16, workers=2, shuffle=True, seed=1)
    assert batches0 == batches2
    assert [sorted(a) for a in ids0] == [sorted(b) for b in ids2]


def test_shuffle_changes_with_epoch_and_is_seeded(bow_corpus):
    files = split_files(bow_corpus, "train")

    def order(epoch, seed=5):
        ds = ParquetBowDataset(files, 64, 0, 1, shuffle=True, seed=seed, with_ids=True)
        ds.set_epoch(epoch)
        return [i for b in ds for i in b["ids"]]

    assert order(0) == order(0)
    assert order(0) != order(1)
    assert sorted(order(0)) == sorted(order(1))


def test_drop_last_and_sub_sample(bow_corpus):
    files = split_files(bow_corpus, "train")
    ids, batches, _ = _epoch(files, 3, 32, drop_last=True, shuffle=True)
    assert batches == [4, 4, 4] and all(len(r) == 128 for r in ids)
    assert len({i for r in ids for i in r}) == 384
    ids, batches, _ = _epoch(files, 2, 32, sub_sample=0.5, shuffle=True)
    assert sum(map(len, ids)) == round(403 * 0.5) and len(set(batches)) == 1


def test_plan_more_ranks_than_rows_pads():
    plans = [plan_epoch([2], r, 3, 4) for r in range(3)]
    assert [p.num_real for p in plans] == [1, 1, 0] and {p.num_batches for p in plans} == {1}


def test_densify_matches_scipy_like_layout():
    batch = {
        "indptr": torch.tensor([0, 2, 2, 3]),
        "indices": torch.tensor([0, 3, 1], dtype=torch.int32),
        "values": torch.tensor([1.0, 2.0, 5.0]),
    }
    x = densify_batch(batch, 4)
    assert x.tolist() == [[1, 0, 0, 2], [0, 0, 0, 0], [0, 5, 0, 0]]


@pytest.mark.parametrize("dense", [False, True])
def test_datamodule_resident_gather_equals_streaming(bow_corpus, dense):
    dm = BowDataModule(str(bow_corpus), batch_size=50, resident=True, resident_dense=dense)
    ds = dm.dataset("validation")
    first = dm.gather_resident("validation", next(iter(ds)))
    assert ("x" in first) is dense  # dense shard: rows gathered from a (rows, V) matrix
    dense = torch.cat([densify_batch(dm.gather_resident("validation", b), dm.vocab_size) for b in ds])
    stream = BowDataModule(str(bow_corpus), batch_size=50).dataset("validation")
    dense2 = torch.cat([densify_batch(b, dm.vocab_size) for b in stream])
    assert torch.equal(dense, dense2)


@pytest.mark.parametrize("workers", [0, 2])
def test_grouped_steps_keep_every_batch_and_an_exact_len(bow_corpus, workers):
    files = split_files(str(bow_corpus), "train")
    plain = ParquetBowDataset(files, 16, 0, 1, with_ids=True)
    grouped = GroupedSteps(ParquetBowDataset(files, 16, 0, 1, with_ids=True), 3, workers)
    groups = list(DataLoader(grouped, batch_size=None, num_workers=workers))
    assert len(groups) == len(grouped) and grouped.num_steps == len(plain)
    assert all(1 <= len(g["steps"]) <= 3 for g in groups) and sum(len(g["steps"]) for g in groups) == len(plain)
    flat = [tuple(b["ids"]) for g in groups for b in g["steps"]]
    assert sorted(flat) == sorted(tuple(b["ids"]) for b in DataLoader(plain, batch_size=None, num_workers=workers))
    with pytest.raises(ValueError, match="steps_per_execution"):
        BowDataModule(str(bow_corpus), steps_per_execution=0)


def _batch_key(b):
    return tuple(b["ids"]), b["indices"].tolist(), b["values"].tolist(), b["weight"].tolist()


@pytest.mark.parametrize("workers", [0, 2])
def test_readahead_yields_exactly_the_synchronous_epochs(bow_corpus, workers):
    files = split_files(str(bow_corpus), "train")
    kw = dict(shuffle=True, seed=3, with_ids=True, shuffle_buffer=40)
    sync = ParquetBowDataset(files, 16, 0, 1, **kw)
    ahead = ParquetBowDataset(files, 16, 0, 1, readahead=2, **kw)
    loader_sync = DataLoader(sync, batch_size=None, num_workers=workers, persistent_workers=workers > 0)
    loader_ahead = DataLoader(ahead, batch_size=None, num_workers=workers, persistent_workers=workers > 0)
    epochs_sync = [[_batch_key(b) for b in loader_sync] for _ in range(3)]
    epochs_ahead = [[_batch_key(b) for b in loader_ahead] for _ in range(3)]
    assert epochs_ahead == epochs_sync
    assert epochs_sync[0] != epochs_sync[1]  # the shuffle really changed, so a stale read-ahead would show
    if workers == 0:
        assert ahead._ahead is not None and ahead._ahead.key == (3, (0, 1))  # epoch 3's first batches are being built
        ahead._ahead.thread.join()
        assert len(ahead._ahead.batches) == 2
        ahead.set_epoch(0)  # another epoch than the one read ahead: discarded, epoch 0 again
        assert [_batch_key(b) for b in ahead] == epochs_sync[0]
    with pytest.raises(ValueError, match="readahead"):
        ParquetBowDataset(files, 16, 0, 1, readahead=-1)


def test_readahead_of_a_whole_epoch_builds_the_next_while_this_one_is_consumed(bow_corpus):
    files = split_files(str(bow_corpus), "train")
    kw = dict(shuffle=True, seed=3, with_ids=True, shuffle_buffer=40)
    sync = ParquetBowDataset(files, 16, 0, 1, **kw)
    ahead = ParquetBowDataset(files, 16, 0, 1, readahead=1000, **kw)  # more batches than an epoch has
    expected = [[_batch_key(b) for b in sync] for _ in range(3)]
    got = [[_batch_key(b) for b in ahead]]  # epoch 0 is read synchronously, epoch 1 is then built whole
    it = iter(ahead)
    first = _batch_key(next(it))  # epoch 1 has started...
    assert ahead._ahead is not None and ahead._ahead.key == (2, (0, 1))  # ...and epoch 2 is being built already
    got.append([first] + [_batch_key(b) for b in it])
    got.append([_batch_key(b) for b in ahead])
    assert got == expected


def test_missing_data_names_the_fix(tmp_path):
    with pytest.raises(DataNotFoundError, match="ntm preprocess"):
        BowDataModule(str(tmp_path))
    with pytest.raises(ValueError, match="reader='avro'"):
        BowDataModule(str(tmp_path), reader="avro")


def test_document_cooccurrence_counts_pairs_of_words_per_document(bow_corpus):
    docs = list(_all_docs(split_files(bow_corpus, "train")).values())
    present = torch.zeros(len(docs), 120, dtype=torch.float64)
    for r, (idx, _) in enumerate(docs):
        present[r, idx] = 1.0
    counts, n = document_cooccurrence(bow_corpus, 120, block_rows=7)  # blocks that cut row groups
    assert n == len(docs) and torch.equal(counts, present.t() @ present)
    capped, n10 = document_cooccurrence(bow_corpus, 120, max_docs=10)
    first10 = [d for f in split_files(bow_corpus, "train") for d in pq.read_table(f)["indices"].to_pylist()][:10]
    assert n10 == 10 and capped.diagonal().sum() == sum(len(d) for d in first10)
