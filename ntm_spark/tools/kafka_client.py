"""kafka-python clients with the stream's connection settings: one place for producers and consumers in Python.

``ntm stream`` talks to Kafka through Spark's Java client, configured by ``stream.bootstrap_servers``
and ``stream.kafka_options`` (Java client property names, ``kafka.`` prefix optional). The
Python-side tools (``ntm produce``, ``ntm tail``, the demo) use kafka-python, whose settings have
other names; :func:`client_options` translates the stream's settings, so one config reaches the
same broker with the same security settings:

==========================================  ==========================================
``kafka_options`` (Java client)              kafka-python
==========================================  ==========================================
``security.protocol``                        ``security_protocol``
``sasl.mechanism``                           ``sasl_mechanism`` (PLAIN, SCRAM-SHA-256/512)
``sasl.jaas.config`` (``username=``/``password=``)  ``sasl_plain_username`` / ``sasl_plain_password``
``ssl.truststore.location`` (PEM only)       ``ssl_cafile``
``ssl.keystore.location`` (PEM only)         ``ssl_certfile`` (key in the same file, or ``ssl.key.location``)
``ssl.key.password``                         ``ssl_password``
``ssl.endpoint.identification.algorithm: ""``  ``ssl_check_hostname: false``
any other ``a.b.c`` that kafka-python knows   ``a_b_c`` (e.g. ``request.timeout.ms``, ``client.id``)
==========================================  ==========================================

A security setting that kafka-python cannot honour (a JKS trust store, a GSSAPI JAAS line)
raises :class:`KafkaClientConfigError` naming the key and the fix, instead of connecting
without it; other unknown settings (Spark- or Java-only tuning) are left out with one log line.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import TYPE_CHECKING, Any, Iterable, Optional

if TYPE_CHECKING:  # pragma: no cover
    from ntm_spark.core.config import StreamConfig

log = logging.getLogger(__name__)

#: Java client property -> kafka-python setting, where the names differ by more than dots.
_RENAMED = {
    "ssl.truststore.location": "ssl_cafile",
    "ssl.keystore.location": "ssl_certfile",
    "ssl.key.location": "ssl_keyfile",
    "ssl.key.password": "ssl_password",
    "ssl.keystore.password": "ssl_password",
    "ssl.cipher.suites": "ssl_ciphers",
}
#: Java-only settings with no kafka-python counterpart that are safe to leave out.
_JAVA_ONLY = {"ssl.truststore.type", "ssl.keystore.type", "ssl.truststore.password", "sasl.jaas.config", "ssl.endpoint.identification.algorithm"}
_JAAS_FIELD = re.compile(r'\b(username|password)\s*=\s*"((?:[^"\\]|\\.)*)"')


class KafkaClientConfigError(ValueError):
    """A connection setting cannot be turned into a kafka-python setting."""


def _known_settings() -> set[str]:
    from kafka import KafkaConsumer, KafkaProducer

    return set(KafkaProducer.DEFAULT_CONFIG) | set(KafkaConsumer.DEFAULT_CONFIG)


def _coerce(value: Any, default: Any) -> Any:
    """Give a string from YAML/--set the type of kafka-python's default (``"30000"`` -> 30000)."""
    if isinstance(value, str) and isinstance(default, bool):
        return value.strip().lower() in ("true", "1", "yes")
    if isinstance(value, str) and isinstance(default, int):
        try:
            return int(value)
        except ValueError:
            return value
    return value


