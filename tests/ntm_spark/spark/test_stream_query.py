"""The streaming query's Kafka client settings (no Spark needed)."""

import pytest

from ntm_spark.core.config import load_config
from ntm_spark.spark.stream_query import kafka_options


def _cfg(*overrides):
    return load_config("stream", overrides=["bootstrap_servers=\"b:9092\"", *overrides])


def test_micro_batch_defaults_fetch_and_produce_in_larger_requests():
    # Measured on the 2-core box (docs/streaming.md): a backlog drained 1.4-1.8x faster.
    for trigger in ("processing_time", "available_now"):
        cfg = _cfg(f"trigger=\"{trigger}\"", "kafka_options={\"client.id\": \"x\"}")
        base = {"kafka.bootstrap.servers": "b:9092", "kafka.client.id": "x"}
        assert kafka_options(cfg) == base  # the broker probes and the drift sink
        assert kafka_options(cfg, "source") == {**base, "kafka.max.partition.fetch.bytes": "16777216"}
        assert kafka_options(cfg, "sink") == {**base, "kafka.batch.size": "524288", "kafka.linger.ms": "20"}
    cfg = _cfg("micro_batch_source_options=null", "micro_batch_sink_options=null", "kafka_options={\"linger.ms\": 0}")
    assert kafka_options(cfg, "source") == kafka_options(cfg) == {"kafka.bootstrap.servers": "b:9092", "kafka.linger.ms": "0"}
    cfg = _cfg("kafka_options={\"linger.ms\": 0}")
    assert kafka_options(cfg, "sink")["kafka.linger.ms"] == "0"  # kafka_options win


def test_real_time_defaults_batch_the_sources_fetches():
    # Measured on the 2-core box (docs/streaming.md): fewer, fuller fetches; the sink keeps Kafka's defaults.
    cfg = _cfg("trigger=\"real_time\"")
    assert kafka_options(cfg, "source") == {"kafka.bootstrap.servers": "b:9092", "kafka.fetch.min.bytes": "65536", "kafka.fetch.max.wait.ms": "5"}
    assert kafka_options(cfg, "sink") == {"kafka.bootstrap.servers": "b:9092"}
    cfg = _cfg("trigger=\"real_time\"", "real_time_sink_options={\"linger.ms\": 5}")
    assert kafka_options(cfg, "sink") == {"kafka.bootstrap.servers": "b:9092", "kafka.linger.ms": "5"}
    assert kafka_options(cfg) == {"kafka.bootstrap.servers": "b:9092"}  # the broker probes and the drift sink: none


def test_kafka_options_win_over_the_real_time_defaults_and_null_turns_them_off():
    cfg = _cfg("trigger=\"real_time\"", "kafka_options={\"linger.ms\": 0, \"kafka.fetch.max.wait.ms\": 100}")
    assert kafka_options(cfg, "sink")["kafka.linger.ms"] == "0"
    source = kafka_options(cfg, "source")
    assert source["kafka.fetch.max.wait.ms"] == "100" and source["kafka.fetch.min.bytes"] == "65536"
    cfg = _cfg("trigger=\"real_time\"", "real_time_source_options=null", "real_time_sink_options=null")
    assert kafka_options(cfg, "source") == kafka_options(cfg, "sink") == {"kafka.bootstrap.servers": "b:9092"}


def test_an_unknown_role_is_refused():
    with pytest.raises(ValueError, match="role='producer'"):
        kafka_options(_cfg("trigger=\"real_time\""), "producer")
