"""The supervisor's rules (the real broker outage is tests/integration/test_stream_hardening.py)."""

from ntm_spark.spark.stream_supervisor import BROKER, OTHER, Backoff, classify_failure, first_line


def test_kafka_connectivity_failures_are_told_from_bugs():
    assert classify_failure("Error in attempt 3 getting Kafka offsets: \norg.apache.kafka.common.errors.TimeoutException: x") == BROKER
    assert classify_failure("org.apache.kafka.common.errors.UnknownTopicOrPartitionException: This server does not host") == BROKER
    assert classify_failure("Caused by: org.apache.kafka.common.errors.TimeoutException: Timed out waiting for a node assignment") == BROKER
    assert classify_failure("pyarrow ArrowException: Wrapping ... failed") == OTHER
    assert classify_failure("ZeroDivisionError: division by zero") == OTHER
    assert classify_failure(None) == OTHER


def test_backoff_doubles_up_to_its_cap_and_resets():
    b = Backoff(initial_s=0.5, max_s=3)
    assert [b.next_delay() for _ in range(5)] == [0.5, 1.0, 2.0, 3, 3]
    b.reset()
    assert b.next_delay() == 0.5


def test_first_line_skips_stack_frames():
    text = "=== Streaming Query ===\n  at org.foo.Bar(Bar.java:1)\n[STREAM_FAILED] Query terminated\nmore"
    assert first_line(text) == "[STREAM_FAILED] Query terminated"