def client_options(bootstrap_servers: str, kafka_options: Optional[dict] = None) -> dict[str, Any]:
    """Translate the stream's connection settings into kafka-python keyword arguments.

    Args:
        bootstrap_servers: ``host:port[,host:port]`` (``stream.bootstrap_servers``).
        kafka_options: ``stream.kafka_options``: Java client property names, ``kafka.`` prefix optional.

    Returns:
        Keyword arguments for ``KafkaProducer`` / ``KafkaConsumer`` / ``KafkaAdminClient``.

    Raises:
        KafkaClientConfigError: for a security setting kafka-python cannot apply.
    """
    from kafka import KafkaConsumer, KafkaProducer

    if not isinstance(bootstrap_servers, str) or not bootstrap_servers.strip():
        raise KafkaClientConfigError(
            f"bootstrap_servers={bootstrap_servers!r} is empty: set stream.bootstrap_servers (e.g. --set bootstrap_servers=127.0.0.1:9092)."
        )
    defaults = {**KafkaConsumer.DEFAULT_CONFIG, **KafkaProducer.DEFAULT_CONFIG}
    opts: dict[str, Any] = {"bootstrap_servers": [s.strip() for s in bootstrap_servers.split(",") if s.strip()]}
    raw = {(k[len("kafka.") :] if k.startswith("kafka.") else k): v for k, v in (kafka_options or {}).items()}
    left_out = []
    for key, value in raw.items():
        value = value if not isinstance(value, str) else value.strip()
        if key in ("ssl.truststore.type", "ssl.keystore.type") and str(value).upper() != "PEM":
            raise KafkaClientConfigError(
                f"kafka_options {key}={value!r}: kafka-python reads PEM files only. Convert the store to PEM "
                f"(keytool -exportcert -rfc / openssl pkcs12) and set {key}: PEM with the .pem path in its location."
            )
        if key in ("ssl.truststore.location", "ssl.keystore.location") and str(value).lower().endswith((".jks", ".p12", ".pfx")):
            raise KafkaClientConfigError(
                f"kafka_options {key}={value!r} is a Java key store: kafka-python reads PEM files only. Convert it to PEM "
                "(keytool -exportcert -rfc / openssl pkcs12) and point the location at the .pem file."
            )
        if key == "sasl.jaas.config":
            fields = dict(_JAAS_FIELD.findall(str(value)))
            if "username" not in fields or "password" not in fields:
                raise KafkaClientConfigError(
                    "kafka_options sasl.jaas.config has no username=\"...\" password=\"...\": kafka-python supports "
                    "PLAIN and SCRAM logins; for Kerberos set sasl.mechanism: GSSAPI and sasl.kerberos.service.name."
                )
            opts["sasl_plain_username"] = fields["username"].replace('\\"', '"')
            opts["sasl_plain_password"] = fields["password"].replace('\\"', '"')
            continue
        if key == "ssl.endpoint.identification.algorithm":
            opts["ssl_check_hostname"] = bool(value)
            continue
        if key in _JAVA_ONLY:
            continue
        name = _RENAMED.get(key, key.replace(".", "_").replace("-", "_"))
        if name in ("bootstrap_servers", "key_serializer", "value_serializer", "key_deserializer", "value_deserializer"):
            continue
        if name in defaults:
            opts[name] = _coerce(value, defaults[name])
        elif key.startswith(("ssl.", "sasl.", "security.")):
            raise KafkaClientConfigError(
                f"kafka_options {key}={value!r} has no kafka-python counterpart, so a Python client would connect "
                "without it: remove it for `ntm produce`/`ntm tail` (--config with another file) or see docs/streaming.md."
            )
        else:
            left_out.append(key)
    if "ssl_certfile" in opts and "ssl_keyfile" not in opts:
        opts["ssl_keyfile"] = opts["ssl_certfile"]  # a PEM key store holds the key and the certificate
    if left_out:
        log.info("kafka_options not used by kafka-python (Java/Spark-only): %s", ", ".join(sorted(left_out)))
    return opts


def options_from_config(cfg: "StreamConfig") -> dict[str, Any]:
    """:func:`client_options` of a stream config (``bootstrap_servers`` and ``kafka_options``)."""
    return client_options(cfg.bootstrap_servers, cfg.kafka_options)


def _split(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    from kafka import KafkaConsumer, KafkaProducer

    producer = {k: v for k, v in options.items() if k in KafkaProducer.DEFAULT_CONFIG}
    consumer = {k: v for k, v in options.items() if k in KafkaConsumer.DEFAULT_CONFIG}
    return producer, consumer


def bytes_producer(options: dict[str, Any], **overrides: Any) -> Any:
    """A ``KafkaProducer`` of raw bytes keys and values with :func:`client_options` (settings the consumer alone knows dropped)."""
    from kafka import KafkaProducer

    producer_opts, _ = _split(options)
    return KafkaProducer(**{**producer_opts, **overrides})


def bytes_consumer(options: dict[str, Any], **overrides: Any) -> Any:
    """A ``KafkaConsumer`` of raw bytes, in no consumer group unless ``group_id`` is given (nothing committed)."""
    from kafka import KafkaConsumer

    _, consumer_opts = _split(options)
    return KafkaConsumer(**{"group_id": None, "enable_auto_commit": False, **consumer_opts, **overrides})


def count_partitions(options: dict[str, Any], topics: Iterable[str]) -> Optional[int]:
    """How many partitions ``topics`` have together, or ``None`` when the broker does not answer or a topic is missing."""
    from kafka.errors import KafkaError

    try:
        consumer = bytes_consumer(options, allow_auto_create_topics=False)  # counting never creates a topic
    except KafkaError as err:  # NoBrokersAvailable: no count; the stream's supervisor waits for the broker
        log.info("cannot count the partitions of %s: %s", ", ".join(topics), error_text(err))
        return None
    try:
        found = [consumer.partitions_for_topic(topic) for topic in topics]
    finally:
        consumer.close()
    if not found or not all(found):
        return None
    return sum(len(parts) for parts in found)


def json_producer(bootstrap: str, **options: Any) -> Any:
    """Return a producer of JSON values keyed by a string (kafka-python 3.x serializer objects)."""
    from kafka import KafkaProducer
    from kafka.serializer import DefaultSerializer, JsonSerializer

    return KafkaProducer(bootstrap_servers=bootstrap, key_serializer=DefaultSerializer(), value_serializer=JsonSerializer(), **options)


def json_consumer(bootstrap: str, topics: Iterable[str], group: str) -> Any:
    """Return a consumer of JSON values from the beginning of ``topics``, in a fresh consumer group."""
    from kafka import KafkaConsumer
    from kafka.serializer import DefaultSerializer, JsonSerializer

    return KafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=f"{group}-{uuid.uuid4().hex[:6]}",
        key_deserializer=DefaultSerializer(),
        value_deserializer=JsonSerializer(),
        consumer_timeout_ms=1000,
    )


