"""The real broker round-trips messages, and Spark's Kafka source (the connector jars) reads them."""

import uuid

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

N = 1000


@pytest.fixture(scope="module")
def filled_topic(kafka_bootstrap):
    from kafka import KafkaProducer
    from kafka.serializer import DefaultSerializer, JsonSerializer

    from ntm_spark.tools.services import create_topics

    topic = f"roundtrip-{uuid.uuid4().hex[:8]}"
    create_topics(kafka_bootstrap, topic, partitions=3)
    producer = KafkaProducer(
        bootstrap_servers=kafka_bootstrap,
        key_serializer=DefaultSerializer(),
        value_serializer=JsonSerializer(),
        acks="all",
    )
    for i in range(N):
        producer.send(topic, key=f"doc-{i}", value={"id": f"doc-{i}", "text": f"message number {i}"})
    producer.flush()
    producer.close()
    return topic


def test_kafka_python_roundtrip(kafka_bootstrap, filled_topic):
    from kafka import KafkaConsumer
    from kafka.serializer import DefaultSerializer, JsonSerializer

    consumer = KafkaConsumer(
        filled_topic,
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=f"test-{uuid.uuid4().hex[:6]}",
        consumer_timeout_ms=10000,
        key_deserializer=DefaultSerializer(),
        value_deserializer=JsonSerializer(),
    )
    ids = set()
    try:
        for msg in consumer:
            ids.add(msg.value["id"])
            assert msg.key == msg.value["id"]
            if len(ids) == N:
                break
    finally:
        consumer.close()
    assert ids == {f"doc-{i}" for i in range(N)}


@pytest.mark.spark
def test_spark_batch_read_gets_every_message(spark, kafka_bootstrap, filled_topic):
    from pyspark.sql import functions as F

    df = (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", kafka_bootstrap)
        .option("subscribe", filled_topic)
        .option("startingOffsets", "earliest")
        .option("endingOffsets", "latest")
        .load()
    )
    rows = df.select(F.col("key").cast("string").alias("key"), F.get_json_object(F.col("value").cast("string"), "$.id").alias("id"))
    assert rows.count() == N
    assert rows.filter(F.col("key") != F.col("id")).count() == 0
    assert rows.select("id").distinct().count() == N
    assert df.select("partition").distinct().count() == 3
