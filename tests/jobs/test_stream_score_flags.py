"""`ntm stream`'s drift flags resolve to the stream.drift* config keys (no Spark needed)."""

import pytest

from jobs.stream_score import build_parser, main, size_real_time_master, stream_config_from_args


def test_drift_is_on_by_default_and_the_flags_set_it():
    cfg = stream_config_from_args(build_parser().parse_args([]))
    assert cfg.drift and cfg.drift_window_s == 60 and cfg.drift_topic_name == "topic-mixtures-drift"
    cfg = stream_config_from_args(build_parser().parse_args(["--no-drift", "--drift-window", "30 seconds", "--output-topic", "o"]))
    assert not cfg.drift and cfg.drift_window_s == 30 and cfg.drift_topic_name == "o-drift"


@pytest.mark.parametrize(
    "args, match",
    [
        (["--drift-window", "soon"], "stream.drift_window='soon'"),
        (["--set", "drift_js_distance=0"], "stream.drift_js_distance=0"),
        (["--set", "drift_topic=topic-mixtures"], "stream.drift_topic='topic-mixtures'"),
    ],
)
def test_bad_drift_settings_are_config_errors(args, match, capsys):
    assert main(["--status", *args]) == 2
    assert match in capsys.readouterr().err


def _real_time(partitions, monkeypatch, master="local[2]", args=("--trigger", "real_time", "--input-topics", "docs")):
    from ntm_spark.core.config import SparkConfig
    from ntm_spark.tools import kafka_client

    counted = []
    monkeypatch.setattr(kafka_client, "count_partitions", lambda options, topics: counted.append(list(topics)) or partitions)
    cfg = stream_config_from_args(build_parser().parse_args(list(args)))
    spark_cfg = SparkConfig(master=master)
    return size_real_time_master(cfg, spark_cfg), spark_cfg.master, counted


def test_real_time_sizes_a_local_master_to_the_input_partitions(monkeypatch):
    # Real-time mode holds one task slot per Kafka partition: local[2] serves only 2 of 4 partitions.
    assert _real_time(4, monkeypatch) == ("local[4]", "local[4]", [["docs"]])
    assert _real_time(2, monkeypatch)[:2] == (None, "local[2]")  # enough slots: unchanged
    assert _real_time(None, monkeypatch)[:2] == (None, "local[2]")  # broker down / topic missing: unchanged
    assert _real_time(8, monkeypatch, master="yarn")[:2] == (None, "yarn")  # a cluster: the stream warns instead
    # Other triggers coalesce partitions into tasks (max_tasks_per_batch) and never need the slots.
    assert _real_time(8, monkeypatch, args=("--input-topics", "docs")) == (None, "local[2]", [])


def test_real_time_keeps_a_master_given_to_spark_submit(monkeypatch):
    import jobs.stream_score as job

    monkeypatch.setattr(job, "submitted_spark_conf", lambda: {"spark.master": "local[2]"})
    assert _real_time(4, monkeypatch) == (None, "local[2]", [])


@pytest.mark.parametrize("partitions, slots, expect", [(4, 2, "4 partitions but Spark has 2 task slots"), (2, 2, None), (None, 2, None)])
def test_real_time_slots_problem_names_the_fix(partitions, slots, expect):
    from ntm_spark.spark.stream_query import real_time_slots_problem

    problem = real_time_slots_problem(partitions, slots)
    if expect is None:
        assert problem is None
    else:
        assert expect in problem and "--master local[4]" in problem and "spark.executor.cores" in problem