def add_connection_args(parser: Any, set_help: str, prefix: str = "") -> None:
    """Add the flags every Kafka command shares with ``ntm stream``: ``--bootstrap-servers``, ``--config``, ``--set``.

    Args:
        parser: The command's ``argparse`` parser.
        set_help: The help line of ``--set``.
        prefix: Put before ``config`` and ``set`` for a command whose own ``--config``/``--set`` are
            taken (``ntm explore``: ``prefix="stream-"`` gives ``--stream-config``, ``--stream-set``).
    """
    dest = prefix.replace("-", "_")
    parser.add_argument("--bootstrap-servers", default=None, help="Kafka bootstrap servers (stream.bootstrap_servers)")
    parser.add_argument(
        f"--{prefix}config", dest=f"{dest}config", default=None, metavar="YAML",
        help="a YAML file laid over conf/base/stream.yaml and conf/local",
    )  # fmt: skip
    parser.add_argument(f"--{prefix}set", dest=f"{dest}overrides", action="append", default=[], metavar="KEY=VALUE", help=set_help)


def stream_config_from_args(args: Any, prefix: str = "") -> "StreamConfig":
    """The stream config of :func:`add_connection_args`' flags (the same ``prefix``), without a Kafka client.

    Raises:
        ConfigError: for a bad config value.
    """
    import json

    from ntm_spark.core.config import load_config

    dest = prefix.replace("-", "_")
    overrides = list(getattr(args, f"{dest}overrides"))
    if args.bootstrap_servers:
        overrides.append(f"bootstrap_servers={json.dumps(args.bootstrap_servers)}")
    return load_config("stream", overrides=overrides, config_file=getattr(args, f"{dest}config"))


def connection_from_args(args: Any, prefix: str = "") -> tuple["StreamConfig", dict[str, Any]]:
    """The stream config and kafka-python options from :func:`add_connection_args`' flags (the same ``prefix``).

    Raises:
        ConfigError: for a bad config value.
        KafkaClientConfigError: for a ``kafka_options`` setting kafka-python cannot apply.
    """
    cfg = stream_config_from_args(args, prefix)
    return cfg, options_from_config(cfg)


def bootstrap_timeout(cfg: "StreamConfig", options: dict[str, Any]) -> dict[str, Any]:
    """``bootstrap_timeout_ms`` from the stream's ``broker_probe_timeout_s`` unless ``kafka_options`` set it.

    kafka-python waits 30 s for an unreachable broker by default; the stream gives one broker check
    ``broker_probe_timeout_s`` (5 s), and the Python tools answer as fast.
    """
    if "bootstrap_timeout_ms" in options:
        return {}
    return {"bootstrap_timeout_ms": max(1000, int(cfg.broker_probe_timeout_s * 1000))}


def error_text(err: BaseException) -> str:
    """``Type: message`` of a kafka-python error, without the type twice (``KafkaTimeoutError: KafkaTimeoutError: ...``)."""
    text = str(err)
    name = type(err).__name__
    if text.startswith("[Error ") and name in text:  # "[Error 10] MessageSizeTooLargeError: ..."
        return text.split("] ", 1)[1]
    return text if text.startswith(name) else f"{name}: {text}"
