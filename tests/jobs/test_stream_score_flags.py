"""`ntm stream`'s drift and scorer flags resolve to the stream.drift* config keys (no Spark needed)."""

import pytest

from jobs.stream_score import build_parser, main, size_real_time_master, stream_config_from_args


def test_drift_is_on_by_default_and_the_flags_set_it():
    cfg = stream_config_from_args(build_parser().parse_args([]))
    assert cfg.drift and cfg.drift_window_s == 60 and cfg.drift_topic_name == "topic-mixtures-drift"
    cfg = stream_config_from_args(build_parser().parse_args(["--no-drift", "--drift-window", "30 seconds", "--output-topic", "o"]))
    assert not cfg.drift and cfg.drift_window_s == 30 and cfg.drift_topic_name == "o-drift"


def test_scorer_is_auto_by_default_and_the_flag_sets_it(capsys):
    assert stream_config_from_args(build_parser().parse_args([])).scorer == "auto"
    assert stream_config_from_args(build_parser().parse_args(["--scorer", "python"])).scorer == "python"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--scorer", "onnx"])
    assert "invalid choice: 'onnx'" in capsys.readouterr().err
    assert main(["--status", "--set", "scorer=fast"]) == 2
    assert "stream.scorer" in capsys.readouterr().err


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


@pytest.fixture(scope="module")
def partitioned_topics(kafka_bootstrap):
    """Real topics on the real broker: ``two`` with 2 partitions, ``four`` with 4 (``missing`` is never created)."""
    import uuid

    from ntm_spark.tools.services import create_topics

    tag = uuid.uuid4().hex[:8]
    names = {"two": f"slots-two-{tag}", "four": f"slots-four-{tag}", "missing": f"slots-missing-{tag}"}
    create_topics(kafka_bootstrap, names["two"], partitions=2)
    create_topics(kafka_bootstrap, names["four"], partitions=4)
    return kafka_bootstrap, names


def _real_time(topics, which, master="local[2]", trigger=("--trigger", "real_time"), bootstrap=None):
    from ntm_spark.core.config import SparkConfig

    server, names = topics
    args = [*trigger, "--input-topics", names[which], "--bootstrap-servers", bootstrap or server]
    cfg = stream_config_from_args(build_parser().parse_args(args))
    spark_cfg = SparkConfig(master=master)
    return size_real_time_master(cfg, spark_cfg), spark_cfg.master


@pytest.mark.kafka
def test_real_time_sizes_a_local_master_to_the_input_partitions(partitioned_topics):
    # Real-time mode holds one task slot per Kafka partition: local[2] serves only 2 of 4 partitions.
    assert _real_time(partitioned_topics, "four") == ("local[4]", "local[4]")
    assert _real_time(partitioned_topics, "two") == (None, "local[2]")  # enough slots: unchanged
    assert _real_time(partitioned_topics, "missing") == (None, "local[2]")  # topic missing: unchanged, not created
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=partitioned_topics[0])
    try:
        assert partitioned_topics[1]["missing"] not in admin.list_topics()
    finally:
        admin.close()
    assert _real_time(partitioned_topics, "four", bootstrap="127.0.0.1:1") == (None, "local[2]")  # broker down
    assert _real_time(partitioned_topics, "four", master="yarn") == (None, "yarn")  # a cluster: the stream warns instead
    # Other triggers coalesce partitions into tasks (max_tasks_per_batch) and never need the slots.
    assert _real_time(partitioned_topics, "four", trigger=()) == (None, "local[2]")


@pytest.mark.kafka
def test_real_time_keeps_a_master_given_to_spark_submit(partitioned_topics, monkeypatch):
    import jobs.stream_score as job

    monkeypatch.setattr(job, "submitted_spark_conf", lambda: {"spark.master": "local[2]"})  # what spark-submit hands the job
    assert _real_time(partitioned_topics, "four") == (None, "local[2]")


@pytest.mark.parametrize("partitions, slots, expect", [(4, 2, "4 partitions but Spark has 2 task slots"), (2, 2, None), (None, 2, None)])
def test_real_time_slots_problem_names_the_fix(partitions, slots, expect):
    from ntm_spark.spark.stream_query import real_time_slots_problem

    problem = real_time_slots_problem(partitions, slots)
    if expect is None:
        assert problem is None
    else:
        assert expect in problem and "--master local[4]" in problem and "spark.executor.cores" in problem
