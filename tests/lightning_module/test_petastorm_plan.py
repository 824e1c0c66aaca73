"""The Petastorm reader's epoch plan and its refusals (no Petastorm needed: these run in the main environment)."""

import pytest

from lightning_module.data import BowDataModule
from lightning_module.petastorm_backend import check_pool, plan_shards, shard_row_counts, split_file_list
from ntm_spark.core.config import ConfigError, TrainConfig, from_dict


def test_every_shard_yields_the_largest_shards_rows_padded():
    plan = plan_shards([37, 37, 37, 20], shard_count=3, batch_size=32)
    assert plan.shard_rows == (57, 37, 37) and plan.take == (57, 37, 37)
    assert plan.num_rows == 57 and plan.num_batches == 2 and plan.padding_rows == 40


def test_sub_sample_and_drop_last_follow_the_arrow_rules_per_shard():
    assert plan_shards([100, 100], 2, 32, sub_sample=0.5).take == (50, 50)
    plan = plan_shards([100, 70], 2, 32, drop_last=True)
    assert plan.take == (64, 64) and plan.num_rows == 64 and plan.padding_rows == 0  # the smaller shard's full batches
    assert plan_shards([5], 4, 32).shard_rows == (5, 0, 0, 0)  # more shards than row groups: empty ones pad


def test_shard_counts_follow_petastorms_round_robin(bow_corpus):
    files = split_file_list(bow_corpus / "train")
    assert [f.rsplit("/", 1)[1] for f in files] == ["part-00000.parquet", "part-00001.parquet"]
    counts = shard_row_counts(bow_corpus / "train", 3)
    assert sum(counts) == 403 and len(counts) == 3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"sub_sample": 0.0}, "sub_sample=0.0"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"shard_count": 0}, "shard_count=0"),
    ],
)
def test_plan_refuses_values_out_of_range(kwargs, message):
    args = {"group_rows": [10], "shard_count": 1, "batch_size": 4, **kwargs}
    with pytest.raises(ValueError, match=message):
        plan_shards(**args)


def test_thread_pool_and_resident_are_refused(bow_corpus):
    with pytest.raises(ValueError, match="reader_pool_type='thread'.*returns 0 rows"):
        check_pool("thread")
    with pytest.raises(ValueError, match="resident=True with reader='petastorm'.*set resident=false"):
        BowDataModule(str(bow_corpus), reader="petastorm", resident=True)
    with pytest.raises(ConfigError, match=r"petastorm\.reader_pool_type='thread'"):
        from_dict(TrainConfig, {"petastorm": {"reader_pool_type": "thread"}})


@pytest.mark.parametrize(
    "over, key",
    [
        ({"num_workers": 2}, "train.num_workers=2"),
        ({"sub_sample": 0.5}, "train.sub_sample=0.5"),
        ({"drop_last": True}, "train.drop_last=True"),
        ({"devices": 2}, "train.devices=2"),
    ],
)
def test_the_spark_converter_refuses_what_it_cannot_honour(over, key):
    from ntm_spark.spark.petastorm_train import check_converter_config

    cfg = from_dict(TrainConfig, {"num_workers": 0, "accelerator": "cpu", "devices": 1, **over})
    with pytest.raises(ConfigError, match=key.replace(".", r"\.") + ".*--from-spark-df"):
        check_converter_config(cfg)
