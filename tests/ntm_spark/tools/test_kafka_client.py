"""The stream's Kafka settings translated for kafka-python (``ntm produce``, ``ntm tail``, the demo)."""

import pytest

from ntm_spark.core.config import load_config
from ntm_spark.tools.kafka_client import KafkaClientConfigError, client_options, options_from_config


def test_plain_bootstrap_and_tuning_settings():
    opts = client_options("h1:9092, h2:9093", {"kafka.request.timeout.ms": "15000", "client.id": "me", "kafka.fetch.max.wait.ms": 100})
    assert opts == {"bootstrap_servers": ["h1:9092", "h2:9093"], "request_timeout_ms": 15000, "client_id": "me", "fetch_max_wait_ms": 100}


def test_sasl_ssl_with_a_plain_jaas_line_and_pem_files():
    opts = client_options(
        "b:9094",
        {
            "kafka.security.protocol": "SASL_SSL",
            "kafka.sasl.mechanism": "SCRAM-SHA-512",
            "kafka.sasl.jaas.config": 'org.apache.kafka.common.security.scram.ScramLoginModule required username="svc" password="p\\"w";',
            "kafka.ssl.truststore.type": "PEM",
            "kafka.ssl.truststore.location": "/etc/ca.pem",
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": "/etc/client.pem",
            "ssl.endpoint.identification.algorithm": "",
        },
    )
    assert opts == {
        "bootstrap_servers": ["b:9094"],
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "svc",
        "sasl_plain_password": 'p"w',
        "ssl_cafile": "/etc/ca.pem",
        "ssl_certfile": "/etc/client.pem",
        "ssl_keyfile": "/etc/client.pem",
        "ssl_check_hostname": False,
    }


def test_security_settings_kafka_python_cannot_apply_are_errors_not_ignored():
    with pytest.raises(KafkaClientConfigError, match=r"ssl.truststore.type='JKS'.*PEM"):
        client_options("b:1", {"kafka.ssl.truststore.type": "JKS", "kafka.ssl.truststore.location": "/x.jks"})
    with pytest.raises(KafkaClientConfigError, match=r"'/etc/trust.jks' is a Java key store.*PEM"):
        client_options("b:1", {"kafka.ssl.truststore.location": "/etc/trust.jks"})
    with pytest.raises(KafkaClientConfigError, match="username"):
        client_options("b:1", {"sasl.jaas.config": "com.sun.security.auth.module.Krb5LoginModule required;"})
    with pytest.raises(KafkaClientConfigError, match="ssl.engine.factory.class"):
        client_options("b:1", {"ssl.engine.factory.class": "x"})
    with pytest.raises(KafkaClientConfigError, match="bootstrap_servers"):
        client_options(" ", {})


def test_java_only_tuning_is_left_out():
    assert client_options("b:1", {"kafka.default.api.timeout.ms": "1000", "kafka.delivery.timeout.ms": 5}) == {
        "bootstrap_servers": ["b:1"],
        "delivery_timeout_ms": 5,
    }


def test_from_the_stream_config_with_set_overrides():
    cfg = load_config("stream", overrides=["bootstrap_servers=k:19092", 'kafka_options={"security.protocol": "SSL"}'])
    assert options_from_config(cfg) == {"bootstrap_servers": ["k:19092"], "security_protocol": "SSL"}


def test_error_text_names_the_error_once():
    from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

    from ntm_spark.tools.kafka_client import error_text

    assert error_text(KafkaTimeoutError("Unable to bootstrap")) == "KafkaTimeoutError: Unable to bootstrap"
    assert error_text(MessageSizeTooLargeError("too big")) == "MessageSizeTooLargeError: too big"
    assert error_text(ValueError("x")) == "ValueError: x"


@pytest.mark.integration
@pytest.mark.kafka
def test_count_partitions_on_the_real_broker_never_creates_a_topic(kafka_bootstrap):
    import uuid

    from kafka.admin import KafkaAdminClient

    from ntm_spark.tools.kafka_client import count_partitions
    from ntm_spark.tools.services import create_topics

    a, b, missing = (f"parts-{uuid.uuid4().hex[:8]}" for _ in range(3))
    create_topics(kafka_bootstrap, a, partitions=3)
    create_topics(kafka_bootstrap, b, partitions=1)
    opts = client_options(kafka_bootstrap)
    assert count_partitions(opts, [a]) == 3 and count_partitions(opts, [a, b]) == 4
    assert count_partitions(opts, [a, missing]) is None  # a topic not there yet: no count
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        assert missing not in admin.list_topics()
    finally:
        admin.close()
    assert count_partitions({**client_options("127.0.0.1:1"), "bootstrap_timeout_ms": 1000}, [a]) is None  # no broker
